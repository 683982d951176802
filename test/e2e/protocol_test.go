package e2e

import (
	"encoding/binary"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// TestProtocolNegotiation speaks the startup protocol by hand: a
// GSSENCRequest is answered 'N' and the connection goes on; a grease
// protocol version 3.9999 with an unknown _pq_ option gets the server's
// NegotiateProtocolVersion, exactly once; BackendKeyData carries the real
// backend pid.
func TestProtocolNegotiation(t *testing.T) {
	_, p := trustSetup(t, pgtest.Options{})
	conn := dialRaw(t, p)

	gss, _ := (&pgproto3.GSSEncRequest{}).Encode(nil)
	if _, err := conn.Write(gss); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("GSSENCRequest answer %q, %v; want 'N'", b[0], err)
	}

	// Startup message with a grease minor version, built by hand because
	// pgproto3 only encodes the versions it knows.
	var body []byte
	body = binary.BigEndian.AppendUint32(body, 3<<16|9999)
	for _, kv := range [][2]string{{"user", "postgres"}, {"database", "postgres"}, {"_pq_.grease_option", "x"}} {
		body = append(append(append(append(body, kv[0]...), 0), kv[1]...), 0)
	}
	body = append(body, 0)
	pkt := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	if _, err := conn.Write(append(pkt, body...)); err != nil {
		t.Fatal(err)
	}

	fe := pgproto3.NewFrontend(conn, conn)
	var seen []string
	var negotiations int
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %v: %v", seen, err)
		}
		switch m := msg.(type) {
		case *pgproto3.NegotiateProtocolVersion:
			negotiations++
			if m.NewestMinorProtocol&0xffff != 0 || len(m.UnrecognizedOptions) != 1 || m.UnrecognizedOptions[0] != "_pq_.grease_option" {
				t.Fatalf("NegotiateProtocolVersion = %+v", m)
			}
		case *pgproto3.BackendKeyData:
			if m.ProcessID == 0 || len(m.SecretKey) != 4 {
				t.Fatalf("BackendKeyData = %+v: want a real pid and a 4-byte key under 3.0", m)
			}
		case *pgproto3.ErrorResponse:
			t.Fatalf("error: %+v", m)
		}
		seen = append(seen, strings.TrimPrefix(strings.TrimPrefix(typeName(msg), "*pgproto3."), "pgproto3."))
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if negotiations != 1 {
		t.Fatalf("NegotiateProtocolVersion seen %d times in %v", negotiations, seen)
	}
	fe.Send(&pgproto3.Query{String: "SELECT 1"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if dr, ok := msg.(*pgproto3.DataRow); ok && string(dr.Values[0]) != "1" {
			t.Fatalf("SELECT 1 returned %q", dr.Values[0])
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
}

// dialRaw opens a TCP connection to the proxy for a test that speaks the
// protocol by hand, with a deadline so that a missing answer fails the test
// rather than hanging it; t.Cleanup closes it.
func dialRaw(t *testing.T, p *proxyProc) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	return conn
}

func typeName(v any) string { return strings.TrimSpace(strings.Split(fmtType(v), "{")[0]) }

// TestProtocol32Client asks for protocol 3.2, by hand and with pgx. The
// PostgreSQL 15 server behind the proxy speaks only 3.0, so what can be
// tested is the negotiation down: the server's NegotiateProtocolVersion
// (newest minor 0, no unknown options) reaches the client, BackendKeyData
// then has 3.0's 4-byte key (3.2's longer keys need a 3.2 server), and a
// CancelRequest with that key, sent to the proxy, cancels the session's
// query, which then goes on.
func TestProtocol32Client(t *testing.T) {
	c, p := trustSetup(t, pgtest.Options{})
	conn := dialRaw(t, p)
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion32,
		Parameters: map[string]string{"user": "postgres", "database": "postgres"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var key *pgproto3.BackendKeyData
	var negotiated *pgproto3.NegotiateProtocolVersion
	for done := false; !done; {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.NegotiateProtocolVersion:
			if negotiated != nil {
				t.Fatal("NegotiateProtocolVersion twice")
			}
			negotiated = &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: m.NewestMinorProtocol, UnrecognizedOptions: slices.Clone(m.UnrecognizedOptions)}
		case *pgproto3.BackendKeyData:
			key = &pgproto3.BackendKeyData{ProcessID: m.ProcessID, SecretKey: slices.Clone(m.SecretKey)}
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup with protocol 3.2: %+v", m)
		case *pgproto3.ReadyForQuery:
			done = true
		}
	}
	if negotiated == nil || negotiated.NewestMinorProtocol&0xffff != 0 || len(negotiated.UnrecognizedOptions) != 0 {
		t.Fatalf("NegotiateProtocolVersion = %+v, want the server's: newest minor 0, no unknown options", negotiated)
	}
	if key == nil || key.ProcessID == 0 || len(key.SecretKey) != 4 {
		t.Fatalf("BackendKeyData = %+v, want a pid and 3.0's 4-byte key", key)
	}

	fe.Send(&pgproto3.Query{String: "SELECT pg_sleep(30)"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	activeBackend(t, c, "SELECT pg_sleep(30)")
	cc, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cancel, _ := (&pgproto3.CancelRequest{ProcessID: key.ProcessID, SecretKey: key.SecretKey}).Encode(nil)
	if _, err := cc.Write(cancel); err != nil {
		t.Fatal(err)
	}
	cc.Close()
	if got := rawResult(t, fe); got != "error 57014" {
		t.Fatalf("the query after CancelRequest: %s, want error 57014", got)
	}
	fe.Send(&pgproto3.Query{String: "SELECT 7"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := rawResult(t, fe); got != "7" {
		t.Fatalf("SELECT 7 after the cancel: %s", got)
	}

	// pgx asking for 3.2 gets the same: a 3.0 session with a 4-byte key.
	ctx := testCtx(t)
	pconn := connect(t, p.URL("postgres", "", "postgres", "sslmode=disable", "max_protocol_version=3.2"))
	if k := pconn.PgConn().SecretKey(); len(k) != 4 {
		t.Fatalf("pgx with max_protocol_version=3.2 got a %d-byte key, want 4", len(k))
	}
	var n int
	if err := pconn.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
		t.Fatalf("query over negotiated protocol: %d, %v", n, err)
	}
}

// rawResult reads one simple query's answer up to ReadyForQuery: the first
// column of its last row, or "error CODE".
func rawResult(t *testing.T, fe *pgproto3.Frontend) string {
	t.Helper()
	var got string
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			got = string(m.Values[0])
		case *pgproto3.ErrorResponse:
			got = "error " + m.Code
		case *pgproto3.ReadyForQuery:
			return got
		}
	}
}

// TestNoQueryTextAtInfo checks that query text never reaches the log at
// the default level, even when the query fails.
func TestNoQueryTextAtInfo(t *testing.T) {
	c := cluster(t, pgtest.Options{})
	p := startProxy(t, c.URL("", "", "postgres"), "--log-level", "info")
	ctx := testCtx(t)
	conn := connect(t, p.URL("postgres", "", "postgres"))
	_, _ = conn.Exec(ctx, "SELECT 'very-secret-literal'::int")
	_, _ = conn.Exec(ctx, "SELECT 'another-secret-literal'")
	conn.Close(ctx)
	if strings.Contains(p.Log.String(), "secret-literal") {
		t.Fatalf("query text in the info log:\n%s", p.Log.String())
	}
}

// TestMalformedCommandMessages sends Parse, Bind and Query messages whose
// strings lack their NUL terminator, mentioning a command: the proxy must
// not crash or take them for commands, the server rejects each with 08P01
// (invalid string in message) that reaches the client, and other sessions
// go on.
func TestMalformedCommandMessages(t *testing.T) {
	_, p := trustSetup(t, pgtest.Options{})
	for _, raw := range [][]byte{
		append([]byte{'P', 0, 0, 0, 4 + 24}, "INSTALL EXTENSION foo xx"...),
		append([]byte{'Q', 0, 0, 0, 4 + 24}, "INSTALL EXTENSION foo xx"...),
		append([]byte{'B', 0, 0, 0, 4 + 3}, "abc"...),
	} {
		conn := connect(t, p.URL("postgres", "", "postgres"))
		nc := conn.PgConn().Conn()
		if _, err := nc.Write(raw); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		msg, err := pgproto3.NewFrontend(nc, nc).Receive()
		if e, ok := msg.(*pgproto3.ErrorResponse); err != nil || !ok || e.Code != "08P01" {
			t.Fatalf("answer to a malformed %q message: %#v, %v; want the server's ErrorResponse 08P01", raw[0], msg, err)
		}
		var one int
		if err := connect(t, p.URL("postgres", "", "postgres")).QueryRow(testCtx(t), "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("after a malformed %q message: %v", raw[0], err)
		}
	}
}
