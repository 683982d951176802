package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/DataDog/zstd"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/s3test"
	"github.com/pgverbs/pgverbs/storage"
	"github.com/pgverbs/pgverbs/walarchive"
)

// testStore is a store on a fresh bucket of a SeaweedFS server.
func testStore(t *testing.T) *storage.Store {
	t.Helper()
	srv := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	st, err := storage.New(context.Background(), storage.Config{
		Name: "offsite", Endpoint: srv.Endpoint, Region: srv.Region, Bucket: srv.Bucket(t, "verify"), Prefix: "pg", PathStyle: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func verifyStored(t *testing.T, st *storage.Store, prefix string, o VerifyOptions) *VerifyResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := OpenStored(ctx, st, prefix)
	if err != nil {
		t.Fatalf("OpenStored: %v", err)
	}
	res, err := VerifyBackup(ctx, b, o)
	if err != nil {
		t.Fatalf("VerifyBackup: %v", err)
	}
	return res
}

func TestVerifyStorage(t *testing.T) {
	s := getSource(t)
	st := testStore(t)
	ctx := context.Background()
	o := baseOptions(s, "", "nightly/b1")
	o.Store, o.Format, o.Compression = st, Tar, Zstd
	res := runBackup(t, o)
	v := verifyStored(t, st, "nightly/b1", VerifyOptions{WAL: true})
	wantProblems(t, v)
	if v.WALRecords == 0 || v.Files < 100 {
		t.Errorf("result %+v", v)
	}
	t.Logf("%s: %d files, %d bytes, %d WAL records", res.Path, v.Files, v.Bytes, v.WALRecords)

	// A prefix without the summary is no backup.
	must(t, st.Put(ctx, "half/base.tar", []byte("x")))
	_, err := OpenStored(ctx, st, "half")
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Code != pgerr.UndefinedFile || !errors.Is(err, ErrIncomplete) || pe.Hint == "" {
		t.Errorf("OpenStored of an incomplete prefix: %v", err)
	}

	// Rewrite base.tar.zst: a changed byte in PG_VERSION, global/pg_control
	// left out, an extra file; and an extra object beside.
	data, err := st.ReadAll(ctx, "nightly/b1/base.tar.zst")
	must(t, err)
	plain, err := zstd.Decompress(nil, data)
	must(t, err)
	var out bytes.Buffer
	tr, tw := tar.NewReader(bytes.NewReader(plain)), tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		body, err := io.ReadAll(tr)
		must(t, err)
		switch strings.TrimPrefix(h.Name, "./") {
		case "global/pg_control":
			continue
		case "PG_VERSION":
			body[0] ^= 1
		}
		must(t, tw.WriteHeader(h))
		_, err = tw.Write(body)
		must(t, err)
	}
	must(t, tw.WriteHeader(&tar.Header{Name: "base/extra", Mode: 0o600, Size: 1, Typeflag: tar.TypeReg}))
	_, err = tw.Write([]byte("x"))
	must(t, err)
	must(t, tw.Close())
	packed, err := zstd.Compress(nil, out.Bytes())
	must(t, err)
	must(t, st.Put(ctx, "nightly/b1/base.tar.zst", packed))
	must(t, st.Put(ctx, "nightly/b1/junk", []byte("j")))
	// And the WAL gone.
	must(t, st.Delete(ctx, "nightly/b1/pg_wal.tar.zst"))
	v = verifyStored(t, st, "nightly/b1", VerifyOptions{WAL: true})
	wantProblems(t, v, "size base.tar.zst", "missing pg_wal.tar.zst", "extra junk",
		"checksum PG_VERSION", "extra base/extra", "missing global/pg_control", "wal pg_wal/"+walarchive.SegmentName(1, uint64(res.StartLSN), 16<<20))
	// The WAL from an archive in the store: the cluster's segment.
	seg := v.Problems[len(v.Problems)-1].Path[len("pg_wal/"):]
	pgwal, err := os.ReadFile(s.c.DataDir + "/pg_wal/" + seg)
	must(t, err)
	must(t, st.Put(ctx, "wal/"+seg, pgwal))
	v = verifyStored(t, st, "nightly/b1", VerifyOptions{WAL: true, Archive: StoreSegments(st, "wal")})
	if n := len(v.Problems); n != 6 {
		t.Errorf("with the WAL archive: %+v", v.Problems)
	}
}
