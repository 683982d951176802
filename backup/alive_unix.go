//go:build unix

package backup

import (
	"errors"
	"syscall"
)

// processAlive reports whether a process pid runs on this host (signal 0:
// EPERM means it runs as another user).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
