package proxy_test

import (
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/proxy"
	"github.com/pgverbs/pgverbs/stats"
)

// onlyClient returns the one session the server lists.
func onlyClient(t *testing.T, srv *proxy.Server) stats.Client {
	t.Helper()
	cs := srv.Clients()
	if len(cs) != 1 {
		t.Fatalf("%d clients listed, want 1: %+v", len(cs), cs)
	}
	return cs[0]
}

// TestCountsRelayedTraffic follows one session's counters through plain
// queries, a transaction and a command, and the server's totals through
// its end, in whichever relay mode the run uses.
func TestCountsRelayedTraffic(t *testing.T) {
	fb := newFakeBackend(t)
	reg := commands.NewRegistry()
	reg.Register(pingCommand{})
	p := startProxy(t, fb.addr, func(o *proxy.Options) { o.Commands = reg })
	c := dialProxy(t, p.addr)
	c.write(startupMsg(0, "user", "alice", "database", "app", "application_name", "tool"))
	bc := fb.accept(t)
	bc.handshake(4242, randBytes(t, 4))
	c.expectHandshake(4242)

	cl := onlyClient(t, p.srv)
	if cl.PID != 4242 || cl.User != "alice" || cl.Database != "app" || cl.ApplicationName != "tool" || cl.TLS ||
		cl.State != stats.Idle || cl.ConnectedAt.IsZero() || cl.Addr != c.conn.LocalAddr().String() {
		t.Fatalf("after startup: %+v", cl)
	}

	c.send(&pgproto3.Query{String: "BEGIN"}) // 1+4+6 bytes
	bc.expectFrontend(&pgproto3.Query{})
	if cl := onlyClient(t, p.srv); cl.State != stats.Active || cl.Queries != 1 || cl.BytesIn != 11 || cl.LastMessageAt.IsZero() {
		t.Fatalf("while the query runs: %+v", cl)
	}
	// 1+4+6 and 6 bytes.
	bc.send(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}, &pgproto3.ReadyForQuery{TxStatus: 'T'})
	c.expectBackend(&pgproto3.CommandComplete{}, &pgproto3.ReadyForQuery{})
	// Inside the block: no transaction has ended yet.
	if cl := onlyClient(t, p.srv); cl.State != stats.InTransaction || cl.Transactions != 0 || cl.BytesOut != 17 {
		t.Fatalf("in the transaction: %+v", cl)
	}

	// An extended-protocol run counts its Sync as the query; its idle
	// ReadyForQuery ends the transaction.
	c.send(&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	bc.expectFrontend(&pgproto3.Parse{}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	bc.send(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	c.expectBackend(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.CommandComplete{}, &pgproto3.ReadyForQuery{})
	if cl := onlyClient(t, p.srv); cl.State != stats.Idle || cl.Queries != 2 || cl.Transactions != 1 {
		t.Fatalf("after the extended run: %+v", cl)
	}

	// A command shows while it runs and is counted with its outcome.
	c.send(&pgproto3.Query{String: "PING"})
	bc.expectFrontend(&pgproto3.Close{}, &pgproto3.Close{}, &pgproto3.Parse{}, &pgproto3.Bind{},
		&pgproto3.Describe{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	if cl := onlyClient(t, p.srv); cl.State != stats.Command || cl.Command != "PING" {
		t.Fatalf("while PING runs: %+v", cl)
	}
	bc.send(&pgproto3.CloseComplete{}, &pgproto3.CloseComplete{}, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("text"), DataTypeOID: 25}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("pong")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	bc.expectFrontend(&pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	c.expectPingRows(true)
	recv[*pgproto3.ReadyForQuery](c)
	if cl := onlyClient(t, p.srv); cl.State != stats.Idle || cl.Command != "" {
		t.Fatalf("after PING: %+v", cl)
	}
	c.send(&pgproto3.Query{String: "PING FAIL"})
	bc.expectFrontend(&pgproto3.Close{}, &pgproto3.Close{}, &pgproto3.Parse{}, &pgproto3.Bind{},
		&pgproto3.Describe{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	bc.send(&pgproto3.CloseComplete{}, &pgproto3.CloseComplete{}, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		&pgproto3.NoData{}, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "P0001", Message: "pgverbs command failed"})
	bc.expectFrontend(&pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	c.expectError("ERROR", "0A000")
	recv[*pgproto3.ReadyForQuery](c)
	cmds := p.srv.CommandStats()
	if len(cmds) != 2 || cmds[0].Command != "PING" || cmds[0].Outcome != "0A" || cmds[0].Duration.Count != 1 ||
		cmds[1].Outcome != stats.OutcomeOK || cmds[1].Duration.Count != 1 {
		t.Fatalf("commands: %+v", cmds)
	}

	// The engine's own traffic is not relayed traffic.
	live := p.srv.Totals()
	if live.Accepted != 1 || live.Queries != 2 || live.Transactions != 1 || live.BytesIn != 11+45 || live.BytesOut != 17+30 {
		t.Fatalf("totals while the session lives: %+v", live)
	}
	c.send(&pgproto3.Terminate{})
	bc.receive()
	bc.conn.Close()
	c.expectEOF()
	p.waitSessions(t, 0)
	// What it had, and the Terminate.
	live.BytesIn += 5
	if ended := p.srv.Totals(); ended != live {
		t.Fatalf("totals after the session ended: %+v, want %+v", ended, live)
	}
}

// TestCountsRefusals checks each reason a connection is refused for, and
// that a backend dial, failed or not, is timed.
func TestCountsRefusals(t *testing.T) {
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr, func(o *proxy.Options) { o.Limits.MaxClientConns = 1 })

	c := dialProxy(t, p.addr)
	c.write(startupMsg(0, "user", "mallory"))
	bc := fb.accept(t)
	bc.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28P01",
		Message: `password authentication failed for user "mallory"`})
	c.expectError("FATAL", "28P01")
	bc.conn.Close()
	p.waitSessions(t, 0)

	c1, _, _, _ := establish(t, fb, p, 0, 4)
	c2 := dialProxy(t, p.addr)
	c2.write(startupMsg(0, "user", "bob"))
	c2.expectError("FATAL", "53300")
	c1.conn.Close()
	p.waitSessions(t, 0)

	tot := p.srv.Totals()
	want := stats.Totals{Accepted: 3}
	want.Refused[stats.RefusedAuth] = 1
	want.Refused[stats.RefusedLimit] = 1
	if tot.Accepted != want.Accepted || tot.Refused != want.Refused {
		t.Fatalf("totals %+v, want %+v", tot, want)
	}
	if n := p.srv.ConnectLatency().Count; n != 2 {
		t.Fatalf("%d backend connects timed, want 2", n)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p = startProxy(t, addr)
	c = dialProxy(t, p.addr)
	c.write(startupMsg(0, "user", "alice"))
	c.expectError("FATAL", "08006")
	if tot := p.srv.Totals(); tot.Refused[stats.RefusedBackendUnreachable] != 1 || p.srv.ConnectLatency().Count != 1 {
		t.Fatalf("backend unreachable: totals %+v", tot)
	}
}
