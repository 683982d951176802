package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgverbs/pgverbs/backend"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/walsender"
)

// bufSize is the size of each of a session's four buffers. Large enough to
// batch many small messages per syscall, small enough that a thousand idle
// sessions stay cheap.
const bufSize = 16 << 10

// killGrace is how long a session told to terminate may take to deliver its
// FATAL message before its sockets are closed under it.
const killGrace = 2 * time.Second

// session is one client connection and its backend connection. Its phases
// are described in doc.go.
type session struct {
	srv *Server
	id  uint64
	// log is built on first use (logger): most sessions never log, and an
	// idle one should cost as little as possible. Atomic: a cancel request
	// from another connection logs on the target session.
	log        atomic.Pointer[zap.Logger]
	remoteAddr string

	client net.Conn
	cr     *bufio.Reader
	cw     *bufio.Writer

	backend net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	// target is the server backend was dialled at (cancels go there).
	target *backend.Target

	user, database string
	replication    bool
	// physical: replication=true (a walsender for standbys), not
	// replication=database.
	physical bool
	// walCancel ends the session while pgverbs's walsender serves it.
	walCancel context.CancelFunc

	// h shares the ledger between the relay goroutines and hands the
	// backend to the engine (handoff.go); eng runs commands (engine.go).
	h   *handoff
	eng *engine
	// ls is the session's state in the event loop, once handed to it.
	ls *loopSession
	// minor is the protocol minor version in effect, for the cancel key size.
	minor uint16

	backendPID    uint32
	backendSecret []byte
	key           cancelKey

	mu      sync.Mutex // guards relaying, and the conns while they change
	relay   bool       // in the relay phase
	killed  atomic.Pointer[pgerr.Error]
	counted bool // counted in srv.clients

	// backendFatal is set when the backend's last message was FATAL, so the
	// proxy adds no error of its own when the server then closes.
	backendFatal bool
	// clientDone is set when the client sent Terminate or went away.
	clientDone atomic.Bool

	// st is what the relay counts; info what startup settled (stats.go).
	st          stats.Session
	info        atomic.Pointer[clientInfo]
	connectedAt time.Time
	// refusalCounted is set once the session counted its refusal.
	refusalCounted bool
	// Counts of the goroutine relay not yet added to st: each goroutine
	// adds per message to its own and publishes per read (relay.go).
	up   pending // the client goroutine's
	down pending // the backend goroutine's
}

// startupBufSize sizes the startup buffers of a session the event loop
// will relay: the startup phase's messages are small, and the loop reads
// into pooled buffers of its own.
const startupBufSize = 2 << 10

func newSession(srv *Server, conn net.Conn) *session {
	size := bufSize
	if srv.loops != nil {
		size = startupBufSize
	}
	return &session{
		srv:         srv,
		id:          srv.nextID.Add(1),
		remoteAddr:  conn.RemoteAddr().String(),
		connectedAt: time.Now(),
		client:      conn,
		cr:          bufio.NewReaderSize(conn, size),
		cw:          bufio.NewWriterSize(conn, size),
	}
}

// logger returns the session's logger, naming the session, its client and,
// once known, its user and database.
func (s *session) logger() *zap.Logger {
	if l := s.log.Load(); l != nil {
		return l
	}
	fields := []zap.Field{zap.Uint64("session", s.id), zap.String("client", s.remoteAddr)}
	if s.user != "" {
		fields = append(fields, zap.String("user", s.user), zap.String("database", s.database))
	}
	l := s.srv.log.With(fields...)
	if !s.log.CompareAndSwap(nil, l) {
		return s.log.Load()
	}
	return l
}

// debug logs at debug level without building the session's logger when
// that level is off.
func (s *session) debug(msg string, fields ...zap.Field) {
	if s.srv.log.Core().Enabled(zapcore.DebugLevel) {
		s.logger().Debug(msg, fields...)
	}
}

// serve runs the session's phases in order; see doc.go. It reports whether
// the session was handed to an event loop, which then ends it.
func (s *session) serve() (handed bool) {
	defer func() {
		if !handed {
			s.close()
		}
	}()
	lim := s.srv.limits.Load()
	_ = s.client.SetDeadline(time.Now().Add(lim.AuthTimeout))

	p, err := s.negotiate()
	if err != nil {
		s.endStartup(err)
		return
	}
	if p.kind == kindCancel || p.kind == kindForwardedCancel {
		s.srv.handleCancel(s.logger(), p)
		return false
	}
	if p.verbatim {
		s.relayRefusal(p)
		return false
	}
	s.user, s.database = p.param("user"), p.param("database")
	if s.database == "" {
		s.database = s.user
	}
	// Built again with the user and database when next needed.
	s.log.Store(nil)
	s.eng = newEngine(goPort{s}, s.srv.commands, s.logger, s.user, s.database)
	s.eng.st, s.eng.cmds, s.eng.backups = &s.st, &s.srv.cmds, &s.srv.backups
	if n := s.srv.clients.Add(1); n > int64(lim.MaxClientConns) {
		s.srv.clients.Add(-1)
		s.refuse(stats.RefusedLimit)
		s.sendFatal(pgerr.TooManyClients())
		s.logger().Warn("connection refused: max_client_conns reached", zap.Int("max_client_conns", lim.MaxClientConns))
		return false
	}
	s.counted = true
	if err := s.connectBackend(p); err != nil {
		if s.backend == nil && s.serveLocally(p) {
			return false
		}
		s.endStartup(err)
		return false
	}
	if ok, err := s.relayAuth(p); !ok {
		s.endStartup(err)
		return false
	}
	s.publishInfo(p)
	_ = s.client.SetDeadline(time.Time{})
	_ = s.backend.SetDeadline(time.Time{})
	s.debug("session established", zap.Bool("replication", s.replication), zap.Uint32("backend_pid", s.backendPID))

	s.mu.Lock()
	if s.killed.Load() != nil {
		s.mu.Unlock()
		s.sendFatal(s.killed.Load())
		return false
	}
	s.relay = true
	walsender := s.physical && s.srv.repl != nil && s.srv.repl.Active()
	var ctx context.Context
	if walsender {
		ctx, s.walCancel = context.WithCancel(s.srv.replCtx)
	}
	s.mu.Unlock()
	if walsender {
		s.serveReplication(ctx, p)
		return false
	}
	if s.toLoop() {
		return true
	}
	s.h = newHandoff()
	if s.cr.Size() < bufSize {
		// Startup buffers were sized for the loop, which cannot take this
		// session (TLS on the backend side).
		s.cr = bufio.NewReaderSize(s.cr, bufSize)
		s.cw = bufio.NewWriterSize(s.client, bufSize)
	}
	if s.br.Size() < bufSize {
		s.br = bufio.NewReaderSize(s.br, bufSize)
		s.bw = bufio.NewWriterSize(s.backend, bufSize)
	}
	s.relayLoops()
	return false
}

// serveReplication hands a physical replication session to pgverbs's
// walsender, which answers it from the WAL archive.
func (s *session) serveReplication(ctx context.Context, p *startupPacket) {
	s.debug("replication session served by pgverbs")
	s.srv.repl.Serve(ctx, &walsender.Session{
		Client: s.client, ClientR: s.cr, ClientW: s.cw,
		Backend: s.backend, BackendR: s.br, BackendW: s.bw,
		User: s.user, ApplicationName: p.param("application_name"), ClientAddr: s.remoteAddr,
		PID: s.backendPID, ServerMajor: int(s.srv.serverMajor.Load()),
	})
	s.mu.Lock()
	s.walCancel()
	s.backend = nil // closed by the walsender
	s.mu.Unlock()
}

// relayRefusal passes a startup packet the proxy cannot read to the server
// and the server's answer, a FATAL in whatever format the packet's
// protocol calls for, back to the client as it comes, up to the server's
// close.
func (s *session) relayRefusal(p *startupPacket) {
	s.logger().Info("startup packet the proxy cannot read; the server answers it",
		zap.String("protocol", fmt.Sprintf("%d.%d", p.major, p.minor)))
	if err := s.connectBackend(p); err != nil {
		s.endStartup(err)
		return
	}
	// A refusal is one short message; the cap keeps a server that goes on
	// from using the proxy as a pipe before authentication.
	if _, err := io.Copy(s.cw, io.LimitReader(s.br, 64<<10)); err != nil && !isClosed(err) {
		s.debug("relaying the server's refusal failed", zap.Error(err))
	}
	_ = s.cw.Flush()
}

// endStartup reports a startup failure: to the client as an error where it
// is one the client should see, and to the log.
func (s *session) endStartup(err error) {
	if k := s.killed.Load(); k != nil {
		err = k
	}
	var pe *pgerr.Error
	switch {
	case err == nil:
	case errors.As(err, &pe):
		s.refuse(stats.RefusedOther)
		s.sendFatal(pe)
		s.logger().Info("connection refused", zap.String("sqlstate", string(pe.Code)), zap.String("reason", pe.Message))
	case isClosed(err):
		s.logger().Debug("client left during startup", zap.Error(err))
	default:
		s.refuse(stats.RefusedOther)
		s.logger().Info("startup failed", zap.Error(err))
	}
}

// negotiate reads startup-phase packets, answering SSLRequest and
// GSSENCRequest, until a startup message or cancel request arrives.
func (s *session) negotiate() (*startupPacket, error) {
	tlsDone, sslDone, gssDone := false, false, false
	for {
		// PostgreSQL 17 direct TLS starts with a TLS ClientHello instead of
		// a length word.
		first, err := s.cr.Peek(1)
		if err != nil {
			return nil, err
		}
		if first[0] == 0x16 && !tlsDone {
			if !s.srv.tlsEnabled() {
				s.refuse(stats.RefusedTLS)
				return nil, errors.New("direct TLS connection attempt, but TLS is not configured")
			}
			if err := s.startTLS(true); err != nil {
				s.refuse(stats.RefusedTLS)
				return nil, err
			}
			tlsDone, sslDone = true, true
			continue
		}
		p, err := s.readStartupPacket()
		if err != nil {
			return nil, err
		}
		switch p.kind {
		case kindSSLRequest:
			if sslDone {
				// A second request is a startup packet of protocol
				// 1234.5679 to PostgreSQL.
				return nil, s.unsupportedProtocol(sslRequestCode)
			}
			sslDone = true
			answer := pgwire.EncryptionRefused
			if s.srv.tlsEnabled() {
				answer = pgwire.EncryptionAccepted
			}
			if err := s.writeRaw([]byte{answer}); err != nil {
				return nil, err
			}
			if s.cr.Buffered() > 0 {
				// Bytes sent after the request but before the answer would
				// be processed as if encrypted (CVE-2021-23222 class);
				// PostgreSQL refuses them whatever it answered.
				return nil, unencryptedAfter("SSL request")
			}
			if answer == pgwire.EncryptionAccepted {
				if err := s.startTLS(false); err != nil {
					s.refuse(stats.RefusedTLS)
					return nil, err
				}
				tlsDone = true
			}
		case kindGSSEncRequest:
			if gssDone {
				return nil, s.unsupportedProtocol(gssEncRequestCode)
			}
			gssDone = true
			// No GSSAPI encryption: 'N' lets libpq's gssencmode=prefer go on.
			if err := s.writeRaw([]byte{pgwire.EncryptionRefused}); err != nil {
				return nil, err
			}
			if s.cr.Buffered() > 0 {
				return nil, unencryptedAfter("GSSAPI encryption request")
			}
		default:
			return p, nil
		}
	}
}

// readStartupPacket reads one length-prefixed startup-phase packet, capped
// at PostgreSQL's limit before anything is allocated.
func (s *session) readStartupPacket() (*startupPacket, error) {
	hdr, err := s.cr.Peek(4)
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if n < minStartupPacketLen || n > maxStartupPacketLen {
		// PostgreSQL logs this (COMMERROR) and closes without a word: a
		// client that ends before it starts (a Terminate where the
		// startup packet should be) expects no error either.
		return nil, errStartupSilent("invalid length of startup packet")
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(s.cr, raw); err != nil {
		return nil, errStartupSilent("incomplete startup packet")
	}
	p, err := parseStartupPacket(raw)
	if err != nil {
		return nil, errStartupSilent(err.Error())
	}
	return p, nil
}

// errStartupSilent is a startup packet PostgreSQL refuses by closing the
// connection without an answer, logging why.
type errStartupSilent string

func (e errStartupSilent) Error() string { return string(e) }

// startTLS performs the server side of the TLS handshake on the client
// connection.
func (s *session) startTLS(direct bool) error {
	var raw net.Conn = s.client
	if direct {
		// The ClientHello is already in the reader's buffer.
		raw = &bufferedConn{Conn: s.client, r: s.cr}
	}
	tconn := tls.Server(raw, s.srv.tlsCfg)
	if err := tconn.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	if direct && tconn.ConnectionState().NegotiatedProtocol != "postgresql" {
		return errors.New("direct TLS connection without ALPN postgresql")
	}
	s.mu.Lock()
	s.client = tconn
	s.mu.Unlock()
	s.cr = bufio.NewReaderSize(tconn, bufSize)
	s.cw = bufio.NewWriterSize(tconn, bufSize)
	return nil
}

// unencryptedAfter is PostgreSQL's FATAL for bytes that came with an
// encryption request, before its answer.
func unencryptedAfter(request string) error {
	return pgerr.Protocol("received unencrypted data after " + request).
		WithDetail("This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.")
}

// unsupportedProtocol is PostgreSQL's FATAL for a startup packet of a
// protocol version it does not speak, such as a second SSLRequest
// (1234.5679). The range is the server's: 3.0 to 3.2 from PostgreSQL 18
// on, which sessions learn from server_version.
func (s *session) unsupportedProtocol(code uint32) error {
	latest := 0
	if s.srv.serverMajor.Load() >= 18 {
		latest = 2
	}
	return pgerr.NewFatal(pgerr.FeatureNotSupported, "unsupported frontend protocol %d.%d: server supports 3.0 to 3.%d",
		code>>16, code&0xffff, latest)
}

// bufferedConn reads through a bufio.Reader that already holds bytes.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (s *session) writeRaw(b []byte) error {
	if _, err := s.cw.Write(b); err != nil {
		return err
	}
	return s.cw.Flush()
}

// sendFatal writes a FATAL ErrorResponse to the client, best effort: the
// connection is closed right after.
func (s *session) sendFatal(e *pgerr.Error) {
	_ = s.client.SetWriteDeadline(time.Now().Add(killGrace))
	_ = s.writeRaw(e.AppendWire(nil))
}

// connectBackend dials the server and forwards the client's startup packet.
func (s *session) connectBackend(p *startupPacket) error {
	s.replication = p.param("replication") != "" && p.param("replication") != "false" &&
		p.param("replication") != "off" && p.param("replication") != "0" && p.param("replication") != "no"
	s.physical = s.replication && p.param("replication") != "database"
	s.minor = p.minor
	ctx, cancel := context.WithTimeout(context.Background(), s.srv.limits.Load().AuthTimeout)
	defer cancel()
	start := time.Now()
	s.target = s.srv.target.Load()
	conn, err := s.target.Dial(ctx)
	s.srv.observeConnect(start)
	if err != nil {
		s.refuse(stats.RefusedBackendUnreachable)
		s.logger().Warn("cannot connect to backend", zap.Error(err))
		return pgerr.BackendUnreachable(err)
	}
	s.mu.Lock()
	s.backend = conn
	killed := s.killed.Load()
	s.mu.Unlock()
	if killed != nil {
		return killed
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	size := bufSize
	if s.srv.loops != nil {
		size = startupBufSize
	}
	s.br = bufio.NewReaderSize(conn, size)
	s.bw = bufio.NewWriterSize(conn, size)
	if _, err := s.bw.Write(p.raw); err != nil {
		return pgerr.BackendLost(err)
	}
	if err := s.bw.Flush(); err != nil {
		return pgerr.BackendLost(err)
	}
	return nil
}

// Authentication request codes from the server's 'R' message.
const (
	authOK           = 0
	authSASL         = 10
	authSASLContinue = 11
	authSASLFinal    = 12
)

// relayAuth relays the server's authentication exchange and startup replies
// until ReadyForQuery. It returns ok false when the session must end; err is
// then the reason, nil when the server's own FATAL was already relayed.
func (s *session) relayAuth(p *startupPacket) (ok bool, err error) {
	for {
		b, total, err := peekHeader(s.br)
		if err != nil {
			return false, pgerr.BackendLost(err)
		}
		typ := pgwire.Backend(b)
		msg := make([]byte, total)
		if _, err := io.ReadFull(s.br, msg); err != nil {
			return false, pgerr.BackendLost(err)
		}
		body := msg[pgwire.HeaderLen:]
		needReply := false
		var check func([]byte) error
		switch typ {
		case pgwire.Authentication:
			if len(body) < 4 {
				return false, pgerr.Protocol("invalid authentication request from server")
			}
			switch code := binary.BigEndian.Uint32(body); code {
			case authOK, authSASLFinal:
			case authSASL:
				var stripped bool
				msg, stripped = stripChannelBinding(body[4:])
				if stripped {
					check = checkNoChannelBinding
				}
				needReply = true
			default:
				// Cleartext, MD5, GSS, SASLContinue: the client answers.
				needReply = true
			}
		case pgwire.BackendKeyData:
			var kd pgproto3.BackendKeyData
			if err := kd.Decode(body); err != nil {
				return false, pgerr.Protocol("invalid BackendKeyData from server")
			}
			msg = s.registerCancelKey(kd.ProcessID, kd.SecretKey)
		case pgwire.ParameterStatus:
			s.srv.noteParameter(body)
		case pgwire.NegotiateProtocolVersion:
			var nv pgproto3.NegotiateProtocolVersion
			if err := nv.Decode(body); err == nil {
				// pgproto3 keeps the whole version word; the minor is its low half.
				s.minor = uint16(nv.NewestMinorProtocol & 0xffff)
			}
		case pgwire.ErrorResponse:
			// The server's own words, FATAL or not; a client that cannot
			// take them is gone. A FATAL is counted before the client can
			// see it.
			fatal := pgerr.IsFatalResponse(body)
			if fatal {
				s.refuseFatal(body)
			}
			_, _ = s.cw.Write(msg) // sticky: surfaces at Flush
			if err := s.cw.Flush(); err != nil {
				return false, err
			}
			if fatal {
				return false, nil
			}
			continue
		case pgwire.ReadyForQuery:
			if _, err := s.cw.Write(msg); err != nil {
				return false, err
			}
			return true, s.cw.Flush()
		}
		if _, err := s.cw.Write(msg); err != nil {
			return false, err
		}
		if s.br.Buffered() == 0 || needReply {
			if err := s.cw.Flush(); err != nil {
				return false, err
			}
		}
		if needReply {
			if err := s.relayClientAuthMessage(check); err != nil {
				return false, err
			}
		}
	}
}

// maxAuthMessageLen caps client messages before authentication completes,
// so an unauthenticated client cannot make the proxy allocate much.
const maxAuthMessageLen = 64 << 10

// relayClientAuthMessage forwards one client message (a password, SASL or
// GSS response) to the server unchanged. Its 'p' type is ambiguous, but the
// server knows which it asked for. check, if set, may refuse the message.
func (s *session) relayClientAuthMessage(check func(msg []byte) error) error {
	typ, total, err := peekHeader(s.cr)
	if err != nil {
		return err
	}
	if total > maxAuthMessageLen {
		return pgerr.Protocol("invalid message length")
	}
	if pgwire.Frontend(typ) == pgwire.Terminate {
		return io.EOF
	}
	msg := make([]byte, total)
	if _, err := io.ReadFull(s.cr, msg); err != nil {
		return err
	}
	if check != nil {
		if err := check(msg); err != nil {
			return err
		}
	}
	if _, err := s.bw.Write(msg); err != nil {
		return pgerr.BackendLost(err)
	}
	if err := s.bw.Flush(); err != nil {
		return pgerr.BackendLost(err)
	}
	return nil
}

// stripChannelBinding rewrites an AuthenticationSASL body (after the code)
// without SCRAM-SHA-256-PLUS: channel binding would bind to the proxy's TLS
// certificate, which the server cannot verify. stripped reports whether the
// server had offered it.
func stripChannelBinding(mechs []byte) (msg []byte, stripped bool) {
	out := pgproto3.AuthenticationSASL{}
	for len(mechs) > 0 && mechs[0] != 0 {
		name, rest, ok := cutNul(mechs)
		if !ok {
			break
		}
		mechs = rest
		if name == "SCRAM-SHA-256-PLUS" {
			stripped = true
			continue
		}
		out.AuthMechanisms = append(out.AuthMechanisms, name)
	}
	b, _ := out.Encode(nil)
	return b, stripped
}

// checkNoChannelBinding refuses a SASLInitialResponse whose GS2 header is
// "y": the client supports channel binding and, not seeing PLUS, says it
// thinks the server does not. A server that does offer PLUS (its connection
// to the proxy is TLS) takes that as a downgrade attack and fails with a
// baffling error; the header cannot be rewritten because the client's proof
// covers it. Say plainly what is wrong instead.
func checkNoChannelBinding(msg []byte) error {
	var ir pgproto3.SASLInitialResponse
	if err := ir.Decode(msg[pgwire.HeaderLen:]); err != nil || len(ir.Data) == 0 || ir.Data[0] != 'y' {
		return nil
	}
	return pgerr.ChannelBindingImpossible()
}

// registerCancelKey records the backend's cancel key and returns the
// BackendKeyData message the client gets instead: same process id, a
// secret of the proxy's own.
func (s *session) registerCancelKey(pid uint32, secret []byte) []byte {
	s.backendPID = pid
	s.backendSecret = secret
	n := 4
	if s.minor >= 2 {
		// Protocol 3.2 allows longer keys; use them.
		n = 32
	}
	for {
		sec := newSecret(n)
		s.srv.peering.Load().mark(sec)
		key := makeCancelKey(pid, sec)
		if _, dup := s.srv.cancels.LoadOrStore(key, s); dup {
			continue
		}
		s.key = key
		msg := pgproto3.BackendKeyData{ProcessID: pid, SecretKey: sec}
		b, _ := msg.Encode(nil)
		return b
	}
}

// kill ends the session with e sent to the client: at once during startup,
// at the next message boundary while relaying.
func (s *session) kill(e *pgerr.Error) {
	s.killed.CompareAndSwap(nil, e)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.walCancel != nil {
		s.walCancel()
		return
	}
	if s.ls != nil {
		s.ls.postKill()
		return
	}
	client, backend := s.client, s.backend
	now := time.Now()
	if !s.relay {
		// Wake the startup phase's blocked I/O; it sees killed and tells
		// the client.
		_ = client.SetReadDeadline(now)
		if backend != nil {
			_ = backend.SetDeadline(now)
		}
	} else {
		// Wake the backend reader; it sees killed and writes e to the
		// client at a message boundary.
		_ = backend.SetReadDeadline(now)
	}
	time.AfterFunc(killGrace, func() {
		client.Close()
		if backend != nil {
			backend.Close()
		}
	})
}

// recoverPanic turns a panic in one session's goroutine (a bug, most
// likely reached by unexpected input) into the end of that session, logged
// with its stack, instead of the end of every session in the process.
func (s *session) recoverPanic() {
	if r := recover(); r != nil {
		s.logger().Error("session failed with an internal error", zap.Any("panic", r), zap.Stack("stack"))
		s.mu.Lock()
		s.client.Close()
		if s.backend != nil {
			s.backend.Close()
		}
		s.mu.Unlock()
	}
}

func (s *session) close() {
	if s.key != "" {
		s.srv.cancels.Delete(s.key)
	}
	if s.counted {
		s.srv.clients.Add(-1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.client.Close()
	if s.backend != nil {
		s.backend.Close()
	}
	s.debug("session closed")
}

// isClosed reports errors that mean the peer went away, which is how
// sessions normally end and not worth more than a debug line.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
