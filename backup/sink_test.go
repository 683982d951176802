package backup

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSinks writes the same files to a directory and to a tar sink: a
// file never takes more than its size, a tar entry (and a padded file) is
// filled with zeros to its size, and the manifest counts what was written,
// padding included.
func TestSinks(t *testing.T) {
	for _, format := range []Format{Plain, Tar} {
		t.Run(format.String(), func(t *testing.T) {
			dir := t.TempDir()
			root, err := os.OpenRoot(dir)
			must(t, err)
			defer root.Close()
			var s sink = dirSink{dir: root, prefix: "p"}
			if format == Tar {
				if s, err = newTarSink(dirDest{root}, "t.tar", NoCompression, 0); err != nil {
					t.Fatal(err)
				}
			}
			man := newManifest("NONE")
			mtime := time.Unix(1700000000, 0)
			must(t, s.mkdir("d", mtime))
			write := func(name, content string, size int64, pad bool) {
				t.Helper()
				f, err := createFile(s, name, size, mtime, pad)
				must(t, err)
				f.record(man, name)
				if n, err := f.Write([]byte(content)); err != nil || n != len(content) {
					t.Fatalf("Write(%q) = %d, %v", content, n, err)
				}
				must(t, f.Close())
			}
			write("d/grew", "0123456789", 4, false)
			write("d/shrank", "ab", 5, false)
			write("d/wal", "xy", 6, true)
			f, err := createFile(s, "d/failed", 3, mtime, true)
			must(t, err)
			f.abort()
			if format == Tar {
				// A tar entry cut short by a failure leaves the archive
				// unusable: a sink is aborted, not closed, after one.
				s.abort()
			} else {
				must(t, s.close())
			}

			want := map[string]string{"d/grew": "0123", "d/shrank": "ab", "d/wal": "xy\x00\x00\x00\x00"}
			if format == Tar {
				want["d/shrank"] = "ab\x00\x00\x00"
			}
			got := map[string]string{}
			if format == Plain {
				for name := range want {
					b, err := os.ReadFile(filepath.Join(dir, "p", name))
					must(t, err)
					got[name] = string(b)
				}
			} else {
				got = readTarFiles(t, filepath.Join(dir, "t.tar"))
			}
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s = %q, want %q", name, got[name], w)
				}
			}
			m := string(man.finish(1, 0, 0))
			for name, w := range want {
				if entry := `"Path": "` + name + `", "Size": ` + strconv.Itoa(len(w)); !strings.Contains(m, entry) {
					t.Errorf("manifest lacks %s: %s", entry, m)
				}
			}
			if strings.Contains(m, "d/failed") {
				t.Errorf("manifest lists the aborted file: %s", m)
			}
		})
	}
}

// readTarFiles returns the regular files of a tar file that ended where a
// failure aborted it (no end-of-archive blocks).
func readTarFiles(t *testing.T, name string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(name)
	must(t, err)
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err != nil {
			break // io.EOF or the aborted entry
		}
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				break
			}
			out[hdr.Name] = string(b)
		}
	}
	return out
}

// TestTarSinkClosed checks a tar sink closed normally is a complete
// archive, with the two zero blocks at its end.
func TestTarSinkClosed(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	must(t, err)
	defer root.Close()
	s, err := newTarSink(dirDest{root}, "t.tar", NoCompression, 0)
	must(t, err)
	f, err := createFile(s, "a", 3, time.Now(), false)
	must(t, err)
	if _, err := f.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	must(t, f.Close())
	must(t, s.close())
	data, err := os.ReadFile(filepath.Join(dir, "t.tar"))
	must(t, err)
	if !bytes.HasSuffix(data, make([]byte, 1024)) {
		t.Fatal("tar file does not end with two zero blocks")
	}
	if got := readTarFiles(t, filepath.Join(dir, "t.tar")); got["a"] != "a\x00\x00" {
		t.Fatalf("a = %q", got["a"])
	}
}
