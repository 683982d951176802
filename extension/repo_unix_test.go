//go:build unix

package extension

import (
	"path/filepath"
	"syscall"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// TestRepoFIFO checks that a FIFO posing as a control file is refused
// rather than opened, which would block until someone writes to it.
func TestRepoFIFO(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"fifo/install.sql": "SELECT 1;\n"})
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo", "control"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := OpenRepo(dir).Load("fifo")
	wantError(t, err, pgerr.IOError, `"fifo/control" is not a regular file`)
}
