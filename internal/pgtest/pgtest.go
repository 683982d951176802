package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Options configure a throwaway cluster.
type Options struct {
	// AuthMethod is the pg_hba.conf method used for every default line:
	// "trust" (the default), "password", "md5" or "scram-sha-256".
	AuthMethod string
	// Password is the superuser password, "postgres" when empty. It is set
	// even for trust clusters so a test can switch to password auth through
	// HBA lines without re-initialising.
	Password string
	// HBA holds extra pg_hba.conf lines. They come before the default lines,
	// so they win for the connections they match.
	HBA []string
	// Settings are extra postgresql.conf parameters; they override the
	// harness defaults. Values are quoted as needed; an already single-quoted
	// value is used verbatim. Setting "port" pins the port (no retry when it
	// is busy).
	Settings map[string]string
	// InitDBArgs are appended to the initdb command line, e.g.
	// "--data-checksums".
	InitDBArgs []string
	// TLS generates a CA and a server certificate for 127.0.0.1, ::1 and
	// localhost, and turns on ssl. Cluster.CAFile then names the CA.
	TLS bool
	// BinDir, when set, names the directory of the PostgreSQL binaries to
	// use instead of the one BinDir finds, e.g. an installation made by
	// Relocate. A directory lacking initdb, postgres or pg_ctl is an error,
	// never a reason to skip.
	BinDir string
	// Logf, when set, receives progress messages (tests pass t.Logf).
	Logf func(format string, args ...any)
}

// Cluster is a running throwaway PostgreSQL cluster created by New or Start.
// Its methods are safe for concurrent use.
type Cluster struct {
	// BinDir holds the PostgreSQL binaries the cluster was created with.
	BinDir string
	// DataDir is the cluster's data directory (PGDATA).
	DataDir string
	// SocketDir is the unix_socket_directories value.
	SocketDir string
	// Host is the TCP address the server listens on: "127.0.0.1".
	Host string
	// Port is the TCP port the server listens on.
	Port int
	// User is the superuser name: "postgres".
	User string
	// Password is the superuser password.
	Password string
	// CAFile is the PEM file of the CA that signed the server certificate
	// when Options.TLS is set, else "".
	CAFile string

	root    string // temporary directory holding everything above
	logFile string
	owner   owner
	logf    func(format string, args ...any)

	mu      sync.Mutex
	stopped bool
}

const (
	superuser = "postgres"
	host      = "127.0.0.1"

	// portAttempts bounds retries when the port picked by freePort is taken
	// by someone else between probing and the postmaster binding it.
	portAttempts = 5
	// startTimeout is passed to pg_ctl -t; generous because parallel test
	// binaries can make a loaded machine slow.
	startTimeout = 60
	stopTimeout  = 30
)

var authMethods = []string{"trust", "password", "md5", "scram-sha-256"}

// settingName guards against Settings keys smuggling extra lines into the
// config file.
var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// New creates a cluster with initdb, starts it and waits until it accepts
// connections. The caller must call Stop. On failure everything New created
// is stopped and removed.
func New(opts Options) (_ *Cluster, err error) {
	if opts.AuthMethod == "" {
		opts.AuthMethod = "trust"
	}
	if !slices.Contains(authMethods, opts.AuthMethod) {
		return nil, fmt.Errorf("pgtest: unsupported AuthMethod %q (want one of %s)", opts.AuthMethod, strings.Join(authMethods, ", "))
	}
	if opts.Password == "" {
		opts.Password = "postgres"
	}
	for _, line := range opts.HBA {
		if strings.ContainsAny(line, "\r\n") {
			return nil, fmt.Errorf("pgtest: HBA line %q spans multiple lines", line)
		}
	}
	settings, fixedPort, err := buildSettings(opts.Settings, opts.TLS)
	if err != nil {
		return nil, err
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}

	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = BinDir(); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	} else if err := checkBinDir(binDir); err != nil {
		return nil, fmt.Errorf("pgtest: Options.BinDir %s: %w", binDir, err)
	}
	own, err := currentOwner()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}

	root, err := os.MkdirTemp(tempBase(own), "pgtest-*")
	if err != nil {
		return nil, fmt.Errorf("pgtest: create temp dir: %w", err)
	}
	c := newCluster(root, binDir, opts.Password, own, logf)
	defer func() {
		if err != nil {
			if stopErr := c.Stop(); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("cleanup: %w", stopErr))
			}
		}
	}()

	if err := c.setup(opts); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := c.start(settings, fixedPort); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := c.waitReady(); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	logf("pgtest: cluster ready at %s (data %s, PostgreSQL binaries %s)", net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), c.DataDir, c.BinDir)
	return c, nil
}

// newCluster lays out a cluster in root, its temporary directory.
func newCluster(root, binDir, password string, own owner, logf func(format string, args ...any)) *Cluster {
	return &Cluster{
		BinDir:    binDir,
		DataDir:   filepath.Join(root, "data"),
		SocketDir: filepath.Join(root, "sock"),
		Host:      host,
		User:      superuser,
		Password:  password,
		root:      root,
		logFile:   filepath.Join(root, "server.log"),
		owner:     own,
		logf:      logf,
	}
}

// Start is New for tests and benchmarks: the cluster is stopped by
// t.Cleanup. When PostgreSQL is not installed the test is skipped, unless
// PGTEST_REQUIRE=1, where it fails so CI can never pass by skipping. Any
// other error fails the test.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := New(opts)
	if err != nil {
		skipUnavailable(t, err)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("pgtest: stop cluster: %v", err)
		}
	})
	return c
}

// tempBase returns the parent for the cluster's temp dir. When the server
// runs as another user it must be able to traverse every ancestor, which a
// private $TMPDIR (e.g. under /root) does not allow; /tmp always does.
func tempBase(own owner) string {
	if !own.switchUser {
		return ""
	}
	for dir := os.TempDir(); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if dir == filepath.Dir(dir) {
			return ""
		}
	}
}

// setup runs initdb and writes the configuration; it leaves the server
// stopped.
func (c *Cluster) setup(opts Options) error {
	// The root is chowned too: the server (running as postgres) creates the
	// log file in it, and initdb creates the data dir below it.
	if err := c.owner.chown(c.root); err != nil {
		return err
	}
	if err := c.owner.mkdir(c.SocketDir, 0o755); err != nil {
		return err
	}

	// The password file lives outside the data dir and is deleted right
	// after initdb so it never ends up in a base backup.
	pwFile := filepath.Join(c.root, "pwfile")
	if err := c.owner.writeFile(pwFile, []byte(c.Password+"\n"), 0o600); err != nil {
		return err
	}
	args := []string{
		"-D", c.DataDir,
		"-U", c.User,
		"-A", opts.AuthMethod,
		"--pwfile=" + pwFile,
		"-E", "UTF8",
		"--locale=C",
		// Durability of a throwaway cluster is irrelevant and skipping the
		// fsync of the new cluster saves most of initdb's runtime.
		"--no-sync",
	}
	args = append(args, opts.InitDBArgs...)
	c.logf("pgtest: initdb %s", c.DataDir)
	err := c.run(c.Bin("initdb"), args...)
	if rmErr := os.Remove(pwFile); rmErr != nil && err == nil {
		err = fmt.Errorf("remove password file: %w", rmErr)
	}
	if err != nil {
		return err
	}

	if err := c.writeHBA(opts); err != nil {
		return err
	}
	if opts.TLS {
		if err := c.writeTLS(); err != nil {
			return err
		}
	}

	return c.includeSettings()
}

// includeLine is what includeSettings appends to postgresql.conf.
const includeLine = "include 'pgtest.conf'\n"

// includeSettings makes postgresql.conf include pgtest.conf. Our
// parameters go to a separate included file so that start can rewrite it
// (new port) without re-parsing postgresql.conf; it is included last, and
// postgresql.auto.conf (ALTER SYSTEM) still wins.
func (c *Cluster) includeSettings() error {
	conf := filepath.Join(c.DataDir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", conf, err)
	}
	_, err = io.WriteString(f, "\n# Added by pgverbs internal/pgtest.\n"+includeLine)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("append to %s: %w", conf, err)
	}
	return nil
}

// includesSettings reports whether a postgresql.conf ends by including
// pgtest.conf, as includeSettings leaves it.
func includesSettings(conf []byte) bool {
	return bytes.HasSuffix(conf, []byte("\n"+includeLine))
}

func (c *Cluster) writeHBA(opts Options) error {
	var b strings.Builder
	b.WriteString("# Written by pgverbs internal/pgtest.\n")
	for _, line := range opts.HBA {
		b.WriteString(line)
		b.WriteByte('\n')
	}
	for _, db := range []string{"all", "replication"} {
		fmt.Fprintf(&b, "local %-11s all %s\n", db, opts.AuthMethod)
		for _, addr := range []string{"127.0.0.1/32", "::1/128"} {
			fmt.Fprintf(&b, "host  %-11s all %-12s %s\n", db, addr, opts.AuthMethod)
		}
	}
	return c.owner.writeFile(filepath.Join(c.DataDir, "pg_hba.conf"), []byte(b.String()), 0o600)
}

func (c *Cluster) writeTLS() error {
	m, err := generateTLS()
	if err != nil {
		return err
	}
	// The key must be 0600 and owned by the server user or postgres refuses
	// to start; the certificate files stay inside the data dir (referenced
	// relatively) so a base backup of the cluster still starts with ssl=on.
	if err := c.owner.writeFile(filepath.Join(c.DataDir, "server.key"), m.serverKey, 0o600); err != nil {
		return err
	}
	if err := c.owner.writeFile(filepath.Join(c.DataDir, "server.crt"), m.serverCert, 0o644); err != nil {
		return err
	}
	c.CAFile = filepath.Join(c.root, "ca.crt")
	return c.owner.writeFile(c.CAFile, m.caCert, 0o644)
}

// buildSettings merges the defaults with user settings. It reports the port
// when the user pinned one.
func buildSettings(user map[string]string, tls bool) (map[string]string, int, error) {
	s := map[string]string{
		"listen_addresses":      host,
		"max_connections":       "300",
		"fsync":                 "off",
		"synchronous_commit":    "off",
		"full_page_writes":      "on",
		"shared_buffers":        "64MB",
		"max_wal_senders":       "10",
		"max_replication_slots": "10",
		"wal_level":             "replica",
		"logging_collector":     "off",
		"log_min_messages":      "warning",
		"lc_messages":           "C",
	}
	if tls {
		// Relative to the data dir; see writeTLS.
		s["ssl"] = "on"
		s["ssl_cert_file"] = "server.crt"
		s["ssl_key_file"] = "server.key"
	}
	fixedPort := 0
	for k, v := range user {
		if !settingName.MatchString(k) {
			return nil, 0, fmt.Errorf("pgtest: invalid setting name %q", k)
		}
		if strings.ContainsAny(v, "\r\n") {
			return nil, 0, fmt.Errorf("pgtest: setting %s: value spans multiple lines", k)
		}
		if strings.EqualFold(k, "port") {
			p, err := strconv.Atoi(strings.Trim(v, "'"))
			if err != nil || p <= 0 || p > 65535 {
				return nil, 0, fmt.Errorf("pgtest: invalid port setting %q", v)
			}
			fixedPort = p
			continue
		}
		s[k] = v
	}
	return s, fixedPort, nil
}

func (c *Cluster) writeSettings(settings map[string]string) error {
	all := make(map[string]string, len(settings)+2)
	for k, v := range settings {
		all[k] = v
	}
	all["port"] = strconv.Itoa(c.Port)
	if _, ok := all["unix_socket_directories"]; !ok {
		all["unix_socket_directories"] = c.SocketDir
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	var b strings.Builder
	b.WriteString("# Written by pgverbs internal/pgtest; rewritten on every start attempt.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteSetting(all[k]))
	}
	return c.owner.writeFile(filepath.Join(c.DataDir, "pgtest.conf"), []byte(b.String()), 0o600)
}

// quoteSetting single-quotes a value; quoting is valid for every parameter
// type in postgresql.conf, so callers never have to think about it.
func quoteSetting(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// start launches the postmaster, retrying on another port when the chosen
// one was grabbed by someone else in the meantime.
func (c *Cluster) start(settings map[string]string, fixedPort int) error {
	for attempt := 1; ; attempt++ {
		if fixedPort != 0 {
			c.Port = fixedPort
		} else {
			p, err := freePort()
			if err != nil {
				return err
			}
			c.Port = p
		}
		if err := c.writeSettings(settings); err != nil {
			return err
		}
		logOffset := fileSize(c.logFile)
		c.logf("pgtest: starting postgres on port %d", c.Port)
		err := c.run(c.Bin("pg_ctl"), "-D", c.DataDir, "-l", c.logFile, "-w", "-t", strconv.Itoa(startTimeout), "start")
		if err == nil {
			return nil
		}
		attemptLog := readFrom(c.logFile, logOffset)
		if fixedPort == 0 && attempt < portAttempts && strings.Contains(attemptLog, "Address already in use") {
			c.logf("pgtest: port %d is in use, retrying with another one", c.Port)
			// A postmaster that could not bind has already exited and removed
			// postmaster.pid, so nothing needs undoing before the retry.
			continue
		}
		return fmt.Errorf("start server: %w\n%s", err, c.logTail())
	}
}

// waitReady confirms the server answers on its TCP port. pg_ctl -w only
// watches the status in postmaster.pid, which says nothing about whether the
// address the callers will use is reachable.
func (c *Cluster) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastErr error
	for {
		conn, err := pgconn.Connect(ctx, c.SuperURL())
		if err == nil {
			return conn.Close(ctx)
		}
		lastErr = err
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code != string(pgerr.CannotConnectNow) { // still starting
			// The server answered, so it is up; the superuser URL is merely
			// refused, e.g. by HBA lines that demand hostssl.
			c.logf("pgtest: server is up but refused the superuser URL: %v", err)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server did not accept connections: %w\n%s", lastErr, c.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop shuts the server down (fast, then immediate, then SIGKILL) and
// removes the cluster's temporary directory. Calling it again is a no-op.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true

	var errs []error
	if err := c.stopServer(); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(c.root); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", c.root, err))
	}
	return errors.Join(errs...)
}

func (c *Cluster) stopServer() error {
	pidFile := filepath.Join(c.DataDir, "postmaster.pid")
	if _, err := os.Stat(pidFile); errors.Is(err, os.ErrNotExist) {
		return nil // never started, or already down
	}
	pgCtl := c.Bin("pg_ctl")
	fastErr := c.run(pgCtl, "-D", c.DataDir, "-m", "fast", "-w", "-t", strconv.Itoa(stopTimeout), "stop")
	if fastErr == nil {
		return nil
	}
	c.logf("pgtest: fast shutdown failed, trying immediate: %v", fastErr)
	if err := c.run(pgCtl, "-D", c.DataDir, "-m", "immediate", "-w", "-t", strconv.Itoa(stopTimeout), "stop"); err == nil {
		return nil
	}

	pid, err := readPID(pidFile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // the server went away in the meantime
		}
		return fmt.Errorf("stop server: %w (after pg_ctl stop failed: %v)", err, fastErr)
	}
	c.logf("pgtest: immediate shutdown failed, killing postmaster %d", pid)
	// Backends notice the postmaster's death on their own and exit.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill postmaster %d: %w", pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("postmaster %d survived SIGKILL", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Restart restarts the server (fast shutdown) on the same port and waits
// until it accepts connections again.
func (c *Cluster) Restart() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pgtest: restart of a stopped cluster")
	}
	c.logf("pgtest: restarting postgres on port %d", c.Port)
	err := c.run(c.Bin("pg_ctl"), "-D", c.DataDir, "-l", c.logFile, "-m", "fast", "-w", "-t", strconv.Itoa(startTimeout), "restart")
	if err != nil {
		return fmt.Errorf("pgtest: restart server: %w\n%s", err, c.logTail())
	}
	if err := c.waitReady(); err != nil {
		return fmt.Errorf("pgtest: after restart: %w", err)
	}
	return nil
}

// URL returns a connection URL for the cluster over TCP with
// sslmode=disable. The password part is omitted when password is empty.
func (c *Cluster) URL(user, password, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		Host:     net.JoinHostPort(c.Host, strconv.Itoa(c.Port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else {
		u.User = url.User(user)
	}
	return u.String()
}

// SuperURL returns the URL of the "postgres" database for the superuser.
func (c *Cluster) SuperURL() string {
	return c.URL(c.User, c.Password, "postgres")
}

// Bin returns the path of the named PostgreSQL binary, e.g. "pg_basebackup".
func (c *Cluster) Bin(name string) string {
	return filepath.Join(c.BinDir, name)
}

// ServerLog returns the server's log so far, e.g. for a test to check that
// a restored server reached consistency; "" when there is none.
func (c *Cluster) ServerLog() string { return readFrom(c.logFile, 0) }

// Exec runs sql as the superuser over the simple query protocol, so it may
// contain several statements (and statements such as CREATE DATABASE that
// cannot run in a transaction block when sent alone).
func (c *Cluster) Exec(ctx context.Context, sql string) error {
	conn, err := pgconn.Connect(ctx, c.SuperURL())
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("pgtest: exec: %w", err)
	}
	return nil
}

// run executes a PostgreSQL binary as the server user; its combined output
// goes into the error, since that is where pg_ctl and initdb explain failures.
func (c *Cluster) run(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	// The server user may not be able to access the caller's working
	// directory, and initdb/pg_ctl complain when they cannot.
	cmd.Dir = c.root
	cmd.Env = childEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// pg_ctl start leaves a postmaster behind; should it ever inherit our
	// output pipe, don't wait for the postmaster to exit.
	cmd.WaitDelay = 5 * time.Second
	c.owner.apply(cmd)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// childEnv strips libpq/PG* variables from the environment: PGDATA, PGPORT,
// PGOPTIONS and friends set for the developer's own server would otherwise
// leak into pg_ctl and the postmaster. LC_ALL=C keeps tool output (which we
// grep, e.g. for "Address already in use") untranslated.
func childEnv() []string {
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_ALL=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// logTail returns the end of the server log for error messages.
func (c *Cluster) logTail() string {
	const maxTail = 4096
	size := fileSize(c.logFile)
	tail := readFrom(c.logFile, max(0, size-maxTail))
	if size > maxTail {
		if i := strings.IndexByte(tail, '\n'); i >= 0 {
			tail = tail[i+1:]
		}
	}
	tail = strings.TrimSpace(tail)
	if tail == "" {
		return "(server log " + c.logFile + " is empty)"
	}
	return "server log " + c.logFile + " (tail):\n" + tail
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	return port, nil
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on at the
// moment. Someone else may take it before the caller binds it (go test
// runs packages in parallel), so a caller that binds it must retry with
// another one when the bind fails, as New does.
func FreePort() (int, error) { return freePort() }

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readFrom returns the content of path from offset on; it is only used for
// diagnostics, so errors just yield less text.
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func readPID(pidFile string) (int, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("malformed %s", pidFile)
	}
	return pid, nil
}
