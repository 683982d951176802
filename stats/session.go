package stats

import (
	"sync/atomic"
	"time"
)

// Session is the counters of one client session. Each is written by
// whoever relays that direction of the session (its event loop, or one of
// its two relay goroutines) once per read event, not per message, and
// read at scrape time; atomics make that safe without a lock. Under the
// build tag pgverbs_nocount the writes compile to nothing, for measuring
// what counting costs (see count.go).
type Session struct {
	bytesIn, bytesOut     atomic.Uint64
	transactions, queries atomic.Uint64
	state                 atomic.Uint32
	lastMessage           atomic.Int64 // Unix nanoseconds; 0 before the first
	command               atomic.Pointer[string]
}

// AddIn counts n bytes relayed from the client.
func (s *Session) AddIn(n int) {
	if Counting && n > 0 {
		s.bytesIn.Add(uint64(n))
	}
}

// AddOut counts n bytes relayed to the client.
func (s *Session) AddOut(n int) {
	if Counting && n > 0 {
		s.bytesOut.Add(uint64(n))
	}
}

// AddQueries counts n queries (Query and Sync messages) relayed to the
// server.
func (s *Session) AddQueries(n uint64) {
	if Counting && n > 0 {
		s.queries.Add(n)
	}
}

// AddTransactions counts n transactions ended: ReadyForQuery messages
// saying idle, each ending an autocommit statement or a transaction block
// (as PgBouncer's xact counts; those inside a block end none).
func (s *Session) AddTransactions(n uint64) {
	if Counting && n > 0 {
		s.transactions.Add(n)
	}
}

// SetState records what the session is doing.
func (s *Session) SetState(st State) {
	if Counting {
		s.state.Store(uint32(st))
	}
}

// SetStatus records the state a ReadyForQuery's transaction status byte
// says.
func (s *Session) SetStatus(status byte) { s.SetState(StateOf(status)) }

// Touch records that a message from the client arrived now. It reads the
// clock, so callers call it once per read event at most.
func (s *Session) Touch() {
	if Counting {
		s.lastMessage.Store(time.Now().UnixNano())
	}
}

// StartCommand records that pgverbs runs the command name in the session;
// EndCommand that it ended, with the session's transaction status then.
// Commands are rare: the pointer's allocation does not matter.
func (s *Session) StartCommand(name string) {
	s.command.Store(&name)
	s.state.Store(uint32(Command))
}

// EndCommand records the end of the command StartCommand recorded.
func (s *Session) EndCommand(status byte) {
	s.command.Store(nil)
	s.state.Store(uint32(StateOf(status)))
}

// StateOf returns the state a ReadyForQuery status byte ('I', 'T' or 'E')
// stands for.
func StateOf(status byte) State {
	switch status {
	case 'T':
		return InTransaction
	case 'E':
		return FailedTransaction
	}
	return Idle
}

// Fill copies the counters into c.
func (s *Session) Fill(c *Client) {
	c.BytesIn, c.BytesOut = s.bytesIn.Load(), s.bytesOut.Load()
	c.Transactions, c.Queries = s.transactions.Load(), s.queries.Load()
	c.State = State(s.state.Load())
	if ns := s.lastMessage.Load(); ns != 0 {
		c.LastMessageAt = time.Unix(0, ns)
	}
	if p := s.command.Load(); p != nil {
		c.Command = *p
	}
}

// AddSession adds the counters of a session to t: the totals of the
// sessions that ended, and of the live ones at scrape time.
func (t *Totals) AddSession(s *Session) {
	t.BytesIn += s.bytesIn.Load()
	t.BytesOut += s.bytesOut.Load()
	t.Transactions += s.transactions.Load()
	t.Queries += s.queries.Load()
}

// Counters are the server-wide counts of connections, written when a
// connection is accepted or refused (rare next to messages) and read at
// scrape time.
type Counters struct {
	accepted       atomic.Uint64
	refused        [numRefusals]atomic.Uint64
	cancels        [numCancelOutcomes]atomic.Uint64
	forwardsFailed atomic.Uint64
}

// Cancel counts a cancel request that ended with o.
func (c *Counters) Cancel(o CancelOutcome) {
	if o < numCancelOutcomes {
		c.cancels[o].Add(1)
	}
}

// CancelForwardFailed counts a forward to a peer that was not delivered.
func (c *Counters) CancelForwardFailed() { c.forwardsFailed.Add(1) }

// Accept counts an accepted connection.
func (c *Counters) Accept() { c.accepted.Add(1) }

// Refuse counts a connection refused for r.
func (c *Counters) Refuse(r Refusal) {
	if r < numRefusals {
		c.refused[r].Add(1)
	}
}

// Fill copies the counts into t.
func (c *Counters) Fill(t *Totals) {
	t.Accepted = c.accepted.Load()
	for i := range c.refused {
		t.Refused[i] = c.refused[i].Load()
	}
	for i := range c.cancels {
		t.Cancels[i] = c.cancels[i].Load()
	}
	t.CancelForwardFailures = c.forwardsFailed.Load()
}
