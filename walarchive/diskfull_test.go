package walarchive

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// TestDiskFull runs the archive on a small tmpfs that fills up: the
// archive reports 53100, the slot upstream (which moves only with what
// the archive reported flushed) stays at or below what is on disk, no
// segment is short or differs from the server's, and once space is freed
// streaming resumes by itself with no gap.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	c := pgtest.Start(t, pgtest.Options{})
	root := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", root).CombinedOutput(); err != nil {
		t.Fatalf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", root).Run() })
	dir := filepath.Join(root, "wal")
	m := newArchive(t, c, root)
	if err := m.Start(context.Background(), defaultOptions(dir)); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background(), true)
	waitFor(t, "streaming", func() bool { s, _ := m.Status(); return s.State == Streaming })
	// Leave room for the open segment and one more, not two.
	filler := filepath.Join(root, "filler")
	if err := exec.Command("fallocate", "-l", "90m", filler).Run(); err != nil {
		t.Fatalf("fallocate: %v", err)
	}

	query(t, c, "CREATE TABLE t (i int)")
	for i := 0; i < 3; i++ {
		query(t, c, "INSERT INTO t SELECT generate_series(1, 100000); SELECT pg_switch_wal()")
	}
	waitFor(t, "53100 in the status", func() bool { s, _ := m.Status(); return s.LastErrorCode == "53100" })
	s, _ := m.Status()
	if s.State != Reconnecting {
		t.Errorf("state %s while the disk is full, want reconnecting", s.State)
	}
	files, err := m.Segments()
	if err != nil {
		t.Fatal(err)
	}
	var durableEnd uint64
	for _, f := range files {
		switch f.State {
		case SegComplete:
			assertSameSegment(t, c, dir, f.Name)
			durableEnd = max(durableEnd, f.End)
		case SegPartial:
			if f.Bytes != 16<<20 {
				t.Errorf("%s has %d bytes", f.Name, f.Bytes)
			}
			durableEnd = max(durableEnd, f.Start)
		}
	}
	// A .partial may hold durable bytes too; the slot never passes the
	// end of what the archive holds.
	var partialEnd uint64
	for _, f := range files {
		if f.State == SegPartial {
			partialEnd = max(partialEnd, f.End)
		}
	}
	restart := lsn(t, query(t, c, "SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = 'pgverbs'"))
	if restart > max(durableEnd, partialEnd) {
		t.Fatalf("slot restart_lsn %X past the archive's files (%X)", restart, max(durableEnd, partialEnd))
	}
	if s.Flushed > max(durableEnd, partialEnd) {
		t.Fatalf("flushed %X past the archive's files", s.Flushed)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// Wake the retry at once rather than waiting out the backoff.
	_ = m.SetPaused(true)
	_ = m.SetPaused(false)
	next := query(t, c, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	query(t, c, "INSERT INTO t VALUES (1); SELECT pg_switch_wal()")
	query(t, c, "INSERT INTO t VALUES (2)")
	waitFor(t, next+" after space was freed", func() bool { return exists(dir, next) })
	files, err = m.Segments()
	if err != nil {
		t.Fatal(err)
	}
	assertNoGap(t, files)
	for _, f := range files {
		if f.State == SegComplete {
			assertSameSegment(t, c, dir, f.Name)
		}
	}
	if s, _ := m.Status(); s.State != Streaming || s.LastError != "" {
		t.Errorf("after space was freed: state %s, last error %q", s.State, s.LastError)
	}
}
