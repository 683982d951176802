package walarchive

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// testSegSize is the smallest segment PostgreSQL allows, to keep the
// files of the tests small.
const testSegSize = 1 << 20

func TestSegmentName(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tli     uint32
		lsn     uint64
		segSize uint64
		want    string
	}{
		{"first segment", 1, 0, 16 << 20, "000000010000000000000000"},
		{"inside a segment", 1, 0x3025A70, 16 << 20, "000000010000000000000003"},
		{"next log", 1, 0x100000000, 16 << 20, "000000010000000100000000"},
		{"last of a log, 1 MB", 1, 0xFFF00000, 1 << 20, "000000010000000000000FFF"},
		{"1 GB segments", 2, 0x140000000, 1 << 30, "000000020000000100000001"},
		{"high timeline", 0xABCDEF12, 0x12345678_9ABCDEF0, 16 << 20, "ABCDEF12123456780000009A"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SegmentName(tc.tli, tc.lsn, tc.segSize); got != tc.want {
				t.Errorf("SegmentName = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseNameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize uint64
		want    Name
	}{
		{"000000010000000000000003", 16 << 20, Name{Segment, 1, 3}},
		{"000000010000000100000000", 16 << 20, Name{Segment, 1, 256}},
		{"0000000200000001000000FF.partial", 16 << 20, Name{Partial, 2, 511}},
		{"000000010000000000000FFF", 1 << 20, Name{Segment, 1, 4095}},
		{"000000020000000100000003", 1 << 30, Name{Segment, 2, 7}},
		{"0000000A.history", 16 << 20, Name{Kind: History, Timeline: 10}},
		{"FFFFFFFF.history", 16 << 20, Name{Kind: History, Timeline: 0xFFFFFFFF}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseName(tc.name, tc.segSize)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("ParseName = %+v, want %+v", got, tc.want)
			}
			if back := got.FileName(tc.segSize); back != tc.name {
				t.Errorf("FileName = %s, want %s", back, tc.name)
			}
			if got.Kind == History {
				return
			}
			// The segment's start LSN names it again.
			if name := SegmentName(got.Timeline, got.SegNo*tc.segSize, tc.segSize); name != tc.name[:24] {
				t.Errorf("SegmentName of the parsed start LSN = %s, want %s", name, tc.name[:24])
			}
		})
	}
}

// TestParseNameRefuses: only names PostgreSQL writes pass. Lower-case hex
// is refused: PostgreSQL writes upper case and its IsXLogFileName refuses
// lower case, so accepting it would give one segment two names.
func TestParseNameRefuses(t *testing.T) {
	for _, tc := range []struct{ why, name string }{
		{"empty", ""},
		{"path escape", "../x"},
		{"path escape to a segment", "../000000010000000000000003"},
		{"directory part", "pg_wal/000000010000000000000003"},
		{"leading slash", "/000000010000000000000003"},
		{"too short", "00000001000000000000003"},
		{"too long", "0000000100000000000000003"},
		{"lower case", "0000000100000000000000ab"},
		{"lower case history", "0000000a.history"},
		{"not hex", "00000001000000000000000G"},
		{"sign", "+00000010000000000000003"},
		{"space", " 00000010000000000000003"},
		{"timeline 0", "000000000000000000000003"},
		{"history of timeline 0", "00000000.history"},
		{"segment part too large for 16 MB", "000000010000000000000100"},
		{"short history", "0000001.history"},
		{"partial history", "00000001.history.partial"},
		{"twice partial", "000000010000000000000003.partial.partial"},
		{"backup label", "000000010000000000000003.00000028.backup"},
		{"other suffix", "000000010000000000000003.zst"},
		{"only suffix", ".partial"},
	} {
		t.Run(tc.why, func(t *testing.T) {
			if n, err := ParseName(tc.name, 16<<20); err == nil {
				t.Errorf("ParseName(%q) = %+v, want an error", tc.name, n)
			}
		})
	}
	if _, err := ParseName("000000010000000000000003", 3<<20); err == nil {
		t.Error("ParseName accepted a segment size that is not a power of two")
	}
}

// archive opens a fresh archive directory.
func archive(t *testing.T) (*os.Root, string) {
	t.Helper()
	path := t.TempDir()
	dir, err := os.OpenRoot(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	return dir, path
}

// wal returns n bytes of made-up WAL, different for each seed.
func wal(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func open(t *testing.T, dir *os.Root, segno, resume uint64) *SegmentFile {
	t.Helper()
	s, err := OpenSegment(dir, 1, segno, testSegSize, resume)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func write(t *testing.T, s *SegmentFile, lsn uint64, p []byte) {
	t.Helper()
	if err := s.Write(lsn, p); err != nil {
		t.Fatal(err)
	}
}

// contents reads a file of the archive, failing the test if it is absent.
func contents(t *testing.T, path, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(path, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func absent(t *testing.T, path, name string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(path, name)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s: want it absent, stat says %v", name, err)
	}
}

func TestOpenPreallocates(t *testing.T) {
	dir, path := archive(t)
	s := open(t, dir, 5, 5*testSegSize)
	if s.Name() != "000000010000000000000005" || s.Start() != 5*testSegSize || s.End() != 6*testSegSize {
		t.Errorf("segment %s from %X to %X", s.Name(), s.Start(), s.End())
	}
	fi, err := os.Stat(filepath.Join(path, s.Name()+".partial"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != testSegSize || fi.Mode().Perm() != 0o600 {
		t.Errorf(".partial has %d bytes, mode %v; want %d, 0600", fi.Size(), fi.Mode().Perm(), testSegSize)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks*512 < testSegSize {
		t.Errorf("only %d bytes allocated: not preallocated", st.Blocks*512)
	}
	absent(t, path, s.Name())
	if s.Durable() != s.Start() || s.Written() != s.Start() {
		t.Errorf("new segment: written %X, durable %X, want both %X", s.Written(), s.Durable(), s.Start())
	}
}

func TestOpenRefuses(t *testing.T) {
	dir, path := archive(t)
	for _, tc := range []struct {
		name                  string
		tli                   uint32
		segno, segSize, start uint64
	}{
		{"segment size not a power of two", 1, 0, 3 << 20, 0},
		{"segment size too small", 1, 0, 1 << 19, 0},
		{"timeline 0", 0, 0, testSegSize, 0},
		{"resume before the segment", 1, 2, testSegSize, testSegSize},
		{"resume after the segment", 1, 2, testSegSize, 3*testSegSize + 1},
		{"new segment not from its start", 1, 2, testSegSize, 2*testSegSize + 8192},
		{"past the end of WAL", 1, 1 << 44, testSegSize, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := OpenSegment(dir, tc.tli, tc.segno, tc.segSize, tc.start); err == nil {
				s.Close()
				t.Fatal("OpenSegment succeeded")
			}
		})
	}
	if entries, _ := os.ReadDir(path); len(entries) != 0 {
		t.Errorf("refused opens left %d files", len(entries))
	}
}

func TestDurableMovesOnlyAfterSync(t *testing.T) {
	dir, path := archive(t)
	s := open(t, dir, 0, 0)
	first, second := wal(8192, 1), wal(100, 2)
	write(t, s, 0, first)
	write(t, s, 8192, second)
	if s.Written() != 8292 || s.Durable() != 0 {
		t.Fatalf("before Sync: written %d, durable %d; want 8292, 0", s.Written(), s.Durable())
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if s.Durable() != 8292 {
		t.Fatalf("after Sync: durable %d, want 8292", s.Durable())
	}
	got := contents(t, path, s.Name()+".partial")
	if !bytes.Equal(got[:8292], append(first, second...)) || !bytes.Equal(got[8292:], make([]byte, testSegSize-8292)) {
		t.Error("the .partial does not hold the WAL at its offsets followed by zeros")
	}
}

func TestWriteRefusesOutOfPlace(t *testing.T) {
	dir, _ := archive(t)
	s := open(t, dir, 0, 0)
	write(t, s, 0, wal(100, 1))
	for _, tc := range []struct {
		name string
		lsn  uint64
		n    int
	}{
		{"gap", 200, 10},
		{"behind", 50, 10},
		{"past the segment's end", 100, testSegSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Write(tc.lsn, wal(tc.n, 2)); err == nil {
				t.Fatal("Write succeeded")
			}
			if s.Written() != 100 {
				t.Errorf("written %d after a refused write, want 100", s.Written())
			}
		})
	}
}

// TestErrorsRewindToDurable: an I/O error (here: the file closed under
// the writer) leaves Durable where it was and takes Written back to it.
func TestErrorsRewindToDurable(t *testing.T) {
	for _, tc := range []struct {
		name string
		more int // bytes written after the durable 4096, before the failure
		fail func(s *SegmentFile) error
	}{
		{"write", 100, func(s *SegmentFile) error { return s.Write(s.Written(), wal(10, 3)) }},
		{"sync", 100, func(s *SegmentFile) error { return s.Sync() }},
		{"complete", testSegSize - 4096, func(s *SegmentFile) error { return s.Complete() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := archive(t)
			s := open(t, dir, 0, 0)
			write(t, s, 0, wal(4096, 1))
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			write(t, s, 4096, wal(tc.more, 2))
			s.f.Close()
			if err := tc.fail(s); err == nil {
				t.Fatal("no error from a closed file")
			}
			if s.Durable() != 4096 || s.Written() != 4096 {
				t.Errorf("after the error: written %d, durable %d; want 4096, 4096", s.Written(), s.Durable())
			}
			if got := contents(t, path, s.Name()+".partial"); len(got) != testSegSize || !bytes.Equal(got[:4096], wal(4096, 1)) {
				t.Error("the error changed the durable WAL or the file's size")
			}
			absent(t, path, s.Name())
		})
	}
}

func TestComplete(t *testing.T) {
	dir, path := archive(t)
	s := open(t, dir, 3, 3*testSegSize)
	data := wal(testSegSize, 4)
	write(t, s, s.Start(), data[:testSegSize-1])
	if err := s.Complete(); err == nil {
		t.Fatal("Complete of a segment missing its last byte succeeded")
	}
	absent(t, path, s.Name())
	write(t, s, s.End()-1, data[testSegSize-1:])
	if err := s.Complete(); err != nil {
		t.Fatal(err)
	}
	if s.Durable() != s.End() {
		t.Errorf("durable %X after Complete, want %X", s.Durable(), s.End())
	}
	if !bytes.Equal(contents(t, path, s.Name()), data) {
		t.Error("the complete segment does not hold the WAL written")
	}
	absent(t, path, s.Name()+".partial")
}

func TestResumePartial(t *testing.T) {
	data := wal(testSegSize, 5)
	for _, tc := range []struct {
		name   string
		resume uint64 // offset in the segment the caller resumes from
	}{
		{"from the durable end", 8192},
		{"from the segment's start", 0},
		{"from the end of a full .partial", testSegSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := archive(t)
			s := open(t, dir, 7, 7*testSegSize)
			write(t, s, s.Start(), data[:max(8192, tc.resume)])
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			r := open(t, dir, 7, 7*testSegSize+tc.resume)
			if r.Written() != r.Start()+tc.resume || r.Durable() != r.Start()+tc.resume {
				t.Fatalf("resumed: written %X, durable %X; want both %X", r.Written(), r.Durable(), r.Start()+tc.resume)
			}
			write(t, r, r.Written(), data[tc.resume:])
			if err := r.Complete(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(contents(t, path, r.Name()), data) {
				t.Error("the resumed segment does not hold the WAL")
			}
			absent(t, path, r.Name()+".partial")
		})
	}
}

// TestResumeOddPartial: a .partial left empty (a crash before its
// preallocation) is preallocated again; one larger than a segment is
// refused and left as it is.
func TestResumeOddPartial(t *testing.T) {
	dir, path := archive(t)
	name := SegmentName(1, 0, testSegSize) + ".partial"
	if err := os.WriteFile(filepath.Join(path, name), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, 0, 0)
	s.Close()
	if got := contents(t, path, name); len(got) != testSegSize {
		t.Errorf("empty .partial resumed with %d bytes, want %d", len(got), testSegSize)
	}
	big := wal(testSegSize+1, 6)
	if err := os.WriteFile(filepath.Join(path, name), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenSegment(dir, 1, 0, testSegSize, 0); err == nil {
		s.Close()
		t.Fatal("OpenSegment accepted a .partial larger than a segment")
	}
	if !bytes.Equal(contents(t, path, name), big) {
		t.Error("the refused .partial was changed")
	}
}

func TestCompleteSegmentNeverOverwritten(t *testing.T) {
	data := wal(testSegSize, 7)
	dir, path := archive(t)
	s := open(t, dir, 1, testSegSize)
	write(t, s, s.Start(), data)
	if err := s.Complete(); err != nil {
		t.Fatal(err)
	}

	t.Run("same bytes", func(t *testing.T) {
		again := open(t, dir, 1, testSegSize)
		write(t, again, again.Start(), data[:4096])
		write(t, again, again.Start()+4096, data[4096:])
		if err := again.Complete(); err != nil {
			t.Fatal(err)
		}
		absent(t, path, again.Name()+".partial")
	})
	t.Run("same bytes from the middle", func(t *testing.T) {
		again := open(t, dir, 1, testSegSize+8192)
		write(t, again, again.Written(), data[8192:])
		if err := again.Complete(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("different bytes", func(t *testing.T) {
		again := open(t, dir, 1, testSegSize)
		write(t, again, again.Start(), data[:100])
		other := bytes.Clone(data[100:200])
		other[50] ^= 1
		err := again.Write(again.Written(), other)
		if !errors.Is(err, ErrDiffers) {
			t.Fatalf("Write of different bytes: %v, want ErrDiffers", err)
		}
		if again.Written() != again.Durable() {
			t.Errorf("written %X after ErrDiffers, want durable %X", again.Written(), again.Durable())
		}
	})
	if !bytes.Equal(contents(t, path, s.Name()), data) {
		t.Error("the complete segment changed")
	}
	absent(t, path, s.Name()+".partial")

	t.Run("wrong size", func(t *testing.T) {
		short := SegmentName(1, 2*testSegSize, testSegSize)
		if err := os.WriteFile(filepath.Join(path, short), data[:10], 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := OpenSegment(dir, 1, 2, testSegSize, 2*testSegSize); err == nil {
			s.Close()
			t.Fatal("OpenSegment accepted a complete segment of the wrong size")
		}
		if !bytes.Equal(contents(t, path, short), data[:10]) {
			t.Error("the short segment was changed")
		}
		absent(t, path, short+".partial")
	})
}

// TestENOSPCAtOpen: on a full file system the segment fails at Open, with
// an error that says ENOSPC, and leaves nothing behind. A small tmpfs
// needs root to mount.
func TestENOSPCAtOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	path := t.TempDir()
	// Room for one 1 MB segment, not two.
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", path).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", path).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", path, err, out)
		}
	})
	dir, err := os.OpenRoot(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	first := open(t, dir, 0, 0)
	write(t, first, 0, wal(4096, 8))
	if err := first.Sync(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSegment(dir, 1, 1, testSegSize, testSegSize)
	if err == nil {
		s.Close()
		t.Fatal("OpenSegment succeeded on a full file system")
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("OpenSegment: %v, want ENOSPC", err)
	}
	absent(t, path, SegmentName(1, testSegSize, testSegSize)+".partial")
	if got := contents(t, path, first.Name()+".partial"); !bytes.Equal(got[:4096], wal(4096, 8)) {
		t.Error("the first segment's WAL changed")
	}
	if first.Durable() != 4096 {
		t.Errorf("durable %d, want 4096", first.Durable())
	}
}

// TestWriteZeros is the preallocation of file systems without fallocate:
// it fills up to the size and keeps what is before the start.
func TestWriteZeros(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if err := writeZeros(f, 3, 200_003); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 200_003 || string(got[:3]) != "abc" || !bytes.Equal(got[3:], make([]byte, 200_000)) {
		t.Errorf("got %d bytes starting %q", len(got), got[:min(len(got), 3)])
	}
}
