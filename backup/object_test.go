package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgverbs/pgverbs/internal/s3test"
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

// TestCleanStorage: at start, the backups of dead processes of this host
// go (the prefix of one without a summary, the marker only of one with
// it) with the uploads below them, while a marker of a running process
// or of another host, and the uploads below it, stay.
func TestCleanStorage(t *testing.T) {
	srv := s3test.Start(t)
	bucket := srv.Bucket(t, "clean")
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	ctx := context.Background()
	st, err := storage.New(ctx, storage.Config{Name: "t", Endpoint: srv.Endpoint, Region: srv.Region, Bucket: bucket, Prefix: "pg", PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	marker := func(pid int, host string) []byte {
		return []byte(fmt.Sprintf("pid %d\nhost %s\nstarted 2026-12-04T00:00:00Z\n", pid, host))
	}
	put := func(name string, data []byte) {
		t.Helper()
		if err := st.Put(ctx, name, data); err != nil {
			t.Fatal(err)
		}
	}
	put("dead/"+markerName, marker(dead.Process.Pid, host))
	put("dead/base.tar", []byte("partial"))
	put("done/"+markerName, marker(dead.Process.Pid, host))
	put("done/"+SummaryName, []byte("{}"))
	put("running/"+markerName, marker(os.Getppid(), host))
	put("elsewhere/"+markerName, marker(dead.Process.Pid, "another-host"))
	for _, key := range []string{"pg/dead/pg_wal.tar", "pg/running/base.tar", "pg/elsewhere/base.tar"} {
		if _, err := srv.AdminClient().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
	}
	aborted, removed, err := CleanStorage(ctx, st, time.Now().Add(time.Minute))
	if err != nil || aborted != 1 || removed != 1 {
		t.Fatalf("CleanStorage: aborted %d, removed %d, %v; want 1, 1", aborted, removed, err)
	}
	var names []string
	objs, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		names = append(names, o.Name)
	}
	want := []string{"done/" + SummaryName, "elsewhere/" + markerName, "running/" + markerName}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("left: %v, want %v", names, want)
	}
	ups, err := st.Uploads(ctx, "")
	if err != nil || len(ups) != 2 {
		t.Fatalf("uploads left: %+v %v, want running's and elsewhere's", ups, err)
	}
}
