package proxy

import (
	"runtime"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// goPort is the engine's port in the goroutine relay. The engine runs on
// the client goroutine, which owns the client reader and the backend
// writer; the client writer and the backend reader belong to the backend
// goroutine until acquire has taken the backend over (see handoff).
type goPort struct{ s *session }

func (p goPort) writeClient(b []byte)  { _, _ = p.s.cw.Write(b) }
func (p goPort) flushClient() error    { return p.s.cw.Flush() }
func (p goPort) writeBackend(b []byte) { _, _ = p.s.bw.Write(b) }
func (p goPort) flushBackend() error   { return p.s.bw.Flush() }

func (p goPort) next() (backendMsg, error)                     { return p.s.h.next() }
func (p goPort) state() (status byte, discarding, copyIn bool) { return p.s.h.state() }
func (p goPort) txEpoch() uint64                               { return p.s.h.txEpoch() }
func (p goPort) afterSync(status byte)                         { p.s.h.afterSync(status) }
func (p goPort) setDiscarding()                                { p.s.h.setDiscarding() }

// acquire waits until every reply owed to the client has been forwarded,
// then routes backend messages to the engine.
func (p goPort) acquire() error {
	h := p.s.h
	pending, needFlush := h.outstanding()
	if needFlush {
		// The server holds extended-protocol replies until Sync or Flush.
		p.writeBackend(pgwire.FlushMsg)
	}
	if err := p.flushBackend(); err != nil {
		return err
	}
	if pending {
		if err := h.waitDrained(); err != nil {
			return err
		}
	}
	h.execMode.Store(true)
	for h.writing.Load() {
		runtime.Gosched()
	}
	return nil
}

// release hands the backend back to the backend goroutine. Messages that
// arrived for the engine but were not read (asynchronous ones) go to the
// client first.
func (p goPort) release() error {
	return p.s.h.takeBack(func(left []backendMsg) error {
		for _, m := range left {
			p.writeClient(m.msg)
		}
		return p.flushClient()
	})
}

// watchClient calls cancel if the client goes away while a standalone
// command runs. The engine does not read the client meanwhile, so a
// goroutine may wait on the reader; stop wakes it with a read deadline and
// waits for it, leaving whatever the client sent buffered.
func (p goPort) watchClient(cancel func()) (stop func()) {
	s := p.s
	var stopping atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := s.cr.Peek(1); err != nil && !stopping.Load() {
			s.logger().Debug("client left during a command; cancelling it", zap.Error(err))
			cancel()
		}
	}()
	return func() {
		stopping.Store(true)
		_ = s.client.SetReadDeadline(time.Now())
		<-done
		_ = s.client.SetReadDeadline(time.Time{})
	}
}
