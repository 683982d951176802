package backup

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing f's dirty pages without
// waiting for them, so that the fsyncs that follow find most of the work
// under way (PostgreSQL's pre_sync_fname). Errors are left to the fsync.
func startWriteback(f *os.File) {
	_ = unix.SyncFileRange(int(f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
}
