package e2e

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/klauspost/compress/zstd"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// TestBaseBackupRestore takes backups through the proxy while pgbench
// writes, in plain, tar+zstd and sql form, and proves each restorable: it
// passes pg_verifybackup, a postmaster started on it reaches consistency,
// and it serves the same data (a pg_dump of a table not written during the
// backup, and row counts) as the source.
func TestBaseBackupRestore(t *testing.T) {
	c := cluster(t, pgtest.Options{InitDBArgs: []string{"--data-checksums"}})
	ctx := testCtx(t)
	root := t.TempDir()
	p := startProxy(t, c.URL("", "", "postgres"), "--backup-root", root)
	if err := c.Exec(ctx, "CREATE TABLE keep AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(c.Bin("pgbench"), "-i", "-s", "3", "-q", "-d", c.SuperURL()).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	dump := func(url string) string {
		out, err := exec.Command(c.Bin("pg_dump"), "-d", url, "-t", "keep", "--data-only").CombinedOutput()
		if err != nil {
			t.Fatalf("pg_dump: %v\n%s", err, out)
		}
		// Recent pg_dump brackets its output with \restrict lines holding a
		// random key; comments name the server. Neither is data.
		var keep []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "\\restrict") || strings.HasPrefix(line, "\\unrestrict") || strings.HasPrefix(line, "--") {
				continue
			}
			keep = append(keep, line)
		}
		return strings.Join(keep, "\n")
	}
	wantDump := dump(c.SuperURL())

	// pgbench writes for the whole test; it is stopped at the end, so an
	// exit before that is its failure.
	var benchOut syncBuffer
	bench := exec.Command(c.Bin("pgbench"), "-n", "-c", "2", "-T", "600", "-d", c.SuperURL())
	bench.Stdout, bench.Stderr = &benchOut, &benchOut
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchExited := make(chan struct{})
	var benchErr error
	go func() { benchErr = bench.Wait(); close(benchExited) }()
	defer func() { _ = bench.Process.Kill(); <-benchExited }()
	benchWrites := func(t *testing.T) {
		t.Helper()
		select {
		case <-benchExited:
			t.Fatalf("pgbench stopped writing: %v\n%s", benchErr, benchOut.String())
		default:
		}
	}
	src := connect(t, c.SuperURL())
	history := func(t *testing.T) int {
		t.Helper()
		var n int
		if err := src.QueryRow(ctx, "SELECT count(*) FROM pgbench_history").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	conn := connect(t, p.URL("postgres", "", "postgres"))
	for _, tc := range []struct{ name, sql string }{
		{"plain", "BASE BACKUP TO 'plain'"},
		{"tarzstd", "BASE BACKUP TO 'tarzstd' WITH (FORMAT tar, COMPRESSION zstd)"},
		{"sql", "BASE BACKUP TO 'sql' WITH (METHOD sql)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := history(t)
			if _, err := conn.Exec(ctx, tc.sql, pgx.QueryExecModeSimpleProtocol); err != nil {
				t.Fatalf("%s: %v", tc.sql, err)
			}
			benchWrites(t)
			if after := history(t); after <= before {
				t.Fatalf("pgbench committed nothing while the backup ran (%d transactions before, %d after)", before, after)
			}
			dir := filepath.Join(root, tc.name)
			if tc.name == "tarzstd" {
				dir = extractTarZstd(t, dir)
			}
			if out, err := exec.Command(c.Bin("pg_verifybackup"), dir).CombinedOutput(); err != nil {
				t.Fatalf("pg_verifybackup: %v\n%s", err, out)
			}
			for _, excluded := range []string{"postmaster.pid", "postmaster.opts"} {
				if _, err := os.Stat(filepath.Join(dir, excluded)); err == nil {
					t.Errorf("%s is in the backup", excluded)
				}
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "pg_replslot")); len(ents) != 0 {
				t.Errorf("pg_replslot is not empty in the backup")
			}
			url := startRestored(t, c, dir)
			if got := dump(url); got != wantDump {
				t.Fatalf("pg_dump of keep differs on the restored server")
			}
			var accounts int
			rconn := connect(t, url)
			if err := rconn.QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts").Scan(&accounts); err != nil || accounts != 300000 {
				t.Fatalf("pgbench_accounts on the restored server: %d %v", accounts, err)
			}
			var hist int
			if err := rconn.QueryRow(ctx, "SELECT count(*) FROM pgbench_history").Scan(&hist); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: restored, %d pgbench transactions were in the backup", tc.name, hist)
		})
	}
}

// extractTarZstd unpacks base.tar.zst and pg_wal.tar.zst of a tar backup
// into a data directory, as an operator would before starting it.
func extractTarZstd(t *testing.T, backupDir string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	for _, name := range []string{"base.tar.zst", "pg_wal.tar.zst"} {
		dest := dir
		if name == "pg_wal.tar.zst" {
			dest = filepath.Join(dir, "pg_wal")
		}
		f, err := os.Open(filepath.Join(backupDir, name))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			path := filepath.Join(dest, filepath.Clean("/"+h.Name))
			switch h.Typeflag {
			case tar.TypeDir:
				if err := os.MkdirAll(path, 0o700); err != nil {
					t.Fatal(err)
				}
			case tar.TypeReg:
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					t.Fatal(err)
				}
				out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(out, tr); err != nil {
					t.Fatal(err)
				}
				out.Close()
			}
		}
		zr.Close()
		f.Close()
	}
	manifest, err := os.ReadFile(filepath.Join(backupDir, "backup_manifest"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "backup_manifest"), manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startRestored starts a postmaster on a copy of a backup and returns a URL
// to it once it serves queries; when the test ends it checks that the
// server reported reaching consistency.
func startRestored(t *testing.T, c *pgtest.Cluster, dataDir string) string {
	t.Helper()
	r := pgtest.StartCopy(t, dataDir, pgtest.Options{BinDir: c.BinDir, Password: c.Password}, nil)
	// Cleanups run last first: this one before StartCopy's stops the server.
	t.Cleanup(func() {
		if log := r.ServerLog(); !strings.Contains(log, "consistent recovery state reached") {
			t.Errorf("the restored server did not report reaching consistency:\n%s", log)
		}
	})
	return r.SuperURL()
}
