//go:build linux || darwin || freebsd

package metrics

import "golang.org/x/sys/unix"

// diskSpace returns the bytes free for an unprivileged user (what pgverbs
// may not exceed when it runs as one) and the size of the file system
// holding dir.
func diskSpace(dir string) (avail, size uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Bsize)
	return uint64(st.Bavail) * bs, uint64(st.Blocks) * bs, nil
}
