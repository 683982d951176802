package walarchive

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/walstream"
)

const retSegSize = 16 << 20

var retNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// seg is a segment of the table tests, completed hoursAgo before retNow
// (negative: unknown).
func seg(tli uint32, segno uint64, state SegmentState, hoursAgo float64) SegmentInfo {
	f := SegmentInfo{Name: segNoName(tli, segno, retSegSize), Timeline: tli, Start: segno * retSegSize, End: (segno + 1) * retSegSize, State: state, Bytes: retSegSize}
	switch state {
	case SegCompressed:
		f.Name += compressedSuffix
		f.Bytes = 1 << 20
	case SegPartial:
		f.Name += partialSuffix
	}
	if hoursAgo >= 0 {
		f.CompletedAt = retNow.Add(-time.Duration(hoursAgo * float64(time.Hour)))
	}
	return f
}

func history(tli uint32) SegmentInfo {
	return SegmentInfo{Name: HistoryName(tli), Timeline: tli, State: SegHistory, Bytes: 40, CompletedAt: retNow.Add(-1000 * time.Hour)}
}

func names(fs ...SegmentInfo) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func TestPlanRemoval(t *testing.T) {
	c := func(segno uint64, hoursAgo float64) SegmentInfo { return seg(1, segno, SegComplete, hoursAgo) }
	five := []SegmentInfo{c(1, 10), c(2, 9), c(3, 7), c(4, 6), c(5, 5)}
	old := []SegmentInfo{c(1, 50), c(2, 40), c(3, 30), c(4, 20)}
	switched := []SegmentInfo{history(2), c(1, 50), c(2, 40), seg(1, 3, SegPartial, 30), seg(2, 3, SegComplete, 29), seg(2, 4, SegCompressed, 28), seg(2, 5, SegComplete, 27), seg(2, 6, SegPartial, -1)}
	for _, tc := range []struct {
		name      string
		files     []SegmentInfo
		p         Protect
		retention time.Duration
		maxSize   int64
		want      []string
	}{
		{name: "no limits", files: old},
		{name: "by age", files: five, retention: 8 * time.Hour, want: names(five[0], five[1])},
		{name: "completed exactly at the cutoff stays", files: five, retention: 9 * time.Hour, want: names(five[0])},
		{name: "never the newest complete segment", files: old, retention: time.Hour, want: names(old[:3]...)},
		{name: "unsorted input", files: []SegmentInfo{old[3], old[1], old[0], old[2]}, retention: time.Hour, want: names(old[:3]...)},
		{name: "slot restart inside segment 3", files: old, retention: time.Hour, p: Protect{SlotRestart: 3*retSegSize + 100}, want: names(old[:2]...)},
		{name: "backup start below the slot", files: old, retention: time.Hour, p: Protect{SlotRestart: 4*retSegSize + 1, BackupStart: 2*retSegSize + 40}, want: names(old[0])},
		{name: "slot below the backup start", files: old, retention: time.Hour, p: Protect{SlotRestart: 2 * retSegSize, BackupStart: 3 * retSegSize}, want: names(old[0])},
		{name: "protection at a segment's start keeps it, not the one before", files: old, retention: time.Hour, p: Protect{BackupStart: 3 * retSegSize}, want: names(old[:2]...)},
		{name: "protection below everything", files: old, retention: time.Hour, p: Protect{SlotRestart: 100}},
		{name: "a young oldest segment stops the run: no gap", files: []SegmentInfo{c(1, 1), c(2, 50), c(3, 40), c(4, 1)}, retention: 8 * time.Hour},
		{name: "unknown completion time is not old", files: []SegmentInfo{c(1, -1), c(2, 50), c(3, 40)}, retention: 8 * time.Hour},
		{name: "by size, oldest first", files: five, maxSize: 3 * retSegSize, want: names(five[0], five[1])},
		{name: "size counts every file", files: append([]SegmentInfo{history(2)}, five...), maxSize: 3 * retSegSize, want: names(five[0], five[1], five[2])},
		{name: "size under the protections: the archive stays above", files: five, maxSize: retSegSize, p: Protect{SlotRestart: 2*retSegSize + 1}, want: names(five[0])},
		{name: "size reached: age alone goes on", files: five, maxSize: 4 * retSegSize, retention: 8 * time.Hour, want: names(five[0], five[1])},
		{name: "age reached: size alone goes on", files: five, maxSize: 2 * retSegSize, retention: 9 * time.Hour, want: names(five[:3]...)},
		{name: "size with unknown times", files: []SegmentInfo{c(1, -1), c(2, -1), c(3, -1)}, maxSize: 2 * retSegSize, want: names(c(1, -1))},
		{name: "across a timeline switch: never history or .partial", files: switched, retention: time.Hour, want: names(switched[1], switched[2], switched[4], switched[5])},
		{name: "compressed segments count their own bytes", files: []SegmentInfo{seg(1, 1, SegCompressed, 1), seg(1, 2, SegCompressed, 1), c(3, 1), c(4, 1)}, maxSize: 2*retSegSize + 1<<20, want: names(seg(1, 1, SegCompressed, 1))},
		{name: "NAME and NAME.zst go together", files: []SegmentInfo{c(1, 50), seg(1, 1, SegCompressed, 49), c(2, 40), seg(1, 2, SegCompressed, 39), c(3, 30)}, retention: time.Hour,
			want: []string{c(1, 50).Name, seg(1, 1, SegCompressed, 49).Name, c(2, 40).Name, seg(1, 2, SegCompressed, 39).Name}},
		{name: "NAME and NAME.zst of the newest stay", files: []SegmentInfo{c(1, 50), c(2, 40), seg(1, 2, SegCompressed, 39)}, retention: time.Hour, want: names(c(1, 50))},
		{name: "NAME and NAME.zst are as old as the older", files: []SegmentInfo{seg(1, 1, SegCompressed, 1), c(1, 50), c(2, 1)}, retention: 8 * time.Hour,
			want: []string{seg(1, 1, SegCompressed, 1).Name, c(1, 50).Name}},
		{name: "only a partial", files: []SegmentInfo{history(2), seg(1, 7, SegPartial, 100)}, retention: time.Hour, maxSize: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanRemoval(tc.files, tc.p, retNow, tc.retention, tc.maxSize)
			if !slices.Equal(got, tc.want) {
				t.Errorf("PlanRemoval = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestProtectKeepFrom(t *testing.T) {
	for _, tc := range []struct {
		p    Protect
		want uint64
	}{
		{Protect{}, 0},
		{Protect{SlotRestart: 5}, 5},
		{Protect{BackupStart: 7}, 7},
		{Protect{SlotRestart: 9, BackupStart: 7}, 7},
		{Protect{SlotRestart: 3, BackupStart: 7}, 3},
	} {
		if got := tc.p.KeepFrom(); got != tc.want {
			t.Errorf("%+v.KeepFrom() = %d, want %d", tc.p, got, tc.want)
		}
	}
}

// label is a backup_label as PostgreSQL 15 writes it.
func label(lsn, startTime string, tli int) string {
	return "START WAL LOCATION: " + lsn + " (file 000000010000000000000002)\n" +
		"CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n" +
		"START TIME: " + startTime + "\nLABEL: pgverbs base backup\nSTART TIMELINE: " + strconv.Itoa(tli) + "\n"
}

// manifest is a backup_manifest as backup/manifest.go writes it, with the
// WAL ranges given as "tli start" pairs.
func manifest(labelModified string, ranges ...string) string {
	var b strings.Builder
	b.WriteString("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n")
	b.WriteString(`{ "Path": "PG_VERSION", "Size": 3, "Last-Modified": "2026-11-30 08:00:00 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "64440205" },` + "\n")
	b.WriteString(`{ "Path": "backup_label", "Size": 225, "Last-Modified": "` + labelModified + `", "Checksum-Algorithm": "CRC32C", "Checksum": "9ab3f1c2" }`)
	b.WriteString("\n],\n\"WAL-Ranges\": [\n")
	for i, r := range ranges {
		tli, lsn, _ := strings.Cut(r, " ")
		if i > 0 {
			b.WriteString(",\n")
		}
		b.WriteString(`{ "Timeline": ` + tli + `, "Start-LSN": "` + lsn + `", "End-LSN": "0/9000100" }`)
	}
	b.WriteString("\n],\n\"Manifest-Checksum\": \"00\"}\n")
	return b.String()
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBackupStarts lays out a backup root as BASE BACKUP fills it: plain
// backups (backup_label, backup_manifest and the data directory, which
// holds things named like backup files that must not count), a tar backup
// (backup_manifest beside base.tar), one still running, a WAL archive, a
// link out of the root.
func TestBackupStarts(t *testing.T) {
	root := t.TempDir()
	control := make([]byte, 8192)
	binary.LittleEndian.PutUint64(control, 7434123456789012345)
	writeFiles(t, root, map[string]string{
		"daily/2026-12-01/backup_label":      label("0/2000028", "2026-12-01 10:00:00 UTC", 1),
		"daily/2026-12-01/backup_manifest":   manifest("2026-12-01 10:00:00 GMT", "1 0/2000028"),
		"daily/2026-12-01/global/pg_control": string(control),
		"daily/2026-12-01/PG_VERSION":        "15\n",
		// Inside a backup's data directory: not a backup of its own.
		"daily/2026-12-01/base/1/backup_label":    label("0/1000028", "2026-01-01 00:00:00 UTC", 1),
		"daily/2026-12-01/pg_wal/backup_manifest": "not even JSON",
		"daily/2026-12-02/backup_label":           label("0/5000028", "2026-12-02 10:00:00 +03", 2),
		"tar/base.tar":                            "",
		"tar/pg_wal.tar":                          "",
		"tar/backup_manifest":                     manifest("2026-12-02 20:15:30 GMT", "3 0/9000000", "2 0/8000028"),
		"cet/backup_label":                        label("0/A000028", "2026-12-03 09:00:00 CET", 3),
		"cet/backup_manifest":                     manifest("2026-12-03 08:00:00 GMT", "3 0/A000028"),
		"running/backup_label":                    label("0/B000028", "2026-12-03 11:00:00 UTC", 3),
		"running/" + backupMarker:                 "",
		"archive/" + StateFile:                    "{}",
		"archive/000000010000000000000002":        "",
		"archive/backup_label":                    label("0/1000028", "2026-12-03 11:00:00 UTC", 1),
		"empty/nothing/here":                      "",
	})
	outside := t.TempDir()
	writeFiles(t, outside, map[string]string{"backup_label": label("0/1000028", "2026-12-03 11:00:00 UTC", 1)})
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	// The root is reached through a link, as a configured path may be.
	viaLink := filepath.Join(t.TempDir(), "backups")
	if err := os.Symlink(root, viaLink); err != nil {
		t.Fatal(err)
	}
	got, err := BackupStarts(viaLink)
	if err != nil {
		t.Fatal(err)
	}
	want := []BackupStart{
		{Dir: "cet", Start: 0xA000028, Timeline: 3, Time: time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)},
		{Dir: "daily/2026-12-01", Start: 0x2000028, Timeline: 1, Time: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), SystemID: 7434123456789012345},
		{Dir: "daily/2026-12-02", Start: 0x5000028, Timeline: 2, Time: time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)},
		{Dir: "tar", Start: 0x8000028, Timeline: 2, Time: time.Date(2026, 12, 2, 20, 15, 30, 0, time.UTC)},
	}
	if len(got) != len(want) {
		t.Fatalf("BackupStarts = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Dir != w.Dir || g.Start != w.Start || g.Timeline != w.Timeline || !g.Time.Equal(w.Time) || g.SystemID != w.SystemID {
			t.Errorf("backup %d = %+v, want %+v", i, g, w)
		}
	}

	for _, tc := range []struct{ name, newest string }{
		{"2026-12-02 20:15:30", "daily/2026-12-02"},
		{"2026-12-02 20:15:31", "tar"},
		{"2026-12-10 00:00:00", "cet"},
		{"2026-12-01 10:00:00", ""},
	} {
		at, _ := time.Parse(time.DateTime, tc.name)
		b, ok := NewestBefore(got, at)
		if ok != (tc.newest != "") || b.Dir != tc.newest {
			t.Errorf("NewestBefore(%s) = %q, %v, want %q", tc.name, b.Dir, ok, tc.newest)
		}
	}
}

func TestBackupStartsRefusesWhatItCannotRead(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"manifest not JSON", map[string]string{"b/backup_manifest": "{ \"Files\": ["}},
		{"manifest without WAL ranges", map[string]string{"b/backup_manifest": `{"Files": []}`}},
		{"bad LSN in the manifest", map[string]string{"b/backup_manifest": manifest("2026-12-01 10:00:00 GMT", "1 0/zz")}},
		{"label without a start", map[string]string{"b/backup_label": "LABEL: x\n"}},
		{"label without a timeline", map[string]string{"b/backup_label": "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tc.files)
			if got, err := BackupStarts(root); err == nil || !strings.Contains(err.Error(), "backup b:") {
				t.Fatalf("BackupStarts = %+v, %v; want an error naming backup b", got, err)
			}
		})
	}
}

func TestNewestBeforeTies(t *testing.T) {
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	starts := []BackupStart{{Dir: "a", Start: 500, Time: at}, {Dir: "b", Start: 300, Time: at}, {Dir: "c", Start: 900, Time: at.Add(time.Hour)}}
	if b, ok := NewestBefore(starts, at.Add(time.Minute)); !ok || b.Dir != "b" {
		t.Errorf("NewestBefore = %q, %v; want b, which needs more WAL", b.Dir, ok)
	}
}

// TestBackupStartsRealBackups takes a plain and a tar backup of a real
// cluster with pg_basebackup into a backup root and finds their starts.
func TestBackupStartsRealBackups(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{})
	ctx := context.Background()
	root, err := pgtest.ServerDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	before := time.Now().Truncate(time.Second)
	for _, b := range []struct{ dir, format string }{{"plain", "p"}, {"nightly/tar", "t"}} {
		if err := runServerBin(c, "pg_basebackup", "-d", c.SuperURL(), "-D", filepath.Join(root, b.dir), "-F", b.format, "-c", "fast"); err != nil {
			t.Fatal(err)
		}
	}
	after := time.Now()
	lsn, err := checkQuery(ctx, c, "SELECT pg_current_wal_lsn()")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := walstream.ParseLSN(lsn)
	sysid, err := checkQuery(ctx, c, "SELECT system_identifier FROM pg_control_system()")
	if err != nil {
		t.Fatal(err)
	}
	got, err := BackupStarts(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Dir != "nightly/tar" || got[1].Dir != "plain" {
		t.Fatalf("BackupStarts = %+v", got)
	}
	for _, b := range got {
		if b.Start == 0 || b.Start > end || b.Timeline != 1 || b.Time.Before(before) || b.Time.After(after) {
			t.Errorf("%s: %+v (WAL now at %s, backups taken from %v to %v)", b.Dir, b, lsn, before, after)
		}
	}
	if got[0].Start <= got[1].Start {
		t.Errorf("the tar backup, taken second, starts at %s, the plain one at %s", walstream.FormatLSN(got[0].Start), walstream.FormatLSN(got[1].Start))
	}
	if strconv.FormatUint(got[1].SystemID, 10) != sysid || got[0].SystemID != 0 {
		t.Errorf("system ids %d and %d, the cluster's is %s", got[0].SystemID, got[1].SystemID, sysid)
	}
}
