package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// The WAL archive end to end: the real pgverbs binary archives a real
// cluster's WAL, driven by psql and pgx. One cluster and one archive go
// through the whole life (refusals, START, segments, /wal/ and wal-get,
// stats and metrics, PAUSE and RESUME, synchronous replication, a
// restart of pgverbs, STOP); each subtest leaves the archive streaming
// for the next one.

// walArchiveDir is where the test archives, below the backup root.
const walArchiveDir = "wal"

// archiveEnv is the cluster, the pgverbs archiving it and where.
type archiveEnv struct {
	c         *pgtest.Cluster
	p         *proxyProc
	root      string // the backup root
	base      string // http://host:port of pgverbs's HTTP listener
	tokenFile string
	srv       *pgx.Conn // straight to the server, a superuser
	// top is TestWALArchive's own T: what the steps start for the
	// steps after them (a restarted pgverbs) lives as long as it.
	top *testing.T
}

// dir is the archive directory.
func (e *archiveEnv) dir() string { return filepath.Join(e.root, walArchiveDir) }

// url is the proxy's URL for user.
func (e *archiveEnv) url(user string) string { return e.p.URL(user, "", "postgres") }

// run runs sql with psql through pgverbs as postgres and fails the test on
// an error.
func (e *archiveEnv) run(t *testing.T, sql string) string {
	t.Helper()
	out, err := psql(t, e.c, e.url("postgres"), "-c", sql)
	if err != nil {
		t.Fatalf("psql %s: %v\n%s", sql, err, out)
	}
	return out
}

// rows runs a query with psql through pgverbs and returns its rows by
// column name (NULL reads as "").
func (e *archiveEnv) rows(t *testing.T, sql string) []map[string]string {
	t.Helper()
	out, err := psql(t, e.c, e.url("postgres"), "-A", "-F", "\t", "-P", "footer=off", "-c", sql)
	if err != nil {
		t.Fatalf("psql %s: %v\n%s", sql, err, out)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	cols := strings.Split(lines[0], "\t")
	var rows []map[string]string
	for _, l := range lines[1:] {
		vals := strings.Split(l, "\t")
		if len(vals) != len(cols) {
			t.Fatalf("%s: row %q does not match the columns %q", sql, l, cols)
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = vals[i]
		}
		rows = append(rows, row)
	}
	return rows
}

// status is SHOW WAL ARCHIVE's row.
func (e *archiveEnv) status(t *testing.T) map[string]string {
	t.Helper()
	rows := e.rows(t, "SHOW WAL ARCHIVE")
	if len(rows) != 1 {
		t.Fatalf("SHOW WAL ARCHIVE: %d rows, want 1", len(rows))
	}
	return rows[0]
}

// segment is SHOW WAL ARCHIVE SEGMENTS' row for name, nil when none.
func (e *archiveEnv) segment(t *testing.T, name string) map[string]string {
	t.Helper()
	for _, r := range e.rows(t, "SHOW WAL ARCHIVE SEGMENTS") {
		if r["name"] == name {
			return r
		}
	}
	return nil
}

// sqlstate runs sql with psql through pgverbs as user (each element of
// sql its own -c, in one session) and returns the SQLSTATE of the error
// it must end with, read from psql's verbose error.
func (e *archiveEnv) sqlstate(t *testing.T, user string, sql ...string) string {
	t.Helper()
	args := []string{"-v", "VERBOSITY=verbose"}
	for _, s := range sql {
		args = append(args, "-c", s)
	}
	out, err := psql(t, e.c, e.url(user), args...)
	if err == nil {
		t.Fatalf("psql %q as %s succeeded:\n%s", sql, user, out)
	}
	m := regexp.MustCompile(`ERROR:  ([0-9A-Z]{5}): `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("psql %q as %s: no SQLSTATE in the error:\n%s", sql, user, out)
	}
	return m[1]
}

// serverLSN runs a query on the server returning one pg_lsn.
func (e *archiveEnv) serverLSN(t *testing.T, sql string) uint64 {
	t.Helper()
	var s string
	if err := e.srv.QueryRow(testCtx(t), sql+"::text").Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return lsnOf(t, s)
}

// segSize is the server's WAL segment size.
func (e *archiveEnv) segSize(t *testing.T) uint64 {
	t.Helper()
	var n int64
	if err := e.srv.QueryRow(testCtx(t), "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return uint64(n)
}

// writeWAL has the server write some WAL.
func (e *archiveEnv) writeWAL(t *testing.T) {
	t.Helper()
	if _, err := e.srv.Exec(testCtx(t), "INSERT INTO walfill SELECT g, md5(g::text) FROM generate_series(1, 2000) g"); err != nil {
		t.Fatal(err)
	}
}

// switchWAL writes some WAL, ends the server's segment and returns the
// name of the segment it completed.
func (e *archiveEnv) switchWAL(t *testing.T) string {
	t.Helper()
	e.writeWAL(t)
	var name string
	if err := e.srv.QueryRow(testCtx(t), "SELECT pg_walfile_name(pg_switch_wal())").Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// waitComplete waits until the archive lists name as complete and
// returns its row.
func (e *archiveEnv) waitComplete(t *testing.T, name string) map[string]string {
	t.Helper()
	var row map[string]string
	archiveWait(t, "segment "+name+" complete in the archive", func() bool {
		row = e.segment(t, name)
		return row != nil && row["state"] == "complete"
	})
	return row
}

// waitCaughtUp waits until the archive streams and has flushed all the
// server has flushed now.
func (e *archiveEnv) waitCaughtUp(t *testing.T) {
	t.Helper()
	target := e.serverLSN(t, "SELECT pg_current_wal_flush_lsn()")
	archiveWait(t, "the archive streaming, flushed to "+walstream.FormatLSN(target), func() bool {
		s := e.status(t)
		return s["state"] == "streaming" && s["flushed_lsn"] != "" && lsnOf(t, s["flushed_lsn"]) >= target
	})
}

// slot returns whether the server has the archive's slot, and whether
// it is physical and active.
func (e *archiveEnv) slot(t *testing.T) (exists, physical, active bool) {
	t.Helper()
	err := e.srv.QueryRow(testCtx(t), "SELECT slot_type = 'physical', active FROM pg_replication_slots WHERE slot_name = 'pgverbs'").Scan(&physical, &active)
	if err == pgx.ErrNoRows {
		return false, false, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true, physical, active
}

// archiveWait polls cond for up to a minute: the archive's progress takes
// the server's and the machine's time, which a test does not assert.
func archiveWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within a minute: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func lsnOf(t *testing.T, s string) uint64 {
	t.Helper()
	lsn, err := walstream.ParseLSN(s)
	if err != nil {
		t.Fatalf("LSN %q: %v", s, err)
	}
	return lsn
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// httpArgs are the flags of a pgverbs archiving below root with its HTTP
// listener on a free loopback port, whose URL it returns.
func httpArgs(t *testing.T, root, tokenFile string) (string, []string) {
	t.Helper()
	addr := "127.0.0.1:" + itoa(freePort(t))
	return "http://" + addr, []string{"--http-listen", addr, "--http-token-file", tokenFile, "--backup-root", root}
}

// TestWALArchive runs the archive's life in order; a step that fails
// ends the test, since the next ones start from what it left.
func TestWALArchive(t *testing.T) {
	root := t.TempDir()
	w := startWALHTTP(t, "--backup-root", root)
	e := &archiveEnv{c: w.cluster, p: w.proxy, root: root, base: w.base, tokenFile: w.tokenFile, top: t}
	e.srv = connect(t, e.c.SuperURL())
	ctx := testCtx(t)
	// pgtest runs with synchronous_commit off; the test's own commits
	// are flushed when they return, so that the archive can catch up
	// with them.
	if _, err := e.srv.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Exec(ctx, "CREATE TABLE walfill(id int, pad text)"); err != nil {
		t.Fatal(err)
	}

	// Before any START: what must be refused, and leave nothing behind.
	t.Run("refusals", func(t *testing.T) {
		testArchiveRefusals(t, e)
	})

	var first string       // the first segment completed
	var firstServer []byte // its bytes in the server's pg_wal
	steps := []struct {
		name string
		f    func(t *testing.T)
	}{
		{"start", func(t *testing.T) {
			e.run(t, "START WAL ARCHIVE TO '"+walArchiveDir+"'")
			exists, physical, _ := e.slot(t)
			if !exists || !physical {
				t.Fatalf("after START: slot pgverbs exists %v, physical %v", exists, physical)
			}
			archiveWait(t, "slot pgverbs active", func() bool { _, _, active := e.slot(t); return active })
			e.waitCaughtUp(t)
			s := e.status(t)
			for col, want := range map[string]string{"slot": "pgverbs", "application_name": "pgverbs", "timeline": "1", "synchronous": "t", "last_error": "", "last_error_sqlstate": ""} {
				if s[col] != want {
					t.Errorf("SHOW WAL ARCHIVE %s = %q, want %q", col, s[col], want)
				}
			}
			received, flushed := lsnOf(t, s["received_lsn"]), lsnOf(t, s["flushed_lsn"])
			serverEnd := e.serverLSN(t, "SELECT pg_current_wal_flush_lsn()")
			if flushed == 0 || flushed > received || received > serverEnd || lsnOf(t, s["upstream_flush_lsn"]) == 0 {
				t.Errorf("positions: received %s, flushed %s, upstream %s; the server has flushed %s",
					s["received_lsn"], s["flushed_lsn"], s["upstream_flush_lsn"], walstream.FormatLSN(serverEnd))
			}
			if s["upstream"] == "" || s["segments"] == "0" || !strings.HasSuffix(s["newest_segment"], ".partial") {
				t.Errorf("SHOW WAL ARCHIVE: %v", s)
			}
			// One archive per process: a second START is refused and
			// touches nothing.
			if code := e.sqlstate(t, "postgres", "START WAL ARCHIVE TO 'wal2'"); code != "55006" {
				t.Errorf("a second START: SQLSTATE %s, want 55006", code)
			}
			if _, err := os.Stat(filepath.Join(root, "wal2")); !os.IsNotExist(err) {
				t.Errorf("a refused second START created its directory: %v", err)
			}
		}},
		{"segments", func(t *testing.T) {
			first = e.switchWAL(t)
			// The switch flushed the segment (the rest of it zeros) before
			// pg_switch_wal returned: the server's file is final now.
			firstServer = mustRead(t, filepath.Join(e.c.DataDir, "pg_wal", first))
			row := e.waitComplete(t, first)
			archived := mustRead(t, filepath.Join(e.dir(), first))
			if !bytes.Equal(archived, firstServer) {
				t.Fatalf("archived %s (%d bytes) differs from the server's (%d bytes)", first, len(archived), len(firstServer))
			}
			size := uint64(len(firstServer))
			start, end := lsnOf(t, row["start_lsn"]), lsnOf(t, row["end_lsn"])
			if row["timeline"] != "1" || row["bytes"] != itoa(len(firstServer)) || end-start != size || walarchive.SegmentName(1, start, size) != first {
				t.Errorf("SHOW WAL ARCHIVE SEGMENTS row: %v", row)
			}
			check := e.rows(t, "CHECK WAL ARCHIVE")
			if len(check) != 1 || check[0]["ok"] != "t" || check[0]["problem"] != "" || check[0]["segments"] == "0" {
				t.Errorf("CHECK WAL ARCHIVE: %v", check)
			}
		}},
		{"wal-get", func(t *testing.T) {
			code, _, body := walRequest(t, e.base, "/wal/"+first, walToken)
			if code != 200 || !bytes.Equal(body, firstServer) {
				t.Errorf("GET /wal/%s: %d, %d bytes; want 200 and the server's %d bytes", first, code, len(body), len(firstServer))
			}
			if code, _, body := walRequest(t, e.base, "/wal/"+first, ""); code != 401 || bytes.Contains(body, firstServer[:64]) {
				t.Errorf("GET /wal/%s without the token: %d, want 401", first, code)
			}
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			if code, stderr := runWalGet(t, nil, "--url", e.base, "--token-file", e.tokenFile, first, dest); code != 0 {
				t.Fatalf("wal-get %s: exit %d: %s", first, code, stderr)
			}
			if got := mustRead(t, dest); !bytes.Equal(got, firstServer) {
				t.Errorf("wal-get %s wrote %d bytes that differ from the server's", first, len(got))
			}
			missing := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			if code, _ := runWalGet(t, nil, "--url", e.base, "--token-file", e.tokenFile, "0000000100000099000000FF", missing); code != 1 {
				t.Errorf("wal-get of a segment not in the archive: exit %d, want 1", code)
			}
			if _, err := os.Stat(missing); !os.IsNotExist(err) {
				t.Errorf("wal-get of a missing segment wrote DEST: %v", err)
			}
		}},
		{"stats and metrics", func(t *testing.T) {
			e.waitCaughtUp(t)
			fams := scrape(t, e.base)
			if v := metric(t, fams, "pgverbs_wal_archive_state", "state", "streaming"); v != 1 {
				t.Errorf("pgverbs_wal_archive_state{state=streaming} = %v, want 1", v)
			}
			flushed := metric(t, fams, "pgverbs_wal_archive_flushed_lsn_bytes")
			if flushed == 0 || metric(t, fams, "pgverbs_wal_archive_segments_completed_total") < 1 || metric(t, fams, "pgverbs_wal_archive_timeline") != 1 {
				t.Errorf("/metrics: flushed %v, segments completed %v, timeline %v", flushed,
					metric(t, fams, "pgverbs_wal_archive_segments_completed_total"), metric(t, fams, "pgverbs_wal_archive_timeline"))
			}
			ls := showLines(t, func(args ...string) (string, error) { return psql(t, e.c, e.url("postgres"), args...) }, "SHOW PGVERBS STATS")
			for _, want := range []string{"wal_archive_state_streaming|1|", "wal_archive_state_paused|0|", "wal_archive_flushed_lsn|", "wal_archive_segments|", "wal_archive_reconnects|"} {
				if !linesHave(ls, want) {
					t.Errorf("SHOW PGVERBS STATS has no %s:\n%s", want, strings.Join(ls, "\n"))
				}
			}
			e.switchWAL(t)
			archiveWait(t, "pgverbs_wal_archive_flushed_lsn_bytes past "+walstream.FormatLSN(uint64(flushed)), func() bool {
				return metric(t, scrape(t, e.base), "pgverbs_wal_archive_flushed_lsn_bytes") > flushed
			})
		}},
		{"pause and resume", func(t *testing.T) {
			testArchivePause(t, e)
		}},
		{"synchronous", func(t *testing.T) {
			testArchiveSynchronous(t, e)
		}},
		{"restart", func(t *testing.T) {
			testArchiveRestart(t, e)
		}},
		{"stop", func(t *testing.T) {
			e.run(t, "STOP WAL ARCHIVE DROP SLOT")
			if s := e.status(t); s["state"] != "stopped" {
				t.Errorf("after STOP: state %q", s["state"])
			}
			if exists, _, _ := e.slot(t); exists {
				t.Errorf("STOP WAL ARCHIVE DROP SLOT left the slot")
			}
			// The WAL stays, and is still served.
			if got := mustRead(t, filepath.Join(e.dir(), first)); !bytes.Equal(got, firstServer) {
				t.Errorf("after STOP the archive's %s differs from the server's", first)
			}
			if code, _, body := walRequest(t, e.base, "/wal/"+first, walToken); code != 200 || !bytes.Equal(body, firstServer) {
				t.Errorf("GET /wal/%s after STOP: %d, %d bytes", first, code, len(body))
			}
			if code := e.sqlstate(t, "postgres", "STOP WAL ARCHIVE"); code != "55000" {
				t.Errorf("STOP with none running: SQLSTATE %s, want 55000", code)
			}
		}},
		{"start again", func(t *testing.T) {
			// START into the stopped archive's directory goes on from its
			// files, with a new slot; the counters are this process's.
			received := metric(t, scrape(t, e.base), "pgverbs_wal_archive_received_bytes_total")
			e.run(t, "START WAL ARCHIVE TO '"+walArchiveDir+"'")
			e.waitComplete(t, e.switchWAL(t))
			e.waitCaughtUp(t)
			testArchiveContinuous(t, e)
			if now := metric(t, scrape(t, e.base), "pgverbs_wal_archive_received_bytes_total"); now < received {
				t.Errorf("pgverbs_wal_archive_received_bytes_total went from %v to %v at START", received, now)
			}
		}},
	}
	for _, s := range steps {
		// Each step needs the archive as the one before left it.
		if !t.Run(s.name, s.f) {
			t.FailNow()
		}
	}
}

// testArchiveRefusals: before any START, what must be refused, with its
// SQLSTATE; none of them creates a directory or a slot.
func testArchiveRefusals(t *testing.T, e *archiveEnv) {
	ctx := testCtx(t)
	if code := e.sqlstate(t, "postgres", "STOP WAL ARCHIVE"); code != "55000" {
		t.Errorf("STOP with none running: SQLSTATE %s, want 55000", code)
	}
	if _, err := e.srv.Exec(ctx, "CREATE ROLE plain LOGIN"); err != nil {
		t.Fatal(err)
	}
	if code := e.sqlstate(t, "plain", "START WAL ARCHIVE TO 'wal'"); code != "42501" {
		t.Errorf("START as a role without REPLICATION: SQLSTATE %s, want 42501", code)
	}
	if code := e.sqlstate(t, "plain", "SHOW WAL ARCHIVE"); code != "42501" {
		t.Errorf("SHOW WAL ARCHIVE as a role without REPLICATION or pg_monitor: SQLSTATE %s, want 42501", code)
	}
	if code := e.sqlstate(t, "postgres", "BEGIN", "START WAL ARCHIVE TO 'wal'"); code != "25001" {
		t.Errorf("START inside BEGIN: SQLSTATE %s, want 25001", code)
	}
	conn := connect(t, e.url("postgres"))
	_, err := conn.Exec(ctx, "SELECT 1; START WAL ARCHIVE TO 'wal'", pgx.QueryExecModeSimpleProtocol)
	wantCode(t, err, "25001")

	// A path escaping the root is refused as BASE BACKUP refuses it.
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(e.root, "out")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"../x", filepath.Join(outside, "wal"), "out/wal"} {
		_, err := conn.Exec(ctx, "START WAL ARCHIVE TO '"+dir+"'")
		got := wantCode(t, err, "42501")
		_, err = conn.Exec(ctx, "BASE BACKUP TO '"+dir+"'")
		bb := pgErr(err)
		if bb == nil || got.Message != bb.Message || !strings.Contains(got.Message, "outside the backup root") {
			t.Errorf("START WAL ARCHIVE TO %q: %q; BASE BACKUP: %v", dir, got.Message, err)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("a refused START wrote outside the backup root: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.root), "x")); !os.IsNotExist(err) {
		t.Errorf("START TO '../x' created it: %v", err)
	}

	// Without a backup root there is no archive.
	noRoot := startProxy(t, e.c.URL("", "", "postgres"))
	_, err = connect(t, noRoot.URL("postgres", "", "postgres")).Exec(ctx, "START WAL ARCHIVE TO 'wal'")
	wantCode(t, err, "55000")

	if _, err := os.Stat(e.dir()); !os.IsNotExist(err) {
		t.Errorf("a refused START created the archive directory: %v", err)
	}
	if exists, _, _ := e.slot(t); exists {
		t.Errorf("a refused START created the slot")
	}
}

// testArchivePause: a paused archive lets go of its slot and receives
// nothing while the server writes; wal-get --partial serves the segment
// being written; RESUME catches up.
func testArchivePause(t *testing.T, e *archiveEnv) {
	// The archive opens a segment when its first bytes come: some, so
	// that the pause leaves a .partial.
	e.writeWAL(t)
	e.waitCaughtUp(t)
	e.run(t, "ALTER WAL ARCHIVE PAUSE")
	if s := e.status(t); s["state"] != "paused" {
		t.Fatalf("after PAUSE: state %q", s["state"])
	}
	archiveWait(t, "slot pgverbs inactive", func() bool { _, _, active := e.slot(t); return !active })
	before := e.status(t)["received_lsn"]
	segsBefore := e.rows(t, "SHOW WAL ARCHIVE SEGMENTS")
	e.switchWAL(t)
	e.writeWAL(t)
	if serverEnd := e.serverLSN(t, "SELECT pg_current_wal_flush_lsn()"); serverEnd <= lsnOf(t, before) {
		t.Fatalf("the server wrote no WAL past %s", before)
	}
	s := e.status(t)
	if s["state"] != "paused" || s["received_lsn"] != before {
		t.Errorf("paused: state %q, received_lsn %s, was %s", s["state"], s["received_lsn"], before)
	}
	segsNow := e.rows(t, "SHOW WAL ARCHIVE SEGMENTS")
	if len(segsNow) != len(segsBefore) {
		t.Errorf("paused, the archive's files changed: %v, then %v", segsBefore, segsNow)
	}

	// Nothing writes the .partial now: --partial serves its content under
	// the segment's name, and without --partial the segment is missing.
	var partial string
	for _, r := range segsNow {
		if r["state"] == "partial" {
			partial = r["name"]
		}
	}
	name, ok := strings.CutSuffix(partial, ".partial")
	if !ok {
		t.Fatalf("no .partial in the archive: %v", segsNow)
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if code, _ := runWalGet(t, nil, "--url", e.base, "--token-file", e.tokenFile, name, dest); code != 1 {
		t.Errorf("wal-get %s (only %s in the archive): exit %d, want 1", name, partial, code)
	}
	if code, stderr := runWalGet(t, nil, "--url", e.base, "--token-file", e.tokenFile, "--partial", name, dest); code != 0 {
		t.Fatalf("wal-get --partial %s: exit %d: %s", name, code, stderr)
	}
	if got, want := mustRead(t, dest), mustRead(t, filepath.Join(e.dir(), partial)); !bytes.Equal(got, want) {
		t.Errorf("wal-get --partial %s wrote %d bytes, not %s's %d", name, len(got), partial, len(want))
	}

	e.run(t, "ALTER WAL ARCHIVE RESUME")
	e.waitCaughtUp(t)
	if _, _, active := e.slot(t); !active {
		t.Errorf("after RESUME the slot is not active")
	}
}

// testArchiveSynchronous: SYNCHRONOUS shows in SHOW WAL ARCHIVE, and a
// primary naming pgverbs in synchronous_standby_names counts the archive
// as its synchronous standby: a commit returns once the archive flushed
// it.
func testArchiveSynchronous(t *testing.T, e *archiveEnv) {
	ctx := testCtx(t)
	e.run(t, "ALTER WAL ARCHIVE SET (SYNCHRONOUS off)")
	if s := e.status(t); s["synchronous"] != "f" {
		t.Errorf("after SET (SYNCHRONOUS off): synchronous %q", s["synchronous"])
	}
	e.run(t, "ALTER WAL ARCHIVE SET (SYNCHRONOUS on)")
	if s := e.status(t); s["synchronous"] != "t" {
		t.Errorf("after SET (SYNCHRONOUS on): synchronous %q", s["synchronous"])
	}
	e.waitCaughtUp(t)

	for _, sql := range []string{"ALTER SYSTEM SET synchronous_standby_names = 'pgverbs'", "SELECT pg_reload_conf()"} {
		if _, err := e.srv.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, sql := range []string{"ALTER SYSTEM RESET synchronous_standby_names", "SELECT pg_reload_conf()"} {
			if _, err := e.srv.Exec(context.Background(), sql); err != nil {
				t.Error(err)
			}
		}
	})
	archiveWait(t, "pg_stat_replication shows pgverbs as sync", func() bool {
		var state string
		err := e.srv.QueryRow(ctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'pgverbs'").Scan(&state)
		if err != nil && err != pgx.ErrNoRows {
			t.Fatal(err)
		}
		return state == "sync"
	})

	// pgtest runs with synchronous_commit off; this session waits.
	conn := connect(t, e.url("postgres"))
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var lsnText string
	tx, err := conn.Begin(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(cctx, "SET LOCAL synchronous_commit = on"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(cctx, "INSERT INTO walfill VALUES (-1, 'synchronous')"); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(cctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsnText); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(cctx); err != nil {
		t.Fatalf("a synchronous commit with the archive as standby: %v", err)
	}
	// The commit record lies past lsn, and the server released the
	// commit only once the archive reported it flushed.
	lsn := lsnOf(t, lsnText)
	if flushed := e.serverLSN(t, "SELECT flush_lsn FROM pg_stat_replication WHERE application_name = 'pgverbs'"); flushed <= lsn {
		t.Errorf("the commit after %s returned with the archive's flush at %s", lsnText, walstream.FormatLSN(flushed))
	}
	archiveWait(t, "SHOW WAL ARCHIVE's flushed_lsn past the commit", func() bool {
		return lsnOf(t, e.status(t)["flushed_lsn"]) > lsn
	})
}

// testArchiveRestart: a pgverbs stopped while archiving and started again
// with the same backup root resumes the archive by itself, with no gap.
func testArchiveRestart(t *testing.T, e *archiveEnv) {
	e.waitCaughtUp(t)
	e.p.Signal(t, syscall.SIGTERM)
	if err := e.p.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("pgverbs after SIGTERM: %v\n%s", err, e.p.Log.String())
	}
	// Written while no pgverbs runs: the slot keeps it.
	gapName := e.switchWAL(t)

	base, args := httpArgs(t, e.root, e.tokenFile)
	e.p, e.base = startProxy(e.top, e.c.URL("", "", "postgres"), args...), base
	if !strings.Contains(e.p.Log.String(), "WAL archive resumed") {
		t.Errorf("the new pgverbs does not say it resumed the archive")
	}
	e.waitCaughtUp(t)
	e.waitComplete(t, gapName)
	e.waitComplete(t, e.switchWAL(t))

	testArchiveContinuous(t, e)
}

// testArchiveContinuous checks that the archive's segments follow each
// other with no gap on timeline 1, only the newest partial, and that
// CHECK WAL ARCHIVE agrees.
func testArchiveContinuous(t *testing.T, e *archiveEnv) {
	t.Helper()
	var prev walarchive.Name
	var names []string
	rows := e.rows(t, "SHOW WAL ARCHIVE SEGMENTS")
	for i, r := range rows {
		n, err := walarchive.ParseName(r["name"], e.segSize(t))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, r["name"])
		if n.Kind == walarchive.History {
			continue
		}
		// Only the newest may be partial (none is when the archive
		// stands at a segment's end).
		if newest := i == len(rows)-1; n.Timeline != 1 || r["state"] != "complete" && !(newest && r["state"] == "partial") {
			t.Errorf("%s: state %q, timeline %d; want complete (or the newest partial) on timeline 1", r["name"], r["state"], n.Timeline)
		}
		if i > 0 && n.SegNo != prev.SegNo+1 {
			t.Errorf("a gap in the archive before %s", r["name"])
		}
		prev = n
	}
	if len(names) < 4 {
		t.Errorf("the archive's files: %v", names)
	}
	check := e.rows(t, "CHECK WAL ARCHIVE")
	if len(check) != 1 || check[0]["ok"] != "t" {
		t.Errorf("CHECK WAL ARCHIVE: %v", check)
	}
}
