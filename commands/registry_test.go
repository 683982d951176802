package commands_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/commands"
)

// fakeCommand is a registrable command with fixed keywords.
type fakeCommand struct {
	name     string
	keywords []string
}

func (c fakeCommand) Name() string       { return c.name }
func (c fakeCommand) Keywords() []string { return c.keywords }

// Parse is never called by the registry.
func (c fakeCommand) Parse(string) (commands.Prepared, error) {
	return nil, errors.New("fakeCommand: Parse not implemented")
}

var installExtension = fakeCommand{"INSTALL EXTENSION", []string{"INSTALL", "EXTENSION"}}

func newRegistry() *commands.Registry {
	r := commands.NewRegistry()
	r.Register(installExtension)
	return r
}

// stmt is an expected statement: its text, offset and whether it is the
// registered command.
type stmt struct {
	sql     string
	offset  int
	command bool
}

func TestMatch(t *testing.T) {
	r := newRegistry()
	for _, tc := range []struct {
		name  string
		sql   string
		found bool
		want  []stmt // checked when found
	}{
		{"upper case", "INSTALL EXTENSION foo", true, []stmt{{"INSTALL EXTENSION foo", 0, true}}},
		{"lower case", "install extension foo", true, []stmt{{"install extension foo", 0, true}}},
		{"mixed case", "Install Extension foo", true, []stmt{{"Install Extension foo", 0, true}}},
		{"leading comments", "/* c */ -- x\n install extension foo;", true, []stmt{{"install extension foo", 14, true}}},
		{"comment between keywords", "INSTALL /* c */ EXTENSION foo", true, []stmt{{"INSTALL /* c */ EXTENSION foo", 0, true}}},
		{"trailing comment", "INSTALL EXTENSION foo -- why\n", true, []stmt{{"INSTALL EXTENSION foo", 0, true}}},
		{"newlines and tabs", "\n\tINSTALL\n\tEXTENSION\tfoo\n", true, []stmt{{"INSTALL\n\tEXTENSION\tfoo", 2, true}}},
		{"multi-statement", "SELECT 1; INSTALL EXTENSION foo; SELECT 2", true, []stmt{
			{"SELECT 1", 0, false},
			{"INSTALL EXTENSION foo", 10, true},
			{"SELECT 2", 33, false},
		}},
		{"offsets in bytes", "SELECT 'é€'; INSTALL EXTENSION foo", true, []stmt{
			{"SELECT 'é€'", 0, false},
			{"INSTALL EXTENSION foo", 16, true},
		}},
		{"empty statements", ";; INSTALL EXTENSION foo;;", true, []stmt{{"INSTALL EXTENSION foo", 3, true}}},
		{"twice", "INSTALL EXTENSION a;INSTALL EXTENSION b", true, []stmt{
			{"INSTALL EXTENSION a", 0, true},
			{"INSTALL EXTENSION b", 20, true},
		}},
		{"semicolon in string", "SELECT ';'; INSTALL EXTENSION foo", true, []stmt{
			{"SELECT ';'", 0, false},
			{"INSTALL EXTENSION foo", 12, true},
		}},

		{"in a string", "SELECT 'INSTALL EXTENSION x'", false, nil},
		{"in an escape string", "SELECT E'\\'; INSTALL EXTENSION x'", false, nil},
		{"table named install", "SELECT * FROM install", false, nil},
		{"quoted identifier", `"install" extension foo`, false, nil},
		{"quoted second keyword", `install "extension" foo`, false, nil},
		{"function body", "CREATE FUNCTION f() RETURNS void AS $$ INSTALL EXTENSION x $$ LANGUAGE sql", false, nil},
		{"tagged dollar quote", "SELECT $body$ ; INSTALL EXTENSION x; $body$", false, nil},
		{"DO block", "DO $$ BEGIN INSTALL EXTENSION x; END $$", false, nil},
		{"keyword alone", "INSTALL", false, nil},
		{"first keyword only", "INSTALL foo", false, nil},
		{"not leading", "EXPLAIN INSTALL EXTENSION foo", false, nil},
		{"in a comment", "/* INSTALL EXTENSION foo */ SELECT 1", false, nil},
		{"in a line comment", "SELECT 1 -- INSTALL EXTENSION foo", false, nil},
		{"longer word", "INSTALLS EXTENSION foo", false, nil},
		{"underscore", "install_extension foo", false, nil},
		{"unterminated string", "SELECT 'abc; INSTALL EXTENSION foo", false, nil},
		{"empty", "", false, nil},
		{"only comments", "/* INSTALL */ -- EXTENSION", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stmts, found := r.Match(tc.sql)
			if found != tc.found {
				t.Fatalf("Match(%q) found %v, want %v (statements %+v)", tc.sql, found, tc.found, stmts)
			}
			if tc.found && !r.MayContain([]byte(tc.sql)) {
				t.Fatalf("MayContain(%q) false for a match", tc.sql)
			}
			if !tc.found {
				return
			}
			if len(stmts) != len(tc.want) {
				t.Fatalf("Match(%q) = %+v, want %d statements", tc.sql, stmts, len(tc.want))
			}
			for i, w := range tc.want {
				st := stmts[i]
				if st.SQL != w.sql || st.Offset != w.offset || (st.Command != nil) != w.command {
					t.Errorf("statement %d = {%q at %d, command %v}, want {%q at %d, command %v}",
						i, st.SQL, st.Offset, st.Command, w.sql, w.offset, w.command)
				}
				if st.Command != nil && st.Command.Name() != installExtension.Name() {
					t.Errorf("statement %d command %q", i, st.Command.Name())
				}
				if tc.sql[st.Offset:st.Offset+len(st.SQL)] != st.SQL {
					t.Errorf("statement %d offset %d does not point at %q", i, st.Offset, st.SQL)
				}
			}
		})
	}
}

func TestMayContain(t *testing.T) {
	r := newRegistry()
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"SELECT 1", false},
		{"", false},
		{"INSTAL", false},
		{"EXTENSION", false},
		{"INSTALL", true},
		{"install", true},
		{"iNsTaLl", true},
		{"SELECT 'install'", true},
		{"xINSTALLx", false}, // inside an identifier: never a command
		{"install_log", false},
		{"/**/install", true},
		{"x;install", true},
		{"SELECT 1; install extension foo", true},
		{"ınstall", false}, // dotless i is not ASCII I
	} {
		if got := r.MayContain([]byte(tc.sql)); got != tc.want {
			t.Errorf("MayContain(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
	if r.MayContain([]byte("i\x00stall")) || r.MayContain([]byte("INST\x01LL")) {
		t.Error("MayContain matched non-letters")
	}

	if commands.NewRegistry().MayContain([]byte("INSTALL EXTENSION foo")) {
		t.Error("empty registry MayContain true")
	}
}

func TestMayContainDoesNotAllocate(t *testing.T) {
	r := newRegistry()
	sql := []byte(strings.Repeat("SELECT 1; ", 100) + "install extension foo")
	if n := testing.AllocsPerRun(100, func() { r.MayContain(sql) }); n != 0 {
		t.Fatalf("MayContain allocates %v times", n)
	}
}

func TestEmptyRegistry(t *testing.T) {
	r := commands.NewRegistry()
	if !r.Empty() {
		t.Fatal("new registry not empty")
	}
	if stmts, found := r.Match("INSTALL EXTENSION foo"); found || stmts != nil {
		t.Fatalf("empty registry matched: %+v", stmts)
	}
	r.Register(installExtension)
	if r.Empty() {
		t.Fatal("registry empty after Register")
	}
}

func TestSeveralCommands(t *testing.T) {
	r := newRegistry()
	uninstall := fakeCommand{"UNINSTALL EXTENSION", []string{"UNINSTALL", "EXTENSION"}}
	installPkg := fakeCommand{"INSTALL PACKAGE", []string{"install", "package"}} // lower case keywords
	r.Register(uninstall)
	r.Register(installPkg)
	for sql, want := range map[string]string{
		"INSTALL EXTENSION a":   "INSTALL EXTENSION",
		"uninstall extension a": "UNINSTALL EXTENSION",
		"Install Package p":     "INSTALL PACKAGE",
	} {
		stmts, found := r.Match(sql)
		if !found || len(stmts) != 1 || stmts[0].Command == nil || stmts[0].Command.Name() != want {
			t.Errorf("Match(%q) = %+v, %v, want %s", sql, stmts, found, want)
		}
		if !r.MayContain([]byte(sql)) {
			t.Errorf("MayContain(%q) false", sql)
		}
	}
}

func TestRegisterPanics(t *testing.T) {
	for name, c := range map[string]fakeCommand{
		"no keywords":        {"NOTHING", nil},
		"duplicate":          installExtension,
		"duplicate any case": {"other", []string{"install", "extension"}},
	} {
		t.Run(name, func(t *testing.T) {
			r := newRegistry()
			defer func() {
				if recover() == nil {
					t.Fatalf("Register(%+v) did not panic", c)
				}
			}()
			r.Register(c)
		})
	}
}

// FuzzMatch checks that MayContain and Match never panic and that Match's
// statements are consistent with its input.
func FuzzMatch(f *testing.F) {
	for _, s := range []string{
		"INSTALL EXTENSION foo",
		"/* c */ -- x\n install extension foo;",
		"SELECT 1; INSTALL EXTENSION foo; SELECT 2",
		"SELECT 'INSTALL EXTENSION x'",
		`"install" extension foo`,
		"DO $$ BEGIN INSTALL EXTENSION x; END $$",
		"SELECT 'abc; INSTALL EXTENSION foo",
		"SELECT E'\\'",
		"/* unterminated INSTALL EXTENSION",
		"$a$ INSTALL EXTENSION $b$",
		"INSTALL EXTENSION \x00 foo",
		"U&\"\\0069nstall\" EXTENSION",
		"",
	} {
		f.Add(s)
	}
	r := newRegistry()
	f.Fuzz(func(t *testing.T, sql string) {
		may := r.MayContain([]byte(sql))
		// MayContain looks for the keyword as a whole word: never where
		// the text lacks it, and Match (below) never finds more.
		if may && !strings.Contains(strings.ToUpper(sql), "INSTALL") && isASCII(sql) {
			t.Fatalf("MayContain(%q) = %v", sql, may)
		}
		stmts, found := r.Match(sql)
		if found && !may {
			t.Fatalf("Match(%q) found a command MayContain ruled out", sql)
		}
		commandSeen := false
		end := 0
		for i, st := range stmts {
			if st.Offset < end || st.Offset+len(st.SQL) > len(sql) || sql[st.Offset:st.Offset+len(st.SQL)] != st.SQL {
				t.Fatalf("Match(%q): statement %d {%q at %d} out of place", sql, i, st.SQL, st.Offset)
			}
			if st.SQL == "" {
				t.Fatalf("Match(%q): empty statement %d", sql, i)
			}
			end = st.Offset + len(st.SQL)
			if st.Command != nil {
				commandSeen = true
				if !strings.EqualFold(st.SQL[:len("INSTALL")], "INSTALL") {
					t.Fatalf("Match(%q): statement %q matched", sql, st.SQL)
				}
			}
		}
		if found != commandSeen {
			t.Fatalf("Match(%q) found %v with statements %+v", sql, found, stmts)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
