package proxy

import (
	"encoding/binary"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// TestBinaryTimestamptz: a command's timestamptz text encodes as
// PostgreSQL's binary timestamptz, microseconds since 2000-01-01 UTC.
func TestBinaryTimestamptz(t *testing.T) {
	for text, want := range map[string]int64{
		"2000-01-01 00:00:00+00":        0,
		"2000-01-01 00:00:01.5+00":      1500000,
		"1999-12-31 23:59:59+00":        -1000000,
		"2026-12-04 01:02:03.123456+00": 849661323123456,
	} {
		b, err := binaryValue(pgwire.TimestamptzOID, text)
		if err != nil || len(b) != 8 || int64(binary.BigEndian.Uint64(b)) != want {
			t.Errorf("%s: %x %v, want %d", text, b, err, want)
		}
	}
	if _, err := binaryValue(pgwire.TimestamptzOID, "yesterday"); err == nil {
		t.Error("a malformed timestamptz encoded")
	}
}
