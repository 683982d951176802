package backup

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// testEntry describes an entry for makeTar.
type testEntry struct {
	name string
	typ  byte
	body string
	link string
}

// makeTar builds an archive; trailer adds the end-of-archive blocks.
func makeTar(t testing.TB, trailer bool, entries ...testEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link, Format: tar.FormatGNU}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if e.typ == tar.TypeDir {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	if trailer {
		buf.Write(make([]byte, 1024))
	}
	return buf.Bytes()
}

func TestUnpack(t *testing.T) {
	dir := t.TempDir()
	data := makeTar(t, false,
		testEntry{name: "backup_label", typ: tar.TypeReg, body: "START WAL LOCATION: 0/2000028\n"},
		testEntry{name: "base", typ: tar.TypeDir},
		testEntry{name: "base/1", typ: tar.TypeDir},
		testEntry{name: "base/1/1259", typ: tar.TypeReg, body: strings.Repeat("x", 8192)},
		testEntry{name: "pg_wal", typ: tar.TypeDir},
		testEntry{name: "./pg_wal/archive_status", typ: tar.TypeDir},
		testEntry{name: "pg_tblspc", typ: tar.TypeDir},
		testEntry{name: "pg_tblspc/16385", typ: tar.TypeSymlink, link: "/srv/somewhere/else"},
		testEntry{name: "global/pg_control", typ: tar.TypeReg, body: "control"}, // parent implied
		testEntry{name: "empty", typ: tar.TypeReg},
	)
	files, n, err := Unpack(bytes.NewReader(data), dir)
	if err != nil {
		t.Fatal(err)
	}
	if files != 4 || n != int64(len("START WAL LOCATION: 0/2000028\n")+8192+len("control")) {
		t.Errorf("files=%d bytes=%d", files, n)
	}
	for name, mode := range map[string]fs.FileMode{
		"backup_label": 0o600, "base/1/1259": 0o600, "global/pg_control": 0o600, "empty": 0o600,
		"base": fs.ModeDir | 0o700, "global": fs.ModeDir | 0o700, "pg_wal/archive_status": fs.ModeDir | 0o700,
	} {
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode(), mode)
		}
	}
	if got, err := os.Readlink(filepath.Join(dir, "pg_tblspc/16385")); err != nil || got != "../tablespaces/16385" {
		t.Errorf("tablespace link = %q, %v", got, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "global/pg_control")); string(b) != "control" {
		t.Errorf("pg_control = %q", b)
	}

	// With the trailer, and an existing directory entry for the root.
	dir2 := t.TempDir()
	if _, _, err := Unpack(bytes.NewReader(makeTar(t, true, testEntry{name: "./", typ: tar.TypeDir}, testEntry{name: "a", typ: tar.TypeReg, body: "1"})), dir2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Unpack(bytes.NewReader(nil), t.TempDir()); err != nil {
		t.Errorf("empty stream: %v", err)
	}
}

func TestUnpackRefuses(t *testing.T) {
	cases := map[string][]testEntry{
		"dotdot":          {{name: "../escape", typ: tar.TypeReg, body: "x"}},
		"dotdot deep":     {{name: "a/../../escape", typ: tar.TypeReg, body: "x"}},
		"absolute":        {{name: "/tmp/escape", typ: tar.TypeReg, body: "x"}},
		"symlink":         {{name: "link", typ: tar.TypeSymlink, link: "../canary"}},
		"symlink deep":    {{name: "pg_tblspc/1/x", typ: tar.TypeSymlink, link: "/"}},
		"symlink not oid": {{name: "pg_tblspc/abc", typ: tar.TypeSymlink, link: "/"}},
		"symlink zero":    {{name: "pg_tblspc/0", typ: tar.TypeSymlink, link: "/"}},
		"through tblspc link": {
			{name: "pg_tblspc/16385", typ: tar.TypeSymlink, link: "/"},
			{name: "pg_tblspc/16385/x", typ: tar.TypeReg, body: "x"},
		},
		"hardlink":  {{name: "a", typ: tar.TypeReg, body: "x"}, {name: "b", typ: tar.TypeLink, link: "a"}},
		"device":    {{name: "dev", typ: tar.TypeChar}},
		"fifo":      {{name: "fifo", typ: tar.TypeFifo}},
		"duplicate": {{name: "a", typ: tar.TypeReg, body: "x"}, {name: "a", typ: tar.TypeReg, body: "y"}},
		"file over dir": {
			{name: "d", typ: tar.TypeDir},
			{name: "d", typ: tar.TypeReg, body: "x"},
		},
		"dir over file": {
			{name: "f", typ: tar.TypeReg, body: "x"},
			{name: "f", typ: tar.TypeDir},
		},
		"through file": {
			{name: "f", typ: tar.TypeReg, body: "x"},
			{name: "f/x", typ: tar.TypeReg, body: "x"},
		},
		"root as file": {{name: ".", typ: tar.TypeReg}},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "target")
			must(t, os.Mkdir(dir, 0o700))
			must(t, os.Mkdir(filepath.Join(parent, "canary"), 0o700))
			_, _, err := Unpack(bytes.NewReader(makeTar(t, false, entries...)), dir)
			wantCode(t, err, pgerr.ProtocolViolation)
			checkContained(t, parent)
		})
	}

	// Truncated archives.
	full := makeTar(t, false, testEntry{name: "a", typ: tar.TypeReg, body: strings.Repeat("x", 2000)})
	for _, n := range []int{100, 600, 1500} {
		_, _, err := Unpack(bytes.NewReader(full[:n]), t.TempDir())
		wantCode(t, err, pgerr.ProtocolViolation)
	}

	// Through a symbolic link planted in the directory beforehand.
	parent := t.TempDir()
	dir := filepath.Join(parent, "target")
	must(t, os.Mkdir(dir, 0o700))
	must(t, os.Mkdir(filepath.Join(parent, "canary"), 0o700))
	must(t, os.Symlink("../canary", filepath.Join(dir, "base")))
	_, _, err := Unpack(bytes.NewReader(makeTar(t, false, testEntry{name: "base/x", typ: tar.TypeReg, body: "x"})), dir)
	wantCode(t, err, pgerr.ProtocolViolation)
	must(t, os.Remove(filepath.Join(dir, "base")))
	checkContained(t, parent)
}

// checkContained fails when anything but the target and an empty canary
// directory exists in parent, or when the target holds a symbolic link
// other than pg_tblspc/OID -> ../tablespaces/OID.
func checkContained(t testing.TB, parent string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"canary", "target"}) {
		t.Fatalf("entries next to the target: %v", names)
	}
	canary, err := os.ReadDir(filepath.Join(parent, "canary"))
	if err != nil || len(canary) != 0 {
		t.Fatalf("canary directory: %v %v", canary, err)
	}
	target := filepath.Join(parent, "target")
	err = filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			rel, _ := filepath.Rel(target, p)
			dest, _ := os.Readlink(p)
			oid, ok := tblspcLink(rel)
			if !ok || dest != "../tablespaces/"+oid {
				t.Errorf("unexpected symbolic link %s -> %s", rel, dest)
			}
		}
		if d.Type()&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeCharDevice) != 0 {
			t.Errorf("special file %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzUnpack feeds arbitrary archives to Unpack: whatever the input,
// nothing may be written outside the target directory. Each input touches
// the file system, so give minimization a short budget, or the fuzzer
// seems to stall for a minute per new input:
//
//	go test -run '^$' -fuzz FuzzUnpack -fuzztime 60s -fuzzminimizetime 2s ./backup/
func FuzzUnpack(f *testing.F) {
	for _, entries := range [][]testEntry{
		{{name: "a", typ: tar.TypeReg, body: "x"}},
		{{name: "../canary/x", typ: tar.TypeReg, body: "x"}},
		{{name: "pg_tblspc/16385", typ: tar.TypeSymlink, link: "../../canary"}, {name: "tablespaces", typ: tar.TypeSymlink, link: "../canary"}},
		{{name: "pg_tblspc/1", typ: tar.TypeSymlink, link: "/"}, {name: "pg_tblspc/1/../../../canary/x", typ: tar.TypeReg, body: "x"}},
		{{name: "d", typ: tar.TypeDir}, {name: "d/../../canary/y", typ: tar.TypeReg, body: "y"}},
		{{name: "l", typ: tar.TypeLink, link: "../canary/z"}},
	} {
		f.Add(makeTar(f, false, entries...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "target")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(parent, "canary"), 0o700); err != nil {
			t.Fatal(err)
		}
		files, n, err := Unpack(bytes.NewReader(data), dir)
		if err != nil {
			var pe *pgerr.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *pgerr.Error", err)
			}
		}
		if files < 0 || n < 0 {
			t.Fatalf("files=%d bytes=%d", files, n)
		}
		checkContained(t, parent)
	})
}
