package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/DataDog/zstd"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/internal/s3test"
)

// storageTarget is one target of a test's storage map.
type storageTarget struct {
	name, endpoint, bucket, prefix, profile string
}

// writeStorageConfig writes a config file with the given storage targets
// and a shared-credentials file with two profiles: "good" (the server's
// bucket-scoped key) and "bad" (a wrong secret).
func writeStorageConfig(t *testing.T, srv *s3test.Server, targets ...storageTarget) string {
	t.Helper()
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	ini := fmt.Sprintf("[good]\naws_access_key_id = %s\naws_secret_access_key = %s\n\n[bad]\naws_access_key_id = %s\naws_secret_access_key = not-the-secret\n",
		srv.AccessKey, srv.SecretKey, srv.AccessKey)
	if err := os.WriteFile(creds, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("storage:\n")
	for _, tg := range targets {
		endpoint := tg.endpoint
		if endpoint == "" {
			endpoint = srv.Endpoint
		}
		profile := tg.profile
		if profile == "" {
			profile = "good"
		}
		fmt.Fprintf(&b, "  %s:\n    endpoint: %s\n    region: %s\n    bucket: %s\n    credentials_file: %s\n    profile: %s\n    part_size: 5MB\n",
			tg.name, endpoint, srv.Region, tg.bucket, creds, profile)
		if tg.prefix != "" {
			fmt.Fprintf(&b, "    prefix: %s\n", tg.prefix)
		}
	}
	file := filepath.Join(dir, "pgverbs.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// listKeys lists every object key of bucket below prefix.
func listKeys(t *testing.T, c *s3.Client, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list %s/%s: %v", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	sort.Strings(keys)
	return keys
}

// openUploads counts the multipart uploads open in bucket below prefix.
func openUploads(t *testing.T, c *s3.Client, bucket, prefix string) int {
	t.Helper()
	out, err := c.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list uploads: %v", err)
	}
	return len(out.Uploads)
}

// TestBaseBackupStorage takes BASE BACKUPs to a real S3 server
// (SeaweedFS): the objects of a complete backup with its summary written
// last and a base.tar that holds the data directory, the refusals that
// must write nothing (plain format, unknown target, path escapes,
// existing prefix, wrong credentials, missing bucket), and the faults
// that must leave no backup that looks complete and no open upload: a
// part corrupted on the way (the store rejects its checksum), the store
// stopped mid-backup, pgverbs killed mid-upload and restarted.
func TestBaseBackupStorage(t *testing.T) {
	srv := s3test.Start(t)
	c := cluster(t, pgtest.Options{InitDBArgs: []string{"--data-checksums"}})
	ctx := testCtx(t)
	const bucket = "pgbackups"
	srv.Bucket(t, bucket)
	admin := srv.AdminClient()
	fault := s3test.NewFaultProxy(t, srv.Addr())
	cfg := writeStorageConfig(t, srv,
		storageTarget{name: "offsite", bucket: bucket, prefix: "db1"},
		storageTarget{name: "badcreds", bucket: bucket, profile: "bad"},
		storageTarget{name: "nobucket", bucket: "no-such-bucket"},
		storageTarget{name: "faulty", bucket: bucket, prefix: "faulty", endpoint: fault.Endpoint},
	)
	root := t.TempDir()
	p := startProxy(t, c.URL("", "", "postgres"), "--backup-root", root, "--config", cfg)
	url := p.URL("postgres", "", "postgres")
	// About 40 MB of table, so that base.tar takes several 5 MB parts.
	if err := c.Exec(ctx, "CREATE TABLE keep AS SELECT g, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 400000) g"); err != nil {
		t.Fatal(err)
	}

	out, err := psql(t, c, url, "-c", "BASE BACKUP TO 'storage://offsite/nightly/one' WITH (FORMAT tar, COMPRESSION zstd)")
	if err != nil {
		t.Fatalf("BASE BACKUP to storage: %v\n%s", err, out)
	}
	for _, want := range []string{"storage://offsite/nightly/one", "tar+zstd", "NOTICE:  BASE BACKUP"} {
		if !strings.Contains(out, want) {
			t.Fatalf("BASE BACKUP output lacks %q:\n%s", want, out)
		}
	}
	keys := listKeys(t, admin, bucket, "db1/nightly/one/")
	want := []string{"db1/nightly/one/backup_manifest", "db1/nightly/one/base.tar.zst", "db1/nightly/one/pg_wal.tar.zst", "db1/nightly/one/pgverbs_backup.json"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("objects of the backup:\n%v\nwant\n%v", keys, want)
	}
	var sum struct {
		StartLSN string `json:"start_lsn"`
		Objects  []struct {
			Name string
			Size int64
		}
	}
	get := func(key string) io.ReadCloser {
		t.Helper()
		o, err := admin.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		return o.Body
	}
	body := get("db1/nightly/one/pgverbs_backup.json")
	if err := json.NewDecoder(body).Decode(&sum); err != nil {
		t.Fatal(err)
	}
	body.Close()
	if sum.StartLSN == "" || len(sum.Objects) != 3 {
		t.Fatalf("summary: %+v", sum)
	}
	// base.tar.zst holds the data directory, the table's files among them.
	zr := zstd.NewReader(get("db1/nightly/one/base.tar.zst"))
	tr := tar.NewReader(zr)
	names := map[string]bool{}
	var dataBytes int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("base.tar.zst: %v", err)
		}
		names[h.Name] = true
		dataBytes += h.Size
	}
	zr.Close()
	if !names["PG_VERSION"] || !names["global/pg_control"] || !names["backup_label"] || dataBytes < 40<<20 {
		t.Fatalf("base.tar.zst: %d entries, %d bytes, PG_VERSION %v", len(names), dataBytes, names["PG_VERSION"])
	}
	if n := openUploads(t, admin, bucket, "db1/"); n != 0 {
		t.Fatalf("%d uploads left open after a complete backup", n)
	}

	conn := connect(t, url)
	nothingAt := func(prefix string) {
		t.Helper()
		if keys := listKeys(t, admin, bucket, prefix); len(keys) > 0 {
			t.Fatalf("objects left below %s: %v", prefix, keys)
		}
		if n := openUploads(t, admin, bucket, prefix); n != 0 {
			t.Fatalf("%d uploads left open below %s", n, prefix)
		}
	}
	// Refusals.
	_, err = conn.Exec(ctx, "BASE BACKUP TO 'storage://offsite/plain'")
	if e := wantCode(t, err, "0A000"); !strings.Contains(e.Hint, "FORMAT tar") {
		t.Fatalf("plain to storage: %+v", e)
	}
	_, err = conn.Exec(ctx, "BASE BACKUP TO 'storage://nosuch/x' WITH (FORMAT tar)")
	if e := wantCode(t, err, "42704"); !strings.Contains(e.Hint, "badcreds, faulty, nobucket, offsite") {
		t.Fatalf("unknown target: %+v", e)
	}
	for _, esc := range []string{"storage://offsite/a/../b", "storage://offsite/a//b", "storage://offsite/./a"} {
		_, err = conn.Exec(ctx, "BASE BACKUP TO '"+esc+"' WITH (FORMAT tar)")
		wantCode(t, err, "42501")
	}
	_, err = conn.Exec(ctx, "BASE BACKUP TO 'storage://offsite/nightly/one' WITH (FORMAT tar)")
	wantCode(t, err, "42P04")
	_, err = conn.Exec(ctx, "BASE BACKUP TO 'storage://badcreds/x' WITH (FORMAT tar)")
	if e := wantCode(t, err, "42501"); !strings.Contains(e.Hint, "credentials") {
		t.Fatalf("bad credentials: %+v", e)
	}
	nothingAt("x/")
	_, err = conn.Exec(ctx, "BASE BACKUP TO 'storage://nobucket/x' WITH (FORMAT tar)")
	wantCode(t, err, "58P01")
	if _, err := admin.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("no-such-bucket")}); err == nil {
		t.Fatal("a backup to a missing bucket created it")
	}
	if strings.Contains(p.Log.String(), "not-the-secret") || strings.Contains(p.Log.String(), srv.SecretKey) {
		t.Fatal("pgverbs's log shows a secret key")
	}

	// A part corrupted on its way: the store rejects its checksum.
	fault.CorruptUploadParts(1)
	_, err = conn.Exec(ctx, "BASE BACKUP TO 'storage://faulty/corrupt' WITH (FORMAT tar)")
	if e := wantCode(t, err, "58030"); !strings.Contains(e.Message, "checksum") {
		t.Fatalf("corrupted part: %+v", e)
	}
	if fault.Corrupted() == 0 {
		t.Fatal("the fault proxy corrupted nothing")
	}
	nothingAt("faulty/")

	// A cancel (psql's Ctrl-C) and the client leaving mid-upload: 57014
	// for the one, and for both every upload aborted, nothing left.
	slowSQL := func(dir string) string {
		return "BASE BACKUP TO 'storage://offsite/" + dir + "' WITH (FORMAT tar, MAX_RATE '4MB')"
	}
	cmd, sout := startPsql(t, c, url, "-c", slowSQL("cancelled"))
	waitFor(t, func() bool { return openUploads(t, admin, bucket, "db1/cancelled/") > 0 })
	_ = cmd.Process.Signal(syscall.SIGINT)
	_ = waitExit(t, cmd, 30*time.Second, "Ctrl-C")
	if !strings.Contains(sout.String(), "canceling statement due to user request") {
		t.Fatalf("cancelled backup to storage:\n%s", sout.String())
	}
	waitFor(t, func() bool { return len(listKeys(t, admin, bucket, "db1/cancelled/")) == 0 })
	nothingAt("db1/cancelled/")
	cmd, _ = startPsql(t, c, url, "-c", slowSQL("left"))
	waitFor(t, func() bool { return openUploads(t, admin, bucket, "db1/left/") > 0 })
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	waitFor(t, func() bool {
		return len(listKeys(t, admin, bucket, "db1/left/")) == 0 && openUploads(t, admin, bucket, "db1/left/") == 0
	})

	// The store stopped mid-backup: the client gets an I/O error; what
	// could not be aborted then is cleaned up when pgverbs starts again.
	slow := "BASE BACKUP TO 'storage://offsite/stopped' WITH (FORMAT tar, MAX_RATE '4MB')"
	errc := make(chan error, 1)
	go func() { _, err := conn.Exec(ctx, slow); errc <- err }()
	waitFor(t, func() bool { return openUploads(t, admin, bucket, "db1/stopped/") > 0 })
	srv.Stop()
	select {
	case err = <-errc:
	case <-time.After(2 * time.Minute):
		t.Fatal("BASE BACKUP did not fail with the store stopped")
	}
	wantCode(t, err, "58030")
	srv.Restart()
	p.Signal(t, syscall.SIGKILL)
	_ = p.Wait(t, 10*time.Second)

	// pgverbs killed mid-upload.
	p = startProxy(t, c.URL("", "", "postgres"), "--backup-root", root, "--config", cfg)
	conn = connect(t, p.URL("postgres", "", "postgres"))
	waitFor(t, func() bool {
		return len(listKeys(t, admin, bucket, "db1/stopped/")) == 0 && openUploads(t, admin, bucket, "db1/") == 0
	})
	errc = make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, strings.Replace(slow, "stopped", "killed", 1))
		errc <- err
	}()
	waitFor(t, func() bool { return openUploads(t, admin, bucket, "db1/killed/") > 0 })
	p.Signal(t, syscall.SIGKILL)
	_ = p.Wait(t, 10*time.Second)
	<-errc
	if openUploads(t, admin, bucket, "db1/killed/") == 0 {
		t.Fatal("the killed backup's upload is gone before restart: the test shows nothing")
	}
	p = startProxy(t, c.URL("", "", "postgres"), "--backup-root", root, "--config", cfg)
	waitFor(t, func() bool {
		return len(listKeys(t, admin, bucket, "db1/killed/")) == 0 && openUploads(t, admin, bucket, "db1/") == 0
	})
	if !strings.Contains(p.Log.String(), "cleaned up object storage target") {
		t.Fatalf("pgverbs did not report the cleanup:\n%s", p.Log.String())
	}
	// The complete backup survived both cleanups.
	if keys := listKeys(t, admin, bucket, "db1/nightly/one/"); len(keys) != 4 {
		t.Fatalf("the complete backup lost objects: %v", keys)
	}
}
