//go:build unix

package walarchive

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes the archive directory's lock file with flock(2), held
// for as long as the returned file is open: a second pgverbs process
// (another instance sharing the backup root) cannot archive into the
// same directory and corrupt it. Linux's NFS client maps flock to
// POSIX locks on the server, so the lock holds across machines there.
func lockDir(root *os.Root) (*os.File, error) {
	f, err := root.OpenFile(lockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errDirLocked
		}
		return nil, err
	}
	return f, nil
}
