package proxy_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/proxy"
)

// pingCommand is a fake command for engine tests: PING runs one statement
// on the client's session (SELECT 'pong') and returns its value as a row;
// PING FAIL fails on the proxy's side without touching the server.
type pingCommand struct{}

func (pingCommand) Name() string       { return "PING" }
func (pingCommand) Keywords() []string { return []string{"PING"} }
func (pingCommand) Parse(sql string) (commands.Prepared, error) {
	return pingPrepared{fail: strings.Contains(strings.ToUpper(sql), "FAIL")}, nil
}

type pingPrepared struct{ fail bool }

func (pingPrepared) Columns() []commands.Column {
	return []commands.Column{{Name: "reply", TypeOID: pgwire.TextOID}}
}

func (p pingPrepared) Execute(ctx context.Context, c commands.Conn) (*commands.Outcome, error) {
	if p.fail {
		return nil, pgerr.New(pgerr.FeatureNotSupported, "ping failed as asked")
	}
	res, err := c.Exec("SELECT 'pong'")
	if err != nil {
		return nil, err
	}
	v := string(res.Rows[0][0])
	return &commands.Outcome{Tag: "PING", Rows: [][]*string{{&v}}}, nil
}

// pingSQL is what pingCommand runs on the server.
const pingSQL = "SELECT 'pong'"

// startEngine starts a proxy with the ping command over a fake backend and
// returns an established session.
func startEngine(t *testing.T) (*client, *beConn) {
	t.Helper()
	_, c, bc := startEngineProxy(t)
	return c, bc
}

// startEngineProxy is startEngine that also returns the proxy.
func startEngineProxy(t *testing.T) (*proxyEnv, *client, *beConn) {
	t.Helper()
	fb := newFakeBackend(t)
	reg := commands.NewRegistry()
	reg.Register(pingCommand{})
	p := startProxy(t, fb.addr, func(o *proxy.Options) { o.Commands = reg })
	c, bc, _, _ := establish(t, fb, p, 0, 4)
	return p, c, bc
}

// expectFrontend receives messages on the fake backend and checks their
// types, in order; it returns them.
func (bc *beConn) expectFrontend(want ...pgproto3.FrontendMessage) []pgproto3.FrontendMessage {
	bc.t.Helper()
	var got []pgproto3.FrontendMessage
	for _, w := range want {
		m := bc.receive()
		if reflect.TypeOf(m) != reflect.TypeOf(w) {
			bc.t.Fatalf("fake backend: got %T %+v, want %T (after %d messages)", m, m, w, len(got))
		}
		got = append(got, m)
	}
	return got
}

// expectBackend receives messages on the client and checks their types.
func (c *client) expectBackend(want ...pgproto3.BackendMessage) []pgproto3.BackendMessage {
	c.t.Helper()
	var got []pgproto3.BackendMessage
	for _, w := range want {
		m := c.receive()
		if reflect.TypeOf(m) != reflect.TypeOf(w) {
			c.t.Fatalf("client: got %T %+v, want %T (after %d messages)", m, m, w, len(got))
		}
		got = append(got, m)
	}
	return got
}

// servePing plays the server's side of the engine's statement for PING:
// the internal statement and portal closed, parsed, bound, described and
// executed, then Flush; it checks the SQL and answers with one row.
// extra are sent in the middle, as asynchronous messages would be.
func (bc *beConn) servePing(extra ...pgproto3.BackendMessage) {
	bc.t.Helper()
	msgs := bc.expectFrontend(&pgproto3.Close{}, &pgproto3.Close{}, &pgproto3.Parse{}, &pgproto3.Bind{},
		&pgproto3.Describe{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	if q := msgs[2].(*pgproto3.Parse).Query; q != pingSQL {
		bc.t.Fatalf("fake backend: engine parsed %q, want %q", q, pingSQL)
	}
	bc.send(&pgproto3.CloseComplete{}, &pgproto3.CloseComplete{}, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{})
	bc.send(extra...)
	bc.send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("text"), DataTypeOID: 25}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("pong")}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
}

// expectPingRows checks the client's view of a PING's result.
func (c *client) expectPingRows(withDescription bool) {
	c.t.Helper()
	if withDescription {
		rd := recv[*pgproto3.RowDescription](c)
		if len(rd.Fields) != 1 || string(rd.Fields[0].Name) != "reply" || rd.Fields[0].DataTypeOID != pgwire.TextOID {
			c.t.Fatalf("client: RowDescription %+v", rd)
		}
	}
	if dr := recv[*pgproto3.DataRow](c); len(dr.Values) != 1 || string(dr.Values[0]) != "pong" {
		c.t.Fatalf("client: DataRow %q", dr.Values)
	}
	if tag := recv[*pgproto3.CommandComplete](c).CommandTag; string(tag) != "PING" {
		c.t.Fatalf("client: tag %q", tag)
	}
}

// TestEngineHandoff runs a command in a simple query: the engine takes the
// backend, runs its statement, ends the implicit transaction with its own
// Sync, forwards an asynchronous notice that arrived meanwhile, and hands
// the backend back to the relay.
func TestEngineHandoff(t *testing.T) {
	c, bc := startEngine(t)
	c.send(&pgproto3.Query{String: "PING"})
	bc.servePing(&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "async"})
	bc.expectFrontend(&pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})

	if n := recv[*pgproto3.NoticeResponse](c); n.Message != "async" {
		t.Fatalf("notice %q", n.Message)
	}
	c.expectPingRows(true)
	if z := recv[*pgproto3.ReadyForQuery](c); z.TxStatus != 'I' {
		t.Fatalf("ReadyForQuery %c", z.TxStatus)
	}
	// Handed back: plain traffic flows again, twice.
	roundTrip(t, c, bc)
	roundTrip(t, c, bc)
}

// TestEnginePipelineOrder sends an ordinary extended query and then a
// command, in one write and without waiting: the command's replies must
// come after the server's, and the server must see the client's messages
// before the engine's.
func TestEnginePipelineOrder(t *testing.T) {
	c, bc := startEngine(t)
	c.send(
		&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "p", Query: "PING"}, &pgproto3.Bind{PreparedStatement: "p"}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{}, &pgproto3.Sync{},
	)
	// The client's run, then the Flush the engine needs to get its replies.
	bc.expectFrontend(&pgproto3.Parse{}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	bc.send(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		&pgproto3.DataRow{Values: [][]byte{[]byte("1")}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	bc.servePing()
	bc.expectFrontend(&pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})

	c.expectBackend(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.DataRow{}, &pgproto3.CommandComplete{},
		&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.RowDescription{})
	c.expectPingRows(false)
	recv[*pgproto3.ReadyForQuery](c)
	roundTrip(t, c, bc)
}

// TestEngineDiscardsUntilSync: after the server reports an error in an
// extended run, the command's messages that follow are skipped as the
// server skips messages, and the client's Sync ends it.
func TestEngineDiscardsUntilSync(t *testing.T) {
	c, bc := startEngine(t)
	c.send(
		&pgproto3.Parse{Query: "SELECT nonsense"}, &pgproto3.Bind{}, &pgproto3.Execute{},
		&pgproto3.Parse{Name: "p", Query: "PING"}, &pgproto3.Bind{PreparedStatement: "p"}, &pgproto3.Execute{},
		&pgproto3.Sync{},
	)
	bc.expectFrontend(&pgproto3.Parse{}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	bc.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42703", Message: "column does not exist"})
	// The engine skipped the Parse of the command as the server would; the
	// Bind and Execute of a statement it does not know are the server's to
	// skip, and nothing of the engine's own reaches it.
	bc.expectFrontend(&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})

	c.expectError("ERROR", "42703")
	recv[*pgproto3.ReadyForQuery](c)

	// The statement was never prepared: Bind of it now goes to the server.
	c.send(&pgproto3.Bind{PreparedStatement: "p"}, &pgproto3.Sync{})
	bc.expectFrontend(&pgproto3.Bind{}, &pgproto3.Sync{})
	bc.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "26000", Message: `prepared statement "p" does not exist`},
		&pgproto3.ReadyForQuery{TxStatus: 'I'})
	c.expectError("ERROR", "26000")
	recv[*pgproto3.ReadyForQuery](c)
}

// TestEngineFailureInBlock: a command that fails on the proxy's side inside
// BEGIN fails the server's transaction too (with a statement that raises,
// whose error is dropped), so the client sees its own error and status E.
func TestEngineFailureInBlock(t *testing.T) {
	c, bc := startEngine(t)
	c.send(&pgproto3.Query{String: "BEGIN"})
	bc.expectFrontend(&pgproto3.Query{})
	bc.send(&pgproto3.CommandComplete{CommandTag: []byte("BEGIN")}, &pgproto3.ReadyForQuery{TxStatus: 'T'})
	c.expectBackend(&pgproto3.CommandComplete{}, &pgproto3.ReadyForQuery{})

	c.send(&pgproto3.Query{String: "PING FAIL"})
	msgs := bc.expectFrontend(&pgproto3.Close{}, &pgproto3.Close{}, &pgproto3.Parse{}, &pgproto3.Bind{},
		&pgproto3.Describe{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	if q := msgs[2].(*pgproto3.Parse).Query; !strings.Contains(q, "RAISE EXCEPTION") {
		t.Fatalf("engine ran %q to fail the transaction", q)
	}
	bc.send(&pgproto3.CloseComplete{}, &pgproto3.CloseComplete{}, &pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
		&pgproto3.NoData{}, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "P0001", Message: "pgverbs command failed"})
	bc.expectFrontend(&pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'E'})

	e := c.expectError("ERROR", string(pgerr.FeatureNotSupported))
	if e.Message != "ping failed as asked" {
		t.Fatalf("error %q", e.Message)
	}
	if z := recv[*pgproto3.ReadyForQuery](c); z.TxStatus != 'E' {
		t.Fatalf("ReadyForQuery %c, want E", z.TxStatus)
	}
	// In the failed block a command is refused as PostgreSQL refuses
	// statements, and the server is not asked.
	c.send(&pgproto3.Parse{Query: "PING"}, &pgproto3.Sync{})
	bc.expectFrontend(&pgproto3.Close{}, &pgproto3.Close{}, &pgproto3.Parse{}, &pgproto3.Bind{},
		&pgproto3.Describe{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	bc.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "25P02", Message: "current transaction is aborted"})
	bc.expectFrontend(&pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'E'})
	c.expectError("ERROR", "25P02")
	if z := recv[*pgproto3.ReadyForQuery](c); z.TxStatus != 'E' {
		t.Fatalf("ReadyForQuery %c, want E", z.TxStatus)
	}
}

// TestEngineMultiStatementQuery: ordinary statements around a command in
// one Query run in order through the engine, with a simple query's replies
// and one Sync at the end.
func TestEngineMultiStatementQuery(t *testing.T) {
	c, bc := startEngine(t)
	c.send(&pgproto3.Query{String: "SELECT 1; PING; SELECT 2"})
	for _, sql := range []string{"SELECT 1", "", "SELECT 2"} {
		if sql == "" {
			bc.servePing()
			continue
		}
		msgs := bc.expectFrontend(&pgproto3.Parse{}, &pgproto3.Bind{}, &pgproto3.Describe{}, &pgproto3.Execute{}, &pgproto3.Flush{})
		if q := msgs[0].(*pgproto3.Parse).Query; q != sql {
			t.Fatalf("engine relayed %q, want %q", q, sql)
		}
		bc.send(&pgproto3.ParseComplete{}, &pgproto3.BindComplete{},
			&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("?column?"), DataTypeOID: 23}}},
			&pgproto3.DataRow{Values: [][]byte{[]byte(sql[7:])}}, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	}
	bc.expectFrontend(&pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})

	c.expectBackend(&pgproto3.RowDescription{}, &pgproto3.DataRow{}, &pgproto3.CommandComplete{})
	c.expectPingRows(true)
	rows := c.expectBackend(&pgproto3.RowDescription{}, &pgproto3.DataRow{}, &pgproto3.CommandComplete{})
	if v := string(rows[1].(*pgproto3.DataRow).Values[0]); v != "2" {
		t.Fatalf("third statement's row %q", v)
	}
	recv[*pgproto3.ReadyForQuery](c)
	roundTrip(t, c, bc)
}

// TestEngineSyntaxErrorRunsNothing: a syntax error anywhere in a query
// string with a command means no statement runs, as in PostgreSQL.
func TestEngineSyntaxErrorRunsNothing(t *testing.T) {
	c, bc := startEngine(t)
	c.send(&pgproto3.Query{String: "PING; SELEC 2"})
	msgs := bc.expectFrontend(&pgproto3.Close{}, &pgproto3.Close{}, &pgproto3.Parse{}, &pgproto3.Bind{},
		&pgproto3.Describe{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	if q := msgs[2].(*pgproto3.Parse).Query; !strings.Contains(q, "RAISE EXCEPTION") {
		t.Fatalf("engine ran %q first", q)
	}
	bc.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "P0001", Message: "pgverbs command failed"})
	bc.expectFrontend(&pgproto3.Sync{})
	bc.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	e := c.expectError("ERROR", "42601")
	if e.Position != 7 {
		t.Fatalf("error position %d, want 7 (in the whole string)", e.Position)
	}
	recv[*pgproto3.ReadyForQuery](c)
	roundTrip(t, c, bc)
}

// TestEngineKilledMidCommand shuts the server down while a command waits
// for the server's reply: the session ends with FATAL 57P01 and closes both
// connections, though the engine, not the relay, was serving it.
func TestEngineKilledMidCommand(t *testing.T) {
	p, c, bc := startEngineProxy(t)
	c.send(&pgproto3.Query{String: "PING"})
	bc.expectFrontend(&pgproto3.Close{}, &pgproto3.Close{}, &pgproto3.Parse{}, &pgproto3.Bind{},
		&pgproto3.Describe{}, &pgproto3.Execute{}, &pgproto3.Flush{})
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		p.srv.Close()
	}()
	c.expectError("FATAL", "57P01")
	c.expectEOF()
	bc.expectEOF()
	select {
	case <-closed:
	case <-time.After(ioTimeout):
		t.Fatal("Close did not return")
	}
}
