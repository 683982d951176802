package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

	"github.com/jackc/pgx/v5"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// The WAL archive's fault tests, end to end: a primary killed mid-load
// loses no acknowledged commit when restored from a base backup and the
// archive (RPO 0), as with pg_receivewal --synchronous; pgverbs killed at
// each failure point of its receiver resumes after a restart into an
// archive pg_waldump walks without a gap, holding every acknowledged
// commit.

// faultSegSize is the clusters' WAL segment size: 1 MB segments fill in
// a few thousand commits, so a short load completes several of them.
const faultSegSize = 1 << 20

// faultCluster starts a primary whose commits wait for the synchronous
// standby (pgtest turns synchronous_commit off).
func faultCluster(t *testing.T) *pgtest.Cluster {
	t.Helper()
	return cluster(t, pgtest.Options{
		Settings:   map[string]string{"synchronous_commit": "on"},
		InitDBArgs: []string{"--wal-segsize=1"},
	})
}

// ack is an acknowledged commit: its xid and an upper bound of its commit
// record's end (pg_current_wal_lsn() in the same session after COMMIT; 0
// when that query failed).
type ack struct {
	xid uint64
	lsn uint64
}

// ackWriter inserts ids one per transaction on a few connections and
// records every id whose COMMIT returned without error. Each row carries
// 1.5 kB, stored as it is (below the TOAST threshold): a few hundred
// commits fill a 1 MB segment, so segments complete under load.
type ackWriter struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	next   int64
	acked  map[int64]ack
	errs   []error
	notify chan struct{} // closed and replaced at every acknowledgement
}

// startWriter starts n writers inserting into table on url until stop or
// an error on each connection (the primary's death); they are stopped at
// the latest when owner (t or a test around it) ends.
func startWriter(t, owner *testing.T, url, table string, n int) *ackWriter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &ackWriter{cancel: cancel, acked: map[int64]ack{}, notify: make(chan struct{})}
	owner.Cleanup(w.stop)
	for range n {
		conn, err := pgx.Connect(testCtx(t), url)
		if err != nil {
			t.Fatalf("writer connect: %v", err)
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer conn.Close(context.Background())
			w.write(ctx, conn, table)
		}()
	}
	return w
}

func (w *ackWriter) write(ctx context.Context, conn *pgx.Conn, table string) {
	for ctx.Err() == nil {
		w.mu.Lock()
		w.next++
		id := w.next
		w.mu.Unlock()
		var xid string
		tx, err := conn.Begin(ctx)
		if err == nil {
			err = tx.QueryRow(ctx, "INSERT INTO "+table+" (id, pad) VALUES ($1, repeat('x', 1500)) RETURNING pg_current_xact_id()::text", id).Scan(&xid)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			if ctx.Err() == nil {
				w.fail(err)
			}
			return
		}
		a := ack{}
		a.xid, _ = strconv.ParseUint(xid, 10, 64)
		var lsn string
		if conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn) == nil {
			a.lsn, _ = walstream.ParseLSN(lsn)
		}
		w.mu.Lock()
		w.acked[id] = a
		close(w.notify)
		w.notify = make(chan struct{})
		w.mu.Unlock()
	}
}

func (w *ackWriter) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, err)
	close(w.notify)
	w.notify = make(chan struct{})
}

// waitAcked waits until n commits are acknowledged in all, failing the
// test when every writer stopped first or after d.
func (w *ackWriter) waitAcked(t *testing.T, n int, d time.Duration, writers int) {
	t.Helper()
	deadline := time.After(d)
	for {
		w.mu.Lock()
		got, errs, ch := len(w.acked), len(w.errs), w.notify
		w.mu.Unlock()
		switch {
		case got >= n:
			return
		case errs == writers:
			t.Fatalf("every writer failed with %d commits acknowledged, waiting for %d: %v", got, n, w.errors())
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%d commits acknowledged after %v, waiting for %d", got, d, n)
		}
	}
}

func (w *ackWriter) errors() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.errs...)
}

// stop ends the writers and waits for them; commits in flight are not
// recorded.
func (w *ackWriter) stop() {
	w.cancel()
	w.wg.Wait()
}

// snapshot returns the acknowledged commits.
func (w *ackWriter) snapshot() map[int64]ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[int64]ack, len(w.acked))
	for id, a := range w.acked {
		m[id] = a
	}
	return m
}

// setSyncStandby makes name the primary's synchronous standby ("" for
// none) and, for a name, waits until pg_stat_replication shows it sync;
// it reports false when died (nil for never) is closed first.
func setSyncStandby(t *testing.T, c *pgtest.Cluster, name string, died <-chan struct{}) bool {
	t.Helper()
	ctx := testCtx(t)
	if err := c.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = '"+name+"'"); err != nil {
		t.Fatal(err)
	}
	if err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
	if name == "" {
		return true
	}
	conn := connect(t, c.SuperURL())
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND sync_state = 'sync'", name).Scan(&n)
		switch {
		case err != nil:
			t.Fatal(err)
		case n > 0:
			return true
		case time.Now().After(deadline):
			t.Fatalf("%s is not the synchronous standby after 30 seconds", name)
		}
		select {
		case <-died:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// killCluster SIGKILLs the postmaster and its children, all at once as a
// power loss would stop them, and waits until they are gone.
func killCluster(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	pidFile := filepath.Join(c.DataDir, "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	postmaster, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Fatalf("%s: %v", pidFile, err)
	}
	// Stopped first, the postmaster forks no new child while the others
	// are listed.
	if err := syscall.Kill(postmaster, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	pids := append([]int{postmaster}, childPIDs(t, postmaster)...)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d of the primary survived SIGKILL", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The harness's stop then has nothing to shut down.
	if err := os.Remove(pidFile); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the primary: postmaster %d and %d children", postmaster, len(pids)-1)
}

// childPIDs lists the processes whose parent is ppid, from /proc.
func childPIDs(t *testing.T, ppid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// execSimple runs sql on conn in the simple protocol, as psql would.
func execSimple(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(testCtx(t), sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// copyFileMode copies src to dst with mode perm.
func copyFileMode(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, perm); err != nil {
		t.Fatal(err)
	}
}

// rpo0 loads the primary c whose WAL streams to the synchronous standby
// named standby, kills it mid-load, restores the base backup backupDir
// with the restore_command restoreCmd returns (given the directory beside
// the restored data directory, which the server's user may read), and
// checks that every acknowledged id is there. load returns when the
// primary is to die; nil is 1500 commits.
func rpo0(t *testing.T, c *pgtest.Cluster, standby, backupDir string, load func(*ackWriter), restoreCmd func(parent string) string) {
	t.Helper()
	ctx := testCtx(t)
	if err := c.Exec(ctx, "CREATE TABLE acked (id bigint PRIMARY KEY, pad text)"); err != nil {
		t.Fatal(err)
	}
	setSyncStandby(t, c, standby, nil)
	const writers = 4
	w := startWriter(t, t, c.SuperURL(), "acked", writers)
	if load == nil {
		w.waitAcked(t, 1500, 2*time.Minute, writers)
	} else {
		load(w)
	}
	killCluster(t, c)
	w.stop()
	acked := w.snapshot()

	r := pgtest.StartCopy(t, backupDir, pgtest.Options{BinDir: c.BinDir, Password: c.Password}, func(dataDir string) {
		conf := "\nrestore_command = '" + restoreCmd(filepath.Dir(dataDir)) + "'\n"
		f, err := os.OpenFile(filepath.Join(dataDir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(conf); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := os.WriteFile(filepath.Join(dataDir, "recovery.signal"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	})
	// The server accepts connections once consistent, before the end of
	// recovery: the rows are all there once it has promoted.
	if _, err := pollActivity(r, "SELECT 1 WHERE NOT pg_is_in_recovery() AND $1", true); err != nil {
		t.Fatalf("the restored server did not end recovery: %v\n%s", err, r.ServerLog())
	}
	rows, err := connect(t, r.SuperURL()).Query(ctx, "SELECT id FROM acked")
	if err != nil {
		t.Fatalf("the restored server: %v\n%s", err, r.ServerLog())
	}
	present, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[int64]bool, len(present))
	for _, id := range present {
		have[id] = true
	}
	var lost []int64
	for id := range acked {
		if !have[id] {
			lost = append(lost, id)
		}
	}
	slices.Sort(lost)
	t.Logf("%d commits acknowledged before the primary died, %d rows restored", len(acked), len(present))
	if len(lost) > 0 {
		t.Errorf("%d acknowledged ids are not in the restored database, first %v\nrestored server log:\n%s", len(lost), lost[:min(len(lost), 10)], r.ServerLog())
	}
	if log := r.ServerLog(); !strings.Contains(log, "archive recovery complete") {
		t.Errorf("the restored server did not complete archive recovery:\n%s", log)
	}
}

// TestWALArchiveRPO0: a primary whose synchronous standby is the archive
// (SYNCHRONOUS on), killed mid-load, restored from a BASE BACKUP and the
// archive through pgverbs wal-get --partial, has every commit it
// acknowledged.
func TestWALArchiveRPO0(t *testing.T) { rpo0Archive(t, "") }

// TestWALArchiveRPO0AfterCrash: pgverbs dies at a failpoint under load
// (after-ack, mid-segment), then the primary; a pgverbs started again
// resumes the archive without an upstream and serves, from what the dead
// one left, every commit that was acknowledged.
func TestWALArchiveRPO0AfterCrash(t *testing.T) { rpo0Archive(t, "after-ack:300") }

// rpo0Archive is TestWALArchiveRPO0, with pgverbs started with the
// failpoint at when it is not "".
func rpo0Archive(t *testing.T, at string) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(walToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := "127.0.0.1:" + itoa(freePort(t))
	c := faultCluster(t)
	root := t.TempDir()
	args := []string{"--backup-root", root, "--http-listen", httpAddr, "--http-token-file", tokenFile}
	t.Setenv(walarchive.FailpointEnv, at)
	p := startProxy(t, c.URL("", "", "postgres"), args...)
	conn := connect(t, p.URL("postgres", "", "postgres"))
	execSimple(t, conn, "BASE BACKUP TO 'base'")
	execSimple(t, conn, "START WAL ARCHIVE TO 'wal' WITH (SYNCHRONOUS on)")
	var load func(*ackWriter)
	if at != "" {
		load = func(w *ackWriter) { waitKilled(t, p, at, w) }
	}
	rpo0(t, c, "pgverbs", filepath.Join(root, "base"), load, func(parent string) string {
		if at != "" {
			// Without the failpoint, without START: the archive resumes
			// (reconnecting to the dead primary) and /wal/ serves it.
			t.Setenv(walarchive.FailpointEnv, "")
			startProxy(t, c.URL("", "", "postgres"), args...)
		}
		// The server's user runs restore_command: the binary and the
		// token go where it may read them.
		bin, tok := filepath.Join(parent, "pgverbs"), filepath.Join(parent, "token")
		copyFileMode(t, pgverbsBin, bin, 0o755)
		copyFileMode(t, tokenFile, tok, 0o600)
		return bin + " wal-get --url http://" + httpAddr + " --token-file " + tok + " --partial %f %p"
	})
}

// TestWALArchiveRPO0Baseline is TestWALArchiveRPO0 with pg_receivewal
// --synchronous --slot as the synchronous standby, the baseline.
func TestWALArchiveRPO0Baseline(t *testing.T) {
	c := faultCluster(t)
	ctx := testCtx(t)
	backupDir := filepath.Join(t.TempDir(), "base")
	if out, err := exec.Command(c.Bin("pg_basebackup"), "-d", c.SuperURL(), "-D", backupDir, "-X", "fetch", "-c", "fast").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	if err := c.Exec(ctx, "SELECT pg_create_physical_replication_slot('receivewal', true)"); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(t.TempDir(), "wal")
	if err := os.Mkdir(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	recv := exec.Command(c.Bin("pg_receivewal"), "-d", c.SuperURL(), "-D", walDir, "--slot", "receivewal", "--synchronous", "--no-loop")
	recv.Stdout, recv.Stderr = &out, &out
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- recv.Wait() }()
	t.Cleanup(func() {
		_ = recv.Process.Kill()
		<-exited
	})
	rpo0(t, c, "pg_receivewal", backupDir, nil, func(parent string) string {
		// With --no-loop pg_receivewal ends once its primary is gone,
		// having flushed what it received.
		select {
		case <-exited:
			exited <- nil // for the cleanup
		case <-time.After(time.Minute):
			t.Fatalf("pg_receivewal still runs a minute after its primary died:\n%s", out.String())
		}
		dir := filepath.Join(parent, "wal")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		ents, err := os.ReadDir(walDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			copyFileMode(t, filepath.Join(walDir, e.Name()), filepath.Join(dir, strings.TrimSuffix(e.Name(), ".partial")), 0o600)
		}
		return "cp " + dir + "/%f %p"
	})
}

// TestWALArchiveCrash kills pgverbs at each failure point of its
// receiver (walarchive.FailpointEnv) while a writer commits through it as
// the synchronous standby; a pgverbs started again without START resumes
// the archive, and then pg_waldump walks it from its oldest segment to
// the newest complete one without a gap or a torn page, every
// acknowledged commit is in that range, and every complete segment is
// the primary's own.
func TestWALArchiveCrash(t *testing.T) {
	c := faultCluster(t)
	for _, fp := range []struct{ name, at string }{
		// Counted from pgverbs's start; the first segment's catch-up
		// takes a few hits, the load a few hundred a second: each lands
		// mid-segment under load.
		{"write", "write:400"},
		{"after-fsync", "after-fsync:300"},
		{"after-ack", "after-ack:300"},
		// The first segment completed: the one pg_switch_wal ends.
		{"before-rename", "before-rename:1"},
		// No failpoint: a SIGKILL from outside, wherever it lands.
		{"sigkill", ""},
		// The first hits fall in the catch-up, before pgverbs is the
		// synchronous standby: an empty preallocated .partial, a first
		// fsync or position never reported.
		{"write-1", "write:1"},
		{"after-fsync-1", "after-fsync:1"},
		{"after-ack-1", "after-ack:1"},
		// A completion under load, after one went through.
		{"before-rename-2", "before-rename:2"},
	} {
		t.Run(fp.name, func(t *testing.T) { crashAt(t, c, fp.name, fp.at) })
	}
}

// crashAt is one failure point of TestWALArchiveCrash on the shared
// primary c, with a slot, table and archive of its own.
func crashAt(t *testing.T, c *pgtest.Cluster, name, at string) {
	ctx := testCtx(t)
	id := strings.ReplaceAll(name, "-", "_")
	slot, table := "crash_"+id, "crash_"+id
	root := t.TempDir()
	backend := c.URL("", "", "postgres")
	// The slot reserves WAL from the last checkpoint's redo: after a
	// CHECKPOINT the archive's catch-up completes no segment, and the
	// failpoints meet the load.
	if err := c.Exec(ctx, "CREATE TABLE "+table+" (id bigint PRIMARY KEY, pad text); CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	// Registered before any pgverbs starts, this cleanup runs after they
	// are stopped: the next failure point starts from a primary with no
	// synchronous standby and no slot of this one.
	t.Cleanup(func() {
		setSyncStandby(t, c, "", nil)
		if _, err := pollActivity(c, "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", slot); err != nil {
			t.Errorf("slot %s stays active: %v", slot, err)
			return
		}
		if err := c.Exec(context.Background(), "SELECT pg_drop_replication_slot('"+slot+"')"); err != nil {
			t.Errorf("drop slot %s: %v", slot, err)
		}
	})

	const writers = 4
	var w *ackWriter
	var atCrash int
	outer := t
	t.Run("until the failpoint", func(t *testing.T) {
		// Only this pgverbs sees the failpoint: t.Setenv ends with the
		// subtest, the process with the failpoint.
		t.Setenv(walarchive.FailpointEnv, at)
		p := startProxy(t, backend, "--backup-root", root)
		execSimple(t, connect(t, p.URL("postgres", "", "postgres")), "START WAL ARCHIVE TO 'wal' WITH (SLOT '"+slot+"', SYNCHRONOUS on)")
		if !setSyncStandby(t, c, "pgverbs", p.done) {
			// Killed in the catch-up (write:1): the writers' commits
			// wait for the restarted archive.
			t.Logf("pgverbs died before it was the synchronous standby")
		}
		w = startWriter(t, outer, c.SuperURL(), table, writers)
		switch at {
		case "before-rename:1":
			w.waitAcked(t, 50, time.Minute, writers)
			if err := c.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
				t.Fatal(err)
			}
		case "":
			w.waitAcked(t, 300, time.Minute, writers)
			p.Signal(t, syscall.SIGKILL)
		}
		waitKilled(t, p, at, w)
		atCrash = len(w.snapshot())
	})
	if t.Failed() {
		return
	}

	// Started again, without START, pgverbs resumes the archive, and the
	// writers, waiting for the synchronous standby, commit again.
	p := startProxy(t, backend, "--backup-root", root)
	show := connect(t, p.URL("postgres", "", "postgres"))
	waitArchiveState(t, show, "streaming")
	w.waitAcked(t, atCrash+300, 2*time.Minute, writers)
	w.stop()
	acked := w.snapshot()

	var switched string
	if err := connect(t, c.SuperURL()).QueryRow(ctx, "SELECT pg_switch_wal()::text").Scan(&switched); err != nil {
		t.Fatal(err)
	}
	end, err := walstream.ParseLSN(switched)
	if err != nil {
		t.Fatal(err)
	}
	var highest uint64
	for _, a := range acked {
		highest = max(highest, a.lsn)
	}
	if highest > end {
		t.Fatalf("a commit acknowledged at %s, after the switch at %s", walstream.FormatLSN(highest), switched)
	}
	// The segment pg_switch_wal ended holds end-1; the archive completes
	// it once the standby received its end.
	last := (end - 1) / faultSegSize
	dir := filepath.Join(root, "wal")
	lastName := walarchive.SegmentName(1, last*faultSegSize, faultSegSize)
	waitFile(t, filepath.Join(dir, lastName), 2*time.Minute)

	oldest := completeSegments(t, dir, last)
	start, stop := oldest*faultSegSize, (last+1)*faultSegSize
	cmd := exec.Command(c.Bin("pg_waldump"), "-p", dir, "--start", walstream.FormatLSN(start), "--end", walstream.FormatLSN(stop), "--rmgr", "Transaction")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("pg_waldump from %s to %s: %v\n%s", walstream.FormatLSN(start), walstream.FormatLSN(stop), err, stderr.String())
	}
	committed := map[uint64]bool{}
	for _, m := range commitRecord.FindAllSubmatch(out, -1) {
		xid, _ := strconv.ParseUint(string(m[1]), 10, 64)
		committed[xid] = true
	}
	var missing []int64
	for id, a := range acked {
		if !committed[a.xid] || a.lsn != 0 && (a.lsn <= start || a.lsn > stop) {
			missing = append(missing, id)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		a := acked[missing[0]]
		t.Errorf("%d of %d acknowledged commits are not in the walked range %s-%s; first id %d (xid %d, lsn %s)",
			len(missing), len(acked), walstream.FormatLSN(start), walstream.FormatLSN(stop), missing[0], a.xid, walstream.FormatLSN(a.lsn))
	}
	same := sameAsPrimary(t, c, dir, oldest, last)
	t.Logf("%d commits acknowledged (%d before the crash); pg_waldump walked segments %s to %s, %d commit records; %d segments compared with pg_wal",
		len(acked), atCrash, walarchive.SegmentName(1, start, faultSegSize), lastName, len(committed), same)
}

// waitKilled waits until p died by SIGKILL, its failpoint at's (or the
// test's, for "") while w wrote.
func waitKilled(t *testing.T, p *proxyProc, at string, w *ackWriter) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("pgverbs did not reach failpoint %q in 2 minutes (%d commits acknowledged)", at, len(w.snapshot()))
	}
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("pgverbs ended with %v, not by SIGKILL", p.err)
	}
	t.Logf("pgverbs killed at %q with %d commits acknowledged", at, len(w.snapshot()))
}

// commitRecord matches a commit in pg_waldump's output, capturing its xid.
var commitRecord = regexp.MustCompile(`(?m)^rmgr: Transaction .*tx: +(\d+), .*desc: COMMIT`)

// waitArchiveState polls SHOW WAL ARCHIVE on conn until its state is want.
func waitArchiveState(t *testing.T, conn *pgx.Conn, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var got string
	for time.Now().Before(deadline) {
		res, err := conn.PgConn().Exec(testCtx(t), "SHOW WAL ARCHIVE").ReadAll()
		if err != nil {
			t.Fatalf("SHOW WAL ARCHIVE: %v", err)
		}
		for i, f := range res[0].FieldDescriptions {
			if f.Name == "state" && len(res[0].Rows) == 1 {
				got = string(res[0].Rows[0][i])
			}
		}
		if got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("SHOW WAL ARCHIVE: state %q after a minute, want %q", got, want)
}

// waitFile polls until path exists.
func waitFile(t *testing.T, path string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := os.Stat(path)
		if err == nil {
			return
		}
		if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			t.Fatalf("%s: %v", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// completeSegments checks that dir holds every timeline 1 segment from its
// oldest complete one through last, complete (and nothing of the kind
// after last but the one being written), and returns the oldest's number.
func completeSegments(t *testing.T, dir string, last uint64) uint64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var segs []uint64
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		n, err := walarchive.ParseName(e.Name(), faultSegSize)
		if err == nil && n.Kind == walarchive.Segment && n.SegNo <= last {
			segs = append(segs, n.SegNo)
		}
	}
	slices.Sort(segs)
	if len(segs) == 0 {
		t.Fatalf("no complete segment in the archive: %v", names)
	}
	for i, s := range segs {
		if s != segs[0]+uint64(i) {
			t.Fatalf("the archive has a gap before segment %d: %v", s, names)
		}
	}
	if segs[len(segs)-1] != last {
		t.Fatalf("the archive's segments end at %d, not %d: %v", segs[len(segs)-1], last, names)
	}
	return segs[0]
}

// sameAsPrimary compares the archive's complete segments first..last with
// the primary's pg_wal copies still there (a recycled one is under a
// later name) and returns how many it compared.
func sameAsPrimary(t *testing.T, c *pgtest.Cluster, dir string, first, last uint64) int {
	t.Helper()
	n := 0
	for seg := first; seg <= last; seg++ {
		name := walarchive.SegmentName(1, seg*faultSegSize, faultSegSize)
		want, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Errorf("segment %s differs from the primary's at byte %d (sizes %d and %d)", name, i, len(got), len(want))
		}
		n++
	}
	if n == 0 {
		t.Errorf("none of the archive's segments is in the primary's pg_wal")
	}
	return n
}
