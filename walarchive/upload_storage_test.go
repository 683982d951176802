package walarchive

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/internal/s3test"
	"github.com/pgverbs/pgverbs/storage"
)

// testStores configures one target, "offsite", on srv's bucket.
func testStores(t *testing.T, srv *s3test.Server, bucket string) *storage.Stores {
	t.Helper()
	return testStoresAt(t, srv, srv.Endpoint, bucket)
}

// testStoresAt is testStores reaching srv at endpoint (a FaultProxy's).
func testStoresAt(t *testing.T, srv *s3test.Server, endpoint, bucket string) *storage.Stores {
	t.Helper()
	creds := filepath.Join(t.TempDir(), "credentials")
	ini := fmt.Sprintf("[good]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)
	if err := os.WriteFile(creds, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	stores, err := storage.NewStores(context.Background(), []storage.Config{{
		Name: "offsite", Endpoint: endpoint, Region: srv.Region, Bucket: bucket, Prefix: "db",
		PathStyle: true, CredentialsFile: creds, Profile: "good",
	}})
	if err != nil {
		t.Fatal(err)
	}
	return stores
}

// TestUploadToStorage archives TO a storage URL on a real server and a
// real S3 store (SeaweedFS): completed segments reach the store with the
// local bytes, MAX_SIZE removes local copies only once uploaded, a store
// that is down makes the lag grow and shows the error while nothing
// pending is removed, the uploads catch up when it is back, a new Manager
// (a restarted pgverbs) neither loses nor uploads again, and /wal/ serves
// a segment no longer local from the store.
func TestUploadToStorage(t *testing.T) {
	srv := s3test.Start(t)
	const bucket = "walup"
	srv.Bucket(t, bucket)
	stores := testStores(t, srv, bucket)
	store, _ := stores.Lookup("offsite")
	c := pgtest.Start(t, pgtest.Options{})
	root := t.TempDir()
	dir := filepath.Join(root, StagingDir, "offsite", "wal")
	ctx := context.Background()
	newManager := func() *Manager {
		return NewManager(Config{Root: root, Dial: dialer(c), Upstream: "test", Stores: stores,
			Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	}
	m := newManager()
	o := defaultOptions(dir)
	o.Storage = "storage://offsite/wal"
	if err := m.Start(ctx, o); err != nil {
		t.Fatal(err)
	}
	defer func() { m.Stop(ctx, true) }()
	waitFor(t, "streaming", func() bool { s, _ := m.Status(); return s.State == Streaming })
	if _, err := store.Stat(ctx, "wal/"+StateFile); err != nil {
		t.Fatalf("START wrote no %s beside the WAL: %v", StateFile, err)
	}

	switchWAL := func(n int) []string {
		var names []string
		for i := 0; i < n; i++ {
			names = append(names, query(t, c, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())"))
			query(t, c, "CREATE TABLE IF NOT EXISTS t AS SELECT 1 AS a; INSERT INTO t SELECT generate_series(1, 1000); SELECT pg_switch_wal()")
		}
		return names
	}
	uploaded := func(name string) bool {
		_, err := store.Stat(ctx, "wal/"+name)
		return err == nil
	}
	first := switchWAL(3)
	for _, n := range first {
		waitFor(t, n+" uploaded", func() bool { return uploaded(n) })
		local, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		remote, err := store.ReadAll(ctx, "wal/"+n)
		if err != nil || !bytes.Equal(local, remote) {
			t.Fatalf("%s in the store differs from the local copy (%d and %d bytes, %v)", n, len(local), len(remote), err)
		}
	}
	waitFor(t, "no upload pending", func() bool { s, _ := m.Status(); return s.Upload.PendingFiles == 0 && s.Upload.Known })

	// The store goes down: segments completed meanwhile wait, with the
	// error shown, and MAX_SIZE removes only what was uploaded.
	srv.Stop()
	second := switchWAL(3)
	waitFor(t, "the upload error", func() bool {
		s, _ := m.Status()
		return s.Upload.LastError != "" && s.Upload.PendingFiles >= 3
	})
	if err := m.Alter(ctx, func(o *Options) error { o.MaxSize = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, n := range first {
		waitFor(t, n+" removed locally", func() bool { return !exists(dir, n) })
	}
	time.Sleep(time.Second)
	for _, n := range second {
		if !exists(dir, n) {
			t.Fatalf("%s removed locally before its upload", n)
		}
	}
	s, _ := m.Status()
	if s.Upload.OldestPending != second[0] || s.Upload.OldestPendingSeconds <= 0 {
		t.Fatalf("upload status while the store is down: %+v", s.Upload)
	}

	// A restarted pgverbs (a new Manager) while the store is still down:
	// nothing is removed before the store answers, then everything goes up.
	m.Close()
	m = newManager()
	if err := m.Recover(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	for _, n := range second {
		if !exists(dir, n) {
			t.Fatalf("%s removed locally while the store's listing was unknown", n)
		}
	}
	srv.Restart()
	for _, n := range second {
		waitFor(t, n+" uploaded after the restart", func() bool { return uploaded(n) })
	}
	waitFor(t, "caught up", func() bool {
		s, _ := m.Status()
		return s.Upload.PendingFiles == 0 && s.Upload.LastError == ""
	})
	// Retention now removes the second batch but the newest complete
	// segment.
	for _, n := range second[:len(second)-1] {
		waitFor(t, n+" removed locally after its upload", func() bool { return !exists(dir, n) })
	}

	// /wal/ serves a segment that is only in the store.
	h := NewHandler(StatusArchive(m), "", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, WALPath+first[0], nil))
	remote, err := store.ReadAll(ctx, "wal/"+first[0])
	if err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), remote) || len(remote) != 16<<20 {
		t.Fatalf("GET %s: %d, %d bytes (store: %d): %s", first[0], rec.Code, rec.Body.Len(), len(remote), strings.TrimSpace(rec.Body.String()[:min(rec.Body.Len(), 200)]))
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, WALPath+"0000000100000000000000FF", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("GET of a segment in neither place: %d", rec.Code)
	}
}

// TestUploadCompressed archives TO a storage URL with COMPRESSION zstd:
// what is uploaded is NAME.zst, once compressed (never NAME as well), and
// /wal/ serves it decompressed from the store once the local copy is
// gone.
func TestUploadCompressed(t *testing.T) {
	srv := s3test.Start(t)
	const bucket = "walzst"
	srv.Bucket(t, bucket)
	stores := testStores(t, srv, bucket)
	store, _ := stores.Lookup("offsite")
	c := pgtest.Start(t, pgtest.Options{})
	root := t.TempDir()
	dir := filepath.Join(root, StagingDir, "offsite", "z")
	ctx := context.Background()
	m := NewManager(Config{Root: root, Dial: dialer(c), Upstream: "test", Stores: stores,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	o := defaultOptions(dir)
	o.Storage, o.Compression = "storage://offsite/z", Zstd
	if err := m.Start(ctx, o); err != nil {
		t.Fatal(err)
	}
	defer func() { m.Stop(ctx, true) }()
	waitFor(t, "streaming", func() bool { s, _ := m.Status(); return s.State == Streaming })
	var names []string
	server := map[string][]byte{}
	for range 3 {
		name := query(t, c, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
		query(t, c, "CREATE TABLE IF NOT EXISTS t AS SELECT 1 AS a; INSERT INTO t SELECT generate_series(1, 1000); SELECT pg_switch_wal()")
		b, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", name))
		if err != nil {
			t.Fatal(err)
		}
		names, server[name] = append(names, name), b
	}
	for _, n := range names {
		waitFor(t, n+".zst uploaded", func() bool { _, err := store.Stat(ctx, "z/"+n+compressedSuffix); return err == nil })
		if _, err := store.Stat(ctx, "z/"+n); err == nil {
			t.Fatalf("%s uploaded uncompressed as well", n)
		}
	}
	if err := m.Alter(ctx, func(o *Options) error { o.MaxSize = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, names[0]+" removed locally", func() bool { return !exists(dir, names[0]+compressedSuffix) })
	h := NewHandler(StatusArchive(m), "", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, WALPath+names[0], nil))
	if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), server[names[0]]) {
		t.Fatalf("GET %s from the store: %d, %d bytes, want the server's %d", names[0], rec.Code, rec.Body.Len(), len(server[names[0]]))
	}
}

// TestUploadFaults uploads through a fault proxy: a part damaged on the
// way is refused by the store's CRC32C check and the segment still ends
// up whole, and a store cut off mid-run shows the error until the
// uploads resume.
func TestUploadFaults(t *testing.T) {
	srv := s3test.Start(t)
	const bucket = "walfault"
	srv.Bucket(t, bucket)
	fault := s3test.NewFaultProxy(t, srv.Addr())
	stores := testStoresAt(t, srv, fault.Endpoint, bucket)
	direct, _ := testStores(t, srv, bucket).Lookup("offsite")
	c := pgtest.Start(t, pgtest.Options{})
	root := t.TempDir()
	dir := filepath.Join(root, StagingDir, "offsite", "wal")
	ctx := context.Background()
	m := NewManager(Config{Root: root, Dial: dialer(c), Upstream: "test", Stores: stores,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	o := defaultOptions(dir)
	o.Storage = "storage://offsite/wal"
	if err := m.Start(ctx, o); err != nil {
		t.Fatal(err)
	}
	defer func() { m.Stop(ctx, true) }()
	waitFor(t, "streaming", func() bool { s, _ := m.Status(); return s.State == Streaming })
	switchOne := func() string {
		name := query(t, c, "SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
		query(t, c, "CREATE TABLE IF NOT EXISTS t AS SELECT 1 AS a; INSERT INTO t SELECT generate_series(1, 1000); SELECT pg_switch_wal()")
		return name
	}
	sameAsLocal := func(name string) bool {
		remote, err := direct.ReadAll(ctx, "wal/"+name)
		if err != nil {
			return false
		}
		local, err := os.ReadFile(filepath.Join(dir, name))
		return err == nil && bytes.Equal(local, remote)
	}

	// 16 MB segments go up in 8 MB parts: one of them damaged.
	fault.CorruptUploadParts(1)
	damaged := switchOne()
	waitFor(t, damaged+" uploaded whole", func() bool { return sameAsLocal(damaged) })
	if fault.Corrupted() != 1 {
		t.Fatalf("the proxy damaged %d parts, want 1: the test shows nothing", fault.Corrupted())
	}

	fault.Cut()
	cut := switchOne()
	waitFor(t, "the upload error", func() bool { s, _ := m.Status(); return s.Upload.LastError != "" && s.Upload.OldestPending == cut })
	fault.Resume()
	waitFor(t, cut+" uploaded after the cut", func() bool { return sameAsLocal(cut) })
	waitFor(t, "the error cleared", func() bool { s, _ := m.Status(); return s.Upload.LastError == "" && s.Upload.PendingFiles == 0 })

	// A crash mid-upload: the object is not there (deleted here), an
	// upload of half its bytes is left open, as a killed process leaves
	// it. The restarted archive lists the prefix, finds the segment
	// missing, and uploads it whole; the half upload never shows.
	m.Close()
	if err := direct.Delete(ctx, "wal/"+cut); err != nil {
		t.Fatal(err)
	}
	half, err := os.ReadFile(filepath.Join(dir, cut))
	if err != nil {
		t.Fatal(err)
	}
	w := direct.Create(ctx, "wal/"+cut, storage.WriteOptions{SizeHint: int64(len(half))})
	if _, err := w.Write(half[:len(half)/2]); err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	m = NewManager(Config{Root: root, Dial: dialer(c), Upstream: "test", Stores: stores,
		Logger: zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))})
	if err := m.Recover(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, cut+" uploaded again whole after the restart", func() bool { return sameAsLocal(cut) })
	w.Abort()
	if !sameAsLocal(cut) {
		t.Fatalf("%s changed when the cut upload was aborted", cut)
	}
}
