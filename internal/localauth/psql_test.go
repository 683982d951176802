package localauth

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// TestPsqlWithRealSecrets takes the secrets a real PostgreSQL stores (a
// SCRAM verifier and an md5 hash from pg_authid), loads them from an auth
// file and checks that the real psql, libpq's client side, gets in with
// the password and is refused with PostgreSQL's message without it.
func TestPsqlWithRealSecrets(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Logf: t.Logf})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Exec(ctx, `CREATE ROLE "scram user" LOGIN PASSWORD 'Tr0ub4dor&3';
		SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'correct horse'`); err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.Connect(ctx, c.SuperURL())
	if err != nil {
		t.Fatal(err)
	}
	res, err := conn.Exec(ctx, `SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('scram user', 'md5user') ORDER BY 1`).ReadAll()
	conn.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, row := range res[0].Rows {
		lines = append(lines, quote(string(row[0]))+" "+quote(string(row[1])))
	}
	path := filepath.Join(t.TempDir(), "userlist.txt")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := f.Lookup("scram user"); e.Method() != MethodSCRAM {
		t.Fatalf("scram user: %v, want a SCRAM verifier from PostgreSQL", e)
	}
	if e, _ := f.Lookup("md5user"); e.Method() != MethodMD5 {
		t.Fatalf("md5user: %v, want an md5 hash from PostgreSQL", e)
	}

	srv := startServer(t, f)
	host, port, _ := net.SplitHostPort(srv.addr)
	psql := func(user, password string) (string, error) {
		conninfo := fmt.Sprintf("host=%s port=%s user='%s' dbname=postgres sslmode=disable", host, port, user)
		cmd := exec.CommandContext(ctx, c.Bin("psql"), "-X", "-w", "-tA", "-d", conninfo, "-c", "SELECT 1")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password, "PGPASSFILE=/dev/null", "PGCONNECT_TIMEOUT=10", "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, tc := range []struct{ user, password string }{
		{"scram user", "Tr0ub4dor&3"},
		{"md5user", "correct horse"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			if out, err := psql(tc.user, tc.password); err != nil || out != "1" {
				t.Fatalf("right password: %v: %s", err, out)
			}
			if err := <-srv.results; err != nil {
				t.Fatalf("server side: %v", err)
			}
			out, err := psql(tc.user, "wrong")
			want := fmt.Sprintf(`FATAL:  password authentication failed for user "%s"`, tc.user)
			if err == nil || !strings.Contains(out, want) {
				t.Fatalf("wrong password: %v: %s; want %s", err, out, want)
			}
			<-srv.results
		})
	}
}
