package e2e

import (
	"bytes"
	"context"
	"fmt"
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

// TestWALFailover is the failover under load: a writer commits
// through pgverbs (the archive synchronous, named in the primary's
// synchronous_standby_names) and records what was acknowledged, the
// primary is SIGKILLed, an operator's psql session that pgverbs
// authenticates itself (wal_auth_file) runs FAILOVER WAL ARCHIVE TO the
// first standby. Then every acknowledged id is on the new primary, the
// second standby follows the new timeline without a restart and replays
// new writes, the writer carries on through the same pgverbs address, and
// the old primary comes back as a relay-fed standby made by BASE BACKUP.
func TestWALFailover(t *testing.T) {
	ctx := testCtx(t)
	c := cluster(t, pgtest.Options{Settings: map[string]string{
		"synchronous_standby_names": "pgverbs", "synchronous_commit": "on", "fsync": "on"}})
	var verifier string
	if err := connect(t, c.SuperURL()).QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'").Scan(&verifier); err != nil {
		t.Fatal(err)
	}
	authFile := filepath.Join(t.TempDir(), "userlist.txt")
	if err := os.WriteFile(authFile, []byte(fmt.Sprintf("%q %q\n", "postgres", verifier)), 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	p := startProxy(t, c.URL("", "", "postgres"), "--backup-root", root, "--wal-auth-file", authFile, "--wal-auth-admins", "postgres")
	e := &relayEnv{archiveEnv: archiveEnv{c: c, p: p, root: root, srv: connect(t, c.SuperURL()), top: t}}
	e.run(t, "START WAL ARCHIVE TO '"+walArchiveDir+"'")
	archiveWait(t, "the archive streams", func() bool { return e.status(t)["state"] == "streaming" })
	for _, name := range []string{"sb1", "sb2"} {
		e.run(t, "BASE BACKUP TO '"+name+"' WITH (STANDBY on)")
		sb := pgtest.StartCopy(t, filepath.Join(root, name), pgtest.Options{BinDir: c.BinDir, Password: c.Password,
			Settings: map[string]string{"wal_retrieve_retry_interval": "1s"}}, nil)
		e.standbys = append(e.standbys, sb)
	}
	if _, err := e.srv.Exec(ctx, "CREATE TABLE acked (id int PRIMARY KEY, phase text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Exec(ctx, "INSERT INTO acked VALUES (-1, 'setup')"); err != nil {
		t.Fatal(err)
	}
	e.waitReplayed(t, "acked", -1)
	sb2 := connect(t, e.standbys[1].SuperURL())
	var started time.Time
	if err := sb2.QueryRow(ctx, "SELECT pg_postmaster_start_time()").Scan(&started); err != nil {
		t.Fatal(err)
	}

	// pg_receivewal streams through pgverbs (its walsender) on a slot
	// of pgverbs's own, across the failover.
	recvDir := t.TempDir()
	recvConn := fmt.Sprintf("host=%s port=%d user=postgres", p.Host, p.Port)
	if out, err := exec.Command(c.Bin("pg_receivewal"), "-d", recvConn, "--slot", "rw", "--create-slot").CombinedOutput(); err != nil {
		t.Fatalf("pg_receivewal --create-slot through pgverbs: %v\n%s", err, out)
	}
	var recvOut syncBuffer
	recv := exec.Command(c.Bin("pg_receivewal"), "-d", recvConn, "-D", recvDir, "--slot", "rw", "-v")
	recv.Stdout, recv.Stderr = &recvOut, &recvOut
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	recvDone := make(chan error, 1)
	go func() { recvDone <- recv.Wait() }()
	t.Cleanup(func() { _ = recv.Process.Kill(); <-recvDone })

	// sb3 is made now and started while the primary is down.
	e.run(t, "BASE BACKUP TO 'sb3' WITH (STANDBY on)")

	w := &failoverWriter{url: p.URL("postgres", "", "postgres")}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.run(wctx) }()
	archiveWait(t, "the writer commits", func() bool { return w.count() >= 300 })
	killCluster(t, c)
	// A standby started while the primary is down authenticates with
	// pgverbs (wal_auth_file) and catches up from the archive.
	lastBefore := w.ids()[w.count()-1]
	sb3 := pgtest.StartCopy(t, filepath.Join(root, "sb3"), pgtest.Options{BinDir: c.BinDir, Password: c.Password,
		Settings: map[string]string{"wal_retrieve_retry_interval": "1s"}}, func(dir string) {
		f, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintf(f, "primary_conninfo = 'host=%s port=%d user=postgres password=%s application_name=sb3'\n", p.Host, p.Port, c.Password)
	})
	sb3conn := connect(t, sb3.SuperURL())
	archiveWait(t, "sb3, started with the primary down, replays the last id acknowledged before the kill", func() bool {
		var got int
		return sb3conn.QueryRow(ctx, "SELECT count(*) FROM acked WHERE id = $1", lastBefore).Scan(&got) == nil && got == 1
	})

	// The operator: psql to pgverbs's usual address, the primary gone.
	candidate := e.standbys[0]
	admin := fmt.Sprintf("host=%s port=%d user=postgres password=%s dbname=postgres", p.Host, p.Port, c.Password)
	if out, err := psql(t, c, admin, "-At", "-c", "SHOW WAL ARCHIVE", "-c", "SHOW PGVERBS CLIENTS", "-c", "SHOW WAL STANDBYS"); err != nil {
		t.Errorf("pgverbs's SHOWs in the session it authenticated itself: %v\n%s", err, out)
	}
	if out, err := psql(t, c, admin, "-v", "VERBOSITY=verbose", "-c", "SELECT 1"); err == nil || !strings.Contains(out, "57P03") {
		t.Errorf("SQL in the session pgverbs authenticated itself: %v, want 57P03\n%s", err, out)
	}
	if out, err := psql(t, c, strings.Replace(admin, "password="+c.Password, "password=wrong", 1), "-c", "SHOW WAL ARCHIVE"); err == nil ||
		!strings.Contains(out, `password authentication failed for user "postgres"`) {
		t.Errorf("a wrong password while the primary is down: %v\n%s", err, out)
	}
	out, err := psql(t, c, admin, "-At", "-c", fmt.Sprintf("FAILOVER WAL ARCHIVE TO 'host=%s port=%d user=postgres dbname=postgres' WITH (TIMEOUT '60s')", candidate.Host, candidate.Port))
	if err != nil {
		t.Fatalf("FAILOVER: %v\n%s", err, out)
	}
	t.Logf("FAILOVER: %s", out)
	fields := strings.Split(strings.TrimSpace(out), "|")
	if len(fields) != 3 || fields[0] != "2" || fields[1] == "" {
		t.Fatalf("FAILOVER returned %q, want timeline 2, a switch point and the standbys", out)
	}
	if !strings.Contains(fields[2], "sb2") || !strings.Contains(fields[2], "sb3") {
		t.Errorf("FAILOVER's standbys %q do not name sb2 and sb3", fields[2])
	}

	// The backend followed: SHOW PGVERBS CONFIG says so, and a client
	// asking for a read-write server through pgverbs gets one.
	cfgOut, err := psql(t, c, p.URL("postgres", "", "postgres")+"&target_session_attrs=read-write", "-At", "-c",
		"SELECT 1 WHERE NOT pg_is_in_recovery()", "-c", "SHOW PGVERBS CONFIG")
	if err != nil {
		t.Fatalf("psql target_session_attrs=read-write through pgverbs after the failover: %v\n%s", err, cfgOut)
	}
	if !strings.HasPrefix(cfgOut, "1\n") || !strings.Contains(cfgOut, fmt.Sprintf("backend|host=%s port=%d", candidate.Host, candidate.Port)) ||
		!strings.Contains(cfgOut, "|wal archive source|") {
		t.Errorf("after the failover, want the new primary and SHOW PGVERBS CONFIG's backend from the archive's source:\n%s", cfgOut)
	}

	// The writer reconnects to the same address and reaches the new
	// primary.
	before := w.count()
	archiveWait(t, "the writer commits on the new primary", func() bool { return w.count() >= before+50 })
	stop()
	<-done

	newPrimary := connect(t, candidate.SuperURL())
	ids := w.ids()
	var n int
	if err := newPrimary.QueryRow(ctx, "SELECT count(*) FROM acked WHERE id = ANY($1)", ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ids) {
		t.Fatalf("the new primary holds %d of the %d acknowledged ids", n, len(ids))
	}
	t.Logf("all %d acknowledged ids on the new primary (%d after the failover)", len(ids), len(ids)-before)

	last := ids[len(ids)-1]
	archiveWait(t, "sb2 replays the new primary's writes on timeline 2", func() bool {
		var got int
		var tli *int
		err := sb2.QueryRow(ctx, "SELECT (SELECT count(*) FROM acked WHERE id = $1), (SELECT received_tli FROM pg_stat_wal_receiver)", last).Scan(&got, &tli)
		return err == nil && got == 1 && tli != nil && *tli == 2
	})
	var again time.Time
	if err := sb2.QueryRow(ctx, "SELECT pg_postmaster_start_time()").Scan(&again); err != nil {
		t.Fatal(err)
	}
	if !again.Equal(started) {
		t.Errorf("sb2 was restarted: postmaster started %v, before %v", again, started)
	}

	// pg_receivewal followed the failover through pgverbs and wrote the
	// archive's bytes: every complete segment on both timelines is equal.
	if _, err := newPrimary.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
		t.Fatal(err)
	}
	tl2 := 0
	archiveWait(t, "pg_receivewal completes a segment of timeline 2", func() bool {
		ents, _ := os.ReadDir(recvDir)
		tl2 = 0
		for _, de := range ents {
			if strings.HasPrefix(de.Name(), "00000002") && len(de.Name()) == 24 {
				tl2++
			}
		}
		return tl2 > 0
	})
	_ = recv.Process.Signal(syscall.SIGINT)
	<-recvDone
	recvDone <- nil
	ents, err := os.ReadDir(recvDir)
	if err != nil {
		t.Fatal(err)
	}
	compared := 0
	for _, de := range ents {
		name := de.Name()
		if len(name) != 24 && !strings.HasSuffix(name, ".history") {
			continue // .partial: still being written, or the old timeline's end
		}
		got, err := os.ReadFile(filepath.Join(recvDir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(e.dir(), name))
		if err != nil {
			t.Errorf("pg_receivewal has %s, the archive does not: %v", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("pg_receivewal's %s differs from the archive's", name)
		}
		compared++
	}
	if !strings.Contains(recvOut.String(), "switched to timeline 2") {
		t.Errorf("pg_receivewal did not follow the switch to timeline 2 on its connection:\n%s", recvOut.String())
	}
	t.Logf("pg_receivewal through pgverbs: %d files equal to the archive's (%d of timeline 2)", compared, tl2)

	// The old primary, rebuilt as a relay-fed standby of the new one.
	e.run(t, "BASE BACKUP TO 'old' WITH (STANDBY on)")
	old := pgtest.StartCopy(t, filepath.Join(root, "old"), pgtest.Options{BinDir: c.BinDir, Password: c.Password}, nil)
	if _, err := newPrimary.Exec(ctx, "INSERT INTO acked VALUES (-2, 'rebuilt')"); err != nil {
		t.Fatal(err)
	}
	oldConn := connect(t, old.SuperURL())
	archiveWait(t, "the rebuilt old primary replays", func() bool {
		var got int
		return oldConn.QueryRow(ctx, "SELECT count(*) FROM acked WHERE id = -2").Scan(&got) == nil && got == 1
	})
}

// failoverWriter inserts ids through pgverbs one commit at a time,
// reconnecting after errors, and records those acknowledged.
type failoverWriter struct {
	url string
	mu  sync.Mutex
	ack []int
}

func (w *failoverWriter) run(ctx context.Context) {
	var conn *pgx.Conn
	for id := 1; ctx.Err() == nil; {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := pgx.Connect(cctx, w.url)
			cancel()
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			conn = c
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := conn.Exec(qctx, "INSERT INTO acked VALUES ($1, 'load')", id)
		cancel()
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			id++ // its fate is unknown: never reused
			continue
		}
		w.mu.Lock()
		w.ack = append(w.ack, id)
		w.mu.Unlock()
		id++
	}
	if conn != nil {
		conn.Close(context.Background())
	}
}

func (w *failoverWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ack)
}

func (w *failoverWriter) ids() []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.ack...)
}

// TestWALRelayRestart restarts pgverbs while a standby streams from it:
// the archive resumes by itself, the standby reconnects to the same
// address and replays what was written meanwhile, without a restart of
// its own.
func TestWALRelayRestart(t *testing.T) {
	e := startRelay(t, 1)
	ctx := testCtx(t)
	if _, err := e.srv.Exec(ctx, "CREATE TABLE restart (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Exec(ctx, "INSERT INTO restart VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	e.waitReplayed(t, "restart", 1)
	sb := connect(t, e.standbys[0].SuperURL())
	var started time.Time
	if err := sb.QueryRow(ctx, "SELECT pg_postmaster_start_time()").Scan(&started); err != nil {
		t.Fatal(err)
	}
	e.p.Signal(t, syscall.SIGTERM)
	if err := e.p.Wait(t, 30*time.Second); err != nil {
		t.Fatalf("pgverbs after SIGTERM: %v\n%s", err, e.p.Log.String())
	}
	if _, err := e.srv.Exec(ctx, "INSERT INTO restart VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	e.p = launchProxy(t, e.p.Port, e.c.URL("", "", "postgres"), "--backup-root", e.root)
	if !e.p.waitReady(t) {
		t.Fatalf("pgverbs did not start again on port %d:\n%s", e.p.Port, e.p.Log.String())
	}
	e.waitReplayed(t, "restart", 2)
	// Served by the resumed archive, not relayed to the primary.
	var n int
	var apps string
	if err := e.srv.QueryRow(ctx, "SELECT count(*), string_agg(application_name, ',') FROM pg_stat_replication").Scan(&n, &apps); err != nil {
		t.Fatal(err)
	}
	if n != 1 || apps != "pgverbs" {
		t.Errorf("the primary's walsenders after the restart: %d (%s), want pgverbs only", n, apps)
	}
	var again time.Time
	if err := sb.QueryRow(ctx, "SELECT pg_postmaster_start_time()").Scan(&again); err != nil {
		t.Fatal(err)
	}
	if !again.Equal(started) {
		t.Errorf("the standby was restarted: %v, before %v", again, started)
	}
}

// TestLocalAuthReload: SIGHUP rereads wal_auth_file, so that an operator
// rotates a password without a restart (and while the server is down).
func TestLocalAuthReload(t *testing.T) {
	c := cluster(t, pgtest.Options{})
	authFile := filepath.Join(t.TempDir(), "userlist.txt")
	if err := os.WriteFile(authFile, []byte(`"ops" "first-secret"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, c.URL("", "", "postgres"), "--wal-auth-file", authFile, "--wal-auth-admins", "ops")
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	as := func(password string) (string, error) {
		return psql(t, c, fmt.Sprintf("host=%s port=%d user=ops password=%s dbname=postgres", p.Host, p.Port, password), "-At", "-c", "SHOW PGVERBS CLIENTS")
	}
	if out, err := as("first-secret"); err != nil {
		t.Fatalf("SHOW PGVERBS CLIENTS as an admin pgverbs authenticated: %v\n%s", err, out)
	}
	if err := os.WriteFile(authFile, []byte(`"ops" "second-secret"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGHUP)
	archiveWait(t, "the new password is taken after SIGHUP", func() bool {
		_, err := as("second-secret")
		return err == nil
	})
	if out, _ := as("first-secret"); !strings.Contains(out, `password authentication failed for user "ops"`) {
		t.Errorf("the old password still works after the reload:\n%s", out)
	}
}
