package walarchive

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/zstd"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/walstream"
)

// walSettings keep every segment in pg_wal (no recycling with stale bytes,
// no removal at checkpoints), so that pg_wal reads as an archive would.
var walSettings = map[string]string{"wal_recycle": "off", "wal_keep_size": "256MB"}

// walFixture is real WAL of a throwaway cluster, in the layout of the
// archive: complete segments and the last one as NAME.partial.
type walFixture struct {
	dir      string // a pristine copy; each test copies it again
	sysid    uint64
	complete []string
	partial  string
}

// realWAL makes the fixture: 1 MB segments from a cluster that switched
// segments five times, stopped cleanly so that no byte changes while it is
// copied.
func realWAL(t *testing.T) walFixture {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{InitDBArgs: []string{"--wal-segsize=1"}, Settings: walSettings})
	ctx := context.Background()
	var sql strings.Builder
	sql.WriteString("CREATE TABLE t (i int, s text);")
	for i := 0; i < 5; i++ {
		sql.WriteString("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g; SELECT pg_switch_wal();")
	}
	sql.WriteString("INSERT INTO t SELECT g, 'tail' FROM generate_series(1, 100) g;")
	if err := c.Exec(ctx, sql.String()); err != nil {
		t.Fatal(err)
	}
	sysid, err := checkQuery(ctx, c, "SELECT system_identifier FROM pg_control_system()")
	if err != nil {
		t.Fatal(err)
	}
	f := walFixture{dir: t.TempDir()}
	f.sysid, _ = strconv.ParseUint(sysid, 10, 64)
	end, err := stopCluster(c)
	if err != nil {
		t.Fatal(err)
	}
	if f.complete, f.partial, err = copyWAL(filepath.Join(c.DataDir, "pg_wal"), f.dir, 1, end/testSegSize); err != nil {
		t.Fatal(err)
	}
	if len(f.complete) < 5 || f.partial == "" {
		t.Fatalf("the fixture has %d complete segments and partial %q, want at least 5 and one", len(f.complete), f.partial)
	}
	return f
}

func checkQuery(ctx context.Context, c *pgtest.Cluster, sql string) (string, error) {
	conn, err := pgconn.Connect(ctx, c.SuperURL())
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	if len(res) == 0 || len(res[0].Rows) != 1 {
		return "", fmt.Errorf("%s: no single row", sql)
	}
	return string(res[0].Rows[0][0]), nil
}

var checkpointRE = regexp.MustCompile(`(?m)^Latest checkpoint location:\s+([0-9A-F]+)/([0-9A-F]+)$`)

// stopCluster shuts c down (its directory stays until the test's cleanup)
// and returns the LSN of its shutdown checkpoint, the last record of its
// WAL.
func stopCluster(c *pgtest.Cluster) (uint64, error) {
	if err := runServerBin(c, "pg_ctl", "-D", c.DataDir, "-m", "fast", "-w", "stop"); err != nil {
		return 0, err
	}
	out, err := exec.Command(c.Bin("pg_controldata"), c.DataDir).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pg_controldata: %v\n%s", err, out)
	}
	m := checkpointRE.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pg_controldata names no checkpoint:\n%s", out)
	}
	hi, _ := strconv.ParseUint(string(m[1]), 16, 32)
	lo, _ := strconv.ParseUint(string(m[2]), 16, 32)
	return hi<<32 | lo, nil
}

// runServerBin runs one of c's PostgreSQL programs as the server's OS
// user.
func runServerBin(c *pgtest.Cluster, name string, args ...string) error {
	cmd := exec.Command(c.Bin(name), args...)
	if err := pgtest.RunAsPostgres(cmd); err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", name, err, out)
	}
	return nil
}

// copyWAL copies timeline tli's segments of pg_wal up to segment last into
// dir, last as NAME.partial (the one being written), as the archive holds
// them; pg_wal's preallocated segments after last are left out.
func copyWAL(pgWAL, dir string, tli uint32, last uint64) (complete []string, partial string, err error) {
	entries, err := os.ReadDir(pgWAL)
	if err != nil {
		return nil, "", err
	}
	for _, e := range entries {
		n, err := ParseName(e.Name(), testSegSize)
		if err != nil || n.Timeline != tli || n.SegNo > last {
			continue
		}
		name := e.Name()
		if n.Kind == Segment && n.SegNo == last {
			name += partialSuffix
			partial = name
		} else if n.Kind == Segment {
			complete = append(complete, name)
		}
		if err := copyWALFile(filepath.Join(pgWAL, e.Name()), filepath.Join(dir, name)); err != nil {
			return nil, "", err
		}
	}
	slices.Sort(complete)
	return complete, partial, nil
}

func copyWALFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}

// archiveCopy gives a test its own copy of the fixture.
func archiveCopy(t *testing.T, f walFixture) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := copyWALFile(filepath.Join(f.dir, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// patch overwrites bytes of a file of the archive.
func patch(t *testing.T, dir, name string, off int64, b []byte) {
	t.Helper()
	fh, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func zstdFile(t *testing.T, dir, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	z, err := zstd.Compress(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+compressedSuffix), z, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func checkDir(t *testing.T, dir string, sysid uint64) CheckResult {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	res, err := Check(root, testSegSize, sysid)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// firstZeroPage returns the offset of the first page of the partial
// segment whose header is zeros (its unwritten rest).
func firstZeroPage(t *testing.T, dir, name string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(b); off += defaultBlckSz {
		if allZero(b[off : off+shortHeaderSize]) {
			return int64(off)
		}
	}
	t.Fatalf("%s has no unwritten page", name)
	return 0
}

func TestCheckRealWAL(t *testing.T) {
	f := realWAL(t)
	mid := f.complete[2]
	le := binary.LittleEndian
	for _, tc := range []struct {
		name      string
		plant     func(t *testing.T, dir string)
		sysid     uint64 // 0: the fixture's
		skipSysid bool   // Check with system id 0
		want      []string
	}{
		{name: "intact"},
		{name: "archive of another system", sysid: 1<<64 - 1, want: []string{f.complete[0], "xlp_sysid"}},
		{name: "system id not checked", skipSysid: true, plant: func(t *testing.T, dir string) {
			patch(t, dir, mid, 24, le.AppendUint64(nil, f.sysid+1))
		}},
		{name: "compressed segments", plant: func(t *testing.T, dir string) {
			for _, n := range f.complete[:3] {
				zstdFile(t, dir, n)
			}
		}},
		{name: "a compression not finished: NAME is what is served", plant: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, mid+compressedSuffix), []byte("not zstd yet"), 0o600)
		}},
		{name: "a leftover state file and temp file", plant: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, StateFile), []byte("{}"), 0o600)
			os.WriteFile(filepath.Join(dir, mid+compressedSuffix+".tmp"), []byte("junk"), 0o600)
		}},
		{name: "missing segment", plant: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, mid))
		}, want: []string{"missing segment " + mid}},
		{name: "flipped byte in a page address", plant: func(t *testing.T, dir string) {
			patch(t, dir, mid, 3*defaultBlckSz+9, []byte{0x55})
		}, want: []string{mid, "xlp_pageaddr"}},
		{name: "segment of another system", plant: func(t *testing.T, dir string) {
			patch(t, dir, mid, 24, le.AppendUint64(nil, f.sysid+1))
		}, want: []string{mid, "xlp_sysid"}},
		{name: "page of a later timeline", plant: func(t *testing.T, dir string) {
			patch(t, dir, mid, 5*defaultBlckSz+4, le.AppendUint32(nil, 2))
		}, want: []string{mid, "xlp_tli 2, the file is on timeline 1"}},
		{name: "other page magic", plant: func(t *testing.T, dir string) {
			patch(t, dir, mid, 7*defaultBlckSz, le.AppendUint16(nil, 0xD113))
		}, want: []string{mid, "xlp_magic 0xD113"}},
		{name: "wrong segment size", plant: func(t *testing.T, dir string) {
			patch(t, dir, mid, 32, le.AppendUint32(nil, 16<<20))
		}, want: []string{mid, "xlp_seg_size"}},
		{name: "short segment", plant: func(t *testing.T, dir string) {
			os.Truncate(filepath.Join(dir, mid), testSegSize-1)
		}, want: []string{mid, "not the segment size"}},
		{name: "compressed segment cut short", plant: func(t *testing.T, dir string) {
			zstdFile(t, dir, mid)
			fi, _ := os.Stat(filepath.Join(dir, mid+compressedSuffix))
			os.Truncate(filepath.Join(dir, mid+compressedSuffix), fi.Size()/2)
		}, want: []string{mid + compressedSuffix}},
		{name: "compressed segment that is not zstd", plant: func(t *testing.T, dir string) {
			zstdFile(t, dir, mid)
			patch(t, dir, mid+compressedSuffix, 0, bytes.Repeat([]byte{0xAA}, 4))
		}, want: []string{mid + compressedSuffix, "decompress"}},
		{name: "a switched segment's WAL cut before its zeros", plant: func(t *testing.T, dir string) {
			last := firstZeroPage(t, dir, mid) - defaultBlckSz
			patch(t, dir, mid, last, make([]byte, defaultBlckSz))
		}, want: []string{mid, "zero page at LSN"}},
		{name: "partial in the middle", plant: func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, mid), filepath.Join(dir, mid+partialSuffix))
		}, want: []string{mid + partialSuffix, "is partial"}},
		{name: "partial with garbage after its zeros", plant: func(t *testing.T, dir string) {
			patch(t, dir, f.partial, testSegSize-1, []byte{1})
		}, want: []string{f.partial, "bytes after the zeros", walstream.FormatLSN(partialSeg(t, f)*testSegSize + testSegSize - 1)}},
		{name: "partial with a page after its zeros", plant: func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, f.partial))
			zero := firstZeroPage(t, dir, f.partial)
			patch(t, dir, f.partial, zero+defaultBlckSz, b[:defaultBlckSz])
		}, want: []string{f.partial, "bytes after the zeros"}},
		{name: "missing history file", plant: func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, f.partial), filepath.Join(dir, "00000002"+f.partial[8:]))
		}, want: []string{"missing history file 00000002.history"}},
		{name: "history abandons the parent's WAL", plant: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "00000002.history"), []byte("1\t0/250000\tno recovery target specified\n"), 0o600)
		}, want: []string{"past the switch of timeline 1"}},
		{name: "segment on a timeline outside the history", plant: func(t *testing.T, dir string) {
			copyWALFile(filepath.Join(dir, mid), filepath.Join(dir, "00000002"+mid[8:]))
			os.WriteFile(filepath.Join(dir, "00000002.history"), []byte("1\t0/4000000\n"), 0o600)
			os.WriteFile(filepath.Join(dir, "00000003.history"), []byte("1\t0/4000000\n"), 0o600)
		}, want: []string{"00000002" + mid[8:], "not in the history of timeline 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := archiveCopy(t, f)
			if tc.plant != nil {
				tc.plant(t, dir)
			}
			sysid := f.sysid
			if tc.sysid != 0 {
				sysid = tc.sysid
			}
			if tc.skipSysid {
				sysid = 0
			}
			res := checkDir(t, dir, sysid)
			if len(tc.want) == 0 {
				if !res.OK {
					t.Fatalf("problem: %s", res.Problem)
				}
				if res.Segments != len(f.complete)+1 || !strings.Contains(res.Checked, "PostgreSQL 15") || res.Pages != walPages(t, f) {
					t.Errorf("checked %d segments, %d pages: %s", res.Segments, res.Pages, res.Checked)
				}
				t.Log(res.Checked)
				return
			}
			if res.OK {
				t.Fatalf("no problem found: %s", res.Checked)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.Problem, w) {
					t.Errorf("problem %q does not say %q", res.Problem, w)
				}
			}
		})
	}
}

// walPages counts the fixture's pages before the zeros of each file.
func walPages(t *testing.T, f walFixture) int {
	n := 0
	for _, name := range append(slices.Clone(f.complete), f.partial) {
		n += int(firstZeroPage(t, f.dir, name) / defaultBlckSz)
	}
	return n
}

func partialSeg(t *testing.T, f walFixture) uint64 {
	n, err := ParseName(f.partial, testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	return n.SegNo
}

// rec is a record for recordPages: its length, xl_info and xl_rmid.
type rec struct {
	size       uint32
	info, rmid byte
}

// recordPages lays records out on WAL pages as PostgreSQL does: each at a
// MAXALIGNed position after pad bytes of a record continued from before,
// split across pages anywhere (headers too), a page that begins inside a
// record marked XLP_FIRST_IS_CONTRECORD with the bytes left in xlp_rem_len.
// The first page has the long header.
func recordPages(npages, pad int, recs []rec) []byte {
	le := binary.LittleEndian
	b := make([]byte, npages*defaultBlckSz)
	pos := longHeaderSize + pad
	if pad > 0 {
		le.PutUint16(b[2:], xlpFirstIsCont)
		le.PutUint32(b[16:], uint32(pad))
	}
	put := func(c byte, left int) {
		if pos%defaultBlckSz == 0 {
			le.PutUint16(b[pos+2:], xlpFirstIsCont)
			le.PutUint32(b[pos+16:], uint32(left))
			pos += shortHeaderSize
		}
		b[pos] = c
		pos++
	}
	for _, r := range recs {
		pos = int(maxAlign(uint64(pos)))
		if pos%defaultBlckSz == 0 {
			pos += shortHeaderSize
		}
		var hdr [recordHeaderSize]byte
		le.PutUint32(hdr[:], r.size)
		hdr[16], hdr[17] = r.info, r.rmid
		for i := 0; i < int(r.size); i++ {
			c := byte(0x5A)
			if i < recordHeaderSize {
				c = hdr[i]
			}
			put(c, int(r.size)-i)
		}
	}
	return b
}

func TestLastRecordSwitch(t *testing.T) {
	sw := rec{recordHeaderSize, xlogSwitch, rmXLOG}
	other := rec{100, 0x10, 3}
	for _, tc := range []struct {
		name   string
		npages int
		pad    int
		recs   []rec
		ok     bool
		fed    int // pages fed before the zeros (0: all)
	}{
		{"switch last", 1, 0, []rec{other, {51, 0, 1}, sw}, true, 0},
		{"switch after a continuation", 1, 3001, []rec{sw}, true, 0},
		{"switch on the second page", 2, 0, []rec{{9000, 0, 1}, other, sw}, true, 0},
		{"switch ending at the page end", 1, defaultBlckSz - recordHeaderSize - 104 - longHeaderSize, []rec{other, sw}, true, 0},
		{"switch header split across pages", 2, defaultBlckSz - longHeaderSize - 24 - 8, []rec{{24, 0, 1}, sw}, true, 0},
		{"switch header split after its length", 2, defaultBlckSz - longHeaderSize - 24 - 16, []rec{{24, 0, 1}, sw}, true, 0},
		{"other record header split across pages", 2, defaultBlckSz - longHeaderSize - 24 - 8, []rec{{24, 0, 1}, other}, false, 0},
		{"other record last", 1, 0, []rec{other, {24, 0x00, rmXLOG}}, false, 0},
		{"other resource manager", 1, 0, []rec{{24, xlogSwitch, 1}}, false, 0},
		{"record into the zeros", 2, 0, []rec{sw, {9000, 0, 1}}, false, 1},
		{"no record", 1, 0, nil, false, 0},
		{"continuation only", 2, 3 * defaultBlckSz, nil, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := recordPages(tc.npages, tc.pad, tc.recs)
			if tc.pad >= len(b) {
				// A record continued over every page from before.
				b = make([]byte, tc.npages*defaultBlckSz)
				for off := 0; off < len(b); off += defaultBlckSz {
					binary.LittleEndian.PutUint16(b[off+2:], xlpFirstIsCont)
					binary.LittleEndian.PutUint32(b[off+16:], uint32(tc.pad))
				}
			}
			if tc.fed > 0 {
				b = b[:tc.fed*defaultBlckSz] // the zeros begin there
			}
			var r lastRecord
			for off := 0; off < len(b); off += defaultBlckSz {
				hdr := shortHeaderSize
				if off == 0 {
					hdr = longHeaderSize
				}
				r.page(b[off:off+defaultBlckSz], uint64(off), hdr)
			}
			err := r.switchBefore(uint64(len(b)))
			if (err == nil) != tc.ok {
				t.Errorf("switchBefore: %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestParseHistory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		tli     uint32
		want    []historyEntry
		bad     string
	}{
		{name: "PostgreSQL's", content: "1\t0/3025A70\tno recovery target specified\n", tli: 2, want: []historyEntry{{1, 0x3025A70}}},
		{name: "comments, blanks, spaces", tli: 5, content: "# made by hand\n\n  1\t0/3000000\tbefore x\n\t\n3 1/A0\tat 2026-01-01\n# end",
			want: []historyEntry{{1, 0x3000000}, {3, 0x1000000A0}}},
		{name: "lower-case hex and no reason", content: "1\tab/cd", tli: 2, want: []historyEntry{{1, 0xAB000000CD}}},
		{name: "empty", content: "", tli: 2},
		{name: "no timeline", content: "x\t0/1\n", tli: 2, bad: "expected a timeline ID"},
		{name: "no switch point", content: "1\n", tli: 2, bad: "switchpoint"},
		{name: "half a switch point", content: "1\t0/\n", tli: 2, bad: "switchpoint"},
		{name: "timelines not increasing", content: "2\t0/1\n2\t0/2\n", tli: 3, bad: "increasing"},
		{name: "parent not below the child", content: "2\t0/1\n", tli: 2, bad: "less than"},
		{name: "switch points going back", content: "1\t0/5\n2\t0/4\n", tli: 3, bad: "precedes"},
		{name: "timeline overflow", content: "4294967296\t0/1\n", tli: 2, bad: "timeline ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHistory(strings.NewReader(tc.content), tc.tli)
			if tc.bad != "" {
				if err == nil || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("err = %v, want one saying %q", err, tc.bad)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCheckAcrossPromotion checks WAL that crosses a real timeline switch,
// laid out as pg_receivewal keeps it: timeline 1 up to the promotion of a
// standby (its last segment .partial), 00000002.history, and timeline 2.
// The standby's own pg_wal holds that after its promotion, but for the
// name of the old timeline's last segment.
func TestCheckAcrossPromotion(t *testing.T) {
	ctx := context.Background()
	p := pgtest.Start(t, pgtest.Options{InitDBArgs: []string{"--wal-segsize=1"}, Settings: walSettings})
	if err := p.Exec(ctx, "CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 10000); SELECT pg_switch_wal(); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	base, err := pgtest.ServerDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	data := filepath.Join(base, "standby")
	if err := runServerBin(p, "pg_basebackup", "-d", p.SuperURL(), "-D", data, "-R", "-X", "stream", "-c", "fast"); err != nil {
		t.Fatal(err)
	}
	s := pgtest.StartCopy(t, data, pgtest.Options{Settings: walSettings}, nil)
	if err := p.Exec(ctx, "INSERT INTO t SELECT generate_series(1, 10000); SELECT pg_switch_wal(); INSERT INTO t SELECT generate_series(1, 3000)"); err != nil {
		t.Fatal(err)
	}
	// Inserted, not flushed: pgtest runs with synchronous_commit off, and
	// the standby must get the last rows so that the switch point lies
	// inside a segment.
	want, err := checkQuery(ctx, p, "SELECT pg_current_wal_insert_lsn()")
	if err != nil {
		t.Fatal(err)
	}
	pollUntil(t, func() bool {
		got, err := checkQuery(ctx, s, fmt.Sprintf("SELECT pg_last_wal_replay_lsn() >= '%s'", want))
		return err == nil && got == "t"
	})
	if err := s.Exec(ctx, "SELECT pg_promote()"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "INSERT INTO t SELECT generate_series(1, 10000); SELECT pg_switch_wal(); INSERT INTO t SELECT generate_series(1, 10000); SELECT pg_switch_wal(); INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	sysid, err := checkQuery(ctx, s, "SELECT system_identifier FROM pg_control_system()")
	if err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.ParseUint(sysid, 10, 64)
	end, err := stopCluster(s)
	if err != nil {
		t.Fatal(err)
	}
	pgWAL := filepath.Join(s.DataDir, "pg_wal")
	dir := t.TempDir()
	complete, partial, err := copyWAL(pgWAL, dir, 2, end/testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	// Timeline 1 as the standby received it: complete segments and the
	// one the promotion cut, which PostgreSQL renamed .partial itself.
	entries, err := os.ReadDir(pgWAL)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := os.ReadFile(filepath.Join(pgWAL, "00000002.history"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHistory(bytes.NewReader(hist), 2)
	if err != nil || len(h) != 1 {
		t.Fatalf("00000002.history %q: %v", hist, err)
	}
	var old []string
	for _, e := range entries {
		n, err := ParseName(e.Name(), testSegSize)
		if err != nil || (n.Timeline != 1 && n.Kind != History) {
			continue
		}
		name := e.Name()
		if n.Kind == Segment && n.SegNo == h[0].end/testSegSize {
			// PostgreSQL renames it so only with archive_mode on.
			name += partialSuffix
		}
		old = append(old, name)
		if err := copyWALFile(filepath.Join(pgWAL, e.Name()), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("timeline 1 and history: %v; timeline 2: %v and %s", old, complete, partial)
	res := checkDir(t, dir, id)
	if !res.OK {
		t.Fatalf("problem: %s", res.Problem)
	}
	if !strings.Contains(res.Checked, "timelines 1, 2") {
		t.Errorf("checked: %s", res.Checked)
	}
	t.Log(res.Checked)

	// Without the old timeline's partial segment the archive misses WAL
	// of timeline 1 up to the switch point.
	var oldPartial string
	for _, n := range old {
		if strings.HasSuffix(n, partialSuffix) {
			oldPartial = n
		}
	}
	if oldPartial == "" {
		t.Fatalf("the promoted standby kept no .partial of timeline 1: %v", old)
	}
	aside := filepath.Join(t.TempDir(), oldPartial)
	if err := os.Rename(filepath.Join(dir, oldPartial), aside); err != nil {
		t.Fatal(err)
	}
	if res := checkDir(t, dir, id); res.OK || !strings.Contains(res.Problem, "missing "+oldPartial) {
		t.Errorf("without %s: OK %v, problem %q", oldPartial, res.OK, res.Problem)
	}

	// Retention removes the complete segments up to the second of
	// timeline 2 and keeps the .partial: the archive starts after it.
	if err := os.Rename(aside, filepath.Join(dir, oldPartial)); err != nil {
		t.Fatal(err)
	}
	for _, n := range append(slices.DeleteFunc(old, func(n string) bool { return !strings.HasPrefix(n, "00000001") || n == oldPartial }), complete[0]) {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	if res := checkDir(t, dir, id); !res.OK || res.Segments != len(complete)+1 { // less complete[0], plus both partials
		t.Errorf("after retention: OK %v, problem %q, checked %s", res.OK, res.Problem, res.Checked)
	}
	if err := os.Remove(filepath.Join(dir, complete[1])); err != nil {
		t.Fatal(err)
	}
	if res := checkDir(t, dir, id); !res.OK {
		t.Errorf("after more retention: problem %q", res.Problem)
	}
}

// waitFor polls cond (replication is asynchronous); the test's own timeout
// bounds it.
func pollUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		time.Sleep(50 * time.Millisecond)
	}
}

func TestCheckWithoutWAL(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string][]byte
		ok      bool
		checked string
	}{
		{"empty", nil, true, "no WAL segment"},
		{"a segment just opened", map[string][]byte{"000000010000000000000005.partial": make([]byte, testSegSize)}, true, "1 segments 000000010000000000000005.partial to 000000010000000000000005.partial (LSN 0/500000 to 0/500000), timelines 1, 0 pages"},
		{"a history without its segments", map[string][]byte{"00000002.history": []byte("1\t0/500000\tno recovery target specified\n")}, true, "no WAL segment"},
		{"a broken history", map[string][]byte{"00000002.history": []byte("one\n")}, false, ""},
		{"an empty complete segment", map[string][]byte{"000000010000000000000005": make([]byte, testSegSize)}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, b := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			res := checkDir(t, dir, 0)
			if res.OK != tc.ok || !strings.Contains(res.Checked, tc.checked) {
				t.Errorf("OK %v, checked %q, problem %q", res.OK, res.Checked, res.Problem)
			}
		})
	}
}

// FuzzParseHistory feeds history files as an upstream might send them:
// never a panic, and what is accepted keeps PostgreSQL's rules.
func FuzzParseHistory(f *testing.F) {
	f.Add("1\t0/3025A70\tno recovery target specified\n", uint32(2))
	f.Add("# c\n\n1 0/1\n2\tFFFFFFFF/FFFFFFFF\tx\n", uint32(3))
	f.Add("1\t0/", uint32(2))
	f.Fuzz(func(t *testing.T, content string, tli uint32) {
		entries, err := parseHistory(strings.NewReader(content), tli)
		if err != nil {
			return
		}
		for i, e := range entries {
			if e.tli >= tli || (i > 0 && (e.tli <= entries[i-1].tli || e.end < entries[i-1].end)) {
				t.Fatalf("accepted %v for timeline %d", entries, tli)
			}
		}
	})
}

// FuzzLastRecord feeds arbitrary pages to the record follower: it must
// never read outside them.
func FuzzLastRecord(f *testing.F) {
	f.Add(recordPages(2, 0, []rec{{100, 0, 1}, {recordHeaderSize, xlogSwitch, rmXLOG}}))
	f.Add(recordPages(2, defaultBlckSz-longHeaderSize-24-8, []rec{{24, 0, 1}, {recordHeaderSize, xlogSwitch, rmXLOG}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		const page = 64 // the smallest pages a long header allows keep inputs short
		var r lastRecord
		for off := 0; off+page <= len(b); off += page {
			hdr := shortHeaderSize
			if off == 0 {
				hdr = longHeaderSize
			}
			r.page(b[off:off+page], uint64(off), hdr)
		}
		_ = r.switchBefore(uint64(len(b)))
	})
}
