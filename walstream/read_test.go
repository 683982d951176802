package walstream

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// frame wraps a CopyData body as it comes on the wire.
func frame(body []byte) []byte {
	b := []byte{'d', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

// TestReadResumesAfterTimeout cuts a message at several points with a read
// deadline firing in between, as a receiver's wake-up for a status update
// (or BASE BACKUP's end) does: the part read before the timeout must not
// be lost, and the message and the one after it must come whole.
func TestReadResumesAfterTimeout(t *testing.T) {
	wal := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	xlog := []byte{'w'}
	for _, v := range []uint64{0x3000000, 0x3010000, 0} { // start, server WAL end, send time
		xlog = binary.BigEndian.AppendUint64(xlog, v)
	}
	stream := append(frame(append(xlog, wal...)), frame(append([]byte{'k'}, make([]byte, 17)...))...)
	for _, cut := range []int{3, 5, 5 + 20, 5 + 25 + 1000} {
		client, server := net.Pipe()
		c := &Conn{nc: client, r: bufio.NewReaderSize(client, readBufferSize), streaming: true}
		wrote := make(chan error, 1)
		go func() {
			// net.Pipe has no buffer: a Write returns once the reader has
			// taken every byte, so the deadline fires mid-message.
			if _, err := server.Write(stream[:cut]); err != nil {
				wrote <- err
				return
			}
			_ = client.SetReadDeadline(time.Unix(1, 0))
			wrote <- nil
		}()
		if _, err := c.ReadMessage(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("cut at %d: first read = %v, want a timeout", cut, err)
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
		_ = client.SetReadDeadline(time.Time{})
		go func() { _, _ = server.Write(stream[cut:]) }()
		msg, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("cut at %d: read after the timeout: %v", cut, err)
		}
		x, ok := msg.(*XLogData)
		if !ok || x.Start != 0x3000000 || x.ServerWALEnd != 0x3010000 || !bytes.Equal(x.Data, wal) {
			t.Fatalf("cut at %d: got %T, not the XLogData sent", cut, msg)
		}
		if msg, err := c.ReadMessage(); err != nil {
			t.Fatalf("cut at %d: the keepalive after it: %v", cut, err)
		} else if _, ok := msg.(*Keepalive); !ok {
			t.Fatalf("cut at %d: got %T after the XLogData, want the keepalive", cut, msg)
		}
		client.Close()
		server.Close()
	}
}
