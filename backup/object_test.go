package backup

import (
	"context"
	"errors"
	"testing"

	"github.com/pgverbs/pgverbs/storage"
)

// TestClaimObjects is the cross-process exclusion of backups to object
// storage, with the in-process lock left out as another process would
// not share it: a prefix another backup claimed, one inside it and one
// around it are each refused (55006), and a refused claim leaves no
// marker of its own behind.
func TestClaimObjects(t *testing.T) {
	st := testStore(t)
	ctx := context.Background()
	claim := func(dir string) error { return claimObjects(ctx, st, dir, st.URL(dir), []byte("test\n")) }
	inUse := func(err error) bool { return errors.Is(err, ErrTargetInUse) }
	if err := claim("a/b"); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"a/b", "a/b/c", "a"} {
		if err := claim(dir); !inUse(err) {
			t.Errorf("claim %s beside a/b: %v, want in use", dir, err)
		}
	}
	objs, err := st.List(ctx, "")
	if err != nil || len(objs) != 1 || objs[0].Name != storage.Join("a/b", markerName) {
		t.Fatalf("objects after the refused claims: %+v %v", objs, err)
	}
	if err := claim("a/c"); err != nil {
		t.Fatalf("a sibling prefix: %v", err)
	}
}
