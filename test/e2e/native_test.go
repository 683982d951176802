package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// TestNativePackages covers PostgreSQL's own package layout through INSTALL
// EXTENSION: versions and upgrades along update scripts, a package that
// needs a C library refused, server-native extensions (hstore) and a
// package depending on one.
func TestNativePackages(t *testing.T) {
	c, p := extSetup(t)
	ctx := testCtx(t)

	t.Run("versions and upgrade", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "multi"))
		if _, err := conn.Exec(ctx, "INSTALL EXTENSION multi VERSION '1.0'"); err != nil {
			t.Fatal(err)
		}
		var v string
		if err := conn.QueryRow(ctx, "SELECT multi_version()").Scan(&v); err != nil || v != "1.0" {
			t.Fatalf("version 1.0 installed: %q %v", v, err)
		}
		// Upgrade 1.0 -> 2.0 through 1.1, in one transaction.
		if _, err := conn.Exec(ctx, "INSTALL EXTENSION multi VERSION '2.0'"); err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		if err := conn.QueryRow(ctx, "SELECT multi_version() || ' ' || (SELECT version FROM pgverbs.extensions WHERE name = 'multi')").Scan(&v); err != nil || v != "2.0 2.0" {
			t.Fatalf("after upgrade: %q %v", v, err)
		}
		var objs string
		if err := conn.QueryRow(ctx, "SELECT string_agg(identity, ',' ORDER BY identity) FROM pgverbs.extension_objects WHERE extension = 'multi'").Scan(&objs); err != nil {
			t.Fatal(err)
		}
		if objs != "public.multi_log,public.multi_version(),public.multi_view" {
			t.Fatalf("tracked objects after upgrade: %s", objs)
		}
		if _, err := conn.Exec(ctx, "UNINSTALL EXTENSION multi"); err != nil {
			t.Fatal(err)
		}
		if exists(t, ctx, conn, "multi_log") || exists(t, ctx, conn, "multi_view") {
			t.Fatal("objects left after uninstall")
		}
		// A chained install straight to the default version runs 1.0, 1.0--1.1, 1.1--2.0.
		if _, err := conn.Exec(ctx, "INSTALL EXTENSION multi"); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT multi_version()").Scan(&v); err != nil || v != "2.0" {
			t.Fatalf("chained install: %q %v", v, err)
		}
		_, err := conn.Exec(ctx, "INSTALL EXTENSION multi VERSION '1.1'")
		wantCode(t, err, "22023") // no downgrade path
		// ALTER EXTENSION ... UPDATE works on packages pgverbs manages.
		if _, err := conn.Exec(ctx, "UNINSTALL EXTENSION multi; INSTALL EXTENSION multi VERSION '1.0'", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "ALTER EXTENSION multi UPDATE TO '1.1'"); err != nil {
			t.Fatalf("ALTER EXTENSION UPDATE TO: %v", err)
		}
		if err := conn.QueryRow(ctx, "SELECT multi_version() || ' ' || multi_new_in_11()").Scan(&v); err != nil || v != "1.1 11" {
			t.Fatalf("after ALTER EXTENSION UPDATE TO '1.1': %q %v", v, err)
		}
		if _, err := conn.Exec(ctx, "ALTER EXTENSION multi UPDATE"); err != nil {
			t.Fatalf("ALTER EXTENSION UPDATE: %v", err)
		}
		if err := conn.QueryRow(ctx, "SELECT multi_version()").Scan(&v); err != nil || v != "2.0" {
			t.Fatalf("after ALTER EXTENSION UPDATE: %q %v", v, err)
		}
	})

	t.Run("upgrade rechecks dependents' constraints", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "pinned"))
		if _, err := conn.Exec(ctx, "INSTALL EXTENSION multi VERSION '1.0'"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "INSTALL EXTENSION pinmulti"); err != nil {
			t.Fatal(err)
		}
		_, err := conn.Exec(ctx, "ALTER EXTENSION multi UPDATE TO '2.0'")
		e := wantCode(t, err, "22023")
		if !strings.Contains(e.Message, "pinmulti") {
			t.Fatalf("error does not name the dependent: %q", e.Message)
		}
		if _, err := conn.Exec(ctx, "ALTER EXTENSION multi UPDATE TO '1.1'"); err != nil {
			t.Fatalf("an upgrade the constraint allows: %v", err)
		}
	})

	t.Run("C library refused", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "cext"))
		_, err := conn.Exec(ctx, "INSTALL EXTENSION cext")
		e := wantCode(t, err, "0A000")
		if !strings.Contains(e.Message, "shared library") {
			t.Fatalf("message: %q", e.Message)
		}
		if installedNames(t, ctx, conn) != "" {
			t.Fatal("refused install left a catalog row")
		}
	})

	t.Run("server-native hstore", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "hstore"))
		if _, err := conn.Exec(ctx, "INSTALL EXTENSION hstore"); err != nil {
			t.Fatalf("install hstore through the server: %v", err)
		}
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT 'a=>1'::hstore ? 'a'").Scan(&ok); err != nil || !ok {
			t.Fatalf("hstore unusable: %v", err)
		}
		_, err := conn.Exec(ctx, "INSTALL EXTENSION hstore")
		wantCode(t, err, "42710")
		// ALTER EXTENSION on a server extension goes to the server untouched.
		if _, err := conn.Exec(ctx, "ALTER EXTENSION hstore UPDATE"); err != nil {
			t.Fatalf("ALTER EXTENSION on a server extension: %v", err)
		}
		_, err = conn.Exec(ctx, "ALTER EXTENSION hstore UPDATE TO '0.1'")
		wantCode(t, err, "22023") // the server's own error
		if _, err := conn.Exec(ctx, "UNINSTALL EXTENSION hstore"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_extension WHERE extname = 'hstore'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("hstore still installed: %d %v", n, err)
		}
		// A package that depends on a server extension: CASCADE creates it.
		_, err = conn.Exec(ctx, "INSTALL EXTENSION usehstore")
		wantCode(t, err, "42704")
		if _, err := conn.Exec(ctx, "INSTALL EXTENSION usehstore CASCADE"); err != nil {
			t.Fatalf("cascade to a server extension: %v", err)
		}
		var s string
		if err := conn.QueryRow(ctx, "SELECT usehstore_get('k=>v', 'k')").Scan(&s); err != nil || s != "v" {
			t.Fatalf("usehstore_get: %q %v", s, err)
		}
		// One view lists both kinds, for \dx-like listings with plain SQL.
		if err := conn.QueryRow(ctx, "SELECT string_agg(name || ':' || source, ',' ORDER BY name) FROM pgverbs.all_extensions").Scan(&s); err != nil ||
			s != "hstore:server,plpgsql:server,usehstore:pgverbs" {
			t.Fatalf("pgverbs.all_extensions: %q %v", s, err)
		}
		_, err = conn.Exec(ctx, "UNINSTALL EXTENSION hstore")
		wantCode(t, err, "2BP01")
		if _, err := conn.Exec(ctx, "UNINSTALL EXTENSION hstore CASCADE"); err != nil {
			t.Fatal(err)
		}
		if installedNames(t, ctx, conn) != "" {
			t.Fatal("cascade did not uninstall the dependent package")
		}
	})
}

// pgtapDir returns a directory holding Debian's pgTAP extension files for
// the server's major version, from a pre-fetched .deb (PGVERBS_PGTAP_DEB or
// PGVERBS_EXTENSION_DEBS) or apt-get download; see extensionDebs.
func pgtapDir(t *testing.T, major string) string {
	t.Helper()
	dir := extensionDebs(t, major, "postgresql-"+major+"-pgtap")
	if _, err := os.Stat(filepath.Join(dir, "pgtap.control")); err != nil {
		t.Fatalf("no pgtap.control in the package: %v", err)
	}
	return dir
}

// TestPgTAP installs the real, unmodified pgTAP from Debian's package onto
// a server that does not have it, through the proxy, runs a pgTAP test plan,
// and uninstalls it leaving nothing behind.
func TestPgTAP(t *testing.T) {
	c := cluster(t, pgtestOptions())
	dir := pgtapDir(t, serverMajor(t))
	p := startProxy(t, c.URL("", "", "postgres"), "--extensions", dir)
	ctx := testCtx(t)
	conn := connect(t, p.URL("postgres", "", "postgres"))
	var avail int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgtap'").Scan(&avail); err != nil || avail != 0 {
		t.Fatalf("the server must not have pgTAP itself: %d %v", avail, err)
	}
	if _, err := conn.Exec(ctx, "INSTALL EXTENSION pgtap"); err != nil {
		t.Fatalf("INSTALL EXTENSION pgtap: %v", err)
	}
	rows, err := conn.Query(ctx, `SELECT * FROM (
		SELECT plan(4) UNION ALL
		SELECT ok(true, 'truth') UNION ALL
		SELECT is(1 + 1, 2, 'arithmetic') UNION ALL
		SELECT has_table('pgverbs', 'extensions', 'catalog table exists') UNION ALL
		SELECT has_function('ok', ARRAY['boolean', 'text'], 'pgTAP function ok exists') UNION ALL
		SELECT * FROM finish()) t`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var tap []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		tap = append(tap, line)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	got := strings.Join(tap, "\n")
	for _, want := range []string{"1..4", "ok 1 - truth", "ok 2 - arithmetic", "ok 3 - catalog table exists", "ok 4 - pgTAP function ok exists"} {
		if !strings.Contains(got, want) {
			t.Fatalf("pgTAP output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "not ok") {
		t.Fatalf("pgTAP test failed:\n%s", got)
	}
	var nobj int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgverbs.extension_objects WHERE extension = 'pgtap'").Scan(&nobj); err != nil || nobj < 500 {
		t.Fatalf("pgTAP recorded objects: %d %v", nobj, err)
	}
	if _, err := conn.Exec(ctx, "UNINSTALL EXTENSION pgtap"); err != nil {
		t.Fatalf("UNINSTALL EXTENSION pgtap: %v", err)
	}
	var left int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace").Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d pgTAP functions left after uninstall (%v)", left, err)
	}
}

func pgtestOptions() pgtest.Options { return pgtest.Options{} }
