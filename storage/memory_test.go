package storage

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/s3test"
)

// TestWriterMemory measures the heap a streaming upload holds: 120 MB
// through a Writer with 5 MB parts, 2 in flight, whose bound is about
// (2 + 2) x 5 MB. The garbage collector runs aggressively (GOGC 5) so
// that the live heap, not collection lag, is what is sampled; the test
// fails if the peak exceeds twice the bound.
func TestWriterMemory(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "mem")
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte("[default]\naws_access_key_id = "+srv.AccessKey+"\naws_secret_access_key = "+srv.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := New(ctx, Config{Name: "m", Endpoint: srv.Endpoint, Region: srv.Region, Bucket: "mem", PathStyle: true,
		CredentialsFile: creds, PartSize: MinPartSize, ParallelParts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	chunk := make([]byte, 256<<10)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	w := st.Create(ctx, "big", WriteOptions{})
	const total = 120 << 20
	for n := 0; n < total; n += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done
	if o, err := st.Stat(ctx, "big"); err != nil || o.Size != total {
		t.Fatalf("uploaded object: %+v %v", o, err)
	}
	bound := uint64(2+2) * MinPartSize
	grown := peak.Load() - min(peak.Load(), base.HeapInuse)
	t.Logf("heap in use grew by %.1f MB at most during a 120 MB upload; bound (parallel+2) x part = %.1f MB", float64(grown)/(1<<20), float64(bound)/(1<<20))
	if grown > 2*bound {
		t.Fatalf("the upload held %.1f MB of heap, more than twice its bound of %.1f MB", float64(grown)/(1<<20), float64(bound)/(1<<20))
	}
}
