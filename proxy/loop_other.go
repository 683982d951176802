//go:build !linux

package proxy

// loopsSupported reports whether this build has the event-loop relay:
// it needs epoll.
const loopsSupported = false

type loopSet struct{}

func newLoopSet() *loopSet { return nil }

func (*loopSet) stop() {}

// loopSession is never created without the event loop.
type loopSession struct{}

func (*loopSession) postKill() {}

func (s *session) toLoop() bool { return false }
