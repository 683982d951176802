package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/s3test"
)

func code(err error) pgerr.Code {
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in, target, path string
		code             pgerr.Code
	}{
		{in: "storage://offsite/nightly/2026-12-02", target: "offsite", path: "nightly/2026-12-02"},
		{in: "storage://offsite/nightly/", target: "offsite", path: "nightly"},
		{in: "storage://offsite", target: "offsite"},
		{in: "storage://offsite/", target: "offsite"},
		{in: "storage:///x", code: pgerr.InvalidParameterValue},
		{in: "s3://offsite/x", code: pgerr.InvalidParameterValue},
		{in: "storage://offsite/a/../b", code: pgerr.InsufficientPrivilege},
		{in: "storage://offsite/..", code: pgerr.InsufficientPrivilege},
		{in: "storage://offsite/a//b", code: pgerr.InsufficientPrivilege},
		{in: "storage://offsite/./a", code: pgerr.InsufficientPrivilege},
		{in: "storage://offsite/a\\b", code: pgerr.InsufficientPrivilege},
		{in: "storage://offsite/a\x00b", code: pgerr.InsufficientPrivilege},
	} {
		target, p, err := ParseURL(tc.in)
		if code(err) != tc.code || target != tc.target || p != tc.path {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q, code %q", tc.in, target, p, err, tc.target, tc.path, tc.code)
		}
	}
}

func TestLookup(t *testing.T) {
	var none *Stores
	_, err := none.Lookup("offsite")
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Code != pgerr.UndefinedObject || !strings.Contains(pe.Hint, "No storage targets") {
		t.Fatalf("no targets: %v", err)
	}
	s, err := NewStores(context.Background(), []Config{{Name: "b", Endpoint: "http://127.0.0.1:1", Bucket: "x"}, {Name: "a", Endpoint: "http://127.0.0.1:1", Bucket: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Lookup("c")
	if !errors.As(err, &pe) || pe.Code != pgerr.UndefinedObject || pe.Hint != "The configured storage targets are: a, b." {
		t.Fatalf("unknown target: %v (hint %q)", err, pe.Hint)
	}
	st, p, err := s.Resolve("storage://a/x/y")
	if err != nil || st.Name() != "a" || p != "x/y" || st.URL(p) != "storage://a/x/y" {
		t.Fatalf("Resolve: %v %q %v", st, p, err)
	}
}

func TestKeys(t *testing.T) {
	s := &Store{cfg: Config{Prefix: "pg/db1"}}
	if k := s.key("nightly/base.tar"); k != "pg/db1/nightly/base.tar" {
		t.Fatalf("key %q", k)
	}
	if r := s.rel("pg/db1/nightly/base.tar"); r != "nightly/base.tar" {
		t.Fatalf("rel %q", r)
	}
	if k := (&Store{}).key("a"); k != "a" {
		t.Fatalf("key without a prefix %q", k)
	}
}

func TestPartSize(t *testing.T) {
	s := &Store{cfg: Config{PartSize: DefaultPartSize}}
	if ps := s.PartSize(0); ps != DefaultPartSize {
		t.Fatalf("no hint: %d", ps)
	}
	if ps := s.PartSize(10 << 30); ps != DefaultPartSize {
		t.Fatalf("10 GB: %d", ps)
	}
	// 1 TB: the parts grow so that 3/4 of MaxParts hold it, in MB steps.
	ps := s.PartSize(1 << 40)
	if ps <= DefaultPartSize || ps%(1<<20) != 0 || (1<<40)/ps > MaxParts*3/4 {
		t.Fatalf("1 TB: part size %d", ps)
	}
}

// TestStore runs the store's operations against a real S3 server: a
// streaming upload of several parts read back whole, an aborted upload
// that leaves neither object nor open upload, listing and deletion below
// a prefix, AbortUploads for an upload left open, and the errors for a
// missing object, a missing bucket and refused credentials.
func TestStore(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "bkt")
	ctx := context.Background()
	creds := filepath.Join(t.TempDir(), "credentials")
	ini := "[good]\naws_access_key_id = " + srv.AccessKey + "\naws_secret_access_key = " + srv.SecretKey +
		"\n[bad]\naws_access_key_id = " + srv.AccessKey + "\naws_secret_access_key = wrong\n"
	if err := os.WriteFile(creds, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(bucket, profile string) *Store {
		st, err := New(ctx, Config{Name: "t", Endpoint: srv.Endpoint, Region: srv.Region, Bucket: bucket, Prefix: "p/",
			PathStyle: true, CredentialsFile: creds, Profile: profile, PartSize: MinPartSize, ParallelParts: 2})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open("bkt", "good")
	if err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}

	data := bytes.Repeat([]byte("0123456789abcdef"), (3*MinPartSize+12345)/16)
	w := st.Create(ctx, "dir/big", WriteOptions{})
	for p := data; len(p) > 0; {
		n := min(len(p), 100000)
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := st.ReadAll(ctx, "dir/big")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes of %d: %v", len(got), len(data), err)
	}

	w = st.Create(ctx, "dir/aborted", WriteOptions{})
	if _, err := w.Write(data[:2*MinPartSize]); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if _, err := st.Stat(ctx, "dir/aborted"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("aborted upload: %v", err)
	}
	if ups, err := st.Uploads(ctx, ""); err != nil || len(ups) != 0 {
		t.Fatalf("uploads after abort: %v %v", ups, err)
	}

	if err := st.Put(ctx, "dir/small", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	objs, err := st.List(ctx, "dir")
	if err != nil || len(objs) != 2 || objs[0].Name != "dir/big" || objs[1].Name != "dir/small" || objs[1].Size != 5 {
		t.Fatalf("List: %+v %v", objs, err)
	}

	// An upload left open, as by a killed process: the writer's goroutine
	// is stopped by cancelling its context before Abort could run.
	cctx, cancel := context.WithCancel(ctx)
	w = st.Create(cctx, "dir/left", WriteOptions{})
	if _, err := w.Write(data[:2*MinPartSize]); err != nil {
		t.Fatal(err)
	}
	var ups []Upload
	deadline := time.Now().Add(30 * time.Second)
	for len(ups) == 0 && time.Now().Before(deadline) {
		if ups, err = st.Uploads(ctx, "dir"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(ups) != 1 || ups[0].Name != "dir/left" {
		t.Fatalf("open uploads: %+v", ups)
	}
	// Abort what started before a time in the past: nothing.
	if n, err := st.AbortUploads(ctx, "", ups[0].Started.Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("AbortUploads before the upload: %d %v", n, err)
	}
	if n, err := st.AbortUploads(ctx, "", time.Time{}); err != nil || n != 1 {
		t.Fatalf("AbortUploads: %d %v", n, err)
	}
	cancel()
	w.Abort()

	if err := st.DeletePrefix(ctx, "dir"); err != nil {
		t.Fatal(err)
	}
	if objs, err := st.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("after DeletePrefix: %+v %v", objs, err)
	}

	_, _, err = st.Open(ctx, "nothing")
	if !errors.Is(err, os.ErrNotExist) || code(err) != pgerr.UndefinedFile {
		t.Fatalf("missing object: %v", err)
	}
	err = open("no-bucket", "good").Put(ctx, "x", []byte("x"))
	if !errors.Is(err, ErrNoBucket) || code(err) != pgerr.UndefinedFile {
		t.Fatalf("missing bucket: %v", err)
	}
	bad := open("bkt", "bad")
	err = bad.Put(ctx, "x", []byte("x"))
	if !errors.Is(err, ErrAccess) || code(err) != pgerr.InsufficientPrivilege || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("bad credentials: %v", err)
	}
	w = bad.Create(ctx, "y", WriteOptions{})
	_, _ = io.Copy(w, bytes.NewReader(data[:MinPartSize+1]))
	if err := w.Close(); !errors.Is(err, ErrAccess) {
		t.Fatalf("upload with bad credentials: %v", err)
	}
	if objs, err := st.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("refused writes left objects: %+v %v", objs, err)
	}
}
