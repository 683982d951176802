package commands_test

import (
	"errors"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/stats"
)

// fakeSource is a proxy with the clients and totals a test sets.
type fakeSource struct {
	clients []stats.Client
	totals  stats.Totals
}

func (f *fakeSource) Clients() []stats.Client { return append([]stats.Client(nil), f.clients...) }
func (f *fakeSource) Totals() stats.Totals    { return f.totals }

// monitorConn is a commands.Conn whose server knows one role, the current
// one: a monitor or not, with the privileges of the roles in usage.
type monitorConn struct {
	t       *testing.T
	monitor bool
	usage   []string // roles the current role has the privileges of
	queries []string
}

func (f *monitorConn) Exec(sql string, args ...*string) (*commands.Result, error) {
	f.queries = append(f.queries, sql)
	row := func(vals ...string) *commands.Result {
		res := &commands.Result{Tag: "SELECT"}
		for _, v := range vals {
			res.Rows = append(res.Rows, [][]byte{[]byte(v)})
		}
		return res
	}
	switch {
	case strings.Contains(sql, "rolsuper") && strings.Contains(sql, "'pg_monitor', 'MEMBER'"):
		if f.monitor {
			return row("t"), nil
		}
		return row("f"), nil
	case strings.Contains(sql, "pg_has_role(current_user, oid, 'USAGE')"):
		if len(args) != 1 || args[0] == nil {
			f.t.Fatalf("%q: args %v, want one array", sql, args)
		}
		var own []string
		for _, u := range f.usage {
			if strings.Contains(*args[0], `"`+u+`"`) {
				own = append(own, u)
			}
		}
		return row(own...), nil
	case strings.Contains(sql, "current_setting('server_version')"):
		return row("15.8"), nil
	}
	f.t.Errorf("unexpected query %q", sql)
	return nil, errors.New("unexpected query")
}

func (f *monitorConn) ExecBatch([]string) (int, error) { return 0, errors.New("unexpected batch") }
func (f *monitorConn) Notice(string, string, string)   {}
func (f *monitorConn) User() string                    { return "alice" }
func (f *monitorConn) Database() string                { return "app" }

type pgverbsFixture struct {
	src    *fakeSource
	clock  time.Time
	window *stats.Window
	cmds   map[string]*commands.Show
}

func newPgverbsFixture(t *testing.T) *pgverbsFixture {
	t0 := time.Date(2026, 12, 3, 14, 51, 19, 123456000, time.UTC)
	f := &pgverbsFixture{src: &fakeSource{}, clock: t0, cmds: map[string]*commands.Show{}}
	f.window = stats.NewWindow(f.src, func() time.Time { return f.clock })
	cfg := conf.Default()
	cfg.Backend = "postgres://app:s3cret@db.example:5432/app"
	for _, s := range commands.ShowPgverbsCommands(f.src, f.window, func() *conf.Config { return &cfg }) {
		f.cmds[s.Name()] = s
	}
	f.src.clients = []stats.Client{{
		PID: 4242, User: "bob", Database: "app", ApplicationName: "batch", Addr: "10.0.0.2:5000", TLS: true,
		State: stats.Active, ConnectedAt: t0.Add(-time.Hour), LastMessageAt: t0.In(time.FixedZone("X", 3600)),
		BytesIn: 100, BytesOut: 2000, Transactions: 3, Queries: 5,
	}, {
		User: "alice", Database: "app", ApplicationName: "psql", Addr: "127.0.0.1:4000",
		State: stats.Startup, ConnectedAt: t0,
	}, {
		PID: 77, User: "alice", Database: "other", State: stats.Command, Command: "BASE BACKUP",
		ConnectedAt: t0.Add(-2 * time.Hour), LastMessageAt: t0.Add(-time.Minute), Queries: 1 << 40,
	}}
	return f
}

func (f *pgverbsFixture) run(t *testing.T, c commands.Conn, sql string) ([]string, []string, error) {
	t.Helper()
	return runShowCommand(t, f.cmds[sql], c, sql)
}

// TestShowPgverbsRecognised: the four commands are found by the registry
// beside the extension listings, in any letter case, and nothing else is.
func TestShowPgverbsRecognised(t *testing.T) {
	f := newPgverbsFixture(t)
	r := commands.NewRegistry()
	for _, s := range commands.ShowCommands(nil) {
		r.Register(s)
	}
	for _, name := range []string{"SHOW PGVERBS CLIENTS", "SHOW PGVERBS STATS", "SHOW PGVERBS CONFIG", "SHOW PGVERBS VERSION"} {
		s := f.cmds[name]
		if s == nil {
			t.Fatalf("no command %s", name)
		}
		r.Register(s)
	}
	for sql, want := range map[string]string{
		"show pgverbs clients;":        "SHOW PGVERBS CLIENTS",
		"Show PgVerbs Stats":           "SHOW PGVERBS STATS",
		"SHOW /* x */ PGVERBS CONFIG":  "SHOW PGVERBS CONFIG",
		"SHOW PGVERBS VERSION":         "SHOW PGVERBS VERSION",
		"SHOW pgverbs.clients":         "",
		`SHOW "pgverbs" clients`:       "",
		"SHOW PGVERBS":                 "",
		"SELECT 'SHOW PGVERBS CONFIG'": "",
	} {
		stmts, found := r.Match(sql)
		got := ""
		if found && stmts[0].Command != nil {
			got = stmts[0].Command.Name()
		}
		if got != want {
			t.Errorf("Match(%q): %q, want %q", sql, got, want)
		}
	}
	if _, err := f.cmds["SHOW PGVERBS STATS"].Parse("SHOW PGVERBS STATS now"); err == nil {
		t.Error("SHOW PGVERBS STATS now parsed")
	} else {
		checkShowError(t, "SHOW PGVERBS STATS now", err, `syntax error at or near "now"`, 20)
	}
}

func TestShowPgverbsClients(t *testing.T) {
	f := newPgverbsFixture(t)
	wantCols := []string{"pid", "user", "database", "application_name", "client_addr", "tls", "state",
		"connected_at", "last_message_at", "bytes_in", "bytes_out", "transactions", "queries", "command"}
	// Oldest first; the third client has no application_name, shown as
	// the empty string it is, and no backend yet (pid NULL).
	all := []string{
		"77|alice|other||NULL|f|command|2026-12-03 12:51:19.123456+00|2026-12-03 14:50:19.123456+00|0|0|0|1099511627776|BASE BACKUP",
		"4242|bob|app|batch|10.0.0.2:5000|t|active|2026-12-03 13:51:19.123456+00|2026-12-03 14:51:19.123456+00|100|2000|3|5|NULL",
		"NULL|alice|app|psql|127.0.0.1:4000|f|startup|2026-12-03 14:51:19.123456+00|NULL|0|0|0|0|NULL",
	}

	cols, rows, err := f.run(t, &monitorConn{t: t, monitor: true}, "SHOW PGVERBS CLIENTS")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cols, wantCols) {
		t.Errorf("columns %q, want %q", cols, wantCols)
	}
	checkRows(t, "monitor", rows, all)

	// Without the privilege: the sessions of the roles whose privileges
	// the current role has, asked of the server, and no error.
	_, rows, err = f.run(t, &monitorConn{t: t, usage: []string{"alice"}}, "SHOW PGVERBS CLIENTS")
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, "alice", rows, []string{all[0], all[2]})
	_, rows, err = f.run(t, &monitorConn{t: t, usage: []string{"bob", "carol"}}, "SHOW PGVERBS CLIENTS")
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, "bob", rows, []string{all[1]})
	_, rows, err = f.run(t, &monitorConn{t: t}, "SHOW PGVERBS CLIENTS")
	if err != nil || len(rows) != 0 {
		t.Fatalf("a role without sessions: rows %q, error %v", rows, err)
	}
}

// denied checks err is 42501 with a hint naming pg_monitor.
func denied(t *testing.T, cmd string, err error) {
	t.Helper()
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Code != pgerr.InsufficientPrivilege {
		t.Fatalf("%s without privilege: error %v, want 42501", cmd, err)
	}
	if pe.Message != "permission denied to run "+cmd || !strings.Contains(pe.Hint, `"pg_monitor"`) {
		t.Errorf("%s: message %q, hint %q", cmd, pe.Message, pe.Hint)
	}
}

func TestShowPgverbsStats(t *testing.T) {
	f := newPgverbsFixture(t)
	const cmd = "SHOW PGVERBS STATS"
	denied(t, cmd, func() error { _, _, err := f.run(t, &monitorConn{t: t}, cmd); return err }())

	f.src.totals = stats.Totals{Accepted: 10, BytesIn: 1000, BytesOut: 5000, Transactions: 40, Queries: 60}
	f.src.totals.Refused[stats.RefusedAuth] = 2
	c := &monitorConn{t: t, monitor: true}
	cols, rows, err := f.run(t, c, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"name", "total", "per_second_60s"}; !reflect.DeepEqual(cols, want) {
		t.Errorf("columns %q, want %q", cols, want)
	}
	// The first read has nothing to tell a rate from.
	checkRows(t, "first read", rows, []string{
		"accepted|10|NULL", "refused_limit|0|NULL", "refused_auth_failure|2|NULL", "refused_backend_unreachable|0|NULL",
		"refused_tls_error|0|NULL", "refused_other|0|NULL", "bytes_in|1000|NULL", "bytes_out|5000|NULL",
		"transactions|40|NULL", "queries|60|NULL",
	})
	// A minute of sampling later: the rates over it.
	for range 60 {
		f.clock = f.clock.Add(stats.WindowStep)
		f.window.Sample()
	}
	f.src.totals = stats.Totals{Accepted: 70, BytesIn: 1030, BytesOut: 5000, Transactions: 160, Queries: 180}
	f.src.totals.Refused[stats.RefusedAuth] = 2
	if _, rows, err = f.run(t, c, cmd); err != nil {
		t.Fatal(err)
	}
	checkRows(t, "after a minute", rows, []string{
		"accepted|70|1", "refused_limit|0|0", "refused_auth_failure|2|0", "refused_backend_unreachable|0|0",
		"refused_tls_error|0|0", "refused_other|0|0", "bytes_in|1030|0.5", "bytes_out|5000|0",
		"transactions|160|2", "queries|180|2",
	})
}

func TestShowPgverbsConfig(t *testing.T) {
	f := newPgverbsFixture(t)
	const cmd = "SHOW PGVERBS CONFIG"
	denied(t, cmd, func() error { _, _, err := f.run(t, &monitorConn{t: t}, cmd); return err }())
	cols, rows, err := f.run(t, &monitorConn{t: t, monitor: true}, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"name", "setting", "source", "description"}; !reflect.DeepEqual(cols, want) {
		t.Errorf("columns %q, want %q", cols, want)
	}
	cfg := conf.Default()
	if len(rows) != len(cfg.Settings()) {
		t.Errorf("%d rows, want one per setting (%d)", len(rows), len(cfg.Settings()))
	}
	var backend string
	for _, r := range rows {
		if strings.HasPrefix(r, "backend|") {
			backend = r
		}
		if strings.Contains(r, "s3cret") {
			t.Errorf("a secret is shown: %q", r)
		}
	}
	if !strings.HasPrefix(backend, "backend|postgres://app:") || !strings.Contains(backend, "|default|") {
		t.Errorf("backend row %q", backend)
	}
}

func TestShowPgverbsVersion(t *testing.T) {
	f := newPgverbsFixture(t)
	// Open to every role: the fake asks for no privilege, and fails the
	// test if the command asks.
	c := &monitorConn{t: t}
	cols, rows, err := f.run(t, c, "SHOW PGVERBS VERSION")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"pgverbs_version", "go_version", "server_version"}; !reflect.DeepEqual(cols, want) {
		t.Errorf("columns %q, want %q", cols, want)
	}
	if len(rows) != 1 || !strings.HasSuffix(rows[0], "|"+runtime.Version()+"|15.8") || strings.HasPrefix(rows[0], "|") {
		t.Errorf("rows %q, want one: a version, %s, 15.8", rows, runtime.Version())
	}
	for _, q := range c.queries {
		if strings.Contains(q, "pg_monitor") {
			t.Errorf("VERSION asked for a privilege: %q", q)
		}
	}
}

// TestShowPgverbsColumnTypes: the types the proxy can encode in binary.
func TestShowPgverbsColumnTypes(t *testing.T) {
	f := newPgverbsFixture(t)
	encodable := map[uint32]bool{pgwire.TextOID: true, pgwire.BoolOID: true, pgwire.Int4OID: true, pgwire.Int8OID: true, pgwire.Float8OID: true}
	for name, s := range f.cmds {
		prep, err := s.Parse(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range prep.Columns() {
			if !encodable[c.TypeOID] {
				t.Errorf("%s: column %s of type %d", name, c.Name, c.TypeOID)
			}
		}
	}
	prep, _ := f.cmds["SHOW PGVERBS CLIENTS"].Parse("SHOW PGVERBS CLIENTS")
	types := map[string]uint32{}
	for _, c := range prep.Columns() {
		types[c.Name] = c.TypeOID
	}
	if types["pid"] != pgwire.Int4OID || types["tls"] != pgwire.BoolOID || types["bytes_in"] != pgwire.Int8OID {
		t.Errorf("CLIENTS types %v", types)
	}
}
