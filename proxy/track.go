package proxy

import (
	"errors"
	"sync"
	"sync/atomic"
)

// The tracker does the response accounting that lets a session insert the
// proxy's own work into the relayed stream without breaking reply order:
// the client side records what each forwarded message will be answered
// with, the backend side ticks replies off, and the engine waits until
// nothing is outstanding before it takes the backend over.
//
// Pending work is a FIFO of items. An extended-protocol item counts the
// terminal replies still due for consecutive Parse/Bind/Describe/Execute/
// Close messages; Sync, Query and FunctionCall items wait for ReadyForQuery.
// An ErrorResponse during an extended item ends it: the server discards
// messages until the next Sync.
type tracker struct {
	mu    sync.Mutex
	items []pendingItem
	// status is the transaction status of the last ReadyForQuery.
	status byte
	// discarding is set when the server will skip the next extended-protocol
	// message sent: an error ended an extended run and the client has not
	// sent the Sync that ends the skipping yet. Messages sent meanwhile are
	// not counted, as they will never be answered.
	discarding bool
	// epoch counts transactions ended (ReadyForQuery 'I'), so that the
	// engine can tell when a portal it answered for has died with its
	// transaction.
	epoch uint64
	// copyIn is set while the server waits for COPY data from the client.
	copyIn bool
	// drained is signalled when items becomes empty and a waiter exists.
	drained chan struct{}
	waiting bool
	closed  bool

	// execMode routes backend messages to the engine instead of the client.
	execMode atomic.Bool
	// writing is set while the backend loop forwards a message to the
	// client; together with execMode it forms a Dekker pair, so the engine
	// never writes to the client concurrently with the loop.
	writing atomic.Bool
	execQ   []execMsg
	execSig chan struct{}
}

type pendingItem struct {
	kind byte // 'x' extended replies, 'S' Sync, 'Q' Query, 'F' FunctionCall
	n    int  // for 'x': terminal replies still due
}

// execMsg is a backend message delivered to the engine; msg is a copy.
type execMsg struct {
	typ byte
	msg []byte
}

// errBackendGone is returned to the engine when the backend loop has ended.
var errBackendGone = errors.New("backend connection ended")

func newTracker() *tracker {
	return &tracker{
		status:  'I',
		drained: make(chan struct{}, 1),
		execSig: make(chan struct{}, 1),
	}
}

// sent records a message forwarded from the client to the server.
func (t *tracker) sent(typ byte) {
	switch typ {
	case 'P', 'B', 'D', 'E', 'C':
		t.mu.Lock()
		if t.discarding {
			t.mu.Unlock()
			return
		}
		if n := len(t.items); n > 0 && t.items[n-1].kind == 'x' {
			t.items[n-1].n++
		} else {
			t.items = append(t.items, pendingItem{kind: 'x', n: 1})
		}
		t.mu.Unlock()
	case 'S', 'Q', 'F':
		t.mu.Lock()
		if typ == 'S' {
			t.discarding = false
		}
		t.items = append(t.items, pendingItem{kind: typ})
		t.mu.Unlock()
	case 'c', 'f':
		// CopyDone/CopyFail end the client's part of COPY FROM STDIN.
		t.mu.Lock()
		t.copyIn = false
		t.mu.Unlock()
	}
}

// received ticks off a message the server sent (msg is the whole message,
// or nil when it was streamed; a ReadyForQuery is always whole). DataRow
// and the other non-terminal messages cost nothing.
func (t *tracker) received(typ byte, msg []byte) {
	switch typ {
	case '1', '2', '3', 'T', 'n', 'C', 'I', 's', 'Z', 'E', 'G':
	default:
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch typ {
	case 'G':
		t.copyIn = true
		return
	case 'Z':
		if len(msg) > 5 {
			t.setStatusLocked(msg[5])
		}
		t.copyIn = false
		// Whatever extended work preceded the Sync was answered or
		// discarded by now.
		for len(t.items) > 0 && t.items[0].kind == 'x' {
			t.pop()
		}
		if len(t.items) > 0 {
			t.pop()
		}
		return
	}
	if len(t.items) == 0 || t.items[0].kind != 'x' {
		// Replies inside a simple Query, or an asynchronous error.
		return
	}
	if typ == 'E' {
		t.pop()
		// Unless the client already sent the Sync that ends it, what it
		// sends next is skipped by the server.
		if len(t.items) == 0 || t.items[0].kind != 'S' {
			t.discarding = true
		}
		return
	}
	if typ == 'T' || typ == 'C' || typ == '1' || typ == '2' || typ == '3' || typ == 'n' || typ == 'I' || typ == 's' {
		if t.items[0].n--; t.items[0].n == 0 {
			t.pop()
		}
	}
}

// setStatusLocked records the status byte of a ReadyForQuery.
func (t *tracker) setStatusLocked(s byte) {
	if s == 'I' {
		t.epoch++
	}
	t.status = s
}

// txEpoch returns the number of transactions ended so far.
func (t *tracker) txEpoch() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.epoch
}

func (t *tracker) pop() {
	t.items = t.items[1:]
	if len(t.items) == 0 {
		t.items = t.items[:0:0]
		if t.waiting {
			t.waiting = false
			select {
			case t.drained <- struct{}{}:
			default:
			}
		}
	}
}

// outstanding reports whether replies are still due, and whether they
// include extended-protocol ones (for which the server needs a Flush).
func (t *tracker) outstanding() (pending, needFlush bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, it := range t.items {
		if it.kind == 'x' {
			needFlush = true
		}
	}
	return len(t.items) > 0, needFlush
}

// waitDrained blocks until no reply is outstanding or the backend is gone.
func (t *tracker) waitDrained() error {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return errBackendGone
		}
		if len(t.items) == 0 {
			t.mu.Unlock()
			return nil
		}
		t.waiting = true
		t.mu.Unlock()
		<-t.drained
	}
}

// state returns the transaction status, discard and COPY flags.
func (t *tracker) state() (status byte, discarding, copyIn bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status, t.discarding, t.copyIn
}

// afterSync records the ReadyForQuery that answered the engine's own Sync.
func (t *tracker) afterSync(status byte) {
	t.mu.Lock()
	t.setStatusLocked(status)
	t.discarding = false
	t.mu.Unlock()
}

// setDiscarding marks the server as skipping messages until Sync, after an
// error the engine caused.
func (t *tracker) setDiscarding() {
	t.mu.Lock()
	t.discarding = true
	t.mu.Unlock()
}

// deliver hands a backend message (which the caller no longer uses) to the
// engine. It reports false when the engine has already released the
// backend: the caller then forwards the message itself.
func (t *tracker) deliver(typ byte, msg []byte) bool {
	t.mu.Lock()
	if !t.execMode.Load() {
		t.mu.Unlock()
		return false
	}
	t.execQ = append(t.execQ, execMsg{typ: typ, msg: msg})
	t.mu.Unlock()
	select {
	case t.execSig <- struct{}{}:
	default:
	}
	return true
}

// next returns the next message delivered to the engine.
func (t *tracker) next() (execMsg, error) {
	for {
		t.mu.Lock()
		if len(t.execQ) > 0 {
			m := t.execQ[0]
			t.execQ = t.execQ[1:]
			t.mu.Unlock()
			return m, nil
		}
		closed := t.closed
		t.mu.Unlock()
		if closed {
			return execMsg{}, errBackendGone
		}
		<-t.execSig
	}
}

// close wakes every waiter: the backend loop has ended.
func (t *tracker) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	select {
	case t.drained <- struct{}{}:
	default:
	}
	select {
	case t.execSig <- struct{}{}:
	default:
	}
}
