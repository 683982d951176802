package proxy

import (
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// execConn implements commands.Conn over the acquired backend. Statements
// run with the extended protocol on the internal statement and portal,
// followed by Flush and never Sync, so all of a command's statements share
// the client's transaction.
type execConn struct {
	e *engine
	// failed is set once the server reported an error: it now discards
	// everything until Sync.
	failed bool
}

// User implements commands.Conn.
func (c *execConn) User() string { return c.e.user }

// Database implements commands.Conn.
func (c *execConn) Database() string { return c.e.database }

// Notice implements commands.Conn.
func (c *execConn) Notice(severity, message, detail string) {
	n := pgproto3.NoticeResponse{Severity: severity, SeverityUnlocalized: severity, Code: string(pgerr.SuccessfulCompletion), Message: message, Detail: detail}
	b, _ := n.Encode(nil)
	c.e.p.writeClient(b)
	// Progress notices of long commands must reach psql as they happen; a
	// client gone shows at the command's next flush.
	_ = c.e.p.flushClient()
}

// appendRun appends the messages that run sql on the internal statement
// and portal, with a Describe when the rows are wanted.
func appendRun(buf []byte, sql string, params [][]byte, describe bool) []byte {
	buf, _ = (&pgproto3.Close{ObjectType: pgwire.KindStatement, Name: internalName}).Encode(buf)
	buf, _ = (&pgproto3.Close{ObjectType: pgwire.KindPortal, Name: internalName}).Encode(buf)
	buf, _ = (&pgproto3.Parse{Name: internalName, Query: sql}).Encode(buf)
	buf, _ = (&pgproto3.Bind{DestinationPortal: internalName, PreparedStatement: internalName, Parameters: params}).Encode(buf)
	if describe {
		buf, _ = (&pgproto3.Describe{ObjectType: pgwire.KindPortal, Name: internalName}).Encode(buf)
	}
	buf, _ = (&pgproto3.Execute{Portal: internalName}).Encode(buf)
	return buf
}

// Exec implements commands.Conn.
func (c *execConn) Exec(sql string, args ...*string) (*commands.Result, error) {
	if c.failed {
		return nil, errors.New("engine: Exec after a server error")
	}
	params := make([][]byte, len(args))
	for i, a := range args {
		if a != nil {
			params[i] = []byte(*a)
		}
	}
	buf := appendRun(nil, sql, params, true)
	if err := c.e.sendBackend(append(buf, pgwire.FlushMsg...)); err != nil {
		return nil, err
	}
	res := &commands.Result{}
	if _, err := c.readReplies(1, res); err != nil {
		return nil, err
	}
	return res, nil
}

// ExecBatch implements commands.Conn: all statements go out with one
// Flush and their replies are read afterwards. After an error the server
// skips the rest (it discards until Sync), so replies stop there.
func (c *execConn) ExecBatch(sqls []string) (int, error) {
	if c.failed {
		return -1, errors.New("engine: ExecBatch after a server error")
	}
	var buf []byte
	for _, sql := range sqls {
		buf = appendRun(buf, sql, nil, false)
	}
	if err := c.e.sendBackend(append(buf, pgwire.FlushMsg...)); err != nil {
		return -1, err
	}
	return c.readReplies(len(sqls), nil)
}

// readReplies reads the replies to n statements sent by Exec or ExecBatch,
// up to the first error, collecting the last statement's rows into res
// when it is not nil. It returns how many statements completed.
func (c *execConn) readReplies(n int, res *commands.Result) (done int, err error) {
	for done < n {
		m, err := c.e.p.next()
		if err != nil {
			return done, err
		}
		body := m.msg[pgwire.HeaderLen:]
		switch m.typ {
		case pgwire.ParseComplete, pgwire.BindComplete, pgwire.CloseComplete, pgwire.NoData:
		case pgwire.RowDescription:
			if res == nil {
				break
			}
			var rd pgproto3.RowDescription
			if err := rd.Decode(body); err != nil {
				return done, err
			}
			for _, f := range rd.Fields {
				res.Fields = append(res.Fields, string(f.Name))
			}
		case pgwire.DataRow:
			if res == nil {
				break
			}
			var dr pgproto3.DataRow
			if err := dr.Decode(body); err != nil {
				return done, err
			}
			// Decode aliases m.msg, which is ours to keep: no copy needed.
			res.Rows = append(res.Rows, dr.Values)
		case pgwire.CommandComplete, pgwire.EmptyQueryResponse:
			if res != nil && m.typ == pgwire.CommandComplete {
				res.Tag = string(cstring(body))
			}
			done++
		case pgwire.ErrorResponse:
			c.failed = true
			return done, serverError(m.msg)
		case pgwire.CopyInResponse:
			// COPY FROM STDIN inside a command cannot get data: abort it.
			if err := c.e.sendBackend(append(copyFailMsg("COPY FROM STDIN is not supported inside a pgverbs command"), pgwire.FlushMsg...)); err != nil {
				return done, err
			}
		default:
			c.e.forwardAsync(m)
		}
	}
	return done, nil
}

// forwardAsync passes a message the engine does not consume to the client:
// notices, notifications and parameter changes.
func (e *engine) forwardAsync(m backendMsg) {
	switch m.typ {
	case pgwire.NoticeResponse, pgwire.NotificationResponse, pgwire.ParameterStatus:
		e.p.writeClient(m.msg)
	default:
		e.log().Debug("engine dropped unexpected backend message", zap.String("type", string(m.typ)))
	}
}

// sendBackend writes b to the backend and flushes it.
func (e *engine) sendBackend(b []byte) error {
	e.p.writeBackend(b)
	return e.p.flushBackend()
}

func copyFailMsg(reason string) []byte {
	b, _ := (&pgproto3.CopyFail{Message: reason}).Encode(nil)
	return b
}

func serverError(msg []byte) *commands.ServerError {
	var er pgproto3.ErrorResponse
	_ = er.Decode(msg[pgwire.HeaderLen:])
	return &commands.ServerError{Raw: msg, Code: pgerr.Code(er.Code), Message: er.Message}
}

// abortSQL is the statement the engine runs to put the server's transaction
// into the failed state when a command fails on the proxy's side, so that
// the client's transaction behaves as if the server had raised the error.
const abortSQL = `DO $pgverbs$ BEGIN RAISE EXCEPTION 'pgverbs command failed'; END $pgverbs$`

// fail reports a command's error to the client and makes sure the server's
// transaction is failed too: a server error already did that; for an error
// of the proxy's own, a failing statement does it and its error is dropped.
// Only a lost backend is returned: the session cannot go on.
func (e *engine) fail(c *execConn, err error) error {
	var se *commands.ServerError
	if errors.As(err, &se) {
		e.p.writeClient(se.Raw)
		return nil
	}
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		if errors.Is(err, errBackendGone) {
			return err
		}
		e.log().Error("command failed", zap.Error(err))
		pe = pgerr.New(pgerr.InternalError, "pgverbs internal error: %v", err)
	}
	if !c.failed {
		if _, aerr := c.Exec(abortSQL); aerr == nil {
			return errors.New("engine: abort statement did not fail")
		} else if !errors.As(aerr, &se) {
			return aerr
		}
	}
	e.p.writeClient(pe.AppendWire(nil))
	return nil
}
