package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// extPair is the cluster pair of the differential test: native, whose
// share/extension holds the corpus (a relocated copy of the installed
// PostgreSQL, so nothing is installed into the system), and plain, which
// lacks the files and is reached through pgverbs serving them.
type extPair struct {
	native, plain *pgtest.Cluster
	proxy         *proxyProc
}

// newExtPair starts the pair for the corpus in dir.
func newExtPair(t *testing.T, dir string) *extPair {
	t.Helper()
	native := cluster(t, pgtest.Options{BinDir: pgtest.RelocateTemp(t, dir)})
	plain := cluster(t, pgtestOptions())
	return &extPair{native: native, plain: plain, proxy: startProxy(t, plain.URL("", "", "postgres"), "--extensions", dir)}
}

// databases creates database db on both clusters and returns connections:
// straight to native, through the proxy to plain.
func (p *extPair) databases(t *testing.T, ctx context.Context, db string) (native, viaProxy *pgx.Conn) {
	t.Helper()
	for _, c := range []*pgtest.Cluster{p.native, p.plain} {
		if err := c.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatal(err)
		}
	}
	return connect(t, p.native.URL("postgres", "", db)), connect(t, p.proxy.URL("postgres", "", db))
}

// serverMajor is the PostgreSQL major version of the installed binaries.
func serverMajor(t *testing.T) string {
	t.Helper()
	major, err := pgtest.Major()
	if err != nil {
		t.Skip(err)
	}
	return major
}

// snapshot is catalogSnapshot that fails the test on error.
func snapshot(t *testing.T, ctx context.Context, conn *pgx.Conn) catalog {
	t.Helper()
	c, err := catalogSnapshot(ctx, conn)
	if err != nil {
		t.Fatalf("catalog snapshot: %v", err)
	}
	return c
}

// sameCatalogs fails the test with the first difference.
func sameCatalogs(t *testing.T, what string, a, b catalog, aName, bName string) {
	t.Helper()
	if d := diffCatalogs(a, b, aName, bName); d != "" {
		t.Fatalf("%s: the databases differ:\n%s", what, d)
	}
}

// exec1 runs one statement and fails the test on error.
func exec1(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			t.Fatalf("%s: %v\nDETAIL: %s\nCONTEXT: %s", sql, err, pe.Detail, pe.Where)
		}
		t.Fatalf("%s: %v", sql, err)
	}
}

// sessionSQL reads the settings CREATE EXTENSION changes around a script,
// and one a script may change for the session.
const sessionSQL = `SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('client_encoding'),
  pg_catalog.current_setting('check_function_bodies'), pg_catalog.current_setting('client_min_messages')`

// rowsText runs sql and returns its rows as text, one line per row.
func rowsText(t *testing.T, ctx context.Context, conn *pgx.Conn, sql string) string {
	t.Helper()
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatalf("%s (port %d): %v", sql, conn.Config().Port, err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if i > 0 {
				b.WriteString(" | ")
			}
			fmt.Fprint(&b, v)
		}
		b.WriteString("\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s (port %d): %v", sql, conn.Config().Port, err)
	}
	return b.String()
}

// sameRows fails the test when the two queries return different rows.
func sameRows(t *testing.T, ctx context.Context, what string, native, proxied *pgx.Conn, nativeSQL, proxySQL string) {
	t.Helper()
	n, p := rowsText(t, ctx, native, nativeSQL), rowsText(t, ctx, proxied, proxySQL)
	if n != p {
		t.Fatalf("%s differs:\nnative (%s):\n%s\npgverbs (%s):\n%s", what, nativeSQL, n, proxySQL, p)
	}
}

// configSQL lists an extension's configuration tables and filters: in
// pg_extension natively, in pgverbs's catalog through the proxy.
const (
	configNativeSQL = `SELECT u.t::text, u.c FROM pg_catalog.pg_extension e,
  unnest(e.extconfig::regclass[], e.extcondition) AS u(t, c) WHERE e.extname = '%s' ORDER BY 1`
	configProxySQL = `SELECT tab::text, filter FROM pgverbs.extension_config WHERE extension = '%s' ORDER BY 1`
)

// combinedDir copies the files of dirs into one directory, as the proxy
// serves a single extensions directory.
func combinedDir(t *testing.T, dirs ...string) string {
	t.Helper()
	out := t.TempDir()
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestExtensionsDifferential is the point of INSTALL EXTENSION: for real,
// unmodified SQL-only extensions from Debian's packages, and for small
// extensions exercising one construct each (testdata/constructs), INSTALL
// EXTENSION through pgverbs leaves the database exactly as CREATE EXTENSION
// on a server that has the files does (every user object, its definition,
// privileges and rows, the session's settings, the configuration tables),
// an install of an old version plus an update ends where the native update
// ends, and UNINSTALL leaves the database as DROP EXTENSION does.
func TestExtensionsDifferential(t *testing.T) {
	major := serverMajor(t)
	constructs, err := filepath.Abs("testdata/constructs")
	if err != nil {
		t.Fatal(err)
	}
	dir := combinedDir(t, corpusDir(t, major), constructs)
	pair := newExtPair(t, dir)
	ctx := testCtx(t)
	for _, tc := range []struct {
		ext string
		// schema, when set, is created first and named in SCHEMA (an SQL
		// identifier, quoted if need be).
		schema string
		// update is an old version to install before updating to the
		// default one.
		update string
		// set is a statement run on both sessions first.
		set string
		// checks are queries whose rows must be equal on both sides after
		// the install (and update); always also after the drop.
		checks, always []string
	}{
		{ext: "pgtap"},
		{ext: "pgtap", schema: "tap"},
		{ext: "pg_partman", schema: "partman"},
		{ext: "pg_track_settings"},
		{ext: "pg_track_settings", update: "2.0.0"},
		{ext: "pgagent"},
		{ext: "mimeo", schema: "mimeo"},
		{ext: "cfgdump", checks: []string{"SELECT path(), current_path(), installed_by()"}},
		{ext: "cfgdump", schema: `"My Schema"`, checks: []string{`SELECT "My Schema".installed_by(), "My Schema".current_path()`}},
		{ext: "cfgdump", schema: "qa", set: "SET quote_all_identifiers = on", checks: []string{"SELECT qa.path(), qa.current_path()"}},
		{ext: "members"},
		{ext: "members", set: "SET client_min_messages = error"},
		{ext: "members", update: "1.0"},
		{ext: "evtrig"},
		{ext: "incatalog", always: []string{"SELECT proname, pronamespace::regnamespace FROM pg_proc WHERE proname LIKE 'incatalog%' ORDER BY 1"}},
		{ext: "reloc", schema: "elsewhere", checks: []string{"SELECT * FROM elsewhere.reloc_literal"}},
		{ext: "reloc", always: []string{"SELECT pg_get_viewdef(oid) FROM pg_class WHERE relname = 'reloc_literal'"}},
	} {
		name := tc.ext
		if tc.schema != "" {
			name += "_in_" + strings.ToLower(strings.ReplaceAll(strings.Trim(tc.schema, `"`), " ", "_"))
		}
		if tc.update != "" {
			name += "_from_" + strings.ReplaceAll(tc.update, ".", "_")
		}
		if tc.set != "" {
			name += "_" + strings.Fields(tc.set)[1]
		}
		t.Run(name, func(t *testing.T) {
			native, proxied := pair.databases(t, ctx, "d_"+name)
			if tc.set != "" {
				exec1(t, ctx, native, tc.set)
				exec1(t, ctx, proxied, tc.set)
			}
			if tc.schema != "" {
				exec1(t, ctx, native, "CREATE SCHEMA "+tc.schema)
				exec1(t, ctx, proxied, "CREATE SCHEMA "+tc.schema)
			}
			baseNative, baseProxied := snapshot(t, ctx, native), snapshot(t, ctx, proxied)
			sameCatalogs(t, "before install", baseNative, baseProxied, "native", "pgverbs")
			compare := func(step, nativeName, proxyName string) {
				t.Helper()
				sameCatalogs(t, step, snapshot(t, ctx, native), snapshot(t, ctx, proxied), nativeName, proxyName)
				sameRows(t, ctx, step+": session settings", native, proxied, sessionSQL, sessionSQL)
				sameRows(t, ctx, step+": configuration tables", native, proxied,
					fmt.Sprintf(configNativeSQL, tc.ext), fmt.Sprintf(configProxySQL, tc.ext))
				qs := tc.always
				if step != "after DROP/UNINSTALL" {
					qs = append(qs, tc.checks...)
				}
				for _, q := range qs {
					sameRows(t, ctx, step+": "+q, native, proxied, q, q)
				}
			}

			opts := ""
			if tc.schema != "" {
				opts += " SCHEMA " + tc.schema
			}
			if tc.update != "" {
				opts += " VERSION '" + tc.update + "'"
			}
			exec1(t, ctx, native, "CREATE EXTENSION "+tc.ext+opts+" CASCADE")
			exec1(t, ctx, proxied, "INSTALL EXTENSION "+tc.ext+opts+" CASCADE")
			compare("after install", "CREATE EXTENSION", "INSTALL EXTENSION")

			if tc.update != "" {
				exec1(t, ctx, native, "ALTER EXTENSION "+tc.ext+" UPDATE")
				exec1(t, ctx, proxied, "ALTER EXTENSION "+tc.ext+" UPDATE")
				compare("after update", "ALTER EXTENSION UPDATE (native)", "ALTER EXTENSION UPDATE (pgverbs)")
			}

			exec1(t, ctx, native, "DROP EXTENSION "+tc.ext)
			exec1(t, ctx, proxied, "UNINSTALL EXTENSION "+tc.ext)
			compare("after DROP/UNINSTALL", "DROP EXTENSION", "UNINSTALL EXTENSION")
		})
	}
}
