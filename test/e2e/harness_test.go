package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// pgverbsBin is the binary under test, built once by TestMain.
var pgverbsBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgverbs-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pgverbsBin = filepath.Join(dir, "pgverbs")
	args := []string{"build", "-o", pgverbsBin}
	if os.Getenv("PGVERBS_E2E_RACE") != "" {
		// The proxy under test built with the race detector: its log then
		// shows any data race, and it exits non-zero at shutdown.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "github.com/pgverbs/pgverbs")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pgverbs:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proxyProc is a running pgverbs process.
type proxyProc struct {
	Host string
	Port int
	cmd  *exec.Cmd
	Log  *syncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
}

// Addr is host:port of the proxy.
func (p *proxyProc) Addr() string { return net.JoinHostPort(p.Host, fmt.Sprint(p.Port)) }

// URL is a libpq URL to the proxy.
func (p *proxyProc) URL(user, password, db string, params ...string) string {
	u := "postgres://" + user
	if password != "" {
		u += ":" + password
	}
	u += "@" + p.Addr() + "/" + db
	if len(params) == 0 {
		params = []string{"sslmode=disable"}
	}
	return u + "?" + strings.Join(params, "&")
}

// Signal sends sig to the proxy process.
func (p *proxyProc) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal proxy: %v", err)
	}
}

// Wait waits for the process to exit, up to d.
func (p *proxyProc) Wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("proxy did not exit within %v; log:\n%s", d, p.Log.String())
		return nil
	}
}

// proxyAttempts bounds the ports startProxy tries: one picked by
// freePort can be taken by a parallel test binary before pgverbs binds it.
const proxyAttempts = 5

// startProxy runs pgverbs in front of backendURL on a free port and waits
// until it accepts connections, on another port when the one picked was
// taken in the meantime.
func startProxy(t testing.TB, backendURL string, args ...string) *proxyProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p := launchProxy(t, freePort(t), backendURL, args...)
		if p.waitReady(t) {
			checkRelayMode(t, p)
			return p
		}
		if attempt == proxyAttempts || !strings.Contains(p.Log.String(), "address already in use") {
			t.Fatalf("pgverbs exited early: %v\n%s", p.err, p.Log.String())
		}
		t.Logf("pgverbs could not bind port %d, retrying with another one", p.Port)
	}
}

// launchProxy starts pgverbs listening on port; t.Cleanup stops it.
func launchProxy(t testing.TB, port int, backendURL string, args ...string) *proxyProc {
	t.Helper()
	p := &proxyProc{Host: "127.0.0.1", Port: port, Log: &syncBuffer{}, done: make(chan struct{})}
	all := append([]string{"--listen", p.Addr(), "--backend", backendURL, "--log-level", "debug"}, args...)
	p.cmd = exec.Command(pgverbsBin, all...)
	p.cmd.Stderr = p.Log
	p.cmd.Stdout = p.Log
	p.cmd.Env = append(os.Environ(), "PGVERBS_CONFIG=")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start pgverbs: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if strings.Contains(p.Log.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in pgverbs")
		}
		if t.Failed() {
			t.Logf("pgverbs log:\n%s", p.Log.String())
		}
	})
	return p
}

// waitReady waits until the proxy accepts connections, and reports false
// when it exits first. It waits for the ready line, written once pgverbs
// listens, before dialling: a dial alone could reach whoever took the port.
func (p *proxyProc) waitReady(t testing.TB) bool {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-p.done:
			return false
		default:
		}
		if strings.Contains(p.Log.String(), "pgverbs ready") {
			c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
			if err != nil {
				t.Fatalf("pgverbs is ready but does not accept connections: %v\n%s", err, p.Log.String())
			}
			c.Close()
			return true
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgverbs did not become ready:\n%s", p.Log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePort returns a port nothing listens on now; see pgtest.FreePort.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := pgtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// cluster starts a throwaway PostgreSQL cluster for the test.
func cluster(t testing.TB, opts pgtest.Options) *pgtest.Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	return pgtest.Start(t, opts)
}

// psql runs the real psql binary against the proxy; it returns combined
// output and the error from the run.
func psql(t testing.TB, c *pgtest.Cluster, connURL string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	all := append([]string{"-X", "-v", "ON_ERROR_STOP=1", "-d", connURL}, args...)
	cmd := exec.CommandContext(ctx, c.Bin("psql"), all...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// psqlCmd returns a psql command for the caller to set up and run.
func psqlCmd(t testing.TB, c *pgtest.Cluster, connURL string, args ...string) *exec.Cmd {
	t.Helper()
	all := append([]string{"-X", "-v", "ON_ERROR_STOP=1", "-d", connURL}, args...)
	cmd := exec.Command(c.Bin("psql"), all...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=10", "LC_ALL=C")
	return cmd
}

func itoa(n int) string { return fmt.Sprint(n) }

func fmtType(v any) string { return fmt.Sprintf("%T", v) }

// checkRelayMode fails the test unless pgverbs relays in the mode make test
// asked for: a run meant for the goroutine relay that used the loops would
// leave the fallback untested.
func checkRelayMode(t testing.TB, p *proxyProc) {
	t.Helper()
	want := os.Getenv("PGVERBS_RELAY_MODE")
	if want == "" {
		want = "loop"
		if runtime.GOOS != "linux" {
			want = "goroutines"
		}
	}
	if log := p.Log.String(); !strings.Contains(log, `"relay_mode": "`+want+`"`) {
		t.Fatalf("pgverbs is not relaying in mode %q:\n%s", want, log)
	}
}

// activeBackend polls the cluster's pg_stat_activity until a backend runs
// query (state active) and returns its pid: the point from which a cancel
// or a signal meets the query rather than racing its start.
func activeBackend(t testing.TB, c *pgtest.Cluster, query string) int {
	t.Helper()
	pid, err := pollActivity(c, "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query = $1 LIMIT 1", query)
	if err != nil {
		t.Fatalf("no backend runs %q: %v", query, err)
	}
	return pid
}

// backendGone polls the cluster's pg_stat_activity until pid is no longer
// there: a terminated backend has exited, and sent its FATAL.
func backendGone(t testing.TB, c *pgtest.Cluster, pid int) {
	t.Helper()
	if _, err := pollActivity(c, "SELECT 0 WHERE NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", pid); err != nil {
		t.Fatalf("backend %d is still there: %v", pid, err)
	}
}

// pollActivity runs sql with arg on a superuser connection of its own until
// it returns a row, for up to 30 seconds, and returns the row's integer.
// It does not fail the test, so that a goroutine may call it.
func pollActivity(c *pgtest.Cluster, sql string, arg any) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.SuperURL())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	for {
		var n int
		err := conn.QueryRow(ctx, sql, arg).Scan(&n)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// connectCancelling connects like connect, with pgx set to send a
// CancelRequest (to the address it connected to: the proxy) when a query's
// context ends, instead of its default of only expiring the socket's
// deadline. The deadline comes 20 seconds later, so a query still ends by
// the server's 57014 only if the cancel went through.
func connectCancelling(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 20 * time.Second}
	}
	conn, err := pgx.ConnectConfig(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// startPsql starts psql on connURL in the background (see psqlCmd); its
// output, standard and error, goes to the returned buffer.
func startPsql(t testing.TB, c *pgtest.Cluster, connURL string, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := psqlCmd(t, c, connURL, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// waitExit waits up to d for cmd to exit and returns its status; one that
// outlives d is killed and fails the test, saying it did not end after why.
func waitExit(t testing.TB, cmd *exec.Cmd, d time.Duration, why string) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-errc
		t.Fatalf("%s did not end after %s", filepath.Base(cmd.Path), why)
		return nil
	}
}
