package e2e

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgtest"
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
	e := startRelay(t, 2)
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
