package walarchive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/walstream"
)

// TestCompressionAndRetention archives with COMPRESSION zstd and a
// MAX_SIZE that allows almost nothing, beside a base backup (its
// backup_label, as BASE BACKUP writes it) that started in the archive's
// second segment: completed segments become NAME.zst holding the server's
// bytes, retention removes the oldest ones but keeps everything from the
// backup's start on, and the newest complete segment.
func TestCompressionAndRetention(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	root := t.TempDir()
	dir := filepath.Join(root, "wal")
	m := newArchive(t, c, root)
	o := defaultOptions(dir)
	o.Compression = Zstd
	if err := m.Start(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background(), true)
	waitFor(t, "streaming", func() bool { s, _ := m.Status(); return s.State == Streaming })

	var names []string
	for i := 0; i < 4; i++ {
		names = append(names, query(t, c, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())"))
		query(t, c, fmt.Sprintf("CREATE TABLE t%d AS SELECT generate_series(1, 1000); SELECT pg_switch_wal()", i))
	}
	query(t, c, "CREATE TABLE after AS SELECT 1")
	for _, n := range names {
		waitFor(t, n+".zst", func() bool { return exists(dir, n+compressedSuffix) && !exists(dir, n) })
	}
	// The newest compressed segment decompresses to the server's bytes.
	newest := names[len(names)-1]
	root2, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root2.Close()
	rc, size, err := OpenFile(root2, newest, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || size != 16<<20 {
		t.Fatalf("OpenFile %s: %d bytes, %v", newest, size, err)
	}
	want, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", newest))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s.zst does not decompress to the server's segment", newest)
	}

	// A backup that started in the second segment protects it and all
	// after it; MAX_SIZE 1 byte lets everything else go.
	protected := names[1]
	n, err := ParseName(protected, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	start := n.SegNo*(16<<20) + 0x28
	label := fmt.Sprintf("START WAL LOCATION: %s (file %s)\nCHECKPOINT LOCATION: %s\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: %s\nLABEL: test\nSTART TIMELINE: 1\n",
		walstream.FormatLSN(start), protected, walstream.FormatLSN(start+0x60), time.Now().Add(-time.Hour).UTC().Format("2006-01-02 15:04:05 MST"))
	if err := os.MkdirAll(filepath.Join(root, "base"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "base", "backup_label"), []byte(label), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Alter(context.Background(), func(o *Options) error { o.MaxSize = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, names[0]+" removed", func() bool { return !exists(dir, names[0]+compressedSuffix) })
	for _, n := range names[1:] {
		if !exists(dir, n+compressedSuffix) {
			t.Errorf("%s removed, but the backup needs it", n)
		}
	}
	files, err := m.Segments()
	if err != nil {
		t.Fatal(err)
	}
	assertNoGap(t, files)
}

// TestFailedState: errors that pass by themselves (connections, a full
// disk, a server starting or shutting down, I/O) leave the archive
// reconnecting; the others (a missing slot, another system) failed.
func TestFailedState(t *testing.T) {
	for code, want := range map[string]bool{"08006": true, "53100": true, "57P03": true, "58030": true, "42704": false, "55000": false, "XX000": false} {
		if got := transient(code); got != want {
			t.Errorf("transient(%s) = %v", code, got)
		}
	}
}
