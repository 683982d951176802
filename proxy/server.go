package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/backend"
	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/localauth"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/walsender"
)

// Limits are the settings a running server can change on reload.
type Limits struct {
	// MaxClientConns caps concurrent client sessions; clients beyond it get
	// FATAL 53300 as from a full PostgreSQL.
	MaxClientConns int
	// AuthTimeout bounds the startup and authentication phase, like
	// PostgreSQL's authentication_timeout.
	AuthTimeout time.Duration
}

// Options configure a Server.
type Options struct {
	Logger   *zap.Logger
	Target   *backend.Target
	Commands *commands.Registry
	Limits   Limits
	// Certificate enables TLS towards clients. nil answers SSLRequest 'N'.
	Certificate *tls.Certificate
	// RelayMode is "loop" (event loops, where the build has them) or
	// "goroutines"; see conf.Config.RelayMode. "" means loop where
	// supported.
	RelayMode string
	// Replication serves physical replication connections itself while
	// it is Active (the WAL relay); nil relays them as any session.
	Replication Replication
	// LocalAuth, when set, lets pgverbs authenticate a client itself
	// while the backend is unreachable: a replication connection (served
	// from the archive) or one of LocalAdmins (pgverbs's commands only).
	LocalAuth   *localauth.File
	LocalAdmins []string
	// Peering places this instance among others behind one address, for
	// cancel requests that land on the wrong one (cancel.go); SetPeering
	// changes it. The zero value is peering off.
	Peering Peering
}

// Replication is pgverbs's walsender (package walsender), as the proxy
// sees it: after authentication a physical replication session is handed
// over whole.
type Replication interface {
	Active() bool
	Serve(ctx context.Context, s *walsender.Session)
}

// Server accepts client connections and relays each to its own backend
// session. Its methods are safe for concurrent use.
type Server struct {
	log *zap.Logger
	// target is where new sessions go; SetTarget moves it (the backend
	// follows the WAL archive's source after a failover).
	target   atomic.Pointer[backend.Target]
	commands *commands.Registry
	// loops relay sessions after authentication; nil relays them with
	// goroutines.
	loops *loopSet
	// serverMajor is the server's major version, from the server_version
	// a session was last told; 0 until then.
	serverMajor atomic.Int32

	limits atomic.Pointer[Limits]
	cert   atomic.Pointer[tls.Certificate]
	tlsCfg *tls.Config

	nextID  atomic.Uint64
	clients atomic.Int64
	cancels sync.Map // cancelKey -> *session
	// peering is what SetPeering set, never nil; forwards bounds the
	// cancel forwards in flight (a token each).
	peering  atomic.Pointer[peering]
	forwards chan struct{}

	// What operators are shown (stats.go). ended holds the counters of
	// the sessions that ended, guarded by mu.
	counters       stats.Counters
	connectLatency *stats.Histogram
	cmds           stats.Commands
	backups        stats.Backups

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	closing   bool
	sessWG    sync.WaitGroup
	drained   chan struct{} // closed when closing and no session is left
	ended     stats.Totals

	repl Replication
	// localAuth checks passwords while the backend is unreachable;
	// localAdmins are the roles that may then open an admin session.
	localAuth atomic.Pointer[localAuth]
	// params are the server's ParameterStatus values as last relayed, for
	// the startup reply of a session pgverbs authenticates itself.
	paramsMu sync.Mutex
	params   map[string]string
	// replCtx ends the replication sessions pgverbs serves itself at a
	// shutdown: a standby never ends by itself, and reconnects.
	replCtx  context.Context
	replStop context.CancelFunc
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("proxy: server closed")

// New returns a server that relays to opts.Target.
func New(opts Options) *Server {
	s := &Server{
		log:       opts.Logger,
		commands:  opts.Commands,
		listeners: make(map[net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
		drained:   make(chan struct{}),

		connectLatency: stats.NewHistogram(stats.ConnectBuckets),
		repl:           opts.Replication,
		forwards:       make(chan struct{}, maxForwards),
	}
	s.SetPeering(opts.Peering)
	s.SetLocalAuth(opts.LocalAuth, opts.LocalAdmins)
	s.replCtx, s.replStop = context.WithCancel(context.Background())
	s.target.Store(opts.Target)
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.commands == nil {
		s.commands = commands.NewRegistry()
	}
	if loopsSupported && opts.RelayMode != "goroutines" {
		s.loops = newLoopSet()
	}
	lim := opts.Limits
	s.limits.Store(&lim)
	if opts.Certificate != nil {
		s.cert.Store(opts.Certificate)
	}
	s.tlsCfg = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// libpq 17+ sends ALPN "postgresql" and, for direct TLS, requires it.
		NextProtos: []string{"postgresql"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.cert.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("no TLS certificate configured")
		},
	}
	return s
}

// SetLimits replaces the limits; sessions already past startup keep running.
func (s *Server) SetLimits(l Limits) { s.limits.Store(&l) }

// SetCertificate replaces the TLS certificate for new handshakes. nil
// disables TLS for new connections.
func (s *Server) SetCertificate(c *tls.Certificate) { s.cert.Store(c) }

// Certificate returns the TLS certificate of new handshakes, nil without
// one, for listeners that serve with the same (the HTTP listener).
func (s *Server) Certificate() *tls.Certificate { return s.cert.Load() }

// tlsEnabled reports whether SSLRequest is answered 'S'.
func (s *Server) tlsEnabled() bool { return s.cert.Load() != nil }

// Serve accepts connections on ln until Shutdown or Close, each handled in
// its own goroutine. It returns ErrServerClosed after those.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.startSession(conn) {
			conn.Close()
			return ErrServerClosed
		}
	}
}

func (s *Server) startSession(conn net.Conn) bool {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	sess := newSession(s, conn)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	s.sessions[sess] = struct{}{}
	s.sessWG.Add(1)
	s.mu.Unlock()
	s.counters.Accept()
	go func() {
		handed := false
		defer func() {
			// A session handed to an event loop is ended by the loop.
			if !handed {
				s.endSession(sess)
			}
		}()
		defer sess.recoverPanic()
		handed = sess.serve()
	}()
	return true
}

func (s *Server) endSession(sess *session) {
	s.mu.Lock()
	delete(s.sessions, sess)
	s.ended.AddSession(&sess.st)
	if s.closing && len(s.sessions) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
	s.mu.Unlock()
	s.sessWG.Done()
}

// stopAccepting closes the listeners and marks the server closing.
func (s *Server) stopAccepting() {
	s.replStop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		s.closing = true
		if len(s.sessions) == 0 {
			close(s.drained)
		}
	}
	for ln := range s.listeners {
		ln.Close()
		delete(s.listeners, ln)
	}
}

// Shutdown stops accepting connections and waits for the sessions to end by
// themselves, as PostgreSQL's smart shutdown does. When ctx expires first the
// remaining sessions get FATAL 57P01 and are closed; Shutdown then returns
// ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	select {
	case <-s.drained:
		s.sessWG.Wait()
		s.loops.stop()
		return nil
	case <-ctx.Done():
	}
	s.terminateAll()
	return ctx.Err()
}

// Close stops accepting and terminates every session at once with FATAL
// 57P01, as PostgreSQL's fast shutdown does, then waits for them to end.
func (s *Server) Close() {
	s.stopAccepting()
	s.terminateAll()
}

func (s *Server) terminateAll() {
	s.mu.Lock()
	live := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		live = append(live, sess)
	}
	s.mu.Unlock()
	fatal := pgerr.Shutdown()
	for _, sess := range live {
		sess.kill(fatal)
	}
	s.sessWG.Wait()
	s.loops.stop()
}

// localAuth is the auth file and its admins, swapped whole on reload.
type localAuth struct {
	file   *localauth.File
	admins map[string]bool
}

// SetLocalAuth replaces the auth file pgverbs checks while the backend is
// unreachable and the roles that may then open an admin session (nil:
// none); sessions already authenticated are not affected.
func (s *Server) SetLocalAuth(f *localauth.File, admins []string) {
	if f == nil {
		s.localAuth.Store(nil)
		return
	}
	la := &localAuth{file: f, admins: map[string]bool{}}
	for _, r := range admins {
		la.admins[r] = true
	}
	s.localAuth.Store(la)
}

// SetTarget sends new sessions to t; sessions already relayed stay with
// the server they were connected to.
func (s *Server) SetTarget(t *backend.Target) {
	s.target.Store(t)
	network, address := t.Address()
	s.log.Info("backend changed", zap.String("backend", network+":"+address))
}

// Sessions returns the number of client connections being served.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// noteParameter records what the proxy needs of a ParameterStatus body
// relayed during startup: the server's major version.
func (s *Server) noteParameter(body []byte) {
	name, rest, ok := cutNul(body)
	if !ok {
		return
	}
	value, _, _ := cutNul(rest)
	s.paramsMu.Lock()
	if s.params == nil {
		s.params = map[string]string{}
	}
	s.params[name] = value
	s.paramsMu.Unlock()
	if name != "server_version" {
		return
	}
	major := 0
	for _, c := range value {
		if c < '0' || c > '9' {
			break
		}
		major = major*10 + int(c-'0')
	}
	if major > 0 && major < 1000 {
		s.serverMajor.Store(int32(major))
	}
}
