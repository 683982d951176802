package proxy

import (
	"bytes"
	"net"
	"slices"
	"testing"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/stats"
)

// TestPeeringRoute checks where a key no session matched goes: a 3.2 key
// to the peer its first 14 bits name, a 3.0 key to every peer but this
// instance, and nowhere with peering off, for this instance's own id, an
// unconfigured one, the top bits set, or another key length.
func TestPeeringRoute(t *testing.T) {
	s := New(Options{})
	s.SetPeering(Peering{ID: 2, Peers: map[int]string{3: "c:1", 1: "a:1", 2: "self:1", 16383: "z:1"}})
	pr := s.peering.Load()
	key := func(id uint16) []byte {
		b := newSecret(32)
		b[0], b[1] = byte(id>>8), byte(id)
		return b
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		want   []string
	}{
		{"3.0", newSecret(4), []string{"a:1", "c:1", "z:1"}},
		{"3.2 peer 1", key(1), []string{"a:1"}},
		{"3.2 highest id", key(16383), []string{"z:1"}},
		{"3.2 self", key(2), nil},
		{"3.2 unconfigured", key(4), nil},
		{"3.2 id 0", key(0), nil},
		{"3.2 top bits", key(0x4001), nil},
		{"other length", newSecret(8)[:7], nil},
	} {
		if got := pr.route(tc.secret); !slices.Equal(got, tc.want) {
			t.Errorf("%s: route = %q, want %q", tc.name, got, tc.want)
		}
	}

	sec := newSecret(32)
	pr.mark(sec)
	if sec[0] != 0 || sec[1] != 2 {
		t.Errorf("marked 3.2 secret starts %x, want 0002", sec[:2])
	}
	short := []byte{0xff, 0xff, 0xff, 0xff}
	pr.mark(short)
	if !bytes.Equal(short, []byte{0xff, 0xff, 0xff, 0xff}) {
		t.Errorf("a 3.0 secret was marked: %x", short)
	}

	s.SetPeering(Peering{})
	off := s.peering.Load()
	if got := off.route(newSecret(4)); got != nil {
		t.Errorf("peering off routes a 3.0 key to %q", got)
	}
	sec = bytes.Repeat([]byte{0xab}, 32)
	off.mark(sec)
	if sec[0] != 0xab || sec[1] != 0xab {
		t.Errorf("peering off marked a secret: %x", sec[:2])
	}
}

// TestForwardedCancelPacket checks that the packet a peer is sent parses
// back as a forwarded cancel with the same key.
func TestForwardedCancelPacket(t *testing.T) {
	for _, n := range []int{4, 32, 256} {
		in := &startupPacket{kind: kindCancel, pid: 4242, secret: newSecret(n)}
		p, err := parseStartupPacket(forwardedCancel(in))
		if err != nil {
			t.Fatal(err)
		}
		if p.kind != kindForwardedCancel || p.pid != 4242 || !bytes.Equal(p.secret, in.secret) {
			t.Errorf("%d-byte key: parsed back as kind %d pid %d secret %x", n, p.kind, p.pid, p.secret)
		}
	}
}

// TestForwardCapacity checks that forwards beyond maxForwards in flight
// are dropped and counted, not queued.
func TestForwardCapacity(t *testing.T) {
	s := New(Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s.SetPeering(Peering{ID: 1, Peers: map[int]string{2: ln.Addr().String()}})
	for range maxForwards {
		s.forwards <- struct{}{}
	}
	s.handleCancel(zap.NewNop(), &startupPacket{kind: kindCancel, pid: 1, secret: append([]byte{0, 2}, newSecret(30)...)})
	tot := s.Totals()
	if tot.Cancels[stats.CancelDropped] != 1 || tot.Cancels[stats.CancelForwarded] != 0 || tot.CancelForwardFailures != 1 {
		t.Errorf("at capacity: cancels %v, forward failures %d; want one dropped, one failure", tot.Cancels, tot.CancelForwardFailures)
	}
}
