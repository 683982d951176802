package walstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// connect opens a physical replication connection to c.
func connect(t *testing.T, c *pgtest.Cluster) *Conn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(c.SuperURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "true"
	cfg.RuntimeParams["application_name"] = "walstream_test"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := New(pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestStream walks the commands a WAL receiver runs against a real
// server, streams WAL the test generates, and checks that the status the
// receiver sends is what the server records.
func TestStream(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := connect(t, c)

	if v, err := conn.ServerVersion(); err != nil || v < 13 {
		t.Fatalf("ServerVersion = %d, %v", v, err)
	}
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sys.Timeline != 1 || sys.ID == "" || sys.XLogPos == 0 {
		t.Fatalf("IdentifySystem = %+v", sys)
	}
	segSize, err := conn.SegmentSize(ctx)
	if err != nil || segSize != 16<<20 {
		t.Fatalf("SegmentSize = %d, %v", segSize, err)
	}
	if s, err := conn.ReadSlot(ctx, "ws_test"); err != nil || s.Exists {
		t.Fatalf("ReadSlot of a missing slot = %+v, %v", s, err)
	}
	if err := conn.CreateSlot(ctx, "ws_test", false); err != nil {
		t.Fatal(err)
	}
	defer c.Exec(context.Background(), "SELECT pg_drop_replication_slot('ws_test')")
	slot, err := conn.ReadSlot(ctx, "ws_test")
	if err != nil || !slot.Exists || slot.Type != "physical" || slot.RestartLSN == 0 || slot.RestartTLI != 1 {
		t.Fatalf("ReadSlot = %+v, %v", slot, err)
	}
	// A server error leaves the connection usable.
	var pe *pgconn.PgError
	if err := conn.CreateSlot(ctx, "ws_test", false); !errors.As(err, &pe) || pe.Code != "42710" {
		t.Fatalf("second CreateSlot = %v, want 42710", err)
	}
	if _, _, err := conn.TimelineHistory(ctx, 1); !errors.As(err, &pe) {
		t.Fatalf("TIMELINE_HISTORY 1 = %v, want the server's error (timeline 1 has none)", err)
	}

	start := slot.RestartLSN - slot.RestartLSN%segSize
	if end, err := conn.StartReplication(ctx, "ws_test", start, 1); err != nil || end != nil {
		t.Fatalf("StartReplication = %+v, %v", end, err)
	}
	if err := c.Exec(ctx, "CREATE TABLE t AS SELECT generate_series(1, 10000) AS i"); err != nil {
		t.Fatal(err)
	}
	pos := start
	target := sys.XLogPos + 100_000
	deadline := time.Now().Add(30 * time.Second)
	for pos < target {
		if time.Now().After(deadline) {
			t.Fatalf("streamed up to %s, wanted %s", FormatLSN(pos), FormatLSN(target))
		}
		_ = conn.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
		msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *XLogData:
			if m.Start != pos {
				t.Fatalf("XLogData at %s, expected %s", FormatLSN(m.Start), FormatLSN(pos))
			}
			pos += uint64(len(m.Data))
		case *Keepalive:
			if m.ServerWALEnd == 0 {
				t.Fatal("keepalive without a WAL end")
			}
		default:
			t.Fatalf("unexpected %T", msg)
		}
	}
	// Report written up to pos and flushed only up to start: the server
	// must show exactly that (flush 0 would show NULL).
	if err := conn.SendStatus(pos, start, 0, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	want := FormatLSN(pos) + " " + FormatLSN(start)
	var got string
	for time.Now().Before(deadline) {
		res, err := superQuery(ctx, c, "SELECT write_lsn || ' ' || flush_lsn FROM pg_stat_replication WHERE application_name = 'walstream_test'")
		if err != nil {
			t.Fatal(err)
		}
		if got = res; got == want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != want {
		t.Fatalf("pg_stat_replication write/flush = %q, want %q", got, want)
	}
	end, err := conn.EndStreaming(ctx)
	if err != nil || end == nil || end.NextTimeline != 0 {
		t.Fatalf("EndStreaming = %+v, %v", end, err)
	}
	// Back in command mode.
	if _, err := conn.IdentifySystem(ctx); err != nil {
		t.Fatalf("IDENTIFY_SYSTEM after streaming: %v", err)
	}
	if err := conn.DropSlot(ctx, "ws_test"); err != nil {
		t.Fatal(err)
	}
}

func superQuery(ctx context.Context, c *pgtest.Cluster, sql string) (string, error) {
	pc, err := pgconn.Connect(ctx, c.SuperURL())
	if err != nil {
		return "", err
	}
	defer pc.Close(ctx)
	res, err := pc.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	if len(res) == 0 || len(res[0].Rows) == 0 {
		return "", nil
	}
	return string(res[0].Rows[0][0]), nil
}
