package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Real client stacks against INSTALL/UNINSTALL EXTENSION: the PostgreSQL
// JDBC driver, GORM and goose. Each speaks the protocol its own way (named
// statements, BEGIN in the same Sync as the first statement, batches,
// savepoints, migrations in transactions), which pgx-only tests do not show.

// jdbcJar is where Debian's libpostgresql-jdbc-java puts the driver;
// PGVERBS_JDBC_JAR overrides it.
const jdbcJar = "/usr/share/java/postgresql.jar"

// needJDBC returns the java binary and the JDBC driver jar. Without them the
// test is skipped, or fails under PGTEST_REQUIRE=1 (CI, whose .ci/run
// installs default-jre-headless and libpostgresql-jdbc-java).
func needJDBC(t *testing.T) (java, jar string) {
	t.Helper()
	jar = os.Getenv("PGVERBS_JDBC_JAR")
	if jar == "" {
		jar = jdbcJar
	}
	var missing []string
	java, err := exec.LookPath("java")
	if err != nil {
		missing = append(missing, "java (Debian: default-jre-headless)")
	}
	if _, err := os.Stat(jar); err != nil {
		missing = append(missing, "the PostgreSQL JDBC driver "+jar+" (Debian: libpostgresql-jdbc-java; or set PGVERBS_JDBC_JAR)")
	}
	if len(missing) > 0 {
		msg := "JDBC test needs " + strings.Join(missing, " and ")
		if os.Getenv("PGTEST_REQUIRE") == "1" {
			t.Fatalf("PGTEST_REQUIRE=1 but %s", msg)
		}
		t.Skipf("skipping: %s (PGTEST_REQUIRE=1 turns this into a failure)", msg)
	}
	return java, jar
}

// runJDBC runs testdata/jdbc/ExtTest.java's section against db through the
// proxy and returns its transcript.
func runJDBC(t *testing.T, java, jar string, p *proxyProc, db, params, section string) string {
	t.Helper()
	// socketTimeout turns a proxy that stops answering into an error rather
	// than a hung test.
	url := "jdbc:postgresql://" + p.Addr() + "/" + db + "?user=postgres&sslmode=disable&connectTimeout=10&socketTimeout=15&" + params
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, java, "-cp", jar, "testdata/jdbc/ExtTest.java", url, section)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("java ExtTest %s %s: %v\n%s", params, section, err, out)
	}
	return string(out)
}

// compareTranscript fails t at the first line where got differs from want.
func compareTranscript(t *testing.T, got, want string) {
	t.Helper()
	g := strings.Split(strings.TrimRight(got, "\n"), "\n")
	w := strings.Split(strings.TrimSpace(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = strings.TrimSpace(w[i])
		}
		if gl != wl {
			t.Fatalf("transcript differs at line %d:\n got: %s\nwant: %s\n\nfull transcript:\n%s", i+1, gl, wl, got)
		}
	}
}

// jdbcMain is the transcript of ExtTest's main section with the extended
// protocol (the driver's default).
const jdbcMain = `
== statement
install baz: execute=false updateCount=0 more=false/-1 warnings=
baz_data rows: 1
install baz again: error 42710 extension "baz" already exists
select after error: 1
installed: baz 1.0
== prepared
uninstall baz: execute=false updateCount=0 more=false/-1 warnings=
installed: none
metadata: params=0 columns=null
prepared install 1: executeUpdate=0 warnings=
baz_data rows: 1
prepared install 2: executeUpdate=0 warnings=extension "baz" already exists, skipping
baz_data rows: 1
prepared install 3: executeUpdate=0 warnings=extension "baz" already exists, skipping
baz_data rows: 1
prepared duplicate 1: error 42710 extension "baz" already exists
prepared duplicate 2: error 42710 extension "baz" already exists
installed: baz 1.0
== transactions
uninstall baz: execute=false updateCount=0 more=false/-1 warnings=
install in tx: execute=false updateCount=0 more=false/-1 warnings=
installed in tx: baz 1.0
after rollback: installed=none baz_data=f
install in tx: execute=false updateCount=0 more=false/-1 warnings=
after commit: installed=baz 1.0 baz_data=t
duplicate in tx: error 42710 extension "baz" already exists
select in failed tx: error 25P02 current transaction is aborted, commands ignored until end of transaction block
select after rollback: 1
installed: baz 1.0
== batch, autocommit on
batch: counts=[0, 0, 2] warnings=
installed: bar 1.2,baz 1.0
bar_version: 1.2
j1: 1,2
prepared batch: counts=[0, 0, 0]
installed: bar 1.2,baz 1.0
== batch, autocommit off
uninstall bar: execute=false updateCount=0 more=false/-1 warnings=
batch: counts=[0, 0, 1] warnings=
installed in tx: bar 1.2,baz 1.0
after rollback: installed=baz 1.0 j2=f
batch: counts=[0, 0, 1] warnings=
after commit: installed=bar 1.2,baz 1.0 j2=3
== batch errors
autocommit on: BatchUpdateException state=42704 counts=[-3, -3] next=42704 extension "nosuch" is not available
after: j3=f installed=bar 1.2,baz 1.0
control: BatchUpdateException state=42P01 counts=[-3, -3] next=42P01 table "nosuch_t" does not exist
after: k3=f
autocommit off: BatchUpdateException state=42704 counts=[-3, -3] next=42704 extension "nosuch" is not available
select in failed tx: error 25P02 current transaction is aborted, commands ignored until end of transaction block
after rollback: select=1 j4=f installed=bar 1.2,baz 1.0
batch after rollback: counts=[0, 0] warnings=extension "bar" already exists, skipping
after commit: j5=t installed=bar 1.2,baz 1.0
== autosave
create j6: execute=false updateCount=0 more=false/-1 warnings=
uninstall bar: execute=false updateCount=0 more=false/-1 warnings=
install nosuch: error 42704 extension "nosuch" is not available
select after rolled back savepoint: 1
installed in tx: baz 1.0
install bar: execute=false updateCount=0 more=false/-1 warnings=
after commit: j6=t installed=bar 1.2,baz 1.0
== uninstall
uninstall baz: error 2BP01 cannot uninstall extension "baz" because other objects depend on it
uninstall baz cascade: execute=false updateCount=0 more=false/-1 warnings=uninstall cascades to extension "bar"
after: installed=none baz_data=f bar_version=f
uninstall again: error 42704 extension "baz" does not exist
uninstall if exists: execute=false updateCount=0 more=false/-1 warnings=extension "baz" does not exist, skipping
done
`

// jdbcMidBatch is the transcript of ExtTest's midbatch section with the
// extended protocol: the batch is one implicit transaction (or part of the
// explicit one), so nothing of it is left, exactly as with the control
// batch whose failing statement is PostgreSQL's own.
const jdbcMidBatch = `
== failing command mid-batch
autocommit on: BatchUpdateException state=42704 counts=[-3, -3, -3] next=42704 extension "nosuch" is not available
after: m1=f m2=f installed=none
control: BatchUpdateException state=42P01 counts=[-3, -3, -3] next=42P01 table "nosuch_t" does not exist
after: c1=f c2=f
install baz: execute=false updateCount=0 more=false/-1 warnings=
autocommit off: BatchUpdateException state=42704 counts=[-3, -3, -3] next=42704 extension "nosuch" is not available
select in failed tx: error 25P02 current transaction is aborted, commands ignored until end of transaction block
after rollback: select=1 m3=f m4=f
install bar: execute=false updateCount=0 more=false/-1 warnings=
after commit: installed=bar 1.2,baz 1.0
done
`

// simpleModeEdits turns the extended-protocol transcripts into those of
// preferQueryMode=simple, where the driver differs from its default the
// same way against PostgreSQL itself: getParameterMetaData/getMetaData
// execute the statement (so the first prepared execution already finds baz
// installed), and a batch is one Query message per statement, so with
// autocommit on the statements around a failing one run and commit.
var simpleModeEdits = []string{
	"prepared install 1: executeUpdate=0 warnings=\n",
	"prepared install 1: executeUpdate=0 warnings=extension \"baz\" already exists, skipping\n",

	"autocommit on: BatchUpdateException state=42704 counts=[-3, -3] next=42704 extension \"nosuch\" is not available\nafter: j3=f",
	"autocommit on: BatchUpdateException state=42704 counts=[0, -3] next=42704 extension \"nosuch\" is not available\nafter: j3=t",

	"control: BatchUpdateException state=42P01 counts=[-3, -3] next=42P01 table \"nosuch_t\" does not exist\nafter: k3=f",
	"control: BatchUpdateException state=42P01 counts=[0, -3] next=42P01 table \"nosuch_t\" does not exist\nafter: k3=t",

	"autocommit on: BatchUpdateException state=42704 counts=[-3, -3, -3] next=42704 extension \"nosuch\" is not available\nafter: m1=f m2=f",
	"autocommit on: BatchUpdateException state=42704 counts=[0, -3, 0] next=42704 extension \"nosuch\" is not available\nafter: m1=t m2=t",

	"control: BatchUpdateException state=42P01 counts=[-3, -3, -3] next=42P01 table \"nosuch_t\" does not exist\nafter: c1=f c2=f",
	"control: BatchUpdateException state=42P01 counts=[0, -3, 0] next=42P01 table \"nosuch_t\" does not exist\nafter: c1=t c2=t",
}

// TestJDBC runs a Java program through the proxy with the PostgreSQL JDBC
// driver: named server-side statements from the first execution
// (prepareThreshold=1), unnamed ones only (prepareThreshold=0), and the
// simple protocol (preferQueryMode=simple).
func TestJDBC(t *testing.T) {
	java, jar := needJDBC(t)
	c, p := extSetup(t)
	modes := []struct{ name, params string }{
		{"named", "prepareThreshold=1"},
		{"unnamed", "prepareThreshold=0"},
		{"simple", "preferQueryMode=simple"},
	}
	for _, m := range modes {
		simple := strings.Contains(m.params, "simple")
		edit := func(s string) string {
			if simple {
				s = strings.NewReplacer(simpleModeEdits...).Replace(s)
			}
			return s
		}
		t.Run(m.name, func(t *testing.T) {
			db := "jdbc_" + m.name
			freshDB(t, c, p, db)
			compareTranscript(t, runJDBC(t, java, jar, p, db, m.params, "main"), edit(jdbcMain))
		})
		t.Run(m.name+"-midbatch", func(t *testing.T) {
			db := "jdbc_" + m.name + "_mid"
			freshDB(t, c, p, db)
			compareTranscript(t, runJDBC(t, java, jar, p, db, m.params, "midbatch"), edit(jdbcMidBatch))
		})
	}
}

// FooItem is a row of foo_items, the table the foo package creates.
type FooItem struct {
	ID   int
	Note string
}

func (FooItem) TableName() string { return "foo_items" }

// TestGORM installs a package through GORM and uses what it created through
// the ORM. gorm.DB.Exec without arguments goes out as a simple Query
// (pgx's rule), with PrepareStmt as a named prepared statement; models
// with arguments use pgx's cached statements, or the simple protocol with
// PreferSimpleProtocol.
func TestGORM(t *testing.T) {
	c, p := extSetup(t)
	modes := []struct {
		name           string
		simple, prepSt bool
	}{
		{"default", false, false},
		{"simple protocol", true, false},
		{"prepared statements", false, true},
	}
	for i, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			url := freshDB(t, c, p, "gorm"+itoa(i))
			db, err := gorm.Open(postgres.New(postgres.Config{DSN: url, PreferSimpleProtocol: m.simple}),
				&gorm.Config{Logger: logger.Discard, PrepareStmt: m.prepSt})
			if err != nil {
				t.Fatal(err)
			}
			sqlDB, err := db.DB()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sqlDB.Close() })
			ctx := testCtx(t)
			db = db.WithContext(ctx)
			installed := func() string {
				t.Helper()
				var s string
				if err := db.Raw(`SELECT coalesce(string_agg(name || ' ' || version, ',' ORDER BY name), 'none') FROM pgverbs.extensions`).Scan(&s).Error; err != nil {
					t.Fatal(err)
				}
				return s
			}

			res := db.Exec("INSTALL EXTENSION foo CASCADE")
			if res.Error != nil || res.RowsAffected != 0 {
				t.Fatalf("install: %v (rows %d)", res.Error, res.RowsAffected)
			}
			if got := installed(); got != "bar 1.2,baz 1.0,foo 1.0" {
				t.Fatalf("installed: %s", got)
			}
			wantCode(t, db.Exec("INSTALL EXTENSION foo").Error, "42710")
			if err := db.Exec("INSTALL EXTENSION IF NOT EXISTS foo").Error; err != nil {
				t.Fatalf("IF NOT EXISTS: %v", err)
			}

			// The package's table and function through the ORM.
			first := FooItem{Note: "first"}
			if err := db.Create(&first).Error; err != nil || first.ID != 1 {
				t.Fatalf("create: %v (id %d)", err, first.ID)
			}
			more := []FooItem{{Note: "second"}, {Note: "third"}}
			if err := db.Create(&more).Error; err != nil || more[0].ID != 2 || more[1].ID != 3 {
				t.Fatalf("create batch: %v %+v", err, more)
			}
			var second FooItem
			if err := db.Where("note = ?", "second").First(&second).Error; err != nil || second.ID != 2 {
				t.Fatalf("first: %v %+v", err, second)
			}
			if err := db.Model(&second).Update("note", "2nd").Error; err != nil {
				t.Fatal(err)
			}
			var items []FooItem
			if err := db.Order("id").Find(&items).Error; err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(items) != "[{1 first} {2 2nd} {3 third}]" {
				t.Fatalf("find: %v", items)
			}
			var n int
			if err := db.Raw("SELECT foo_answer()").Scan(&n).Error; err != nil || n != 42 {
				t.Fatalf("foo_answer: %d %v", n, err)
			}

			// A GORM transaction that uninstalls and rolls back keeps
			// everything; one that reinstalls and commits starts afresh.
			errRollback := errors.New("roll back")
			err = db.Transaction(func(tx *gorm.DB) error {
				if err := tx.Exec("UNINSTALL EXTENSION foo").Error; err != nil {
					return err
				}
				if tx.Migrator().HasTable("foo_items") {
					return errors.New("foo_items still there after UNINSTALL in the transaction")
				}
				return errRollback
			})
			if err != errRollback {
				t.Fatalf("transaction: %v", err)
			}
			var count int64
			if err := db.Model(&FooItem{}).Count(&count).Error; err != nil || count != 3 || installed() != "bar 1.2,baz 1.0,foo 1.0" {
				t.Fatalf("after rolled back uninstall: count %d %v, installed %s", count, err, installed())
			}
			err = db.Transaction(func(tx *gorm.DB) error {
				if err := tx.Exec("UNINSTALL EXTENSION foo").Error; err != nil {
					return err
				}
				if err := tx.Exec("INSTALL EXTENSION foo").Error; err != nil {
					return err
				}
				return tx.Create(&FooItem{Note: "fresh"}).Error
			})
			if err != nil {
				t.Fatalf("reinstall transaction: %v", err)
			}
			items = nil
			if err := db.Order("id").Find(&items).Error; err != nil || fmt.Sprint(items) != "[{1 fresh}]" {
				t.Fatalf("after reinstall: %v %v", items, err)
			}

			if err := db.Exec("UNINSTALL EXTENSION foo").Error; err != nil {
				t.Fatalf("uninstall: %v", err)
			}
			if got := installed(); got != "bar 1.2,baz 1.0" {
				t.Fatalf("installed after uninstall: %s", got)
			}
			if db.Migrator().HasTable("foo_items") {
				t.Fatal("foo_items left after uninstall")
			}
			wantCode(t, db.Raw("SELECT foo_answer()").Scan(&n).Error, "42883")
		})
	}
}

// TestGooseMigration runs goose, over database/sql and pgx, with migrations
// that install, use and uninstall a package. goose runs each migration in a
// transaction, so a failing one must leave nothing behind, its commands'
// work included.
func TestGooseMigration(t *testing.T) {
	c, p := extSetup(t)
	ctx := testCtx(t)
	url := freshDB(t, c, p, "goose")
	sqlDB, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sqlDB.Close() })
	conn := connect(t, url)
	query := func(sql string) string {
		t.Helper()
		var s string
		if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return s
	}
	provider := func(fsys fs.FS) *goose.Provider {
		t.Helper()
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			t.Fatal(err)
		}
		prov, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys,
			goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
		if err != nil {
			t.Fatal(err)
		}
		return prov
	}
	version := func(prov *goose.Provider) int64 {
		t.Helper()
		v, err := prov.GetDBVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	migrations := os.DirFS("testdata/migrations")
	prov := provider(migrations)

	for round := 0; round < 2; round++ {
		results, err := prov.Up(ctx)
		if err != nil {
			t.Fatalf("round %d: up: %v", round, err)
		}
		if len(results) != 2 || version(prov) != 2 {
			t.Fatalf("round %d: applied %d migrations, version %d", round, len(results), version(prov))
		}
		if got := installedNames(t, ctx, conn); got != "baz 1.0" {
			t.Fatalf("round %d: installed after up: %q", round, got)
		}
		if got := query("SELECT string_agg(v::text, ',' ORDER BY v) FROM baz_data"); got != "1,2" {
			t.Fatalf("round %d: baz_data: %s", round, got)
		}
		if got := query("SELECT string_agg(id::text, ',' ORDER BY id) FROM mig_t"); got != "1,2" {
			t.Fatalf("round %d: mig_t: %s", round, got)
		}
		if round == 1 {
			break
		}
		if _, err := prov.DownTo(ctx, 0); err != nil {
			t.Fatalf("down: %v", err)
		}
		if v := version(prov); v != 0 {
			t.Fatalf("version after down: %d", v)
		}
		if got := installedNames(t, ctx, conn); got != "" {
			t.Fatalf("installed after down: %q", got)
		}
		if exists(t, ctx, conn, "baz_data") || exists(t, ctx, conn, "mig_t") {
			t.Fatal("objects left after down")
		}
	}

	// 00003 installs bar, then fails on nosuch: goose rolls it back whole.
	failing, err := fs.Sub(os.DirFS("testdata/migrations"), "failing")
	if err != nil {
		t.Fatal(err)
	}
	all := fstest.MapFS{}
	for _, src := range []struct {
		fsys fs.FS
		name string
	}{{migrations, "00001_init.sql"}, {migrations, "00002_use_baz.sql"}, {failing, "00003_install_missing.sql"}} {
		data, err := fs.ReadFile(src.fsys, src.name)
		if err != nil {
			t.Fatal(err)
		}
		all[src.name] = &fstest.MapFile{Data: data}
	}
	prov3 := provider(all)
	_, err = prov3.Up(ctx)
	var partial *goose.PartialError
	if !errors.As(err, &partial) || partial.Failed == nil || partial.Failed.Source.Version != 3 {
		t.Fatalf("up with a failing migration: %v", err)
	}
	wantCode(t, err, "42704")
	if v := version(prov3); v != 2 {
		t.Fatalf("version after failed migration: %d", v)
	}
	if got := installedNames(t, ctx, conn); got != "baz 1.0" {
		t.Fatalf("installed after failed migration: %q", got)
	}
	if exists(t, ctx, conn, "mig_fail") || query("SELECT string_agg(v::text, ',' ORDER BY v) FROM baz_data") != "1,2" {
		t.Fatal("work of the failed migration left behind")
	}
	// The session goose used is still good for more migrations.
	if _, err := prov.DownTo(ctx, 1); err != nil || version(prov) != 1 {
		t.Fatalf("down to 1 after the failure: %v", err)
	}
}
