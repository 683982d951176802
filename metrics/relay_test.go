package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walsender"
)

type fakeRelay struct {
	standbys []walsender.Standby
	slots    []walarchive.Slot
}

func (f fakeRelay) Standbys() []walsender.Standby { return f.standbys }
func (f fakeRelay) Slots() []walarchive.Slot      { return f.slots }

// TestRelayMetrics: the counts, the lags measured from the archive's
// durable position, the worst of standbys sharing a name, no series for
// what is unknown, and retained WAL per slot.
func TestRelayMetrics(t *testing.T) {
	archive := func() (walarchive.Status, bool) {
		return walarchive.Status{State: walarchive.Streaming, Flushed: 0x1_0000_0000}, true
	}
	relay := fakeRelay{
		standbys: []walsender.Standby{
			{ApplicationName: "sb1", Flush: 0x1_0000_0000 - 100, Replay: 0x1_0000_0000 - 5000,
				FlushLag: 2 * time.Millisecond, ReplayLag: 1500 * time.Millisecond},
			// Shares sb1's name, further behind in flush, less in replay.
			{ApplicationName: "sb1", Flush: 0x1_0000_0000 - 300, Replay: 0x1_0000_0000 - 300,
				FlushLag: 3 * time.Millisecond, ReplayLag: -1},
			// Has reported nothing yet.
			{ApplicationName: "new\x01é", FlushLag: -1, ReplayLag: -1, WriteLag: -1},
		},
		slots: []walarchive.Slot{{Name: "s1", RestartLSN: 0x1_0000_0000 - 1<<24}, {Name: "s2"}},
	}
	text := relayExposition(t, fakeSource{}, archive, relay)
	for _, line := range []string{
		`pgverbs_wal_standbys 3`,
		`pgverbs_wal_standby_flush_lag_bytes{application_name="sb1"} 300`,
		`pgverbs_wal_standby_replay_lag_bytes{application_name="sb1"} 5000`,
		`pgverbs_wal_standby_flush_lag_seconds{application_name="sb1"} 0.003`,
		`pgverbs_wal_standby_replay_lag_seconds{application_name="sb1"} 1.5`,
		`pgverbs_wal_slots 2`,
		`pgverbs_wal_slot_retained_bytes{slot_name="s1"} 1.6777216e+07`,
		`pgverbs_wal_slot_retained_bytes{slot_name="s2"} 0`,
	} {
		if !strings.Contains(text, line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
	if strings.Contains(text, "new") {
		t.Errorf("a standby that reported nothing has lag series:\n%s", grepLines(text, "new"))
	}

	// No relay: the counts exist, at 0, and nothing else.
	text = relayExposition(t, fakeSource{}, nil, nil)
	for _, line := range []string{"pgverbs_wal_standbys 0\n", "pgverbs_wal_slots 0\n"} {
		if !strings.Contains(text, line) {
			t.Errorf("/metrics without a relay lacks %s", line)
		}
	}
	if strings.Contains(text, "pgverbs_wal_standby_") || strings.Contains(text, "pgverbs_wal_slot_") {
		t.Errorf("series without a relay:\n%s", grepLines(text, "pgverbs_wal_s"))
	}
}

// TestRelayLabelValue: a client's application_name that is not printable
// ASCII still makes a series (an invalid UTF-8 label value would fail the
// scrape), as PostgreSQL keeps it.
func TestRelayLabelValue(t *testing.T) {
	relay := fakeRelay{standbys: []walsender.Standby{{ApplicationName: "a\xffb\x01" + strings.Repeat("x", 100), Flush: 1, Replay: 1,
		FlushLag: -1, ReplayLag: -1}}}
	text := relayExposition(t, fakeSource{}, nil, relay)
	want := `pgverbs_wal_standby_flush_lag_bytes{application_name="a?b?` + strings.Repeat("x", 59) + `"} 0`
	if !strings.Contains(text, want+"\n") {
		t.Errorf("/metrics lacks %s:\n%s", want, grepLines(text, "flush_lag_bytes"))
	}
}

// grepLines is the lines of text containing s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
