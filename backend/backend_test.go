package backend

import "testing"

func TestNamesUser(t *testing.T) {
	t.Setenv("PGUSER", "")
	tests := []struct {
		conninfo string
		want     bool
	}{
		{"postgres://alice@db:5432/app", true},
		{"postgres://alice:pw@db/app", true},
		{"postgres://db:5432/app?user=bob", true},
		{"postgres://db:5432/app", false},
		{"host=db user=carol dbname=x", true},
		{"host=db user = carol", true},
		{"host=db dbuser=x dbname=x", false},
		{"host=/var/run/postgresql dbname=x", false},
		// A quoted value that looks like a user keyword is not one.
		{"host=db application_name='a user = b'", false},
		{"host=db application_name='a user = b' user=dave", true},
		{"host=db user=''", false},
	}
	for _, tc := range tests {
		if got := namesUser(tc.conninfo); got != tc.want {
			t.Errorf("namesUser(%q) = %v, want %v", tc.conninfo, got, tc.want)
		}
	}
}

func TestParseTLSModes(t *testing.T) {
	tests := []struct {
		conninfo         string
		tls, tlsRequired bool
		network, address string
	}{
		{"postgres://127.0.0.1:5432/x?sslmode=disable", false, false, "tcp", "127.0.0.1:5432"},
		{"postgres://127.0.0.1:5432/x?sslmode=prefer", true, false, "tcp", "127.0.0.1:5432"},
		{"postgres://127.0.0.1:5432/x?sslmode=require", true, true, "tcp", "127.0.0.1:5432"},
		{"postgres://127.0.0.1:5432/x?sslmode=allow", true, false, "tcp", "127.0.0.1:5432"},
		{"host=/tmp/sock port=6000 sslmode=require", false, false, "unix", "/tmp/sock/.s.PGSQL.6000"},
	}
	for _, tc := range tests {
		tg, err := Parse(tc.conninfo)
		if err != nil {
			t.Fatalf("%s: %v", tc.conninfo, err)
		}
		n, a := tg.Address()
		if (tg.tlsConfig != nil) != tc.tls || tg.tlsRequired != tc.tlsRequired || n != tc.network || a != tc.address {
			t.Errorf("%s: tls=%v required=%v %s %s", tc.conninfo, tg.tlsConfig != nil, tg.tlsRequired, n, a)
		}
	}
	if _, err := Parse("postgres://u:secret@db:notaport/x"); err == nil {
		t.Error("invalid port accepted")
	}
}

func TestHasParam(t *testing.T) {
	t.Setenv("PGAPPNAME", "")
	for _, tc := range []struct {
		conninfo string
		want     bool
	}{
		{"postgres://db/app?application_name=nightly", true},
		{"host=db application_name='a b'", true},
		{"host=db options='-c work_mem=1MB'", false},
		{"postgres://db/app", false},
	} {
		target, err := Parse(tc.conninfo)
		if err != nil {
			t.Fatal(err)
		}
		if got := target.HasParam("application_name"); got != tc.want {
			t.Errorf("HasParam(application_name) for %q = %v, want %v", tc.conninfo, got, tc.want)
		}
	}
}
