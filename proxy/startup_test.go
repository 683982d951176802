package proxy_test

import (
	"bytes"
	"strings"
	"testing"
)

// TestStartupPacketAtLimit checks that a startup packet of PostgreSQL's
// largest size, 10000 bytes after the length word, reaches the server as it
// is: the server's limit does not count the length word.
func TestStartupPacketAtLimit(t *testing.T) {
	base := startupMsg(0, "user", "u", "pad", "")
	packet := startupMsg(0, "user", "u", "pad", strings.Repeat("x", 10004-len(base)))
	if len(packet) != 10004 {
		t.Fatalf("test packet of %d bytes", len(packet))
	}
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	c := dialProxy(t, p.addr)
	c.write(packet)
	bc := fb.accept(t)
	if !bytes.Equal(bc.startup, packet) {
		t.Fatalf("server got %d bytes, want the client's %d", len(bc.startup), len(packet))
	}
}
