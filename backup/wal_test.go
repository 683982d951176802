package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// pipeConn is a walstream.Conn whose server side is the returned end of
// a pipe: what the streamer sends can be read there byte for byte.
func pipeConn(t *testing.T) (*walstream.Conn, net.Conn) {
	t.Helper()
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	cfg, err := pgconn.ParseConfig("host=localhost")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := pgconn.Construct(&pgconn.HijackedConn{
		Conn:              client,
		ParameterStatuses: map[string]string{"server_version": "15.0"},
		TxStatus:          'I',
		Frontend:          pgproto3.NewFrontend(client, client),
		Config:            cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	wc, err := walstream.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	return wc, server
}

// TestStatusFlushInvalid checks the status update the backup's WAL
// streamer sends, as it goes on the wire: its write position, but
// InvalidXLogRecPtr as flush and apply, so that a primary never counts the
// backup as a synchronous standby that has made a commit durable.
func TestStatusFlushInvalid(t *testing.T) {
	wc, server := pipeConn(t)
	s := &walStreamer{ctx: context.Background(), wc: wc, pos: 0x1_0000_2000}
	sent := make(chan error, 1)
	go func() { sent <- s.status(time.Date(2000, 1, 1, 0, 1, 30, 0, time.UTC)) }()
	msg := make([]byte, 5+34)
	if _, err := io.ReadFull(server, msg); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if msg[0] != 'd' || binary.BigEndian.Uint32(msg[1:]) != 4+34 {
		t.Fatalf("message %x: want CopyData of 34 bytes", msg)
	}
	b := msg[5:]
	if b[0] != 'r' {
		t.Fatalf("message %x: want a standby status update ('r')", b)
	}
	if w := binary.BigEndian.Uint64(b[1:]); w != 0x1_0000_2000 {
		t.Errorf("write position %X, want 1/2000", w)
	}
	if f := binary.BigEndian.Uint64(b[9:]); f != 0 {
		t.Errorf("flush position %X, want 0 (invalid)", f)
	}
	if a := binary.BigEndian.Uint64(b[17:]); a != 0 {
		t.Errorf("apply position %X, want 0 (invalid)", a)
	}
	if c := binary.BigEndian.Uint64(b[25:]); c != 90_000_000 {
		t.Errorf("clock %d µs since 2000-01-01, want 90000000", c)
	}
	if b[33] != 0 {
		t.Error("asks for a reply")
	}
}

// TestStreamTimelineHistory backs up a server on timeline 2 (a standby
// promoted): the WAL streamer must put the server's 00000002.history
// beside the segments, byte for byte and marked .done, as pg_basebackup
// does, and stream the segments of timeline 2.
func TestStreamTimelineHistory(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	must(t, writeOwned(filepath.Join(c.DataDir, "standby.signal"), c.DataDir))
	must(t, c.Restart())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if got, err := queryOne(ctx, c.SuperURL(), "SELECT pg_promote()::text"); err != nil || got != "true" {
		t.Fatalf("pg_promote() = %q, %v", got, err)
	}
	want, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", "00000002.history"))
	must(t, err)

	root := t.TempDir()
	res, err := Run(ctx, Options{Root: root, Target: "b", Checkpoint: FastCheckpoint, Manifest: true, Connect: connector(c)})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Timeline != 2 {
		t.Fatalf("backup on timeline %d, want 2", res.Timeline)
	}
	wal := filepath.Join(res.Path, "pg_wal")
	got, err := os.ReadFile(filepath.Join(wal, "00000002.history"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("pg_wal/00000002.history = %q, %v; want the server's %q", got, err, want)
	}
	if _, err := os.Stat(filepath.Join(wal, "archive_status", "00000002.history.done")); err != nil {
		t.Errorf("no .done mark for the history file: %v", err)
	}
	first := walarchive.SegmentName(2, uint64(res.StartLSN), 16<<20)
	if _, err := os.Stat(filepath.Join(wal, first)); err != nil {
		t.Errorf("the segment holding the start, %s: %v", first, err)
	}
	if out, err := exec.Command(c.Bin("pg_verifybackup"), res.Path).CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	}
}
