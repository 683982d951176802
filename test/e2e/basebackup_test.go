package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// TestBaseBackupCommand drives BASE BACKUP TO through the proxy with psql
// and pgx: a verified backup, its result row and progress notices, and the
// refusals (no root, privilege, transaction block, path escape, existing
// target), and a cancel that leaves nothing behind.
func TestBaseBackupCommand(t *testing.T) {
	c := cluster(t, pgtest.Options{InitDBArgs: []string{"--data-checksums"}})
	ctx := testCtx(t)
	root := t.TempDir()
	p := startProxy(t, c.URL("", "", "postgres"), "--backup-root", root)
	url := p.URL("postgres", "", "postgres")
	if err := c.Exec(ctx, "CREATE TABLE keep AS SELECT g, md5(g::text) FROM generate_series(1, 50000) g"); err != nil {
		t.Fatal(err)
	}

	out, err := psql(t, c, url, "-c", "BASE BACKUP TO 'nightly/one'")
	if err != nil {
		t.Fatalf("psql BASE BACKUP: %v\n%s", err, out)
	}
	target := filepath.Join(root, "nightly/one")
	for _, want := range []string{target, "plain", "yes", "replication", "NOTICE:  BASE BACKUP"} {
		if !strings.Contains(out, want) {
			t.Fatalf("BASE BACKUP output lacks %q:\n%s", want, out)
		}
	}
	if vout, err := exec.Command(c.Bin("pg_verifybackup"), target).CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, vout)
	}
	st, err := os.Stat(target)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("target mode %v, %v", st.Mode(), err)
	}

	conn := connect(t, url)
	var path, format, manifest string
	var bytes int64
	err = conn.QueryRow(ctx, "BASE BACKUP TO 'two' WITH (FORMAT tar, COMPRESSION zstd)").Scan(&path, &format, &bytes, nil, nil, nil, nil, nil, &manifest, nil)
	if err != nil {
		t.Fatalf("pgx BASE BACKUP (extended protocol): %v", err)
	}
	if path != filepath.Join(root, "two") || format != "tar+zstd" || bytes <= 0 || manifest != "yes" {
		t.Fatalf("row: %q %q %d %q", path, format, bytes, manifest)
	}
	if _, err := os.Stat(filepath.Join(root, "two", "base.tar.zst")); err != nil {
		t.Fatalf("tar+zstd backup: %v", err)
	}

	// Refusals.
	_, err = conn.Exec(ctx, "BASE BACKUP TO 'two'")
	wantCode(t, err, "42P04")
	_, err = conn.Exec(ctx, "BASE BACKUP TO '../escape'")
	if e := wantCode(t, err, "42501"); !strings.Contains(e.Message, "outside the backup root") {
		t.Fatalf("path escape: %+v", e)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), "escape")); err == nil {
		t.Fatal("a directory was created outside the backup root")
	}
	tx, _ := conn.Begin(ctx)
	_, err = tx.Exec(ctx, "BASE BACKUP TO 'intx'")
	wantCode(t, err, "25001")
	tx.Rollback(ctx)
	_, err = conn.Exec(ctx, "SELECT 1; BASE BACKUP TO 'multi'", pgx.QueryExecModeSimpleProtocol)
	wantCode(t, err, "25001")
	if err := c.Exec(ctx, "CREATE ROLE plain LOGIN"); err != nil {
		t.Fatal(err)
	}
	pconn := connect(t, p.URL("plain", "", "postgres"))
	_, err = pconn.Exec(ctx, "BASE BACKUP TO 'noperm'")
	wantCode(t, err, "42501")
	for _, d := range []string{"intx", "multi", "noperm"} {
		if _, err := os.Stat(filepath.Join(root, d)); err == nil {
			t.Fatalf("refused backup left %s", d)
		}
	}
	noroot := startProxy(t, c.URL("", "", "postgres"))
	_, err = connect(t, noroot.URL("postgres", "", "postgres")).Exec(ctx, "BASE BACKUP TO 'x'")
	wantCode(t, err, "55000")

	// Cancel mid-backup (psql's Ctrl-C): 57014, nothing left, no slot, no
	// backup in progress on the server.
	cmd, sout := startPsql(t, c, url, "-c", "BASE BACKUP TO 'slow' WITH (MAX_RATE '64kB')")
	// The backup is under way once the server streams it to the proxy's
	// walsender connection.
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(root, "slow")); return err == nil })
	if _, err := pollActivity(c, "SELECT 1 FROM pg_stat_progress_basebackup WHERE phase = $1", "streaming database files"); err != nil {
		t.Fatalf("the backup does not stream: %v", err)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = waitExit(t, cmd, 30*time.Second, "Ctrl-C")
	if !strings.Contains(sout.String(), "canceling statement due to user request") {
		t.Fatalf("cancelled backup output:\n%s", sout.String())
	}
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(root, "slow")); return os.IsNotExist(err) })
	var slots, running int
	waitFor(t, func() bool {
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&slots); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'").Scan(&running); err != nil {
			t.Fatal(err)
		}
		return slots == 0 && running == 0
	})
}

// TestBaseBackupTablespaceMap relocates a tablespace with psql's
// BASE BACKUP ... TABLESPACE_MAP: the backup links pg_tblspc/OID to the
// mapped directory, which holds the tablespace, and pg_verifybackup passes
// without ignoring anything; a mapping that names no tablespace is refused
// and leaves nothing.
func TestBaseBackupTablespaceMap(t *testing.T) {
	c := cluster(t, pgtest.Options{InitDBArgs: []string{"--data-checksums"}})
	ctx := testCtx(t)
	root := t.TempDir()
	p := startProxy(t, c.URL("", "", "postgres"), "--backup-root", root)
	url := p.URL("postgres", "", "postgres")

	loc, err := pgtest.ServerDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(loc) })
	for _, sql := range []string{
		"CREATE TABLESPACE spc LOCATION '" + loc + "'",
		"CREATE TABLE moved TABLESPACE spc AS SELECT g FROM generate_series(1, 1000) g",
	} {
		if err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	var oid string
	if err := connect(t, url).QueryRow(ctx, "SELECT oid::text FROM pg_tablespace WHERE spcname = 'spc'").Scan(&oid); err != nil {
		t.Fatal(err)
	}

	out, err := psql(t, c, url, "-c", "BASE BACKUP TO 'data' WITH (TABLESPACE_MAP '"+loc+"=spaces/spc')")
	if err != nil {
		t.Fatalf("psql BASE BACKUP: %v\n%s", err, out)
	}
	mapped := filepath.Join(root, "spaces/spc")
	if dest, err := os.Readlink(filepath.Join(root, "data", "pg_tblspc", oid)); err != nil || dest != mapped {
		t.Fatalf("pg_tblspc/%s -> %q, %v; want %q", oid, dest, err, mapped)
	}
	if vdirs, _ := filepath.Glob(filepath.Join(mapped, "PG_*", "*")); len(vdirs) == 0 {
		t.Fatalf("the mapped directory holds no tablespace data")
	}
	if vout, err := exec.Command(c.Bin("pg_verifybackup"), filepath.Join(root, "data")).CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, vout)
	}

	out, err = psql(t, c, url, "-c", "BASE BACKUP TO 'typo' WITH (TABLESPACE_MAP '/srv/nowhere=spaces/x')")
	if err == nil || !strings.Contains(out, "not the location of any tablespace") || !strings.Contains(out, loc) {
		t.Fatalf("mapping of no tablespace: %v\n%s", err, out)
	}
	for _, d := range []string{"typo", "spaces/x"} {
		if _, err := os.Stat(filepath.Join(root, d)); !os.IsNotExist(err) {
			t.Fatalf("refused backup left %s: %v", d, err)
		}
	}
}

// TestBaseBackupConninfo: on a server where every login needs a password
// and the backend URL names none, BASE BACKUP's own connections cannot log
// in (a clear error with a hint), until backup_conninfo gives them a
// REPLICATION role's credentials; the client still logs in as itself.
func TestBaseBackupConninfo(t *testing.T) {
	c := cluster(t, pgtest.Options{AuthMethod: "scram-sha-256", Password: "s3cret!"})
	ctx := testCtx(t)
	if err := c.Exec(ctx, "CREATE ROLE repl LOGIN REPLICATION PASSWORD 'r3pl!'"); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()

	p := startProxy(t, c.URL("", "", "postgres"), "--backup-root", root)
	_, err := connect(t, p.URL("postgres", "s3cret!", "postgres")).Exec(ctx, "BASE BACKUP TO 'nocreds'")
	if pe := pgErr(err); pe == nil || !strings.HasPrefix(pe.Code, "28") || !strings.Contains(pe.Hint, "backup_conninfo") {
		t.Fatalf("BASE BACKUP without credentials: %#v, want a 28xxx error hinting at backup_conninfo", err)
	}
	if _, err := os.Stat(filepath.Join(root, "nocreds")); !os.IsNotExist(err) {
		t.Fatalf("failed backup left its directory: %v", err)
	}

	p = startProxy(t, c.URL("", "", "postgres"), "--backup-root", root,
		"--backup-conninfo", c.URL("repl", "r3pl!", "postgres"))
	for _, method := range []string{"replication", "sql"} {
		target := "creds-" + method
		out, err := psql(t, c, p.URL("postgres", "s3cret!", "postgres"), "-c",
			"BASE BACKUP TO '"+target+"' WITH (METHOD "+method+")")
		if method == "sql" {
			// pg_read_binary_file needs more than REPLICATION.
			if err == nil || !strings.Contains(out, "permission denied") || !strings.Contains(out, "HINT:  METHOD sql reads the data directory") {
				t.Fatalf("METHOD sql as a REPLICATION-only role: %v\n%s", err, out)
			}
			continue
		}
		if err != nil {
			t.Fatalf("BASE BACKUP with backup_conninfo: %v\n%s", err, out)
		}
		if vout, err := exec.Command(c.Bin("pg_verifybackup"), filepath.Join(root, target)).CombinedOutput(); err != nil {
			t.Fatalf("pg_verifybackup: %v\n%s", err, vout)
		}
	}
}
