package walarchive

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// TestTimelineSwitch archives from a standby that is then promoted, with
// pg_receivewal streaming from the same standby beside it: the archive
// follows the switch as pg_receivewal does (the history file archived,
// the old timeline's last segment kept as .partial, streaming continued on
// the new timeline) and every file both hold is byte for byte the same.
func TestTimelineSwitch(t *testing.T) {
	primary := pgtest.Start(t, pgtest.Options{})
	base := filepath.Join(t.TempDir(), "standby")
	cmd := exec.Command(primary.Bin("pg_basebackup"), "-D", base, "-R", "-X", "stream", "-c", "fast", "-d", primary.SuperURL())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	standby := pgtest.StartCopy(t, base, pgtest.Options{BinDir: primary.BinDir, Password: primary.Password}, nil)
	if got := query(t, standby, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("the copy is not a standby: pg_is_in_recovery = %s", got)
	}

	root := t.TempDir()
	dir := filepath.Join(root, "wal")
	m := newArchive(t, standby, root)
	if err := m.Start(context.Background(), defaultOptions(dir)); err != nil {
		t.Fatal(err)
	}
	defer m.Stop(context.Background(), false)

	theirs := t.TempDir()
	query(t, standby, "SELECT pg_create_physical_replication_slot('receivewal', true)")
	rw := exec.Command(primary.Bin("pg_receivewal"), "-D", theirs, "--slot", "receivewal", "-d", standby.SuperURL(), "--no-loop")
	var rwOut bytes.Buffer
	rw.Stdout, rw.Stderr = &rwOut, &rwOut
	if err := rw.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rw.Process.Kill(); _ = rw.Wait() }()

	query(t, primary, "CREATE TABLE t AS SELECT generate_series(1, 50000) AS i")
	tl1 := query(t, primary, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	query(t, primary, "SELECT pg_switch_wal()")
	query(t, primary, "INSERT INTO t VALUES (0)")
	// The switch point must lie inside a segment, for the old
	// timeline's last segment to be partial: wait until the standby and
	// the archive have the INSERT after the switch.
	after := lsn(t, query(t, primary, "SELECT pg_current_wal_insert_lsn()"))
	waitFor(t, tl1+" in both", func() bool { return exists(dir, tl1) && exists(theirs, tl1) })
	waitFor(t, "the archive past the switch", func() bool { s, _ := m.Status(); return s.Received >= after })

	if got := query(t, standby, "SELECT pg_promote()"); got != "t" {
		t.Fatalf("pg_promote = %s", got)
	}
	query(t, standby, "INSERT INTO t SELECT generate_series(1, 50000)")
	tl2 := query(t, standby, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
	if !strings.HasPrefix(tl2, "00000002") {
		t.Fatalf("after the promotion the standby writes %s", tl2)
	}
	query(t, standby, "SELECT pg_switch_wal()")
	query(t, standby, "INSERT INTO t VALUES (0)")
	waitFor(t, tl2+" in both", func() bool { return exists(dir, tl2) && exists(theirs, tl2) })

	if !exists(dir, "00000002.history") {
		t.Fatal("00000002.history not archived")
	}
	s, _ := m.Status()
	if s.Timeline != 2 {
		t.Fatalf("archive timeline = %d, want 2", s.Timeline)
	}
	files, err := m.Segments()
	if err != nil {
		t.Fatal(err)
	}
	var oldPartial bool
	compared := 0
	for _, f := range files {
		if f.State == SegPartial && f.Timeline == 1 {
			oldPartial = true
		}
		if f.State == SegPartial && f.Timeline == 2 {
			continue // still being written by both
		}
		want, err := os.ReadFile(filepath.Join(theirs, f.Name))
		if os.IsNotExist(err) {
			continue // from before pg_receivewal started
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from pg_receivewal's", f.Name)
		}
		compared++
	}
	if !oldPartial {
		theirFiles, _ := os.ReadDir(theirs)
		t.Errorf("no .partial kept for timeline 1's last segment: %v\npg_receivewal has %v", files, theirFiles)
	}
	if compared < 3 {
		t.Errorf("compared only %d files with pg_receivewal's (%v)\npg_receivewal: %s", compared, files, rwOut.String())
	}
	assertNoGapAcross(t, files, 16<<20)
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

// assertNoGapAcross checks that every segment position from the oldest
// to the newest is held on some timeline.
func assertNoGapAcross(t *testing.T, files []SegmentInfo, segSize uint64) {
	t.Helper()
	have := map[uint64]bool{}
	var lo, hi uint64
	for _, f := range files {
		if f.State == SegHistory {
			continue
		}
		segno := f.Start / segSize
		have[segno] = true
		if lo == 0 || segno < lo {
			lo = segno
		}
		hi = max(hi, segno)
	}
	for s := lo; s <= hi; s++ {
		if !have[s] {
			t.Fatalf("segment %d missing between %d and %d", s, lo, hi)
		}
	}
}
