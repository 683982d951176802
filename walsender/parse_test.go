package walsender

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		sql  string
		want command
		ok   bool
	}{
		{"IDENTIFY_SYSTEM", command{kind: cmdIdentifySystem}, true},
		{"identify_system;", command{kind: cmdIdentifySystem}, true},
		{"TIMELINE_HISTORY 2", command{kind: cmdTimelineHistory, timeline: 2}, true},
		{"SHOW wal_segment_size", command{kind: cmdShow, name: "wal_segment_size"}, true},
		{"SHOW Data_Directory_Mode", command{kind: cmdShow, name: "data_directory_mode"}, true},
		{"SHOW server_version", command{}, false},
		{"READ_REPLICATION_SLOT s1", command{kind: cmdReadSlot, name: "s1"}, true},
		{`CREATE_REPLICATION_SLOT "pg_walreceiver_123" TEMPORARY PHYSICAL (RESERVE_WAL)`,
			command{kind: cmdCreateSlot, name: "pg_walreceiver_123", temporary: true, reserve: true}, true},
		{"CREATE_REPLICATION_SLOT s PHYSICAL RESERVE_WAL", command{kind: cmdCreateSlot, name: "s", reserve: true}, true},
		{"CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL false)", command{kind: cmdCreateSlot, name: "s"}, true},
		{"CREATE_REPLICATION_SLOT s PHYSICAL (RESERVE_WAL 'on')", command{kind: cmdCreateSlot, name: "s", reserve: true}, true},
		{"CREATE_REPLICATION_SLOT s PHYSICAL", command{kind: cmdCreateSlot, name: "s"}, true},
		{"CREATE_REPLICATION_SLOT s LOGICAL pgoutput", command{}, false},
		{"CREATE_REPLICATION_SLOT s PHYSICAL (TWO_PHASE)", command{}, false},
		{"DROP_REPLICATION_SLOT s WAIT", command{kind: cmdDropSlot, name: "s", wait: true}, true},
		{"DROP_REPLICATION_SLOT \"S\"", command{kind: cmdDropSlot, name: "S"}, true},
		{"START_REPLICATION SLOT \"s\" 0/5000000 TIMELINE 1", command{kind: cmdStart, name: "s", lsn: 0x5000000, timeline: 1}, true},
		{"START_REPLICATION PHYSICAL 1A/FF000000", command{kind: cmdStart, lsn: 0x1AFF000000}, true},
		{"start_replication 0/0", command{kind: cmdStart}, true},
		{"START_REPLICATION SLOT s LOGICAL 0/0", command{}, false},
		{"START_REPLICATION 0/ TIMELINE 1", command{}, false},
		{"BASE_BACKUP (CHECKPOINT 'fast')", command{}, false},
		{"SELECT 1", command{}, false},
		{"IDENTIFY_SYSTEM extra", command{}, false},
		{"", command{}, false},
		{"'unterminated", command{}, false},
	}
	for _, tc := range tests {
		got, ok := parse(tc.sql)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v, %v", tc.sql, got, ok, tc.want, tc.ok)
		}
	}
}

func TestIsReplicationCommand(t *testing.T) {
	for sql, want := range map[string]bool{
		"BASE_BACKUP": true, "show x": true, "SELECT 1": false, `"IDENTIFY_SYSTEM"`: false, "": false,
	} {
		if got := isReplicationCommand(sql); got != want {
			t.Errorf("isReplicationCommand(%q) = %v", sql, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"IDENTIFY_SYSTEM", "START_REPLICATION SLOT \"s\" 0/5000000 TIMELINE 1",
		"CREATE_REPLICATION_SLOT s TEMPORARY PHYSICAL (RESERVE_WAL)", "'x''y'", "\"a\"\"b\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		c, ok := parse(sql)
		if !ok && c != (command{}) {
			t.Fatalf("refused %q but returned %+v", sql, c)
		}
	})
}

func TestSwitchPoint(t *testing.T) {
	// Timeline 4's history: 1 ended at 0/3000000, 2 at 0/5000000 (3
	// was abandoned: never in the file), so 2 is followed by 4.
	h := parseHistory([]byte("1\t0/3000000\tno recovery target specified\n\n# note\n2\t0/5000000\tbefore 2000-01-01\n"))
	if len(h) != 2 {
		t.Fatalf("parseHistory: %+v", h)
	}
	for _, tc := range []struct {
		tli      uint32
		end      uint64
		next     uint32
		ok       bool
		lsn      uint64
		timeline uint32
	}{
		{1, 0x3000000, 2, true, 0x2FFFFFF, 1},
		{2, 0x5000000, 4, true, 0x3000000, 2},
		{3, 0, 0, false, 0x5000000, 4},
	} {
		end, next, ok := switchPoint(tc.tli, 4, h)
		if end != tc.end || next != tc.next || ok != tc.ok {
			t.Errorf("switchPoint(%d) = %X %d %v", tc.tli, end, next, ok)
		}
		if got := timelineOf(tc.lsn, 4, h); got != tc.timeline {
			t.Errorf("timelineOf(%X) = %d, want %d", tc.lsn, got, tc.timeline)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[uint64]string{16 << 20: "16MB", 1 << 30: "1GB", 1536 << 10: "1536kB", 1000: "1000B"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestLagTracker(t *testing.T) {
	var l lagTracker
	t0 := pgEpoch
	for i := 1; i <= 300; i++ { // more than the ring holds
		l.sent(uint64(i*100), t0.Add(timeMS(i)))
	}
	d, ok := l.lag(1, 30000, t0.Add(timeMS(310)))
	if !ok || d != timeMS(10) {
		t.Errorf("lag at the newest sample: %v %v, want 10ms", d, ok)
	}
	if _, ok := l.lag(1, 30000, t0.Add(timeMS(320))); ok {
		t.Error("a sample was read twice")
	}
}

func timeMS(n int) time.Duration { return time.Duration(n) * time.Millisecond }
