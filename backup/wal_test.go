package backup

import (
	"encoding/binary"
	"testing"
	"time"
)

// TestStandbyStatusFlushInvalid checks the status update the backup's WAL
// streamer sends: its write position, but InvalidXLogRecPtr as flush and
// apply, so that a primary never counts the backup as a synchronous
// standby that has made a commit durable.
func TestStandbyStatusFlushInvalid(t *testing.T) {
	now := pgEpoch.Add(90 * time.Second)
	b := standbyStatus(0x1_0000_2000, now)
	if len(b) != 34 || b[0] != 'r' {
		t.Fatalf("message %x: want 34 bytes starting with 'r'", b)
	}
	if w := binary.BigEndian.Uint64(b[1:]); w != 0x1_0000_2000 {
		t.Errorf("write position %X, want 1/2000", w)
	}
	if f := binary.BigEndian.Uint64(b[9:]); f != 0 {
		t.Errorf("flush position %X, want 0 (invalid)", f)
	}
	if a := binary.BigEndian.Uint64(b[17:]); a != 0 {
		t.Errorf("apply position %X, want 0 (invalid)", a)
	}
	if c := binary.BigEndian.Uint64(b[25:]); c != 90_000_000 {
		t.Errorf("clock %d µs since 2000-01-01, want 90000000", c)
	}
	if b[33] != 0 {
		t.Error("asks for a reply")
	}
}
