package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestShowBackups: SHOW BACKUPS lists the complete backups below the
// backup root (a plain one with its WAL, a tar+zstd one whose WAL is only
// in the archive, not one being written, not the archive) and below a
// storage target's prefix, with what their manifests, labels and
// summaries say, and the last verification recorded beside a backup;
// escapes, unknown targets and roles without the right are refused.
func TestShowBackups(t *testing.T) {
	e := newBackupEnv(t)
	e.insert(t, 1, 100)
	e.run(t, "START WAL ARCHIVE TO 'wal'")
	e.waitCaughtUp(t)
	e.run(t, "BASE BACKUP TO 'nightly/plain'")
	e.run(t, "BASE BACKUP TO 'nightly/tar' WITH (FORMAT tar, COMPRESSION zstd, WAL none)")
	e.run(t, "BASE BACKUP TO 'storage://offsite/n/b1' WITH (FORMAT tar, COMPRESSION lz4)")
	e.switchWAL(t)
	e.waitCaughtUp(t)
	if err := os.MkdirAll(filepath.Join(e.root, "busy"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"backup_manifest", ".pgverbs-backup-in-progress"} {
		if err := os.WriteFile(filepath.Join(e.root, "busy", f), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	verify := `{"time":"2026-12-04T01:02:03Z","result":"ok"}`
	if err := os.WriteFile(filepath.Join(e.root, "nightly", "tar.pgverbs_verify.json"), []byte(verify), 0o600); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, r map[string]string, path, format, compression, verification string) {
		t.Helper()
		want := map[string]string{
			"path": path, "label": "pgverbs base backup", "format": format, "compression": compression,
			"timeline": "1", "wal_present": "t", "last_verification": verification,
		}
		for k, v := range want {
			if r[k] != v {
				t.Errorf("%s: %s = %q, want %q (row %v)", path, k, r[k], v, r)
			}
		}
		for _, k := range []string{"start_lsn", "end_lsn", "start_time", "end_time"} {
			if r[k] == "" {
				t.Errorf("%s: %s is NULL (row %v)", path, k, r)
			}
		}
		if r["start_lsn"] != "" && r["end_lsn"] != "" && lsnOf(t, r["start_lsn"]) > lsnOf(t, r["end_lsn"]) {
			t.Errorf("%s: start_lsn %s after end_lsn %s", path, r["start_lsn"], r["end_lsn"])
		}
		if n, err := strconv.ParseInt(r["bytes"], 10, 64); err != nil || n < 1<<20 {
			t.Errorf("%s: bytes %q", path, r["bytes"])
		}
	}
	rows := e.rows(t, "SHOW BACKUPS")
	if len(rows) != 2 {
		t.Fatalf("SHOW BACKUPS: %d rows, want 2: %v", len(rows), rows)
	}
	check(t, rows[0], "nightly/plain", "plain", "none", "")
	check(t, rows[1], "nightly/tar", "tar", "zstd", "ok (2026-12-04 01:02:03+00)")

	rows = e.rows(t, "SHOW BACKUPS IN 'nightly/tar'")
	if len(rows) != 1 || rows[0]["path"] != "nightly/tar" {
		t.Errorf("SHOW BACKUPS IN 'nightly/tar': %v", rows)
	}
	rows = e.rows(t, "SHOW BACKUPS IN 'storage://offsite'")
	if len(rows) != 1 {
		t.Fatalf("SHOW BACKUPS IN storage: %d rows, want 1: %v", len(rows), rows)
	}
	check(t, rows[0], "storage://offsite/n/b1", "tar", "lz4", "")

	for sql, code := range map[string]string{
		"SHOW BACKUPS IN '../elsewhere'":           "42501",
		"SHOW BACKUPS IN 'storage://nowhere/x'":    "42704",
		"SHOW BACKUPS IN 'storage://offsite/../x'": "42501",
		"SHOW BACKUPS IN 'missing'":                "58P01",
	} {
		if got := e.sqlstate(t, "postgres", sql); got != code {
			t.Errorf("%s: SQLSTATE %s, want %s", sql, got, code)
		}
	}
	if _, err := e.srv.Exec(testCtx(t), "CREATE ROLE watcher LOGIN"); err != nil {
		t.Fatal(err)
	}
	if got := e.sqlstate(t, "watcher", "SHOW BACKUPS"); got != "42501" {
		t.Errorf("SHOW BACKUPS as a role without pg_monitor: SQLSTATE %s, want 42501", got)
	}
	if _, err := e.srv.Exec(testCtx(t), "GRANT pg_monitor TO watcher"); err != nil {
		t.Fatal(err)
	}
	if out, err := psql(t, e.c, e.url("watcher"), "-c", "SHOW BACKUPS"); err != nil {
		t.Errorf("SHOW BACKUPS as a member of pg_monitor: %v\n%s", err, out)
	}
}
