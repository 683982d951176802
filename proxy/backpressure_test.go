package proxy_test

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestBackpressure checks that a client that does not read stops the
// proxy reading from the server: the server's writes stall long before a
// large result is through, and the proxy's heap does not grow by the
// result's size. Then the client reads everything, intact.
func TestBackpressure(t *testing.T) {
	const (
		rowSize = 8 << 10
		total   = 256 << 20 // more than every kernel socket buffer on the path
	)
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	c, bc, _, _ := establish(t, fb, p, 0, 4)
	_ = bc.conn.SetDeadline(time.Now().Add(time.Minute))
	_ = c.conn.SetDeadline(time.Now().Add(time.Minute))

	value := make([]byte, rowSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	// The rows go out in chunks of about 1 MiB, written raw.
	row := encode(t, &pgproto3.DataRow{Values: [][]byte{value}})
	const perChunk = 128
	chunk := make([]byte, 0, perChunk*len(row))
	for range perChunk {
		chunk = append(chunk, row...)
	}
	rows := total / len(chunk) * perChunk

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	c.send(&pgproto3.Query{String: "SELECT big"})
	bc.receive()
	var written atomic.Int64
	wrote := make(chan error, 1)
	go func() {
		bc.send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
		for sent := 0; sent < rows; sent += perChunk {
			if _, err := bc.conn.Write(chunk); err != nil {
				wrote <- err
				return
			}
			written.Add(int64(len(chunk)))
		}
		wrote <- bc.trySend(&pgproto3.CommandComplete{CommandTag: []byte("SELECT")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	}()

	// Wait until the server's writes stall: no progress for half a second.
	last, still := int64(-1), time.Now()
	for time.Since(still) < 500*time.Millisecond {
		select {
		case err := <-wrote:
			t.Fatalf("the server wrote all %d MiB to a client that read nothing (err %v)", total>>20, err)
		case <-time.After(50 * time.Millisecond):
		}
		if n := written.Load(); n != last {
			last, still = n, time.Now()
		}
	}
	runtime.GC()
	var stalled runtime.MemStats
	runtime.ReadMemStats(&stalled)
	grown := int64(stalled.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("server stalled after %d of %d MiB; proxy heap grew %d KiB", last>>20, total>>20, grown>>10)
	if grown > 16<<20 {
		t.Errorf("the heap grew by %d MiB while the client read nothing: the proxy buffers the result", grown>>20)
	}

	recv[*pgproto3.RowDescription](c)
	for i := range rows {
		m := c.receive()
		dr, ok := m.(*pgproto3.DataRow)
		if !ok || len(dr.Values) != 1 || len(dr.Values[0]) != rowSize || dr.Values[0][rowSize-1] != value[rowSize-1] {
			t.Fatalf("row %d: got %T, want the row as sent", i, m)
		}
	}
	recv[*pgproto3.CommandComplete](c)
	recv[*pgproto3.ReadyForQuery](c)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}
