package backup

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBufPipeCopiesEverything(t *testing.T) {
	want := make([]byte, 5*pipeChunk*pipeDepth/2+123)
	for i := range want {
		want[i] = byte(rand.IntN(256))
	}
	p := newBufPipe()
	got := make(chan []byte)
	go func() {
		var buf bytes.Buffer
		_, _ = p.WriteTo(&buf)
		got <- buf.Bytes()
	}()
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 1+rand.IntN(3*pipeChunk))
		if k, err := p.Write(rest[:n]); k != n || err != nil {
			t.Fatalf("Write = %d, %v", k, err)
		}
		rest = rest[n:]
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(<-got, want) {
		t.Fatal("the reader got other bytes than were written")
	}
}

func TestBufPipeReaderStops(t *testing.T) {
	p := newBufPipe()
	boom := errors.New("disk full")
	go func() {
		_, _ = p.WriteTo(failWriter{boom})
		p.CloseRead(boom)
	}()
	// More than the pipe holds: Write must return the reader's error
	// instead of blocking.
	done := make(chan error, 1)
	go func() {
		_, err := p.Write(make([]byte, 2*pipeChunk*pipeDepth))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Fatalf("Write = %v, want %v", err, boom)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked after the reader stopped")
	}
	if err := p.Close(); !errors.Is(err, boom) && err != nil {
		t.Fatalf("Close = %v", err)
	}
}

func TestBufPipeCloseWrite(t *testing.T) {
	p := newBufPipe()
	full := make([]byte, pipeChunk)
	for i := range full {
		full[i] = 'x'
	}
	if _, err := p.Write(full); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	p.CloseWrite(io.ErrUnexpectedEOF)
	p.CloseWrite(io.ErrUnexpectedEOF) // idempotent, as abort after a failed Close may do
	var b bytes.Buffer
	_, err := p.WriteTo(&b)
	if !bytes.Equal(b.Bytes(), full) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("WriteTo = %d bytes, %v; want the full chunk and ErrUnexpectedEOF", b.Len(), err)
	}
}

// failWriter fails every write.
type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

// failArchive is an archive whose writes fail after limit bytes.
type failArchive struct {
	n, limit        int
	closed, aborted bool
}

func (f *failArchive) Write(p []byte) (int, error) {
	if f.n+len(p) > f.limit {
		return 0, errors.New("write failed")
	}
	f.n += len(p)
	return len(p), nil
}
func (f *failArchive) Close() error { f.closed = true; return nil }
func (f *failArchive) abort()       { f.aborted = true }
func (f *failArchive) files() int   { return 0 }

func TestAsyncArchiveWriteError(t *testing.T) {
	inner := &failArchive{limit: pipeChunk}
	a := newAsyncArchive(inner)
	var err error
	for i := 0; i < 4*pipeDepth && err == nil; i++ {
		_, err = a.Write(make([]byte, pipeChunk))
	}
	if err == nil {
		err = a.Close()
	} else {
		a.abort()
	}
	if err == nil || err.Error() != "write failed" {
		t.Fatalf("got %v, want the inner archive's error", err)
	}
	if inner.closed || !inner.aborted {
		t.Fatalf("inner archive closed=%v aborted=%v, want aborted only", inner.closed, inner.aborted)
	}

	inner = &failArchive{limit: 1 << 30}
	a = newAsyncArchive(inner)
	if _, err := a.Write(make([]byte, 3*pipeChunk+1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil || !inner.closed || inner.n != 3*pipeChunk+1 {
		t.Fatalf("Close = %v, closed=%v, %d bytes", err, inner.closed, inner.n)
	}
}
