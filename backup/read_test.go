package backup

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/DataDog/zstd"
)

// tarOf packs files (sorted by name) into a tar, with the end blocks
// unless cut.
func tarOf(t *testing.T, files map[string]string, cut bool) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, p := range sortedCopy(keys(files)) {
		must(t, tw.WriteHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(files[p]))}))
		_, err := tw.Write([]byte(files[p]))
		must(t, err)
	}
	if cut {
		must(t, tw.Flush())
	} else {
		must(t, tw.Close())
	}
	return b.Bytes()
}

// TestVerifyTruncatedArchives: VERIFY BACKUP reports a base.tar.zst cut
// short (libzstd's streaming reader ended it as if whole) and a tar
// without its end blocks (tar.Reader takes it for a whole one), even when
// the cut falls where no file of the manifest is missing.
func TestVerifyTruncatedArchives(t *testing.T) {
	files := map[string]string{"PG_VERSION": "16\n", "global/pg_control": strings.Repeat("c", 8192), "base/1/1259": strings.Repeat("r", 300000)}
	// WAL, which no manifest lists: only the archive's own end tells.
	wal := map[string]string{"000000010000000000000002": strings.Repeat("w", 1<<20)}
	write := func(t *testing.T, base, walTar []byte, baseName, walName string) string {
		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, baseName), base, 0o600))
		must(t, os.WriteFile(filepath.Join(dir, walName), walTar, 0o600))
		must(t, os.WriteFile(filepath.Join(dir, ManifestName), manifestOf(files), 0o600))
		return dir
	}
	zst := func(b []byte) []byte {
		z, err := zstd.Compress(nil, b)
		must(t, err)
		return z
	}
	whole := zst(tarOf(t, files, false))
	wholeWAL := zst(tarOf(t, wal, false))
	wantProblems(t, verifyLocal(t, write(t, whole, wholeWAL, "base.tar.zst", "pg_wal.tar.zst"), VerifyOptions{}))

	t.Run("zstd cut short", func(t *testing.T) {
		for _, frac := range []int{2, 3, 4} {
			cut := wholeWAL[:len(wholeWAL)*frac/5]
			res := verifyLocal(t, write(t, whole, cut, "base.tar.zst", "pg_wal.tar.zst"), VerifyOptions{})
			wantProblems(t, res, "archive pg_wal.tar.zst")
		}
		res := verifyLocal(t, write(t, whole[:len(whole)-3], wholeWAL, "base.tar.zst", "pg_wal.tar.zst"), VerifyOptions{})
		if len(res.Problems) == 0 || res.Problems[0].Kind != "archive" || res.Problems[0].Path != "base.tar.zst" {
			t.Errorf("base.tar.zst without its last bytes: %+v", res.Problems)
		}
	})
	t.Run("no end blocks", func(t *testing.T) {
		res := verifyLocal(t, write(t, zst(tarOf(t, files, true)), wholeWAL, "base.tar.zst", "pg_wal.tar.zst"), VerifyOptions{})
		wantProblems(t, res, "archive base.tar.zst")
		if len(res.Problems) == 0 || !strings.Contains(res.Problems[0].Message, "cut short") {
			t.Errorf("message %q", res.Problems[0].Message)
		}
		res = verifyLocal(t, write(t, tarOf(t, files, false), tarOf(t, wal, true), "base.tar", "pg_wal.tar"), VerifyOptions{})
		wantProblems(t, res, "archive pg_wal.tar")
	})
}
