package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestVerifyBackup: VERIFY BACKUP passes on a plain backup (as
// pg_verifybackup does), on a tar+zstd one whose WAL is only in the WAL
// archive, and on a tar+gzip one in object storage; it finds a changed
// byte and an extra file (pg_verifybackup too), an extra object, and WAL
// that is nowhere; a prefix without a complete backup is 58P01, roles
// without REPLICATION get 42501.
func TestVerifyBackup(t *testing.T) {
	e := newBackupEnv(t)
	e.insert(t, 1, 100)
	e.run(t, "START WAL ARCHIVE TO 'wal'")
	e.waitCaughtUp(t)
	e.run(t, "BASE BACKUP TO 'v/plain'")
	e.run(t, "BASE BACKUP TO 'v/tar' WITH (FORMAT tar, COMPRESSION zstd, WAL none)")
	e.run(t, "BASE BACKUP TO 'storage://offsite/v/s1' WITH (FORMAT tar, COMPRESSION gzip)")
	e.switchWAL(t)
	e.waitCaughtUp(t)
	// The archive's last segment must be complete for v/tar's WAL.
	e.switchWAL(t)
	e.waitCaughtUp(t)

	ok := func(t *testing.T, sql string) {
		t.Helper()
		rows := e.rows(t, sql)
		if len(rows) != 1 || rows[0]["result"] != "ok" || !strings.Contains(rows[0]["detail"], "verified") || !strings.Contains(rows[0]["detail"], "records") {
			t.Fatalf("%s: %v", sql, rows)
		}
		t.Logf("%s: %s", sql, rows[0]["detail"])
	}
	ok(t, "VERIFY BACKUP 'v/plain'")
	ok(t, "VERIFY BACKUP 'v/tar'")
	ok(t, "VERIFY BACKUP 'storage://offsite/v/s1' WITH (WAL on)")
	plain := filepath.Join(e.root, "v", "plain")
	if out, err := exec.Command(e.c.Bin("pg_verifybackup"), plain).CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	}

	// Tampered: a changed byte, an extra file.
	f, err := os.OpenFile(filepath.Join(plain, "PG_VERSION"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("9"), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(plain, "global", "planted"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range e.rows(t, "VERIFY BACKUP 'v/plain'") {
		got[r["path"]] = r["result"]
	}
	if len(got) != 2 || got["PG_VERSION"] != "checksum" || got["global/planted"] != "extra" {
		t.Errorf("tampered plain backup: %v", got)
	}
	out, err := exec.Command(e.c.Bin("pg_verifybackup"), plain).CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("PG_VERSION")) || !bytes.Contains(out, []byte("global/planted")) {
		t.Errorf("pg_verifybackup on the tampered backup: %v\n%s", err, out)
	}

	// An extra object in the storage backup.
	if _, err := e.s3.AdminClient().PutObject(testCtx(t), &s3.PutObjectInput{
		Bucket: aws.String(e.bucket), Key: aws.String("db1/v/s1/planted"), Body: strings.NewReader("x"),
	}); err != nil {
		t.Fatal(err)
	}
	rows := e.rows(t, "VERIFY BACKUP 'storage://offsite/v/s1' WITH (WAL off)")
	if len(rows) != 1 || rows[0]["result"] != "extra" || rows[0]["path"] != "planted" {
		t.Errorf("storage backup with an extra object: %v", rows)
	}

	// WAL nowhere: an empty archive named instead of the running one.
	if err := os.Mkdir(filepath.Join(e.root, "empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	rows = e.rows(t, "VERIFY BACKUP 'v/tar' WITH (WAL_ARCHIVE 'empty')")
	if len(rows) != 1 || rows[0]["result"] != "wal" || !strings.Contains(rows[0]["detail"], "missing") {
		t.Errorf("WAL nowhere: %v", rows)
	}
	rows = e.rows(t, "VERIFY BACKUP 'v/tar' WITH (WAL off)")
	if len(rows) != 1 || rows[0]["result"] != "ok" || !strings.Contains(rows[0]["detail"], "WAL not checked") {
		t.Errorf("WAL off: %v", rows)
	}

	for sql, code := range map[string]string{
		"VERIFY BACKUP 'storage://offsite/v'":    "58P01",
		"VERIFY BACKUP 'nowhere'":                "58P01",
		"VERIFY BACKUP '../x'":                   "42501",
		"VERIFY BACKUP 'storage://nowhere/x'":    "42704",
		"VERIFY BACKUP 'storage://offsite/../x'": "42501",
	} {
		if got := e.sqlstate(t, "postgres", sql); got != code {
			t.Errorf("%s: SQLSTATE %s, want %s", sql, got, code)
		}
	}
	if _, err := e.srv.Exec(testCtx(t), "CREATE ROLE nobody LOGIN"); err != nil {
		t.Fatal(err)
	}
	if got := e.sqlstate(t, "nobody", "VERIFY BACKUP 'v/plain'"); got != "42501" {
		t.Errorf("VERIFY BACKUP as a role without REPLICATION: SQLSTATE %s, want 42501", got)
	}
	// SHOW BACKUPS shows the last verification.
	for _, r := range e.rows(t, "SHOW BACKUPS") {
		if r["path"] == "v/tar" && !strings.HasPrefix(r["last_verification"], "ok") {
			t.Errorf("SHOW BACKUPS: %v", r)
		}
	}
}
