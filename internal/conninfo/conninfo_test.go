package conninfo_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/conninfo"
)

func TestScan(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		bad  int
	}{
		{"host=db user=alice", map[string]string{"host": "db", "user": "alice"}, -1},
		{"  host = db\tport=5432 ", map[string]string{"host": "db", "port": "5432"}, -1},
		{"application_name='a user = b' host=db", map[string]string{"application_name": "a user = b", "host": "db"}, -1},
		{`password='it\'s' user=x`, map[string]string{"password": "it's", "user": "x"}, -1},
		{`password=a\ b`, map[string]string{"password": "a b"}, -1},
		{"password='open", map[string]string{"password": "open"}, -1},
		{"host=db nonsense", map[string]string{"host": "db"}, 8},
		{"two words=x", map[string]string{}, 0},
		{"", map[string]string{}, -1},
	} {
		pairs, bad := conninfo.Scan(tc.in)
		got := map[string]string{}
		for _, p := range pairs {
			got[p.Key] = p.Value(tc.in)
		}
		if bad != tc.bad || len(got) != len(tc.want) {
			t.Errorf("Scan(%q) = %q, bad %d; want %q, bad %d", tc.in, got, bad, tc.want, tc.bad)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("Scan(%q)[%s] = %q, want %q", tc.in, k, got[k], v)
			}
		}
	}
}

// TestScanAgreesWithPgconn checks the values against pgconn's own parser
// for strings it accepts.
func TestScanAgreesWithPgconn(t *testing.T) {
	for _, in := range []string{
		"host=db user=alice dbname=app",
		"host=db user='a b' application_name='x = y'",
		`host=db user=a\ b password='p\'q'`,
		"host = db  user =\tbob",
	} {
		cfg, err := pgconn.ParseConfig(in)
		if err != nil {
			t.Fatalf("pgconn refuses %q: %v", in, err)
		}
		pairs, bad := conninfo.Scan(in)
		if bad != -1 {
			t.Fatalf("Scan(%q): bad at %d", in, bad)
		}
		for _, p := range pairs {
			var want string
			switch p.Key {
			case "user":
				want = cfg.User
			case "password":
				want = cfg.Password
			case "host":
				want = cfg.Host
			default:
				want = cfg.RuntimeParams[p.Key]
				if p.Key == "dbname" {
					want = cfg.Database
				}
			}
			if got := p.Value(in); got != want {
				t.Errorf("Scan(%q)[%s] = %q, pgconn reads %q", in, p.Key, got, want)
			}
		}
	}
}
