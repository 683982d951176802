package e2e

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// TestAuthMethods logs in through the proxy with each password method the
// server can ask for, with pgx and with psql, and checks that a wrong
// password gets the server's own FATAL 28P01.
func TestAuthMethods(t *testing.T) {
	for _, method := range []string{"trust", "password", "md5", "scram-sha-256"} {
		t.Run(method, func(t *testing.T) {
			opts := pgtest.Options{AuthMethod: method, Password: "s3cret!"}
			if method == "md5" {
				opts.Settings = map[string]string{"password_encryption": "md5"}
			}
			c := cluster(t, opts)
			if method == "md5" {
				// initdb stored the password with the default scram; md5 needs an md5 hash.
				if err := c.Exec(testCtx(t), "SET password_encryption = 'md5'; ALTER USER postgres PASSWORD 's3cret!'"); err != nil {
					t.Fatal(err)
				}
			}
			p := startProxy(t, c.URL("", "", "postgres"))
			ctx := testCtx(t)

			conn, err := pgx.Connect(ctx, p.URL("postgres", "s3cret!", "postgres"))
			if err != nil {
				t.Fatalf("connect through proxy: %v", err)
			}
			var user string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "postgres" {
				t.Fatalf("current_user = %q, %v", user, err)
			}
			conn.Close(ctx)

			out, err := psql(t, c, p.URL("postgres", "s3cret!", "postgres"), "-Atc", "SELECT 40 + 2")
			if err != nil || strings.TrimSpace(out) != "42" {
				t.Fatalf("psql: %v: %s", err, out)
			}

			if method == "trust" {
				return
			}
			_, err = pgx.Connect(ctx, p.URL("postgres", "wrong", "postgres"))
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" || pgErr.Severity != "FATAL" {
				t.Fatalf("wrong password: got %v, want FATAL 28P01", err)
			}
			out, err = psql(t, c, p.URL("postgres", "wrong", "postgres"), "-c", "SELECT 1")
			if err == nil || !strings.Contains(out, "password authentication failed") {
				t.Fatalf("psql with wrong password: %v: %s", err, out)
			}
		})
	}
}
