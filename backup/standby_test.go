package backup

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestConfQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                "''",
		"host='h' user=x": "'host=''h'' user=x'",
		`a\b`:             `'a\\b'`,
		`user='o\'k'`:     `'user=''o\\''k'''`,
	} {
		if got := confQuote(in); got != want {
			t.Errorf("confQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestStandbyNeedsPlain(t *testing.T) {
	_, err := validate(Options{Format: Tar, Standby: &Standby{}, Connect: func(context.Context, bool) (*pgconn.PgConn, error) { return nil, nil }})
	pe := asPgErr(err)
	if pe == nil || pe.Code != "0A000" || pe.Hint == "" {
		t.Fatalf("got %v, want 0A000 with a HINT", err)
	}
}
