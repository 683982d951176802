package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExtensionsDumpRestore dumps a database holding pgverbs-installed
// extensions with pg_dump and restores it, with psql (plain format) and
// pg_restore (custom format), into new databases of a server that does
// not have the extensions' files: the objects, their rows and pgverbs's
// catalog come back, and UNINSTALL works there, although every OID it
// recorded changed.
func TestExtensionsDumpRestore(t *testing.T) {
	major := serverMajor(t)
	constructs, err := filepath.Abs("testdata/constructs")
	if err != nil {
		t.Fatal(err)
	}
	dir := combinedDir(t, corpusDir(t, major), constructs)
	c := cluster(t, pgtestOptions())
	p := startProxy(t, c.URL("", "", "postgres"), "--extensions", dir)
	ctx := testCtx(t)
	for _, db := range []string{"dump_src", "dump_plain", "dump_custom", "dump_empty"} {
		if err := c.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatal(err)
		}
	}
	src := connect(t, p.URL("postgres", "", "dump_src"))
	exec1(t, ctx, src, "CREATE SCHEMA tap")
	for _, stmt := range []string{
		"INSTALL EXTENSION pgtap SCHEMA tap",
		"INSTALL EXTENSION pg_track_settings",
		"INSTALL EXTENSION cfgdump",
		"INSERT INTO settings VALUES ('user', 'set by a user')",
	} {
		exec1(t, ctx, src, stmt)
	}
	want := snapshot(t, ctx, src)
	const catalogSQL = `SELECT name, version, schema, requires FROM pgverbs.extensions ORDER BY 1;
SELECT extension, type, identity FROM pgverbs.extension_objects ORDER BY 1, 2, 3;
SELECT extension, tab::text, filter FROM pgverbs.extension_config ORDER BY 1, 2`

	tmp := t.TempDir()
	plain, custom := filepath.Join(tmp, "dump.sql"), filepath.Join(tmp, "dump.custom")
	for _, args := range [][]string{{"-f", plain}, {"-Fc", "-f", custom}} {
		cmd := exec.Command(c.Bin("pg_dump"), append([]string{"-d", p.URL("postgres", "", "dump_src")}, args...)...)
		cmd.Env = append(cmd.Environ(), "PGCONNECT_TIMEOUT=10")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pg_dump %v: %v\n%s", args, err, out)
		}
	}
	if out, err := psql(t, c, p.URL("postgres", "", "dump_plain"), "-q", "-f", plain); err != nil {
		t.Fatalf("psql -f dump.sql: %v\n%s", err, out)
	}
	restore := exec.Command(c.Bin("pg_restore"), "--exit-on-error", "-d", p.URL("postgres", "", "dump_custom"), custom)
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("pg_restore: %v\n%s", err, out)
	}
	empty := snapshot(t, ctx, connect(t, p.URL("postgres", "", "dump_empty")))

	for _, db := range []string{"dump_plain", "dump_custom"} {
		t.Run(db, func(t *testing.T) {
			conn := connect(t, p.URL("postgres", "", db))
			sameCatalogs(t, "restored", want, snapshot(t, ctx, conn), "dumped", "restored")
			for _, q := range splitSQL(catalogSQL) {
				sameRows(t, ctx, "pgverbs catalog: "+q, src, conn, q, q)
			}
			var avail int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_available_extensions WHERE name IN ('pgtap', 'cfgdump')").Scan(&avail); err != nil || avail != 0 {
				t.Fatalf("the server must not have the files: %d %v", avail, err)
			}
			exec1(t, ctx, conn, "UNINSTALL EXTENSION pgtap, pg_track_settings, cfgdump")
			exec1(t, ctx, conn, "DROP SCHEMA tap")
			sameCatalogs(t, "after UNINSTALL", empty, snapshot(t, ctx, conn), "an empty database", "restored and uninstalled")
			sameRows(t, ctx, "pgverbs catalog after UNINSTALL", conn, conn,
				"SELECT count(*) FROM pgverbs.extension_objects", "SELECT 0::bigint")
		})
	}
}

// splitSQL cuts a string of ;-and-newline separated statements of the
// test's own.
func splitSQL(s string) []string { return strings.Split(s, ";\n") }
