package stats

import (
	"sync/atomic"
	"time"
)

// State is what a client session is doing, as the relay sees it.
type State uint32

// The states of a client session. Idle, InTransaction and
// FailedTransaction come from the last ReadyForQuery's status byte; Active
// is set while a forwarded query awaits it; Command while pgverbs runs one
// of its own commands in the session.
const (
	Startup State = iota
	Idle
	Active
	InTransaction
	FailedTransaction
	Command
)

// String returns the state as SHOW PGVERBS CLIENTS and the metrics' state
// label spell it (pg_stat_activity's words where it has them).
func (s State) String() string {
	switch s {
	case Startup:
		return "startup"
	case Idle:
		return "idle"
	case Active:
		return "active"
	case InTransaction:
		return "idle in transaction"
	case FailedTransaction:
		return "idle in transaction (aborted)"
	case Command:
		return "command"
	}
	return "unknown"
}

// States lists every state, in order, for code that reports each.
var States = []State{Startup, Idle, Active, InTransaction, FailedTransaction, Command}

// Refusal is why a client connection was refused before its session
// started relaying.
type Refusal uint32

// The reasons a connection is refused.
const (
	RefusedLimit              Refusal = iota // max_client_conns reached
	RefusedAuth                              // the server refused the login (28P01, 28000, ...)
	RefusedBackendUnreachable                // no backend connection could be opened
	RefusedTLS                               // the TLS handshake with the client or the server failed
	RefusedOther                             // anything else the startup phase refused
	numRefusals
)

// String returns the reason as the metrics' reason label spells it.
func (r Refusal) String() string {
	switch r {
	case RefusedLimit:
		return "limit"
	case RefusedAuth:
		return "auth_failure"
	case RefusedBackendUnreachable:
		return "backend_unreachable"
	case RefusedTLS:
		return "tls_error"
	case RefusedOther:
		return "other"
	}
	return "unknown"
}

// Refusals lists every reason, in order.
var Refusals = []Refusal{RefusedLimit, RefusedAuth, RefusedBackendUnreachable, RefusedTLS, RefusedOther}

// CancelOutcome is what became of a cancel request an instance received,
// from a client or forwarded by a peer.
type CancelOutcome uint32

// The outcomes of a cancel request; every request has exactly one.
const (
	CancelMatched   CancelOutcome = iota // a session of this instance: passed to its server
	CancelForwarded                      // another instance's: sent on to its peer (3.0: to every peer)
	CancelDropped                        // no session here and no peer to ask: unknown key, unconfigured peer, or forwarding at capacity
	numCancelOutcomes
)

// String is the outcome's label value.
func (o CancelOutcome) String() string {
	switch o {
	case CancelMatched:
		return "matched"
	case CancelForwarded:
		return "forwarded"
	case CancelDropped:
		return "dropped"
	}
	return "unknown"
}

// CancelOutcomes lists every outcome, in order.
var CancelOutcomes = []CancelOutcome{CancelMatched, CancelForwarded, CancelDropped}

// Client is one client session as SHOW PGVERBS CLIENTS lists it.
type Client struct {
	// PID is the server process id of the session's backend connection (0
	// before it has one), the key to pg_stat_activity.
	PID                   uint32
	User, Database        string
	ApplicationName       string
	Addr                  string // the client's address, host:port
	TLS                   bool   // the client's connection is encrypted
	State                 State
	ConnectedAt           time.Time
	LastMessageAt         time.Time // zero before the first message after startup
	BytesIn, BytesOut     uint64    // from the client, to the client
	Transactions, Queries uint64
	Command               string // the pgverbs command running, if any (e.g. "BASE BACKUP")
}

// Totals are the server-wide counters since the process started, closed
// sessions included.
type Totals struct {
	Accepted uint64
	// Refused counts refused connections by reason; index it with a
	// Refusal.
	Refused               [numRefusals]uint64
	BytesIn, BytesOut     uint64 // from clients, to clients
	Transactions, Queries uint64
	// Cancels counts the cancel requests received by outcome; index it
	// with a CancelOutcome. Their sum is the requests received.
	Cancels [numCancelOutcomes]uint64
	// CancelForwardFailures counts forwards to a peer that were not
	// delivered: the dial or the write failed or timed out, or too many
	// were in flight.
	CancelForwardFailures uint64
}

// Source is what the proxy offers to those who report on it. Clients may
// filter nothing: callers apply visibility rules themselves.
type Source interface {
	// Clients returns a snapshot of every client session.
	Clients() []Client
	// Totals returns the counters since start.
	Totals() Totals
}

// Deferred is a Source that reads one set later: the commands that report
// on the proxy are registered before the proxy exists. Before Set it
// reports no clients and zero totals.
type Deferred struct {
	src atomic.Pointer[Source]
}

// Set makes d read src.
func (d *Deferred) Set(src Source) { d.src.Store(&src) }

// Clients implements Source.
func (d *Deferred) Clients() []Client {
	if p := d.src.Load(); p != nil {
		return (*p).Clients()
	}
	return nil
}

// Totals implements Source.
func (d *Deferred) Totals() Totals {
	if p := d.src.Load(); p != nil {
		return (*p).Totals()
	}
	return Totals{}
}
