package proxy_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgverbs/pgverbs/proxy"
	"github.com/pgverbs/pgverbs/stats"
)

// forwardedCancelCode is the request code of a cancel one pgverbs
// forwards to another (proxy/startup.go).
const forwardedCancelCode = 1234<<16 | 5677

// peerRecorder is a peer address where nothing but a recorder listens:
// every packet sent to it is queued on got, then the connection closed.
type peerRecorder struct {
	addr string
	got  chan []byte
}

func newPeerRecorder(t *testing.T) *peerRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &peerRecorder{addr: ln.Addr().String(), got: make(chan []byte, 64)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(ioTimeout))
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err == nil {
				if n := binary.BigEndian.Uint32(hdr[:]); n >= 8 && n <= 1024 {
					raw := make([]byte, n)
					copy(raw, hdr[:])
					if _, err := io.ReadFull(c, raw[4:]); err == nil {
						r.got <- raw
					}
				}
			}
			c.Close()
		}
	}()
	return r
}

// expectNone checks that nothing reached the recorder; callers have waited
// for the proxies to close the cancel connection, by which time every
// forward was delivered.
func (r *peerRecorder) expectNone(t *testing.T) {
	t.Helper()
	select {
	case raw := <-r.got:
		t.Fatalf("peer recorder got %x", raw)
	default:
	}
}

// observed returns a proxy option whose logger writes to the test log and
// to the returned observer, at every level.
func observed(t *testing.T) (func(*proxy.Options), *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	return func(o *proxy.Options) {
		o.Logger = zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	}, logs
}

// checkLogs fails if any entry holds one of the secrets (as bytes, hex or
// Go's quoting), or if one above debug level speaks of cancel requests.
func checkLogs(t *testing.T, logs *observer.ObservedLogs, secrets ...[]byte) {
	t.Helper()
	for _, e := range logs.All() {
		text := e.Message
		for k, v := range e.ContextMap() {
			text += fmt.Sprintf(" %s=%v", k, v)
		}
		for _, s := range secrets {
			if strings.Contains(text, string(s)) || strings.Contains(text, hex.EncodeToString(s)) || strings.Contains(text, fmt.Sprintf("%q", s)) {
				t.Errorf("log entry holds a cancel secret: %s", text)
			}
		}
		if e.Level > zapcore.DebugLevel && strings.Contains(strings.ToLower(text), "cancel") {
			t.Errorf("log entry above debug about a cancel: %s %s", e.Level, text)
		}
	}
}

// sendForwardedCancel sends a CancelRequest as one pgverbs forwards it to
// another and waits for the close.
func sendForwardedCancel(t *testing.T, addr string, pid uint32, secret []byte) {
	t.Helper()
	c := dialProxy(t, addr)
	pkt := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	pkt = binary.BigEndian.AppendUint32(pkt, forwardedCancelCode)
	pkt = binary.BigEndian.AppendUint32(pkt, pid)
	c.write(append(pkt, secret...))
	if rest, err := io.ReadAll(c.conn); err != nil || len(rest) != 0 {
		t.Fatalf("forwarded cancel: answered %q, %v", rest, err)
	}
}

// cancelCounts are a proxy's cancel counters, as the metrics read them.
type cancelCounts struct{ matched, forwarded, dropped, failed uint64 }

func countsOf(p *proxyEnv) cancelCounts {
	t := p.srv.Totals()
	return cancelCounts{t.Cancels[stats.CancelMatched], t.Cancels[stats.CancelForwarded],
		t.Cancels[stats.CancelDropped], t.CancelForwardFailures}
}

func (c cancelCounts) String() string {
	return fmt.Sprintf("matched %d forwarded %d dropped %d failed %d", c.matched, c.forwarded, c.dropped, c.failed)
}

// TestCancelPeering runs two instances in front of one backend, peers 1 and
// 2, and a third peer address where a recorder listens. A session of
// instance 1 is cancelled through instance 2: under 3.2 the key names
// peer 1 and goes there alone; under 3.0 it goes to every peer, the
// recorder included, which sees the forwarded packet's exact bytes. Forged
// keys and keys naming an unconfigured peer cancel nothing, a forwarded
// cancel is never forwarded again (not even between two peers whose maps
// point at each other), and nothing above debug level is logged about any
// of it.
func TestCancelPeering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		minor  uint16
		keyLen int
	}{
		{"3.0", 0, 4},
		{"3.2", 2, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend(t)
			optA, logsA := observed(t)
			optB, logsB := observed(t)
			a, b := startProxy(t, fb.addr, optA), startProxy(t, fb.addr, optB)
			rec := newPeerRecorder(t)
			peers := map[int]string{1: a.addr, 2: b.addr, 3: rec.addr}
			a.srv.SetPeering(proxy.Peering{ID: 1, Peers: peers})
			b.srv.SetPeering(proxy.Peering{ID: 2, Peers: peers})

			_, _, clientKey, backendKey := establish(t, fb, a, tc.minor, tc.keyLen)
			if len(clientKey) != tc.keyLen {
				t.Fatalf("client key of %d bytes, want %d", len(clientKey), tc.keyLen)
			}
			if tc.keyLen == 32 && (clientKey[0] != 0 || clientKey[1] != 1) {
				t.Fatalf("3.2 key %x does not start with peer id 1", clientKey)
			}

			// The owner's key, sent to the other instance.
			sendCancel(t, b.addr, 4242, clientKey)
			if cr := fb.expectCancel(t); cr.ProcessID != 4242 || !bytes.Equal(cr.SecretKey, backendKey) {
				t.Fatalf("backend got cancel %d/%x, want 4242/%x", cr.ProcessID, cr.SecretKey, backendKey)
			}
			fb.expectNoCancel(t)
			if tc.keyLen == 4 {
				// Every peer but itself: the recorder got it too, as a
				// forwarded cancel with the client's key.
				want := binary.BigEndian.AppendUint32(nil, 16)
				want = binary.BigEndian.AppendUint32(want, forwardedCancelCode)
				want = binary.BigEndian.AppendUint32(want, 4242)
				want = append(want, clientKey...)
				select {
				case got := <-rec.got:
					if !bytes.Equal(got, want) {
						t.Fatalf("peer 3 got %x, want %x", got, want)
					}
				default:
					t.Fatal("a 3.0 cancel was not forwarded to every peer")
				}
			}
			rec.expectNone(t)
			if got, want := countsOf(b), (cancelCounts{forwarded: 1}); got != want {
				t.Errorf("instance 2: %v, want %v", got, want)
			}
			if got, want := countsOf(a), (cancelCounts{matched: 1}); got != want {
				t.Errorf("instance 1: %v, want %v", got, want)
			}

			// A forged key: forwarded as an unknown one is, matched nowhere.
			forged := randBytes(t, tc.keyLen)
			if tc.keyLen == 32 {
				forged[0], forged[1] = 0, 1
			}
			sendCancel(t, b.addr, 4242, forged)
			fb.expectNoCancel(t)
			if tc.keyLen == 4 {
				select {
				case <-rec.got:
				default:
					t.Fatal("a forged 3.0 cancel was not forwarded to every peer")
				}
			}
			rec.expectNone(t)
			if got, want := countsOf(b), (cancelCounts{forwarded: 2}); got != want {
				t.Errorf("instance 2 after a forged key: %v, want %v", got, want)
			}
			if got, want := countsOf(a), (cancelCounts{matched: 1, dropped: 1}); got != want {
				t.Errorf("instance 1 after a forged key: %v, want %v", got, want)
			}

			if tc.keyLen == 32 {
				// A key naming peer 7, which is not configured, and one
				// naming the instance that got it: dropped there.
				unconf := bytes.Clone(clientKey)
				unconf[1] = 7
				sendCancel(t, b.addr, 4242, unconf)
				self := bytes.Clone(clientKey)
				self[1] = 2
				sendCancel(t, b.addr, 4242, self)
				// The top two bits set: not a key made with peering on.
				high := bytes.Clone(clientKey)
				high[0] = 0x40
				sendCancel(t, b.addr, 4242, high)
				fb.expectNoCancel(t)
				rec.expectNone(t)
				if got, want := countsOf(b), (cancelCounts{forwarded: 2, dropped: 3}); got != want {
					t.Errorf("instance 2 after unconfigured peers: %v, want %v", got, want)
				}
				if got, want := countsOf(a), (cancelCounts{matched: 1, dropped: 1}); got != want {
					t.Errorf("instance 1 after unconfigured peers: %v, want %v", got, want)
				}
			}

			// A forwarded cancel is never forwarded again: sent to the
			// instance that does not own the key, it is dropped there...
			before := countsOf(a)
			sendForwardedCancel(t, b.addr, 4242, clientKey)
			fb.expectNoCancel(t)
			rec.expectNone(t)
			if got := countsOf(a); got != before {
				t.Errorf("a forwarded cancel reached instance 1 again: %v, was %v", got, before)
			}
			// ...and sent to the owner, it cancels.
			sendForwardedCancel(t, a.addr, 4242, clientKey)
			if cr := fb.expectCancel(t); !bytes.Equal(cr.SecretKey, backendKey) {
				t.Fatalf("backend got cancel %x, want %x", cr.SecretKey, backendKey)
			}

			// Two instances whose maps point at each other for a third id
			// (or, under 3.0, name only each other): one hop, then dropped.
			a.srv.SetPeering(proxy.Peering{ID: 1, Peers: map[int]string{3: b.addr}})
			b.srv.SetPeering(proxy.Peering{ID: 2, Peers: map[int]string{3: a.addr}})
			loop := randBytes(t, tc.keyLen)
			if tc.keyLen == 32 {
				loop[0], loop[1] = 0, 3
			}
			beforeA, beforeB := countsOf(a), countsOf(b)
			sendCancel(t, a.addr, 4242, loop)
			fb.expectNoCancel(t)
			if got := countsOf(a); got.forwarded != beforeA.forwarded+1 || got.dropped != beforeA.dropped {
				t.Errorf("instance 1 in a loop: %v, was %v", got, beforeA)
			}
			if got := countsOf(b); got.dropped != beforeB.dropped+1 || got.forwarded != beforeB.forwarded {
				t.Errorf("instance 2 in a loop: %v, was %v", got, beforeB)
			}
			// Nothing bounces on after the client's connection closed.
			time.Sleep(50 * time.Millisecond)
			if got := countsOf(a); got.forwarded+got.dropped+got.matched != beforeA.forwarded+beforeA.dropped+beforeA.matched+1 {
				t.Errorf("instance 1 got more cancels after the loop: %v", got)
			}

			// Both still serve.
			c, bc, _, _ := establish(t, fb, b, tc.minor, tc.keyLen)
			roundTrip(t, c, bc)

			checkLogs(t, logsA, clientKey, backendKey, forged)
			checkLogs(t, logsB, clientKey, backendKey, forged)
		})
	}
}

// TestCancelPeerDown checks that a cancel forwarded to a peer that is down
// is dropped without a word to the client or above debug level, counted
// as a failed forward, and that the client's connection closes within
// the forward timeout.
func TestCancelPeerDown(t *testing.T) {
	fb := newFakeBackend(t)
	opt, logs := observed(t)
	p := startProxy(t, fb.addr, opt)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p.srv.SetPeering(proxy.Peering{ID: 2, Peers: map[int]string{1: dead}})
	for _, key := range [][]byte{randBytes(t, 4), append([]byte{0, 1}, randBytes(t, 30)...)} {
		start := time.Now()
		sendCancel(t, p.addr, 77, key)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("cancel to a dead peer took %v", d)
		}
	}
	fb.expectNoCancel(t)
	if got, want := countsOf(p), (cancelCounts{forwarded: 2, failed: 2}); got != want {
		t.Errorf("%v, want %v", got, want)
	}
	checkLogs(t, logs)
	c, bc, _, _ := establish(t, fb, p, 2, 32)
	roundTrip(t, c, bc)
}

// TestCancelKeysWithoutPeering checks that with peering off a 3.2 key is
// random throughout, so that no two sessions' keys share a prefix by
// construction, and that unknown keys are dropped without a forward.
func TestCancelKeysWithoutPeering(t *testing.T) {
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	prefixes := map[[2]byte]bool{}
	for range 8 {
		_, _, key, _ := establish(t, fb, p, 2, 32)
		prefixes[[2]byte(key)] = true
	}
	if len(prefixes) < 2 {
		t.Errorf("8 keys share their first two bytes with peering off")
	}
	sendCancel(t, p.addr, 4242, append([]byte{0, 1}, randBytes(t, 30)...))
	if got, want := countsOf(p), (cancelCounts{dropped: 1}); got != want {
		t.Errorf("%v, want %v", got, want)
	}
}
