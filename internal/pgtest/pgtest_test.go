package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// queryOne runs sql over connString and returns the single value it yields.
func queryOne(ctx context.Context, connString, sql string) (string, error) {
	conn, err := pgconn.Connect(ctx, connString)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 1 {
		return "", fmt.Errorf("%q: want exactly one value, got %+v", sql, results)
	}
	return string(results[0].Rows[0][0]), nil
}

func mustQueryOne(t *testing.T, ctx context.Context, connString, sql string) string {
	t.Helper()
	v, err := queryOne(ctx, connString, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func TestTrustClusterSettingsRestartStop(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c := Start(t, Options{
		Settings:   map[string]string{"work_mem": "7MB", "application_name": "it's pgtest"},
		InitDBArgs: []string{"--data-checksums"},
	})

	if got := mustQueryOne(t, ctx, c.SuperURL(), "SELECT 1"); got != "1" {
		t.Fatalf("SELECT 1 = %q", got)
	}
	// Trust auth: no password needed.
	if got := mustQueryOne(t, ctx, c.URL("postgres", "", "postgres"), "SELECT current_user"); got != "postgres" {
		t.Fatalf("current_user = %q", got)
	}

	for setting, want := range map[string]string{
		"application_name":   "it's pgtest", // quoting round-trips
		"fsync":              "off",         // harness default
		"max_connections":    "300",
		"wal_level":          "replica",
		"data_checksums":     "on", // InitDBArgs reached initdb
		"lc_messages":        "C",
		"synchronous_commit": "off",
	} {
		// The connection's application_name would shadow the server
		// default, so read the configured value from pg_settings.
		got := mustQueryOne(t, ctx, c.SuperURL(), "SELECT reset_val FROM pg_settings WHERE name = '"+setting+"'")
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	if got := mustQueryOne(t, ctx, c.SuperURL(), "SHOW work_mem"); got != "7MB" {
		t.Errorf("SHOW work_mem = %q", got)
	}
	if got := mustQueryOne(t, ctx, c.SuperURL(), "SHOW unix_socket_directories"); got != c.SocketDir {
		t.Errorf("unix_socket_directories = %q, want %q", got, c.SocketDir)
	}

	if err := c.Exec(ctx, "CREATE TABLE t (i int); INSERT INTO t VALUES (41), (1)"); err != nil {
		t.Fatal(err)
	}
	var pgErr *pgconn.PgError
	if err := c.Exec(ctx, "SELECT * FROM missing"); !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
		t.Fatalf("Exec of bad SQL: got %v, want SQLSTATE 42P01", err)
	}

	port := c.Port
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if c.Port != port {
		t.Fatalf("port changed across restart: %d -> %d", port, c.Port)
	}
	if got := mustQueryOne(t, ctx, c.SuperURL(), "SELECT sum(i) FROM t"); got != "42" {
		t.Fatalf("sum after restart = %q", got)
	}

	root := filepath.Dir(c.DataDir)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temp dir %s still exists after Stop (stat: %v)", root, err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := c.Restart(); err == nil {
		t.Fatal("Restart after Stop succeeded")
	}
}

func TestScramPasswordAndHBA(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	const password = "s3cret p@ss/wörd:?"
	c := Start(t, Options{
		AuthMethod: "scram-sha-256",
		Password:   password,
		HBA:        []string{"host all blocked 127.0.0.1/32 reject"},
	})
	if c.Password != password {
		t.Fatalf("Password = %q", c.Password)
	}

	var pgErr *pgconn.PgError
	_, err := queryOne(ctx, c.URL(c.User, "wrong", "postgres"), "SELECT 1")
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: got %v, want SQLSTATE 28P01", err)
	}
	if got := mustQueryOne(t, ctx, c.SuperURL(), "SELECT 1"); got != "1" {
		t.Fatalf("SELECT 1 = %q", got)
	}
	method := mustQueryOne(t, ctx, c.SuperURL(), "SELECT auth_method FROM pg_hba_file_rules WHERE 'replication' = ANY(database) AND type = 'host' LIMIT 1")
	if method != "scram-sha-256" {
		t.Errorf("hba auth_method = %q", method)
	}

	// The extra HBA line comes first, so it beats the default lines.
	if err := c.Exec(ctx, "CREATE ROLE blocked LOGIN PASSWORD 'x'"); err != nil {
		t.Fatal(err)
	}
	_, err = queryOne(ctx, c.URL("blocked", "x", "postgres"), "SELECT 1")
	if !errors.As(err, &pgErr) || pgErr.Code != "28000" {
		t.Fatalf("rejected role: got %v, want SQLSTATE 28000", err)
	}
}

func TestTLSVerifyFull(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c := Start(t, Options{TLS: true})
	if c.CAFile == "" {
		t.Fatal("CAFile is empty")
	}

	connString := fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=postgres sslmode=verify-full sslrootcert=%s",
		c.Host, c.Port, c.User, c.Password, c.CAFile)
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("verify-full connect: %v", err)
	}
	defer conn.Close(context.Background())
	results, err := conn.Exec(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(results[0].Rows[0][0]); got != "t" {
		t.Fatalf("pg_stat_ssl.ssl = %q, want t", got)
	}

	// Against a different CA verification must fail, proving the check is real.
	other := filepath.Join(t.TempDir(), "other-ca.crt")
	m, err := generateTLS()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, m.caCert, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s password=%s dbname=postgres sslmode=verify-full sslrootcert=%s",
		c.Host, c.Port, c.User, c.Password, other))
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := pgconn.ConnectConfig(ctx, cfg); err == nil {
		conn.Close(context.Background())
		t.Fatal("verify-full succeeded against an unrelated CA")
	}
}

func TestBinDir(t *testing.T) {
	dir, err := BinDir()
	if errors.Is(err, errNoBinaries) && os.Getenv("PGTEST_REQUIRE") != "1" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := checkBinDir(dir); err != nil {
		t.Fatalf("BinDir() = %s: %v", dir, err)
	}

	t.Setenv("PG_BINDIR", dir)
	if got, err := BinDir(); err != nil || got != dir {
		t.Fatalf("with PG_BINDIR: %q, %v", got, err)
	}
	// A wrong explicit setting is an error, not "PostgreSQL not installed",
	// so Start fails instead of silently skipping.
	t.Setenv("PG_BINDIR", t.TempDir())
	if _, err := BinDir(); err == nil || errors.Is(err, errNoBinaries) {
		t.Fatalf("bad PG_BINDIR: got %v", err)
	}
}

func TestURL(t *testing.T) {
	c := &Cluster{Host: "127.0.0.1", Port: 5433}
	for _, tc := range []struct{ user, password, db, want string }{
		{"postgres", "", "postgres", "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable"},
		{"u", "p@ss word/:", "my db", "postgres://u:p%40ss%20word%2F%3A@127.0.0.1:5433/my%20db?sslmode=disable"},
	} {
		got := c.URL(tc.user, tc.password, tc.db)
		if got != tc.want {
			t.Errorf("URL(%q, %q, %q) = %s, want %s", tc.user, tc.password, tc.db, got, tc.want)
		}
		cfg, err := pgconn.ParseConfig(got)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.User != tc.user || cfg.Password != tc.password || cfg.Database != tc.db || cfg.Port != 5433 {
			t.Errorf("%s parsed to user=%q password=%q db=%q port=%d", got, cfg.User, cfg.Password, cfg.Database, cfg.Port)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	for name, opts := range map[string]Options{
		"auth":    {AuthMethod: "peer-ish"},
		"hba":     {HBA: []string{"local all all trust\nhost all all 0.0.0.0/0 trust"}},
		"setting": {Settings: map[string]string{"work_mem = 1MB\nfsync": "on"}},
		"port":    {Settings: map[string]string{"port": "many"}},
	} {
		if c, err := New(opts); err == nil {
			c.Stop()
			t.Errorf("%s: New accepted invalid options", name)
		}
	}
}

func TestQuoteSetting(t *testing.T) {
	for in, want := range map[string]string{
		"on":           "'on'",
		"it's":         "'it''s'",
		"'already'":    "'already'",
		"/tmp/a dir":   "'/tmp/a dir'",
		"":             "''",
		"'":            "''''",
		"pg_stat_stat": "'pg_stat_stat'",
	} {
		if got := quoteSetting(in); got != want {
			t.Errorf("quoteSetting(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestStartFailureCleansUp(t *testing.T) {
	if _, err := BinDir(); err != nil {
		t.Skip(err)
	}
	// A private TMPDIR lets us see exactly what New leaves behind, even
	// with other test binaries creating clusters concurrently. It must be
	// traversable by the postgres user when we run as root.
	tmp, err := os.MkdirTemp("", "pgtest-failure-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)

	assertEmpty := func() {
		t.Helper()
		entries, err := os.ReadDir(tmp)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("failed New left %d entries behind, first %s", len(entries), entries[0].Name())
		}
	}

	_, err = New(Options{Settings: map[string]string{"shared_buffers": "banana"}, Logf: t.Logf})
	if err == nil {
		t.Fatal("New succeeded with an invalid setting")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "server log") || !strings.Contains(err.Error(), "shared_buffers") {
		t.Errorf("error lacks the server log tail: %v", err)
	}
	assertEmpty()

	// A pinned port that is taken fails with the postmaster's bind error,
	// the same text the retry loop looks for.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = New(Options{Settings: map[string]string{"port": strconv.Itoa(port)}, Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("New on a busy port: got %v, want an address-in-use error", err)
	}
	assertEmpty()
}
