package e2e

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// showModes are the ways pgx runs a query: the simple protocol, and the
// extended protocol with a described, cached prepared statement (the
// default) or described just before it runs.
var showModes = []pgx.QueryExecMode{
	pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec,
}

// showQuery runs sql with pgx in mode and returns the column names and the
// rows as "a|b|NULL". pgx's extended modes ask for bool in binary, so the
// installed column also checks the engine's binary result formats.
func showQuery(t *testing.T, ctx context.Context, conn *pgx.Conn, mode pgx.QueryExecMode, sql string) ([]string, []string) {
	t.Helper()
	rows, err := conn.Query(ctx, sql, mode)
	if err != nil {
		t.Fatalf("%s (%v): %v", sql, mode, err)
	}
	defer rows.Close()
	var cols []string
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		for i, col := range cols {
			if col == "installed" {
				vals[i] = new(bool)
			} else {
				vals[i] = new(*string)
			}
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatalf("%s (%v): scan: %v", sql, mode, err)
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			switch v := v.(type) {
			case *bool:
				parts[i] = "f"
				if *v {
					parts[i] = "t"
				}
			case **string:
				parts[i] = "NULL"
				if *v != nil {
					parts[i] = **v
				}
			}
		}
		out = append(out, strings.Join(parts, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s (%v): %v", sql, mode, err)
	}
	if tag := rows.CommandTag().String(); tag != "SHOW" {
		t.Errorf("%s (%v): tag %q, want SHOW", sql, mode, tag)
	}
	return cols, out
}

// showLines runs sql with psql -At and returns the output lines.
func showLines(t *testing.T, run func(args ...string) (string, error), sql string) []string {
	t.Helper()
	out, err := run("-At", "-c", sql)
	if err != nil {
		t.Fatalf("psql %s: %v\n%s", sql, err, out)
	}
	return strings.Split(strings.TrimRight(out, "\n"), "\n")
}

func containsLine(ls []string, want string) bool {
	for _, l := range ls {
		if l == want {
			return true
		}
	}
	return false
}

func TestShowAvailableExtensions(t *testing.T) {
	c, p := extSetup(t)
	ctx := testCtx(t)
	url := freshDB(t, c, p, "show_available")
	run := func(args ...string) (string, error) { return psql(t, c, url, args...) }

	// psql shows the rows of a command that sends them with the tag SHOW.
	out, err := run("-c", "SHOW AVAILABLE EXTENSIONS")
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	header := "name | default_version | installed_version | source | comment | requires | conflicts"
	if !strings.Contains(strings.Join(strings.Fields(out), " "), header) || !strings.Contains(out, " rows)") {
		t.Fatalf("psql output lacks the header or the row count:\n%s", out)
	}

	ls := showLines(t, run, "show available extensions;")
	for _, want := range []string{
		"baz|1.0||pgverbs|leaf dependency||",
		"bar|1.2||pgverbs||baz|",
		"foo|1.0||pgverbs|the example from the 2010 design|bar (>= 1.1), baz|bla (< 0.8)",
		"plpgsql|1.0|1.0|server|PL/pgSQL procedural language||",
	} {
		if !containsLine(ls, want) {
			t.Errorf("no line %q in\n%s", want, strings.Join(ls, "\n"))
		}
	}
	var hstore string
	for _, l := range ls {
		if strings.HasPrefix(l, "hstore|") {
			hstore = l
		}
	}
	if !strings.HasPrefix(hstore, "hstore|") || !strings.Contains(hstore, "||server|") {
		t.Errorf("hstore line %q, want a server extension that is not installed", hstore)
	}
	names := make([]string, len(ls))
	for i, l := range ls {
		names[i] = strings.SplitN(l, "|", 2)[0]
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("rows not ordered by name: %q", names)
	}

	// The same, as the server's own view sees it.
	var n int
	if err := connect(t, url).QueryRow(ctx, "SELECT count(*) FROM pg_available_extensions").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if servers := strings.Count(strings.Join(ls, "\n"), "|server|"); servers != n {
		t.Errorf("%d server rows, pg_available_extensions has %d", servers, n)
	}

	// Installing updates installed_version, for packages and server
	// extensions alike.
	if out, err := run("-c", "INSTALL EXTENSION baz", "-c", "CREATE EXTENSION hstore"); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	ls = showLines(t, run, "SHOW AVAILABLE EXTENSIONS")
	if !containsLine(ls, "baz|1.0|1.0|pgverbs|leaf dependency||") {
		t.Errorf("baz not installed in\n%s", strings.Join(ls, "\n"))
	}
	for _, l := range ls {
		if strings.HasPrefix(l, "hstore|") && strings.Split(l, "|")[1] != strings.Split(l, "|")[2] {
			t.Errorf("hstore line %q, want installed at its default version", l)
		}
	}

	// pgx reads the rows with either protocol.
	conn := connect(t, url)
	for _, mode := range showModes {
		cols, rows := showQuery(t, ctx, conn, mode, "SHOW AVAILABLE EXTENSIONS")
		if got := strings.Join(cols, " "); got != "name default_version installed_version source comment requires conflicts" {
			t.Errorf("%v: columns %q", mode, got)
		}
		if !containsLine(rows, "baz|1.0|1.0|pgverbs|leaf dependency|NULL|NULL") ||
			!containsLine(rows, "plpgsql|1.0|1.0|server|PL/pgSQL procedural language|NULL|NULL") {
			t.Errorf("%v: rows\n%s", mode, strings.Join(rows, "\n"))
		}
		if len(rows) != len(ls) {
			t.Errorf("%v: %d rows, psql saw %d", mode, len(rows), len(ls))
		}
	}

	// Inside a transaction, among other statements, and in a multi-statement
	// query string.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSTALL EXTENSION bla"); err != nil {
		t.Fatal(err)
	}
	_, rows := showQuery(t, ctx, conn, pgx.QueryExecModeCacheStatement, "SHOW AVAILABLE EXTENSIONS")
	if !containsLine(rows, "bla|0.7|0.7|pgverbs|NULL|NULL|NULL") {
		t.Errorf("bla not installed inside the transaction:\n%s", strings.Join(rows, "\n"))
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	out, err = run("-At", "-c", "SELECT 1; SHOW AVAILABLE EXTENSIONS; SELECT 2")
	if err != nil || !strings.HasPrefix(out, "1\n") || !strings.HasSuffix(out, "\n2\n") ||
		!strings.Contains(out, "\nbla|0.7||pgverbs|||\n") {
		t.Errorf("multi-statement query: %v\n%s", err, out)
	}

	// Plain SHOW is PostgreSQL's.
	if out, err := run("-At", "-c", "SHOW search_path"); err != nil || strings.TrimSpace(out) != `"$user", public` {
		t.Errorf("SHOW search_path: %v %q", err, out)
	}
	// Syntax errors come back as PostgreSQL's do.
	out, err = run("-c", "SHOW AVAILABLE EXTENSIONS bogus")
	if err == nil || !strings.Contains(out, `syntax error at or near "bogus"`) ||
		!strings.Contains(out, "LINE 1: SHOW AVAILABLE EXTENSIONS bogus") {
		t.Errorf("syntax error: %v\n%s", err, out)
	}
}

func TestShowAvailableExtensionVersions(t *testing.T) {
	c, p := extSetup(t)
	ctx := testCtx(t)
	url := freshDB(t, c, p, "show_versions")
	run := func(args ...string) (string, error) { return psql(t, c, url, args...) }

	ls := showLines(t, run, "SHOW AVAILABLE EXTENSION VERSIONS baz")
	if len(ls) != 1 || ls[0] != "baz|1.0|f|pgverbs||leaf dependency" {
		t.Errorf("baz versions: %q", ls)
	}
	ls = showLines(t, run, "SHOW AVAILABLE EXTENSION VERSIONS foo")
	if len(ls) != 1 || ls[0] != "foo|1.0|f|pgverbs|bar (>= 1.1), baz|the example from the 2010 design" {
		t.Errorf("foo versions: %q", ls)
	}
	if out, err := run("-c", "INSTALL EXTENSION baz"); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	ls = showLines(t, run, "SHOW AVAILABLE EXTENSION VERSIONS baz")
	if len(ls) != 1 || ls[0] != "baz|1.0|t|pgverbs||leaf dependency" {
		t.Errorf("baz versions after install: %q", ls)
	}

	// A server extension has the versions the server lists.
	want := showLines(t, run, "SELECT name, version, installed, array_to_string(requires, ', '), comment FROM pg_available_extension_versions WHERE name = 'hstore'")
	for i := range want {
		parts := strings.SplitN(want[i], "|", 4)
		want[i] = strings.Join(parts[:3], "|") + "|server|" + parts[3]
	}
	ls = showLines(t, run, "SHOW AVAILABLE EXTENSION VERSIONS hstore")
	sort.Strings(want)
	got := append([]string(nil), ls...)
	sort.Strings(got)
	if len(got) < 2 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hstore versions:\n%s\nwant (in some order)\n%s", strings.Join(ls, "\n"), strings.Join(want, "\n"))
	}

	// Every version of everything.
	all := showLines(t, run, "SHOW AVAILABLE EXTENSION VERSIONS")
	if !containsLine(all, "baz|1.0|t|pgverbs||leaf dependency") || !containsLine(all, ls[0]) ||
		!containsLine(all, "plpgsql|1.0|t|server||PL/pgSQL procedural language") {
		t.Errorf("all versions:\n%s", strings.Join(all, "\n"))
	}

	conn := connect(t, url)
	for _, mode := range showModes {
		cols, rows := showQuery(t, ctx, conn, mode, "SHOW AVAILABLE EXTENSION VERSIONS baz")
		if got := strings.Join(cols, " "); got != "name version installed source requires comment" {
			t.Errorf("%v: columns %q", mode, got)
		}
		if len(rows) != 1 || rows[0] != "baz|1.0|t|pgverbs|NULL|leaf dependency" {
			t.Errorf("%v: rows %q", mode, rows)
		}
		_, rows = showQuery(t, ctx, conn, mode, "SHOW AVAILABLE EXTENSION VERSIONS bar")
		if len(rows) != 1 || rows[0] != "bar|1.2|f|pgverbs|baz|NULL" {
			t.Errorf("%v: rows %q", mode, rows)
		}
	}

	// An extension nobody offers.
	_, err := conn.Exec(ctx, "SHOW AVAILABLE EXTENSION VERSIONS bazz")
	e := wantCode(t, err, "42704")
	if e.Message != `extension "bazz" is not available` || !strings.Contains(e.Hint, `"baz"`) {
		t.Errorf("error %+v", e)
	}
	out, err := run("-c", "SHOW AVAILABLE EXTENSION VERSIONS nope")
	if err == nil || !strings.Contains(out, `ERROR:  extension "nope" is not available`) {
		t.Errorf("psql: %v\n%s", err, out)
	}
}

func TestShowExtensionUpdatePaths(t *testing.T) {
	c, p := extSetup(t)
	ctx := testCtx(t)
	url := freshDB(t, c, p, "show_paths")
	run := func(args ...string) (string, error) { return psql(t, c, url, args...) }

	// A server extension: what pg_extension_update_paths() says.
	want := showLines(t, run, "SELECT source, target, path FROM pg_extension_update_paths('hstore')")
	ls := showLines(t, run, "SHOW EXTENSION UPDATE PATHS hstore")
	got := append([]string(nil), ls...)
	sort.Strings(got)
	sort.Strings(want)
	if len(got) < 2 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hstore paths:\n%s\nwant (in some order)\n%s", strings.Join(ls, "\n"), strings.Join(want, "\n"))
	}
	if !containsLine(ls, "1.4|1.8|1.4--1.5--1.6--1.7--1.8") {
		t.Errorf("no path from 1.4 to 1.8 in\n%s", strings.Join(ls, "\n"))
	}

	// A package of the pgverbs layout has one version, so no paths.
	out, err := run("-c", "SHOW EXTENSION UPDATE PATHS baz")
	if err != nil || !strings.Contains(out, "source | target | path") || !strings.Contains(out, "(0 rows)") {
		t.Errorf("baz paths: %v\n%s", err, out)
	}

	conn := connect(t, url)
	for _, mode := range showModes {
		cols, rows := showQuery(t, ctx, conn, mode, `SHOW EXTENSION UPDATE PATHS "hstore"`)
		if strings.Join(cols, " ") != "source target path" || len(rows) != len(ls) ||
			!containsLine(rows, "1.4|1.8|1.4--1.5--1.6--1.7--1.8") || !containsLine(rows, "1.8|1.4|NULL") {
			t.Errorf("%v: columns %q rows\n%s", mode, cols, strings.Join(rows, "\n"))
		}
	}

	_, err = conn.Exec(ctx, "SHOW EXTENSION UPDATE PATHS nope")
	if e := wantCode(t, err, "42704"); e.Message != `extension "nope" is not available` {
		t.Errorf("error %+v", e)
	}
	out, err = run("-c", "SHOW EXTENSION UPDATE PATHS")
	if err == nil || !strings.Contains(out, "syntax error at end of input") {
		t.Errorf("syntax error: %v\n%s", err, out)
	}
}
