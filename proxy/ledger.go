package proxy

import "github.com/pgverbs/pgverbs/internal/pgwire"

// ledger is the response accounting that lets a session insert the proxy's
// own work into the relayed stream without breaking reply order: every
// message forwarded to the server records what it will be answered with,
// every reply forwarded to the client ticks that off, and the engine takes
// the backend over only when nothing is outstanding. It is plain data with
// no locking; whoever shares it (handoff.go) serialises access.
//
// Pending work is a FIFO of items. An extended-protocol item counts the
// terminal replies still due for consecutive Parse/Bind/Describe/Execute/
// Close messages; Sync, Query and FunctionCall items wait for ReadyForQuery.
// An ErrorResponse during an extended item ends it: the server discards
// messages until the next Sync.
type ledger struct {
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
}

// pendingItem is one entry of the ledger's FIFO.
type pendingItem struct {
	// kind is the message that opened the item: Sync, Query or
	// FunctionCall wait for ReadyForQuery; extendedRun counts replies.
	kind pgwire.Frontend
	// n is, for extendedRun, the terminal replies still due.
	n int
}

// extendedRun is the pseudo kind of a run of extended-protocol messages.
const extendedRun pgwire.Frontend = 'x'

func newLedger() ledger { return ledger{status: pgwire.TxIdle} }

// sentMatters reports whether sent changes anything for a message type, so
// that callers can skip locking for the rest (CopyData, Flush, ...).
func sentMatters(typ pgwire.Frontend) bool {
	switch typ {
	case pgwire.Parse, pgwire.Bind, pgwire.Describe, pgwire.Execute, pgwire.Close,
		pgwire.Sync, pgwire.Query, pgwire.FunctionCall, pgwire.CopyDone, pgwire.CopyFail:
		return true
	}
	return false
}

// receivedMatters is sentMatters for server messages: DataRow, notices and
// the other non-terminal replies cost nothing.
func receivedMatters(typ pgwire.Backend) bool {
	switch typ {
	case pgwire.ParseComplete, pgwire.BindComplete, pgwire.CloseComplete, pgwire.RowDescription,
		pgwire.NoData, pgwire.CommandComplete, pgwire.EmptyQueryResponse, pgwire.PortalSuspended,
		pgwire.ReadyForQuery, pgwire.ErrorResponse, pgwire.CopyInResponse:
		return true
	}
	return false
}

// sent records a message forwarded from the client to the server.
func (l *ledger) sent(typ pgwire.Frontend) {
	switch typ {
	case pgwire.Parse, pgwire.Bind, pgwire.Describe, pgwire.Execute, pgwire.Close:
		if l.discarding {
			return
		}
		if n := len(l.items); n > 0 && l.items[n-1].kind == extendedRun {
			l.items[n-1].n++
		} else {
			l.items = append(l.items, pendingItem{kind: extendedRun, n: 1})
		}
	case pgwire.Sync, pgwire.Query, pgwire.FunctionCall:
		if typ == pgwire.Sync {
			l.discarding = false
		}
		l.items = append(l.items, pendingItem{kind: typ})
	case pgwire.CopyDone, pgwire.CopyFail:
		// They end the client's part of COPY FROM STDIN.
		l.copyIn = false
	}
}

// received ticks off a message the server sent; msg is the whole message
// (a ReadyForQuery always is; others may be nil when streamed).
func (l *ledger) received(typ pgwire.Backend, msg []byte) {
	switch typ {
	case pgwire.CopyInResponse:
		l.copyIn = true
		return
	case pgwire.ReadyForQuery:
		if len(msg) > pgwire.HeaderLen {
			l.setStatus(msg[pgwire.HeaderLen])
		}
		l.copyIn = false
		// Whatever extended work preceded the Sync was answered or
		// discarded by now.
		for len(l.items) > 0 && l.items[0].kind == extendedRun {
			l.pop()
		}
		if len(l.items) > 0 {
			l.pop()
		}
		return
	}
	if len(l.items) == 0 || l.items[0].kind != extendedRun {
		// Replies inside a simple Query, or an asynchronous error.
		return
	}
	switch typ {
	case pgwire.ErrorResponse:
		l.pop()
		// Unless the client already sent the Sync that ends it, what it
		// sends next is skipped by the server.
		if len(l.items) == 0 || l.items[0].kind != pgwire.Sync {
			l.discarding = true
		}
	case pgwire.ParseComplete, pgwire.BindComplete, pgwire.CloseComplete, pgwire.RowDescription,
		pgwire.NoData, pgwire.CommandComplete, pgwire.EmptyQueryResponse, pgwire.PortalSuspended:
		if l.items[0].n--; l.items[0].n == 0 {
			l.pop()
		}
	}
}

func (l *ledger) setStatus(s byte) {
	if s == pgwire.TxIdle {
		l.epoch++
	}
	l.status = s
}

func (l *ledger) pop() {
	l.items = l.items[1:]
	if len(l.items) == 0 {
		// Let the backing array go: a long pipeline must not pin it.
		l.items = nil
	}
}

// drained reports whether no reply is outstanding.
func (l *ledger) drained() bool { return len(l.items) == 0 }

// outstanding reports whether replies are still due, and whether they
// include extended-protocol ones (for which the server needs a Flush).
func (l *ledger) outstanding() (pending, needFlush bool) {
	for _, it := range l.items {
		if it.kind == extendedRun {
			needFlush = true
		}
	}
	return len(l.items) > 0, needFlush
}

// afterSync records the ReadyForQuery that answered the engine's own Sync.
func (l *ledger) afterSync(status byte) {
	l.setStatus(status)
	l.discarding = false
}
