package walarchive

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// preallocate gives f the blocks from byte from to size, so that a full
// disk shows now (ENOSPC) and not while WAL is written. fallocate(2) is
// what posix_fallocate calls; file systems without it get zeros written.
func preallocate(f *os.File, from, size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, from, size-from)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return writeZeros(f, from, size)
	}
	return err
}

// fdatasync writes f's data and only the metadata needed to read it back;
// the size was made durable at Open, so this is all a Sync needs.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
