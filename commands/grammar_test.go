package commands_test

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	pgscan "github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
)

type installCase struct {
	name string
	sql  string
	want commands.InstallStmt
}

var installCases = []installCase{
	{"bare", "INSTALL EXTENSION hstore", commands.InstallStmt{Name: "hstore"}},
	{"lower case", "install extension hstore", commands.InstallStmt{Name: "hstore"}},
	{"mixed case folds name", "Install Extension HStore", commands.InstallStmt{Name: "hstore"}},
	{"non-ASCII not folded", "INSTALL EXTENSION Éclair", commands.InstallStmt{Name: "Éclair"}},
	{"quoted name exact", `INSTALL EXTENSION "uuid-ossp"`, commands.InstallStmt{Name: "uuid-ossp"}},
	{"quoted name keeps case", `INSTALL EXTENSION "PgTAP"`, commands.InstallStmt{Name: "PgTAP"}},
	{"quoted name escaped quote", `INSTALL EXTENSION "a""b"`, commands.InstallStmt{Name: `a"b`}},
	{"quoted name only quote", `INSTALL EXTENSION """"`, commands.InstallStmt{Name: `"`}},
	{"quoted name with spaces and semicolon", `INSTALL EXTENSION " x; y "`, commands.InstallStmt{Name: " x; y "}},
	{"name with dollar", "INSTALL EXTENSION pg$x", commands.InstallStmt{Name: "pg$x"}},
	{"unreserved keyword as name", "INSTALL EXTENSION version", commands.InstallStmt{Name: "version"}},
	{"column-name keyword as name", "INSTALL EXTENSION Int", commands.InstallStmt{Name: "int"}},
	{"IF as name", "INSTALL EXTENSION if", commands.InstallStmt{Name: "if"}},
	{"IF as name with option", "INSTALL EXTENSION if CASCADE", commands.InstallStmt{Name: "if", Cascade: true}},
	{"if not exists", "INSTALL EXTENSION IF NOT EXISTS hstore", commands.InstallStmt{Name: "hstore", IfNotExists: true}},
	{"if not exists keyword name", "install extension if not exists if", commands.InstallStmt{Name: "if", IfNotExists: true}},
	{"WITH alone", "INSTALL EXTENSION hstore WITH", commands.InstallStmt{Name: "hstore"}},

	{"schema", "INSTALL EXTENSION hstore SCHEMA public", commands.InstallStmt{Name: "hstore", Schema: "public"}},
	{"quoted schema", `INSTALL EXTENSION hstore SCHEMA "My Schema"`, commands.InstallStmt{Name: "hstore", Schema: "My Schema"}},
	{"keyword schema", "INSTALL EXTENSION hstore SCHEMA cascade", commands.InstallStmt{Name: "hstore", Schema: "cascade"}},
	{"version string", "INSTALL EXTENSION hstore VERSION '1.0'", commands.InstallStmt{Name: "hstore", Version: "1.0"}},
	{"version string keeps case", "INSTALL EXTENSION hstore VERSION '1.0-Beta'", commands.InstallStmt{Name: "hstore", Version: "1.0-Beta"}},
	{"version string escaped quote", "INSTALL EXTENSION hstore VERSION 'it''s'", commands.InstallStmt{Name: "hstore", Version: "it's"}},
	{"version string backslash literal", `INSTALL EXTENSION hstore VERSION '1\2'`, commands.InstallStmt{Name: "hstore", Version: `1\2`}},
	{"version string continued", "INSTALL EXTENSION hstore VERSION '1.'\n'0'", commands.InstallStmt{Name: "hstore", Version: "1.0"}},
	{"version string continued over lines", "INSTALL EXTENSION hstore VERSION '1' \r\n \n'.'\n'0'", commands.InstallStmt{Name: "hstore", Version: "1.0"}},
	{"version dollar quoted", "INSTALL EXTENSION hstore VERSION $$1.0$$", commands.InstallStmt{Name: "hstore", Version: "1.0"}},
	{"version tagged dollar quoted", "INSTALL EXTENSION hstore VERSION $v$it's $$ 1$v$", commands.InstallStmt{Name: "hstore", Version: "it's $$ 1"}},
	{"version float", "INSTALL EXTENSION hstore VERSION 1.0", commands.InstallStmt{Name: "hstore", Version: "1.0"}},
	{"version integer", "INSTALL EXTENSION hstore VERSION 2", commands.InstallStmt{Name: "hstore", Version: "2"}},
	{"version three parts", "INSTALL EXTENSION hstore VERSION 1.2.3", commands.InstallStmt{Name: "hstore", Version: "1.2.3"}},
	{"version four parts", "INSTALL EXTENSION hstore VERSION 10.0.0.1 CASCADE", commands.InstallStmt{Name: "hstore", Version: "10.0.0.1", Cascade: true}},
	{"version quoted identifier", `INSTALL EXTENSION hstore VERSION "1.0"`, commands.InstallStmt{Name: "hstore", Version: "1.0"}},
	{"version identifier folds", "INSTALL EXTENSION hstore VERSION Unstable", commands.InstallStmt{Name: "hstore", Version: "unstable"}},
	{"version unreserved keyword", "INSTALL EXTENSION hstore VERSION cascade", commands.InstallStmt{Name: "hstore", Version: "cascade"}},
	{"version type-function keyword", "INSTALL EXTENSION hstore VERSION Left", commands.InstallStmt{Name: "hstore", Version: "left"}},
	{"cascade", "INSTALL EXTENSION hstore CASCADE", commands.InstallStmt{Name: "hstore", Cascade: true}},

	{"all options", "INSTALL EXTENSION IF NOT EXISTS hstore WITH SCHEMA s VERSION '1.0' CASCADE",
		commands.InstallStmt{Name: "hstore", IfNotExists: true, Schema: "s", Version: "1.0", Cascade: true}},
	{"all options without WITH", "INSTALL EXTENSION hstore SCHEMA s VERSION '1.0' CASCADE",
		commands.InstallStmt{Name: "hstore", Schema: "s", Version: "1.0", Cascade: true}},
	{"trailing semicolon", "INSTALL EXTENSION hstore;", commands.InstallStmt{Name: "hstore"}},
	{"trailing semicolons and space", "INSTALL EXTENSION hstore ; ;\n\t", commands.InstallStmt{Name: "hstore"}},
	{"leading and trailing comments", "/* a */ -- b\n INSTALL EXTENSION hstore -- c\n/* d */", commands.InstallStmt{Name: "hstore"}},
	{"nested comment", "INSTALL EXTENSION /* a /* b */ c */ hstore", commands.InstallStmt{Name: "hstore"}},
	{"no spaces around comments", "INSTALL/**/EXTENSION/**/hstore/**/VERSION/**/'1'", commands.InstallStmt{Name: "hstore", Version: "1"}},
}

// TestParseInstallOptionOrders tries every subset of the options in every
// order, with and without WITH and IF NOT EXISTS.
func TestParseInstallOptionOrders(t *testing.T) {
	type option struct {
		text  string
		apply func(*commands.InstallStmt)
	}
	opts := []option{
		{"SCHEMA s", func(s *commands.InstallStmt) { s.Schema = "s" }},
		{"VERSION '1.0'", func(s *commands.InstallStmt) { s.Version = "1.0" }},
		{"CASCADE", func(s *commands.InstallStmt) { s.Cascade = true }},
	}
	var orders [][]int
	var permute func(prefix []int, rest []int)
	permute = func(prefix, rest []int) {
		orders = append(orders, prefix)
		for i := range rest {
			next := append(append([]int(nil), rest[:i]...), rest[i+1:]...)
			permute(append(append([]int(nil), prefix...), rest[i]), next)
		}
	}
	permute(nil, []int{0, 1, 2})
	if len(orders) != 16 { // 1 + 3 + 6 + 6
		t.Fatalf("generated %d orders", len(orders))
	}
	for _, order := range orders {
		for _, ifNotExists := range []bool{false, true} {
			for _, with := range []bool{false, true} {
				sql := "INSTALL EXTENSION "
				want := commands.InstallStmt{Name: "x", IfNotExists: ifNotExists}
				if ifNotExists {
					sql += "IF NOT EXISTS "
				}
				sql += "x"
				if with {
					sql += " WITH"
				}
				for _, i := range order {
					sql += " " + opts[i].text
					opts[i].apply(&want)
				}
				t.Run(sql, func(t *testing.T) {
					got, err := commands.ParseInstall(sql)
					if err != nil {
						t.Fatalf("ParseInstall: %v", err)
					}
					if *got != want {
						t.Errorf("got %+v, want %+v", *got, want)
					}
				})
			}
		}
	}
}

func TestParseInstall(t *testing.T) {
	for _, tc := range installCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := commands.ParseInstall(tc.sql)
			if err != nil {
				t.Fatalf("ParseInstall(%q): %v", tc.sql, err)
			}
			if *got != tc.want {
				t.Errorf("ParseInstall(%q) = %+v, want %+v", tc.sql, *got, tc.want)
			}
		})
	}
}

type uninstallCase struct {
	name string
	sql  string
	want commands.UninstallStmt
}

var uninstallCases = []uninstallCase{
	{"bare", "UNINSTALL EXTENSION hstore", commands.UninstallStmt{Names: []string{"hstore"}}},
	{"lower case", "uninstall extension hstore", commands.UninstallStmt{Names: []string{"hstore"}}},
	{"mixed case folds names", "UnInstall EXTENSION HStore, PgTap", commands.UninstallStmt{Names: []string{"hstore", "pgtap"}}},
	{"list", "UNINSTALL EXTENSION a, b,c", commands.UninstallStmt{Names: []string{"a", "b", "c"}}},
	{"duplicates kept", "UNINSTALL EXTENSION a, a", commands.UninstallStmt{Names: []string{"a", "a"}}},
	{"quoted names", `UNINSTALL EXTENSION "uuid-ossp", "A""B"`, commands.UninstallStmt{Names: []string{"uuid-ossp", `A"B`}}},
	{"keyword names", "UNINSTALL EXTENSION version, cascade", commands.UninstallStmt{Names: []string{"version", "cascade"}}},
	{"IF as name", "UNINSTALL EXTENSION if", commands.UninstallStmt{Names: []string{"if"}}},
	{"IF as name in list", "UNINSTALL EXTENSION if, exists", commands.UninstallStmt{Names: []string{"if", "exists"}}},
	{"if exists", "UNINSTALL EXTENSION IF EXISTS a", commands.UninstallStmt{Names: []string{"a"}, IfExists: true}},
	{"if exists keyword name", "UNINSTALL EXTENSION IF EXISTS if", commands.UninstallStmt{Names: []string{"if"}, IfExists: true}},
	{"cascade", "UNINSTALL EXTENSION a CASCADE", commands.UninstallStmt{Names: []string{"a"}, Cascade: true}},
	{"restrict", "UNINSTALL EXTENSION a RESTRICT", commands.UninstallStmt{Names: []string{"a"}}},
	{"everything", "uninstall extension if exists a, \"B\" cascade;", commands.UninstallStmt{Names: []string{"a", "B"}, IfExists: true, Cascade: true}},
	{"trailing semicolons and space", "UNINSTALL EXTENSION a;; \n", commands.UninstallStmt{Names: []string{"a"}}},
	{"comments", "-- x\nUNINSTALL /* y */ EXTENSION a /* z */ , -- w\n b", commands.UninstallStmt{Names: []string{"a", "b"}}},
}

func TestParseUninstall(t *testing.T) {
	for _, tc := range uninstallCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := commands.ParseUninstall(tc.sql)
			if err != nil {
				t.Fatalf("ParseUninstall(%q): %v", tc.sql, err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("ParseUninstall(%q) = %+v, want %+v", tc.sql, *got, tc.want)
			}
		})
	}
}

// separators are placed between every pair of tokens in
// TestCommentsBetweenTokens.
var separators = map[string]string{
	"space":         " ",
	"newline tab":   "\n\t",
	"C comment":     "/* x */",
	"SQL comment":   "-- x\n",
	"nested":        " /* a /* b */ c */ ",
	"mixed":         " -- x\n/* y */\n",
	"quote in text": "/* ' \" $$ */ -- ' \" $$\n",
}

func TestCommentsBetweenTokens(t *testing.T) {
	install := []string{"INSTALL", "EXTENSION", "IF", "NOT", "EXISTS", `"Foo"`, "WITH",
		"SCHEMA", "s", "VERSION", "'1.0'", "CASCADE", ";"}
	wantInstall := commands.InstallStmt{Name: "Foo", IfNotExists: true, Schema: "s", Version: "1.0", Cascade: true}
	uninstall := []string{"UNINSTALL", "EXTENSION", "IF", "EXISTS", "a", ",", `"B"`, "RESTRICT", ";"}
	wantUninstall := commands.UninstallStmt{Names: []string{"a", "B"}, IfExists: true}
	for name, sep := range separators {
		t.Run(name, func(t *testing.T) {
			sql := sep + strings.Join(install, sep) + sep
			got, err := commands.ParseInstall(sql)
			if err != nil {
				t.Fatalf("ParseInstall(%q): %v", sql, err)
			}
			if *got != wantInstall {
				t.Errorf("ParseInstall(%q) = %+v, want %+v", sql, *got, wantInstall)
			}
			sql = sep + strings.Join(uninstall, sep) + sep
			gotU, err := commands.ParseUninstall(sql)
			if err != nil {
				t.Fatalf("ParseUninstall(%q): %v", sql, err)
			}
			if !reflect.DeepEqual(*gotU, wantUninstall) {
				t.Errorf("ParseUninstall(%q) = %+v, want %+v", sql, *gotU, wantUninstall)
			}
		})
	}
}

type errorCase struct {
	name    string
	sql     string
	install bool // ParseInstall, else ParseUninstall
	msg     string
	pos     int32
}

var errorCases = []errorCase{
	{"install end of input", "INSTALL EXTENSION", true, "syntax error at end of input", 18},
	{"install end of input after space", "INSTALL EXTENSION  ", true, "syntax error at end of input", 20},
	{"install semicolon instead of name", "INSTALL EXTENSION;", true, `syntax error at or near ";"`, 18},
	{"install extra word", "INSTALL EXTENSION foo bar", true, `syntax error at or near "bar"`, 23},
	{"install version without value", "INSTALL EXTENSION foo VERSION", true, "syntax error at end of input", 30},
	{"install schema without value", "INSTALL EXTENSION foo SCHEMA ;", true, `syntax error at or near ";"`, 30},
	{"install only install", "INSTALL", true, "syntax error at end of input", 8},
	{"install wrong command", "UNINSTALL EXTENSION foo", true, `syntax error at or near "UNINSTALL"`, 1},
	{"install quoted command word", `"INSTALL" EXTENSION foo`, true, `syntax error at or near ""INSTALL""`, 1},
	{"install missing EXTENSION", "INSTALL foo", true, `syntax error at or near "foo"`, 9},
	{"install reserved word as name", "INSTALL EXTENSION select", true, `syntax error at or near "select"`, 19},
	{"install type-function keyword as name", "INSTALL EXTENSION left", true, `syntax error at or near "left"`, 19},
	{"install number as name", "INSTALL EXTENSION 1", true, `syntax error at or near "1"`, 19},
	{"install string as name", "INSTALL EXTENSION 'foo'", true, `syntax error at or near "'foo'"`, 19},
	{"install qualified name", "INSTALL EXTENSION a.b", true, `syntax error at or near "."`, 20},
	{"install IF NOT without EXISTS", "INSTALL EXTENSION IF NOT foo", true, `syntax error at or near "foo"`, 26},
	{"install IF EXISTS", "INSTALL EXTENSION IF EXISTS foo", true, `syntax error at or near "EXISTS"`, 22},
	{"install WITH twice", "INSTALL EXTENSION foo WITH WITH", true, `syntax error at or near "WITH"`, 28},
	{"install WITH after option", "INSTALL EXTENSION foo CASCADE WITH SCHEMA s", true, `syntax error at or near "WITH"`, 31},
	{"install FROM", "INSTALL EXTENSION foo FROM '1.0'", true, `syntax error at or near "FROM"`, 23},
	{"install RESTRICT", "INSTALL EXTENSION foo RESTRICT", true, `syntax error at or near "RESTRICT"`, 23},
	{"install two names", "INSTALL EXTENSION a, b", true, `syntax error at or near ","`, 20},
	{"install reserved word version", "INSTALL EXTENSION a VERSION select", true, `syntax error at or near "select"`, 29},
	{"install version dotted word", "INSTALL EXTENSION a VERSION 1.0-beta", true, `syntax error at or near "-"`, 32},
	{"install version strings not continued", "INSTALL EXTENSION a VERSION '1.' -- x\n'0'", true, `syntax error at or near "'0'"`, 39},
	{"install version spaced numbers", "INSTALL EXTENSION a VERSION 1.0 .1", true, `syntax error at or near ".1"`, 33},
	{"install version escape string", `INSTALL EXTENSION a VERSION E'1.0'`, true, `syntax error at or near "E'1.0'"`, 29},
	{"install version unicode string", `INSTALL EXTENSION a VERSION U&'1.0'`, true, `syntax error at or near "U&'1.0'"`, 29},
	{"install version bit string", `INSTALL EXTENSION a VERSION B'10'`, true, `syntax error at or near "B'10'"`, 29},
	{"install unicode identifier", `INSTALL EXTENSION U&"a"`, true, `syntax error at or near "U&"a""`, 19},
	{"install text after semicolon", "INSTALL EXTENSION a; SELECT 1", true, `syntax error at or near "SELECT"`, 22},
	{"install empty quoted name", `INSTALL EXTENSION ""`, true, `zero-length delimited identifier at or near """"`, 19},
	{"install empty quoted schema", `INSTALL EXTENSION a SCHEMA ""`, true, `zero-length delimited identifier at or near """"`, 28},
	{"install unterminated string", "INSTALL EXTENSION a VERSION '1.0", true, `unterminated quoted string at or near "'1.0"`, 29},
	{"install unterminated comment", "INSTALL EXTENSION a /* x", true, `unterminated /* comment at or near "/* x"`, 21},
	{"install numeric junk", "INSTALL EXTENSION a VERSION 1.0beta", true, `trailing junk after numeric literal at or near "1.0beta"`, 29},
	{"install syntax error before scan error", "INSTALL EXTENSION a b 'x", true, `syntax error at or near "b"`, 21},
	{"install scan error after WITH", "INSTALL EXTENSION a CASCADE WITH 'x", true, `unterminated quoted string at or near "'x"`, 34},
	{"install scan error after NOT", "INSTALL EXTENSION IF NOT 'x", true, `unterminated quoted string at or near "'x"`, 26},
	{"install scan error after name", "INSTALL EXTENSION a $$x", true, `unterminated dollar-quoted string at or near "$$x"`, 21},
	{"uninstall scan error after NOT", "UNINSTALL EXTENSION a NOT 'x", false, `unterminated quoted string at or near "'x"`, 27},
	{"uninstall syntax error before scan error", "UNINSTALL EXTENSION a CASCADE b \"x", false, `syntax error at or near "b"`, 31},
	{"install null byte", "INSTALL EXTENSION a\x00", true, "statement contains a null byte", 20},
	{"install syntax error before null byte", "INSTALL EXTENSION a b\x00", true, `syntax error at or near "b"`, 21},

	{"install duplicate schema", "INSTALL EXTENSION a SCHEMA a SCHEMA b", true, "conflicting or redundant options", 30},
	{"install duplicate version", "INSTALL EXTENSION a VERSION '1' CASCADE VERSION '1'", true, "conflicting or redundant options", 41},
	{"install duplicate cascade", "install extension a cascade cascade", true, "conflicting or redundant options", 29},
	{"install first duplicate wins", "INSTALL EXTENSION a CASCADE SCHEMA s CASCADE SCHEMA s", true, "conflicting or redundant options", 38},
	{"install syntax error beats duplicate", "INSTALL EXTENSION a SCHEMA a SCHEMA b c", true, `syntax error at or near "c"`, 39},
	{"install empty version", "INSTALL EXTENSION a VERSION ''", true, `invalid extension version name: ""`, 29},
	{"install empty dollar version", "INSTALL EXTENSION a VERSION $$$$", true, `invalid extension version name: ""`, 29},
	{"install duplicate beats empty version", "INSTALL EXTENSION a VERSION '' VERSION '1'", true, "conflicting or redundant options", 32},

	{"install multibyte before error", `INSTALL EXTENSION "é" x`, true, `syntax error at or near "x"`, 23}, // byte 24
	{"install multibyte in comment", "/* €€€ */ INSTALL EXTENSION a x", true, `syntax error at or near "x"`, 31},
	{"install multibyte end of input", `INSTALL EXTENSION "日本" VERSION`, true, "syntax error at end of input", 31},
	{"install multibyte scan error", `INSTALL EXTENSION "日本" VERSION 'x`, true, `unterminated quoted string at or near "'x"`, 32},
	{"install multibyte duplicate", `INSTALL EXTENSION "日本" CASCADE CASCADE`, true, "conflicting or redundant options", 32},

	{"uninstall end of input", "UNINSTALL EXTENSION", false, "syntax error at end of input", 20},
	{"uninstall trailing comma", "UNINSTALL EXTENSION a,", false, "syntax error at end of input", 23},
	{"uninstall trailing comma and semicolon", "UNINSTALL EXTENSION a,;", false, `syntax error at or near ";"`, 23},
	{"uninstall double comma", "UNINSTALL EXTENSION a,,b", false, `syntax error at or near ","`, 23},
	{"uninstall cascade restrict", "UNINSTALL EXTENSION a CASCADE RESTRICT", false, `syntax error at or near "RESTRICT"`, 31},
	{"uninstall cascade twice", "UNINSTALL EXTENSION a CASCADE CASCADE", false, `syntax error at or near "CASCADE"`, 31},
	{"uninstall missing comma", "UNINSTALL EXTENSION a b", false, `syntax error at or near "b"`, 23},
	{"uninstall if exists alone", "UNINSTALL EXTENSION IF EXISTS", false, "syntax error at end of input", 30},
	{"uninstall if not exists", "UNINSTALL EXTENSION IF NOT EXISTS a", false, `syntax error at or near "NOT"`, 24},
	{"uninstall option", "UNINSTALL EXTENSION a VERSION '1'", false, `syntax error at or near "VERSION"`, 23},
	{"uninstall empty quoted name", `UNINSTALL EXTENSION a, ""`, false, `zero-length delimited identifier at or near """"`, 24},
	{"uninstall wrong command", "INSTALL EXTENSION a", false, `syntax error at or near "INSTALL"`, 1},
	{"uninstall multibyte before error", `UNINSTALL EXTENSION "é", x y`, false, `syntax error at or near "y"`, 28},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.install {
				var st *commands.InstallStmt
				st, err = commands.ParseInstall(tc.sql)
				if err == nil {
					t.Fatalf("ParseInstall(%q) = %+v, want error", tc.sql, *st)
				}
			} else {
				var st *commands.UninstallStmt
				st, err = commands.ParseUninstall(tc.sql)
				if err == nil {
					t.Fatalf("ParseUninstall(%q) = %+v, want error", tc.sql, *st)
				}
			}
			var e *pgerr.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is %T, want *pgerr.Error", err, err)
			}
			if e.Code != pgerr.SyntaxError || e.Severity != pgerr.SeverityError {
				t.Errorf("code %s severity %s, want %s %s", e.Code, e.Severity, pgerr.SyntaxError, pgerr.SeverityError)
			}
			if e.Message != tc.msg || e.Position != tc.pos {
				t.Errorf("error %q at %d, want %q at %d", e.Message, e.Position, tc.msg, tc.pos)
			}
		})
	}
}

func TestPositionAt(t *testing.T) {
	const s = "aé€😀b"
	for _, tc := range []struct {
		name   string
		offset int
		want   int32
	}{
		{"start", 0, 1},
		{"after ASCII", 1, 2},
		{"after two-byte", 3, 3},
		{"after three-byte", 6, 4},
		{"after four-byte", 10, 5},
		{"end", len(s), 6},
		{"negative clamped", -5, 1},
		{"past end clamped", len(s) + 10, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := commands.PositionAt(s, tc.offset); got != tc.want {
				t.Errorf("PositionAt(%q, %d) = %d, want %d", s, tc.offset, got, tc.want)
			}
		})
	}
}

// TestRebasePosition follows the documented recipe for an error in the
// second statement of a query string, cut as Registry.Match cuts it.
func TestRebasePosition(t *testing.T) {
	query := "SELECT 'é€'; INSTALL EXTENSION foo bar"
	st := commands.Statement{SQL: "INSTALL EXTENSION foo bar", Offset: 16}
	if query[st.Offset:] != st.SQL {
		t.Fatalf("bad fixture")
	}
	_, err := commands.ParseInstall(st.SQL)
	var e *pgerr.Error
	if !errors.As(err, &e) {
		t.Fatalf("ParseInstall(%q): %v", st.SQL, err)
	}
	e.Position += commands.PositionAt(query, st.Offset) - 1
	if e.Position != 36 { // counting é and € as one character each
		t.Errorf("re-based position %d, want 36", e.Position)
	}
}

// TestAgainstPostgres checks every case above against PostgreSQL's own
// parser, for which INSTALL is CREATE and UNINSTALL is DROP.
func TestAgainstPostgres(t *testing.T) {
	var all []string
	for _, tc := range installCases {
		all = append(all, tc.sql)
	}
	for _, tc := range uninstallCases {
		all = append(all, tc.sql)
	}
	for _, tc := range errorCases {
		all = append(all, tc.sql)
	}
	for _, sql := range all {
		t.Run(sql, func(t *testing.T) { compareWithPostgres(t, sql) })
	}
}

// TestRandomStatementsAgainstPostgres covers the grammar more densely than
// FuzzGrammar's byte mutations reach: statements are strung together from
// words that matter to it, then checked as FuzzGrammar checks its inputs.
func TestRandomStatementsAgainstPostgres(t *testing.T) {
	words := []string{
		"IF", "NOT", "EXISTS", "WITH", "SCHEMA", "VERSION", "CASCADE", "RESTRICT", "FROM",
		",", ";", "a", "Ab", `"B c"`, `""""`, "'1.0'", "''", "'it''s'", "$$x$$", "$v$1$v$",
		"1.0", ".5", "2", "if", "exists", "select", "left", "int", "version", "É", `"é"`,
		"E'x'", `U&"x"`, "/* c */", "-- c\n", "a.b", "-",
	}
	// Rare, as each ends the statement's interesting part.
	endings := []string{"'x", `"x`, "1.0beta", "/* x", "$$x", `""`}
	seps := []string{" ", " ", " ", "", "\n"}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	for range 10000 {
		var b strings.Builder
		b.WriteString(pick([]string{"INSTALL", "install", "UNINSTALL"}))
		b.WriteString(" EXTENSION")
		for range rng.IntN(8) {
			b.WriteString(pick(seps))
			b.WriteString(pick(words))
		}
		if rng.IntN(10) == 0 {
			b.WriteString(pick(seps))
			b.WriteString(pick(endings))
		}
		checkInput(t, b.String())
	}
}

// quoteIdent renders s as a quoted identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteLiteral renders s as a standard-conforming string literal.
func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// renderInstall is the canonical text of st: everything quoted, options in
// a fixed order.
func renderInstall(st *commands.InstallStmt) string {
	var b strings.Builder
	b.WriteString("INSTALL EXTENSION ")
	if st.IfNotExists {
		b.WriteString("IF NOT EXISTS ")
	}
	b.WriteString(quoteIdent(st.Name))
	if st.Schema != "" {
		b.WriteString(" SCHEMA " + quoteIdent(st.Schema))
	}
	if st.Version != "" {
		b.WriteString(" VERSION " + quoteLiteral(st.Version))
	}
	if st.Cascade {
		b.WriteString(" CASCADE")
	}
	return b.String()
}

func renderUninstall(st *commands.UninstallStmt) string {
	var b strings.Builder
	b.WriteString("UNINSTALL EXTENSION ")
	if st.IfExists {
		b.WriteString("IF EXISTS ")
	}
	for i, n := range st.Names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(n))
	}
	if st.Cascade {
		b.WriteString(" CASCADE")
	}
	return b.String()
}

// checkError asserts the documented error contract.
func checkError(t *testing.T, sql string, err error) {
	t.Helper()
	var e *pgerr.Error
	if !errors.As(err, &e) {
		t.Fatalf("%q: error %v is %T, want *pgerr.Error", sql, err, err)
	}
	if e.Code != pgerr.SyntaxError || e.Message == "" {
		t.Fatalf("%q: error %+v", sql, e)
	}
	if n := int32(utf8.RuneCountInString(sql)); e.Position < 1 || e.Position > n+1 {
		t.Fatalf("%q: position %d outside 1..%d", sql, e.Position, n+1)
	}
}

func FuzzGrammar(f *testing.F) {
	for _, tc := range installCases {
		f.Add(tc.sql)
	}
	for _, tc := range uninstallCases {
		f.Add(tc.sql)
	}
	for _, tc := range errorCases {
		f.Add(tc.sql)
	}
	for _, s := range []string{
		"", ";", "INSTALL", "UNINSTALL EXTENSION", "install extension x version 1.2.3.4.5",
		"INSTALL EXTENSION x VERSION '1.'\n-- '\n'0' SCHEMA y",
		"UNINSTALL EXTENSION \"\xff\", b",
		"INSTALL EXTENSION x VERSION $a$$a$ WITH",
	} {
		f.Add(s)
	}
	f.Fuzz(checkInput)
}

// checkInput requires that sql parses without panicking, that errors keep
// the documented contract, that a successful parse survives a canonical
// rendering, and that the outcome matches PostgreSQL's.
func checkInput(t *testing.T, sql string) {
	if inst, err := commands.ParseInstall(sql); err != nil {
		checkError(t, sql, err)
	} else {
		again := renderInstall(inst)
		got, err := commands.ParseInstall(again)
		if err != nil {
			t.Fatalf("%q parsed as %+v, but its rendering %q fails: %v", sql, *inst, again, err)
		}
		if *got != *inst {
			t.Fatalf("%q parsed as %+v, its rendering %q as %+v", sql, *inst, again, *got)
		}
	}
	if un, err := commands.ParseUninstall(sql); err != nil {
		checkError(t, sql, err)
	} else {
		again := renderUninstall(un)
		got, err := commands.ParseUninstall(again)
		if err != nil {
			t.Fatalf("%q parsed as %+v, but its rendering %q fails: %v", sql, *un, again, err)
		}
		if !reflect.DeepEqual(got, un) {
			t.Fatalf("%q parsed as %+v, its rendering %q as %+v", sql, *un, again, *got)
		}
	}
	compareWithPostgres(t, sql)
}

// compareWithPostgres parses sql with ParseInstall or ParseUninstall and,
// with the command word replaced by CREATE or DROP, with PostgreSQL's
// parser, and requires the same outcome. The replacement keeps the
// length, so positions compare directly. Known, intended differences are
// skipped: bare numbers as versions, escape and Unicode-escape syntax,
// the obsolete FROM option, further statements after the semicolon, and
// errors PostgreSQL only raises when executing.
func compareWithPostgres(t *testing.T, sql string) {
	t.Helper()
	if strings.IndexByte(sql, 0) >= 0 || !utf8.ValidString(sql) {
		return // PostgreSQL never receives either
	}
	scan, err := pg_query.Scan(sql)
	if err != nil {
		// Judge by the tokens before the part that does not scan.
		var serr *pgscan.Error
		if !errors.As(err, &serr) || serr.Cursorpos < 1 {
			t.Fatalf("pg_query.Scan(%q): %v", sql, err)
		}
		if scan, err = pg_query.Scan(string([]rune(sql)[:serr.Cursorpos-1])); err != nil {
			return
		}
	}
	var toks []*pg_query.ScanToken
	// pg_query's parser, unlike PostgreSQL's, stops its one-token peek
	// after these words at a comment, so it may report a syntax error at
	// the word where PostgreSQL reports the scan error after the comment.
	var quirk bool
	all := scan.GetTokens()
	for i, tk := range all {
		if tk.Token != pg_query.Token_SQL_COMMENT && tk.Token != pg_query.Token_C_COMMENT {
			toks = append(toks, tk)
			continue
		}
		switch all[max(i-1, 0)].Token {
		case pg_query.Token_FORMAT, pg_query.Token_NOT, pg_query.Token_NULLS_P, pg_query.Token_WITH,
			pg_query.Token_WITHOUT, pg_query.Token_UIDENT, pg_query.Token_USCONST:
			quirk = true
		}
	}
	// Other second words would compare with CREATE TABLE and the like.
	if len(toks) < 2 || toks[0].Token != pg_query.Token_IDENT || toks[1].Token != pg_query.Token_EXTENSION {
		return
	}
	var pgSQL string
	var install bool
	first := toks[0]
	switch strings.ToLower(sql[first.Start:first.End]) {
	case "install":
		install = true
		pgSQL = sql[:first.Start] + "CREATE " + sql[first.End:]
	case "uninstall":
		pgSQL = sql[:first.Start] + "DROP     " + sql[first.End:]
	default:
		return
	}
	var lenient, strict, multi bool
	for i, tk := range toks {
		next := pg_query.Token_NUL
		if i+1 < len(toks) {
			next = toks[i+1].Token
		}
		switch {
		case tk.Token == pg_query.Token_VERSION_P && (next == pg_query.Token_ICONST || next == pg_query.Token_FCONST):
			lenient = true
		case tk.Token == pg_query.Token_UIDENT || tk.Token == pg_query.Token_USCONST || tk.Token == pg_query.Token_FROM,
			tk.Token == pg_query.Token_SCONST && strings.ContainsRune("eE", rune(sql[tk.Start])):
			strict = true
		case tk.Token == pg_query.Token_ASCII_59 && next != pg_query.Token_NUL && next != pg_query.Token_ASCII_59:
			multi = true
		}
	}

	var ours *pgerr.Error
	var gotInst *commands.InstallStmt
	var gotUn *commands.UninstallStmt
	if install {
		gotInst, err = commands.ParseInstall(sql)
	} else {
		gotUn, err = commands.ParseUninstall(sql)
	}
	if err != nil && !errors.As(err, &ours) {
		t.Fatalf("%q: error %v is %T", sql, err, err)
	}
	res, err := pg_query.Parse(pgSQL)
	var theirs *pgscan.Error
	if err != nil && !errors.As(err, &theirs) {
		t.Fatalf("pg_query.Parse(%q): %v", pgSQL, err)
	}

	switch {
	case ours == nil && theirs == nil:
		if n := len(res.GetStmts()); n != 1 {
			t.Fatalf("%q: PostgreSQL sees %d statements", sql, n)
		}
		node := res.GetStmts()[0].GetStmt()
		if install {
			checkCreateExtension(t, sql, gotInst, node.GetCreateExtensionStmt())
		} else {
			checkDropExtension(t, sql, gotUn, node.GetDropStmt())
		}
	case ours == nil:
		if !lenient {
			t.Fatalf("%q accepted, but PostgreSQL says %q at %d", sql, theirs.Message, theirs.Cursorpos)
		}
	case theirs == nil:
		if strict || multi {
			return
		}
		// Raised by PostgreSQL when executing, which pg_query does not.
		if ours.Message == "conflicting or redundant options" || strings.HasPrefix(ours.Message, "invalid extension version name") {
			return
		}
		t.Fatalf("%q refused with %q at %d, but PostgreSQL accepts it", sql, ours.Message, ours.Position)
	default:
		if lenient || strict || multi || quirk {
			return
		}
		if ours.Message != theirs.Message || int(ours.Position) != theirs.Cursorpos {
			t.Fatalf("%q: error %q at %d, PostgreSQL says %q at %d", sql, ours.Message, ours.Position, theirs.Message, theirs.Cursorpos)
		}
	}
}

// sameIdent reports whether PostgreSQL's pg equals ours, allowing for
// PostgreSQL truncating identifiers to 63 bytes, which ours deliberately
// does not.
func sameIdent(ours, pg string) bool {
	return ours == pg || len(ours) > 63 && len(pg) > 59 && strings.HasPrefix(ours, pg)
}

func checkCreateExtension(t *testing.T, sql string, ours *commands.InstallStmt, pg *pg_query.CreateExtensionStmt) {
	t.Helper()
	if pg == nil {
		t.Fatalf("%q: PostgreSQL did not parse a CREATE EXTENSION", sql)
	}
	var theirs commands.InstallStmt
	theirs.Name = pg.GetExtname()
	theirs.IfNotExists = pg.GetIfNotExists()
	for _, o := range pg.GetOptions() {
		d := o.GetDefElem()
		switch d.GetDefname() {
		case "schema":
			theirs.Schema = d.GetArg().GetString_().GetSval()
		case "new_version":
			theirs.Version = d.GetArg().GetString_().GetSval()
		case "cascade":
			theirs.Cascade = d.GetArg().GetBoolean().GetBoolval()
		default:
			t.Fatalf("%q: unexpected option %q", sql, d.GetDefname())
		}
	}
	if !sameIdent(ours.Name, theirs.Name) || !sameIdent(ours.Schema, theirs.Schema) ||
		!sameIdent(ours.Version, theirs.Version) || ours.IfNotExists != theirs.IfNotExists || ours.Cascade != theirs.Cascade {
		t.Fatalf("%q: got %+v, PostgreSQL %+v", sql, *ours, theirs)
	}
}

func checkDropExtension(t *testing.T, sql string, ours *commands.UninstallStmt, pg *pg_query.DropStmt) {
	t.Helper()
	if pg == nil || pg.GetRemoveType() != pg_query.ObjectType_OBJECT_EXTENSION {
		t.Fatalf("%q: PostgreSQL did not parse a DROP EXTENSION", sql)
	}
	objs := pg.GetObjects()
	ok := len(objs) == len(ours.Names) && pg.GetMissingOk() == ours.IfExists &&
		(pg.GetBehavior() == pg_query.DropBehavior_DROP_CASCADE) == ours.Cascade
	for i := 0; ok && i < len(objs); i++ {
		ok = sameIdent(ours.Names[i], objs[i].GetString_().GetSval())
	}
	if !ok {
		t.Fatalf("%q: got %+v, PostgreSQL %v", sql, *ours, pg)
	}
}
