package e2e

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// psqlExit returns psql's exit status: 0 for success, -1 when it did not
// run to an exit.
func psqlExit(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// lines splits psql output into lines without trailing blanks.
func lines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		ls = append(ls, strings.TrimRight(l, " \r"))
	}
	return ls
}

func hasLine(out, want string) bool {
	for _, l := range lines(out) {
		if l == want {
			return true
		}
	}
	return false
}

// TestPsqlCommands drives the real psql binary through pgverbs: one-shot
// commands, \; chains (one Query message), ON_ERROR_STOP scripts,
// AUTOCOMMIT off, and the shape of errors psql prints.
func TestPsqlCommands(t *testing.T) {
	c, p := extSetup(t)
	ctx := testCtx(t)

	t.Run("one-shot command", func(t *testing.T) {
		url := freshDB(t, c, p, "psql_oneshot")
		out, err := psql(t, c, url, "-c", "INSTALL EXTENSION baz")
		if err != nil || strings.TrimSpace(out) != "INSTALL EXTENSION" {
			t.Fatalf("psql -c: %v\n%s", err, out)
		}
		out, err = psql(t, c, url, "-Atc", "SELECT v FROM baz_data")
		if err != nil || strings.TrimSpace(out) != "1" {
			t.Fatalf("baz_data after install: %v\n%s", err, out)
		}
	})

	t.Run("backslash-semicolon chains", func(t *testing.T) {
		url := freshDB(t, c, p, "psql_chain")
		if out, err := psql(t, c, url, "-c", "INSTALL EXTENSION baz"); err != nil {
			t.Fatalf("install baz: %v\n%s", err, out)
		}
		// The last part fails: the whole Query message is rolled back.
		out, err := psql(t, c, url, "-f", "testdata/psql/chain_fail.sql")
		if code := psqlExit(err); code != 3 || !strings.Contains(out, "ERROR:  division by zero") {
			t.Fatalf("failing chain: exit %d (want 3)\n%s", code, out)
		}
		conn := connect(t, url)
		if got := installedNames(t, ctx, conn); got != "baz 1.0" {
			t.Fatalf("after a failing chain, installed: %q; want only baz", got)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_proc WHERE proname = 'bar_version'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("bar_version left by the failing chain: %d %v", n, err)
		}
		// Every part's result is shown, the command's tag included.
		out, err = psql(t, c, url, "-f", "testdata/psql/chain_ok.sql")
		if err != nil {
			t.Fatalf("chain: %v\n%s", err, out)
		}
		want := []string{" one", "-----", "   1", "(1 row)", "", "INSTALL EXTENSION", " baz_rows", "----------", "        1", "(1 row)"}
		if got := strings.Join(lines(strings.Trim(out, "\n")), "\n"); got != strings.Join(want, "\n") {
			t.Fatalf("chain output:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
		}
		if got := installedNames(t, ctx, conn); got != "bar 1.2,baz 1.0" {
			t.Fatalf("after the chain, installed: %q", got)
		}
	})

	t.Run("ON_ERROR_STOP script in a transaction", func(t *testing.T) {
		url := freshDB(t, c, p, "psql_script")
		out, err := psql(t, c, url, "-f", "testdata/psql/install_tx.sql")
		if err != nil {
			t.Fatalf("script: %v\n%s", err, out)
		}
		for _, l := range []string{"BEGIN", "INSTALL EXTENSION", "CREATE TABLE", " 1.2", "        1", "COMMIT"} {
			if !hasLine(out, l) {
				t.Fatalf("script output lacks %q:\n%s", l, out)
			}
		}
		if n := strings.Count(out, "INSTALL EXTENSION\n"); n != 2 {
			t.Fatalf("%d INSTALL EXTENSION tags, want 2:\n%s", n, out)
		}
		conn := connect(t, url)
		if got := installedNames(t, ctx, conn); got != "bar 1.2,baz 1.0" || !exists(t, ctx, conn, "script_marker") {
			t.Fatalf("after the script: installed %q, script_marker %v", got, exists(t, ctx, conn, "script_marker"))
		}
	})

	t.Run("ON_ERROR_STOP script failing midway", func(t *testing.T) {
		url := freshDB(t, c, p, "psql_midway")
		out, err := psql(t, c, url, "-f", "testdata/psql/fail_midway.sql")
		if code := psqlExit(err); code != 3 {
			t.Fatalf("psql exit %d, want 3 (ON_ERROR_STOP):\n%s", code, out)
		}
		if !strings.Contains(out, "psql:testdata/psql/fail_midway.sql:5: ERROR:  ") {
			t.Fatalf("error not reported at line 5:\n%s", out)
		}
		if strings.Contains(out, "COMMIT") || strings.Count(out, "CREATE TABLE") != 1 {
			t.Fatalf("psql went on after the error:\n%s", out)
		}
		conn := connect(t, url)
		if got := installedNames(t, ctx, conn); got != "" {
			t.Fatalf("install before the failure survived: %q", got)
		}
		if exists(t, ctx, conn, "before_failure") || exists(t, ctx, conn, "baz_data") {
			t.Fatal("statements before the failure in the same transaction survived")
		}
	})

	t.Run("AUTOCOMMIT off", func(t *testing.T) {
		url := freshDB(t, c, p, "psql_autocommit")
		out, err := psql(t, c, url, "-f", "testdata/psql/autocommit_off.sql")
		if err != nil || !hasLine(out, "INSTALL EXTENSION") || !hasLine(out, "ROLLBACK") || !hasLine(out, "        1") {
			t.Fatalf("AUTOCOMMIT off script: %v\n%s", err, out)
		}
		conn := connect(t, url)
		if got := installedNames(t, ctx, conn); got != "" || exists(t, ctx, conn, "baz_data") {
			t.Fatalf("ROLLBACK with AUTOCOMMIT off left an install: %q", got)
		}
		// The same with COMMIT keeps it: the ROLLBACK above did the work.
		cmd := psqlCmd(t, c, url)
		cmd.Stdin = strings.NewReader("\\set AUTOCOMMIT off\nINSTALL EXTENSION baz;\nCOMMIT;\n")
		if out, err := cmd.CombinedOutput(); err != nil || !hasLine(string(out), "COMMIT") {
			t.Fatalf("AUTOCOMMIT off with COMMIT: %v\n%s", err, out)
		}
		if got := installedNames(t, ctx, conn); got != "baz 1.0" {
			t.Fatalf("COMMIT with AUTOCOMMIT off: installed %q", got)
		}
	})

	t.Run("missing dependency error shape", func(t *testing.T) {
		url := freshDB(t, c, p, "psql_deps")
		out, err := psql(t, c, url, "-c", "INSTALL EXTENSION foo")
		if psqlExit(err) != 1 {
			t.Fatalf("psql exit %d, want 1:\n%s", psqlExit(err), out)
		}
		want := []string{
			`ERROR:  required extension "bar" is not installed`,
			`DETAIL:  Extension "foo" requires bar (>= 1.1).`,
			`HINT:  Use INSTALL EXTENSION ... CASCADE to install required extensions too.`,
		}
		if got := strings.Join(lines(strings.TrimSpace(out)), "\n"); got != strings.Join(want, "\n") {
			t.Fatalf("psql output:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
		}
	})

	// psql places the caret from the error's position, counted in
	// characters from the start of the whole query string.
	syntaxSQL := "SELECT 1; INSTALL EXTENSION baz bogus;"
	t.Run("syntax error caret in a multi-statement query", func(t *testing.T) {
		url := freshDB(t, c, p, "psql_caret")
		out, err := psql(t, c, url, "-c", syntaxSQL)
		if psqlExit(err) != 1 || !hasLine(out, `ERROR:  syntax error at or near "bogus"`) {
			t.Fatalf("psql: exit %d\n%s", psqlExit(err), out)
		}
		checkCaret(t, out, syntaxSQL, "bogus")
	})

	t.Run("syntax error runs nothing", func(t *testing.T) {
		url := freshDB(t, c, p, "psql_syntax")
		// Reference: PostgreSQL itself, with a plain statement in place of
		// the command, rejects the whole string and runs nothing.
		directSQL := "SELECT 1; CREATE TABLE baz_equiv(v int) bogus;"
		dout, _ := psql(t, c, c.URL("postgres", "", "psql_syntax"), "-c", directSQL)
		checkCaret(t, dout, directSQL, "bogus")
		if strings.Contains(dout, "?column?") {
			t.Fatalf("PostgreSQL ran part of a query string with a syntax error:\n%s", dout)
		}
		out, _ := psql(t, c, url, "-c", syntaxSQL)
		if strings.Contains(out, "?column?") {
			t.Fatalf("part of a query string with a syntax error ran:\n%s", out)
		}
	})
}

// checkCaret checks psql's "LINE 1:" display: the line quotes the query and
// the caret stands under the first character of token.
func checkCaret(t *testing.T, out, sql, token string) {
	t.Helper()
	ls := lines(out)
	for i, l := range ls {
		if !strings.HasPrefix(l, "LINE 1: ") {
			continue
		}
		if l != "LINE 1: "+sql {
			t.Fatalf("LINE 1 shows %q, want the query %q", l, sql)
		}
		if i+1 >= len(ls) {
			t.Fatalf("no caret line:\n%s", out)
		}
		want := strings.Repeat(" ", len("LINE 1: ")+strings.Index(sql, token)) + "^"
		if ls[i+1] != want {
			t.Fatalf("caret at column %d, want %d (under %q):\n%s", strings.Index(ls[i+1], "^"), strings.Index(want, "^"), token, out)
		}
		return
	}
	t.Fatalf("no LINE 1: in psql output:\n%s", out)
}
