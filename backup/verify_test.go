package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/zstd"
)

// verifyLocal runs VerifyBackup on a local backup directory.
func verifyLocal(t *testing.T, dir string, o VerifyOptions) *VerifyResult {
	t.Helper()
	b, err := OpenLocal(dir, filepath.Base(dir))
	if err != nil {
		t.Fatalf("OpenLocal: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := VerifyBackup(ctx, b, o)
	if err != nil {
		t.Fatalf("VerifyBackup: %v", err)
	}
	return res
}

// wantProblems checks that res has exactly the problems of the given
// kinds and paths ("kind path"), in any order.
func wantProblems(t *testing.T, res *VerifyResult, want ...string) {
	t.Helper()
	var got []string
	for _, p := range res.Problems {
		got = append(got, p.Kind+" "+p.Path)
	}
	if len(got) > 20 {
		t.Fatalf("%d problems, the first: %+v", len(got), res.Problems[:20])
	}
	if strings.Join(sortedCopy(got), "\n") != strings.Join(sortedCopy(want), "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s\nmessages: %+v", strings.Join(got, "\n"), strings.Join(want, "\n"), res.Problems)
	}
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

func TestVerifyPlain(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	res := runBackup(t, baseOptions(s, root, "plain"))
	v := verifyLocal(t, res.Path, VerifyOptions{WAL: true})
	wantProblems(t, v)
	if v.Files < 100 || v.Bytes < 1<<20 || v.WALRecords == 0 || len(v.WAL) != 1 {
		t.Errorf("result %+v", v)
	}
	t.Logf("verified %d files, %d bytes, %d WAL records %v", v.Files, v.Bytes, v.WALRecords, v.WAL)
	// pg_verifybackup agrees (the tablespace is walked through its link).
	verify(t, s, res.Path, "-i", "tablespaces")

	// Tamper: a changed byte, a missing file, an extra file.
	rel := "base/" + s.dbOID + "/PG_VERSION"
	mustChange(t, filepath.Join(res.Path, "global/pg_control"), 100)
	must(t, os.Remove(filepath.Join(res.Path, rel)))
	must(t, os.WriteFile(filepath.Join(res.Path, "global/extra"), []byte("x"), 0o600))
	v = verifyLocal(t, res.Path, VerifyOptions{WAL: true})
	wantProblems(t, v, "checksum global/pg_control", "missing "+rel, "extra global/extra")
	out, err := exec.Command(s.c.Bin("pg_verifybackup"), "-i", "tablespaces", res.Path).CombinedOutput()
	if err == nil {
		t.Errorf("pg_verifybackup passed the tampered backup:\n%s", out)
	}
	for _, w := range []string{"global/pg_control", rel, "global/extra"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("pg_verifybackup does not name %s:\n%s", w, out)
		}
	}

	// A missing WAL segment: remove the backup's own.
	segs, _ := filepath.Glob(filepath.Join(res.Path, "pg_wal", "0*"))
	if len(segs) == 0 {
		t.Fatal("no WAL in the backup")
	}
	last := segs[len(segs)-1]
	arch := t.TempDir()
	copyFile(t, last, filepath.Join(arch, filepath.Base(last)))
	must(t, os.Remove(last))
	v = verifyLocal(t, res.Path, VerifyOptions{WAL: true})
	if n := len(v.Problems); n != 4 || v.Problems[n-1].Kind != "wal" || !strings.Contains(v.Problems[n-1].Message, "missing") {
		t.Errorf("problems %+v, want a missing WAL segment last", v.Problems)
	}
	// ... and found in the archive instead.
	v = verifyLocal(t, res.Path, VerifyOptions{WAL: true, Archive: DirSegments(arch)})
	if n := len(v.Problems); n != 3 {
		t.Errorf("with the archive: problems %+v, want 3", v.Problems)
	}
}

// mustChange flips one byte of file at offset off.
func mustChange(t *testing.T, file string, off int64) {
	t.Helper()
	mustXor(t, file, off, 0xFF)
}

// mustXor changes the byte at off of file by xor with x.
func mustXor(t *testing.T, file string, off int64, x byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	must(t, err)
	b[0] ^= x
	_, err = f.WriteAt(b, off)
	must(t, err)
}

// walSample is WAL of the shared cluster copied into a directory: a
// range with records across many pages (a 100 kB logical message), full
// page images and an XLOG_SWITCH.
type walSample struct {
	dir   string
	r     WALRange
	files []string // the segment names, oldest first
}

func takeWALSample(t *testing.T, s *source) walSample {
	t.Helper()
	ctx := context.Background()
	q := func(sql string) string {
		v, err := queryOne(ctx, s.c.SuperURL(), sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return v
	}
	start := q(`SELECT pg_current_wal_insert_lsn()::text`)
	q(`SELECT pg_logical_emit_message(false, 'verify', repeat('m', 100000))::text`)
	must(t, s.c.Exec(ctx, `CHECKPOINT`))
	must(t, s.c.Exec(ctx, `UPDATE t SET v = v WHERE id % 500 = 0`))
	q(`SELECT pg_switch_wal()::text`)
	must(t, s.c.Exec(ctx, `UPDATE t SET v = v WHERE id % 700 = 0`))
	end := q(`SELECT pg_logical_emit_message(false, 'verify', 'end')::text`)
	q(`SELECT pg_switch_wal()::text`) // written and flushed, up to end
	startLSN, err := parseLSN(start)
	must(t, err)
	endLSN, err := parseLSN(end)
	must(t, err)
	w := walSample{dir: t.TempDir(), r: WALRange{Timeline: 1, Start: startLSN, End: endLSN}}
	const seg = 16 << 20
	for n := uint64(startLSN) / seg; n <= uint64(endLSN)/seg; n++ {
		name := fmt.Sprintf("%08X%08X%08X", 1, n>>8, n&0xFF)
		copyFile(t, filepath.Join(s.c.DataDir, "pg_wal", name), filepath.Join(w.dir, name))
		w.files = append(w.files, name)
	}
	return w
}

func checkWAL(t *testing.T, w walSample, dir string) (int, *Problem) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return verifyWAL(ctx, &backupSegments{archive: DirSegments(dir)}, w.r, 0)
}

// TestVerifyWAL reads real WAL and damages copies of it.
func TestVerifyWAL(t *testing.T) {
	s := getSource(t)
	w := takeWALSample(t, s)
	n, p := checkWAL(t, w, w.dir)
	if p != nil || n < 20 {
		t.Fatalf("%d records, problem %+v", n, p)
	}
	t.Logf("%d records in %v over %d segments", n, w.r, len(w.files))
	// pg_waldump reads as many.
	out, err := exec.Command(s.c.Bin("pg_waldump"), "-p", w.dir, "-t", "1", "-s", w.r.Start.String(), "-e", w.r.End.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_waldump: %v\n%s", err, out)
	}
	if lines := strings.Count(string(out), "\n"); lines != n {
		t.Errorf("pg_waldump printed %d lines, verifyWAL read %d records", lines, n)
	}
	if len(w.files) < 2 {
		t.Fatalf("the sample lies in one segment: %v", w.files)
	}
	// The sample's first bytes hold the 100 kB message: a byte in its
	// middle, on a continuation page.
	off := int64(uint64(w.r.Start)%(16<<20)) + 50000
	for _, c := range []struct {
		name   string
		damage func(dir string)
		want   string
	}{
		{"record byte", func(dir string) { mustChange(t, filepath.Join(dir, w.files[0]), off) }, "incorrect resource manager data checksum"},
		{"page header", func(dir string) {
			mustChange(t, filepath.Join(dir, w.files[0]), (off/8192)*8192+9) // xlp_pageaddr
		}, "unexpected pageaddr"},
		{"contrecord flag", func(dir string) {
			mustXor(t, filepath.Join(dir, w.files[0]), (off/8192)*8192+2, xlpFirstIsCont) // xlp_info
		}, "there is no contrecord flag"},
		{"missing segment", func(dir string) { must(t, os.Remove(filepath.Join(dir, w.files[len(w.files)-1]))) }, "is missing"},
		{"truncated segment", func(dir string) { must(t, os.Truncate(filepath.Join(dir, w.files[len(w.files)-1]), 8192)) }, "segment size"},
		{"zeroed", func(dir string) {
			f, err := os.OpenFile(filepath.Join(dir, w.files[len(w.files)-1]), os.O_RDWR, 0)
			must(t, err)
			_, err = f.WriteAt(make([]byte, 16<<20-8192), 8192)
			must(t, err)
			f.Close()
		}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range w.files {
				copyFile(t, filepath.Join(w.dir, f), filepath.Join(dir, f))
			}
			c.damage(dir)
			_, p := checkWAL(t, w, dir)
			if p == nil || p.Kind != "wal" || !strings.Contains(p.Message, c.want) {
				t.Fatalf("problem %+v, want one saying %q", p, c.want)
			}
			t.Logf("%s: %s", p.Path, p.Message)
		})
	}
}

// manifestOf builds a manifest as manifestBuilder does.
func manifestOf(files map[string]string) []byte {
	m := newManifest("CRC32C")
	for _, p := range sortedCopy(keys(files)) {
		h := newHash("CRC32C")
		h.Write([]byte(files[p]))
		m.addFile(p, int64(len(files[p])), time.Unix(0, 0), checksumHex("CRC32C", h))
	}
	return m.finish(1, 0x1000028, 0x1000100)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestParseManifest(t *testing.T) {
	good := manifestOf(map[string]string{"PG_VERSION": "15\n", "global/pg_control": "ctl", "a\xffb": "bin"})
	m, err := ParseManifest(good)
	if err != nil {
		t.Fatalf("ParseManifest: %v", err)
	}
	if len(m.Files) != 3 || m.Files[1].Path != "a\xffb" || m.Files[0].Algorithm != "CRC32C" || len(m.WAL) != 1 || m.WAL[0].Start != 0x1000028 {
		t.Errorf("manifest %+v", m)
	}
	bad := bytes.Replace(good, []byte(`"Size": 3`), []byte(`"Size": 4`), 1)
	if _, err := ParseManifest(bad); err != ErrManifestChecksum {
		t.Errorf("changed size: %v, want ErrManifestChecksum", err)
	}
	for _, c := range []struct{ name, text string }{
		{"not json", "{"},
		{"no version", `{"Files": [], "Manifest-Checksum": "00"}`},
		{"version 3", `{"PostgreSQL-Backup-Manifest-Version": 3, "Files": [], "Manifest-Checksum": "00"}`},
		{"no checksum", `{"PostgreSQL-Backup-Manifest-Version": 1, "Files": []}`},
		{"both paths", `{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [{"Path": "a", "Encoded-Path": "61", "Size": 1}], "Manifest-Checksum": "00"}`},
		{"no size", `{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [{"Path": "a"}], "Manifest-Checksum": "00"}`},
		{"bad algorithm", `{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [{"Path": "a", "Size": 1, "Checksum-Algorithm": "MD5", "Checksum": "00"}], "Manifest-Checksum": "00"}`},
		{"bad lsn", `{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [], "WAL-Ranges": [{"Timeline": 1, "Start-LSN": "x", "End-LSN": "0/1"}], "Manifest-Checksum": "00"}`},
	} {
		if _, err := ParseManifest([]byte(c.text)); err == nil || err == ErrManifestChecksum {
			t.Errorf("%s: %v, want a parse error", c.name, err)
		}
	}
}

// TestVerifyHandMade checks a hand-made plain backup, without WAL.
func TestVerifyHandMade(t *testing.T) {
	files := map[string]string{"PG_VERSION": "15\n", "global/pg_control": "control", "base/1/1259": strings.Repeat("r", 10000), "backup_label": "label"}
	dir := t.TempDir()
	for p, c := range files {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700))
		must(t, os.WriteFile(filepath.Join(dir, p), []byte(c), 0o600))
	}
	manifest := manifestOf(files)
	must(t, os.WriteFile(filepath.Join(dir, ManifestName), manifest, 0o600))
	// What pg_verifybackup ignores.
	must(t, os.MkdirAll(filepath.Join(dir, "pg_wal/archive_status"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "pg_wal/junk"), []byte("j"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "postgresql.auto.conf"), []byte("# x\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "standby.signal"), nil, 0o600))
	v := verifyLocal(t, dir, VerifyOptions{})
	wantProblems(t, v)
	if v.Files != 4 || v.Bytes != 10000+3+7+5 || v.WALChecked {
		t.Errorf("result %+v", v)
	}

	must(t, os.WriteFile(filepath.Join(dir, "base/1/1259"), []byte(strings.Repeat("r", 9999)+"s"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("16\n\n"), 0o600))
	v = verifyLocal(t, dir, VerifyOptions{})
	wantProblems(t, v, "checksum base/1/1259", "size PG_VERSION")

	must(t, os.WriteFile(filepath.Join(dir, ManifestName), bytes.Replace(manifest, []byte(`"Size": 7`), []byte(`"Size": 8`), 1), 0o600))
	v = verifyLocal(t, dir, VerifyOptions{})
	wantProblems(t, v, "manifest backup_manifest", "checksum base/1/1259", "size PG_VERSION", "size global/pg_control")

	// WAL on without any WAL: the segment is missing.
	must(t, os.WriteFile(filepath.Join(dir, ManifestName), manifest, 0o600))
	v = verifyLocal(t, dir, VerifyOptions{WAL: true})
	if n := len(v.Problems); n != 3 || v.Problems[2].Kind != "wal" || v.Problems[2].Path != "pg_wal/000000010000000000000001" {
		t.Errorf("problems %+v", v.Problems)
	}
}

func TestVerifyTarZstd(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	o := baseOptions(s, root, "tar")
	o.Format, o.Compression = Tar, Zstd
	res := runBackup(t, o)
	v := verifyLocal(t, res.Path, VerifyOptions{WAL: true})
	wantProblems(t, v)
	if v.WALRecords == 0 || v.Files < 100 {
		t.Errorf("result %+v", v)
	}
	b, err := OpenLocal(res.Path, "tar")
	must(t, err)
	if b.Format != Tar || b.Compression != Zstd || len(b.Archives) != 3 || b.Archives[0] != "base.tar.zst" || b.Archives[1] != s.spcOID+".tar.zst" || b.Archives[2] != "pg_wal.tar.zst" {
		t.Errorf("opened %+v", b)
	}
	// The same files as the plain walk of the extracted backup would
	// see: the tablespace's below pg_tblspc/OID.
	var spcFiles int
	must(t, b.Walk(context.Background(), func(e *Entry, r io.Reader) error {
		if strings.HasPrefix(e.Path, "pg_tblspc/"+s.spcOID+"/") && e.Type == File {
			spcFiles++
		}
		return nil
	}, nil))
	if spcFiles == 0 {
		t.Error("no tablespace files walked")
	}

	// WAL none and an archive without the segment: missing WAL.
	o = baseOptions(s, root, "tar-nowal")
	o.Format, o.Compression, o.WAL = Tar, Gzip, WALNone
	res = runBackup(t, o)
	v = verifyLocal(t, res.Path, VerifyOptions{WAL: true, Archive: DirSegments(t.TempDir())})
	if len(v.Problems) != 1 || v.Problems[0].Kind != "wal" || !strings.Contains(v.Problems[0].Message, "is missing") {
		t.Errorf("problems %+v, want a missing segment", v.Problems)
	}
	v = verifyLocal(t, res.Path, VerifyOptions{WAL: false})
	wantProblems(t, v)
	// An archive with the segments: the cluster's own pg_wal.
	v = verifyLocal(t, res.Path, VerifyOptions{WAL: true, Archive: DirSegments(filepath.Join(s.c.DataDir, "pg_wal"))})
	wantProblems(t, v)
}

// TestVerifyFetchAndSQL: WAL fetched into base.tar, and a SQL-method
// backup with the manifest pgverbs writes itself.
func TestVerifyFetchAndSQL(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	o := baseOptions(s, root, "fetch")
	o.Format, o.Compression, o.WAL = Tar, LZ4, WALFetch
	res := runBackup(t, o)
	v := verifyLocal(t, res.Path, VerifyOptions{WAL: true})
	wantProblems(t, v)
	if v.WALRecords == 0 {
		t.Errorf("result %+v", v)
	}

	o = baseOptions(s, root, "sql")
	o.Method, o.ManifestChecksums = SQL, "SHA256"
	res = runBackup(t, o)
	v = verifyLocal(t, res.Path, VerifyOptions{WAL: true})
	wantProblems(t, v)
	if v.WALRecords == 0 || v.Files < 100 {
		t.Errorf("result %+v", v)
	}
	verify(t, s, res.Path, "-i", "tablespaces")
}

// TestVerifyWALFromTar reads a WAL range over two segments out of a
// pg_wal.tar.zst, twice over the same reader (the second time from the
// archive's start again).
func TestVerifyWALFromTar(t *testing.T) {
	s := getSource(t)
	w := takeWALSample(t, s)
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "base.tar"), make([]byte, 1024), 0o600))
	var buf bytes.Buffer
	zw := zstd.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	wal := map[string]walEntry{}
	for _, name := range append([]string{"000000010000000000000099"}, w.files...) {
		var data []byte
		if name == "000000010000000000000099" {
			data = make([]byte, 16<<20) // an unrelated member first
		} else {
			var err error
			data, err = os.ReadFile(filepath.Join(w.dir, name))
			must(t, err)
		}
		must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(data)
		must(t, err)
		wal[name] = walEntry{archive: "pg_wal.tar.zst", size: int64(len(data))}
	}
	must(t, tw.Close())
	must(t, zw.Close())
	must(t, os.WriteFile(filepath.Join(dir, "pg_wal.tar.zst"), buf.Bytes(), 0o600))
	b, err := OpenLocal(dir, "t")
	must(t, err)
	src := &backupSegments{b: b, wal: wal}
	for i := 0; i < 2; i++ {
		n, p := verifyWAL(context.Background(), src, w.r, 16<<20)
		if p != nil || n < 20 {
			t.Fatalf("pass %d: %d records, %+v", i, n, p)
		}
	}
	// A member named but not there.
	wal["000000010000000000000098"] = walEntry{archive: "pg_wal.tar.zst", size: 16 << 20}
	if _, err := src.OpenSegment(context.Background(), "000000010000000000000098", 16<<20); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent member: %v", err)
	}
	src.close()
}
