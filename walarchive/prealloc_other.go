//go:build !linux

package walarchive

import "os"

// preallocate writes zeros from byte from to size: without Linux's
// fallocate(2) that is the portable way to claim the blocks at Open.
func preallocate(f *os.File, from, size int64) error { return writeZeros(f, from, size) }

// fdatasync is a full fsync where fdatasync is not at hand.
func fdatasync(f *os.File) error { return f.Sync() }
