package walstream

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// readBufferSize is the socket read buffer: large enough for several of a
// walsender's 128 kB XLogData messages, so that a busy stream costs a read
// system call per few messages and Buffered sees a whole batch.
const readBufferSize = 1 << 20

// maxMessage bounds what a message's length word may claim: a walsender
// sends at most 128 kB of WAL a message, and result rows here are small
// (a history file is the largest).
const maxMessage = 64 << 20

// Conn is a replication connection of the proxy's own, after startup.
type Conn struct {
	nc     net.Conn
	r      *bufio.Reader
	buf    []byte // the body of the last message read
	params map[string]string
	pid    uint32
	// streaming is true between CopyBothResponse and the end of the copy.
	streaming bool
	// The message being read: its header (hdrN bytes of it so far) and
	// bodyN bytes of buf, kept across a read that timed out.
	hdr   [5]byte
	hdrN  int
	bodyN int
}

// New takes over pc, which must be idle (right after Connect): the
// caller must not use pc afterwards; Close closes the socket.
func New(pc *pgconn.PgConn) (*Conn, error) {
	params := map[string]string{}
	for _, k := range []string{"server_version", "integer_datetimes", "server_encoding"} {
		params[k] = pc.ParameterStatus(k)
	}
	pid := pc.PID()
	hc, err := pc.Hijack()
	if err != nil {
		return nil, err
	}
	return &Conn{nc: hc.Conn, r: bufio.NewReaderSize(hc.Conn, readBufferSize), params: params, pid: pid}, nil
}

// Close ends the connection (a Terminate first, as a polite client does;
// the server drops temporary slots either way).
func (c *Conn) Close() error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.nc.Write([]byte{'X', 0, 0, 0, 4})
	return c.nc.Close()
}

// NetConn is the socket, for deadlines and for closing it from another
// goroutine to interrupt a read.
func (c *Conn) NetConn() net.Conn { return c.nc }

// PID is the server process serving the connection (the walsender's pid
// in pg_stat_replication and pg_replication_slots.active_pid).
func (c *Conn) PID() uint32 { return c.pid }

// ServerVersion returns the server's major version (15 for "15.8").
func (c *Conn) ServerVersion() (int, error) {
	v := c.params["server_version"]
	digits := v
	if i := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = v[:i]
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("walstream: cannot parse server_version %q", v)
	}
	return n, nil
}

// Buffered reports how many bytes have arrived and not been read yet: 0
// means the messages read so far are a whole batch, as far as the socket
// knows. A receiver fsyncs and reports when it reaches 0.
func (c *Conn) Buffered() int { return c.r.Buffered() }

// watch makes a blocking read or write return once ctx ends; stop undoes
// it and reports ctx's error if that was why.
func (c *Conn) watch(ctx context.Context) (stop func(err error) error) {
	if ctx.Done() == nil {
		return func(err error) error { return err }
	}
	after := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	return func(err error) error {
		if !after() && ctx.Err() != nil {
			// The deadline was moved to the past: the connection cannot
			// be used again reliably, and ctx says why.
			return context.Cause(ctx)
		}
		return err
	}
}

// readMessage reads one message; its body stays valid until the next. A
// read that times out (a deadline set on NetConn to wake up, see
// ReadMessage) keeps what it read of the message, and the next call goes
// on from there: losing those bytes would break the framing of the rest
// of the stream.
func (c *Conn) readMessage() (byte, []byte, error) {
	if c.hdrN < len(c.hdr) {
		n, err := io.ReadFull(c.r, c.hdr[c.hdrN:])
		c.hdrN += n
		if err != nil {
			return 0, nil, err
		}
		n32 := binary.BigEndian.Uint32(c.hdr[1:])
		if n32 < 4 || n32 > maxMessage {
			c.hdrN = 0
			return 0, nil, fmt.Errorf("walstream: invalid message length %d for type %q", n32, c.hdr[0])
		}
		size := int(n32 - 4)
		if cap(c.buf) < size {
			c.buf = make([]byte, size)
		}
		c.buf = c.buf[:size]
		c.bodyN = 0
	}
	n, err := io.ReadFull(c.r, c.buf[c.bodyN:])
	c.bodyN += n
	if err != nil {
		return 0, nil, err
	}
	c.hdrN = 0
	return c.hdr[0], c.buf, nil
}

// write sends one message.
func (c *Conn) write(typ byte, body []byte) error {
	msg := make([]byte, 5, 5+len(body))
	msg[0] = typ
	binary.BigEndian.PutUint32(msg[1:], uint32(4+len(body)))
	_, err := c.nc.Write(append(msg, body...))
	return err
}

// serverError decodes an ErrorResponse.
func serverError(body []byte) error {
	var m pgproto3.ErrorResponse
	if err := m.Decode(body); err != nil {
		return fmt.Errorf("walstream: invalid ErrorResponse: %w", err)
	}
	return pgconn.ErrorResponseToPgError(&m)
}

// Field is a column of a result set.
type Field struct {
	Name string
	OID  uint32
}

// Result is one result set of a simple query; NULLs are nil.
type Result struct {
	Fields []Field
	Rows   [][][]byte
	Tag    string
}

// Query runs one replication command (or SQL on a replication=database
// connection) with the simple protocol and returns its result sets.
func (c *Conn) Query(ctx context.Context, sql string) (_ []Result, err error) {
	if c.streaming {
		return nil, errors.New("walstream: a query while streaming")
	}
	stop := c.watch(ctx)
	defer func() { err = stop(err) }()
	if err := c.write('Q', append([]byte(sql), 0)); err != nil {
		return nil, err
	}
	return c.results()
}

// results reads result sets up to ReadyForQuery; a server error is
// returned after ReadyForQuery, leaving the connection usable.
func (c *Conn) results() ([]Result, error) {
	var out []Result
	var cur *Result
	var failed error
	for {
		typ, body, err := c.readMessage()
		if err != nil {
			return nil, err
		}
		switch typ {
		case 'T':
			var m pgproto3.RowDescription
			if err := m.Decode(body); err != nil {
				return nil, fmt.Errorf("walstream: invalid RowDescription: %w", err)
			}
			out = append(out, Result{})
			cur = &out[len(out)-1]
			for _, f := range m.Fields {
				cur.Fields = append(cur.Fields, Field{Name: string(f.Name), OID: f.DataTypeOID})
			}
		case 'D':
			var m pgproto3.DataRow
			if err := m.Decode(body); err != nil {
				return nil, fmt.Errorf("walstream: invalid DataRow: %w", err)
			}
			if cur == nil {
				return nil, errors.New("walstream: DataRow without RowDescription")
			}
			row := make([][]byte, len(m.Values))
			for i, v := range m.Values {
				if v != nil {
					row[i] = append([]byte{}, v...)
				}
			}
			cur.Rows = append(cur.Rows, row)
		case 'C':
			tag := strings.TrimRight(string(body), "\x00")
			if cur == nil {
				out = append(out, Result{})
				cur = &out[len(out)-1]
			}
			cur.Tag = tag
			cur = nil
		case 'E':
			failed = serverError(body)
		case 'Z':
			return out, failed
		case 'N', 'S', 'I':
			// Notices, parameter changes, empty queries: nothing to keep.
		case 'W', 'H', 'G':
			return nil, fmt.Errorf("walstream: unexpected copy (%q) in a command's answer", typ)
		default:
			return nil, fmt.Errorf("walstream: unexpected message %q in a command's answer", typ)
		}
	}
}

// queryRow runs a command that returns exactly one row of at least n
// columns.
func (c *Conn) queryRow(ctx context.Context, sql string, n int) ([][]byte, error) {
	res, err := c.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	if len(res) == 0 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < n {
		return nil, fmt.Errorf("walstream: unexpected answer to %s", firstWord(sql))
	}
	return res[0].Rows[0], nil
}

func firstWord(sql string) string {
	if i := strings.IndexByte(sql, ' '); i > 0 {
		return sql[:i]
	}
	return sql
}
