package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// Several pgverbs instances in front of one cluster (issue 16): the
// commands that change shared state (the database's pgverbs catalog, the
// backup root, an upstream replication slot) stay correct when two
// instances run them at once.

// raceTwo runs a and b at once, b after delay (a after -delay when
// negative), and returns their errors.
func raceTwo(delay time.Duration, a, b func() error) (errA, errB error) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-start
		if delay < 0 {
			time.Sleep(-delay)
		}
		errA = a()
	}()
	go func() {
		defer wg.Done()
		<-start
		if delay > 0 {
			time.Sleep(delay)
		}
		errB = b()
	}()
	close(start)
	wg.Wait()
	return errA, errB
}

// sqlstateOf is err's SQLSTATE, "" for nil and "?" for an error that is
// not the server's (or pgverbs's) ErrorResponse.
func sqlstateOf(err error) string {
	if err == nil {
		return ""
	}
	if e := pgErr(err); e != nil {
		return e.Code
	}
	return "?"
}

// TestExtensionsAcrossInstances: INSTALL and UNINSTALL EXTENSION through
// two pgverbs processes on one database are serialised by the catalog's
// advisory lock: concurrent installs of one package leave one winner and
// 42710 for the rest, and a CASCADE install of bar (which requires baz)
// racing an uninstall of baz, in every start order, ends with a catalog
// that agrees with itself and with the database, and no error but the
// expected SQLSTATEs.
func TestExtensionsAcrossInstances(t *testing.T) {
	dir, err := filepath.Abs("testdata/extensions")
	if err != nil {
		t.Fatal(err)
	}
	c := cluster(t, pgtest.Options{})
	ps := []*proxyProc{
		startProxy(t, c.URL("", "", "postgres"), "--extensions", dir),
		startProxy(t, c.URL("", "", "postgres"), "--extensions", dir),
	}
	ctx := testCtx(t)
	db := 0
	newDB := func(t *testing.T) string {
		db++
		name := fmt.Sprintf("inst%d", db)
		if err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		return name
	}
	through := func(t *testing.T, p *proxyProc, name string) *pgx.Conn {
		return connect(t, p.URL("postgres", "", name))
	}

	t.Run("same package", func(t *testing.T) {
		for round := range 3 {
			name := newDB(t)
			var conns []*pgx.Conn
			for i := range 8 {
				conns = append(conns, through(t, ps[i%2], name))
			}
			var wg sync.WaitGroup
			codes := make([]string, len(conns))
			start := make(chan struct{})
			for i, conn := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := conn.Exec(ctx, "INSTALL EXTENSION slow")
					codes[i] = sqlstateOf(err)
				}()
			}
			close(start)
			wg.Wait()
			ok, dup := 0, 0
			for _, code := range codes {
				switch code {
				case "":
					ok++
				case "42710":
					dup++
				default:
					t.Errorf("round %d: concurrent INSTALL: SQLSTATE %q", round, code)
				}
			}
			if ok != 1 || dup != len(conns)-1 {
				t.Fatalf("round %d: %d installed, %d found it installed (%q)", round, ok, dup, codes)
			}
			if got := installedNames(t, ctx, conns[0]); got != "slow 1.0" {
				t.Fatalf("round %d: installed %q", round, got)
			}
		}
	})

	t.Run("cascade install against uninstall of its dependency", func(t *testing.T) {
		orders := []struct {
			name  string
			delay time.Duration // >0: the uninstall starts later
		}{{"together", 0}, {"install first", 30 * time.Millisecond}, {"uninstall first", -30 * time.Millisecond}}
		for _, pre := range []bool{false, true} {
			for _, uninstall := range []string{"UNINSTALL EXTENSION baz", "UNINSTALL EXTENSION baz CASCADE"} {
				for i, o := range orders {
					name := newDB(t)
					what := fmt.Sprintf("baz installed before %v, %s, %s", pre, uninstall, o.name)
					inst := through(t, ps[i%2], name)
					un := through(t, ps[(i+1)%2], name)
					if pre {
						if _, err := inst.Exec(ctx, "INSTALL EXTENSION baz"); err != nil {
							t.Fatal(err)
						}
					}
					errI, errU := raceTwo(o.delay,
						func() error { _, err := inst.Exec(ctx, "INSTALL EXTENSION bar CASCADE"); return err },
						func() error { _, err := un.Exec(ctx, uninstall); return err })
					if errI != nil {
						t.Errorf("%s: INSTALL bar CASCADE: %v", what, errI)
					}
					// 42704: baz was not installed yet; 2BP01: bar
					// already depended on it (RESTRICT).
					codeU := sqlstateOf(errU)
					if codeU != "" && codeU != "42704" && !(codeU == "2BP01" && !strings.HasSuffix(uninstall, "CASCADE")) {
						t.Errorf("%s: %s: %v", what, uninstall, errU)
					}
					got := checkExtensionCatalog(t, ctx, connect(t, c.URL("postgres", "", name)))
					t.Logf("%s: uninstall %q, installed %q", what, codeU, got)
					// bar is installed after baz (CASCADE) or not at all;
					// only a CASCADE uninstall after the install removes it.
					switch {
					case got == "bar 1.2,baz 1.0":
					case got == "" && codeU == "" && strings.HasSuffix(uninstall, "CASCADE"):
					default:
						t.Errorf("%s: installed %q after INSTALL %q and UNINSTALL %q", what, got, sqlstateOf(errI), codeU)
					}
				}
			}
		}
	})
}

// checkExtensionCatalog checks that the pgverbs catalog of conn's
// database agrees with itself and with the database, and returns what is
// installed ("name version,...").
func checkExtensionCatalog(t *testing.T, ctx context.Context, conn *pgx.Conn) string {
	t.Helper()
	got := installedNames(t, ctx, conn)
	var bar, baz, orphans, missing, barFn, bazTab int
	err := conn.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE name = 'bar'), count(*) FILTER (WHERE name = 'baz'),
		(SELECT count(*) FROM pgverbs.extension_objects o WHERE NOT EXISTS (SELECT 1 FROM pgverbs.extensions e WHERE e.name = o.extension)),
		(SELECT count(*) FROM pgverbs.extension_objects o WHERE pgverbs.resolve_object(o.type, o.object_names, o.object_args) IS NULL),
		(SELECT count(*) FROM pg_proc WHERE proname = 'bar_version'),
		(SELECT count(*) FROM pg_class WHERE relname = 'baz_data')
		FROM pgverbs.extensions`).Scan(&bar, &baz, &orphans, &missing, &barFn, &bazTab)
	if err != nil {
		if e := pgErr(err); e != nil && e.Code == "42P01" && got == "" {
			return "" // no INSTALL ever got as far as the catalog
		}
		t.Fatal(err)
	}
	if bar > baz || orphans != 0 || missing != 0 || barFn != bar || bazTab != baz {
		t.Errorf("catalog inconsistent: bar %d, baz %d, objects of no extension %d, objects gone %d, bar_version() %d, baz_data %d",
			bar, baz, orphans, missing, barFn, bazTab)
	}
	if bar == 1 {
		var req string
		if err := conn.QueryRow(ctx, "SELECT array_to_string(requires, ',') FROM pgverbs.extensions WHERE name = 'bar'").Scan(&req); err != nil || req != "baz" {
			t.Errorf("bar requires %q (%v)", req, err)
		}
	}
	return got
}

// TestBaseBackupAcrossInstances: two pgverbs processes share a backup
// root; BASE BACKUPs to the same target, or to targets inside one
// another, started at once or one while the other runs, end with exactly
// one backup, the other refused with 55006 or 42P04 and nothing of it
// left (no marker, no directory of its own).
func TestBaseBackupAcrossInstances(t *testing.T) {
	c := cluster(t, pgtest.Options{})
	root := t.TempDir()
	ps := []*proxyProc{
		startProxy(t, c.URL("", "", "postgres"), "--backup-root", root),
		startProxy(t, c.URL("", "", "postgres"), "--backup-root", root),
	}
	ctx := testCtx(t)
	backup := func(p *proxyProc, target string) error {
		conn, err := pgx.Connect(ctx, p.URL("postgres", "", "postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		// Slow enough that the two overlap: a few seconds for a fresh
		// cluster.
		_, err = conn.Exec(ctx, "BASE BACKUP TO '"+target+"' WITH (MAX_RATE '8MB', CHECKPOINT fast)")
		return err
	}
	for _, pair := range [][2]string{{"x", "x"}, {"x", "x/y"}, {"x/y", "x"}} {
		for _, mode := range []string{"together", "during"} {
			what := pair[0] + " and " + pair[1] + " " + mode
			var errA, errB error
			for attempt := 1; ; attempt++ {
				if mode == "together" {
					errA, errB = raceTwo(0, func() error { return backup(ps[0], pair[0]) }, func() error { return backup(ps[1], pair[1]) })
				} else {
					done := make(chan error, 1)
					go func() { done <- backup(ps[0], pair[0]) }()
					waitFor(t, func() bool {
						_, err := os.Stat(filepath.Join(root, pair[0], ".pgverbs-backup-in-progress"))
						return err == nil
					})
					errB = backup(ps[1], pair[1])
					errA = <-done
				}
				if errA != nil && errB != nil && attempt < 3 {
					// Both withdrew: the narrow race the marker protocol
					// resolves by refusing both; a client retries.
					t.Logf("%s: both refused (%v; %v), again", what, errA, errB)
					clearDir(t, root)
					continue
				}
				break
			}
			won, lost, winner := errA, errB, pair[0]
			if errA != nil {
				won, lost, winner = errB, errA, pair[1]
			}
			if won != nil {
				t.Fatalf("%s: neither backup succeeded: %v; %v", what, errA, errB)
			}
			t.Logf("%s: %s won, the other: %v", what, winner, lost)
			if code := sqlstateOf(lost); code != "55006" && code != "42P04" {
				t.Fatalf("%s: the second backup: %v, want 55006 or 42P04", what, lost)
			}
			if mode == "during" && sqlstateOf(errB) == "" {
				t.Fatalf("%s: the backup started second won", what)
			}
			// Nothing but the winner's backup: no marker, and around
			// it only the directories on its way.
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					t.Fatal(err)
				}
				if d.Name() == ".pgverbs-backup-in-progress" {
					t.Errorf("%s: marker left at %s", what, p)
				}
				rel, _ := filepath.Rel(root, p)
				if d.IsDir() && rel != "." && !strings.HasPrefix(winner+"/", rel+"/") && !strings.HasPrefix(rel+"/", winner+"/") {
					t.Errorf("%s: the refused backup left %s", what, rel)
				}
				return nil
			})
			if out, err := exec.Command(c.Bin("pg_verifybackup"), "-n", filepath.Join(root, winner)).CombinedOutput(); err != nil {
				t.Errorf("%s: pg_verifybackup of %s: %v\n%s", what, winner, err, out)
			}
			if winner == "x/y" {
				// x holds the backup in y and nothing else.
				if entries, _ := os.ReadDir(filepath.Join(root, "x")); len(entries) != 1 {
					t.Errorf("%s: x holds %v", what, entries)
				}
			}
			clearDir(t, root)
		}
	}
}

// clearDir empties dir.
func clearDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWALArchiveSlotAcrossInstances: one upstream slot, one archive. A
// second pgverbs's START on the slot another instance archives from is
// refused with 55006 naming the holder's PID and application_name and
// creates nothing; on another slot it runs. A running archive whose slot
// was taken while it was disconnected (here by pg_receivewal, while the
// archive was paused) says so in SHOW WAL ARCHIVE, and streams again once
// the slot is free.
func TestWALArchiveSlotAcrossInstances(t *testing.T) {
	c := cluster(t, pgtest.Options{})
	root1, root2 := t.TempDir(), t.TempDir()
	p1 := startProxy(t, c.URL("", "", "postgres"), "--backup-root", root1)
	p2 := startProxy(t, c.URL("", "", "postgres"), "--backup-root", root2)
	ctx := testCtx(t)
	srv := connect(t, c.SuperURL())
	one := connect(t, p1.URL("postgres", "", "postgres"))
	two := connect(t, p2.URL("postgres", "", "postgres"))
	holder := func(app string) (pid int) {
		t.Helper()
		archiveWait(t, "slot pgverbs active for "+app, func() bool {
			err := srv.QueryRow(ctx, `SELECT s.active_pid FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
				WHERE s.slot_name = 'pgverbs' AND r.application_name = $1`, app).Scan(&pid)
			return err == nil
		})
		return pid
	}
	status := func(conn *pgx.Conn) (state, lastError, code string) {
		t.Helper()
		rows, err := conn.Query(ctx, "SHOW WAL ARCHIVE")
		if err != nil {
			t.Fatal(err)
		}
		m, err := pgx.CollectOneRow(rows, pgx.RowToMap)
		if err != nil {
			t.Fatal(err)
		}
		str := func(k string) string { s, _ := m[k].(string); return s }
		return str("state"), str("last_error"), str("last_error_sqlstate")
	}

	if _, err := one.Exec(ctx, "START WAL ARCHIVE TO 'wal'"); err != nil {
		t.Fatal(err)
	}
	pid := holder("pgverbs")

	_, err := two.Exec(ctx, "START WAL ARCHIVE TO 'wal'")
	e := wantCode(t, err, "55006")
	want := fmt.Sprintf(`replication slot "pgverbs" is in use by another WAL archive (PID %d, application_name pgverbs`, pid)
	if !strings.HasPrefix(e.Message, want) || !strings.Contains(e.Hint, "SLOT") || !strings.Contains(e.Hint, "STOP WAL ARCHIVE") {
		t.Fatalf("second START: %q (hint %q), want %q...", e.Message, e.Hint, want)
	}
	if _, err := os.Stat(filepath.Join(root2, "wal")); !os.IsNotExist(err) {
		t.Fatalf("the refused START created its directory: %v", err)
	}
	if state, _, _ := status(two); state != "stopped" {
		t.Fatalf("after the refused START the second instance's archive is %s", state)
	}
	// Another slot is another archive.
	if _, err := two.Exec(ctx, "START WAL ARCHIVE TO 'wal' WITH (SLOT 'second')"); err != nil {
		t.Fatalf("START on another slot: %v", err)
	}
	if _, err := two.Exec(ctx, "STOP WAL ARCHIVE DROP SLOT"); err != nil {
		t.Fatal(err)
	}

	// STARTs at once in the two instances, on a slot neither holds (the
	// first round creates it): the server lets one stream, and the other
	// START is undone and refused.
	if _, err := one.Exec(ctx, "STOP WAL ARCHIVE DROP SLOT"); err != nil {
		t.Fatal(err)
	}
	undone := 0
	for round := range 4 {
		delay := []time.Duration{0, 0, 20 * time.Millisecond, -20 * time.Millisecond}[round]
		start := func(conn *pgx.Conn) func() error {
			return func() error { _, err := conn.Exec(ctx, "START WAL ARCHIVE TO 'wal'"); return err }
		}
		errOne, errTwo := raceTwo(delay, start(one), start(two))
		winner, loser, lost := one, two, errTwo
		if errOne != nil {
			winner, loser, lost = two, one, errOne
		}
		if (errOne == nil) == (errTwo == nil) {
			t.Fatalf("round %d: racing STARTs: %v; %v, want one success", round, errOne, errTwo)
		}
		e := wantCode(t, lost, "55006")
		if !strings.Contains(e.Message, `replication slot "pgverbs" is in use by another WAL archive (PID `) {
			t.Fatalf("round %d: the refused START: %q", round, e.Message)
		}
		if state, _, _ := status(loser); state != "stopped" {
			t.Fatalf("round %d: the refused START left its archive %s", round, state)
		}
		t.Logf("round %d: refused %s", round, map[bool]string{true: "after its receiver was refused", false: "by the check"}[strings.Count(p1.Log.String()+p2.Log.String(), "WAL archive not started") > undone])
		undone = strings.Count(p1.Log.String()+p2.Log.String(), "WAL archive not started")
		holder("pgverbs")
		if state, _, _ := status(winner); state != "streaming" {
			t.Fatalf("round %d: the winner is %s", round, state)
		}
		if _, err := winner.Exec(ctx, "STOP WAL ARCHIVE"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := one.Exec(ctx, "START WAL ARCHIVE TO 'wal'"); err != nil {
		t.Fatal(err)
	}
	holder("pgverbs")

	// The running archive loses its slot while paused.
	if _, err := one.Exec(ctx, "ALTER WAL ARCHIVE PAUSE"); err != nil {
		t.Fatal(err)
	}
	archiveWait(t, "slot pgverbs released", func() bool {
		var active bool
		if err := srv.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = 'pgverbs'").Scan(&active); err != nil {
			t.Fatal(err)
		}
		return !active
	})
	rw := exec.Command(c.Bin("pg_receivewal"), "-d", c.SuperURL(), "-S", "pgverbs", "-D", t.TempDir(), "--no-loop")
	rw.Env = append(os.Environ(), "PGAPPNAME=thief")
	out := &syncBuffer{}
	rw.Stdout, rw.Stderr = out, out
	if err := rw.Start(); err != nil {
		t.Fatal(err)
	}
	rwDone := make(chan struct{})
	go func() { _ = rw.Wait(); close(rwDone) }()
	defer func() {
		_ = rw.Process.Kill()
		<-rwDone
	}()
	thief := holder("thief")
	if _, err := one.Exec(ctx, "ALTER WAL ARCHIVE RESUME"); err != nil {
		t.Fatal(err)
	}
	want = fmt.Sprintf(`replication slot "pgverbs" is in use by another WAL archive (PID %d)`, thief)
	archiveWait(t, "SHOW WAL ARCHIVE names the slot's holder", func() bool {
		_, le, code := status(one)
		return code == "55006" && le == want
	})
	if !strings.Contains(p1.Log.String(), "in use by another WAL archive") {
		t.Errorf("pgverbs did not log why it cannot stream")
	}
	_ = rw.Process.Kill()
	<-rwDone
	archiveWait(t, "the archive streams again", func() bool {
		state, _, _ := status(one)
		return state == "streaming"
	})
	if got := holder("pgverbs"); got == 0 {
		t.Fatal("no holder")
	}
	if _, err := one.Exec(ctx, "STOP WAL ARCHIVE DROP SLOT"); err != nil {
		t.Fatal(err)
	}
}

// TestWALArchiveDirAcrossInstances: two instances sharing a backup root
// cannot archive into one directory (the second START is 55006, whatever
// its slot), each archives into its own, and a restarted instance
// resumes its own archive, not the other's (a pointer file per peer id).
func TestWALArchiveDirAcrossInstances(t *testing.T) {
	c := cluster(t, pgtest.Options{})
	root := t.TempDir()
	args := func(id string) []string { return []string{"--backup-root", root, "--peer-id", id} }
	p1 := startProxy(t, c.URL("", "", "postgres"), args("1")...)
	p2 := startProxy(t, c.URL("", "", "postgres"), args("2")...)
	ctx := testCtx(t)
	one := connect(t, p1.URL("postgres", "", "postgres"))
	two := connect(t, p2.URL("postgres", "", "postgres"))
	if _, err := one.Exec(ctx, "START WAL ARCHIVE TO 'wal1' WITH (SLOT 'one')"); err != nil {
		t.Fatal(err)
	}
	_, err := two.Exec(ctx, "START WAL ARCHIVE TO 'wal1' WITH (SLOT 'two')")
	if e := wantCode(t, err, "55006"); !strings.Contains(e.Message, "in use by another pgverbs process") {
		t.Fatalf("START into the other instance's directory: %+v", e)
	}
	if _, err := two.Exec(ctx, "START WAL ARCHIVE TO 'wal2' WITH (SLOT 'two')"); err != nil {
		t.Fatalf("START into a directory of its own: %v", err)
	}
	waitStreaming := func(conn *pgx.Conn) {
		t.Helper()
		archiveWait(t, "the archive streaming", func() bool {
			rows, err := conn.Query(ctx, "SHOW WAL ARCHIVE")
			if err != nil {
				t.Fatal(err)
			}
			m, err := pgx.CollectOneRow(rows, pgx.RowToMap)
			if err != nil {
				t.Fatal(err)
			}
			state, _ := m["state"].(string)
			return state == "streaming"
		})
	}
	waitStreaming(two)
	// Instance 2 restarts: it resumes wal2, instance 1 keeps wal1.
	p2.Signal(t, syscall.SIGINT)
	_ = p2.Wait(t, 20*time.Second)
	p2 = startProxy(t, c.URL("", "", "postgres"), args("2")...)
	two = connect(t, p2.URL("postgres", "", "postgres"))
	waitStreaming(two)
	var slot string
	srv := connect(t, c.SuperURL())
	archiveWait(t, "both slots active", func() bool {
		var n int
		if err := srv.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name IN ('one', 'two')").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 2
	})
	rows, err := two.Query(ctx, "SHOW WAL ARCHIVE")
	if err != nil {
		t.Fatal(err)
	}
	m, err := pgx.CollectOneRow(rows, pgx.RowToMap)
	if err != nil {
		t.Fatal(err)
	}
	slot, _ = m["slot"].(string)
	if slot != "two" {
		t.Fatalf("the restarted instance resumed slot %q, want two", slot)
	}
	for _, f := range []string{".pgverbs_wal_archive-1", ".pgverbs_wal_archive-2"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Fatalf("pointer %s: %v", f, err)
		}
	}
}
