package proxy

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// handoff shares a session's ledger between its two relay goroutines and
// passes the backend between the backend goroutine and the engine, which
// runs on the client goroutine:
//
//   - the client goroutine records what it forwards (sent), the backend
//     goroutine what it forwards back (received);
//   - the engine waits until nothing is outstanding (waitDrained), then sets
//     execMode: from then on the backend goroutine delivers messages to the
//     engine's queue (deliver, next) instead of writing them to the client;
//   - execMode and writing form a Dekker pair, so the engine never writes
//     to the client while the backend goroutine does.
type handoff struct {
	mu sync.Mutex
	l  ledger
	// drained is signalled when the ledger drains and a waiter exists.
	drained chan struct{}
	waiting bool
	closed  bool

	// execMode routes backend messages to the engine instead of the client.
	execMode atomic.Bool
	// writing is set while the backend goroutine forwards a message to the
	// client.
	writing atomic.Bool
	execQ   []backendMsg
	execSig chan struct{}
}

// backendMsg is a whole backend message; msg is owned by its receiver.
type backendMsg struct {
	typ pgwire.Backend
	msg []byte
}

// errBackendGone is returned to the engine when the backend has gone.
var errBackendGone = errors.New("backend connection ended")

func newHandoff() *handoff {
	return &handoff{
		l:       newLedger(),
		drained: make(chan struct{}, 1),
		execSig: make(chan struct{}, 1),
	}
}

// sent records a message forwarded to the server.
func (h *handoff) sent(typ pgwire.Frontend) {
	if !sentMatters(typ) {
		return
	}
	h.mu.Lock()
	h.l.sent(typ)
	h.mu.Unlock()
}

// received records a message forwarded to the client.
func (h *handoff) received(typ pgwire.Backend, msg []byte) {
	if !receivedMatters(typ) {
		return
	}
	h.mu.Lock()
	h.l.received(typ, msg)
	if h.waiting && h.l.drained() {
		h.waiting = false
		select {
		case h.drained <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
}

// outstanding is ledger.outstanding under the lock.
func (h *handoff) outstanding() (pending, needFlush bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.l.outstanding()
}

// waitDrained blocks until no reply is outstanding or the backend is gone.
func (h *handoff) waitDrained() error {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return errBackendGone
		}
		if h.l.drained() {
			h.mu.Unlock()
			return nil
		}
		h.waiting = true
		h.mu.Unlock()
		<-h.drained
	}
}

// state returns the transaction status, discard and COPY flags.
func (h *handoff) state() (status byte, discarding, copyIn bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.l.status, h.l.discarding, h.l.copyIn
}

// txEpoch returns the number of transactions ended so far.
func (h *handoff) txEpoch() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.l.epoch
}

// afterSync is ledger.afterSync under the lock.
func (h *handoff) afterSync(status byte) {
	h.mu.Lock()
	h.l.afterSync(status)
	h.mu.Unlock()
}

// setDiscarding marks the server as skipping messages until Sync, after an
// error the engine caused.
func (h *handoff) setDiscarding() {
	h.mu.Lock()
	h.l.discarding = true
	h.mu.Unlock()
}

// deliver hands a backend message to the engine. It reports false when the
// engine has already released the backend: the caller then forwards the
// message itself.
func (h *handoff) deliver(m backendMsg) bool {
	h.mu.Lock()
	if !h.execMode.Load() {
		h.mu.Unlock()
		return false
	}
	h.execQ = append(h.execQ, m)
	h.mu.Unlock()
	select {
	case h.execSig <- struct{}{}:
	default:
	}
	return true
}

// next returns the next message delivered to the engine.
func (h *handoff) next() (backendMsg, error) {
	for {
		h.mu.Lock()
		if len(h.execQ) > 0 {
			m := h.execQ[0]
			h.execQ = h.execQ[1:]
			h.mu.Unlock()
			return m, nil
		}
		closed := h.closed
		h.mu.Unlock()
		if closed {
			return backendMsg{}, errBackendGone
		}
		<-h.execSig
	}
}

// takeBack ends execMode. What was delivered but not read (asynchronous
// messages) is passed to forward, which must write it to the client and
// flush: it runs under the lock, before the backend goroutine may write to
// the client again, so nothing slips in between and the writes never race.
func (h *handoff) takeBack(forward func(left []backendMsg) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	err := forward(h.execQ)
	h.execQ = nil
	h.execMode.Store(false)
	return err
}

// close wakes every waiter: the backend goroutine has ended.
func (h *handoff) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	select {
	case h.drained <- struct{}{}:
	default:
	}
	select {
	case h.execSig <- struct{}{}:
	default:
	}
}
