package walarchive

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/walstream"
)

// dialer returns a DialFunc for c.
func dialer(c *pgtest.Cluster) DialFunc {
	return func(ctx context.Context, user, app string) (*pgconn.PgConn, error) {
		cfg, err := pgconn.ParseConfig(c.SuperURL())
		if err != nil {
			return nil, err
		}
		cfg.RuntimeParams["replication"] = "true"
		cfg.RuntimeParams["application_name"] = app
		return pgconn.ConnectConfig(ctx, cfg)
	}
}

func query(t *testing.T, c *pgtest.Cluster, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, c.SuperURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	res, err := pc.Exec(ctx, sql).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	// The last result with a row: a trailing COMMIT has none.
	for i := len(res) - 1; i >= 0; i-- {
		if len(res[i].Rows) > 0 && len(res[i].Rows[0]) > 0 {
			return string(res[i].Rows[0][0])
		}
	}
	return ""
}

func lsn(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := walstream.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitFor polls cond until it holds or 60 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func newArchive(t *testing.T, c *pgtest.Cluster, root string) *Manager {
	return NewManager(Config{Root: root, Dial: dialer(c), Upstream: "test", Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
}

func defaultOptions(dir string) Options {
	return Options{Dir: dir, Slot: "pgverbs", CreateSlot: true, ApplicationName: "pgverbs", Synchronous: true}
}

// TestArchiveStreams starts an archive on a real server, and checks the
// promises one by one: the slot is created, completed segments are
// byte-identical to the server's, the flush position reported upstream
// (pg_stat_replication) never passes what the archive holds durably, a
// synchronous primary's commits wait for it, and a new Manager (a
// restarted pgverbs) resumes from the state on disk without a gap.
func TestArchiveStreams(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"synchronous_commit": "on"}})
	root := t.TempDir()
	dir := filepath.Join(root, "wal")
	ctx := context.Background()
	m := newArchive(t, c, root)
	if err := m.Start(ctx, defaultOptions(dir)); err != nil {
		t.Fatal(err)
	}
	if got := query(t, c, "SELECT slot_type FROM pg_replication_slots WHERE slot_name = 'pgverbs'"); got != "physical" {
		t.Fatalf("slot type = %q", got)
	}
	waitFor(t, "streaming", func() bool { s, _ := m.Status(); return s.State == Streaming })

	// Synchronous replication to the archive: a commit returns only once
	// the archive reported it flushed.
	query(t, c, "ALTER SYSTEM SET synchronous_standby_names = 'pgverbs'")
	query(t, c, "SELECT pg_reload_conf()")
	waitFor(t, "sync state", func() bool {
		return query(t, c, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pgverbs'") == "sync"
	})
	query(t, c, "CREATE TABLE acked (id int)")
	for i := 0; i < 20; i++ {
		// The insert position before COMMIT is below the commit
		// record's end, which the archive must have flushed once COMMIT
		// returned (the position after it may already include WAL of
		// others, such as the bgwriter's running-xacts records).
		before := lsn(t, query(t, c, "BEGIN; INSERT INTO acked VALUES (1); SELECT pg_current_wal_insert_lsn(); COMMIT"))
		s, _ := m.Status()
		if s.Flushed <= before {
			t.Fatalf("a commit after %s returned, archive flushed only %s", walstream.FormatLSN(before), walstream.FormatLSN(s.Flushed))
		}
	}
	query(t, c, "ALTER SYSTEM RESET synchronous_standby_names")
	query(t, c, "SELECT pg_reload_conf()")

	// A completed segment holds the server's bytes.
	first := query(t, c, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	query(t, c, "SELECT pg_switch_wal()")
	query(t, c, "INSERT INTO acked VALUES (2)")
	waitFor(t, first+" complete", func() bool { _, err := os.Stat(filepath.Join(dir, first)); return err == nil })
	assertSameSegment(t, c, dir, first)

	// The flush position the server records is never past what the
	// archive holds on disk.
	// The server's view first: the archive may move on in between, the
	// other order would compare an old status with a newer report.
	flushed := lsn(t, query(t, c, "SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'pgverbs'"))
	s, _ := m.Status()
	if flushed > s.Flushed {
		t.Fatalf("server shows flush %s, archive durable %s", walstream.FormatLSN(flushed), walstream.FormatLSN(s.Flushed))
	}

	// Restart: a new Manager (as a restarted pgverbs) resumes by itself.
	m.Close() // as at a shutdown: the archive stays recorded as running
	m2 := newArchive(t, c, root)
	if err := m2.Recover(); err != nil {
		t.Fatal(err)
	}
	second := query(t, c, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	query(t, c, "INSERT INTO acked VALUES (3); SELECT pg_switch_wal()")
	query(t, c, "INSERT INTO acked VALUES (4)")
	waitFor(t, second+" complete after the restart", func() bool { _, err := os.Stat(filepath.Join(dir, second)); return err == nil })
	assertSameSegment(t, c, dir, second)
	files, err := m2.Segments()
	if err != nil {
		t.Fatal(err)
	}
	assertNoGap(t, files)
	if err := m2.Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got := query(t, c, "SELECT count(*) FROM pg_replication_slots"); got != "0" {
		t.Fatalf("STOP ... DROP SLOT left %s slots", got)
	}
	// A stopped archive's WAL is still served for restores.
	if d, size, ok := m2.Location(); !ok || d != dir || size != 16<<20 {
		t.Fatalf("Location after Stop = %q, %d, %v", d, size, ok)
	}
	if _, err := os.Stat(filepath.Join(root, pointerFile)); !os.IsNotExist(err) {
		t.Fatalf("pointer file after Stop: %v", err)
	}
	if err := newArchive(t, c, root).Recover(); err != nil {
		t.Fatal(err)
	}
}

// assertSameSegment compares the archive's copy of a completed segment
// with the server's pg_wal file.
func assertSameSegment(t *testing.T, c *pgtest.Cluster, dir, name string) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", name))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the server's (%d vs %d bytes)", name, len(got), len(want))
	}
}

// assertNoGap checks that the segments of one timeline follow each other.
func assertNoGap(t *testing.T, files []SegmentInfo) {
	t.Helper()
	var prev *SegmentInfo
	var names []string
	for i := range files {
		f := &files[i]
		if f.State == SegHistory {
			continue
		}
		names = append(names, f.Name)
		if prev != nil && f.Start != prev.End {
			t.Fatalf("gap between %s and %s in %s", prev.Name, f.Name, strings.Join(names, " "))
		}
		prev = f
	}
	if len(names) < 2 {
		t.Fatalf("only %v in the archive", names)
	}
}

// TestUpstreamRestart: the archive rides out a restart of the upstream,
// reconnecting by itself, and goes on without a gap.
func TestUpstreamRestart(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	root := t.TempDir()
	dir := filepath.Join(root, "wal")
	m := newArchive(t, c, root)
	if err := m.Start(context.Background(), defaultOptions(dir)); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background(), true)
	waitFor(t, "streaming", func() bool { s, _ := m.Status(); return s.State == Streaming })
	query(t, c, "CREATE TABLE t AS SELECT 1; SELECT pg_switch_wal()")
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a reconnect", func() bool { s, _ := m.Status(); return s.Reconnects > 0 && s.State == Streaming })
	next := query(t, c, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	query(t, c, "INSERT INTO t VALUES (2); SELECT pg_switch_wal()")
	query(t, c, "INSERT INTO t VALUES (3)")
	waitFor(t, next+" after the restart", func() bool { return exists(dir, next) })
	files, err := m.Segments()
	if err != nil {
		t.Fatal(err)
	}
	assertNoGap(t, files)
	assertSameSegment(t, c, dir, next)
}
