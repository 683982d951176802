package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

func pgErrCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Severity + " " + pgErr.Code
	}
	return ""
}

// TestClientTLS checks TLS termination at the proxy with psql and pgx
// (sslmode=verify-full against the proxy's certificate), over a backend
// that itself requires TLS, and a certificate reload on SIGHUP.
func TestClientTLS(t *testing.T) {
	c := cluster(t, pgtest.Options{AuthMethod: "scram-sha-256", Password: "pw", TLS: true,
		HBA: []string{"hostssl all all 127.0.0.1/32 scram-sha-256", "hostnossl all all 127.0.0.1/32 reject"}})
	dir := t.TempDir()
	cert, key := pgtest.WriteSelfSigned(t, dir, "proxy-one")
	backendURL := "postgres://127.0.0.1:" + itoa(c.Port) + "/postgres?sslmode=verify-full&sslrootcert=" + c.CAFile
	p := startProxy(t, backendURL, "--tls-cert", cert, "--tls-key", key)
	ctx := testCtx(t)

	// TLS on both sides and SCRAM: channel binding cannot work through a
	// TLS-terminating proxy; the client gets a clear FATAL 28000.
	_, err := pgx.Connect(ctx, p.URL("postgres", "pw", "postgres", "sslmode=verify-full", "sslrootcert="+cert))
	if pgErrCode(err) != "FATAL 28000" || !strings.Contains(err.Error(), "channel binding cannot pass through pgverbs") {
		t.Fatalf("channel_binding=prefer over TLS both sides: got %v, want FATAL 28000 from pgverbs", err)
	}

	url := p.URL("postgres", "pw", "postgres", "sslmode=verify-full", "sslrootcert="+cert, "channel_binding=disable")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("pgx verify-full through proxy: %v", err)
	}
	var ssl bool
	// The server sees TLS on its side too (the backend requires it).
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("backend side TLS = %v, %v", ssl, err)
	}
	if !conn.PgConn().Conn().(*tls.Conn).ConnectionState().HandshakeComplete {
		t.Fatal("client side is not TLS")
	}
	conn.Close(ctx)

	out, err := psql(t, c, url, "-Atc", "SELECT 'tls ok'")
	if err != nil || strings.TrimSpace(out) != "tls ok" {
		t.Fatalf("psql sslmode=verify-full: %v %s", err, out)
	}

	// A plaintext backend connection offers no PLUS, so a TLS client with
	// the default channel_binding=prefer gets through.
	c2 := cluster(t, pgtest.Options{AuthMethod: "scram-sha-256", Password: "pw"})
	p3 := startProxy(t, c2.URL("", "", "postgres"), "--tls-cert", cert, "--tls-key", key)
	out, err = psql(t, c2, p3.URL("postgres", "pw", "postgres", "sslmode=require"), "-Atc", "SELECT 'scram over tls'")
	if err != nil || strings.TrimSpace(out) != "scram over tls" {
		t.Fatalf("psql scram with TLS to proxy, plaintext backend: %v %s", err, out)
	}

	// sslmode=require with a plaintext-only proxy must fail on the client.
	plain := startProxy(t, backendURL)
	if _, err := pgx.Connect(ctx, plain.URL("postgres", "pw", "postgres", "sslmode=require")); err == nil {
		t.Fatal("sslmode=require succeeded against a proxy without TLS")
	}
	// ...while sslmode=prefer falls back to plaintext.
	out, err = psql(t, c, plain.URL("postgres", "pw", "postgres", "sslmode=prefer"), "-Atc", "SELECT 1")
	if err != nil {
		t.Fatalf("sslmode=prefer against plaintext proxy: %v %s", err, out)
	}

	// SIGHUP reloads the certificate: new connections see the new one.
	cert2, key2 := pgtest.WriteSelfSigned(t, dir, "proxy-two")
	if err := os.Rename(cert2, cert); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(key2, key); err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(p.Log.String(), "configuration reloaded") })
	conn, err = pgx.Connect(ctx, p.URL("postgres", "pw", "postgres", "sslmode=require", "channel_binding=disable"))
	if err != nil {
		t.Fatalf("connect after reload: %v", err)
	}
	defer conn.Close(ctx)
	peer := conn.PgConn().Conn().(*tls.Conn).ConnectionState().PeerCertificates[0]
	if peer.Subject.CommonName != "proxy-two" {
		t.Fatalf("after SIGHUP the proxy presents %q, want proxy-two", peer.Subject.CommonName)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCancel cancels a running query through the proxy, with pgx (set to
// send CancelRequest, to the address it connected to, when the context
// ends), with pgconn's CancelRequest, and with psql's SIGINT handling; each
// time the server's 57014 ends the query and the session goes on.
func TestCancel(t *testing.T) {
	c, p := trustSetup(t, pgtest.Options{})
	ctx := testCtx(t)
	conn := connectCancelling(t, p.URL("postgres", "", "postgres"))
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// Cancel only once the query runs: a CancelRequest that reaches
		// an idle backend is ignored, and the query would then run on.
		_, _ = pollActivity(c, "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query = $1", "SELECT pg_sleep(30)")
		cancel()
	}()
	start := time.Now()
	_, err := conn.Exec(qctx, "SELECT pg_sleep(30)")
	wantCode(t, err, "57014")
	if time.Since(start) > 15*time.Second {
		t.Fatalf("query was cancelled after %v: not by the CancelRequest", time.Since(start))
	}
	// The same session is usable afterwards.
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("the cancelled session afterwards: %d, %v", one, err)
	}

	// Raw cancel through pgconn on a live connection: the query ends 57014.
	conn2 := connect(t, p.URL("postgres", "", "postgres"))
	done := make(chan error, 1)
	go func() {
		_, err := conn2.PgConn().Exec(ctx, "SELECT pg_sleep(30)").ReadAll()
		done <- err
	}()
	activeBackend(t, c, "SELECT pg_sleep(30)")
	other, err := pgconn.Connect(ctx, p.URL("postgres", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	if err := conn2.PgConn().CancelRequest(ctx); err != nil {
		t.Fatalf("CancelRequest: %v", err)
	}
	select {
	case err := <-done:
		if pgErrCode(err) != "ERROR 57014" {
			t.Fatalf("after CancelRequest: %v, want 57014", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("CancelRequest through the proxy did not cancel the query")
	}

	// psql: SIGINT makes psql send a CancelRequest to the proxy.
	cmd, out := startPsql(t, c, p.URL("postgres", "", "postgres"), "-c", "SELECT pg_sleep(30)")
	activeBackend(t, c, "SELECT pg_sleep(30)")
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = waitExit(t, cmd, 15*time.Second, "SIGINT")
	if !strings.Contains(out.String(), "canceling statement due to user request") {
		t.Fatalf("psql output after Ctrl-C: %s", out.String())
	}
}

// TestReplicationThroughProxy runs pg_basebackup and pg_receivewal through
// the proxy (replication=true connections, CopyBoth) and verifies the backup.
func TestReplicationThroughProxy(t *testing.T) {
	c, p := trustSetup(t, pgtest.Options{})
	ctx := testCtx(t)
	if err := c.Exec(ctx, "CREATE TABLE r AS SELECT g FROM generate_series(1, 10000) g"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	target := filepath.Join(dir, "backup")
	cmd := exec.CommandContext(ctx, c.Bin("pg_basebackup"), "-d", p.URL("postgres", "", ""), "-D", target,
		"-Fp", "-X", "stream", "-c", "fast", "-P")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup through proxy: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, c.Bin("pg_verifybackup"), target).CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	}

	// pg_receivewal streams until it has a segment on disk; then stop it.
	waldir := filepath.Join(dir, "wal")
	if err := os.Mkdir(waldir, 0o700); err != nil {
		t.Fatal(err)
	}
	rw := exec.Command(c.Bin("pg_receivewal"), "-d", p.URL("postgres", "", ""), "-D", waldir, "--no-loop")
	var rwOut syncBuffer
	rw.Stdout, rw.Stderr = &rwOut, &rwOut
	if err := rw.Start(); err != nil {
		t.Fatal(err)
	}
	// pg_receivewal may connect after a given switch; keep writing and
	// switching until a completed segment arrives through the proxy.
	waitFor(t, func() bool {
		if err := c.Exec(ctx, "CREATE TABLE IF NOT EXISTS r2(g int); INSERT INTO r2 VALUES (1); SELECT pg_switch_wal()"); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(waldir)
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".partial") {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
	_ = rw.Process.Signal(syscall.SIGINT)
	_ = rw.Wait()
}

// TestBackendFailures: a backend that is down gives FATAL 08006; a backend
// killed mid-session gives that session the proxy's 08006, and every other
// session the server's WARNING 57P02 and then the proxy's 08006 (PostgreSQL
// 14 and later end them with a warning, not a FATAL), while the proxy keeps
// serving new ones; a terminated backend's 57P01 reaches its client and
// leaves others alone.
func TestBackendFailures(t *testing.T) {
	ctx := testCtx(t)
	down := startProxy(t, "postgres://127.0.0.1:"+itoa(freePort(t))+"/postgres?sslmode=disable")
	_, err := pgx.Connect(ctx, down.URL("postgres", "", "postgres"))
	if pgErrCode(err) != "FATAL 08006" {
		t.Fatalf("backend down: got %v, want FATAL 08006", err)
	}

	c, p := trustSetup(t, pgtest.Options{})
	victim := connect(t, p.URL("postgres", "", "postgres"))
	var notices syncBuffer
	bcfg, err := pgx.ParseConfig(p.URL("postgres", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	bcfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { fmt.Fprintf(&notices, "%s %s;", n.Severity, n.Code) }
	bystander, err := pgx.ConnectConfig(ctx, bcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bystander.Close(ctx)
	var pid, bypid int
	if err := victim.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if err := bystander.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&bypid); err != nil {
		t.Fatal(err)
	}
	// SIGKILL of one backend makes the postmaster restart all backends: the
	// hard case. The victim's backend vanishes without a word, so the proxy
	// speaks for it; the bystander's is told why by the postmaster.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill backend %d: %v", pid, err)
	}
	_, err = victim.Exec(ctx, "SELECT 1")
	if pgErrCode(err) != "FATAL 08006" {
		t.Fatalf("query on a killed backend: %v, want the proxy's FATAL 08006", err)
	}
	// The postmaster ends the other backends in its own time.
	waitFor(t, func() bool { return syscall.Kill(bypid, 0) != nil })
	_, err = bystander.Exec(ctx, "SELECT 1")
	if pgErrCode(err) != "FATAL 08006" || notices.String() != "WARNING 57P02;" {
		t.Fatalf("query of another session after the crash restart: %v after notices %q, want the server's WARNING 57P02 and the proxy's FATAL 08006", err, notices.String())
	}
	var one int
	waitFor(t, func() bool {
		conn, err := pgx.Connect(ctx, p.URL("postgres", "", "postgres"))
		if err != nil {
			return false
		}
		defer conn.Close(ctx)
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one) == nil
	})

	// pg_terminate_backend: the server's own FATAL 57P01 reaches the client;
	// an idle bystander keeps its session and its backend.
	a := connect(t, p.URL("postgres", "", "postgres"))
	b := connect(t, p.URL("postgres", "", "postgres"))
	idle := connect(t, p.URL("postgres", "", "postgres"))
	var apid int
	if err := a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&apid); err != nil {
		t.Fatal(err)
	}
	if err := idle.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&bypid); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Exec(ctx, "SELECT pg_terminate_backend($1)", apid); err != nil {
		t.Fatal(err)
	}
	backendGone(t, c, apid)
	_, err = a.Exec(ctx, "SELECT 1")
	if pgErrCode(err) != "FATAL 57P01" {
		t.Fatalf("query on a terminated backend: %v, want the server's FATAL 57P01", err)
	}
	if err := b.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("other session after pg_terminate_backend: %v", err)
	}
	var again int
	if err := idle.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&again); err != nil || again != bypid {
		t.Fatalf("idle session after pg_terminate_backend: backend %d, %v; want its own backend %d still", again, err, bypid)
	}

	// psql sees the proxy's 08006, an ErrorResponse with a SQLSTATE (which
	// libpq's own message for a dropped connection has not), when the
	// backend vanishes silently in the middle of a query.
	cmd, out := startPsql(t, c, p.URL("postgres", "", "postgres"), "-v", "VERBOSITY=verbose", "-c", "SELECT pg_sleep(30)")
	if err := syscall.Kill(activeBackend(t, c, "SELECT pg_sleep(30)"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := waitExit(t, cmd, 15*time.Second, "its backend was killed"); err == nil {
		t.Fatalf("psql succeeded on a killed backend:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "FATAL:  08006: server closed the connection unexpectedly") {
		t.Fatalf("psql on a killed backend, want the proxy's FATAL 08006:\n%s", out.String())
	}
}

// TestMaxClientConns: clients beyond max_client_conns get FATAL 53300, and
// SIGHUP applies a new limit from the config file.
func TestMaxClientConns(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "pgverbs.yaml")
	if err := os.WriteFile(cfg, []byte("max_client_conns: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, p := trustSetup(t, pgtest.Options{}, "--config", cfg)
	ctx := testCtx(t)
	connect(t, p.URL("postgres", "", "postgres"))
	connect(t, p.URL("postgres", "", "postgres"))
	_, err := pgx.Connect(ctx, p.URL("postgres", "", "postgres"))
	if pgErrCode(err) != "FATAL 53300" {
		t.Fatalf("third client: got %v, want FATAL 53300", err)
	}
	if err := os.WriteFile(cfg, []byte("max_client_conns: 3\nlog_level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(p.Log.String(), "configuration reloaded") })
	connect(t, p.URL("postgres", "", "postgres"))
	_, err = pgx.Connect(ctx, p.URL("postgres", "", "postgres"))
	if pgErrCode(err) != "FATAL 53300" {
		t.Fatalf("fourth client after raising the limit to 3: got %v, want FATAL 53300", err)
	}
	// An invalid file on SIGHUP keeps the running configuration.
	if err := os.WriteFile(cfg, []byte("max_client_conns: 3\nno_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(p.Log.String(), "configuration invalid") })
	if !strings.Contains(p.Log.String(), "no_such_key") {
		t.Fatalf("reload error does not name the bad key:\n%s", p.Log.String())
	}
}

// TestAuthTimeout: a client that connects and sends nothing is dropped
// after auth_timeout, like PostgreSQL's authentication_timeout.
func TestAuthTimeout(t *testing.T) {
	_, p := trustSetup(t, pgtest.Options{}, "--auth-timeout", "1s")
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	_, err = conn.Read(make([]byte, 1))
	if err == nil || time.Since(start) > 8*time.Second {
		t.Fatalf("silent client not dropped: %v after %v", err, time.Since(start))
	}
}

// TestGracefulShutdown: SIGTERM stops accepting, lets an idle-in-use
// session finish within shutdown_timeout, then terminates it with 57P01.
func TestGracefulShutdown(t *testing.T) {
	c, p := trustSetup(t, pgtest.Options{}, "--shutdown-timeout", "6s")
	ctx := testCtx(t)
	conn := connect(t, p.URL("postgres", "", "postgres"))
	// A query running when SIGTERM arrives completes normally.
	res := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(2)")
		res <- err
	}()
	activeBackend(t, c, "SELECT pg_sleep(2)")
	p.Signal(t, syscall.SIGTERM)
	if err := <-res; err != nil {
		t.Fatalf("query in flight during SIGTERM: %v", err)
	}
	// New connections are refused once shutdown started.
	if _, err := pgconn.Connect(ctx, p.URL("postgres", "", "postgres")); err == nil {
		t.Fatal("new connection accepted during shutdown")
	}
	// After shutdown_timeout the idle session is terminated with 57P01:
	// pgx reports it on the next use (the FATAL was sent while idle).
	if err := p.Wait(t, 15*time.Second); err != nil {
		t.Fatalf("pgverbs exit status: %v", err)
	}
	_, err := conn.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("session survived shutdown")
	}
	if !strings.Contains(p.Log.String(), "remaining sessions terminated") {
		t.Fatalf("log does not show the timeout path:\n%s", p.Log.String())
	}

	// SIGINT: immediate, and the FATAL 57P01 is delivered to a waiting psql.
	c2, p2 := trustSetup(t, pgtest.Options{}, "--shutdown-timeout", "60s")
	conn2, err := pgconn.Connect(ctx, p2.URL("postgres", "", "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(ctx)
	res2 := make(chan error, 1)
	go func() {
		_, err := conn2.Exec(ctx, "SELECT pg_sleep(20)").ReadAll()
		res2 <- err
	}()
	activeBackend(t, c2, "SELECT pg_sleep(20)")
	start := time.Now()
	p2.Signal(t, syscall.SIGINT)
	select {
	case err := <-res2:
		if pgErrCode(err) != "FATAL 57P01" {
			t.Fatalf("query during SIGINT: %v, want FATAL 57P01", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGINT did not end the running query")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("SIGINT took %v", time.Since(start))
	}
	if err := p2.Wait(t, 10*time.Second); err != nil {
		t.Fatalf("pgverbs exit status after SIGINT: %v", err)
	}
}
