package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	dto "github.com/prometheus/client_model/go"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/walstream"
)

// The WAL relay end to end: while a WAL archive runs, standbys made by
// BASE BACKUP ... WITH (STANDBY on) stream from pgverbs's own walsender,
// so the primary serves one walsender (the archive's) whatever their
// number.

// relayEnv is a primary, pgverbs archiving it, and standbys fed by
// pgverbs.
type relayEnv struct {
	archiveEnv
	standbys []*pgtest.Cluster
}

// startRelay starts a primary, pgverbs archiving it (extra are more
// pgverbs arguments), and n standbys made through pgverbs.
func startRelay(t *testing.T, n int, extra ...string) *relayEnv {
	t.Helper()
	c := cluster(t, pgtest.Options{Settings: map[string]string{"wal_keep_size": "0"}})
	root := t.TempDir()
	args := append([]string{"--backup-root", root}, extra...)
	p := startProxy(t, c.URL("", "", "postgres"), args...)
	e := &relayEnv{archiveEnv: archiveEnv{c: c, p: p, root: root, srv: connect(t, c.SuperURL()), top: t}}
	e.run(t, "START WAL ARCHIVE TO '"+walArchiveDir+"'")
	archiveWait(t, "the archive streams", func() bool { return e.status(t)["state"] == "streaming" })
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("sb%d", i+1)
		e.run(t, "BASE BACKUP TO '"+name+"' WITH (STANDBY on)")
		sb := pgtest.StartCopy(t, filepath.Join(root, name), pgtest.Options{BinDir: c.BinDir, Password: c.Password,
			Settings: map[string]string{"hot_standby_feedback": "on", "wal_receiver_status_interval": "1s"}}, nil)
		e.standbys = append(e.standbys, sb)
	}
	return e
}

// waitReplayed waits until every standby shows the row id of table t.
func (e *relayEnv) waitReplayed(t *testing.T, table string, id int) {
	t.Helper()
	ctx := testCtx(t)
	for i, sb := range e.standbys {
		conn := connect(t, sb.SuperURL())
		archiveWait(t, fmt.Sprintf("standby %d replays %s id %d", i+1, table, id), func() bool {
			var n int
			err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE id = $1", id).Scan(&n)
			return err == nil && n == 1
		})
	}
}

func TestWALRelayStandbys(t *testing.T) {
	// With an HTTP listener (for /metrics) the standbys get a
	// restore_command running pgverbs wal-get as the server's user, who
	// must reach the binary under test.
	if err := os.Chmod(filepath.Dir(pgverbsBin), 0o755); err != nil {
		t.Fatal(err)
	}
	httpAddr := "127.0.0.1:" + itoa(freePort(t))
	e := startRelay(t, 2, "--http-listen", httpAddr)
	ctx := testCtx(t)
	if _, err := e.srv.Exec(ctx, "CREATE TABLE relay (id int PRIMARY KEY, pad text)"); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 200; id++ {
		if _, err := e.srv.Exec(ctx, "INSERT INTO relay VALUES ($1, repeat('x', 2000))", id); err != nil {
			t.Fatal(err)
		}
	}
	e.waitReplayed(t, "relay", 200)

	t.Run("primary serves pgverbs only", func(t *testing.T) {
		var n int
		var apps string
		if err := e.srv.QueryRow(ctx, "SELECT count(*), string_agg(application_name || ':' || state, ',') FROM pg_stat_replication").Scan(&n, &apps); err != nil {
			t.Fatal(err)
		}
		if n != 1 || apps != "pgverbs:streaming" {
			t.Fatalf("pg_stat_replication on the primary: %d walsenders (%s), want only pgverbs streaming", n, apps)
		}
	})

	t.Run("SHOW WAL STANDBYS, SHOW WAL SLOTS and /metrics", func(t *testing.T) { checkShowRelay(t, e, "http://"+httpAddr) })

	t.Run("FAILOVER and SET SOURCE refusals", func(t *testing.T) { checkFailoverRefusals(t, e) })

	t.Run("hot-standby feedback reaches the primary as the minimum", func(t *testing.T) {
		// A transaction open on standby 1 holds its xmin back; the
		// primary's pgverbs walsender must report an xmin no newer.
		sb1 := connect(t, e.standbys[0].SuperURL())
		tx, err := sb1.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
			t.Fatal(err)
		}
		var held uint64
		if err := tx.QueryRow(ctx, "SELECT txid_snapshot_xmin(txid_current_snapshot())").Scan(&held); err != nil {
			t.Fatal(err)
		}
		for id := 201; id <= 210; id++ {
			if _, err := e.srv.Exec(ctx, "INSERT INTO relay VALUES ($1, 'later')", id); err != nil {
				t.Fatal(err)
			}
		}
		// The archive streams on its slot, so the primary keeps the
		// feedback in the slot (PhysicalReplicationSlotNewXmin).
		archiveWait(t, "the primary's slot holds the standby's xmin", func() bool {
			var x *uint64
			err := e.srv.QueryRow(ctx, "SELECT xmin::text::bigint FROM pg_replication_slots WHERE slot_name = 'pgverbs'").Scan(&x)
			return err == nil && x != nil && *x <= held&0xFFFFFFFF
		})
	})
}

// checkShowRelay: SHOW WAL STANDBYS through psql lists both standbys
// streaming from pgverbs, caught up to what they replayed; SHOW WAL
// SLOTS lists a slot made over a replication connection to pgverbs until
// it is dropped; /metrics (at base) counts both and the slot's retained
// WAL, and OPERATIONS.md names every family of theirs.
func checkShowRelay(t *testing.T, e *relayEnv, base string) {
	ctx := testCtx(t)
	// Both have replayed relay id 200; once they report again, their
	// flush and replay positions reach the server's flush position now.
	replayed := e.serverLSN(t, "SELECT pg_current_wal_flush_lsn()")
	e.waitReplayed(t, "relay", 200)
	var standbys map[string]map[string]string
	archiveWait(t, "SHOW WAL STANDBYS shows sb1 and sb2 streaming, flushed and replayed to "+walstream.FormatLSN(replayed), func() bool {
		standbys = map[string]map[string]string{}
		for _, r := range e.rows(t, "SHOW WAL STANDBYS") {
			standbys[r["application_name"]] = r
		}
		for _, name := range []string{"sb1", "sb2"} {
			r := standbys[name]
			if r == nil || r["state"] != "streaming" || r["flush_lsn"] == "" || r["replay_lsn"] == "" ||
				lsnOf(t, r["flush_lsn"]) < replayed || lsnOf(t, r["replay_lsn"]) < replayed {
				return false
			}
		}
		return len(standbys) == 2
	})
	for _, name := range []string{"sb1", "sb2"} {
		r := standbys[name]
		if r["usename"] != "postgres" || r["client_addr"] != "127.0.0.1" || r["client_port"] == "" || r["timeline"] != "1" || r["pid"] == "" ||
			r["sent_lsn"] == "" || lsnOf(t, r["sent_lsn"]) < lsnOf(t, r["flush_lsn"]) || r["started_at"] == "" {
			t.Errorf("SHOW WAL STANDBYS row of %s: %v", name, r)
		}
	}

	// A persistent slot made through pgverbs is pgverbs's own.
	cfg, err := pgconn.ParseConfig(e.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "true"
	repl, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("replication connection to pgverbs: %v", err)
	}
	defer repl.Close(ctx)
	if _, err := repl.Exec(ctx, "CREATE_REPLICATION_SLOT s1 PHYSICAL RESERVE_WAL").ReadAll(); err != nil {
		t.Fatalf("CREATE_REPLICATION_SLOT through pgverbs: %v", err)
	}
	slots := e.rows(t, "SHOW WAL SLOTS")
	if len(slots) != 1 || slots[0]["slot_name"] != "s1" || slots[0]["slot_type"] != "physical" || slots[0]["temporary"] != "f" ||
		slots[0]["active"] != "f" || slots[0]["active_pid"] != "" || slots[0]["restart_lsn"] == "" || slots[0]["wal_status"] != "reserved" {
		t.Fatalf("SHOW WAL SLOTS after CREATE_REPLICATION_SLOT s1: %v", slots)
	}
	restart := lsnOf(t, slots[0]["restart_lsn"])

	fams := scrape(t, base)
	if n := metric(t, fams, "pgverbs_wal_standbys"); n != 2 {
		t.Errorf("pgverbs_wal_standbys = %v, want 2", n)
	}
	if n := metric(t, fams, "pgverbs_wal_slots"); n != 1 {
		t.Errorf("pgverbs_wal_slots = %v, want 1", n)
	}
	for _, name := range []string{"pgverbs_wal_standby_flush_lag_bytes", "pgverbs_wal_standby_replay_lag_bytes"} {
		for _, sb := range []string{"sb1", "sb2"} {
			if !hasSeries(fams, name, "application_name", sb) {
				t.Errorf("/metrics has no %s{application_name=%q}", name, sb)
			}
		}
	}
	doc := readText(t, operationsDoc)
	for name := range fams {
		if (strings.HasPrefix(name, "pgverbs_wal_standby") || strings.HasPrefix(name, "pgverbs_wal_slot")) && !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("pgverbs exports %s, which %s does not list", name, operationsDoc)
		}
	}
	// New WAL past the slot's restart_lsn is WAL the slot retains.
	if _, err := e.srv.Exec(ctx, "INSERT INTO relay VALUES (1001, repeat('y', 8000)); SELECT pg_switch_wal()"); err != nil {
		t.Fatal(err)
	}
	archiveWait(t, "pgverbs_wal_slot_retained_bytes{slot_name=s1} counts the WAL archived past "+walstream.FormatLSN(restart), func() bool {
		fams := scrape(t, base)
		flushed := metric(t, fams, "pgverbs_wal_archive_flushed_lsn_bytes")
		return flushed > float64(restart) && metric(t, fams, "pgverbs_wal_slot_retained_bytes", "slot_name", "s1") == flushed-float64(restart)
	})

	if _, err := repl.Exec(ctx, "DROP_REPLICATION_SLOT s1").ReadAll(); err != nil {
		t.Fatalf("DROP_REPLICATION_SLOT through pgverbs: %v", err)
	}
	if slots := e.rows(t, "SHOW WAL SLOTS"); len(slots) != 0 {
		t.Errorf("SHOW WAL SLOTS after DROP_REPLICATION_SLOT s1: %v", slots)
	}
	if fams := scrape(t, base); metric(t, fams, "pgverbs_wal_slots") != 0 || hasSeries(fams, "pgverbs_wal_slot_retained_bytes", "slot_name", "s1") {
		t.Error("/metrics still has the dropped slot s1")
	}
}

// hasSeries reports whether family name has a sample with label = value.
func hasSeries(fams map[string]*dto.MetricFamily, name, label, value string) bool {
	for _, m := range fams[name].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == value {
				return true
			}
		}
	}
	return false
}

// checkFailoverRefusals: FAILOVER while the primary answers, or to a
// standby with PROMOTE off, and SET SOURCE to another cluster are refused
// (55000) and change nothing: the archive streams on from the primary.
func checkFailoverRefusals(t *testing.T, e *relayEnv) {
	ctx := testCtx(t)
	sb := e.standbys[0]
	to := fmt.Sprintf("'host=%s port=%d user=postgres dbname=postgres'", sb.Host, sb.Port)
	for _, sql := range []string{
		"FAILOVER WAL ARCHIVE TO " + to,
		"FAILOVER WAL ARCHIVE TO " + to + " WITH (FORCE on, PROMOTE off)",
	} {
		if code := e.sqlstate(t, "postgres", sql); code != "55000" {
			t.Errorf("%s: SQLSTATE %s, want 55000", sql, code)
		}
	}
	other := cluster(t, pgtest.Options{})
	sql := fmt.Sprintf("ALTER WAL ARCHIVE SET SOURCE 'host=%s port=%d user=postgres'", other.Host, other.Port)
	if code := e.sqlstate(t, "postgres", sql); code != "55000" {
		t.Errorf("%s: SQLSTATE %s, want 55000", sql, code)
	}
	var inRecovery bool
	if err := connect(t, sb.SuperURL()).QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Errorf("the standby after refused FAILOVERs: in recovery %v, %v", inRecovery, err)
	}

	// A candidate that cannot catch up (it streams from nowhere) is not
	// promoted when TIMEOUT ends, FORCE or not.
	e.run(t, "BASE BACKUP TO 'lagging' WITH (STANDBY on)")
	lag := pgtest.StartCopy(t, filepath.Join(e.root, "lagging"), pgtest.Options{BinDir: e.c.BinDir, Password: e.c.Password}, func(dir string) {
		f, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintln(f, "primary_conninfo = 'host=127.0.0.1 port=1'")
	})
	if _, err := e.srv.Exec(ctx, "INSERT INTO relay SELECT g, 'after the lagging backup' FROM generate_series(50001, 50100) g"); err != nil {
		t.Fatal(err)
	}
	e.waitCaughtUp(t)
	sql = fmt.Sprintf("FAILOVER WAL ARCHIVE TO 'host=%s port=%d user=postgres dbname=postgres' WITH (FORCE on, TIMEOUT '2s')", lag.Host, lag.Port)
	out, err := psql(t, e.c, e.url("postgres"), "-c", sql)
	if err == nil || !strings.Contains(out, "did not catch up with the archive") {
		t.Errorf("FAILOVER to a candidate that cannot catch up: %v\n%s", err, out)
	}
	if err := connect(t, lag.SuperURL()).QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || !inRecovery {
		t.Errorf("the candidate that did not catch up was promoted: in recovery %v, %v", inRecovery, err)
	}
	if st := e.status(t); st["state"] != "streaming" || st["timeline"] != "1" {
		t.Errorf("the archive after the refusals: %v", st)
	}
}
