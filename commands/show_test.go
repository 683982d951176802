package commands_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// The names of the SHOW commands.
const (
	cmdExtensions = "SHOW AVAILABLE EXTENSIONS"
	cmdVersions   = "SHOW AVAILABLE EXTENSION VERSIONS"
	cmdPaths      = "SHOW EXTENSION UPDATE PATHS"
)

// showCommand returns the SHOW command called name.
func showCommand(t *testing.T, repo *extension.Repo, name string) *commands.Show {
	t.Helper()
	for _, s := range commands.ShowCommands(repo) {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no command %s", name)
	return nil
}

var showParseCases = []struct {
	sql  string
	want commands.ShowStmt
}{
	{"SHOW AVAILABLE EXTENSIONS", commands.ShowStmt{Command: cmdExtensions}},
	{"show available extensions;", commands.ShowStmt{Command: cmdExtensions}},
	{"Show /* a /* nested */ b */ Available -- x\n Extensions ; ;\n", commands.ShowStmt{Command: cmdExtensions}},
	{"-- lead\nSHOW\tAVAILABLE\nEXTENSIONS -- trail", commands.ShowStmt{Command: cmdExtensions}},
	{"SHOW AVAILABLE EXTENSION VERSIONS", commands.ShowStmt{Command: cmdVersions}},
	{"SHOW AVAILABLE EXTENSION VERSIONS ;", commands.ShowStmt{Command: cmdVersions}},
	{"show available extension versions HStore", commands.ShowStmt{Command: cmdVersions, Name: "hstore"}},
	{`SHOW AVAILABLE EXTENSION VERSIONS "uuid-ossp";`, commands.ShowStmt{Command: cmdVersions, Name: "uuid-ossp"}},
	{`SHOW AVAILABLE EXTENSION VERSIONS "A""b"`, commands.ShowStmt{Command: cmdVersions, Name: `A"b`}},
	{"SHOW AVAILABLE EXTENSION VERSIONS version", commands.ShowStmt{Command: cmdVersions, Name: "version"}},
	{"SHOW AVAILABLE EXTENSION VERSIONS versions", commands.ShowStmt{Command: cmdVersions, Name: "versions"}},
	{"SHOW EXTENSION UPDATE PATHS hstore", commands.ShowStmt{Command: cmdPaths, Name: "hstore"}},
	{`show extension update paths "My Ext";`, commands.ShowStmt{Command: cmdPaths, Name: "My Ext"}},
	{"SHOW/**/EXTENSION/**/UPDATE/**/PATHS/**/Int", commands.ShowStmt{Command: cmdPaths, Name: "int"}},
	{"SHOW EXTENSION UPDATE PATHS Éclair", commands.ShowStmt{Command: cmdPaths, Name: "Éclair"}},
}

func TestParseShow(t *testing.T) {
	for _, tc := range showParseCases {
		got, err := commands.ParseShow(tc.sql)
		if err != nil {
			t.Errorf("ParseShow(%q): %v", tc.sql, err)
			continue
		}
		if *got != tc.want {
			t.Errorf("ParseShow(%q) = %+v, want %+v", tc.sql, *got, tc.want)
		}
	}
}

var showErrorCases = []struct {
	sql string
	msg string
	pos int32
}{
	{"SHOW AVAILABLE EXTENSIONS foo", `syntax error at or near "foo"`, 27},
	{"SHOW AVAILABLE", "syntax error at end of input", 15},
	{"SHOW AVAILABLE ", "syntax error at end of input", 16},
	{"SHOW AVAILABLE EXTENSION", "syntax error at end of input", 25},
	{"SHOW AVAILABLE EXTENSION VERSION x", `syntax error at or near "VERSION"`, 26},
	{"SHOW AVAILABLE EXTENSION VERSIONS a b", `syntax error at or near "b"`, 37},
	{"SHOW AVAILABLE EXTENSION VERSIONS a, b", `syntax error at or near ","`, 36},
	{"SHOW AVAILABLE EXTENSION VERSIONS select", `syntax error at or near "select"`, 35},
	{"SHOW AVAILABLE EXTENSION VERSIONS a.b", `syntax error at or near "."`, 36},
	{"SHOW AVAILABLE EXTENSION VERSIONS 'a'", `syntax error at or near "'a'"`, 35},
	{"SHOW EXTENSION UPDATE PATHS", "syntax error at end of input", 28},
	{"SHOW EXTENSION UPDATE PATHS;", `syntax error at or near ";"`, 28},
	{"SHOW EXTENSION UPDATE PATH x", `syntax error at or near "PATH"`, 23},
	{"SHOW EXTENSION PATHS x", `syntax error at or near "PATHS"`, 16},
	{"SHOW EXTENSION UPDATE PATHS 'x'", `syntax error at or near "'x'"`, 29},
	{"SHOW EXTENSION UPDATE PATHS x y", `syntax error at or near "y"`, 31},
	{"SHOW EXTENSION UPDATE PATHS x; SELECT 1", `syntax error at or near "SELECT"`, 32},
	{`SHOW "AVAILABLE" EXTENSIONS`, `syntax error at or near ""AVAILABLE""`, 6},
	{`SHOW AVAILABLE "EXTENSIONS"`, `syntax error at or near ""EXTENSIONS""`, 16},
	{`SHOW EXTENSION UPDATE "PATHS" x`, `syntax error at or near ""PATHS""`, 23},
	{"SHOW search_path", `syntax error at or near "search_path"`, 6},
	{"SHOW", "syntax error at end of input", 5},
	{"SELECT 1", `syntax error at or near "SELECT"`, 1},
	{`SHOW EXTENSION UPDATE PATHS ""`, `zero-length delimited identifier at or near """"`, 29},
	{"SHOW AVAILABLE EXTENSIONS 'x", `unterminated quoted string at or near "'x"`, 27},
	{"SHOW AVAILABLE EXTENSIONS x 'y", `syntax error at or near "x"`, 27},
	{"SHOW AVAILABLE EXTENSIONS\x00", "statement contains a null byte", 26},
	{`SHOW EXTENSION UPDATE PATHS "é" x`, `syntax error at or near "x"`, 33},
	{"/* €€ */ SHOW AVAILABLE EXTENSIONS x", `syntax error at or near "x"`, 36},
}

func TestParseShowErrors(t *testing.T) {
	for _, tc := range showErrorCases {
		st, err := commands.ParseShow(tc.sql)
		if err == nil {
			t.Errorf("ParseShow(%q) = %+v, want error", tc.sql, *st)
			continue
		}
		checkShowError(t, tc.sql, err, tc.msg, tc.pos)
	}
}

// FuzzShowGrammar requires that ParseShow does not panic, that its errors
// keep the documented contract, and that what it accepts survives a
// canonical rendering.
func FuzzShowGrammar(f *testing.F) {
	for _, tc := range showParseCases {
		f.Add(tc.sql)
	}
	for _, tc := range showErrorCases {
		f.Add(tc.sql)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		st, err := commands.ParseShow(sql)
		if err != nil {
			checkError(t, sql, err)
			return
		}
		again := st.Command
		switch again {
		case cmdExtensions, cmdVersions, cmdPaths:
		default:
			t.Fatalf("%q: command %q", sql, st.Command)
		}
		if st.Name != "" {
			again += " " + quoteIdent(st.Name)
		} else if st.Command == cmdPaths {
			t.Fatalf("%q: no name", sql)
		}
		got, err := commands.ParseShow(again)
		if err != nil || *got != *st {
			t.Fatalf("%q parsed as %+v; rendered %q parsed as %+v, %v", sql, *st, again, got, err)
		}
	})
}

func checkShowError(t *testing.T, sql string, err error, msg string, pos int32) {
	t.Helper()
	var e *pgerr.Error
	if !errors.As(err, &e) {
		t.Errorf("%q: error %v is %T, want *pgerr.Error", sql, err, err)
		return
	}
	if e.Code != pgerr.SyntaxError || e.Severity != pgerr.SeverityError {
		t.Errorf("%q: code %s severity %s, want %s ERROR", sql, e.Code, e.Severity, pgerr.SyntaxError)
	}
	if e.Message != msg || e.Position != pos {
		t.Errorf("%q: error %q at %d, want %q at %d", sql, e.Message, e.Position, msg, pos)
	}
}

func TestShowCommands(t *testing.T) {
	repo := extension.OpenRepo(t.TempDir())
	r := commands.NewRegistry()
	r.Register(installExtension)
	var names []string
	for _, cmd := range commands.ShowCommands(repo) {
		if strings.Join(cmd.Keywords(), " ") != cmd.Name() {
			t.Errorf("Name %q, Keywords %q", cmd.Name(), cmd.Keywords())
		}
		names = append(names, cmd.Name())
		r.Register(cmd)
	}
	if want := []string{cmdExtensions, cmdVersions, cmdPaths}; !reflect.DeepEqual(names, want) {
		t.Errorf("commands %q, want %q", names, want)
	}
	for _, tc := range []struct {
		sql  string
		want string // the command's name, "" for none
	}{
		{"SHOW AVAILABLE EXTENSIONS", "SHOW AVAILABLE EXTENSIONS"},
		{"show /* x */ available extensions;", "SHOW AVAILABLE EXTENSIONS"},
		{"show available extensions foo", "SHOW AVAILABLE EXTENSIONS"}, // a syntax error, but ours
		{"SHOW AVAILABLE EXTENSION VERSIONS", "SHOW AVAILABLE EXTENSION VERSIONS"},
		{"SHOW AVAILABLE EXTENSION VERSIONS x", "SHOW AVAILABLE EXTENSION VERSIONS"},
		{"SHOW EXTENSION UPDATE PATHS x", "SHOW EXTENSION UPDATE PATHS"},
		{"SHOW search_path", ""},
		{"SHOW ALL", ""},
		{"SHOW available", ""},
		{"SHOW AVAILABLE EXTENSION", ""},
		{`SHOW "available" extensions`, ""},
		{"SHOW EXTENSION UPDATE PATH", ""},
		{"SELECT 'SHOW AVAILABLE EXTENSIONS'", ""},
	} {
		stmts, found := r.Match(tc.sql)
		got := ""
		if found && stmts[0].Command != nil {
			got = stmts[0].Command.Name()
		}
		if got != tc.want {
			t.Errorf("Match(%q): command %q, want %q", tc.sql, got, tc.want)
		}
	}
	if !r.MayContain([]byte("show all")) {
		t.Error("MayContain(show all) = false")
	}

	// Parse refuses the forms of the other SHOW commands.
	for _, tc := range []struct {
		cmd string
		sql string
		msg string
		pos int32
	}{
		{cmdPaths, "SHOW AVAILABLE EXTENSIONS", `syntax error at or near "AVAILABLE"`, 6},
		{cmdExtensions, "SHOW EXTENSION UPDATE PATHS x", `syntax error at or near "EXTENSION"`, 6},
		{cmdExtensions, "SHOW AVAILABLE EXTENSION VERSIONS", `syntax error at or near "EXTENSION"`, 16},
		{cmdVersions, "show available extensions", `syntax error at or near "extensions"`, 16},
		{cmdExtensions, "SHOW AVAILABLE EXTENSIONS x", `syntax error at or near "x"`, 27},
	} {
		_, err := showCommand(t, repo, tc.cmd).Parse(tc.sql)
		if err == nil {
			t.Errorf("%s: Parse(%q) succeeded", tc.cmd, tc.sql)
			continue
		}
		checkShowError(t, tc.sql, err, tc.msg, tc.pos)
	}
}

// showNull stands for NULL in the fake server's rows and in expected rows.
const showNull = "NULL"

// showConn is a commands.Conn that answers the catalog queries of the SHOW
// commands from canned rows.
type showConn struct {
	t *testing.T
	// catalog tells whether pgverbs.extensions exists; installed holds its
	// rows (name, version).
	catalog   bool
	installed [][]string
	// The server's extensions: name, default_version, installed_version,
	// comment, requires.
	exts [][]string
	// The server's versions: name, version, installed, requires, comment.
	versions [][]string
	// Update paths by extension: source, target, path.
	paths map[string][][]string
	// fail, when set, is returned for queries containing failOn.
	fail   error
	failOn string

	queries []string
	notices []string
}

func (f *showConn) result(rows [][]string) *commands.Result {
	res := &commands.Result{Tag: "SELECT"}
	for _, r := range rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			if v != showNull {
				vals[i] = []byte(v)
			}
		}
		res.Rows = append(res.Rows, vals)
	}
	return res
}

func (f *showConn) Exec(sql string, args ...*string) (*commands.Result, error) {
	f.queries = append(f.queries, sql)
	if f.fail != nil && strings.Contains(sql, f.failOn) {
		return nil, f.fail
	}
	arg := func() string {
		if len(args) != 1 || args[0] == nil {
			f.t.Fatalf("%q: args %v, want one", sql, args)
		}
		return *args[0]
	}
	where := strings.Contains(sql, "WHERE name = $1")
	switch {
	case strings.Contains(sql, "to_regclass('pgverbs.extensions')"):
		if f.catalog {
			return f.result([][]string{{"t"}}), nil
		}
		return f.result([][]string{{"f"}}), nil
	case strings.Contains(sql, "FROM pgverbs.extensions"):
		if !f.catalog {
			return nil, &commands.ServerError{Code: "42P01", Message: `relation "pgverbs.extensions" does not exist`}
		}
		return f.result(f.installed), nil
	case strings.Contains(sql, "pg_extension_update_paths($1)"):
		return f.result(f.paths[arg()]), nil
	case strings.Contains(sql, "FROM pg_catalog.pg_available_extensions WHERE name = $1"):
		var rows [][]string
		for _, e := range f.exts {
			if e[0] == arg() {
				rows = append(rows, []string{"1"})
			}
		}
		return f.result(rows), nil
	case strings.Contains(sql, "FROM pg_catalog.pg_available_extensions e") &&
		strings.Contains(sql, "LEFT JOIN pg_catalog.pg_available_extension_versions v ON v.name = e.name AND v.version = e.default_version"):
		return f.result(f.exts), nil
	case strings.HasPrefix(sql, "SELECT name, version, installed, pg_catalog.array_to_string(requires, ', '), comment FROM pg_catalog.pg_available_extension_versions"):
		var rows [][]string
		for _, v := range f.versions {
			if !where || v[0] == arg() {
				rows = append(rows, v)
			}
		}
		return f.result(rows), nil
	}
	f.t.Errorf("unexpected query %q", sql)
	return nil, errors.New("unexpected query")
}

func (f *showConn) ExecBatch([]string) (int, error) {
	f.t.Error("ExecBatch called")
	return 0, errors.New("unexpected batch")
}

func (f *showConn) Notice(severity, message, detail string) {
	f.notices = append(f.notices, severity+": "+message)
}

func (f *showConn) User() string     { return "alice" }
func (f *showConn) Database() string { return "app" }

// newShowConn returns a fake server with plpgsql and hstore, whose
// versions and paths come in no particular order.
func newShowConn(t *testing.T) *showConn {
	return &showConn{
		t: t,
		exts: [][]string{
			{"plpgsql", "1.0", "1.0", "PL/pgSQL procedural language", showNull},
			{"hstore", "1.8", showNull, "data type for storing sets of (key, value) pairs", showNull},
			{"earthdistance", "1.1", showNull, "calculate great-circle distances", "cube"},
		},
		versions: [][]string{
			{"hstore", "1.8", "f", showNull, "data type for storing sets of (key, value) pairs"},
			{"hstore", "1.10", "f", showNull, "hstore at 1.10"},
			{"hstore", "1.4", "f", showNull, "data type for storing sets of (key, value) pairs"},
			{"plpgsql", "1.0", "t", showNull, "PL/pgSQL procedural language"},
			{"earthdistance", "1.1", "f", "cube", "calculate great-circle distances"},
		},
		paths: map[string][][]string{
			"hstore": {
				{"1.8", "1.4", showNull},
				{"1.4", "1.8", "1.4--1.5--1.6--1.7--1.8"},
				{"1.4", "1.5", "1.4--1.5"},
				{"1.10", "1.4", showNull},
			},
		},
	}
}

// showRepo writes an extensions directory: foo and bar (pgverbs layout),
// hstore (pgverbs layout, also on the server), multi (native layout, with
// versions 1.0, 1.1 and 2.0 and a secondary control file for 1.1) and
// broken (an unknown control key).
func showRepo(t *testing.T) *extension.Repo {
	dir := t.TempDir()
	files := map[string]string{
		"foo/control": "name = foo\nversion = 1.0\ncomment = 'foo things'\n" +
			"depends = bar (>= 1.1), baz\nconflicts = bla (< 0.8)\n",
		"foo/install.sql":    "CREATE TABLE foo_t (id int);\n",
		"bar/control":        "name = bar\nversion = 1.2\n",
		"bar/install.sql":    "SELECT 1;\n",
		"hstore/control":     "name = hstore\nversion = 9.9\ncomment = 'our own hstore'\n",
		"hstore/install.sql": "SELECT 1;\n",
		"multi.control": "comment = 'several versions'\ndefault_version = '2.0'\n" +
			"relocatable = true\n",
		"multi--1.1.control":  "comment = 'several versions, at 1.1'\nrequires = 'plpgsql'\n",
		"multi--1.0.sql":      "SELECT 1;\n",
		"multi--1.0--1.1.sql": "SELECT 1;\n",
		"multi--1.1--2.0.sql": "SELECT 1;\n",
		"broken/control":      "name = broken\nversion = 1.0\nbogus = 1\n",
		"broken/install.sql":  "SELECT 1;\n",
	}
	for name, text := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return extension.OpenRepo(dir)
}

// runShow parses and runs sql with the command called cmd, returning the
// column names, the rows rendered as "a|b|NULL" and the error.
func runShow(t *testing.T, repo *extension.Repo, c commands.Conn, cmd, sql string) ([]string, []string, error) {
	t.Helper()
	return runShowCommand(t, showCommand(t, repo, cmd), c, sql)
}

// runShowCommand is runShow for a command at hand.
func runShowCommand(t *testing.T, s *commands.Show, c commands.Conn, sql string) ([]string, []string, error) {
	t.Helper()
	prep, err := s.Parse(sql)
	if err != nil {
		t.Fatalf("Parse(%q): %v", sql, err)
	}
	var cols []string
	for _, col := range prep.Columns() {
		cols = append(cols, col.Name)
	}
	out, err := prep.Execute(context.Background(), c)
	if err != nil {
		return cols, nil, err
	}
	if out.Tag != "SHOW" {
		t.Errorf("%q: tag %q, want SHOW", sql, out.Tag)
	}
	rows := []string{}
	for _, r := range out.Rows {
		if len(r) != len(cols) {
			t.Fatalf("%q: row of %d values for %d columns", sql, len(r), len(cols))
		}
		vals := make([]string, len(r))
		for i, v := range r {
			vals[i] = showNull
			if v != nil {
				vals[i] = *v
			}
		}
		rows = append(rows, strings.Join(vals, "|"))
	}
	return cols, rows, nil
}

func checkRows(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: rows\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestShowColumns(t *testing.T) {
	repo := extension.OpenRepo(t.TempDir())
	for _, tc := range []struct {
		cmd  string
		sql  string
		want []commands.Column
	}{
		{cmdExtensions, "SHOW AVAILABLE EXTENSIONS", []commands.Column{
			{Name: "name", TypeOID: 25}, {Name: "default_version", TypeOID: 25}, {Name: "installed_version", TypeOID: 25},
			{Name: "source", TypeOID: 25}, {Name: "comment", TypeOID: 25}, {Name: "requires", TypeOID: 25},
			{Name: "conflicts", TypeOID: 25}}},
		{cmdVersions, "SHOW AVAILABLE EXTENSION VERSIONS x", []commands.Column{
			{Name: "name", TypeOID: 25}, {Name: "version", TypeOID: 25}, {Name: "installed", TypeOID: 16},
			{Name: "source", TypeOID: 25}, {Name: "requires", TypeOID: 25}, {Name: "comment", TypeOID: 25}}},
		{cmdPaths, "SHOW EXTENSION UPDATE PATHS x", []commands.Column{
			{Name: "source", TypeOID: 25}, {Name: "target", TypeOID: 25}, {Name: "path", TypeOID: 25}}},
	} {
		prep, err := showCommand(t, repo, tc.cmd).Parse(tc.sql)
		if err != nil {
			t.Fatal(err)
		}
		if got := prep.Columns(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: columns %+v, want %+v", tc.sql, got, tc.want)
		}
	}
}

func TestShowAvailableExtensions(t *testing.T) {
	repo := showRepo(t)
	const sql = "SHOW AVAILABLE EXTENSIONS"

	t.Run("no catalog yet", func(t *testing.T) {
		c := newShowConn(t)
		cols, rows, err := runShow(t, repo, c, cmdExtensions, sql)
		if err != nil {
			t.Fatal(err)
		}
		if want := "name default_version installed_version source comment requires conflicts"; strings.Join(cols, " ") != want {
			t.Errorf("columns %q, want %q", cols, want)
		}
		checkRows(t, sql, rows, []string{
			"bar|1.2|NULL|pgverbs|NULL|NULL|NULL",
			"earthdistance|1.1|NULL|server|calculate great-circle distances|cube|NULL",
			"foo|1.0|NULL|pgverbs|foo things|bar (>= 1.1), baz|bla (< 0.8)",
			"hstore|9.9|NULL|pgverbs|our own hstore|NULL|NULL",
			"hstore|1.8|NULL|server|data type for storing sets of (key, value) pairs|NULL|NULL",
			"multi|2.0|NULL|pgverbs|several versions|NULL|NULL",
			"plpgsql|1.0|1.0|server|PL/pgSQL procedural language|NULL|NULL",
		})
		if len(c.notices) != 1 || !strings.HasPrefix(c.notices[0], `WARNING: extension "broken" is left out: `) ||
			!strings.Contains(c.notices[0], "bogus") {
			t.Errorf("notices %q, want one warning about broken", c.notices)
		}
		for _, q := range c.queries {
			if strings.Contains(q, "FROM pgverbs.extensions") {
				t.Errorf("read the catalog that does not exist: %q", q)
			}
		}
	})

	t.Run("installed", func(t *testing.T) {
		c := newShowConn(t)
		c.catalog = true
		c.installed = [][]string{{"foo", "1.0"}, {"bar", "1.2"}, {"multi", "1.1"}, {"gone", "3.0"}}
		_, rows, err := runShow(t, repo, c, cmdExtensions, sql)
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, sql, rows, []string{
			"bar|1.2|1.2|pgverbs|NULL|NULL|NULL",
			"earthdistance|1.1|NULL|server|calculate great-circle distances|cube|NULL",
			"foo|1.0|1.0|pgverbs|foo things|bar (>= 1.1), baz|bla (< 0.8)",
			"hstore|9.9|NULL|pgverbs|our own hstore|NULL|NULL",
			"hstore|1.8|NULL|server|data type for storing sets of (key, value) pairs|NULL|NULL",
			"multi|2.0|1.1|pgverbs|several versions|NULL|NULL",
			"plpgsql|1.0|1.0|server|PL/pgSQL procedural language|NULL|NULL",
		})
	})

	t.Run("no extensions directory", func(t *testing.T) {
		c := newShowConn(t)
		missing := extension.OpenRepo(filepath.Join(t.TempDir(), "missing"))
		_, rows, err := runShow(t, missing, c, cmdExtensions, sql)
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, sql, rows, []string{
			"earthdistance|1.1|NULL|server|calculate great-circle distances|cube|NULL",
			"hstore|1.8|NULL|server|data type for storing sets of (key, value) pairs|NULL|NULL",
			"plpgsql|1.0|1.0|server|PL/pgSQL procedural language|NULL|NULL",
		})
		if len(c.notices) != 0 {
			t.Errorf("notices %q", c.notices)
		}
	})

	t.Run("server error", func(t *testing.T) {
		c := newShowConn(t)
		c.fail = &commands.ServerError{Code: "42501", Message: "permission denied"}
		c.failOn = "pg_available_extensions e"
		_, _, err := runShow(t, repo, c, cmdExtensions, sql)
		if err != c.fail {
			t.Fatalf("error %v, want the server's", err)
		}
	})
}

func TestShowAvailableExtensionVersions(t *testing.T) {
	repo := showRepo(t)
	for _, tc := range []struct {
		sql       string
		catalog   bool
		installed [][]string
		want      []string
		args      string // the server query's argument, "" for none
	}{
		{"SHOW AVAILABLE EXTENSION VERSIONS", false, nil, []string{
			"bar|1.2|f|pgverbs|NULL|NULL",
			"earthdistance|1.1|f|server|cube|calculate great-circle distances",
			"foo|1.0|f|pgverbs|bar (>= 1.1), baz|foo things",
			"hstore|9.9|f|pgverbs|NULL|our own hstore",
			"hstore|1.4|f|server|NULL|data type for storing sets of (key, value) pairs",
			"hstore|1.8|f|server|NULL|data type for storing sets of (key, value) pairs",
			"hstore|1.10|f|server|NULL|hstore at 1.10",
			"multi|1.0|f|pgverbs|NULL|several versions",
			"multi|1.1|f|pgverbs|plpgsql|several versions, at 1.1",
			"multi|2.0|f|pgverbs|NULL|several versions",
			"plpgsql|1.0|t|server|NULL|PL/pgSQL procedural language",
		}, ""},
		{"SHOW AVAILABLE EXTENSION VERSIONS;", true, [][]string{{"multi", "1.1"}, {"foo", "1.0"}}, []string{
			"bar|1.2|f|pgverbs|NULL|NULL",
			"earthdistance|1.1|f|server|cube|calculate great-circle distances",
			"foo|1.0|t|pgverbs|bar (>= 1.1), baz|foo things",
			"hstore|9.9|f|pgverbs|NULL|our own hstore",
			"hstore|1.4|f|server|NULL|data type for storing sets of (key, value) pairs",
			"hstore|1.8|f|server|NULL|data type for storing sets of (key, value) pairs",
			"hstore|1.10|f|server|NULL|hstore at 1.10",
			"multi|1.0|f|pgverbs|NULL|several versions",
			"multi|1.1|t|pgverbs|plpgsql|several versions, at 1.1",
			"multi|2.0|f|pgverbs|NULL|several versions",
			"plpgsql|1.0|t|server|NULL|PL/pgSQL procedural language",
		}, ""},
		{"SHOW AVAILABLE EXTENSION VERSIONS multi", true, [][]string{{"multi", "2.0"}}, []string{
			"multi|1.0|f|pgverbs|NULL|several versions",
			"multi|1.1|f|pgverbs|plpgsql|several versions, at 1.1",
			"multi|2.0|t|pgverbs|NULL|several versions",
		}, "multi"},
		{"SHOW AVAILABLE EXTENSION VERSIONS HSTORE", false, nil, []string{
			"hstore|9.9|f|pgverbs|NULL|our own hstore",
			"hstore|1.4|f|server|NULL|data type for storing sets of (key, value) pairs",
			"hstore|1.8|f|server|NULL|data type for storing sets of (key, value) pairs",
			"hstore|1.10|f|server|NULL|hstore at 1.10",
		}, "hstore"},
		{"SHOW AVAILABLE EXTENSION VERSIONS plpgsql", false, nil, []string{
			"plpgsql|1.0|t|server|NULL|PL/pgSQL procedural language",
		}, "plpgsql"},
		{`SHOW AVAILABLE EXTENSION VERSIONS "foo"`, false, nil, []string{
			"foo|1.0|f|pgverbs|bar (>= 1.1), baz|foo things",
		}, "foo"},
	} {
		c := newShowConn(t)
		c.catalog, c.installed = tc.catalog, tc.installed
		c.versions = append(c.versions, []string{"a b", "1", "f", showNull, showNull})
		if tc.args == "" {
			tc.want = append([]string{"a b|1|f|server|NULL|NULL"}, tc.want...)
		}
		cols, rows, err := runShow(t, repo, c, cmdVersions, tc.sql)
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		if want := "name version installed source requires comment"; strings.Join(cols, " ") != want {
			t.Errorf("columns %q, want %q", cols, want)
		}
		checkRows(t, tc.sql, rows, tc.want)
		if tc.args != "" {
			for _, q := range c.queries {
				if strings.Contains(q, "pg_available_extension_versions") && !strings.Contains(q, "WHERE name = $1") {
					t.Errorf("%s: unfiltered query %q", tc.sql, q)
				}
			}
		}
	}

	t.Run("server name pgverbs cannot have", func(t *testing.T) {
		c := newShowConn(t)
		c.versions = append(c.versions, []string{"a b", "1", "f", showNull, showNull})
		_, rows, err := runShow(t, repo, c, cmdVersions, `SHOW AVAILABLE EXTENSION VERSIONS "a b"`)
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, "a b", rows, []string{"a b|1|f|server|NULL|NULL"})
	})

	t.Run("not available", func(t *testing.T) {
		for _, name := range []string{"nope", `"a b"`, "fooo"} {
			c := newShowConn(t)
			_, _, err := runShow(t, repo, c, cmdVersions, "SHOW AVAILABLE EXTENSION VERSIONS "+name)
			var e *pgerr.Error
			if !errors.As(err, &e) || e.Code != pgerr.UndefinedObject || !errors.Is(err, extension.ErrNotFound) {
				t.Fatalf("%s: error %v, want 42704 wrapping ErrNotFound", name, err)
			}
			want := `extension "` + strings.Trim(name, `"`) + `" is not available`
			if e.Message != want {
				t.Errorf("message %q, want %q", e.Message, want)
			}
			if name == "fooo" && !strings.Contains(e.Hint, `"foo"`) {
				t.Errorf("hint %q, want one naming foo", e.Hint)
			}
		}
	})

	t.Run("broken package named", func(t *testing.T) {
		c := newShowConn(t)
		_, _, err := runShow(t, repo, c, cmdVersions, "SHOW AVAILABLE EXTENSION VERSIONS broken")
		var e *pgerr.Error
		if !errors.As(err, &e) || e.Code == pgerr.UndefinedObject || !strings.Contains(e.Message, "bogus") {
			t.Fatalf("error %v, want the control file's", err)
		}
	})
}

func TestShowExtensionUpdatePaths(t *testing.T) {
	repo := showRepo(t)
	for _, tc := range []struct {
		sql    string
		want   []string
		server bool // asks the server
	}{
		{"SHOW EXTENSION UPDATE PATHS multi", []string{
			"1.0|1.1|1.0--1.1",
			"1.0|2.0|1.0--1.1--2.0",
			"1.1|1.0|NULL",
			"1.1|2.0|1.1--2.0",
			"2.0|1.0|NULL",
			"2.0|1.1|NULL",
		}, false},
		{"SHOW EXTENSION UPDATE PATHS foo", []string{}, false},
		// The package takes precedence over the server's hstore.
		{"SHOW EXTENSION UPDATE PATHS hstore", []string{}, false},
		{"SHOW EXTENSION UPDATE PATHS plpgsql", []string{}, true},
	} {
		c := newShowConn(t)
		cols, rows, err := runShow(t, repo, c, cmdPaths, tc.sql)
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		if want := "source target path"; strings.Join(cols, " ") != want {
			t.Errorf("columns %q, want %q", cols, want)
		}
		checkRows(t, tc.sql, rows, tc.want)
		if asked := len(c.queries) > 0; asked != tc.server {
			t.Errorf("%s: queries %q", tc.sql, c.queries)
		}
	}

	t.Run("server extension", func(t *testing.T) {
		c := newShowConn(t)
		missing := extension.OpenRepo(filepath.Join(t.TempDir(), "missing"))
		_, rows, err := runShow(t, missing, c, cmdPaths, "SHOW EXTENSION UPDATE PATHS hstore")
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, "hstore", rows, []string{
			"1.4|1.5|1.4--1.5",
			"1.4|1.8|1.4--1.5--1.6--1.7--1.8",
			"1.8|1.4|NULL",
			"1.10|1.4|NULL",
		})
	})

	t.Run("not available", func(t *testing.T) {
		for _, name := range []string{"nope", `"a b"`} {
			c := newShowConn(t)
			_, _, err := runShow(t, repo, c, cmdPaths, "SHOW EXTENSION UPDATE PATHS "+name)
			var e *pgerr.Error
			if !errors.As(err, &e) || e.Code != pgerr.UndefinedObject {
				t.Fatalf("%s: error %v, want 42704", name, err)
			}
			for _, q := range c.queries {
				if strings.Contains(q, "pg_extension_update_paths") {
					t.Errorf("%s: asked the server for the paths of what it lacks", name)
				}
			}
		}
	})

	t.Run("broken package", func(t *testing.T) {
		c := newShowConn(t)
		_, _, err := runShow(t, repo, c, cmdPaths, "SHOW EXTENSION UPDATE PATHS broken")
		var e *pgerr.Error
		if !errors.As(err, &e) || !strings.Contains(e.Message, "bogus") {
			t.Fatalf("error %v, want the control file's", err)
		}
	})
}
