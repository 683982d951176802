package main

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap/zaptest"

	"github.com/pgverbs/pgverbs/backend"
	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/proxy"
	"github.com/pgverbs/pgverbs/walarchive"
)

// walFake is an Archiver that records what the commands ask of it; the
// proxy's sessions call it from their own goroutines.
type walFake struct {
	mu      sync.Mutex
	started []walarchive.Options
	status  walarchive.Status
	check   walarchive.CheckResult
}

func (f *walFake) Start(_ context.Context, o walarchive.Options) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, o)
	return nil
}
func (f *walFake) Stop(context.Context, bool) error { return nil }
func (f *walFake) Alter(_ context.Context, change func(*walarchive.Options) error) error {
	var o walarchive.Options
	return change(&o)
}
func (f *walFake) SetPaused(bool) error { return nil }
func (f *walFake) Status() (walarchive.Status, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, true
}
func (f *walFake) Segments() ([]walarchive.SegmentInfo, error) {
	return []walarchive.SegmentInfo{{Name: "000000010000000000000001", Timeline: 1, Start: 0x1000000, End: 0x2000000,
		State: walarchive.SegComplete, Bytes: 16 << 20, CompletedAt: time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)}}, nil
}
func (f *walFake) Check(context.Context) (walarchive.CheckResult, error) { return f.check, nil }

func (f *walFake) lastStarted() walarchive.Options {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.started) == 0 {
		return walarchive.Options{}
	}
	return f.started[len(f.started)-1]
}

// TestWALCommandsThroughProxy drives the WAL ARCHIVE commands, as
// registerWALCommands registers them, through the proxy in front of a
// real server with pgx: the server reads RETENTION and MAX_SIZE and
// decides the role's privileges, transaction blocks refuse what acts on
// the archive, rows arrive typed (binary where pgx asks), and the
// server's own SHOW and ALTER SYSTEM still reach it.
func TestWALCommandsThroughProxy(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Logf: t.Logf})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := t.TempDir()
	fake := &walFake{status: walarchive.Status{State: walarchive.Streaming, Slot: "pgverbs", Timeline: 1,
		Received: 0x3000060, Flushed: 0x3000000, UpstreamFlush: 0x3000060, LagBytes: 0x60, LagSeconds: 0.5,
		Segments: 2, Bytes: 32 << 20, Synchronous: true}}
	reg := commands.NewRegistry()
	registerWALCommands(reg, root, fake)
	addr := serveProxy(t, c.URL("", "", "postgres"), reg)
	url := func(user string) string { return "postgres://" + user + "@" + addr + "/postgres?sslmode=disable" }
	for _, sql := range []string{
		"CREATE ROLE plain LOGIN", "CREATE ROLE repl LOGIN REPLICATION", "CREATE ROLE watcher LOGIN IN ROLE pg_monitor",
	} {
		if err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	super := walConnect(t, ctx, url("postgres"))

	// The server's own statements that share a first word.
	var level, segSize string
	if err := super.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil || level != "replica" {
		t.Fatalf("SHOW wal_level: %q, %v", level, err)
	}
	if err := super.QueryRow(ctx, "SHOW wal_segment_size").Scan(&segSize); err != nil || segSize != "16MB" {
		t.Fatalf("SHOW wal_segment_size: %q, %v", segSize, err)
	}
	tag, err := super.Exec(ctx, "ALTER SYSTEM SET wal_keep_size = '64MB'")
	if err != nil || tag.String() != "ALTER SYSTEM" {
		t.Fatalf("ALTER SYSTEM: %v, %v", tag, err)
	}
	var setting string
	if err := super.QueryRow(ctx, "SELECT setting FROM pg_file_settings WHERE name = 'wal_keep_size'").Scan(&setting); err != nil || setting != "64MB" {
		t.Fatalf("ALTER SYSTEM did not reach the server: %q, %v", setting, err)
	}
	if _, err := super.Exec(ctx, "ALTER SYSTEM RESET wal_keep_size"); err != nil {
		t.Fatal(err)
	}

	// START, with the server reading the interval and the size.
	tag, err = super.Exec(ctx, "START WAL ARCHIVE TO 'wal/main' WITH (RETENTION '1 mon 2 hours', MAX_SIZE '1.5 GB', SYNCHRONOUS off)")
	if err != nil || tag.String() != "START WAL ARCHIVE" {
		t.Fatalf("START: %v, %v", tag, err)
	}
	o := fake.lastStarted()
	if o.Dir != filepath.Join(root, "wal/main") || o.Retention != 30*24*time.Hour+2*time.Hour || o.MaxSize != 1536<<20 ||
		o.Synchronous || o.User != "postgres" {
		t.Fatalf("Start got %+v", o)
	}
	_, err = super.Exec(ctx, "START WAL ARCHIVE TO 'w' WITH (RETENTION 'soon')")
	walWantCode(t, err, "22007")
	_, err = super.Exec(ctx, "ALTER WAL ARCHIVE SET (MAX_SIZE 'lots')")
	walWantCode(t, err, "22023")
	_, err = super.Exec(ctx, "START WAL ARCHIVE TO '../out'")
	walWantCode(t, err, "42501")

	// Slot names the server would refuse are refused as the server
	// refuses them, before the archive ever connects. (A name too long,
	// the server truncates before it checks, so it never says so.)
	direct := walConnect(t, ctx, c.SuperURL())
	for _, slot := range []string{"Arch", "", "a-b", "é"} {
		_, serr := direct.Exec(ctx, "SELECT pg_create_physical_replication_slot($1)", slot)
		_, err := super.Exec(ctx, "START WAL ARCHIVE TO 'w' WITH (SLOT '"+slot+"')")
		var want, got *pgconn.PgError
		if !errors.As(serr, &want) || !errors.As(err, &got) || got.Code != want.Code || got.Message != want.Message || got.Hint != want.Hint {
			t.Errorf("slot %q: got %v, the server says %v", slot, err, serr)
		}
	}

	// Standalone: refused in a block and in a multi-statement query; SHOW
	// runs anywhere.
	tx, err := super.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var state string
	rows, err := tx.Query(ctx, "SHOW WAL ARCHIVE")
	if err == nil {
		if rows.Next() {
			state = string(rows.RawValues()[0]) // a text column: the same bytes in either format
		}
		rows.Close()
		err = rows.Err()
	}
	if err != nil || state != "streaming" {
		t.Fatalf("SHOW WAL ARCHIVE in a block: %q, %v", state, err)
	}
	_, err = tx.Exec(ctx, "ALTER WAL ARCHIVE PAUSE")
	walWantCode(t, err, "25001")
	tx.Rollback(ctx)
	_, err = super.Exec(ctx, "SELECT 1; STOP WAL ARCHIVE", pgx.QueryExecModeSimpleProtocol)
	walWantCode(t, err, "25001")

	// Typed rows, in binary where pgx asks for it.
	var (
		timeline, lagBytes, segments, bytes int64
		received, flushed                   string
		lagSeconds                          float64
		synchronous                         bool
		lastError, storageURL               *string
	)
	err = super.QueryRow(ctx, "SHOW WAL ARCHIVE").Scan(&state, nil, nil, nil, &timeline, &received, &flushed, nil,
		&lagBytes, &lagSeconds, &segments, &bytes, nil, nil, &synchronous, &lastError, nil,
		&storageURL, nil, nil, nil, nil, nil)
	if err != nil || state != "streaming" || timeline != 1 || received != "0/3000060" || flushed != "0/3000000" ||
		lagBytes != 0x60 || lagSeconds != 0.5 || segments != 2 || bytes != 32<<20 || !synchronous || lastError != nil || storageURL != nil {
		t.Fatalf("SHOW WAL ARCHIVE: %v %q %d %q %q %d %v %d %d %v %v", err, state, timeline, received, flushed,
			lagBytes, lagSeconds, segments, bytes, synchronous, lastError)
	}
	var name, completed string
	var start string
	if err := super.QueryRow(ctx, "SHOW WAL ARCHIVE SEGMENTS").Scan(&name, &timeline, &start, nil, nil, &bytes, &completed); err != nil ||
		name != "000000010000000000000001" || start != "0/1000000" || bytes != 16<<20 || completed != "2026-12-03 16:00:00+00" {
		t.Fatalf("SHOW WAL ARCHIVE SEGMENTS: %v %q %q %d %q", err, name, start, bytes, completed)
	}
	fake.check = walarchive.CheckResult{Problem: "gap at 0/2000000", Segments: 1, Pages: 2048, From: 0x1000000, To: 0x2000000}
	var notices []string
	cfg, _ := pgx.ParseConfig(url("repl"))
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Severity+": "+n.Message) }
	repl, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	var ok bool
	var problem string
	var pages int64
	if err := repl.QueryRow(ctx, "CHECK WAL ARCHIVE").Scan(&ok, nil, &problem, nil, &pages, nil, nil); err != nil ||
		ok || problem != "gap at 0/2000000" || pages != 2048 {
		t.Fatalf("CHECK WAL ARCHIVE: %v %v %q %d", err, ok, problem, pages)
	}
	if len(notices) != 1 || !strings.HasPrefix(notices[0], "WARNING: ") {
		t.Fatalf("CHECK notices %q", notices)
	}

	// Privileges, as the server knows them.
	plain, watcher := walConnect(t, ctx, url("plain")), walConnect(t, ctx, url("watcher"))
	for _, sql := range []string{"START WAL ARCHIVE TO 'p'", "STOP WAL ARCHIVE", "CHECK WAL ARCHIVE", "SHOW WAL ARCHIVE"} {
		_, err := plain.Exec(ctx, sql)
		walWantCode(t, err, "42501")
	}
	if _, err := watcher.Exec(ctx, "SHOW WAL ARCHIVE"); err != nil {
		t.Fatalf("SHOW WAL ARCHIVE as pg_monitor: %v", err)
	}
	_, err = watcher.Exec(ctx, "ALTER WAL ARCHIVE RESUME")
	walWantCode(t, err, "42501")
	if _, err := repl.Exec(ctx, "START WAL ARCHIVE TO 'r'"); err != nil {
		t.Fatalf("START as a REPLICATION role: %v", err)
	}
	if o := fake.lastStarted(); o.Dir != filepath.Join(root, "r") || o.User != "repl" {
		t.Fatalf("Start got %+v", o)
	}
}

// serveProxy runs a proxy with reg in front of backendURL.
func serveProxy(t *testing.T, backendURL string, reg *commands.Registry) string {
	target, err := backend.Parse(backendURL)
	if err != nil {
		t.Fatal(err)
	}
	srv := proxy.New(proxy.Options{Logger: zaptest.NewLogger(t), Target: target, Commands: reg,
		Limits: proxy.Limits{MaxClientConns: 10, AuthTimeout: 10 * time.Second}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func walConnect(t *testing.T, ctx context.Context, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func walWantCode(t *testing.T, err error, code string) {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("error %v, want SQLSTATE %s", err, code)
	}
}
