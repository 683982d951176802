package walarchive

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// FailpointEnv names the environment variable that fault tests set to
// kill pgverbs at a chosen point of the receiver: "NAME" or "NAME:N" (the
// Nth time the point is reached), where NAME is write (before a write),
// after-fsync (after an fdatasync, before the position is sent),
// after-ack (after the position was sent) or before-rename (before a
// complete segment's rename). The process kills itself with SIGKILL, as a
// crash would: nothing is flushed or closed. Operators never set it.
const FailpointEnv = "PGVERBS_TEST_WAL_FAILPOINT"

var failAt = func() struct {
	name string
	n    int64
} {
	v := os.Getenv(FailpointEnv)
	name, count, _ := strings.Cut(v, ":")
	n, err := strconv.ParseInt(count, 10, 64)
	if err != nil || n < 1 {
		n = 1
	}
	return struct {
		name string
		n    int64
	}{name, n}
}()

var failHits atomic.Int64

// failpoint kills the process when the test-only failpoint name is due.
func failpoint(name string) {
	if failAt.name != name {
		return
	}
	if failHits.Add(1) == failAt.n {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
