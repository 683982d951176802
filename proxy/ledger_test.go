package proxy

import (
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// step is one event of a ledger scenario: a client message sent (fe) or a
// server message received (be, with status for ReadyForQuery).
type step struct {
	fe     pgwire.Frontend
	be     pgwire.Backend
	status byte
}

func sent(types string) []step {
	var out []step
	for i := range len(types) {
		out = append(out, step{fe: pgwire.Frontend(types[i])})
	}
	return out
}

func recv(types string) []step {
	var out []step
	for i := range len(types) {
		out = append(out, step{be: pgwire.Backend(types[i])})
	}
	return out
}

func rfq(status byte) []step { return []step{{be: pgwire.ReadyForQuery, status: status}} }

func join(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestLedger(t *testing.T) {
	cases := []struct {
		name  string
		steps []step
		// Expected state afterwards.
		pending, needFlush, discarding, copyIn bool
		status                                 byte
		epoch                                  uint64
	}{
		{name: "nothing", status: 'I'},
		{name: "simple query outstanding", steps: sent("Q"), pending: true, status: 'I'},
		{name: "simple query answered", steps: join(sent("Q"), recv("TDDC"), rfq('I')), status: 'I', epoch: 1},
		{name: "simple query rows do not end it", steps: join(sent("Q"), recv("TDDC")), pending: true, status: 'I'},
		{name: "BEGIN leaves the block open", steps: join(sent("Q"), recv("C"), rfq('T')), status: 'T'},
		{name: "failed block", steps: join(sent("Q"), recv("E"), rfq('E')), status: 'E'},
		{name: "extended run needs Flush", steps: sent("PBDE"), pending: true, needFlush: true, status: 'I'},
		{name: "extended run answered without Sync", steps: join(sent("PBDE"), recv("12TDC")), status: 'I'},
		{name: "extended run partly answered", steps: join(sent("PBDE"), recv("12T")), pending: true, needFlush: true, status: 'I'},
		{name: "run then Sync", steps: join(sent("PBES"), recv("12C")), pending: true, status: 'I'},
		{name: "run and Sync answered", steps: join(sent("PBES"), recv("12C"), rfq('I')), status: 'I', epoch: 1},
		{name: "describe statement: t then T counts once", steps: join(sent("PD"), recv("1tT")), status: 'I'},
		{name: "portal suspended ends an Execute", steps: join(sent("BE"), recv("2DDs")), status: 'I'},
		{name: "close complete", steps: join(sent("C"), recv("3")), status: 'I'},
		{name: "empty query", steps: join(sent("PBE"), recv("12I")), status: 'I'},
		{name: "error without Sync discards", steps: join(sent("PBE"), recv("E")), discarding: true, status: 'I'},
		{name: "messages sent while discarding are not counted",
			steps: join(sent("PBE"), recv("E"), sent("PBE")), discarding: true, status: 'I'},
		{name: "Sync ends discarding", steps: join(sent("PBE"), recv("E"), sent("PBES")), pending: true, status: 'I'},
		{name: "Sync answered after discard", steps: join(sent("PBE"), recv("E"), sent("PBES"), rfq('I')), status: 'I', epoch: 1},
		{name: "error with Sync already sent does not discard",
			steps: join(sent("PBES"), recv("E")), pending: true, status: 'I'},
		{name: "error then ReadyForQuery", steps: join(sent("PBES"), recv("E"), rfq('I')), status: 'I', epoch: 1},
		{name: "pipeline of two syncs half answered",
			steps: join(sent("PBESPBES"), recv("12C"), rfq('T')), pending: true, needFlush: true, status: 'T'},
		{name: "pipeline of two syncs answered",
			steps: join(sent("PBESPBES"), recv("12C"), rfq('T'), recv("12C"), rfq('I')), status: 'I', epoch: 1},
		{name: "error inside a query is not the run's", steps: join(sent("Q"), recv("E")), pending: true, status: 'I'},
		{name: "async notice and notification cost nothing", steps: join(recv("NAS")), status: 'I'},
		{name: "asynchronous error outside any item", steps: recv("E"), status: 'I'},
		{name: "COPY FROM STDIN waits for data", steps: join(sent("Q"), recv("G")), pending: true, copyIn: true, status: 'I'},
		{name: "CopyDone ends the client's part", steps: join(sent("Q"), recv("G"), sent("dc")), pending: true, status: 'I'},
		{name: "CopyFail ends it too", steps: join(sent("Q"), recv("G"), sent("f"), recv("E"), rfq('I')), status: 'I', epoch: 1},
		{name: "ReadyForQuery clears copy state", steps: join(sent("Q"), recv("G"), rfq('I')), status: 'I', epoch: 1},
		{name: "function call", steps: join(sent("F"), recv("V"), rfq('I')), status: 'I', epoch: 1},
		{name: "Flush and CopyData are not answered", steps: sent("Hd"), status: 'I'},
		{name: "epoch counts idle ends only", steps: join(sent("QQQ"), recv("C"), rfq('T'), recv("C"), rfq('T'), recv("C"), rfq('I')), status: 'I', epoch: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLedger()
			for _, s := range tc.steps {
				if s.fe != 0 {
					if !sentMatters(s.fe) && s.fe != pgwire.CopyData && s.fe != pgwire.Flush {
						t.Fatalf("sentMatters(%c) is false but the scenario relies on it", s.fe)
					}
					l.sent(s.fe)
					continue
				}
				var msg []byte
				if s.be == pgwire.ReadyForQuery {
					msg = []byte{'Z', 0, 0, 0, 5, s.status}
				}
				if receivedMatters(s.be) {
					l.received(s.be, msg)
				}
			}
			pending, needFlush := l.outstanding()
			if pending != tc.pending || needFlush != tc.needFlush {
				t.Errorf("outstanding = %v, %v; want %v, %v (items %+v)", pending, needFlush, tc.pending, tc.needFlush, l.items)
			}
			if l.drained() == tc.pending {
				t.Errorf("drained = %v with pending %v", l.drained(), tc.pending)
			}
			if l.discarding != tc.discarding || l.copyIn != tc.copyIn {
				t.Errorf("discarding, copyIn = %v, %v; want %v, %v", l.discarding, l.copyIn, tc.discarding, tc.copyIn)
			}
			if l.status != tc.status || l.epoch != tc.epoch {
				t.Errorf("status, epoch = %c, %d; want %c, %d", l.status, l.epoch, tc.status, tc.epoch)
			}
		})
	}
}

// TestLedgerMattersMatchesReceived checks that the fast pre-checks never
// skip a message that received or sent would act on.
func TestLedgerMattersMatchesReceived(t *testing.T) {
	for b := range 256 {
		l := newLedger()
		l.sent(pgwire.Frontend(b))
		if changed := len(l.items) > 0; changed && !sentMatters(pgwire.Frontend(b)) {
			t.Errorf("sent(%q) changes the ledger but sentMatters is false", byte(b))
		}
		l = newLedger()
		l.copyIn = true
		l.sent(pgwire.Frontend(b))
		if !l.copyIn && !sentMatters(pgwire.Frontend(b)) {
			t.Errorf("sent(%q) ends COPY but sentMatters is false", byte(b))
		}

		l = newLedger()
		l.items = []pendingItem{{kind: extendedRun, n: 1}}
		l.received(pgwire.Backend(b), []byte{'Z', 0, 0, 0, 5, 'T'})
		changed := len(l.items) != 1 || l.copyIn || l.discarding || l.status != 'I'
		if changed && !receivedMatters(pgwire.Backend(b)) {
			t.Errorf("received(%q) changes the ledger but receivedMatters is false", byte(b))
		}
	}
}

func TestAfterSync(t *testing.T) {
	l := newLedger()
	l.discarding = true
	l.afterSync('T')
	if l.discarding || l.status != 'T' || l.epoch != 0 {
		t.Fatalf("after Sync in a block: %+v", l)
	}
	l.afterSync('I')
	if l.status != 'I' || l.epoch != 1 {
		t.Fatalf("after Sync ending the block: %+v", l)
	}
}
