package backend

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/conninfo"
)

// sslRequestCode is the protocol code of an SSLRequest packet.
const sslRequestCode = 80877103

// ErrTLSRefused is returned when the server declines TLS and the sslmode
// does not allow a plaintext connection.
var ErrTLSRefused = errors.New("server does not support TLS, but the backend sslmode requires it")

// Target is a parsed backend conninfo: where the server is and how to reach it.
// It is immutable and safe for concurrent use.
type Target struct {
	cfg *pgconn.Config

	network, address string
	// tlsConfig is nil when TLS must not be attempted (sslmode=disable).
	tlsConfig *tls.Config
	// tlsRequired is false for sslmode=prefer/allow, where a server that
	// answers 'N' is accepted in plaintext.
	tlsRequired bool
	// explicitUser is set when the conninfo or PGUSER names a user.
	explicitUser bool
}

// namesUser reports whether a conninfo names a user: URL userinfo, a user
// parameter, or PGUSER in the environment.
func namesUser(s string) bool {
	if os.Getenv("PGUSER") != "" {
		return true
	}
	if u, err := url.Parse(s); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return (u.User != nil && u.User.Username() != "") || u.Query().Get("user") != ""
	}
	pairs, _ := conninfo.Scan(s)
	for _, p := range pairs {
		if p.Key == "user" && p.Value(s) != "" {
			return true
		}
	}
	return false
}

// Parse parses a libpq URL or key=value conninfo. The conninfo may hold a
// password; errors never repeat it.
func Parse(conninfo string) (*Target, error) {
	cfg, err := pgconn.ParseConfig(conninfo)
	if err != nil {
		// pgconn redacts the password in ParseConfigError's text.
		return nil, fmt.Errorf("parse backend conninfo: %w", err)
	}
	t := &Target{cfg: cfg, tlsConfig: cfg.TLSConfig, explicitUser: namesUser(conninfo)}
	t.tlsRequired = cfg.TLSConfig != nil
	for _, fb := range cfg.Fallbacks {
		// Fallbacks that are another host are not followed: pgverbs fronts
		// one server. A fallback to the same host without TLS is sslmode=prefer.
		if fb.Host == cfg.Host && fb.Port == cfg.Port && fb.TLSConfig == nil {
			t.tlsRequired = false
		}
		if fb.Host == cfg.Host && fb.Port == cfg.Port && t.tlsConfig == nil && fb.TLSConfig != nil {
			// sslmode=allow tries plaintext first; pgverbs prefers TLS when
			// offered, which allow also accepts.
			t.tlsConfig = fb.TLSConfig
		}
	}
	port := strconv.Itoa(int(cfg.Port))
	if strings.HasPrefix(cfg.Host, "/") {
		t.network = "unix"
		t.address = filepath.Join(cfg.Host, ".s.PGSQL."+port)
		// libpq never uses TLS over unix sockets.
		t.tlsConfig, t.tlsRequired = nil, false
	} else {
		t.network = "tcp"
		t.address = net.JoinHostPort(cfg.Host, port)
	}
	return t, nil
}

// Address returns the network and address dialled, for logs.
func (t *Target) Address() (network, address string) { return t.network, t.address }

// HasUser reports whether the conninfo (or PGUSER) names a user, rather
// than pgconn defaulting to the OS user.
func (t *Target) HasUser() bool { return t.explicitUser }

// HasParam reports whether the conninfo (or its environment, such as
// PGAPPNAME) sets the run-time parameter name, e.g. application_name.
func (t *Target) HasParam(name string) bool {
	_, ok := t.cfg.RuntimeParams[name]
	return ok
}

// Dial connects to the server and negotiates TLS as the conninfo's sslmode
// says. The returned connection is ready for a startup packet.
func (t *Target) Dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{KeepAlive: 30 * time.Second}
	if t.cfg.ConnectTimeout > 0 {
		d.Timeout = t.cfg.ConnectTimeout
	}
	conn, err := d.DialContext(ctx, t.network, t.address)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// The relay batches writes itself; Nagle would only add latency.
		_ = tc.SetNoDelay(true)
	}
	if t.tlsConfig == nil {
		return conn, nil
	}
	tconn, err := t.startTLS(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return tconn, nil
}

func (t *Target) startTLS(ctx context.Context, conn net.Conn) (net.Conn, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:4], 8)
	binary.BigEndian.PutUint32(req[4:8], sslRequestCode)
	if _, err := conn.Write(req[:]); err != nil {
		return nil, fmt.Errorf("send SSLRequest: %w", err)
	}
	var resp [1]byte
	if _, err := io.ReadFull(conn, resp[:]); err != nil {
		return nil, fmt.Errorf("read SSLRequest answer: %w", err)
	}
	switch resp[0] {
	case 'S':
		tconn := tls.Client(conn, t.tlsConfig.Clone())
		if err := tconn.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("TLS handshake with server: %w", err)
		}
		return tconn, nil
	case 'N':
		if t.tlsRequired {
			return nil, ErrTLSRefused
		}
		return conn, nil
	default:
		return nil, fmt.Errorf("unexpected answer %q to SSLRequest", resp[0])
	}
}

// Cancel asks the server to cancel the query running in the backend process
// pid, authenticated by its secret key. The server never answers a cancel
// request; success only means it was delivered.
func (t *Target) Cancel(ctx context.Context, pid uint32, secret []byte) error {
	conn, err := t.Dial(ctx)
	if err != nil {
		return fmt.Errorf("dial for cancel: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	msg := pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}
	buf, err := msg.Encode(nil)
	if err != nil {
		return fmt.Errorf("encode cancel request: %w", err)
	}
	if _, err := conn.Write(buf); err != nil {
		return fmt.Errorf("send cancel request: %w", err)
	}
	// Wait for the server to close, so that the cancel has been processed
	// before the caller goes on (libpq does the same).
	_, _ = conn.Read(make([]byte, 1))
	return nil
}

// Connect opens a pgconn connection of the proxy's own, as user to database
// (empty strings keep the conninfo's values), with extra runtime parameters
// such as replication=database.
func (t *Target) Connect(ctx context.Context, user, database string, params map[string]string) (*pgconn.PgConn, error) {
	cfg := t.cfg.Copy()
	if user != "" {
		cfg.User = user
	}
	if database != "" {
		cfg.Database = database
	}
	if len(params) > 0 {
		rp := make(map[string]string, len(cfg.RuntimeParams)+len(params))
		for k, v := range cfg.RuntimeParams {
			rp[k] = v
		}
		for k, v := range params {
			rp[k] = v
		}
		cfg.RuntimeParams = rp
	}
	return pgconn.ConnectConfig(ctx, cfg)
}
