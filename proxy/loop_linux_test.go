package proxy_test

import (
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// expectIdleLoopSession checks that the server's loops serve exactly one
// session and that it holds no relay buffer: an idle client costs the fds
// and the session's structs only.
func expectIdleLoopSession(t *testing.T, p *proxyEnv) {
	t.Helper()
	// The client may read ReadyForQuery a moment before the session is on
	// its loop, or before the loop has written the last bytes.
	deadline := time.Now().Add(ioTimeout)
	for {
		sessions, buffers := p.srv.LoopBuffers()
		if sessions == 1 && buffers == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("loops serve %d sessions holding %d buffers, want 1 session holding none", sessions, buffers)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIdleLoopSessionHoldsNoBuffer checks that a session at rest, after
// relayed traffic and after a command the engine ran, is back on its loop
// and has returned both directions' buffers to the pool.
func TestIdleLoopSessionHoldsNoBuffer(t *testing.T) {
	if os.Getenv("PGVERBS_RELAY_MODE") == "goroutines" {
		t.Skip("the goroutine relay holds its buffers for the session's life by design")
	}
	p, c, bc := startEngineProxy(t)
	expectIdleLoopSession(t, p)

	roundTrip(t, c, bc)
	expectIdleLoopSession(t, p)

	c.send(&pgproto3.Query{String: "PING"})
	bc.servePing()
	bc.expectFrontend(&pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	c.expectPingRows(true)
	recv[*pgproto3.ReadyForQuery](c)
	expectIdleLoopSession(t, p)

	// And it still relays.
	roundTrip(t, c, bc)
}
