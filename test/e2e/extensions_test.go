package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// extSetup starts a cluster and a proxy serving the test packages.
func extSetup(t *testing.T) (*pgtest.Cluster, *proxyProc) {
	t.Helper()
	dir, err := filepath.Abs("testdata/extensions")
	if err != nil {
		t.Fatal(err)
	}
	return trustSetup(t, pgtest.Options{}, "--extensions", dir)
}

// freshDB creates a database for one subtest, so subtests do not see each
// other's installs, and returns a URL to it through the proxy.
func freshDB(t *testing.T, c *pgtest.Cluster, p *proxyProc, name string) string {
	t.Helper()
	if err := c.Exec(testCtx(t), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	return p.URL("postgres", "", name)
}

func pgErr(err error) *pgconn.PgError {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e
	}
	return nil
}

func wantCode(t *testing.T, err error, code string) *pgconn.PgError {
	t.Helper()
	e := pgErr(err)
	if e == nil || e.Code != code {
		t.Fatalf("got %v, want SQLSTATE %s", err, code)
	}
	return e
}

func installedNames(t *testing.T, ctx context.Context, conn *pgx.Conn) string {
	t.Helper()
	var s string
	err := conn.QueryRow(ctx, `SELECT coalesce(string_agg(name || ' ' || version, ',' ORDER BY name), '')
		FROM pgverbs.extensions`).Scan(&s)
	if err != nil {
		if e := pgErr(err); e != nil && e.Code == "42P01" {
			return ""
		}
		t.Fatal(err)
	}
	return s
}

func exists(t *testing.T, ctx context.Context, conn *pgx.Conn, regclass string) bool {
	t.Helper()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", regclass).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestInstallWithPsql is the tour: the bundled example package installed and
// used from psql, then uninstalled.
func TestInstallWithPsql(t *testing.T) {
	c := cluster(t, pgtest.Options{})
	dir, _ := filepath.Abs("../../examples/extensions")
	p := startProxy(t, c.URL("", "", "postgres"), "--extensions", dir)
	url := p.URL("postgres", "", "postgres")
	out, err := psql(t, c, url, "-c", "INSTALL EXTENSION hello;", "-Atc", "SELECT hello('world')")
	if err != nil || !strings.Contains(out, "INSTALL EXTENSION") || !strings.Contains(out, "hello, world!") {
		t.Fatalf("psql install: %v\n%s", err, out)
	}
	out, err = psql(t, c, url, "-Atc", "SELECT name, version, schema, installed_by FROM pgverbs.extensions")
	if err != nil || strings.TrimSpace(out) != "hello|1.0|public|postgres" {
		t.Fatalf("catalog: %v %q", err, out)
	}
	out, err = psql(t, c, url, "-c", "uninstall extension hello")
	if err != nil || !strings.Contains(out, "UNINSTALL EXTENSION") {
		t.Fatalf("psql uninstall: %v\n%s", err, out)
	}
	out, _ = psql(t, c, url, "-Atc", "SELECT count(*) FROM pg_proc WHERE proname = 'hello'")
	if strings.TrimSpace(out) != "0" {
		t.Fatalf("function left after uninstall: %s", out)
	}
	// Syntax errors come back like PostgreSQL's, with the position.
	out, err = psql(t, c, url, "-c", "INSTALL EXTENSION hello bogus")
	if err == nil || !strings.Contains(out, `syntax error at or near "bogus"`) || !strings.Contains(out, "LINE 1: INSTALL EXTENSION hello bogus") {
		t.Fatalf("syntax error: %v\n%s", err, out)
	}
}

func TestInstallSemantics(t *testing.T) {
	c, p := extSetup(t)
	ctx := testCtx(t)

	t.Run("dependencies", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "deps"))
		_, err := conn.Exec(ctx, "INSTALL EXTENSION foo")
		e := wantCode(t, err, "42704")
		if !strings.Contains(e.Message, `required extension "bar" is not installed`) || !strings.Contains(e.Hint, "CASCADE") {
			t.Fatalf("missing dependency error: %+v", e)
		}
		var notices []string
		conn.PgConn().Close(ctx)
		cfg, _ := pgconn.ParseConfig(conn.Config().ConnString())
		cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
		pc, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close(ctx)
		res := pc.ExecParams(ctx, "INSTALL EXTENSION foo CASCADE", nil, nil, nil, nil).Read()
		if res.Err != nil || res.CommandTag.String() != "INSTALL EXTENSION" {
			t.Fatalf("cascade install: %v %q", res.Err, res.CommandTag)
		}
		if strings.Join(notices, "|") != `installing required extension "baz"|installing required extension "bar"` {
			t.Fatalf("notices: %q", notices)
		}
		conn2 := connect(t, conn.Config().ConnString())
		if got := installedNames(t, ctx, conn2); got != "bar 1.2,baz 1.0,foo 1.0" {
			t.Fatalf("installed: %s", got)
		}
		var answer int
		if err := conn2.QueryRow(ctx, "SELECT foo_answer()").Scan(&answer); err != nil || answer != 42 {
			t.Fatalf("foo_answer: %d %v", answer, err)
		}
		// foo.conf was applied to the database.
		var greeting string
		if err := conn2.QueryRow(ctx, "SELECT current_setting('foo.greeting')").Scan(&greeting); err != nil || greeting != "hello from foo.conf" {
			t.Fatalf("foo.conf setting in a new session: %q %v", greeting, err)
		}
		// Already installed, with and without IF NOT EXISTS.
		_, err = conn2.Exec(ctx, "INSTALL EXTENSION foo")
		wantCode(t, err, "42710")
		if _, err := conn2.Exec(ctx, "INSTALL EXTENSION IF NOT EXISTS foo"); err != nil {
			t.Fatalf("IF NOT EXISTS: %v", err)
		}
		// Conflicts: bla < 0.8 conflicts with foo.
		_, err = conn2.Exec(ctx, "INSTALL EXTENSION bla")
		if e := wantCode(t, err, "55000"); !strings.Contains(e.Message, "conflicts with") {
			t.Fatalf("conflict error: %+v", e)
		}
		// Version constraint against an installed dependency.
		_, err = conn2.Exec(ctx, "INSTALL EXTENSION newbar")
		if e := wantCode(t, err, "22023"); !strings.Contains(e.Message, `required extension "bar" version 1.2 does not satisfy`) {
			t.Fatalf("version constraint error: %+v", e)
		}
		if got := installedNames(t, ctx, conn2); got != "bar 1.2,baz 1.0,foo 1.0" {
			t.Fatalf("refused installs changed what is installed: %s", got)
		}
		// RESTRICT refuses while dependents exist; CASCADE removes them.
		_, err = conn2.Exec(ctx, "UNINSTALL EXTENSION baz")
		e = wantCode(t, err, "2BP01")
		if !strings.Contains(e.Detail, `extension "foo" depends on extension "baz"`) {
			t.Fatalf("2BP01 detail: %q", e.Detail)
		}
		if _, err := conn2.Exec(ctx, "UNINSTALL EXTENSION baz CASCADE"); err != nil {
			t.Fatalf("uninstall cascade: %v", err)
		}
		if got := installedNames(t, ctx, conn2); got != "" {
			t.Fatalf("after cascade uninstall: %s", got)
		}
		if exists(t, ctx, conn2, "foo_items") || exists(t, ctx, conn2, "baz_data") {
			t.Fatal("objects left after uninstall")
		}
		var n int
		if err := conn2.QueryRow(ctx, "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()").Scan(&n); err != nil || n != 0 {
			t.Fatalf("database settings left after uninstall: %d %v", n, err)
		}
		_, err = conn2.Exec(ctx, "UNINSTALL EXTENSION foo")
		wantCode(t, err, "42704")
		if _, err := conn2.Exec(ctx, "UNINSTALL EXTENSION IF EXISTS foo"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unknown package", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "unknown"))
		_, err := conn.Exec(ctx, "INSTALL EXTENSION fooo")
		e := wantCode(t, err, "42704")
		if !strings.Contains(e.Hint, "foo") {
			t.Fatalf("no close names in hint: %+v", e)
		}
		_, err = conn.Exec(ctx, `INSTALL EXTENSION "../etc"`)
		if e := wantCode(t, err, "22023"); !strings.Contains(e.Message, "invalid extension name") {
			t.Fatalf("path-like package name: %+v", e)
		}
	})

	t.Run("failing script leaves nothing", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "broken"))
		_, err := conn.Exec(ctx, "INSTALL EXTENSION broken")
		if e := wantCode(t, err, "42883"); !strings.Contains(e.Where, "extension script broken/install.sql, line 3") {
			t.Fatalf("error context %q does not name the script line", e.Where)
		}
		if exists(t, ctx, conn, "broken_first_half") || installedNames(t, ctx, conn) != "" {
			t.Fatal("half of a failed install is left")
		}
		_, err = conn.Exec(ctx, "INSTALL EXTENSION txctl")
		if e := wantCode(t, err, "0A000"); !strings.Contains(e.Message, "COMMIT") {
			t.Fatalf("script with COMMIT: %+v", e)
		}
		if exists(t, ctx, conn, "txctl_t") || installedNames(t, ctx, conn) != "" {
			t.Fatal("a script refused for its COMMIT left something behind")
		}
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("session unusable after failed install: %v", err)
		}
	})

	t.Run("transactions", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "tx"))
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSTALL EXTENSION baz"); err != nil {
			t.Fatal(err)
		}
		if conn.PgConn().TxStatus() != 'T' {
			t.Fatalf("status after install in tx: %c", conn.PgConn().TxStatus())
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if installedNames(t, ctx, conn) != "" || exists(t, ctx, conn, "baz_data") {
			t.Fatal("ROLLBACK did not undo the install")
		}
		tx, _ = conn.Begin(ctx)
		_, err = tx.Exec(ctx, "SELECT 1/0")
		wantCode(t, err, "22012")
		_, err = tx.Exec(ctx, "INSTALL EXTENSION baz")
		wantCode(t, err, "25P02")
		if conn.PgConn().TxStatus() != 'E' {
			t.Fatalf("status: %c", conn.PgConn().TxStatus())
		}
		tx.Rollback(ctx)
		tx, _ = conn.Begin(ctx)
		if _, err := tx.Exec(ctx, "INSTALL EXTENSION baz"); err != nil {
			t.Fatal(err)
		}
		_, err = tx.Exec(ctx, "INSTALL EXTENSION nosuchthing")
		wantCode(t, err, "42704")
		if conn.PgConn().TxStatus() != 'E' {
			t.Fatalf("a failed command inside a transaction must fail it: status %c", conn.PgConn().TxStatus())
		}
		tx.Rollback(ctx)
		tx, _ = conn.Begin(ctx)
		tx.Exec(ctx, "INSTALL EXTENSION baz")
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if installedNames(t, ctx, conn) != "baz 1.0" {
			t.Fatal("COMMIT did not keep the install")
		}
	})

	t.Run("multi-statement query", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "multi"))
		pc := conn.PgConn()
		results, err := pc.Exec(ctx, "CREATE TABLE a(); INSTALL EXTENSION baz; SELECT 7 AS seven").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		var tags []string
		for _, r := range results {
			tags = append(tags, r.CommandTag.String())
		}
		if strings.Join(tags, ",") != "CREATE TABLE,INSTALL EXTENSION,SELECT 1" || string(results[2].Rows[0][0]) != "7" {
			t.Fatalf("results: %v", tags)
		}
		_, err = pc.Exec(ctx, "CREATE TABLE b(); INSTALL EXTENSION bar; SELECT 1/0").ReadAll()
		wantCode(t, err, "22012")
		if exists(t, ctx, conn, "b") || strings.Contains(installedNames(t, ctx, conn), "bar") {
			t.Fatal("a failing multi-statement query left work behind")
		}
		_, err = pc.Exec(ctx, "CREATE TABLE c(); INSTALL EXTENSION nosuch; SELECT 1").ReadAll()
		wantCode(t, err, "42704")
		if exists(t, ctx, conn, "c") {
			t.Fatal("statement before a failed command was not rolled back")
		}
		if pc.TxStatus() != 'I' {
			t.Fatalf("status %c", pc.TxStatus())
		}
		// Text that merely contains the words reaches PostgreSQL untouched.
		var s string
		if err := conn.QueryRow(ctx, "SELECT 'INSTALL EXTENSION x'", pgx.QueryExecModeSimpleProtocol).Scan(&s); err != nil || s != "INSTALL EXTENSION x" {
			t.Fatalf("literal: %q %v", s, err)
		}
		if _, err := pc.Exec(ctx, `CREATE TABLE install(extension int); SELECT extension FROM install; DO $$ BEGIN PERFORM 'INSTALL EXTENSION x'; END $$`).ReadAll(); err != nil {
			t.Fatalf("ordinary SQL with the keywords: %v", err)
		}
	})

	t.Run("extended protocol, every pgx mode", func(t *testing.T) {
		modes := []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
			pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol}
		for i, mode := range modes {
			conn := connect(t, freshDB(t, c, p, fmt.Sprintf("mode%d", i)))
			for round := 0; round < 2; round++ {
				tag, err := conn.Exec(ctx, "INSTALL EXTENSION baz", mode)
				if err != nil || tag.String() != "INSTALL EXTENSION" {
					t.Fatalf("%v round %d: install: %q %v", mode, round, tag, err)
				}
				_, err = conn.Exec(ctx, "INSTALL EXTENSION baz", mode)
				wantCode(t, err, "42710")
				if conn.PgConn().TxStatus() != 'I' {
					t.Fatalf("%v: status %c", mode, conn.PgConn().TxStatus())
				}
				tag, err = conn.Exec(ctx, "UNINSTALL EXTENSION baz", mode)
				if err != nil || tag.String() != "UNINSTALL EXTENSION" {
					t.Fatalf("%v: uninstall: %q %v", mode, tag, err)
				}
			}
			var n int
			if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgverbs.extensions", mode).Scan(&n); err != nil || n != 0 {
				t.Fatalf("%v: %d %v", mode, n, err)
			}
		}
	})

	t.Run("pipeline", func(t *testing.T) {
		conn := connect(t, freshDB(t, c, p, "pipe"))
		pc := conn.PgConn()
		pl := pc.StartPipeline(ctx)
		pl.SendQueryParams("CREATE TABLE p1()", nil, nil, nil, nil)
		pl.SendQueryParams("INSTALL EXTENSION baz", nil, nil, nil, nil)
		pl.SendQueryParams("SELECT count(*) FROM baz_data", nil, nil, nil, nil)
		pl.Sync()
		pl.SendQueryParams("CREATE TABLE p2()", nil, nil, nil, nil)
		pl.SendQueryParams("INSTALL EXTENSION nosuch", nil, nil, nil, nil)
		pl.SendQueryParams("CREATE TABLE p3()", nil, nil, nil, nil)
		pl.Sync()
		pl.SendQueryParams("SELECT 1", nil, nil, nil, nil)
		pl.Sync()
		var got []string
		for {
			res, err := pl.GetResults()
			if e := pgErr(err); e != nil {
				got = append(got, "error "+e.Code)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if res == nil {
				break
			}
			switch r := res.(type) {
			case *pgconn.ResultReader:
				tag, err := r.Close()
				if e := pgErr(err); e != nil {
					got = append(got, "error "+e.Code)
				} else if err != nil {
					t.Fatal(err)
				} else {
					got = append(got, tag.String())
				}
			case *pgconn.PipelineSync:
				got = append(got, "sync")
			}
		}
		pl.Close()
		want := "CREATE TABLE,INSTALL EXTENSION,SELECT 1,sync,CREATE TABLE,error 42704,sync,SELECT 1,sync"
		if strings.Join(got, ",") != want {
			t.Fatalf("pipeline\n got %s\nwant %s", strings.Join(got, ","), want)
		}
		if !exists(t, ctx, conn, "p1") || exists(t, ctx, conn, "p2") || exists(t, ctx, conn, "p3") {
			t.Fatal("pipeline transaction boundaries wrong")
		}
	})

	t.Run("concurrent installs", func(t *testing.T) {
		url := freshDB(t, c, p, "concurrent")
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok, dup := 0, 0
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := pgx.Connect(ctx, url)
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close(ctx)
				_, err = conn.Exec(ctx, "INSTALL EXTENSION slow")
				mu.Lock()
				defer mu.Unlock()
				switch e := pgErr(err); {
				case err == nil:
					ok++
				case e != nil && e.Code == "42710":
					dup++
				default:
					t.Errorf("concurrent install: %v", err)
				}
			}()
		}
		wg.Wait()
		if ok != 1 || dup != 19 {
			t.Fatalf("%d succeeded, %d already existed; want 1 and 19", ok, dup)
		}
	})
}

// TestTrackedObjects: a package without uninstall.sql is uninstalled by
// dropping exactly the objects its install script created, and a user
// table that depends on one of them blocks UNINSTALL unless CASCADE.
func TestTrackedObjects(t *testing.T) {
	c, p := extSetup(t)
	ctx := testCtx(t)
	conn := connect(t, freshDB(t, c, p, "tracked"))
	countObjects := func() int {
		var n int
		if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_class WHERE relnamespace >= 16384 OR oid >= 16384)
			+ (SELECT count(*) FROM pg_proc WHERE oid >= 16384) + (SELECT count(*) FROM pg_type WHERE oid >= 16384)
			+ (SELECT count(*) FROM pg_namespace WHERE oid >= 16384) + (SELECT count(*) FROM pg_operator WHERE oid >= 16384)
			+ (SELECT count(*) FROM pg_cast WHERE oid >= 16384) + (SELECT count(*) FROM pg_ts_config WHERE oid >= 16384)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Create the catalog first so that it is not counted.
	if _, err := conn.Exec(ctx, "INSTALL EXTENSION baz; UNINSTALL EXTENSION baz", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	base := countObjects()
	if _, err := conn.Exec(ctx, "INSTALL EXTENSION noscript"); err != nil {
		t.Fatal(err)
	}
	var types string
	if err := conn.QueryRow(ctx, `SELECT string_agg(DISTINCT type, ',' ORDER BY type) FROM pgverbs.extension_objects WHERE extension = 'noscript'`).Scan(&types); err != nil {
		t.Fatal(err)
	}
	want := "aggregate,cast,function,operator,schema,sequence,table,text search configuration,type,view"
	if types != want {
		t.Fatalf("recorded object types %q, want %q", types, want)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT ns_add(2, 3) + ns_extra.pair_sum((1,2)) + (SELECT ns_total(x) FROM generate_series(1,3) x)").Scan(&n); err != nil || n != 14 {
		t.Fatalf("extension objects unusable: %d %v", n, err)
	}
	// A user table using the extension's type blocks uninstall.
	if _, err := conn.Exec(ctx, "CREATE TABLE user_data(m mood)"); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, "UNINSTALL EXTENSION noscript")
	e := wantCode(t, err, "2BP01")
	if !strings.Contains(e.Detail, "user_data") {
		t.Fatalf("2BP01 detail does not name the dependent table: %+v", e)
	}
	if !exists(t, ctx, conn, "ns_log") || !exists(t, ctx, conn, "user_data") {
		t.Fatal("a refused uninstall changed something")
	}
	if _, err := conn.Exec(ctx, "DROP TABLE user_data"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "UNINSTALL EXTENSION noscript"); err != nil {
		t.Fatalf("uninstall without script: %v", err)
	}
	if got := countObjects(); got != base {
		t.Fatalf("%d objects after uninstall, %d before install: something was left behind", got, base)
	}
	var rows int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pgverbs.extension_objects").Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("extension_objects rows left: %d %v", rows, err)
	}
	// CASCADE drops the dependent user table too, as DROP EXTENSION CASCADE does.
	if _, err := conn.Exec(ctx, "INSTALL EXTENSION noscript"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE user_data(m mood)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "UNINSTALL EXTENSION noscript CASCADE"); err != nil {
		t.Fatalf("uninstall cascade: %v", err)
	}
	// The column of type mood is dropped, not the table: PostgreSQL's
	// behaviour for DROP TYPE ... CASCADE.
	if !exists(t, ctx, conn, "user_data") {
		t.Fatal("UNINSTALL CASCADE dropped the user's table; PostgreSQL drops only its column of the extension's type")
	}
	var cols int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'user_data'::regclass AND attnum > 0 AND NOT attisdropped").Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if cols != 0 {
		t.Fatalf("user_data still has %d columns of the dropped type", cols)
	}
}
