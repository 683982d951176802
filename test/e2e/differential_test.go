package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Differential tests: the same wire-level message
// sequence is sent twice, through pgverbs with pgverbs commands in it, and
// straight to PostgreSQL with each command replaced by a plain SQL
// statement of the same shape. The client must see the same sequence of
// reply types both ways, and the same transaction status in every
// ReadyForQuery. SQLSTATEs differ by construction (an unknown package is
// not an unknown table), so only the fact that an error came is compared.
//
// Statement texts use placeholders, replaced per side:
//
//	{{ok}}     INSTALL EXTENSION baz          CREATE TABLE baz_equiv(v int)
//	{{okt}}    baz_data                       baz_equiv (the table {{ok}} makes)
//	{{ok2}}    INSTALL EXTENSION bar          CREATE TABLE bar_equiv(v int)
//	{{fail}}   INSTALL EXTENSION nosuch       DROP TABLE no_such_table
//	{{syntax}} INSTALL EXTENSION baz bogus    CREATE TABLE baz_equiv(v int) bogus
//
// The failing equivalent is a utility statement that fails when executed,
// as the command does: "SELECT * FROM no_such_table" would already fail at
// Parse, a different (and legitimate) reply shape.
var (
	diffProxied = strings.NewReplacer(
		"{{ok}}", "INSTALL EXTENSION baz",
		"{{okt}}", "baz_data",
		"{{ok2}}", "INSTALL EXTENSION bar",
		"{{fail}}", "INSTALL EXTENSION nosuch",
		"{{syntax}}", "INSTALL EXTENSION baz bogus",
	)
	diffDirect = strings.NewReplacer(
		"{{ok}}", "CREATE TABLE baz_equiv(v int)",
		"{{okt}}", "baz_equiv",
		"{{ok2}}", "CREATE TABLE bar_equiv(v int)",
		"{{fail}}", "DROP TABLE no_such_table",
		"{{syntax}}", "CREATE TABLE baz_equiv(v int) bogus",
	)
)

// diffRound is a batch of messages written at once, followed by reading
// the replies: until as many ReadyForQuery as the batch has Sync and Query
// messages or, when flushed is set (a batch ending in Flush, no Sync),
// exactly flushed replies, which must arrive without a Sync.
type diffRound struct {
	msgs    []pgproto3.FrontendMessage
	flushed int
}

type diffCase struct {
	name   string
	rounds []diffRound
	// want, when set, is also checked against both runs.
	want string
}

// Message constructors for the scripts.
func dQ(sql string) pgproto3.FrontendMessage { return &pgproto3.Query{String: sql} }
func dParse(name, sql string) pgproto3.FrontendMessage {
	return &pgproto3.Parse{Name: name, Query: sql}
}
func dBind(portal, stmt string) pgproto3.FrontendMessage {
	return &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt}
}
func dDescribe(kind byte, name string) pgproto3.FrontendMessage {
	return &pgproto3.Describe{ObjectType: kind, Name: name}
}
func dExecute(portal string) pgproto3.FrontendMessage { return &pgproto3.Execute{Portal: portal} }
func dClose(kind byte, name string) pgproto3.FrontendMessage {
	return &pgproto3.Close{ObjectType: kind, Name: name}
}
func dSync() pgproto3.FrontendMessage  { return &pgproto3.Sync{} }
func dFlush() pgproto3.FrontendMessage { return &pgproto3.Flush{} }

// dPBE is Parse/Bind/Execute of sql with the unnamed statement and portal.
func dPBE(sql string) []pgproto3.FrontendMessage {
	return []pgproto3.FrontendMessage{dParse("", sql), dBind("", ""), dExecute("")}
}

// dMsgs flattens messages and message groups.
func dMsgs(parts ...any) []pgproto3.FrontendMessage {
	var out []pgproto3.FrontendMessage
	for _, p := range parts {
		switch v := p.(type) {
		case pgproto3.FrontendMessage:
			out = append(out, v)
		case []pgproto3.FrontendMessage:
			out = append(out, v...)
		default:
			panic(fmt.Sprintf("dMsgs: %T", p))
		}
	}
	return out
}

func dRound(parts ...any) diffRound { return diffRound{msgs: dMsgs(parts...)} }

// rewrite returns a copy of m with its SQL placeholders replaced.
func rewrite(m pgproto3.FrontendMessage, r *strings.Replacer) pgproto3.FrontendMessage {
	switch v := m.(type) {
	case *pgproto3.Query:
		return &pgproto3.Query{String: r.Replace(v.String)}
	case *pgproto3.Parse:
		c := *v
		c.Query = r.Replace(v.Query)
		return &c
	}
	return m
}

// wireClient is a raw protocol client: it sends exactly the messages it is
// given and reports every reply.
type wireClient struct {
	conn net.Conn
	fe   *pgproto3.Frontend
}

// dialWire connects to addr and completes startup as user postgres (trust).
func dialWire(t *testing.T, addr, db string) *wireClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	w := &wireClient{conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	w.fe.Send(&pgproto3.StartupMessage{
		ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters:      map[string]string{"user": "postgres", "database": db},
	})
	if err := w.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		msg, err := w.fe.Receive()
		if err != nil {
			t.Fatalf("startup on %s: %v", addr, err)
		}
		switch m := msg.(type) {
		case *pgproto3.AuthenticationOk, *pgproto3.ParameterStatus, *pgproto3.BackendKeyData, *pgproto3.NoticeResponse:
		case *pgproto3.ReadyForQuery:
			return w
		case *pgproto3.ErrorResponse:
			t.Fatalf("startup on %s: %s %s", addr, m.Code, m.Message)
		default:
			t.Fatalf("startup on %s: unexpected %T (trust authentication expected)", addr, msg)
		}
	}
}

// diffReply is one reply: its compared form (type name, ReadyForQuery with
// its status) and, for messages, the details printed on a mismatch.
type diffReply struct {
	key    string
	detail string
}

func replyOf(msg pgproto3.BackendMessage) (r diffReply, async bool) {
	name := strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
	r = diffReply{key: name, detail: name}
	switch m := msg.(type) {
	case *pgproto3.ReadyForQuery:
		r.key = fmt.Sprintf("ReadyForQuery(%c)", m.TxStatus)
		r.detail = r.key
	case *pgproto3.ErrorResponse:
		r.detail = fmt.Sprintf("ErrorResponse(%s %s)", m.Code, m.Message)
	case *pgproto3.CommandComplete:
		r.detail = fmt.Sprintf("CommandComplete(%s)", m.CommandTag)
	case *pgproto3.NoticeResponse:
		r.detail = fmt.Sprintf("NoticeResponse(%s)", m.Message)
		async = true
	case *pgproto3.ParameterStatus, *pgproto3.NotificationResponse:
		async = true
	}
	return r, async
}

// run sends the rounds and collects the replies. Notices, parameter
// changes and notifications are not compared (a command may legitimately
// raise notices a CREATE TABLE does not), but are listed in the details. A
// reply that does not come in time ends the run with "<timeout>".
func (w *wireClient) run(rounds []diffRound, r *strings.Replacer) (keys, details []string) {
	add := func(msg pgproto3.BackendMessage) bool {
		rep, async := replyOf(msg)
		if async {
			details = append(details, "~"+rep.detail)
			return false
		}
		keys = append(keys, rep.key)
		details = append(details, rep.detail)
		return true
	}
	stop := func(err error) ([]string, []string) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
			keys = append(keys, "<timeout>")
		} else {
			keys = append(keys, "<"+err.Error()+">")
		}
		details = append(details, keys[len(keys)-1])
		return keys, details
	}
	for i, rd := range rounds {
		syncs := 0
		for _, m := range rd.msgs {
			switch m.(type) {
			case *pgproto3.Sync, *pgproto3.Query:
				syncs++
			}
			w.fe.Send(rewrite(m, r))
		}
		if err := w.fe.Flush(); err != nil {
			return stop(err)
		}
		if i > 0 {
			details = append(details, "|")
		}
		_ = w.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		if rd.flushed > 0 {
			for n := 0; n < rd.flushed; {
				msg, err := w.fe.Receive()
				if err != nil {
					return stop(err)
				}
				if add(msg) {
					n++
				}
			}
			continue
		}
		for syncs > 0 {
			msg, err := w.fe.Receive()
			if err != nil {
				return stop(err)
			}
			add(msg)
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				syncs--
			}
		}
	}
	// Nothing more may come.
	_ = w.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for {
		msg, err := w.fe.Receive()
		if err != nil {
			break
		}
		add(msg)
	}
	return keys, details
}

func diffCases() []diffCase {
	return []diffCase{
		{
			name:   "Q command alone",
			rounds: []diffRound{dRound(dQ("{{ok}}"))},
			want:   "CommandComplete ReadyForQuery(I)",
		},
		{
			name:   "Q multi-statement",
			rounds: []diffRound{dRound(dQ("CREATE TABLE a(); {{ok}}; SELECT count(*) FROM {{okt}}"))},
			want:   "CommandComplete CommandComplete RowDescription DataRow CommandComplete ReadyForQuery(I)",
		},
		{
			name: "Q failing command in the middle",
			rounds: []diffRound{
				dRound(dQ("CREATE TABLE a(); {{fail}}; SELECT 1")),
				// a was rolled back: both sides fail here.
				dRound(dQ("SELECT * FROM a")),
			},
			want: "CommandComplete ErrorResponse ReadyForQuery(I) ErrorResponse ReadyForQuery(I)",
		},
		{
			name:   "Q syntax error in a command after a statement",
			rounds: []diffRound{dRound(dQ("SELECT 1; {{syntax}}"))},
			want:   "ErrorResponse ReadyForQuery(I)",
		},
		{
			name:   "Q syntax error in a statement after a command",
			rounds: []diffRound{dRound(dQ("{{ok}}; SELEC 1"))},
			want:   "ErrorResponse ReadyForQuery(I)",
		},
		{
			name:   "extended unnamed P/B/D/E/S",
			rounds: []diffRound{dRound(dParse("", "{{ok}}"), dBind("", ""), dDescribe('P', ""), dExecute(""), dSync())},
			want:   "ParseComplete BindComplete NoData CommandComplete ReadyForQuery(I)",
		},
		{
			name: "extended named statement",
			rounds: []diffRound{
				dRound(dParse("s1", "{{ok}}"), dDescribe('S', "s1"), dSync()),
				dRound(dBind("", "s1"), dExecute(""), dSync()),
				dRound(dClose('S', "s1"), dSync()),
				// Closed: both sides now refuse it.
				dRound(dBind("", "s1"), dExecute(""), dSync()),
			},
			want: "ParseComplete ParameterDescription NoData ReadyForQuery(I) " +
				"BindComplete CommandComplete ReadyForQuery(I) " +
				"CloseComplete ReadyForQuery(I) " +
				"ErrorResponse ReadyForQuery(I)",
		},
		{
			name: "Describe of a command statement",
			rounds: []diffRound{
				dRound(dParse("", "{{ok}}"), dDescribe('S', ""), dSync()),
			},
			want: "ParseComplete ParameterDescription NoData ReadyForQuery(I)",
		},
		{
			name: "pipeline",
			rounds: []diffRound{
				dRound(dPBE("SELECT 1"), dPBE("{{ok}}"), dPBE("SELECT count(*) FROM {{okt}}"), dSync()),
			},
			want: "ParseComplete BindComplete DataRow CommandComplete " +
				"ParseComplete BindComplete CommandComplete " +
				"ParseComplete BindComplete DataRow CommandComplete ReadyForQuery(I)",
		},
		{
			name: "pipeline error, only commands discarded",
			rounds: []diffRound{
				dRound(dPBE("{{fail}}"), dPBE("{{ok}}"), dSync(), dPBE("{{ok}}"), dSync()),
			},
			want: "ParseComplete BindComplete ErrorResponse ReadyForQuery(I) " +
				"ParseComplete BindComplete CommandComplete ReadyForQuery(I)",
		},
		{
			name: "pipeline error, ordinary messages discarded",
			rounds: []diffRound{
				dRound(dPBE("{{fail}}"), dPBE("CREATE TABLE p2()"), dPBE("SELECT 1"), dSync(),
					dPBE("SELECT 2"), dSync()),
			},
			want: "ParseComplete BindComplete ErrorResponse ReadyForQuery(I) " +
				"ParseComplete BindComplete DataRow CommandComplete ReadyForQuery(I)",
		},
		{
			name: "pipeline server error, command discarded",
			rounds: []diffRound{
				dRound(dPBE("CREATE TABLE p1()"), dPBE("DROP TABLE no_such_table"), dPBE("{{ok}}"), dSync(),
					dPBE("{{ok}}"), dSync()),
			},
			want: "ParseComplete BindComplete CommandComplete ParseComplete BindComplete ErrorResponse ReadyForQuery(I) " +
				"ParseComplete BindComplete CommandComplete ReadyForQuery(I)",
		},
		{
			name: "pipeline error in the middle",
			rounds: []diffRound{
				dRound(dPBE("CREATE TABLE p1()"), dPBE("{{fail}}"), dPBE("CREATE TABLE p2()"), dPBE("{{ok}}"), dSync(),
					dPBE("{{ok}}"), dPBE("SELECT count(*) FROM {{okt}}"), dSync()),
				// The failed group was rolled back.
				dRound(dQ("SELECT * FROM p1")),
			},
			want: "ParseComplete BindComplete CommandComplete ParseComplete BindComplete ErrorResponse ReadyForQuery(I) " +
				"ParseComplete BindComplete CommandComplete ParseComplete BindComplete DataRow CommandComplete ReadyForQuery(I) " +
				"ErrorResponse ReadyForQuery(I)",
		},
		{
			name: "Flush in the middle of a pipeline",
			rounds: []diffRound{
				{msgs: dMsgs(dPBE("SELECT 1"), dPBE("{{ok}}"), dPBE("CREATE TABLE f1()"), dFlush()), flushed: 10},
				{msgs: dMsgs(dPBE("{{ok2}}"), dFlush()), flushed: 3},
				dRound(dSync()),
			},
			want: "ParseComplete BindComplete DataRow CommandComplete " +
				"ParseComplete BindComplete CommandComplete " +
				"ParseComplete BindComplete CommandComplete " +
				"ParseComplete BindComplete CommandComplete ReadyForQuery(I)",
		},
		{
			name: "BEGIN, extended command, COMMIT",
			rounds: []diffRound{
				dRound(dQ("BEGIN")),
				dRound(dPBE("{{ok}}"), dSync()),
				dRound(dQ("COMMIT")),
				// Committed: the table is there.
				dRound(dQ("SELECT count(*) FROM {{okt}}")),
			},
			want: "CommandComplete ReadyForQuery(T) " +
				"ParseComplete BindComplete CommandComplete ReadyForQuery(T) " +
				"CommandComplete ReadyForQuery(I) " +
				"RowDescription DataRow CommandComplete ReadyForQuery(I)",
		},
		{
			name: "failing extended command in a transaction block",
			rounds: []diffRound{
				dRound(dQ("BEGIN")),
				dRound(dPBE("{{fail}}"), dSync()),
				dRound(dQ("ROLLBACK")),
			},
			want: "CommandComplete ReadyForQuery(T) " +
				"ParseComplete BindComplete ErrorResponse ReadyForQuery(E) " +
				"CommandComplete ReadyForQuery(I)",
		},
		{
			name: "extended command in a failed transaction",
			rounds: []diffRound{
				dRound(dQ("BEGIN")),
				dRound(dQ("SELECT 1/0")),
				dRound(dPBE("{{ok}}"), dSync()),
				dRound(dQ("ROLLBACK")),
			},
			want: "CommandComplete ReadyForQuery(T) ErrorResponse ReadyForQuery(E) " +
				"ErrorResponse ReadyForQuery(E) CommandComplete ReadyForQuery(I)",
		},
		{
			name: "unnamed portal does not outlive Sync",
			rounds: []diffRound{
				dRound(dParse("", "{{ok}}"), dBind("", ""), dSync()),
				dRound(dExecute(""), dSync()),
			},
			want: "ParseComplete BindComplete ReadyForQuery(I) ErrorResponse ReadyForQuery(I)",
		},
	}
}

// TestDifferential runs each script through pgverbs and straight to
// PostgreSQL, each time in a database of its own, and compares the reply
// types.
func TestDifferential(t *testing.T) {
	c, p := extSetup(t)
	direct := net.JoinHostPort(c.Host, itoa(c.Port))
	for i, tc := range diffCases() {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			viaDB, directDB := fmt.Sprintf("diff%d_proxy", i), fmt.Sprintf("diff%d_direct", i)
			for _, db := range []string{viaDB, directDB} {
				if err := c.Exec(ctx, "CREATE DATABASE "+db); err != nil {
					t.Fatal(err)
				}
			}
			type result struct{ keys, details []string }
			viaConn, dirConn := dialWire(t, p.Addr(), viaDB), dialWire(t, direct, directDB)
			// Both runs at once, so that a hang costs one timeout.
			viaCh := make(chan result, 1)
			go func() {
				k, d := viaConn.run(tc.rounds, diffProxied)
				viaCh <- result{k, d}
			}()
			dk, dd := dirConn.run(tc.rounds, diffDirect)
			dir, via := result{dk, dd}, <-viaCh
			got, want := strings.Join(via.keys, " "), strings.Join(dir.keys, " ")
			if got != want {
				t.Errorf("reply types differ\nvia pgverbs: %s\ndirect:      %s\ndetails via pgverbs: %s\ndetails direct:      %s",
					got, want, strings.Join(via.details, " "), strings.Join(dir.details, " "))
			}
			if tc.want != "" && want != tc.want {
				t.Errorf("direct run does not give the expected replies (bad script?)\n got %s\nwant %s", want, tc.want)
			}
		})
	}
}
