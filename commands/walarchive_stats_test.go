package commands_test

import (
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/walarchive"
)

// TestShowPgverbsStatsArchive: with an archive, SHOW PGVERBS STATS ends
// with its rows once it was started, and has none before.
func TestShowPgverbsStatsArchive(t *testing.T) {
	const cmd = "SHOW PGVERBS STATS"
	src := &fakeSource{}
	a := &fakeArchiver{}
	cfg := conf.Default()
	var statsCmd *commands.Show
	for _, s := range commands.ShowPgverbsCommands(src, stats.NewWindow(src, nil), func() *conf.Config { return &cfg }, commands.WithArchive(a)) {
		if s.Name() == cmd {
			statsCmd = s
		}
	}
	c := &monitorConn{t: t, monitor: true}
	_, rows, err := runShowCommand(t, statsCmd, c, cmd)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if strings.HasPrefix(r, "wal_archive_") {
			t.Fatalf("archive rows before any START: %q", rows)
		}
	}
	n := len(rows)

	a.status = &walarchive.Status{State: walarchive.Reconnecting, LagBytes: 4096, Flushed: 0x1_0000_0100,
		Segments: 7, Bytes: 7 << 24, Reconnects: 3}
	_, rows, err = runShowCommand(t, statsCmd, c, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < n || !strings.HasPrefix(rows[n-1], "queries|") {
		t.Fatalf("the proxy's rows changed: %q", rows)
	}
	checkRows(t, "archive", rows[n:], []string{
		"wal_archive_state_streaming|0|NULL", "wal_archive_state_paused|0|NULL", "wal_archive_state_reconnecting|1|NULL",
		"wal_archive_state_stopped|0|NULL", "wal_archive_state_failed|0|NULL",
		"wal_archive_lag_bytes|4096|NULL", "wal_archive_flushed_lsn|4294967552|NULL", "wal_archive_segments|7|NULL",
		"wal_archive_bytes|117440512|NULL", "wal_archive_reconnects|3|NULL",
	})
}
