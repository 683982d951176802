package commands_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/DataDog/zstd"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walarchive"
)

func TestParseShowBackups(t *testing.T) {
	for sql, want := range map[string]string{
		"SHOW BACKUPS":                        "",
		"show backups;":                       "",
		"SHOW BACKUPS IN 'nightly'":           "nightly",
		"SHOW BACKUPS in 'storage://t/a/b' ;": "storage://t/a/b",
		"SHOW BACKUPS IN 'it''s'":             "it's",
	} {
		st, err := commands.ParseShowBackups(sql)
		if err != nil {
			t.Errorf("%q: %v", sql, err)
			continue
		}
		if st.In != want {
			t.Errorf("%q: In %q, want %q", sql, st.In, want)
		}
	}
	for sql, code := range map[string]pgerr.Code{
		"SHOW BACKUPS IN":           pgerr.SyntaxError,
		"SHOW BACKUPS IN nightly":   pgerr.SyntaxError,
		"SHOW BACKUPS IN E'x'":      pgerr.SyntaxError,
		"SHOW BACKUPS IN 'a' 'b'":   pgerr.SyntaxError,
		"SHOW BACKUPS IN ''":        pgerr.InvalidParameterValue,
		"SHOW BACKUPS FROM 'x'":     pgerr.SyntaxError,
		"SHOW BACKUP":               pgerr.SyntaxError,
		"SHOW BACKUPS; SHOW BACKUP": pgerr.SyntaxError,
	} {
		_, err := commands.ParseShowBackups(sql)
		wantPgCode(t, err, code)
	}
}

// writeFile writes name (slash-separated) below dir.
func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

const (
	showLabel = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n" +
		"BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-12-01 10:00:00 UTC\nLABEL: nightly one\nSTART TIMELINE: 1\n"
	showManifest = `{ "PostgreSQL-Backup-Manifest-Version": 1,
"Files": [
{ "Path": "backup_label", "Size": 10, "Last-Modified": "2026-12-01 10:00:01 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "00000000" }
],
"WAL-Ranges": [
{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/3000100" }
],
"Manifest-Checksum": "00"}
`
)

// showBackupsRoot builds a backup root: a plain backup with its WAL, a
// tar+zstd one without (its label inside base.tar, a verification
// record beside it), one being written, a WAL archive, and a backup
// nested inside the plain one that must not be listed.
func showBackupsRoot(t *testing.T) string {
	root := t.TempDir()
	writeFile(t, root, "nightly/plain/backup_label", []byte(showLabel))
	writeFile(t, root, "nightly/plain/backup_manifest", []byte(showManifest))
	writeFile(t, root, "nightly/plain/PG_VERSION", []byte("16\n"))
	for _, seg := range []string{"000000010000000000000002", "000000010000000000000003"} {
		// 16 MB segments, sparse.
		writeFile(t, root, "nightly/plain/pg_wal/"+seg, nil)
		if err := os.Truncate(filepath.Join(root, "nightly/plain/pg_wal", seg), 16<<20); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, root, "nightly/plain/nested/backup_manifest", []byte(showManifest))

	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	label := strings.Replace(showLabel, "LABEL: nightly one", "LABEL: tarred", 1)
	for _, f := range []struct{ name, data string }{{"backup_label", label}, {"PG_VERSION", "16\n"}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o600, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.data))
	}
	tw.Close()
	z, err := zstd.Compress(nil, tb.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "tarred/base.tar.zst", z)
	writeFile(t, root, "tarred/backup_manifest", []byte(showManifest))
	writeFile(t, root, "tarred"+commands.VerifyResultSuffix, []byte(`{"time":"2026-12-02T03:04:05Z","result":"2 problems"}`))

	writeFile(t, root, "busy/backup_manifest", []byte(showManifest))
	writeFile(t, root, "busy/.pgverbs-backup-in-progress", []byte("pid 1\n"))
	writeFile(t, root, "wal/"+walarchive.StateFile, []byte("{}"))
	writeFile(t, root, "wal/backup_manifest", []byte(showManifest))
	return root
}

func showBackupsRun(t *testing.T, root string, a walarchive.Archiver, c commands.Conn, sql string) (*commands.Outcome, error) {
	t.Helper()
	reg := commands.NewRegistry()
	reg.Register(commands.NewShowBackups(root, nil, a))
	stmts, found := reg.Match(sql)
	if !found || len(stmts) != 1 {
		t.Fatalf("Match(%q): %v", sql, found)
	}
	prep, err := stmts[0].Command.Parse(stmts[0].SQL)
	if err != nil {
		return nil, err
	}
	if got := columnNames(prep); got != "path,label,format,compression,start_lsn,end_lsn,timeline,start_time,end_time,bytes,wal_present,last_verification" {
		t.Fatalf("columns %s", got)
	}
	return prep.Execute(context.Background(), c)
}

func TestShowBackupsLocal(t *testing.T) {
	root := showBackupsRoot(t)
	c := &walConn{t: t, monitor: true}
	// An archive holding segment 2 whole and 3 up to its durable end.
	a := &fakeArchiver{
		status: &walarchive.Status{State: walarchive.Streaming, Timeline: 1, Flushed: 0x3000200},
		segments: []walarchive.SegmentInfo{
			{Name: "000000010000000000000002", Timeline: 1, Start: 0x2000000, End: 0x3000000, State: walarchive.SegCompressed},
			{Name: "000000010000000000000003.partial", Timeline: 1, Start: 0x3000000, End: 0x4000000, State: walarchive.SegPartial},
		},
	}
	out, err := showBackupsRun(t, root, a, c, "SHOW BACKUPS")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out.Rows {
		// end_time is the manifest's modification time: not fixed.
		r[8] = nil
		got = append(got, rowText(r))
	}
	plainBytes := len(showLabel) + 2*len(showManifest) + 3 + 32<<20 // nested/ counts: it is inside
	want := []string{
		"nightly/plain|nightly one|plain|none|0/2000028|0/3000100|1|2026-12-01 10:00:00+00|NULL|" + strconv.Itoa(plainBytes) + "|t|NULL",
		"tarred|tarred|tar|zstd|0/2000028|0/3000100|1|2026-12-01 10:00:00+00|NULL|" + strconv.Itoa(fileSize(t, root, "tarred/base.tar.zst")+len(showManifest)) + "|t|2 problems (2026-12-02 03:04:05+00)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(c.notices) > 0 {
		t.Errorf("notices: %v", c.notices)
	}

	// Without the archive's partial segment, the tar backup lacks WAL;
	// without an archive at all too.
	a.status.Flushed = 0x3000000
	out, err = showBackupsRun(t, root, a, c, "SHOW BACKUPS IN 'tarred'")
	if err != nil || len(out.Rows) != 1 || *out.Rows[0][10] != "f" || *out.Rows[0][0] != "tarred" {
		t.Fatalf("IN 'tarred': %v %v", err, out)
	}
	out, err = showBackupsRun(t, root, nil, c, "SHOW BACKUPS IN '"+filepath.Join(root, "nightly")+"'")
	if err != nil || len(out.Rows) != 1 || *out.Rows[0][0] != "nightly/plain" || *out.Rows[0][10] != "t" {
		t.Fatalf("IN absolute nightly: %v %s", err, rowText(out.Rows[0]))
	}
	// A stopped archive (Segments fails) still holds its WAL.
	walDir := t.TempDir()
	writeFile(t, walDir, walarchive.StateFile, []byte(`{"segment_size":16777216}`))
	writeFile(t, walDir, "000000010000000000000002.zst", []byte("z"))
	writeFile(t, walDir, "000000010000000000000003", []byte("s"))
	stopped := &fakeArchiver{err: errors.New("not running"), status: &walarchive.Status{State: walarchive.Stopped, Dir: walDir}}
	out, err = showBackupsRun(t, root, stopped, c, "SHOW BACKUPS IN 'tarred'")
	if err != nil || len(out.Rows) != 1 || *out.Rows[0][10] != "t" {
		t.Fatalf("IN 'tarred' with a stopped archive: %v %v", err, out)
	}
	// A backup being written is not listed, nor refused.
	out, err = showBackupsRun(t, root, nil, c, "SHOW BACKUPS IN 'busy'")
	if err != nil || len(out.Rows) != 0 {
		t.Fatalf("IN 'busy': %v %v", err, out)
	}
}

func fileSize(t *testing.T, root, name string) int {
	t.Helper()
	fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

func TestShowBackupsRefusals(t *testing.T) {
	root := showBackupsRoot(t)
	_, err := showBackupsRun(t, root, nil, &walConn{t: t}, "SHOW BACKUPS")
	wantPgCode(t, err, pgerr.InsufficientPrivilege)
	c := &walConn{t: t, replication: true}
	_, err = showBackupsRun(t, root, nil, c, "SHOW BACKUPS IN '../etc'")
	wantPgCode(t, err, pgerr.InsufficientPrivilege)
	_, err = showBackupsRun(t, root, nil, c, "SHOW BACKUPS IN '/etc'")
	wantPgCode(t, err, pgerr.InsufficientPrivilege)
	_, err = showBackupsRun(t, root, nil, c, "SHOW BACKUPS IN 'missing'")
	wantPgCode(t, err, pgerr.UndefinedFile)
	pe := wantPgCode(t, func() error {
		_, err := showBackupsRun(t, root, nil, c, "SHOW BACKUPS IN 'storage://nope/x'")
		return err
	}(), pgerr.UndefinedObject)
	if pe.Hint == "" {
		t.Errorf("unknown target: no hint")
	}
	_, err = showBackupsRun(t, root, nil, c, "SHOW BACKUPS IN 'storage://nope/../x'")
	wantPgCode(t, err, pgerr.InsufficientPrivilege)
	_, err = showBackupsRun(t, "", nil, c, "SHOW BACKUPS")
	wantPgCode(t, err, pgerr.ObjectNotInPrerequisiteState)
}
