package e2e

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// pgverbsRows runs sql with pgx in mode and returns the columns and each
// row as "a|b|NULL", the values as pgx decoded them by their type OID, so
// an int column reads as a Go integer whichever format it came in. In the
// extended modes it also requires that pgx asked for the non-text columns
// in binary and got them, so the proxy's binary encoding is exercised.
func pgverbsRows(t *testing.T, ctx context.Context, conn *pgx.Conn, mode pgx.QueryExecMode, sql string) ([]string, [][]any, error) {
	t.Helper()
	rows, err := conn.Query(ctx, sql, mode)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var cols []string
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
		if binary := f.Format == 1; mode != pgx.QueryExecModeSimpleProtocol && f.DataTypeOID != 25 && !binary {
			t.Errorf("%s (%v): column %s of type %d came as text", sql, mode, f.Name, f.DataTypeOID)
		}
	}
	var out [][]any
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatalf("%s (%v): %v", sql, mode, err)
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return cols, nil, err
	}
	if tag := rows.CommandTag().String(); tag != "SHOW" {
		t.Errorf("%s (%v): tag %q, want SHOW", sql, mode, tag)
	}
	return cols, out, nil
}

// column returns the value of column name in row.
func column(cols []string, row []any, name string) any {
	for i, c := range cols {
		if c == name {
			return row[i]
		}
	}
	return nil
}

// TestShowPgverbs runs the four SHOW PGVERBS commands as a superuser, a
// member of pg_monitor and a plain role, through psql and through pgx on
// each protocol path.
func TestShowPgverbs(t *testing.T) {
	c, p := trustSetup(t, pgtest.Options{})
	ctx := testCtx(t)
	if err := c.Exec(ctx, `CREATE ROLE e2e_monitor LOGIN; GRANT pg_monitor TO e2e_monitor;
CREATE ROLE e2e_plain LOGIN; CREATE ROLE e2e_other LOGIN`); err != nil {
		t.Fatal(err)
	}
	var serverVersion string
	direct := connect(t, c.SuperURL())
	if err := direct.QueryRow(ctx, "SHOW server_version").Scan(&serverVersion); err != nil {
		t.Fatal(err)
	}

	type role struct {
		name       string
		privileged bool
	}
	roles := []role{{c.User, true}, {"e2e_monitor", true}, {"e2e_plain", false}}
	// One session per role, named after it, stays open through the test,
	// and one of a role nobody here may see but the privileged.
	conns := map[string]*pgx.Conn{}
	pids := map[string]int32{}
	for _, r := range append(roles, role{"e2e_other", false}) {
		conn := connect(t, p.URL(r.name, "", "postgres", "sslmode=disable", "application_name=app_"+r.name))
		var pid int32
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		conns[r.name], pids["app_"+r.name] = conn, pid
	}

	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			conn := conns[r.name]
			run := func(args ...string) (string, error) {
				return psql(t, c, p.URL(r.name, "", "postgres"), args...)
			}

			// VERSION is open to all.
			if ls := showLines(t, run, "SHOW PGVERBS VERSION"); len(ls) != 1 ||
				!strings.HasSuffix(ls[0], "|"+runtime.Version()+"|"+serverVersion) || strings.HasPrefix(ls[0], "|") {
				t.Errorf("psql VERSION: %q, want one row: pgverbs' version, %s, %s", ls, runtime.Version(), serverVersion)
			}
			for _, mode := range showModes {
				cols, rows, err := pgverbsRows(t, ctx, conn, mode, "SHOW PGVERBS VERSION")
				if err != nil || len(rows) != 1 || fmt.Sprint(cols) != "[pgverbs_version go_version server_version]" ||
					rows[0][2] != serverVersion {
					t.Errorf("%v: VERSION: %q %v, %v", mode, cols, rows, err)
				}
			}

			for _, cmd := range []string{"SHOW PGVERBS STATS", "SHOW PGVERBS CONFIG"} {
				out, err := run("-c", cmd)
				if r.privileged != (err == nil) {
					t.Errorf("psql %s: %v\n%s", cmd, err, out)
				}
				if !r.privileged && (!strings.Contains(out, "ERROR:  permission denied to run "+cmd) ||
					!strings.Contains(out, `HINT:  Only superusers and members of the "pg_monitor" role may run `+cmd)) {
					t.Errorf("psql %s as %s:\n%s", cmd, r.name, out)
				}
				for _, mode := range showModes {
					_, _, err := pgverbsRows(t, ctx, conn, mode, cmd)
					if !r.privileged {
						if e := wantCode(t, err, "42501"); !strings.Contains(e.Hint, "pg_monitor") {
							t.Errorf("%v: %s: hint %q", mode, cmd, e.Hint)
						}
					} else if err != nil {
						t.Errorf("%v: %s: %v", mode, cmd, err)
					}
				}
			}
			if r.privileged {
				checkStats(t, ctx, conn)
				checkConfig(t, run)
			}

			// CLIENTS: everyone's sessions to the privileged; to the
			// others, their own only, and no error.
			want := map[string]bool{"app_" + r.name: true}
			if r.privileged {
				for _, o := range append(roles, role{"e2e_other", false}) {
					want["app_"+o.name] = true
				}
			}
			for _, mode := range showModes {
				cols, rows, err := pgverbsRows(t, ctx, conn, mode, "SHOW PGVERBS CLIENTS")
				if err != nil {
					t.Fatalf("%v: CLIENTS: %v", mode, err)
				}
				if got := strings.Join(cols, " "); got != "pid user database application_name client_addr tls state "+
					"connected_at last_message_at bytes_in bytes_out transactions queries command" {
					t.Errorf("%v: columns %q", mode, got)
				}
				checkClients(t, mode, r.name, r.privileged, cols, rows, want, pids, pids["app_"+r.name])
			}
			// psql's own session is among the role's.
			if ls := showLines(t, run, "SHOW PGVERBS CLIENTS"); !linesHave(ls, "|"+r.name+"|postgres|psql|") {
				t.Errorf("psql CLIENTS as %s: no row of its own session in\n%s", r.name, strings.Join(ls, "\n"))
			}
		})
	}
}

// checkClients checks CLIENTS' rows as role saw them over its session
// whose backend is self: the sessions of want (named by application_name)
// and, unless privileged, only the role's.
func checkClients(t *testing.T, mode pgx.QueryExecMode, role string, privileged bool, cols []string, rows [][]any, want map[string]bool, pids map[string]int32, self int32) {
	t.Helper()
	seen := map[string]bool{}
	for _, row := range rows {
		get := func(name string) any { return column(cols, row, name) }
		app, _ := get("application_name").(string)
		user, _ := get("user").(string)
		if !privileged && user != role {
			t.Errorf("%v: %s sees a session of %s", mode, role, user)
		}
		if tls, ok := get("tls").(bool); !ok || tls {
			t.Errorf("%v: %s: tls %v, want false (a bool)", mode, app, get("tls"))
		}
		if addr, _ := get("client_addr").(string); !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("%v: %s: client_addr %v", mode, app, get("client_addr"))
		}
		connected, err1 := time.Parse(showTimeLayout, fmt.Sprint(get("connected_at")))
		last, err2 := time.Parse(showTimeLayout, fmt.Sprint(get("last_message_at")))
		if err1 != nil || err2 != nil || last.Before(connected) || time.Since(connected) > time.Hour {
			t.Errorf("%v: %s: connected_at %v, last_message_at %v: %v %v", mode, app, get("connected_at"), get("last_message_at"), err1, err2)
		}
		pid, ok := pids[app]
		if !ok {
			continue // psql's
		}
		seen[app] = true
		if got, _ := get("pid").(int32); got != pid {
			t.Errorf("%v: %s: pid %v, the backend's is %d", mode, app, get("pid"), pid)
		}
		if user != strings.TrimPrefix(app, "app_") || get("database") != "postgres" {
			t.Errorf("%v: %s: user %q database %v", mode, app, user, get("database"))
		}
		// Each has run at least SELECT pg_backend_pid().
		in, ok1 := get("bytes_in").(int64)
		out, ok2 := get("bytes_out").(int64)
		queries, ok3 := get("queries").(int64)
		if !ok1 || !ok2 || !ok3 || in <= 0 || out <= 0 || queries < 1 {
			t.Errorf("%v: %s: bytes_in %v, bytes_out %v, queries %v, want positive int8s", mode, app, get("bytes_in"), get("bytes_out"), get("queries"))
		}
		// The others wait for their next query; this one runs a command.
		state, cmd := get("state"), get("command")
		if pid != self && (state != "idle" || cmd != nil) || pid == self && cmd != nil && cmd != "SHOW PGVERBS CLIENTS" {
			t.Errorf("%v: %s: state %v, command %v", mode, app, state, cmd)
		}
	}
	for app := range want {
		if !seen[app] {
			t.Errorf("%v: %s does not see session %s in %v", mode, role, app, rows)
		}
	}
	for app := range seen {
		if !want[app] {
			t.Errorf("%v: %s sees session %s", mode, role, app)
		}
	}
}

// showTimeLayout is how SHOW PGVERBS CLIENTS writes times: PostgreSQL's
// ISO style, in UTC.
const showTimeLayout = "2006-01-02 15:04:05.999999-07"

// checkStats checks STATS after the test's traffic: a row per counter,
// totals that count it, and rates.
func checkStats(t *testing.T, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	for _, mode := range showModes {
		cols, rows, err := pgverbsRows(t, ctx, conn, mode, "SHOW PGVERBS STATS")
		if err != nil {
			t.Fatalf("%v: STATS: %v", mode, err)
		}
		if fmt.Sprint(cols) != "[name total per_second_60s]" {
			t.Errorf("%v: columns %q", mode, cols)
		}
		totals := map[string]int64{}
		for _, row := range rows {
			name, _ := row[0].(string)
			total, ok := row[1].(int64)
			if !ok {
				t.Errorf("%v: %s: total %v", mode, name, row[1])
			}
			totals[name] = total
			// The sampler starts with the process, so there is always a
			// base to tell the rate from.
			if rate, ok := row[2].(float64); !ok || rate < 0 {
				t.Errorf("%v: %s: per_second_60s %v", mode, name, row[2])
			}
		}
		for _, name := range []string{"accepted", "refused_limit", "refused_auth_failure", "refused_backend_unreachable",
			"refused_tls_error", "refused_other", "bytes_in", "bytes_out", "transactions", "queries"} {
			if _, ok := totals[name]; !ok {
				t.Errorf("%v: no row %s in %v", mode, name, rows)
			}
		}
		// Four sessions of pgx and at least one of psql, each with queries.
		if totals["accepted"] < 5 || totals["queries"] < 4 || totals["bytes_in"] <= 0 || totals["bytes_out"] <= 0 {
			t.Errorf("%v: totals %v do not count the test's sessions", mode, totals)
		}
	}
}

// checkConfig checks CONFIG against the flags the harness starts pgverbs
// with.
func checkConfig(t *testing.T, run func(args ...string) (string, error)) {
	t.Helper()
	ls := showLines(t, run, "SHOW PGVERBS CONFIG")
	if !linesHave(ls, "log_level|debug|flag|") || !linesHave(ls, "backend|postgres://") ||
		!linesHave(ls, "http_listen||default|") {
		t.Errorf("CONFIG:\n%s", strings.Join(ls, "\n"))
	}
}

// linesHave reports whether a line of ls starts with prefix, or, for a
// prefix starting with "|", contains it.
func linesHave(ls []string, prefix string) bool {
	for _, l := range ls {
		if strings.HasPrefix(l, prefix) || strings.HasPrefix(prefix, "|") && strings.Contains(l, prefix) {
			return true
		}
	}
	return false
}
