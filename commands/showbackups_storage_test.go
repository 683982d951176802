package commands_test

import (
	"context"
	"testing"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/s3test"
	"github.com/pgverbs/pgverbs/storage"
	"github.com/pgverbs/pgverbs/walarchive"
)

// TestShowBackupsStorage: below a prefix, SHOW BACKUPS lists the prefixes
// with a summary (not one inside another, not one without a summary),
// with the verification record, and finds the WAL a backup without its
// own in what the archive uploaded, when the local copies are gone.
func TestShowBackupsStorage(t *testing.T) {
	srv := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	ctx := context.Background()
	stores, err := storage.NewStores(ctx, []storage.Config{{
		Name: "offsite", Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.Bucket(t, "show"), Prefix: "db1", PathStyle: true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := stores.Lookup("offsite")
	summary := `{"version":1,"label":"nightly","format":"tar","compression":"zstd","method":"replication","wal":"none",
"start_lsn":"0/2000028","end_lsn":"0/3000100","timeline":1,"start_time":"2026-12-01T10:00:00Z","end_time":"2026-12-01T10:05:00Z",
"bytes":999,"manifest":true,"objects":[{"name":"base.tar.zst","size":1000},{"name":"backup_manifest","size":234}]}`
	for name, data := range map[string]string{
		"n/b1/base.tar.zst":                  "x",
		"n/b1/backup_manifest":               "{}",
		"n/b1/pgverbs_backup.json":           summary,
		"n/b1/pgverbs_verify.json":           `{"time":"2026-12-02T00:00:00Z","result":"1 problem"}`,
		"n/b1/inner/pgverbs_backup.json":     summary,
		"n/b2/base.tar.zst":                  "not complete",
		"wal/000000010000000000000002.zst":   "z",
		"wal/000000010000000000000003":       "s",
		"wal/" + walarchive.StateFile:        "{}",
		"other/000000010000000000000003.zst": "elsewhere",
	} {
		if err := st.Put(ctx, name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	walDir := t.TempDir()
	writeFile(t, walDir, walarchive.StateFile, []byte(`{"segment_size":16777216}`))
	a := &fakeArchiver{status: &walarchive.Status{
		State: walarchive.Streaming, Dir: walDir, Timeline: 1, Flushed: 0x4000000,
		Upload: walarchive.UploadStatus{Storage: "storage://offsite/wal"},
	}}
	show := func(sql string) [][]*string {
		t.Helper()
		reg := commands.NewRegistry()
		reg.Register(commands.NewShowBackups("", stores, a))
		stmts, _ := reg.Match(sql)
		prep, err := stmts[0].Command.Parse(stmts[0].SQL)
		if err != nil {
			t.Fatal(err)
		}
		out, err := prep.Execute(ctx, &walConn{t: t, replication: true})
		if err != nil {
			t.Fatal(err)
		}
		return out.Rows
	}
	rows := show("SHOW BACKUPS IN 'storage://offsite/n'")
	want := "storage://offsite/n/b1|nightly|tar|zstd|0/2000028|0/3000100|1|2026-12-01 10:00:00+00|2026-12-01 10:05:00+00|1234|t|1 problem (2026-12-02 00:00:00+00)"
	if len(rows) != 1 || rowText(rows[0]) != want {
		t.Fatalf("rows %v, want\n%s", rows, want)
	}
	if got := rowText(rows[0]); got != want {
		t.Errorf("row\n%s\nwant\n%s", got, want)
	}
	// Segment 3 elsewhere does not count.
	if err := st.Delete(ctx, "wal/000000010000000000000003"); err != nil {
		t.Fatal(err)
	}
	if rows := show("SHOW BACKUPS IN 'storage://offsite'"); len(rows) != 1 || *rows[0][10] != "f" {
		t.Errorf("without segment 3: %v", rows)
	}
}
