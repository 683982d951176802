package commands_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walsender"
)

// fakeRelay is a WAL relay serving what the test sets.
type fakeRelay struct {
	standbys []walsender.Standby
	slots    []walarchive.Slot
}

func (f *fakeRelay) Standbys() []walsender.Standby { return f.standbys }
func (f *fakeRelay) Slots() []walarchive.Slot      { return f.slots }

// newRelayFixture registers the WAL ARCHIVE and the relay's commands, as
// main does, over a fake archive and relay.
func newRelayFixture(t *testing.T) (*walFixture, *fakeRelay) {
	f := newWALFixture(t)
	r := &fakeRelay{}
	for _, c := range commands.WALRelayCommands(f.root, r) {
		f.reg.Register(c)
	}
	return f, r
}

// columnTypes renders a command's columns as name:oid.
func columnTypes(p commands.Prepared) string {
	var cols []string
	for _, c := range p.Columns() {
		cols = append(cols, c.Name+":"+strconv.Itoa(int(c.TypeOID)))
	}
	return strings.Join(cols, ",")
}

// matchedName is the name of the command reg finds leading sql, "" when
// none.
func matchedName(reg *commands.Registry, sql string) string {
	if stmts, found := reg.Match(sql); found && stmts[0].Command != nil {
		return stmts[0].Command.Name()
	}
	return ""
}

// TestWALRelayRecognised: the registry finds both SHOWs beside SHOW WAL
// ARCHIVE, leaves the server's SHOW to it, and the parser takes nothing
// after the command's words.
func TestWALRelayRecognised(t *testing.T) {
	f, _ := newRelayFixture(t)
	for sql, want := range map[string]string{
		"SHOW WAL STANDBYS":       "SHOW WAL STANDBYS",
		"show wal standbys;":      "SHOW WAL STANDBYS",
		"SHOW /* x */ WAL Slots":  "SHOW WAL SLOTS",
		"SHOW WAL ARCHIVE":        "SHOW WAL ARCHIVE",
		"SHOW wal_level":          "",
		`SHOW WAL "standbys"`:     "",
		"SELECT 'SHOW WAL SLOTS'": "",
	} {
		if got := matchedName(f.reg, sql); got != want {
			t.Errorf("Match(%q): %q, want %q", sql, got, want)
		}
	}
	for _, sql := range []string{"SHOW WAL STANDBYS VERBOSE", "SHOW WAL SLOTS s1", "SHOW WAL SLOTS 'x'"} {
		stmts, _ := f.reg.Match(sql)
		_, err := stmts[0].Command.Parse(stmts[0].SQL)
		if e := wantPgCode(t, err, pgerr.SyntaxError); e.Position == 0 {
			t.Errorf("%s: no position in %v", sql, e)
		}
	}
}

func TestShowWALStandbys(t *testing.T) {
	f, r := newRelayFixture(t)
	c := &walConn{t: t, monitor: true}
	prep := f.prepare(t, "SHOW WAL STANDBYS")
	if got := columnTypes(prep); got != "pid:23,usename:25,application_name:25,client_addr:25,client_port:23,slot_name:25,state:25,timeline:20,"+
		"sent_lsn:3220,write_lsn:3220,flush_lsn:3220,replay_lsn:3220,write_lag:25,flush_lag:25,replay_lag:25,"+
		"reply_time:25,backend_xmin:20,catalog_xmin:20,started_at:25" {
		t.Fatalf("columns %s", got)
	}
	if _, ok := prep.(commands.Standalone); ok {
		t.Error("SHOW WAL STANDBYS is standalone: a monitoring query in a transaction would be refused")
	}
	out, err := prep.Execute(context.Background(), c)
	if err != nil || out.Tag != "SHOW" || len(out.Rows) != 0 {
		t.Fatalf("no standbys: %+v, %v", out, err)
	}

	started := time.Date(2026, 12, 3, 19, 0, 0, 0, time.UTC)
	r.standbys = []walsender.Standby{
		{PID: 4242, User: "replicator", ApplicationName: "sb1", ClientAddr: "10.0.0.7:50506", Slot: "sb1_slot", State: "streaming",
			Timeline: 2, Sent: 0x1_0300_0060, Write: 0x1_0300_0060, Flush: 0x1_0300_0000, Replay: 0x1_0200_0000,
			WriteLag: 1234 * time.Microsecond, FlushLag: 1500 * time.Millisecond, ReplayLag: 25*time.Hour + time.Second,
			ReplyTime: started.Add(time.Minute + 250*time.Millisecond), Started: started, Xmin: 731, CatalogXmin: 700},
		// Just connected: nothing reported yet, and no slot.
		{PID: 4243, ApplicationName: "", State: "startup", WriteLag: -1, FlushLag: -1, ReplayLag: -1, Started: started.Add(time.Second)},
	}
	out, err = prep.Execute(context.Background(), c)
	if err != nil || len(out.Rows) != 2 {
		t.Fatalf("%+v, %v", out, err)
	}
	for i, want := range []string{
		"4242|replicator|sb1|10.0.0.7|50506|sb1_slot|streaming|2|1/3000060|1/3000060|1/3000000|1/2000000|" +
			"00:00:00.001234|00:00:01.5|25:00:01|2026-12-03 19:01:00.25+00|731|700|2026-12-03 19:00:00+00",
		"4243|NULL||NULL|NULL|NULL|startup|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|2026-12-03 19:00:01+00",
	} {
		if got := rowText(out.Rows[i]); got != want {
			t.Errorf("row %d\n  %s\nwant\n  %s", i, got, want)
		}
	}
}

// TestShowWALStandbysLag: the lags print as PostgreSQL prints an
// interval of that many microseconds.
func TestShowWALStandbysLag(t *testing.T) {
	f, r := newRelayFixture(t)
	prep := f.prepare(t, "SHOW WAL STANDBYS")
	for lag, want := range map[time.Duration]string{
		0:                       "00:00:00",
		time.Microsecond:        "00:00:00.000001",
		120 * time.Millisecond:  "00:00:00.12",
		59*time.Minute + 1500:   "00:59:00.000001", // nanoseconds below a microsecond are dropped
		100*time.Hour + 1e9 + 1: "100:00:01",
	} {
		r.standbys = []walsender.Standby{{PID: 1, State: "streaming", WriteLag: lag, FlushLag: -1, ReplayLag: -1}}
		out, err := prep.Execute(context.Background(), &walConn{t: t, replication: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Rows[0][12]; got == nil || *got != want || out.Rows[0][13] != nil {
			t.Errorf("lag %v: write_lag and flush_lag %s, want %s|NULL", lag, rowText(out.Rows[0][12:14]), want)
		}
	}
}

func TestShowWALSlots(t *testing.T) {
	f, r := newRelayFixture(t)
	c := &walConn{t: t, replication: true}
	prep := f.prepare(t, "SHOW WAL SLOTS")
	if got := columnTypes(prep); got != "slot_name:25,slot_type:25,temporary:16,active:16,active_pid:23,"+
		"restart_lsn:3220,restart_tli:20,xmin:20,catalog_xmin:20,wal_status:25" {
		t.Fatalf("columns %s", got)
	}
	r.slots = []walarchive.Slot{
		{Name: "s1", RestartLSN: 0x2_0000_0028, RestartTLI: 3, ActivePID: 4242, Xmin: 731},
		{Name: "s2"},
		{Name: "tmp", Temporary: true, RestartLSN: 0x1000, RestartTLI: 1, ActivePID: 7, CatalogXmin: 9},
	}
	out, err := prep.Execute(context.Background(), c)
	if err != nil || out.Tag != "SHOW" || len(out.Rows) != 3 {
		t.Fatalf("%+v, %v", out, err)
	}
	for i, want := range []string{
		"s1|physical|f|t|4242|2/28|3|731|NULL|reserved",
		"s2|physical|f|f|NULL|NULL|NULL|NULL|NULL|NULL",
		"tmp|physical|t|t|7|0/1000|1|NULL|9|reserved",
	} {
		if got := rowText(out.Rows[i]); got != want {
			t.Errorf("row %d\n  %s\nwant\n  %s", i, got, want)
		}
	}
	if prep.Columns()[4].TypeOID != pgwire.Int4OID {
		t.Error("active_pid is not int4")
	}
}

// TestWALRelayRefusals: without a relay or a backup root both refuse
// with 55000 and a hint; a role neither superuser, REPLICATION nor
// pg_monitor member gets 42501 and sees nothing.
func TestWALRelayRefusals(t *testing.T) {
	all := []string{"SHOW WAL STANDBYS", "SHOW WAL SLOTS"}
	for _, setup := range []struct {
		name  string
		root  string
		relay commands.WALRelay
	}{{"no relay", t.TempDir(), nil}, {"no root", "", &fakeRelay{}}} {
		f := &walFixture{reg: commands.NewRegistry()}
		for _, c := range commands.WALRelayCommands(setup.root, setup.relay) {
			f.reg.Register(c)
		}
		for _, sql := range all {
			_, err := f.run(t, &walConn{t: t, replication: true}, sql)
			if e := wantPgCode(t, err, pgerr.ObjectNotInPrerequisiteState); !strings.Contains(e.Hint, "backup-root") {
				t.Errorf("%s, %s: hint %q", setup.name, sql, e.Hint)
			}
		}
	}
	f, r := newRelayFixture(t)
	r.standbys = []walsender.Standby{{PID: 1, State: "streaming"}}
	r.slots = []walarchive.Slot{{Name: "s1"}}
	for _, sql := range all {
		out, err := f.run(t, &walConn{t: t}, sql)
		if e := wantPgCode(t, err, pgerr.InsufficientPrivilege); out != nil || !strings.Contains(e.Hint, "pg_monitor") {
			t.Errorf("%s: %+v, %v", sql, out, e)
		}
	}
}
