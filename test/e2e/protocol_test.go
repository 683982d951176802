package e2e

import (
	"encoding/binary"
	"net"
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
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))

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

func typeName(v any) string { return strings.TrimSpace(strings.Split(fmtType(v), "{")[0]) }

// TestProtocol32Client connects with pgx asking for protocol 3.2; the
// PostgreSQL 15 server negotiates it down through the proxy and the
// session, cancel included, works.
func TestProtocol32Client(t *testing.T) {
	_, p := trustSetup(t, pgtest.Options{})
	ctx := testCtx(t)
	conn := connect(t, p.URL("postgres", "", "postgres", "sslmode=disable", "max_protocol_version=3.2"))
	var n int
	if err := conn.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
		t.Fatalf("query over negotiated protocol: %d, %v", n, err)
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
// not crash, the server rejects them, and other sessions go on.
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
		// Whatever the server answers (an error, then maybe a close), the
		// proxy must still serve new sessions.
		_, _ = nc.Read(make([]byte, 1024))
		var one int
		if err := connect(t, p.URL("postgres", "", "postgres")).QueryRow(testCtx(t), "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("after a malformed %q message: %v", raw[0], err)
		}
	}
}
