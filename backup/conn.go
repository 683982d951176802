package backup

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// pollInterval bounds how long a receive blocks before the loops check
// for cancellation (and, for WAL, send status updates).
const pollInterval = 500 * time.Millisecond

// msgConn reads protocol messages with a read deadline, so that the loops
// notice ctx ending within pollInterval without a goroutine per message.
// It serves BASE_BACKUP's connection and the SQL method's; the WAL
// streamer's is a walstream.Conn, shared with the WAL archive.
type msgConn struct {
	ctx      context.Context
	conn     *pgconn.PgConn
	what     string // e.g. "BASE_BACKUP", for errors
	warnings *[]string
}

// errTimeout is returned by receive when nothing arrived within
// pollInterval.
var errTimeout = errors.New("receive timeout")

// receive returns the next message other than a notice (notices are added
// to the warnings). The message is only valid until the next receive.
func (c *msgConn) receive() (pgproto3.BackendMessage, error) {
	for {
		if err := c.ctx.Err(); err != nil {
			return nil, canceledError(c.ctx)
		}
		_ = c.conn.Conn().SetReadDeadline(time.Now().Add(pollInterval))
		msg, err := c.conn.ReceiveMessage(context.Background())
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.conn.IsClosed() {
				return nil, errTimeout
			}
			if c.ctx.Err() != nil {
				return nil, canceledError(c.ctx)
			}
			return nil, serverError(c.what, err)
		}
		switch m := msg.(type) {
		case *pgproto3.NoticeResponse:
			if c.warnings != nil {
				*c.warnings = append(*c.warnings, noticeText(m))
			}
			continue
		case *pgproto3.ParameterStatus:
			continue
		case *pgproto3.ErrorResponse:
			return nil, serverError(c.what, pgconn.ErrorResponseToPgError(m))
		}
		return msg, nil
	}
}

// next is receive that waits through timeouts.
func (c *msgConn) next() (pgproto3.BackendMessage, error) {
	for {
		msg, err := c.receive()
		if err == errTimeout {
			continue
		}
		return msg, err
	}
}

func noticeText(m *pgproto3.NoticeResponse) string {
	s := m.Severity + ": " + m.Message
	if m.Detail != "" {
		s += " (" + m.Detail + ")"
	}
	return s
}

// send writes a simple Query.
func (c *msgConn) send(sql string) error {
	c.conn.Frontend().SendQuery(&pgproto3.Query{String: sql})
	if err := c.conn.Frontend().Flush(); err != nil {
		return serverError(c.what, err)
	}
	return nil
}

// resultSet reads one result set up to its CommandComplete; NULLs are
// returned as nil.
func (c *msgConn) resultSet() (cols []string, rows [][][]byte, err error) {
	for {
		msg, err := c.next()
		if err != nil {
			return nil, nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			cols = cols[:0]
			for _, f := range m.Fields {
				cols = append(cols, string(f.Name))
			}
		case *pgproto3.DataRow:
			row := make([][]byte, len(m.Values))
			for i, v := range m.Values {
				if v != nil {
					row[i] = append([]byte{}, v...)
				}
			}
			rows = append(rows, row)
		case *pgproto3.CommandComplete:
			return cols, rows, nil
		default:
			return nil, nil, protocolError("unexpected %T in a result set of %s", msg, c.what)
		}
	}
}

// untilReady reads up to ReadyForQuery.
func (c *msgConn) untilReady() error {
	for {
		msg, err := c.next()
		if err != nil {
			return err
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return nil
		}
	}
}

// serverMajor returns the server's major version (15 for "15.8").
func serverMajor(conn *pgconn.PgConn) (int, error) {
	v := conn.ParameterStatus("server_version")
	digits := v
	if i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = v[:i]
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 {
		return 0, protocolError("cannot parse server_version %q", v)
	}
	return n, nil
}

// showSetting runs SHOW name (which replication connections accept too).
func showSetting(ctx context.Context, conn *pgconn.PgConn, name string) (string, error) {
	res, err := conn.Exec(ctx, "SHOW "+name).ReadAll()
	if err != nil {
		return "", err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return "", protocolError("unexpected answer to SHOW %s", name)
	}
	return string(res[0].Rows[0][0]), nil
}

// walSegmentSize asks the server for wal_segment_size in bytes, on a
// connection that is not a walstream one (the SQL method's).
func walSegmentSize(ctx context.Context, conn *pgconn.PgConn) (uint64, error) {
	v, err := showSetting(ctx, conn, "wal_segment_size")
	if err != nil {
		return 0, err
	}
	n, err := walstream.ParseSize(v)
	if err != nil || !walarchive.ValidSegmentSize(n) {
		return 0, protocolError("invalid wal_segment_size %q", v)
	}
	return n, nil
}

// readBufferSize is the read buffer of a backup connection (the WAL
// streamer's has walstream's own, as large). pgconn reads
// messages into an 8 kB buffer, which costs a read system call per 8 kB of
// the server's 32 kB CopyData and 1 MB DataRow messages; a buffer the size
// of several messages cuts the system calls of a backup's main loop by
// that factor (an uncompressed tar backup of 1 GB: 2.0-2.7 s before,
// 1.2-1.5 s after).
const readBufferSize = 1 << 20

// connect opens a connection with o.Connect and gives it a large read
// buffer: the connection is taken over from pgconn (possible only while it
// is idle, as it is right after the startup) and rebuilt with a buffered
// reader under its message reader.
func (s *settings) connect(ctx context.Context, replication bool) (*pgconn.PgConn, error) {
	conn, err := s.Connect(ctx, replication)
	if err != nil {
		return nil, err
	}
	hc, err := conn.Hijack()
	if err != nil {
		closeConn(conn)
		return nil, err
	}
	cfg := hc.Config.Copy()
	build := cfg.BuildFrontend
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return build(bufio.NewReaderSize(r, readBufferSize), w)
	}
	hc.Config = cfg
	conn, err = pgconn.Construct(hc)
	if err != nil {
		hc.Conn.Close()
		return nil, err
	}
	return conn, nil
}

// closeConn closes a connection without waiting long: on the server, that
// ends a running BASE_BACKUP or SQL-level backup and drops temporary slots.
func closeConn(conn *pgconn.PgConn) {
	if conn == nil {
		return
	}
	_ = conn.Conn().SetDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// replLiteral quotes s as a string literal of the replication command
// grammar, which knows only ” for a quote (no backslash escapes).
func replLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
