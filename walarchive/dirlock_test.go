//go:build unix

package walarchive

import (
	"errors"
	"os"
	"testing"
)

// TestLockDir: a directory locked by one holder is refused to a second
// (flock is per open file, so this stands for another process) until the
// first lets go; the lock file is not WAL to the archive's scan.
func TestLockDir(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	a, err := lockDir(root)
	if err != nil || a == nil {
		t.Fatalf("first lock: %v", err)
	}
	if _, err := lockDir(root); !errors.Is(err, errDirLocked) {
		t.Fatalf("second lock while the first holds: %v", err)
	}
	a.Close()
	b, err := lockDir(root)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	b.Close()
	if files, err := scan(root, 16<<20); err != nil || len(files) != 0 {
		t.Fatalf("scan sees %v, %v", files, err)
	}
	if !errors.Is(dirInUse("/x/wal"), errDirLocked) {
		t.Fatal("dirInUse does not wrap errDirLocked")
	}
}
