package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// simpleQuery runs a Query message that contains at least one command. The
// statements run in order on the backend through the extended protocol, in
// one implicit transaction ended by a single Sync, so the whole string is
// atomic as PostgreSQL makes a multi-statement query; the client sees the
// replies a simple query gives.
func (e *engine) simpleQuery(sql string, stmts []commands.Statement) error {
	if err := e.p.acquire(); err != nil {
		return err
	}
	c := &execConn{e: e}
	preps, err := commands.ParseAll(sql, stmts)
	if err == nil && len(stmts) > 1 {
		for _, p := range preps {
			if _, ok := p.(commands.Standalone); ok {
				err = errInBlock(commandName(p))
			}
		}
	}
	if err != nil {
		if err := e.fail(c, err); err != nil {
			return err
		}
	}
	for i, st := range stmts {
		if c.failed {
			break
		}
		var err error
		if st.Command == nil {
			err = e.relayStatement(c, st.SQL)
		} else {
			err = e.runCommand(c, st.Command.Name(), preps[i])
		}
		if err != nil {
			return err
		}
	}
	if err := e.syncEngine(); err != nil {
		return err
	}
	return e.p.release()
}

// runCommand runs one parsed command of a simple query, writing its
// replies.
func (e *engine) runCommand(c *execConn, name string, prep commands.Prepared) error {
	out, err := e.execute(c, name, prep)
	if err != nil {
		return e.fail(c, err)
	}
	return e.writeOutcome(c, prep.Columns(), nil, out, true)
}

// relayStatement runs a client's ordinary statement from a simple query
// that also holds commands, forwarding the replies a simple query gives
// (those of the extended protocol's own steps left out).
func (e *engine) relayStatement(c *execConn, sql string) error {
	var buf []byte
	buf, _ = (&pgproto3.Parse{Query: sql}).Encode(buf)
	buf, _ = (&pgproto3.Bind{}).Encode(buf)
	buf, _ = (&pgproto3.Describe{ObjectType: pgwire.KindPortal}).Encode(buf)
	buf, _ = (&pgproto3.Execute{}).Encode(buf)
	if err := e.sendBackend(append(buf, pgwire.FlushMsg...)); err != nil {
		return err
	}
	for {
		m, err := e.p.next()
		if err != nil {
			return err
		}
		switch m.typ {
		case pgwire.ParseComplete, pgwire.BindComplete, pgwire.NoData:
		case pgwire.CommandComplete, pgwire.EmptyQueryResponse:
			e.p.writeClient(m.msg)
			return nil
		case pgwire.ErrorResponse:
			e.p.writeClient(m.msg)
			c.failed = true
			return nil
		case pgwire.CopyInResponse:
			if err := e.sendBackend(append(copyFailMsg("COPY FROM STDIN cannot be combined with pgverbs commands in one query string"), pgwire.FlushMsg...)); err != nil {
				return err
			}
		default:
			// RowDescription, DataRow, COPY OUT data, notices...
			e.p.writeClient(m.msg)
		}
	}
}

// syncEngine ends the engine's implicit transaction with Sync and forwards
// the ReadyForQuery, which carries the true transaction status.
func (e *engine) syncEngine() error {
	if err := e.sendBackend(pgwire.SyncMsg); err != nil {
		return err
	}
	for {
		m, err := e.p.next()
		if err != nil {
			return err
		}
		if m.typ == pgwire.ReadyForQuery {
			e.p.afterSync(m.msg[pgwire.HeaderLen])
			e.st.SetStatus(m.msg[pgwire.HeaderLen])
			e.p.writeClient(m.msg)
			return nil
		}
		e.forwardAsync(m)
	}
}
