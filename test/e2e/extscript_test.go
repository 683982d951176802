package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScriptConstructErrors covers what CREATE EXTENSION refuses in scripts
// and what pgverbs refuses before anything runs: each failure is the
// PostgreSQL error (or pgverbs's, naming file and line), leaves nothing
// installed and the session usable.
func TestScriptConstructErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	control := "default_version = '1.0'\nrelocatable = false\nsuperuser = false\n"
	write("notmember.control", control)
	write("notmember--1.0.sql", "CREATE TABLE @extschema@.mine (x int);\nSELECT pg_catalog.pg_extension_config_dump('public.outsider', '');\n")
	write("addtaken.control", control)
	write("addtaken--1.0.sql", "ALTER EXTENSION addtaken ADD TABLE public.taken;\n")
	write("owner1.control", control)
	write("owner1--1.0.sql", "CREATE TABLE @extschema@.taken (x int);\n")
	write("dropnot.control", control)
	write("dropnot--1.0.sql", "CREATE TABLE @extschema@.t (x int);\nALTER EXTENSION dropnot DROP TABLE public.outsider;\n")
	write("otherext.control", control)
	write("otherext--1.0.sql", "CREATE TABLE @extschema@.t (x int);\n\nALTER EXTENSION plpgsql ADD TABLE @extschema@.t;\n")
	write("quoted.control", control)
	write("quoted--1.0.sql", "CREATE TABLE @extschema@.t (x int);\n")
	write("addmissing.control", control)
	write("addmissing--1.0.sql", "CREATE TABLE @extschema@.t (x int);\nALTER EXTENSION addmissing ADD FUNCTION @extschema@.nope(integer);\n")

	c := cluster(t, pgtestOptions())
	p := startProxy(t, c.URL("", "", "postgres"), "--extensions", dir)
	ctx := testCtx(t)
	conn := connect(t, freshDB(t, c, p, "constructs"))
	exec1(t, ctx, conn, "CREATE TABLE public.outsider (x int)")
	exec1(t, ctx, conn, `CREATE SCHEMA "it's"`)
	exec1(t, ctx, conn, "INSTALL EXTENSION owner1")

	for _, tc := range []struct {
		name, stmt, code string
		parts            []string
		// gone is a relation that must not exist afterwards.
		gone string
	}{
		{name: "config dump of a non-member", stmt: "INSTALL EXTENSION notmember", code: "55000",
			parts: []string{`table "outsider" is not a member of the extension being created`}, gone: "public.mine"},
		{name: "config dump outside a script", stmt: "SELECT pgverbs.extension_config_dump('public.outsider', '')", code: "55000",
			parts: []string{"can only be called from an SQL script executed by INSTALL EXTENSION"}},
		{name: "ADD of another extension's member", stmt: "INSTALL EXTENSION addtaken", code: "55000",
			parts: []string{`table taken is already a member of extension "owner1"`, "addtaken--1.0.sql:1"}},
		{name: "DROP of a non-member", stmt: "INSTALL EXTENSION dropnot", code: "55000",
			parts: []string{`table outsider is not a member of extension "dropnot"`, "dropnot--1.0.sql:2"}, gone: "public.t"},
		{name: "ADD of a missing object", stmt: "INSTALL EXTENSION addmissing", code: "42883",
			parts: []string{"function public.nope(integer) does not exist"}, gone: "public.t"},
		{name: "ALTER EXTENSION of another extension", stmt: "INSTALL EXTENSION otherext", code: "0A000",
			parts: []string{`otherext--1.0.sql:3: ALTER EXTENSION "plpgsql" ADD|DROP is not allowed in the script of extension "otherext"`}, gone: "public.t"},
		{name: "schema with a quote", stmt: `INSTALL EXTENSION quoted SCHEMA "it's"`, code: "22023",
			parts: []string{`invalid character in extension "quoted" schema: must not contain any of ""$'\"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := conn.Exec(ctx, tc.stmt)
			e := wantCode(t, err, tc.code)
			msg := e.Message + "\n" + e.Where
			for _, part := range tc.parts {
				if !strings.Contains(msg, part) {
					t.Fatalf("error %q lacks %q", msg, part)
				}
			}
			if got := installedNames(t, ctx, conn); got != "owner1 1.0" {
				t.Fatalf("installed after the failure: %q", got)
			}
			if tc.gone != "" {
				var exists bool
				if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", tc.gone).Scan(&exists); err != nil || exists {
					t.Fatalf("%s exists after the failed install (%v)", tc.gone, err)
				}
			}
		})
	}
	// The member stays the member of its own extension, and goes with it.
	exec1(t, ctx, conn, "UNINSTALL EXTENSION owner1")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgverbs.extension_config").Scan(&n); err != nil || n != 0 {
		t.Fatalf("configuration rows left: %d %v", n, err)
	}
}
