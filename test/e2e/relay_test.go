package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// trustSetup starts a trust cluster and a proxy in front of it.
func trustSetup(t *testing.T, opts pgtest.Options, proxyArgs ...string) (*pgtest.Cluster, *proxyProc) {
	t.Helper()
	c := cluster(t, opts)
	return c, startProxy(t, c.URL("", "", "postgres"), proxyArgs...)
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestCopyBothWays(t *testing.T) {
	_, p := trustSetup(t, pgtest.Options{})
	ctx := testCtx(t)
	conn := connect(t, p.URL("postgres", "", "postgres"))
	pc := conn.PgConn()
	if _, err := pc.Exec(ctx, "CREATE TABLE t(id int PRIMARY KEY, v text)").ReadAll(); err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	for i := 0; i < 100000; i++ {
		fmt.Fprintf(&in, "%d\trow %d\n", i, i)
	}
	want := in.String()
	tag, err := pc.CopyFrom(ctx, strings.NewReader(want), "COPY t FROM STDIN")
	if err != nil || tag.RowsAffected() != 100000 {
		t.Fatalf("COPY FROM: %v %v", tag, err)
	}
	var out bytes.Buffer
	if _, err := pc.CopyTo(ctx, &out, "COPY (SELECT * FROM t ORDER BY id) TO STDOUT"); err != nil {
		t.Fatalf("COPY TO: %v", err)
	}
	if out.String() != want {
		t.Fatalf("COPY TO returned %d bytes, want %d identical", out.Len(), len(want))
	}

	// A row that violates the primary key fails the COPY mid-stream; the
	// session must stay usable and nothing of the failed COPY remain.
	bad := "100000\tnew\n5\tduplicate\n100001\tnew\n"
	_, err = pc.CopyFrom(ctx, strings.NewReader(bad), "COPY t FROM STDIN")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("failing COPY: got %v, want 23505", err)
	}
	// A client-side abort (CopyFail) is relayed too.
	_, err = pc.CopyFrom(ctx, io.MultiReader(strings.NewReader("100002\tx\n"), errReader{}), "COPY t FROM STDIN")
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("aborted COPY: got %v, want 57014", err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 100000 {
		t.Fatalf("count after failed COPYs = %d, %v", n, err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("client gave up") }

func TestCopyWithPsql(t *testing.T) {
	c, p := trustSetup(t, pgtest.Options{})
	url := p.URL("postgres", "", "postgres")
	script := "CREATE TABLE items(n int);\n" +
		"COPY items FROM STDIN;\n1\n2\n3\n\\.\n" +
		"SELECT sum(n) FROM items;\n"
	cmd := psqlCmd(t, c, url, "-At", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	b, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(b), "6") {
		t.Fatalf("psql COPY script: %v\n%s", err, b)
	}
	b2, err := psql(t, c, url, "-Atc", `\copy (SELECT n FROM items ORDER BY n) TO STDOUT`)
	if err != nil || strings.TrimSpace(b2) != "1\n2\n3" {
		t.Fatalf(`\copy out: %v %q`, err, b2)
	}
}

func TestListenNotify(t *testing.T) {
	_, p := trustSetup(t, pgtest.Options{})
	ctx := testCtx(t)
	listener := connect(t, p.URL("postgres", "", "postgres"))
	notifier := connect(t, p.URL("postgres", "", "postgres"))
	if _, err := listener.Exec(ctx, "LISTEN chan"); err != nil {
		t.Fatal(err)
	}
	if _, err := notifier.Exec(ctx, "SELECT pg_notify('chan', 'hello')"); err != nil {
		t.Fatal(err)
	}
	// The listener is idle when the notification arrives: the proxy must
	// forward server-initiated messages without waiting for a query.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("wait for notification: %v", err)
	}
	var notifierPID uint32
	if err := notifier.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&notifierPID); err != nil {
		t.Fatal(err)
	}
	if n.Channel != "chan" || n.Payload != "hello" || n.PID != notifierPID {
		t.Fatalf("notification %+v, want chan/hello from %d", n, notifierPID)
	}
	// The pid the client was told is the real backend pid.
	var ownPID uint32
	if err := notifier.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&ownPID); err != nil || ownPID != notifier.PgConn().PID() {
		t.Fatalf("pg_backend_pid %d != BackendKeyData pid %d (%v)", ownPID, notifier.PgConn().PID(), err)
	}
}

// TestPipelineWithError sends a pipeline whose middle statement fails: the
// statements before it commit, those after it up to Sync are skipped, and
// the next Sync's statements run.
func TestPipelineWithError(t *testing.T) {
	_, p := trustSetup(t, pgtest.Options{})
	ctx := testCtx(t)
	conn := connect(t, p.URL("postgres", "", "postgres"))
	if _, err := conn.Exec(ctx, "CREATE TABLE pl(n int)"); err != nil {
		t.Fatal(err)
	}
	pc := conn.PgConn()
	pl := pc.StartPipeline(ctx)
	pl.SendQueryParams("INSERT INTO pl VALUES (1)", nil, nil, nil, nil)
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	pl.SendQueryParams("INSERT INTO pl VALUES (2)", nil, nil, nil, nil)
	pl.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
	pl.SendQueryParams("INSERT INTO pl VALUES (3)", nil, nil, nil, nil)
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	pl.SendQueryParams("INSERT INTO pl VALUES (4)", nil, nil, nil, nil)
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}

	var got []string
	for {
		res, err := pl.GetResults()
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) {
				got = append(got, "error "+pgErr.Code)
				continue
			}
			t.Fatalf("GetResults: %v", err)
		}
		if res == nil {
			break
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			tag, err := r.Close()
			if err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) {
					got = append(got, "error "+pgErr.Code)
					continue
				}
				t.Fatal(err)
			}
			got = append(got, tag.String())
		case *pgconn.PipelineSync:
			got = append(got, "sync")
		}
	}
	if err := pl.Close(); err != nil {
		t.Fatalf("pipeline close: %v", err)
	}
	want := "INSERT 0 1,sync,INSERT 0 1,error 22012,sync,INSERT 0 1,sync"
	if strings.Join(got, ",") != want {
		t.Fatalf("pipeline results\n got %s\nwant %s", strings.Join(got, ","), want)
	}
	var sum int
	if err := conn.QueryRow(ctx, "SELECT coalesce(sum(n),0) FROM pl").Scan(&sum); err != nil || sum != 5 {
		t.Fatalf("sum = %d (%v), want 5: row 2 rolled back with the error, 3 skipped", sum, err)
	}
}

// TestLargeResult streams a 100 MB result through the proxy, once as many
// rows and once as a single 100 MB row.
func TestLargeResult(t *testing.T) {
	_, p := trustSetup(t, pgtest.Options{})
	ctx := testCtx(t)
	conn := connect(t, p.URL("postgres", "", "postgres"))
	var total int64
	rows, err := conn.Query(ctx, "SELECT repeat('x', 1000) FROM generate_series(1, 100000)")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		total += int64(len(s))
	}
	if rows.Err() != nil || total != 100_000_000 {
		t.Fatalf("rows: %d bytes, %v", total, rows.Err())
	}
	var big string
	if err := conn.QueryRow(ctx, "SELECT repeat('y', 100000000)").Scan(&big); err != nil || len(big) != 100_000_000 {
		t.Fatalf("one 100 MB value: len %d, %v", len(big), err)
	}
	// And the other way: a 50 MB parameter.
	var n int
	if err := conn.QueryRow(ctx, "SELECT length($1::text)", strings.Repeat("z", 50_000_000)).Scan(&n); err != nil || n != 50_000_000 {
		t.Fatalf("50 MB parameter: %d, %v", n, err)
	}
}

// TestConcurrentSessions runs 200 sessions at once, each checking it talks
// to its own backend and gets its own results.
func TestConcurrentSessions(t *testing.T) {
	_, p := trustSetup(t, pgtest.Options{})
	ctx := testCtx(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	pids := make(chan uint32, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, p.URL("postgres", "", "postgres"))
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			<-start
			for j := 0; j < 20; j++ {
				var got int
				if err := conn.QueryRow(ctx, "SELECT $1::int * 1000 + $2::int", i, j).Scan(&got); err != nil {
					errs <- err
					return
				}
				if got != i*1000+j {
					errs <- fmt.Errorf("session %d got %d, want %d", i, got, i*1000+j)
					return
				}
			}
			var pid uint32
			if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				errs <- err
				return
			}
			pids <- pid
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	close(pids)
	for err := range errs {
		t.Error(err)
	}
	seen := map[uint32]bool{}
	for pid := range pids {
		if seen[pid] {
			t.Errorf("backend pid %d shared by two sessions", pid)
		}
		seen[pid] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct backends, want %d", len(seen), n)
	}
}
