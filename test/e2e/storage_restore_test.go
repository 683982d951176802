package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// restoredLog matches the server's log line for a file restore_command
// fetched.
var restoredLog = regexp.MustCompile(`restored log file "([0-9A-F]{24})" from archive`)

// TestStorageRestoreChain is the whole way through object storage: the
// WAL archive in a storage target (its staging copies removed once
// uploaded), a BASE BACKUP there without WAL of its own, VERIFY BACKUP on
// the stored backup (its WAL read from the archive's objects), backup-get
// into a new data directory (pg_verifybackup passes), and PostgreSQL
// recovering on it with restore_command through pgverbs wal-get, which
// can only find the WAL in the store: every row written before the
// backup's end, and after it, is there.
func TestStorageRestoreChain(t *testing.T) {
	e := newBackupEnv(t)
	e.insert(t, 1, 1000)
	// MAX_SIZE 1kB: every uploaded segment leaves the staging directory.
	e.run(t, "START WAL ARCHIVE TO 'storage://offsite/wal' WITH (MAX_SIZE '1kB')")
	e.waitCaughtUp(t)
	out := e.run(t, "BASE BACKUP TO 'storage://offsite/nightly/chain' WITH (FORMAT tar, COMPRESSION zstd, WAL none)")
	if !strings.Contains(out, "storage://offsite/nightly/chain") {
		t.Fatalf("BASE BACKUP:\n%s", out)
	}
	e.insert(t, 1001, 2000)
	last := e.switchWAL(t)
	e.waitCaughtUp(t)
	staging := filepath.Join(e.root, ".pgverbs-wal", "offsite", "wal")
	archiveWait(t, "every completed segment uploaded", func() bool {
		s := e.status(t)
		return s["upload_pending_files"] == "0" && s["newest_segment"] >= last
	})

	out = e.run(t, "VERIFY BACKUP 'storage://offsite/nightly/chain'")
	if !strings.Contains(out, " ok ") || !strings.Contains(out, "WAL") {
		t.Fatalf("VERIFY BACKUP of the stored backup:\n%s", out)
	}
	out = e.run(t, "SHOW BACKUPS IN 'storage://offsite/nightly'")
	if !strings.Contains(out, "storage://offsite/nightly/chain") || !strings.Contains(out, "ok (") {
		t.Fatalf("SHOW BACKUPS:\n%s", out)
	}

	// Typed columns through pgx (timestamptz and pg_lsn in binary).
	var started, ended time.Time
	var startLSN string
	if err := connect(t, e.url("postgres")).QueryRow(testCtx(t), "SHOW BACKUPS IN 'storage://offsite/nightly'").
		Scan(nil, nil, nil, nil, &startLSN, nil, nil, &started, &ended, nil, nil, nil); err != nil {
		t.Fatalf("SHOW BACKUPS through pgx: %v", err)
	}
	if started.IsZero() || ended.Before(started) || time.Since(started) > time.Hour || startLSN == "" {
		t.Fatalf("SHOW BACKUPS: start %v, end %v, start_lsn %q", started, ended, startLSN)
	}

	bin, token := serverBinDir(t, e.tokenFile)
	dest := filepath.Join(t.TempDir(), "restored")
	code, gout := backupGet(t, bin, "--config", e.cfg, "--restore-command", e.base, "--token-file", token, "storage://offsite/nightly/chain", dest)
	if code != 0 {
		t.Fatalf("backup-get: exit %d\n%s", code, gout)
	}
	// The backup holds no WAL (VERIFY BACKUP read it from the archive):
	// pg_verifybackup checks the files only.
	if vout, err := exec.Command(e.c.Bin("pg_verifybackup"), "--no-parse-wal", dest).CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, vout)
	}
	// What the staging directory still holds: recovery must fetch more
	// than that, from the store.
	local := map[string]bool{}
	if ents, err := os.ReadDir(staging); err == nil {
		for _, d := range ents {
			local[strings.TrimSuffix(d.Name(), ".zst")] = true
		}
	}
	r := pgtest.StartCopy(t, dest, pgtest.Options{BinDir: e.c.BinDir, Password: e.c.Password}, nil)
	if _, err := pollActivity(r, "SELECT 1 WHERE NOT pg_is_in_recovery() AND $1", true); err != nil {
		t.Fatalf("the restored server did not end recovery: %v\n%s", err, r.ServerLog())
	}
	var n, maxID int
	if err := connect(t, r.SuperURL()).QueryRow(testCtx(t), "SELECT count(*), max(id) FROM kept").Scan(&n, &maxID); err != nil {
		t.Fatalf("the restored server: %v\n%s", err, r.ServerLog())
	}
	if n != 2000 || maxID != 2000 {
		t.Fatalf("restored %d rows up to id %d, want 2000", n, maxID)
	}
	fromStore := 0
	for _, m := range restoredLog.FindAllStringSubmatch(r.ServerLog(), -1) {
		if !local[m[1]] {
			fromStore++
		}
	}
	if fromStore == 0 {
		t.Fatalf("recovery fetched no WAL that only the store has (staging holds %v):\n%s", local, r.ServerLog())
	}
}
