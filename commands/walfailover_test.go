package commands

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walarchive"
)

func TestParseFailover(t *testing.T) {
	tests := []struct {
		sql  string
		want failoverStmt
	}{
		{"FAILOVER WAL ARCHIVE TO 'host=sb1'", failoverStmt{conninfo: "host=sb1", catchUp: true, promote: true, timeout: time.Minute}},
		{"failover wal archive to 'host=sb1' with (catch_up off, PROMOTE 'off', timeout '90s', force on);",
			failoverStmt{conninfo: "host=sb1", timeout: 90 * time.Second, force: true}},
		{"FAILOVER WAL ARCHIVE TO 'h' WITH (TIMEOUT '1 hour 30 minutes')", failoverStmt{conninfo: "h", catchUp: true, promote: true, timeout: 90 * time.Minute}},
	}
	for _, tc := range tests {
		p, err := NewWALFailover(nil).Parse(tc.sql)
		if err != nil {
			t.Fatalf("%s: %v", tc.sql, err)
		}
		if got := *p.(*failoverRun).st; got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.sql, got, tc.want)
		}
	}
	errs := []struct{ sql, code, msg string }{
		{"FAILOVER WAL ARCHIVE 'h'", "42601", "syntax error"},
		{"FAILOVER WAL ARCHIVE TO 'h' WITH (PROMPT on)", "22023", `unrecognized FAILOVER WAL ARCHIVE option "PROMPT"`},
		{"FAILOVER WAL ARCHIVE TO 'h' WITH (FORCE on, force off)", "42601", "conflicting or redundant options"},
		{"FAILOVER WAL ARCHIVE TO 'h' WITH (TIMEOUT 'soon')", "22023", `invalid TIMEOUT "soon"`},
		{"FAILOVER WAL ARCHIVE TO 'h' WITH (TIMEOUT '0')", "22023", `invalid TIMEOUT "0"`},
		{"FAILOVER WAL ARCHIVE TO 'h' WITH (PROMOTE maybe)", "22023", `invalid value "maybe"`},
	}
	for _, tc := range errs {
		_, err := NewWALFailover(nil).Parse(tc.sql)
		var pe *pgerr.Error
		if !errors.As(err, &pe) || string(pe.Code) != tc.code || !strings.Contains(pe.Message, tc.msg) {
			t.Errorf("%s: got %v, want %s %q", tc.sql, err, tc.code, tc.msg)
		}
	}
}

func TestParseInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30": 30 * time.Second, "30s": 30 * time.Second, "2 min": 2 * time.Minute, "1.5 hours": 90 * time.Minute,
		"1 minute 30 seconds": 90 * time.Second, "250ms": 250 * time.Millisecond,
	} {
		if got, ok := parseInterval(in); !ok || got != want {
			t.Errorf("parseInterval(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "soon", "1 fortnight", "s", "1..2s"} {
		if got, ok := parseInterval(in); ok {
			t.Errorf("parseInterval(%q) = %v, want refused", in, got)
		}
	}
}

// fakeSetter records the FAILOVER it was asked for.
type fakeSetter struct {
	got walarchive.FailoverOptions
	res walarchive.FailoverResult
}

func (f *fakeSetter) SetSource(context.Context, string, string, bool) (walarchive.SourceResult, error) {
	return walarchive.SourceResult{}, nil
}

func (f *fakeSetter) Failover(_ context.Context, o walarchive.FailoverOptions) (walarchive.FailoverResult, error) {
	f.got = o
	return f.res, nil
}

// adminOnly is a Conn of a session pgverbs authenticated itself.
type adminOnly struct {
	Conn
	admin bool
}

func (a adminOnly) LocalAdmin() bool { return a.admin }
func (adminOnly) User() string       { return "ops" }

func TestFailoverExecute(t *testing.T) {
	f := &fakeSetter{res: walarchive.FailoverResult{Timeline: 3, SwitchPoint: 0x3000060, Standbys: []string{"sb2", "sb3"}}}
	p, err := NewWALFailover(f).Parse("FAILOVER WAL ARCHIVE TO 'host=sb1' WITH (CATCH_UP off)")
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Execute(context.Background(), adminOnly{admin: true})
	if err != nil {
		t.Fatal(err)
	}
	if f.got.Conninfo != "host=sb1" || f.got.User != "ops" || f.got.CatchUp || !f.got.Promote {
		t.Errorf("Failover got %+v", f.got)
	}
	if row := out.Rows[0]; *row[0] != "3" || *row[1] != "0/3000060" || *row[2] != "sb2,sb3" {
		t.Errorf("row %q %q %q", *row[0], *row[1], *row[2])
	}
	var pe *pgerr.Error
	if _, err := p.Execute(context.Background(), adminOnly{admin: false}); !errors.As(err, &pe) || pe.Code != pgerr.InsufficientPrivilege {
		t.Errorf("a role not in wal_auth_admins: %v, want 42501", err)
	}
	if _, err := NewWALFailover(nil).Parse("FAILOVER WAL ARCHIVE TO 'h'"); err != nil {
		t.Fatal(err)
	}
	p, _ = NewWALFailover(nil).Parse("FAILOVER WAL ARCHIVE TO 'h'")
	if _, err := p.Execute(context.Background(), adminOnly{admin: true}); !errors.As(err, &pe) || pe.Code != pgerr.ObjectNotInPrerequisiteState {
		t.Errorf("without an archive: %v, want 55000", err)
	}
}
