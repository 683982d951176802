package walsender

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"io/fs"
	"net"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walarchive"
)

const testSegSize = 1 << 20

// memArchive serves one timeline from memory.
type memArchive struct {
	Archive
	flushed uint64
	wal     []byte // from LSN 0
}

func (a *memArchive) Position() (walarchive.Position, <-chan struct{}, bool) {
	return walarchive.Position{SystemID: "7", SegmentSize: testSegSize, Timeline: 1, Flushed: a.flushed}, make(chan struct{}), true
}
func (a *memArchive) ReadSegment(tli uint32, segno uint64) (io.ReadCloser, error) {
	if tli != 1 || (segno+1)*testSegSize > uint64(len(a.wal)) {
		return nil, fs.ErrNotExist
	}
	return io.NopCloser(bytes.NewReader(a.wal[segno*testSegSize : (segno+1)*testSegSize])), nil
}
func (a *memArchive) SetDemand(int)                   {}
func (a *memArchive) SetFeedback(walarchive.Feedback) {}
func (a *memArchive) ReleaseSlots(uint32)             {}
func (a *memArchive) History(uint32) ([]byte, error)  { return nil, fs.ErrNotExist }

// testClient is the standby's end of a net.Pipe.
type testClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func (tc *testClient) query(sql string) {
	b := []byte{'Q', 0, 0, 0, 0}
	b = append(append(b, sql...), 0)
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	if _, err := tc.c.Write(b); err != nil {
		tc.t.Fatal(err)
	}
}

func (tc *testClient) next() (byte, []byte) {
	tc.t.Helper()
	_ = tc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, body, err := readMessage(tc.r, 1<<30)
	if err != nil {
		tc.t.Fatal(err)
	}
	return typ, body
}

func serve(t *testing.T, a Archive, timeout time.Duration) (*testClient, chan struct{}) {
	server, client := net.Pipe()
	s := NewServer(Config{Archive: a, Timeout: timeout})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(context.Background(), &Session{Client: server, ClientR: bufio.NewReader(server), ClientW: bufio.NewWriter(server), PID: 42, ServerMajor: 15})
	}()
	t.Cleanup(func() { client.Close(); <-done })
	return &testClient{t: t, c: client, r: bufio.NewReader(client)}, done
}

func TestStreamFromArchive(t *testing.T) {
	wal := make([]byte, 2*testSegSize)
	for i := range wal {
		wal[i] = byte(i * 7)
	}
	// Durable to mid-page in segment 1: messages end there, exactly.
	a := &memArchive{wal: wal, flushed: testSegSize + 300000 + 100}
	tc, done := serve(t, a, 400*time.Millisecond)
	tc.query("START_REPLICATION 0/100000 TIMELINE 1")
	if typ, _ := tc.next(); typ != 'W' {
		t.Fatalf("got %c, want CopyBothResponse", typ)
	}
	pos := uint64(testSegSize)
	for pos < a.flushed {
		typ, body := tc.next()
		if typ != 'd' || body[0] != 'w' {
			t.Fatalf("got %c %q at %X, want XLogData", typ, body[:1], pos)
		}
		start, walEnd := binary.BigEndian.Uint64(body[1:]), binary.BigEndian.Uint64(body[9:])
		data := body[25:]
		if start != pos || walEnd != a.flushed {
			t.Fatalf("XLogData from %X (walEnd %X), want from %X (walEnd %X)", start, walEnd, pos, a.flushed)
		}
		if len(data) > maxSend {
			t.Fatalf("XLogData of %d bytes, more than %d", len(data), maxSend)
		}
		if end := start + uint64(len(data)); end != a.flushed && end%pageSize != 0 {
			t.Fatalf("message ends at %X, neither a page boundary nor the durable end", end)
		}
		if !bytes.Equal(data, wal[start:start+uint64(len(data))]) {
			t.Fatalf("WAL at %X differs from the archive's", start)
		}
		pos += uint64(len(data))
	}
	// Silent: a keepalive asking for a reply at half the timeout, then
	// the connection ends at the timeout.
	typ, body := tc.next()
	if typ != 'd' || body[0] != 'k' || binary.BigEndian.Uint64(body[1:]) != a.flushed || body[17] != 1 {
		t.Fatalf("got %c %v, want a keepalive at %X asking for a reply", typ, body, a.flushed)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a silent standby was not dropped")
	}
}

func TestStartErrors(t *testing.T) {
	a := &memArchive{wal: make([]byte, 2*testSegSize), flushed: testSegSize + 10}
	tc, _ := serve(t, a, time.Minute)
	readError := func() *pgerr.Error {
		for {
			typ, body := tc.next()
			if typ == 'E' {
				return parseError(body)
			}
			if typ == 'Z' {
				t.Fatal("no ErrorResponse before ReadyForQuery")
			}
		}
	}
	tc.query("START_REPLICATION 0/300000 TIMELINE 1")
	if e := readError(); e.Message != "requested starting point 0/300000 is ahead of the WAL flush position of this server 0/10000A" {
		t.Errorf("ahead of flush: %q", e.Message)
	}
	tc.next() // ReadyForQuery
	a.flushed = 2*testSegSize + 10
	tc.query("START_REPLICATION 0/200000 TIMELINE 1")
	if e := readError(); e.Message != "requested WAL segment 000000010000000000000002 has already been removed" || e.Code != pgerr.UndefinedFile {
		t.Errorf("removed: %s %q", e.Code, e.Message)
	}
}

// parseError reads an ErrorResponse body's code and message.
func parseError(body []byte) *pgerr.Error {
	e := &pgerr.Error{}
	for _, f := range bytes.Split(body, []byte{0}) {
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case 'C':
			e.Code = pgerr.Code(f[1:])
		case 'M':
			e.Message = string(f[1:])
		}
	}
	return e
}
