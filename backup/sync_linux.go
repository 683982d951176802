package backup

import (
	"golang.org/x/sys/unix"
)

// syncTarget flushes the backup to disk with one syncfs(2) on the target's
// file system, instead of an fsync per file.
func syncTarget(t *targetDir) error {
	f, err := t.dir.Open(".")
	if err != nil {
		return fileError("open", ".", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fileError("sync", ".", err)
	}
	return nil
}
