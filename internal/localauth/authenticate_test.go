package localauth

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// The secrets PostgreSQL 15 stored for password 'pencil': alice's by
// CREATE ROLE with the default password_encryption, bob's with
// password_encryption = md5. They test the server side against what the
// real server makes, not against this package's own derivation.
const (
	aliceVerifier = "SCRAM-SHA-256$4096:UcrFXgxfK9RMT3GYTlIU2Q==$KL2no6OeXJ6wRTocaeo9hAnMBTEq8PPq6pmCD8qKx6k=:VhehQMVPbrLuQncEDmYiQ7A4vGRvg2fDfUdJuoQ0GfQ="
	bobMD5        = "md5e4f70fb0b8f2745aa7a69557c80cbd0c"
)

// testFile lists alice (SCRAM verifier), bob (md5 hash) and carol (plain
// password `pen"cil`, quoted with a doubled quote).
func testFile(t *testing.T) *File {
	t.Helper()
	f, err := Parse([]byte(`; pgverbs wal_auth_file
"alice" "` + aliceVerifier + `"
"bob"   "` + bobMD5 + `"
# plain text, as PgBouncer allows
"carol" "pen""cil"
`))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func connect(t *testing.T, addr, user, password string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host, port, _ := splitHostPort(addr)
	cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=postgres sslmode=disable", host, port, user))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, "SELECT 1").ReadAll()
	if err != nil {
		t.Fatalf("query after authentication: %v", err)
	}
	if got := string(res[0].Rows[0][0]); got != "1" {
		t.Fatalf("query after authentication: got %q", got)
	}
	return nil
}

// TestAuthenticatePgconn runs pgx's client side against Authenticate for
// each kind of entry, with the right and a wrong password.
func TestAuthenticatePgconn(t *testing.T) {
	for _, tc := range []struct {
		name, user, password string
		method               Method
	}{
		{"scram verifier", "alice", "pencil", MethodSCRAM},
		{"md5 hash", "bob", "pencil", MethodMD5},
		{"plain password", "carol", `pen"cil`, MethodSCRAM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, testFile(t))
			if e, _ := testFile(t).Lookup(tc.user); e.Method() != tc.method {
				t.Fatalf("%s: method %v, want %v", tc.user, e.Method(), tc.method)
			}
			if err := connect(t, srv.addr, tc.user, tc.password); err != nil {
				t.Fatalf("right password: %v", err)
			}
			if err := <-srv.results; err != nil {
				t.Fatalf("server side, right password: %v", err)
			}

			err := connect(t, srv.addr, tc.user, tc.password+"x")
			checkAuthFailed(t, err, tc.user)
			if err := <-srv.results; !errors.Is(err, ErrPasswordMismatch) {
				t.Fatalf("server side, wrong password: %v, want cause ErrPasswordMismatch", err)
			}
		})
	}
	t.Run("no such user", func(t *testing.T) {
		srv := startServer(t, testFile(t))
		err := connect(t, srv.addr, "mallory", "pencil")
		checkAuthFailed(t, err, "mallory")
		if err := <-srv.results; !errors.Is(err, ErrNoSuchUser) {
			t.Fatalf("server side: %v, want cause ErrNoSuchUser", err)
		}
	})
}

// checkAuthFailed checks that the client got PostgreSQL's FATAL for a
// wrong password.
func checkAuthFailed(t *testing.T, err error, user string) {
	t.Helper()
	pe, ok := errors.AsType[*pgconn.PgError](err)
	if !ok {
		t.Fatalf("wrong password: got %v, want a server error", err)
	}
	want := fmt.Sprintf(`password authentication failed for user "%s"`, user)
	if pe.Severity != "FATAL" || pe.Code != string(pgerr.InvalidPassword) || pe.Message != want {
		t.Fatalf("wrong password: got %s %s %q, want FATAL 28P01 %q", pe.Severity, pe.Code, pe.Message, want)
	}
}
