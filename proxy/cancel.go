package proxy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/stats"
)

// cancelKey identifies a session for CancelRequest: the backend's process id
// (kept, so pg_backend_pid() and NOTIFY sender ids match what the client was
// told) followed by a secret the proxy generated. Backend process ids are
// unique among a server's live connections, so the pair is unique.
type cancelKey string

func makeCancelKey(pid uint32, secret []byte) cancelKey {
	b := make([]byte, 4+len(secret))
	binary.BigEndian.PutUint32(b, pid)
	copy(b[4:], secret)
	return cancelKey(b)
}

// newSecret returns n random bytes for a client-facing cancel secret.
func newSecret(n int) []byte {
	b := make([]byte, n)
	// crypto/rand.Read never fails on Linux (Go 1.24+ panics instead).
	_, _ = rand.Read(b)
	return b
}

// cancelTimeout bounds delivering a cancel to the server.
const cancelTimeout = 10 * time.Second

// Cancel peering: several pgverbs instances behind one address (a TCP load
// balancer, a Kubernetes Service, DNS round robin) each see some of the
// cancel requests meant for the others' sessions, since a cancel is a new
// connection the balancer places where it likes. An instance that does
// not know a key asks the instance that handed it out.
//
// Under protocol 3.2 the key names that instance: a 32-byte secret starts
// with its peer id (big-endian, 14 bits, the top 2 bits 0), and the 30
// random bytes that remain are still 240 bits, far above the 32 of
// PostgreSQL's own 3.0 keys. Under 3.0 the secret is 4 bytes and stays
// random: an id in it would cut the 32 bits an attacker must guess to 18.
// An unmatched 3.0 cancel goes to every peer instead, which works because
// pgverbs keeps the server's process id in the key, so that the owner
// recognises its key as its own. A forged 3.0 cancel thus costs N-1 short
// connections, one to each peer, and a 3.2 one at most one.
//
// A request is forwarded as the same packet with forwardedCancelCode in
// place of CancelRequest's code. An instance takes that as a cancel it
// never forwards again, so that two peers whose maps point at each other
// cannot pass a request back and forth.

// Peering is this instance's place among pgverbs instances behind one
// address.
type Peering struct {
	// ID is this instance's peer id, 1 to 16383 (conf.MaxPeerID); 0 turns
	// peering off: keys carry no id and unknown ones are dropped.
	ID int
	// Peers maps peer ids to the address each instance listens on for
	// clients. ID's own entry, if any, is ignored.
	Peers map[int]string
}

// peering is a Peering as the cancel path reads it: the other instances
// only, in id order for 3.0's fan-out.
type peering struct {
	id    uint16
	addrs map[uint16]string
	all   []string
}

const (
	// peerIDBytes is the part of a 3.2 secret that holds the peer id.
	peerIDBytes = 2
	// maxPeerID fits the 14 bits of those 2 bytes that carry the id: the
	// top two stay 0, room for another layout later.
	maxPeerID = 1<<14 - 1
	// forwardTimeout bounds a forward: dialling a peer, writing the
	// request and waiting for the peer to close. Peers are near each
	// other; one that takes longer is down or overloaded, and a cancel
	// that late is of little use.
	forwardTimeout = 2 * time.Second
	// maxForwards bounds the forwards in flight, so that a flood of
	// forged cancels costs a bounded number of connections; beyond it
	// requests are dropped.
	maxForwards = 64
)

// SetPeering replaces this instance's peer id and peers. Keys handed out
// before keep the id they carry; cancels for them still work here, and at
// peers while the old id maps to this instance's address.
func (s *Server) SetPeering(p Peering) {
	pr := &peering{}
	if p.ID > 0 && p.ID <= maxPeerID {
		pr.id = uint16(p.ID)
		pr.addrs = map[uint16]string{}
		for _, id := range slices.Sorted(maps.Keys(p.Peers)) {
			if id == p.ID || id < 1 || id > maxPeerID {
				continue
			}
			pr.addrs[uint16(id)] = p.Peers[id]
			pr.all = append(pr.all, p.Peers[id])
		}
	}
	s.peering.Store(pr)
}

// mark writes the peer id into a new secret, under protocol 3.2 (a 3.0
// secret is too short to spare the bits) and while peering is on.
func (pr *peering) mark(secret []byte) {
	if pr.id != 0 && len(secret) > 4 {
		binary.BigEndian.PutUint16(secret, pr.id)
	}
}

// route returns the addresses a cancel this instance does not know goes
// to: the peer a 3.2 key names, every peer for a 3.0 key, none when
// peering is off or the key names this instance, no configured peer, or no
// peer at all (the top bits set: not a key pgverbs made with peering on).
func (pr *peering) route(secret []byte) []string {
	if pr.id == 0 {
		return nil
	}
	if len(secret) == 4 {
		return pr.all
	}
	if len(secret) < peerIDBytes+1 {
		return nil
	}
	id := binary.BigEndian.Uint16(secret)
	if id == 0 || id > maxPeerID || id == pr.id {
		return nil
	}
	if addr, ok := pr.addrs[id]; ok {
		return []string{addr}
	}
	return nil
}

// handleCancel delivers a client's CancelRequest (or one a peer
// forwarded) to the backend process it names if the key is this
// instance's, else forwards it to the peers route names. Like PostgreSQL
// it never answers, and closes the connection only once the request is
// delivered or dropped: a wrong key is indistinguishable from a delivered
// one. Nothing is logged above debug, and never the secret: cancels of
// unknown keys are what a guessing attacker sends.
func (s *Server) handleCancel(log *zap.Logger, p *startupPacket) {
	v, ok := s.cancels.Load(makeCancelKey(p.pid, p.secret))
	if !ok {
		s.forwardCancel(log, p)
		return
	}
	s.counters.Cancel(stats.CancelMatched)
	target := v.(*session)
	// A standalone command (BASE BACKUP) runs on the proxy's own
	// connections: cancel it directly. A key is registered only after the
	// engine exists.
	target.eng.cancelRunning()
	ctx, cancel := context.WithTimeout(context.Background(), cancelTimeout)
	defer cancel()
	if err := target.target.Cancel(ctx, target.backendPID, target.backendSecret); err != nil {
		log.Warn("could not forward cancel request", zap.Error(err))
		return
	}
	target.logger().Debug("query cancel forwarded", zap.Bool("from_peer", p.kind == kindForwardedCancel))
}

// forwardCancel sends a cancel request no session here matched on to the
// peers route names, at once and in parallel (a 3.0 request to every
// peer), and waits until each has taken it or forwardTimeout passed. It
// runs on the request's own session goroutine, never the accept loop's.
func (s *Server) forwardCancel(log *zap.Logger, p *startupPacket) {
	var addrs []string
	if p.kind == kindCancel {
		addrs = s.peering.Load().route(p.secret)
	}
	if len(addrs) == 0 {
		s.counters.Cancel(stats.CancelDropped)
		log.Debug("cancel request with unknown key dropped",
			zap.Uint32("pid", p.pid), zap.Int("secret_bytes", len(p.secret)), zap.Bool("from_peer", p.kind == kindForwardedCancel))
		return
	}
	pkt := forwardedCancel(p)
	var wg sync.WaitGroup
	started := 0
	for _, addr := range addrs {
		select {
		case s.forwards <- struct{}{}:
		default:
			s.counters.CancelForwardFailed()
			log.Debug("cancel forward dropped: too many in flight", zap.String("peer", addr), zap.Int("max", maxForwards))
			continue
		}
		started++
		wg.Go(func() {
			defer func() { <-s.forwards }()
			if err := sendForwarded(addr, pkt); err != nil {
				s.counters.CancelForwardFailed()
				log.Debug("cancel forward to peer failed", zap.String("peer", addr), zap.Error(err))
				return
			}
			log.Debug("cancel request forwarded to peer", zap.String("peer", addr), zap.Uint32("pid", p.pid))
		})
	}
	if started == 0 {
		s.counters.Cancel(stats.CancelDropped)
		return
	}
	s.counters.Cancel(stats.CancelForwarded)
	wg.Wait()
}

// forwardedCancel is p as a peer is sent it: the same key under
// forwardedCancelCode.
func forwardedCancel(p *startupPacket) []byte {
	b := make([]byte, 12, 12+len(p.secret))
	binary.BigEndian.PutUint32(b, uint32(12+len(p.secret)))
	binary.BigEndian.PutUint32(b[4:], forwardedCancelCode)
	binary.BigEndian.PutUint32(b[8:], p.pid)
	return append(b, p.secret...)
}

// sendForwarded delivers pkt on a connection of its own to addr and waits
// for the peer to close it, as a PostgreSQL client waits after its
// CancelRequest: the peer closes once it has passed the request on, so
// that the client's cancel call returns only then. A peer that keeps the
// connection open past the deadline has received the request all the
// same.
func sendForwarded(addr string, pkt []byte) error {
	deadline := time.Now().Add(forwardTimeout)
	d := net.Dialer{Deadline: deadline}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(pkt); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, 1<<10))
	return nil
}
