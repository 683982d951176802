package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// restoreLocal restores the backup in dir into a new directory.
func restoreLocal(t *testing.T, dir string, o RestoreOptions) (string, *RestoreResult, error) {
	t.Helper()
	b, err := OpenLocal(dir, "src")
	if err != nil {
		t.Fatalf("OpenLocal: %v", err)
	}
	dest := t.TempDir()
	res, err := Restore(context.Background(), b, dest, o)
	return dest, res, err
}

// wantRestoreError checks that err is a RestoreError of kind saying want.
func wantRestoreError(t *testing.T, err error, kind RestoreErrorKind, want string) {
	t.Helper()
	var re *RestoreError
	if !errors.As(err, &re) || re.Kind != kind || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want kind %d with %q", err, kind, want)
	}
}

func TestRestoreTar(t *testing.T) {
	files := map[string]string{"PG_VERSION": "16\n", "global/pg_control": strings.Repeat("c", 8192), "base/1/1259": strings.Repeat("r", 30000)}
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "base.tar"), tarOf(t, files, false), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, ManifestName), manifestOf(files), 0o600))
	var total, read int64
	dest, res, err := restoreLocal(t, dir, RestoreOptions{
		RestoreCommand: `pgverbs wal-get --url 'http://h:1' --partial %f %p`,
		Start:          func(n int64) { total = n },
		Read:           func(n int64) { read += n },
	})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if res.Files != 3 || res.InPlace || total == 0 || read != total {
		t.Errorf("result %+v, %d of %d bytes read", res, read, total)
	}
	auto, _ := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
	if !strings.Contains(string(auto), `restore_command = 'pgverbs wal-get --url ''http://h:1'' --partial %f %p'`) {
		t.Errorf("postgresql.auto.conf:\n%s", auto)
	}
	for _, f := range []string{"recovery.signal", ManifestName, "base/1/1259"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// The restored directory passes VerifyBackup as a plain backup.
	wantProblems(t, verifyLocal(t, dest, VerifyOptions{}))
}

// TestRestoreRefuses: what Unpack refuses is refused in a restore too
// (an entry climbing out, a link other than pg_tblspc/OID), a checksum
// mismatch, and an archive cut short.
func TestRestoreRefuses(t *testing.T) {
	files := map[string]string{"PG_VERSION": "16\n"}
	write := func(t *testing.T, archive []byte) string {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "base.tar"), archive, 0o600))
		must(t, os.WriteFile(filepath.Join(dir, ManifestName), manifestOf(files), 0o600))
		return dir
	}
	withEntry := func(h *tar.Header, data string) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		must(t, tw.WriteHeader(&tar.Header{Name: "PG_VERSION", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3}))
		tw.Write([]byte("16\n"))
		must(t, tw.WriteHeader(h))
		tw.Write([]byte(data))
		must(t, tw.Close())
		return b.Bytes()
	}
	t.Run("link", func(t *testing.T) {
		_, _, err := restoreLocal(t, write(t, withEntry(&tar.Header{Name: "global", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, "")), RestoreOptions{})
		wantRestoreError(t, err, RestoreVerify, "unexpected symbolic link global")
	})
	t.Run("escape", func(t *testing.T) {
		// Walk cleans names: ../x lands at x, inside the directory, and is
		// then an extra file.
		dest, _, err := restoreLocal(t, write(t, withEntry(&tar.Header{Name: "../../x", Typeflag: tar.TypeReg, Mode: 0o600, Size: 1}, "x")), RestoreOptions{})
		wantRestoreError(t, err, RestoreVerify, "x is in the backup but not in the manifest")
		if _, err := os.Stat(filepath.Join(filepath.Dir(dest), "x")); err == nil {
			t.Errorf("a file was written outside the data directory")
		}
	})
	t.Run("hard link", func(t *testing.T) {
		// Walk passes hard links over: not written, the restore complete.
		dest, _, err := restoreLocal(t, write(t, withEntry(&tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}, "")), RestoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(dest, "h")); err == nil {
			t.Errorf("hard link written")
		}
	})
	t.Run("checksum", func(t *testing.T) {
		files := map[string]string{"PG_VERSION": "17\n"}
		dir := write(t, tarOf(t, files, false))
		_, _, err := restoreLocal(t, dir, RestoreOptions{})
		wantRestoreError(t, err, RestoreVerify, "checksum mismatch for PG_VERSION")
	})
	t.Run("cut short", func(t *testing.T) {
		_, _, err := restoreLocal(t, write(t, tarOf(t, files, true)), RestoreOptions{})
		wantRestoreError(t, err, RestoreVerify, "base.tar is damaged: the archive is cut short")
	})
	t.Run("canceled", func(t *testing.T) {
		b, err := OpenLocal(write(t, tarOf(t, files, false)), "src")
		must(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Restore(ctx, b, t.TempDir(), RestoreOptions{}); !errors.Is(err, context.Canceled) {
			t.Errorf("canceled: %v", err)
		}
	})
}
