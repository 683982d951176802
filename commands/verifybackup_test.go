package commands_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/backup"
	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walarchive"
)

func TestParseVerifyBackup(t *testing.T) {
	for _, c := range []struct {
		sql, path, archive string
		wal                bool
	}{
		{"VERIFY BACKUP 'nightly/1'", "nightly/1", "", true},
		{"verify backup 'a''b';", "a'b", "", true},
		{"VERIFY BACKUP 'x' WITH (WAL off)", "x", "", false},
		{"VERIFY BACKUP 'x' WITH (wal 'OFF')", "x", "", false},
		{"VERIFY BACKUP 'x' WITH (WAL)", "x", "", true},
		{"VERIFY BACKUP 'x' WITH (WAL on, WAL_ARCHIVE 'storage://s/wal')", "x", "storage://s/wal", true},
	} {
		st, err := commands.ParseVerifyBackup(c.sql)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if st.Path != c.path || st.WAL != c.wal || st.WALArchive != c.archive {
			t.Errorf("%s: %+v", c.sql, st)
		}
	}
	for _, c := range []struct {
		sql  string
		code pgerr.Code
	}{
		{"VERIFY BACKUP", pgerr.SyntaxError},
		{"VERIFY BACKUP x", pgerr.SyntaxError},
		{"VERIFY BACKUP ''", pgerr.InvalidParameterValue},
		{"VERIFY BACKUP 'x' WITH (WAL maybe)", pgerr.InvalidParameterValue},
		{"VERIFY BACKUP 'x' WITH (FORMAT tar)", pgerr.InvalidParameterValue},
		{"VERIFY BACKUP 'x' WITH (WAL on, WAL off)", pgerr.SyntaxError},
		{"VERIFY BACKUP 'x' WITH (WAL_ARCHIVE dir)", pgerr.SyntaxError},
		{"VERIFY BACKUP 'x' extra", pgerr.SyntaxError},
	} {
		_, err := commands.ParseVerifyBackup(c.sql)
		var pe *pgerr.Error
		if !errors.As(err, &pe) || pe.Code != c.code {
			t.Errorf("%s: %v, want %s", c.sql, err, c.code)
		}
	}
}

// writeBackup writes a plain backup of files with its manifest (CRC32C,
// WAL range 0/1000028-0/1000100 on timeline 1) into dir.
func writeBackup(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [")
	first := true
	for p, content := range files {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700))
		must(t, os.WriteFile(filepath.Join(dir, p), []byte(content), 0o600))
		var sum [4]byte
		binary.LittleEndian.PutUint32(sum[:], crc32.Checksum([]byte(content), crc32.MakeTable(crc32.Castagnoli)))
		if !first {
			b.WriteString(",")
		}
		first = false
		fmt.Fprintf(&b, "\n{ \"Path\": %q, \"Size\": %d, \"Last-Modified\": \"2026-12-04 00:00:00 GMT\", \"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"%s\" }", p, len(content), hex.EncodeToString(sum[:]))
	}
	b.WriteString("\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/1000028\", \"End-LSN\": \"0/1000100\" }\n],\n")
	sum := sha256.Sum256([]byte(b.String()))
	fmt.Fprintf(&b, "\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sum[:]))
	must(t, os.WriteFile(filepath.Join(dir, "backup_manifest"), []byte(b.String()), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifyBackupExecute(t *testing.T) {
	root := t.TempDir()
	writeBackup(t, filepath.Join(root, "b1"), map[string]string{"PG_VERSION": "15\n", "global/pg_control": "control", "base/1/1259": "rel"})
	wal := t.TempDir()
	a := &fakeArchiver{status: &walarchive.Status{State: walarchive.Streaming, Dir: wal}}
	reg := commands.NewRegistry()
	reg.Register(commands.NewVerifyBackup(root, nil, a))
	run := func(sql string, replication bool) (*commands.Outcome, error) {
		t.Helper()
		stmts, found := reg.Match(sql)
		if !found || len(stmts) != 1 {
			t.Fatalf("Match(%q): %v", sql, found)
		}
		prep, err := stmts[0].Command.Parse(stmts[0].SQL)
		if err != nil {
			return nil, err
		}
		if _, ok := prep.(commands.Standalone); !ok {
			t.Errorf("VERIFY BACKUP is not standalone")
		}
		return prep.Execute(context.Background(), &walConn{t: t, replication: replication})
	}
	rows := func(out *commands.Outcome) string {
		var s []string
		for _, r := range out.Rows {
			s = append(s, *r[0]+" "+*r[1])
		}
		return strings.Join(s, "\n")
	}

	out, err := run("VERIFY BACKUP 'b1' WITH (WAL off)", true)
	must(t, err)
	if len(out.Rows) != 1 || *out.Rows[0][0] != "ok" || !strings.Contains(*out.Rows[0][2], "verified: 3 files, 13 bytes, WAL not checked") || out.Tag != "VERIFY BACKUP" {
		t.Errorf("rows %q, tag %s", rows(out), out.Tag)
	} else {
		t.Log(*out.Rows[0][2])
	}
	rec, err := os.ReadFile(filepath.Join(root, "b1"+commands.VerifyResultSuffix))
	if err != nil || !strings.Contains(string(rec), `"result":"ok"`) {
		t.Errorf("verification record %s, %v", rec, err)
	}
	if commands.VerifyResultName != backup.VerifyRecordName {
		t.Errorf("SHOW BACKUPS reads %s, VERIFY BACKUP ignores %s", commands.VerifyResultName, backup.VerifyRecordName)
	}
	// WAL on: the segment is neither in the backup nor in the archive.
	out, err = run("VERIFY BACKUP 'b1'", true)
	must(t, err)
	if got := rows(out); got != "wal pg_wal/000000010000000000000001" || !strings.Contains(*out.Rows[0][2], "looked in the WAL archive") {
		t.Errorf("rows %q: %v", got, *out.Rows[0][2])
	}
	// Tampered: a problem per row.
	must(t, os.WriteFile(filepath.Join(root, "b1", "PG_VERSION"), []byte("16\n"), 0o600))
	must(t, os.Remove(filepath.Join(root, "b1", "base/1/1259")))
	must(t, os.WriteFile(filepath.Join(root, "b1", "extra"), nil, 0o600))
	out, err = run("VERIFY BACKUP 'b1' WITH (WAL off)", true)
	must(t, err)
	if got := rows(out); got != "checksum PG_VERSION\nextra extra\nmissing base/1/1259" {
		t.Errorf("rows %q", got)
	}
	if rec, _ := os.ReadFile(filepath.Join(root, "b1"+commands.VerifyResultSuffix)); !strings.Contains(string(rec), `"result":"3 problems"`) {
		t.Errorf("verification record %s", rec)
	}

	for _, c := range []struct {
		sql         string
		replication bool
		code        pgerr.Code
	}{
		{"VERIFY BACKUP 'b1'", false, pgerr.InsufficientPrivilege},
		{"VERIFY BACKUP '../b1'", true, pgerr.InsufficientPrivilege},
		{"VERIFY BACKUP 'nope'", true, pgerr.UndefinedFile},
		{"VERIFY BACKUP 'storage://offsite/b1'", true, pgerr.UndefinedObject},
		{"VERIFY BACKUP 'storage://offsite/../b1'", true, pgerr.InsufficientPrivilege},
		{"VERIFY BACKUP 'b1' WITH (WAL_ARCHIVE 'storage://offsite/wal')", true, pgerr.UndefinedObject},
	} {
		_, err := run(c.sql, c.replication)
		var pe *pgerr.Error
		if !errors.As(err, &pe) || pe.Code != c.code {
			t.Errorf("%s: %v, want %s", c.sql, err, c.code)
		}
	}
}
