package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/stats"
)

// The engine runs pgverbs commands inside the relayed stream. While a
// command runs, no further client message is read, so the client's view
// stays strictly ordered. See docs/ARCHITECTURE.md, "Commands inside the
// stream". Its files split along its seams: interception here, the
// commands.Conn over the wire (engine_conn.go), simple-query orchestration
// (engine_simple.go), extended-protocol emulation (engine_extended.go),
// result encoding (engine_result.go) and standalone commands
// (engine_standalone.go).

// port is all the engine sees of its session: the two connections'
// buffered writers, the backend's messages once acquired, and the ledger's
// state. Writes are not checked one by one: a failed write's error is
// sticky and surfaces at the next flush, which is always checked.
type port interface {
	writeClient(b []byte)
	flushClient() error
	writeBackend(b []byte)
	flushBackend() error
	// acquire waits until every reply owed to the client was forwarded,
	// then routes backend messages to next; release hands the backend back
	// to the relay, forwarding first what arrived but was not read.
	acquire() error
	release() error
	next() (backendMsg, error)
	// state is the transaction status of the last ReadyForQuery, whether
	// the server discards until Sync, and whether it waits for COPY data.
	state() (status byte, discarding, copyIn bool)
	// txEpoch counts transactions ended, for portal lifetimes.
	txEpoch() uint64
	// afterSync records the ReadyForQuery of the engine's own Sync.
	afterSync(status byte)
	// setDiscarding records that an error the engine caused makes the
	// server discard until Sync.
	setDiscarding()
	// watchClient calls cancel if the client goes away before stop is
	// called.
	watchClient(cancel func()) (stop func())
}

// internalName names the prepared statement and portal the engine uses for
// its own SQL. It is closed before each use, so a leftover never collides,
// and it never touches the client's unnamed statement or portal.
const internalName = "pgverbs_internal"

// engine holds the per-session state of commands: statements and portals
// prepared through the extended protocol, and the cancel function of the
// standalone command running.
type engine struct {
	p              port
	reg            *commands.Registry
	log            func() *zap.Logger
	user, database string

	stmts   map[string]stmt
	portals map[string]portal
	// cmdCancel cancels the standalone command running, if any, for a
	// CancelRequest; it is the only field other goroutines touch.
	cmdCancel atomic.Pointer[context.CancelFunc]

	// What commands are counted in: the session's state and the server's
	// recorders (stats.go).
	st      *stats.Session
	cmds    *stats.Commands
	backups *stats.Backups
}

// stmt is a command prepared by the client, and the command's name.
type stmt struct {
	prep commands.Prepared
	name string
}

// portal is a command bound by the client. It lives until the transaction
// it was bound in ends, as the server's portals do.
type portal struct {
	prep  commands.Prepared
	name  string
	epoch uint64
	// formats are the result format codes the client asked for in Bind.
	formats []int16
}

func newEngine(p port, reg *commands.Registry, log func() *zap.Logger, user, database string) *engine {
	return &engine{p: p, reg: reg, log: log, user: user, database: database,
		st: new(stats.Session), cmds: new(stats.Commands)}
}

// wants reports whether client messages of this type must be shown to
// claim: Query and Parse always (they may hold a command), the other
// extended-protocol messages while a command statement or portal exists.
func (e *engine) wants(typ pgwire.Frontend) bool {
	switch typ {
	case pgwire.Query, pgwire.Parse:
		return true
	case pgwire.Bind, pgwire.Describe, pgwire.Execute, pgwire.Close:
		return len(e.stmts) > 0 || len(e.portals) > 0
	}
	return false
}

// cancelRunning cancels the standalone command running, if any.
func (e *engine) cancelRunning() {
	if c := e.cmdCancel.Load(); c != nil {
		(*c)()
	}
}

// claim looks at a whole client message (header included) before it is
// forwarded. When the message is the engine's, it returns the step that
// answers it; the step owns copies of what it needs, so the caller may
// drop msg from its buffer before running it. Malformed bodies (a missing
// NUL) are not the engine's: the server rejects them in its own words.
func (e *engine) claim(typ pgwire.Frontend, msg []byte) (step func() error, ok bool) {
	body := msg[pgwire.HeaderLen:]
	switch typ {
	case pgwire.Query:
		sql, _, ok := cutCString(body)
		if !ok || !e.reg.MayContain(sql) {
			return nil, false
		}
		if _, _, copyIn := e.p.state(); copyIn {
			return nil, false
		}
		text := string(sql)
		stmts, found := e.reg.Match(text)
		if !found {
			return nil, false
		}
		return func() error { return e.simpleQuery(text, stmts) }, true
	case pgwire.Parse:
		name, rest, ok1 := cutCString(body)
		sql, rest, ok2 := cutCString(rest)
		if ok1 && len(name) == 0 {
			// A new unnamed statement replaces a command prepared unnamed.
			delete(e.stmts, "")
		}
		if !ok1 || !ok2 || !e.reg.MayContain(sql) {
			return nil, false
		}
		stmts, found := e.reg.Match(string(sql))
		if !found {
			return nil, false
		}
		stmtName, n := string(name), nparams(rest)
		return func() error { return e.extParse(stmtName, stmts, n) }, true
	case pgwire.Bind:
		portalName, rest, ok1 := cutCString(body)
		stmt, rest, ok2 := cutCString(rest)
		if !ok1 || !ok2 {
			return nil, false
		}
		st, ok := e.stmts[string(stmt)]
		if !ok {
			// The server's Bind replaces the portal of that name.
			delete(e.portals, string(portalName))
			return nil, false
		}
		name, params := string(portalName), bytes.Clone(rest)
		return func() error { return e.extBind(name, st, params) }, true
	case pgwire.Describe, pgwire.Close:
		if len(body) < 2 {
			return nil, false
		}
		kind, name := body[0], string(cstring(body[1:]))
		var p portal
		var ok bool
		if kind == pgwire.KindStatement {
			var st stmt
			st, ok = e.stmts[name]
			p.prep, p.name = st.prep, st.name
		} else {
			p, ok = e.lookupPortal(name)
		}
		if !ok {
			return nil, false
		}
		if typ == pgwire.Describe {
			return func() error { return e.extDescribe(kind, p) }, true
		}
		return func() error { return e.extClose(kind, name) }, true
	case pgwire.Execute:
		p, ok := e.lookupPortal(string(cstring(body)))
		if !ok {
			return nil, false
		}
		return func() error { return e.extExecute(p) }, true
	}
	return nil, false
}

// lookupPortal returns the live command portal of that name.
func (e *engine) lookupPortal(name string) (portal, bool) {
	p, ok := e.portals[name]
	if !ok {
		return portal{}, false
	}
	if p.epoch != e.p.txEpoch() {
		delete(e.portals, name)
		return portal{}, false
	}
	return p, true
}

// cutCString splits a NUL-terminated string off the front of b.
func cutCString(b []byte) (str, rest []byte, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return nil, nil, false
	}
	return b[:i], b[i+1:], true
}

// cstring returns b up to its first NUL, or all of b.
func cstring(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// nparams returns the parameter type count of a Parse body tail.
func nparams(tail []byte) int {
	if len(tail) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(tail))
}
