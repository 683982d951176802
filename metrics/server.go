package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/walarchive"
)

// Options configure the HTTP listener.
type Options struct {
	// Addr is where to listen (http_listen).
	Addr string
	// Certificate, when it returns a certificate at start, makes the
	// listener HTTPS with it; it is asked at each handshake, so a reloaded
	// certificate is used at once. nil, or nil at start, serves HTTP.
	Certificate func() *tls.Certificate
	// Source is the proxy, for /metrics.
	Source Source
	// Dial opens a connection to the backend, and User and Database are
	// what the readiness probe's startup packet asks for.
	Dial           Dialer
	User, Database string
	// WAL, when not nil, serves walarchive.WALPath (restore_command's
	// GET /wal/NAME); it checks its own token, the other endpoints need
	// none.
	WAL http.Handler
	// Archive, when not nil, reports the WAL archive for /metrics.
	Archive func() (walarchive.Status, bool)
	// Relay, when not nil, reports the WAL relay's standbys and slots.
	Relay  Relay
	Logger *zap.Logger
}

// Server is the running HTTP listener.
type Server struct {
	http *http.Server
	ln   net.Listener
	done chan struct{}
}

// Start listens on opts.Addr and serves /metrics, /healthz, /readyz and,
// with opts.WAL, /wal/ until Close.
func Start(opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, err
	}
	if opts.Certificate != nil && opts.Certificate() != nil {
		ln = tls.NewListener(ln, &tls.Config{
			MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				if c := opts.Certificate(); c != nil {
					return c, nil
				}
				return nil, errors.New("no TLS certificate configured")
			},
		})
	}
	ready := newReadiness(pgIsReady(opts.Dial, opts.User, opts.Database))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(New(opts.Source, ready.check, opts.Archive, opts.Relay), promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(log), ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready.check(r.Context()); err != nil {
			// The reason (it names the backend's address) goes to the
			// log only: the endpoint shows no data.
			log.Debug("not ready", zap.Error(err))
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: the backend does not accept connections\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	var handler http.Handler = mux
	if opts.WAL != nil {
		// Routed before the mux, which would answer a path it cleans
		// (/wal/../x) with a redirect out of /wal/: the WAL handler
		// refuses such a name itself, with 400.
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, walarchive.WALPath) {
				opts.WAL.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		})
	}
	s := &Server{
		http: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(log)},
		ln:   ln,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP listener failed", zap.Error(err))
		}
	}()
	return s, nil
}

// Addr returns the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the listener, letting requests under way finish for a
// moment, and waits for it.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.http.Close()
	}
	<-s.done
}
