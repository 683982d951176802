package conf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap/zapcore"
)

// Config is the complete pgverbs configuration. Load returns it validated;
// a Config built by hand should be checked with Validate before use.
type Config struct {
	// Listen is the host:port on which pgverbs accepts client connections.
	Listen string
	// Backend is the libpq URL or key=value conninfo of the PostgreSQL
	// server pgverbs fronts. It may hold a password: never print it, print
	// RedactedBackend instead.
	Backend string
	// TLSCert and TLSKey are the PEM files of the certificate pgverbs
	// presents to clients. Both empty disables client-side TLS.
	TLSCert, TLSKey string
	// LogLevel is one of debug, info, warn, error.
	LogLevel string
	// LogFormat is console or json.
	LogFormat string
	// MaxClientConns caps concurrent client connections.
	MaxClientConns int
	// ShutdownTimeout is how long a graceful shutdown waits for sessions
	// before closing them; 0 closes them at once.
	ShutdownTimeout time.Duration
	// AuthTimeout bounds how long a client may take to complete startup and
	// authentication, like PostgreSQL's authentication_timeout.
	AuthTimeout time.Duration
	// ExtensionsDir is where extension packages are looked up. A relative
	// path is relative to the working directory.
	ExtensionsDir string
	// BackupRoot is the directory backups are written under; "" disables
	// backups. Load makes a relative path absolute against the working
	// directory at load time, so a later chdir cannot move backups.
	BackupRoot string
	// BackupConninfo, when set, is the libpq URL or key=value conninfo
	// BASE BACKUP's own connections use instead of Backend (for example a
	// REPLICATION role with its password, where clients log in with their
	// own). Like Backend it may hold a password: print
	// RedactedBackupConninfo.
	BackupConninfo string
	// ExtensionCollision decides which wins when a package in the
	// extensions directory has the name of an extension the server offers:
	// "server" (the default: INSTALL EXTENSION runs CREATE EXTENSION) or
	// "package".
	ExtensionCollision string
	// RelayMode is how sessions are relayed after authentication: "loop"
	// (event loops over epoll, the default where supported) or
	// "goroutines" (two goroutines per session, the fallback). TLS
	// sessions always use goroutines.
	RelayMode string
	// HTTPListen is the host:port of the HTTP listener serving /metrics,
	// /healthz and /readyz (HTTPS with TLSCert/TLSKey); "" disables it.
	HTTPListen string
	// HTTPToken is the bearer token the WAL archive's /wal/ requires; it
	// is a secret (String shows xxxxx). HTTPTokenFile names a file holding
	// it instead, so that it appears neither in ps nor in the environment.
	// Read it with Token.
	HTTPToken, HTTPTokenFile string
	// WALAuthFile is an auth file (PgBouncer's userlist.txt format) that
	// pgverbs checks passwords against itself, only while the backend is
	// unreachable: for replication connections (standbys that stream
	// from the WAL archive) and for the roles in WALAuthAdmins, whose
	// sessions then run pgverbs's own commands only (FAILOVER).
	WALAuthFile string
	// WALAuthAdmins lists (comma-separated) the roles of WALAuthFile that
	// may open such an admin session.
	WALAuthAdmins string
	// PeerID is this instance's id among pgverbs instances that share one
	// address, 1 to MaxPeerID; 0 (the default) turns cancel peering off.
	// Under protocol 3.2 the cancel keys this instance hands out carry it.
	PeerID int
	// Peers maps the ids of those instances to the addresses they listen
	// on; a cancel request meant for another instance is forwarded there.
	// This instance's own entry, if any, is ignored.
	Peers Peers
	// Storage holds the object-storage targets that storage://NAME/...
	// URLs name, by name (each target's Name is its key). Only the config
	// file sets it; nil when it gives none.
	Storage map[string]StorageTarget
	// ConfigFile is the YAML file this configuration was loaded from, ""
	// if none.
	ConfigFile string

	// sources records, by YAML key, which layer set each setting Load
	// saw set; the others are defaults.
	sources map[string]Source
}

// Source is the layer a setting's value came from.
type Source string

// The layers, lowest precedence first.
const (
	FromDefault Source = "default"
	FromFile    Source = "file"
	FromEnv     Source = "env"
	FromFlag    Source = "flag"
	// FromWALSource is a backend that followed the WAL archive's source
	// (SET SOURCE or FAILOVER WAL ARCHIVE), persisted in the archive.
	FromWALSource Source = "wal archive source"
)

// Setting is one setting as SHOW PGVERBS CONFIG lists it.
type Setting struct {
	// Name is the YAML key.
	Name string
	// Value is the value as text, connection strings redacted.
	Value string
	// Source is the layer it came from.
	Source Source
	// Description is the usage text.
	Description string
}

// Settings lists every setting in table order, with its effective value
// (passwords redacted) and where it came from, then one row per field of
// each storage target that has a value (storage.NAME.FIELD, targets in
// name order).
func (c *Config) Settings() []Setting {
	out := make([]Setting, 0, len(settings))
	for _, s := range settings {
		out = append(out, Setting{Name: s.key, Value: s.text(c), Source: c.source(s.key), Description: s.usage})
	}
	for _, r := range c.storageRows() {
		out = append(out, Setting{Name: r.key, Value: r.value, Source: c.source(r.key), Description: r.usage})
	}
	return out
}

// source is the layer that set key, FromDefault if none did.
func (c *Config) source(key string) Source {
	if src := c.sources[key]; src != "" {
		return src
	}
	return FromDefault
}

// FollowingSource returns a copy of c whose backend is the WAL archive's
// source, as SHOW PGVERBS CONFIG shows it after a failover.
func (c *Config) FollowingSource(backend string) *Config {
	cp := *c
	cp.Backend = backend
	cp.sources = make(map[string]Source, len(c.sources)+1)
	for k, v := range c.sources {
		cp.sources[k] = v
	}
	cp.sources["backend"] = FromWALSource
	return &cp
}

// setSource notes that layer src set the setting key.
func (c *Config) setSource(key string, src Source) {
	if c.sources == nil {
		c.sources = map[string]Source{}
	}
	c.sources[key] = src
}

// Default returns the built-in configuration, the lowest-precedence layer.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:6432",
		Backend:         "postgres://localhost:5432",
		LogLevel:        "info",
		LogFormat:       "console",
		MaxClientConns:  1000,
		ShutdownTimeout: 30 * time.Second,
		// PostgreSQL's authentication_timeout default: a proxy should not
		// give clients less time than the server it stands in for would.
		AuthTimeout:        60 * time.Second,
		ExtensionsDir:      "./extensions",
		ExtensionCollision: "server",
		RelayMode:          DefaultRelayMode,
	}
}

// Validate reports every invalid field, each prefixed with its YAML key
// name (for example "listen: ..."), joined with errors.Join. It returns nil
// when the configuration is valid. No message contains the backend password.
//
// Validate reads the TLS key pair from disk when one is configured, so a
// missing or mismatched file fails at startup rather than at the first TLS
// client; likewise each storage target's ca_file and credentials_file
// (whose permissions must keep other users out).
func (c *Config) Validate() error {
	var errs []error
	for _, s := range settings {
		if s.check == nil {
			continue
		}
		if err := s.check(c); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", s.key, err))
		}
	}
	errs = append(errs, c.validateStorage()...)
	// A half-configured pair is reported by tls_cert's or tls_key's own
	// check; only a complete one can be loaded.
	if c.TLSCert != "" && c.TLSKey != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey); err != nil {
			// The loader's errors name paths and PEM/x509 problems, never
			// key material, so passing them on is safe and useful.
			errs = append(errs, fmt.Errorf("tls_cert, tls_key: cannot load key pair from %q and %q: %v", c.TLSCert, c.TLSKey, err))
		}
	}
	return errors.Join(errs...)
}

func validateListen(addr string) error {
	if addr == "" {
		return errors.New("must not be empty")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %v", addr, unwrapAddrError(err))
	}
	// Named ports would resolve through /etc/services, which varies by host.
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q in %q is not a number from 1 to 65535", port, addr)
	}
	return nil
}

// unwrapAddrError drops net.AddrError's own copy of the address, which the
// caller already quotes.
func unwrapAddrError(err error) string {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return ae.Err
	}
	return err.Error()
}

// validateBackend checks the conninfo with the same parser the backend
// package connects with, so a string accepted here is one pgconn accepts.
// pgconn also consults the process's PG* environment variables while
// parsing, exactly as it will when connecting.
func validateBackend(conninfo string) error {
	if conninfo == "" {
		// pgconn would accept "" and fill everything from PG* variables and
		// its defaults, which is too implicit for a proxy's upstream.
		return errors.New("must not be empty")
	}
	_, err := pgconn.ParseConfig(conninfo)
	if err == nil {
		return nil
	}
	_, secrets := redactConnString(conninfo)
	reason, withheld := parseFailureReason(err, mayHoldSecret(conninfo, secrets), secrets)
	reason = scrub(reason, secrets)
	if withheld {
		// Appended after scrubbing: a fragment of a malformed string can be
		// any word, and must not garble this explanation.
		reason += " (details withheld because the connection string may hold a password)"
	}
	return fmt.Errorf("invalid connection string: %s", reason)
}

// RedactedBackend returns the backend conninfo with every password replaced
// by "xxxxx": the password in URL userinfo, password= (and sslpassword=)
// in key=value form, and password (and sslpassword) URL query parameters.
// For malformed strings whose structure is ambiguous it masks generously,
// preferring an unreadable log line to a leaked secret.
func (c *Config) RedactedBackend() string {
	out, _ := redactConnString(c.Backend)
	return out
}

// RedactedBackupConninfo is BackupConninfo with passwords masked as in
// RedactedBackend.
func (c *Config) RedactedBackupConninfo() string {
	out, _ := redactConnString(c.BackupConninfo)
	return out
}

// ZapLevel returns the zap level for LogLevel. Values Validate rejects map
// to info, so a caller that skipped validation still gets a usable logger.
func (c *Config) ZapLevel() zapcore.Level {
	switch c.LogLevel {
	case "debug":
		return zapcore.DebugLevel
	case "warn":
		return zapcore.WarnLevel
	case "error":
		return zapcore.ErrorLevel
	}
	return zapcore.InfoLevel
}

// String renders the configuration for logs, every setting as key=value
// with connection strings redacted, then the storage targets' fields as
// Settings lists them. It exists so that printing a Config
// with %v or zap.Any cannot leak the backend password.
func (c Config) String() string {
	var b strings.Builder
	for _, s := range settings {
		v := s.text(&c)
		switch s.field(&c).(type) {
		case *string, *Peers:
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, "%s=%s ", s.key, v)
	}
	for _, r := range c.storageRows() {
		v := r.value
		if r.quote {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, "%s=%s ", r.key, v)
	}
	fmt.Fprintf(&b, "config_file=%q", c.ConfigFile)
	return b.String()
}
