package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/localauth"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// Sessions pgverbs serves itself while the backend is unreachable
// (wal_auth_file): a standby's replication connection, served from the
// WAL archive, and an admin's session, which runs pgverbs's own commands
// only, so that FAILOVER WAL ARCHIVE can be run on the usual address when
// the primary is gone.

// localRW is the client's buffered connection as localauth reads and
// writes it.
type localRW struct {
	*bufio.Reader
	w *bufio.Writer
}

func (l localRW) Write(p []byte) (int, error) { return l.w.Write(p) }
func (l localRW) Flush() error                { return l.w.Flush() }

// serveLocally serves the session without a backend when the auth file
// allows it, and reports whether it did (false: the client gets the
// usual FATAL for an unreachable server).
func (s *session) serveLocally(p *startupPacket) bool {
	srv := s.srv
	la := srv.localAuth.Load()
	if la == nil {
		return false
	}
	replication := s.physical && srv.repl != nil && srv.repl.Active()
	if !replication && (s.replication || !la.admins[s.user]) {
		return false
	}
	// A role absent from the file gets the zero Entry: a mock exchange
	// that fails as a wrong password does, so that nobody learns which
	// roles exist.
	entry, _ := la.file.Lookup(s.user)
	if err := localauth.Authenticate(localRW{s.cr, s.cw}, s.user, entry); err != nil {
		var pe *pgerr.Error
		if errors.As(err, &pe) {
			s.sendFatal(pe)
			s.logger().Info("connection refused", zap.String("sqlstate", string(pe.Code)), zap.String("reason", pe.Message))
		}
		return true
	}
	s.backendPID = localPID()
	if err := s.writeRaw(srv.localStartupReply(s.backendPID)); err != nil {
		return true
	}
	s.publishInfo(p)
	_ = s.client.SetDeadline(time.Time{})
	s.logger().Info("backend unreachable: session authenticated by pgverbs", zap.Bool("replication", replication))
	if replication {
		s.mu.Lock()
		ctx, cancel := context.WithCancel(srv.replCtx)
		s.walCancel = cancel
		s.relay = true
		s.mu.Unlock()
		s.serveReplication(ctx, p)
		return true
	}
	s.serveAdmin(la.admins[s.user])
	return true
}

// localPID is a process id for a session without a server process: high
// enough not to look like a real one in logs.
func localPID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return 1<<30 | binary.BigEndian.Uint32(b[:])>>2
}

// defaultParams are sent when pgverbs never saw the server's: what
// clients need to talk at all.
var defaultParams = map[string]string{
	"server_version": "15", "server_encoding": "UTF8", "client_encoding": "UTF8", "DateStyle": "ISO, MDY",
	"integer_datetimes": "on", "standard_conforming_strings": "on", "TimeZone": "UTC",
}

// localStartupReply is AuthenticationOk, the server's ParameterStatus
// values as last seen, BackendKeyData and ReadyForQuery.
func (srv *Server) localStartupReply(pid uint32) []byte {
	b, _ := (&pgproto3.AuthenticationOk{}).Encode(nil)
	srv.paramsMu.Lock()
	params := srv.params
	if len(params) == 0 {
		params = defaultParams
	}
	for k, v := range params {
		b, _ = (&pgproto3.ParameterStatus{Name: k, Value: v}).Encode(b)
	}
	srv.paramsMu.Unlock()
	secret := make([]byte, 4)
	_, _ = rand.Read(secret)
	b, _ = (&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: secret}).Encode(b)
	return append(b, byte(pgwire.ReadyForQuery), 0, 0, 0, 5, pgwire.TxIdle)
}

// notAvailable is what any statement but pgverbs's gets in an admin
// session: the server is down, as a client would learn from it.
func notAvailable() *pgerr.Error {
	e := pgerr.New(pgerr.CannotConnectNow, "the database system is not accepting connections")
	e.Detail = "The server pgverbs fronts is unreachable; this session, authenticated by pgverbs itself, runs only pgverbs's commands."
	e.Hint = "Run SHOW WAL ARCHIVE, SHOW WAL STANDBYS or FAILOVER WAL ARCHIVE TO 'conninfo'."
	return e
}

// serveAdmin answers simple queries with pgverbs's commands until the
// client leaves.
func (s *session) serveAdmin(admin bool) {
	conn := &adminConn{s: s, admin: admin}
	for {
		typ, body, err := readFrontend(s.cr)
		if err != nil {
			return
		}
		switch pgwire.Frontend(typ) {
		case pgwire.Terminate:
			return
		case pgwire.Query:
			s.adminQuery(conn, strings.TrimRight(string(body), "\x00"))
		default:
			s.sendFatal(pgerr.NewFatal(pgerr.ProtocolViolation, "only simple queries are served while the database server is unreachable"))
			return
		}
		if err := s.cw.Flush(); err != nil {
			return
		}
	}
}

// adminQuery runs one Query of an admin session.
func (s *session) adminQuery(conn *adminConn, sql string) {
	out := s.cw
	defer func() { _, _ = out.Write([]byte{byte(pgwire.ReadyForQuery), 0, 0, 0, 5, pgwire.TxIdle}) }()
	stmts, found := s.srv.commands.Match(sql)
	fail := func(err error) {
		var pe *pgerr.Error
		if !errors.As(err, &pe) {
			pe = pgerr.New(pgerr.InternalError, "%v", err)
		}
		_, _ = out.Write(pe.AppendWire(nil))
	}
	if !found {
		fail(notAvailable())
		return
	}
	for _, st := range stmts {
		if st.Command == nil {
			fail(notAvailable())
			return
		}
	}
	preps, err := commands.ParseAll(sql, stmts)
	if err != nil {
		fail(err)
		return
	}
	for _, prep := range preps {
		res, err := prep.Execute(context.Background(), conn)
		if err != nil {
			fail(err)
			return
		}
		cols := prep.Columns()
		if len(cols) > 0 {
			_, _ = out.Write(rowDescription(cols, nil))
		}
		for _, r := range res.Rows {
			dr := pgproto3.DataRow{Values: make([][]byte, len(r))}
			for i, v := range r {
				if v != nil {
					dr.Values[i] = []byte(*v)
				}
			}
			b, _ := dr.Encode(nil)
			_, _ = out.Write(b)
		}
		b, _ := (&pgproto3.CommandComplete{CommandTag: []byte(res.Tag)}).Encode(nil)
		_, _ = out.Write(b)
	}
}

// readFrontend reads one client message of at most 1 MB.
func readFrontend(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n-4 > 1<<20 {
		return 0, nil, errors.New("proxy: invalid message length")
	}
	body := make([]byte, n-4)
	_, err := io.ReadFull(r, body)
	return hdr[0], body, err
}

// adminConn is commands.Conn for an admin session: no server to run
// statements on, the role's rights from wal_auth_admins.
type adminConn struct {
	s     *session
	admin bool // in wal_auth_admins when the session was authenticated
}

func (c *adminConn) Exec(string, ...*string) (*commands.Result, error) { return nil, notAvailable() }
func (c *adminConn) ExecBatch([]string) (int, error)                   { return 0, notAvailable() }
func (c *adminConn) User() string                                      { return c.s.user }
func (c *adminConn) Database() string                                  { return c.s.database }

// LocalAdmin implements commands.LocalAdmin.
func (c *adminConn) LocalAdmin() bool { return c.admin }

// Notice sends a NoticeResponse at once.
func (c *adminConn) Notice(severity, message, detail string) {
	b, _ := (&pgproto3.NoticeResponse{Severity: severity, SeverityUnlocalized: severity, Code: "01000", Message: message, Detail: detail}).Encode(nil)
	_, _ = c.s.cw.Write(b)
	_ = c.s.cw.Flush()
}
