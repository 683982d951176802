package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/internal/s3test"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// TestWALArchiveStorage archives TO 'storage://offsite/wal' with the real
// binary, a real server and a real S3 store (SeaweedFS): completed
// segments reach the bucket with the server's bytes and pg_waldump walks
// the downloaded copies; MAX_SIZE removes local copies only once they are
// uploaded; the store stopped makes the lag grow in SHOW WAL ARCHIVE and
// /metrics with the error shown while nothing pending is removed;
// pgverbs SIGKILLed with segments pending and restarted uploads them once
// the store is back, without uploading again what was there; and /wal/
// and wal-get serve a segment that is no longer local from the store.
func TestWALArchiveStorage(t *testing.T) {
	srv := s3test.Start(t)
	const bucket = "walarchive"
	srv.Bucket(t, bucket)
	admin := srv.AdminClient()
	cfg := writeStorageConfig(t, srv, storageTarget{name: "offsite", bucket: bucket, prefix: "db1"})

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(walToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	base, args := httpArgs(t, root, tokenFile)
	args = append(args, "--config", cfg)
	c := cluster(t, pgtest.Options{InitDBArgs: []string{"--wal-segsize=1"}})
	p := startProxy(t, c.URL("", "", "postgres"), args...)
	e := &archiveEnv{c: c, p: p, root: root, base: base, tokenFile: tokenFile, top: t}
	e.srv = connect(t, c.SuperURL())
	ctx := testCtx(t)
	if _, err := e.srv.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Exec(ctx, "CREATE TABLE walfill(id int, pad text)"); err != nil {
		t.Fatal(err)
	}
	segSize := e.segSize(t)
	staging := filepath.Join(root, walarchive.StagingDir, "offsite", "wal")
	key := func(name string) string { return "db1/wal/" + name }
	object := func(name string) ([]byte, time.Time, bool) {
		out, err := admin.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key(name))})
		if err != nil {
			return nil, time.Time{}, false
		}
		defer out.Body.Close()
		var b bytes.Buffer
		if _, err := b.ReadFrom(out.Body); err != nil {
			return nil, time.Time{}, false
		}
		return b.Bytes(), aws.ToTime(out.LastModified), true
	}
	local := func(name string) bool {
		_, err := os.Stat(filepath.Join(staging, name))
		return err == nil
	}
	// switchN completes n segments and returns their names with the
	// server's bytes, read while pg_wal still has them (the slot keeps
	// them until the archive has them).
	serverCopy := map[string][]byte{}
	switchN := func(n int) []string {
		var names []string
		for range n {
			name := e.switchWAL(t)
			serverCopy[name] = mustRead(t, filepath.Join(c.DataDir, "pg_wal", name))
			names = append(names, name)
		}
		return names
	}
	metricNow := func(name string) float64 { return metric(t, scrape(t, base), name) }

	// Refusals: a target that is not configured, a URL without a path.
	if code := e.sqlstate(t, "postgres", "START WAL ARCHIVE TO 'storage://nowhere/wal'"); code != "42704" {
		t.Errorf("START TO an unknown target: SQLSTATE %s, want 42704", code)
	}
	if code := e.sqlstate(t, "postgres", "START WAL ARCHIVE TO 'storage://offsite'"); code != "22023" {
		t.Errorf("START TO a target without a path: SQLSTATE %s, want 22023", code)
	}
	if code := e.sqlstate(t, "postgres", "START WAL ARCHIVE TO 'storage://offsite/../x'"); code != "42501" {
		t.Errorf("START TO a path escape: SQLSTATE %s, want 42501", code)
	}

	e.run(t, "START WAL ARCHIVE TO 'storage://offsite/wal'")
	e.waitCaughtUp(t)
	if _, _, ok := object(walarchive.StateFile); !ok {
		t.Fatalf("START wrote no %s beside the WAL in the bucket", walarchive.StateFile)
	}

	// Completed segments reach the bucket with the server's bytes.
	first := switchN(3)
	for _, n := range first {
		archiveWait(t, n+" in the bucket", func() bool { _, _, ok := object(n); return ok })
		got, _, _ := object(n)
		if !bytes.Equal(got, serverCopy[n]) || !bytes.Equal(got, mustRead(t, filepath.Join(staging, n))) {
			t.Fatalf("%s in the bucket (%d bytes) differs from the server's and the local copy", n, len(got))
		}
	}
	archiveWait(t, "nothing pending", func() bool {
		s := e.status(t)
		return s["upload_pending_files"] == "0" && s["upload_last_error"] == ""
	})
	s := e.status(t)
	if s["storage"] != "storage://offsite/wal" || s["upload_oldest_pending"] != "" {
		t.Errorf("SHOW WAL ARCHIVE once uploaded: %v", s)
	}
	if n := metricNow("pgverbs_wal_archive_uploaded_files_total"); n < 3 {
		t.Errorf("pgverbs_wal_archive_uploaded_files_total %v, want at least 3", n)
	}
	// pg_waldump walks the downloaded copies.
	dump := t.TempDir()
	for _, n := range first {
		got, _, _ := object(n)
		if err := os.WriteFile(filepath.Join(dump, n), got, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start, end := segStart(t, first[0], segSize), segStart(t, first[len(first)-1], segSize)
	if out, err := exec.Command(c.Bin("pg_waldump"), "-p", dump, "--start", walstream.FormatLSN(start), "--end", walstream.FormatLSN(end), "--stats").CombinedOutput(); err != nil {
		t.Fatalf("pg_waldump of the uploaded segments: %v\n%s", err, out)
	}

	// MAX_SIZE lets the uploaded local copies go (but the newest
	// complete segment, which retention always keeps).
	e.run(t, "ALTER WAL ARCHIVE SET (MAX_SIZE '1kB')")
	for _, n := range first[:len(first)-1] {
		archiveWait(t, n+" removed locally after its upload", func() bool { return !local(n) })
	}
	_, firstModified, _ := object(first[0])

	// The store stops: the lag grows, the error shows, and nothing
	// pending is removed locally.
	srv.Stop()
	second := switchN(3)
	archiveWait(t, "the upload error in SHOW WAL ARCHIVE", func() bool {
		s := e.status(t)
		n, _ := strconv.Atoi(s["upload_pending_files"])
		return s["upload_last_error"] != "" && n >= 3
	})
	s = e.status(t)
	if s["upload_oldest_pending"] != second[0] || s["upload_oldest_pending_seconds"] == "" {
		t.Errorf("SHOW WAL ARCHIVE with the store down: %v", s)
	}
	fams := scrape(t, base)
	if metric(t, fams, "pgverbs_wal_archive_upload_failing") != 1 || metric(t, fams, "pgverbs_wal_archive_upload_pending_files") < 3 ||
		metric(t, fams, "pgverbs_wal_archive_upload_pending_bytes") < float64(3*segSize) {
		t.Errorf("upload metrics with the store down: failing %v, pending %v files %v bytes",
			metric(t, fams, "pgverbs_wal_archive_upload_failing"), metric(t, fams, "pgverbs_wal_archive_upload_pending_files"),
			metric(t, fams, "pgverbs_wal_archive_upload_pending_bytes"))
	}
	for _, n := range second {
		if !local(n) {
			t.Fatalf("%s removed locally before its upload", n)
		}
	}

	// pgverbs SIGKILLed with those pending, restarted while the store is
	// still down: nothing is removed before the store answers.
	p.Signal(t, syscall.SIGKILL)
	_ = p.Wait(t, 10*time.Second)
	p = startProxy(t, c.URL("", "", "postgres"), args...)
	e.p = p
	e.waitCaughtUp(t)
	time.Sleep(2 * time.Second)
	for _, n := range second {
		if !local(n) {
			t.Fatalf("%s removed locally after the restart, before its upload", n)
		}
	}
	if s := e.status(t); s["upload_last_error"] == "" {
		t.Errorf("SHOW WAL ARCHIVE after the restart with the store down: %v", s)
	}

	// The store is back: the uploads catch up, in order, and what was
	// uploaded before is not uploaded again.
	srv.Restart()
	for _, n := range second {
		archiveWait(t, n+" in the bucket after the restart", func() bool { _, _, ok := object(n); return ok })
		if got, _, _ := object(n); !bytes.Equal(got, serverCopy[n]) {
			t.Fatalf("%s in the bucket differs from the server's", n)
		}
	}
	archiveWait(t, "caught up", func() bool {
		s := e.status(t)
		return s["upload_pending_files"] == "0" && s["upload_last_error"] == ""
	})
	if _, mod, _ := object(first[0]); !mod.Equal(firstModified) {
		t.Errorf("%s was uploaded again after the restart (modified %v, then %v)", first[0], firstModified, mod)
	}
	for _, n := range second[:len(second)-1] {
		archiveWait(t, n+" removed locally once uploaded", func() bool { return !local(n) })
	}
	if metricNow("pgverbs_wal_archive_upload_failing") != 0 {
		t.Error("pgverbs_wal_archive_upload_failing stays 1 after the uploads caught up")
	}

	// /wal/ and wal-get serve a segment no longer local from the store.
	if local(first[0]) {
		t.Fatalf("%s is still local: the test shows nothing", first[0])
	}
	code, _, body := walRequest(t, base, "/wal/"+first[0], walToken)
	if code != 200 || !bytes.Equal(body, serverCopy[first[0]]) {
		t.Fatalf("GET /wal/%s (only in the store): %d, %d bytes", first[0], code, len(body))
	}
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	if code, stderr := runWalGet(t, nil, "--url", base, "--token-file", tokenFile, second[0], dest); code != 0 {
		t.Fatalf("wal-get %s: exit %d: %s", second[0], code, stderr)
	}
	if got := mustRead(t, dest); !bytes.Equal(got, serverCopy[second[0]]) {
		t.Errorf("wal-get %s (only in the store) wrote %d bytes that differ from the server's", second[0], len(got))
	}
	if code, _ := runWalGet(t, nil, "--url", base, "--token-file", tokenFile, "0000000100000099000000FF", filepath.Join(t.TempDir(), "x")); code != 1 {
		t.Errorf("wal-get of a segment in neither place: exit %d, want 1", code)
	}
	e.run(t, "STOP WAL ARCHIVE DROP SLOT")
}

// segStart is the LSN at which the segment name starts.
func segStart(t *testing.T, name string, segSize uint64) uint64 {
	t.Helper()
	n, err := walarchive.ParseName(name, segSize)
	if err != nil {
		t.Fatal(err)
	}
	return n.SegNo * segSize
}
