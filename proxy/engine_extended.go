package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// The extended protocol of a command statement is emulated: Parse is
// answered ParseComplete and the command remembered by statement name;
// Bind, Describe, Execute and Close of it or its portal are answered by the
// engine, in order with the server's replies (the backend is acquired for
// each step, so everything before it was answered first).

// extParse handles Parse of a command statement.
func (e *engine) extParse(name string, stmts []commands.Statement, nparams int) error {
	return e.extStep(func(c *execConn) error {
		if err := e.refuseIfAborted(c); err != nil || c.failed {
			return err
		}
		if len(stmts) != 1 {
			return e.fail(c, pgerr.New(pgerr.SyntaxError, "cannot insert multiple commands into a prepared statement"))
		}
		if nparams > 0 {
			return e.fail(c, pgerr.New(pgerr.SyntaxError, "pgverbs commands take no parameters"))
		}
		prep, err := stmts[0].Command.Parse(stmts[0].SQL)
		if err != nil {
			return e.fail(c, err)
		}
		if e.stmts == nil {
			e.stmts = map[string]stmt{}
		}
		e.stmts[name] = stmt{prep: prep, name: stmts[0].Command.Name()}
		e.p.writeClient(pgwire.ParseCompleteMsg)
		return nil
	})
}

// extBind handles Bind of a command statement; rest is the Bind body after
// the portal and statement names.
func (e *engine) extBind(name string, st stmt, rest []byte) error {
	return e.extStep(func(c *execConn) error {
		if err := e.refuseIfAborted(c); err != nil || c.failed {
			return err
		}
		var b pgproto3.Bind
		// Decode wants the names too: two empty ones stand in.
		if err := b.Decode(append([]byte{0, 0}, rest...)); err != nil {
			return e.fail(c, pgerr.New(pgerr.ProtocolViolation, "invalid Bind message"))
		}
		if len(b.Parameters) > 0 {
			return e.fail(c, pgerr.New(pgerr.ProtocolViolation,
				"bind message supplies %d parameters, but prepared statement requires 0", len(b.Parameters)))
		}
		formats, err := resultFormats(st.prep.Columns(), b.ResultFormatCodes)
		if err != nil {
			return e.fail(c, err)
		}
		if e.portals == nil {
			e.portals = map[string]portal{}
		}
		e.portals[name] = portal{prep: st.prep, name: st.name, epoch: e.p.txEpoch(), formats: formats}
		e.p.writeClient(pgwire.BindCompleteMsg)
		return nil
	})
}

// extDescribe handles Describe of a command statement or portal.
func (e *engine) extDescribe(kind byte, p portal) error {
	return e.extStep(func(c *execConn) error {
		if kind == pgwire.KindStatement {
			b, _ := (&pgproto3.ParameterDescription{}).Encode(nil)
			e.p.writeClient(b)
		}
		if cols := p.prep.Columns(); len(cols) > 0 {
			e.p.writeClient(rowDescription(cols, p.formats))
		} else {
			e.p.writeClient(pgwire.NoDataMsg)
		}
		return nil
	})
}

// extClose handles Close of a command statement or portal.
func (e *engine) extClose(kind byte, name string) error {
	return e.extStep(func(c *execConn) error {
		if kind == pgwire.KindStatement {
			delete(e.stmts, name)
		} else {
			delete(e.portals, name)
		}
		e.p.writeClient(pgwire.CloseCompleteMsg)
		return nil
	})
}

// extExecute handles Execute of a command portal.
func (e *engine) extExecute(p portal) error {
	return e.extStep(func(c *execConn) error {
		if err := e.refuseIfAborted(c); err != nil || c.failed {
			return err
		}
		out, err := e.execute(c, p.name, p.prep)
		if err != nil {
			return e.fail(c, err)
		}
		return e.writeOutcome(c, p.prep.Columns(), p.formats, out, false)
	})
}

// errAborted is refused like PostgreSQL refuses Parse, Bind and Execute of
// anything but transaction control in a failed transaction.
var errAborted = &pgerr.Error{Severity: pgerr.SeverityError, Code: pgerr.InFailedSQLTransaction,
	Message: "current transaction is aborted, commands ignored until end of transaction block"}

// refuseIfAborted fails the step when the client's transaction is failed.
// It returns nil both when the step may go on and when it was refused
// (c.failed then tells).
func (e *engine) refuseIfAborted(c *execConn) error {
	if status, _, _ := e.p.state(); status == pgwire.TxFailed {
		return e.fail(c, errAborted)
	}
	return nil
}

// extStep runs one extended-protocol step of a command with the backend
// acquired. Like the server, it does nothing while the server discards
// messages after an error; an error it reports starts such discarding.
func (e *engine) extStep(step func(c *execConn) error) error {
	if err := e.p.acquire(); err != nil {
		return err
	}
	if _, discarding, _ := e.p.state(); !discarding {
		c := &execConn{e: e}
		if err := step(c); err != nil {
			return err
		}
		if c.failed {
			e.p.setDiscarding()
		}
	}
	return e.p.release()
}
