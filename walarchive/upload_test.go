package walarchive

import (
	"slices"
	"testing"
	"time"
)

// TestUploadPlan checks what the uploader counts as pending, in which
// order, and what it lets retention remove.
func TestUploadPlan(t *testing.T) {
	const seg = 16 << 20
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	files := []SegmentInfo{
		{Name: "00000002.history", State: SegHistory, Bytes: 42, CompletedAt: at},
		{Name: "000000010000000000000001.zst", Timeline: 1, Start: 1 * seg, End: 2 * seg, State: SegCompressed, Bytes: 100, CompletedAt: at},
		{Name: "000000010000000000000002", Timeline: 1, Start: 2 * seg, End: 3 * seg, State: SegComplete, Bytes: seg, CompletedAt: at.Add(time.Minute)},
		{Name: "000000010000000000000002.zst", Timeline: 1, Start: 2 * seg, End: 3 * seg, State: SegCompressed, Bytes: 200, CompletedAt: at.Add(2 * time.Minute)},
		{Name: "000000010000000000000003", Timeline: 1, Start: 3 * seg, End: 4 * seg, State: SegComplete, Bytes: seg, CompletedAt: at.Add(3 * time.Minute)},
		{Name: "000000010000000000000004.partial", Timeline: 1, Start: 4 * seg, End: 5 * seg, State: SegPartial, Bytes: seg},
	}
	u := &uploader{url: "storage://x/wal", done: map[string]bool{}}
	names := func(fs []SegmentInfo) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Name)
		}
		return out
	}
	// Nothing known yet: everything but the .partial is pending, the
	// compressed copy preferred, and retention may remove nothing.
	got := names(u.pendingLocked(files, false))
	want := []string{"00000002.history", "000000010000000000000001.zst", "000000010000000000000002.zst", "000000010000000000000003"}
	if !slices.Equal(got, want) {
		t.Fatalf("pending: %v, want %v", got, want)
	}
	// With COMPRESSION zstd a segment not compressed yet waits.
	if got := names(u.pendingLocked(files, true)); slices.Contains(got, "000000010000000000000003") || len(got) != 3 {
		t.Fatalf("pending with zstd: %v", got)
	}
	if _, ok := u.floor(files); ok {
		t.Fatal("floor known before the listing")
	}
	if got := u.onlyUploaded([]string{"000000010000000000000001.zst"}); len(got) != 0 {
		t.Fatalf("removal allowed before the listing: %v", got)
	}
	st := u.status(files, at.Add(10*time.Minute))
	if st.PendingFiles != 4 || st.PendingBytes != 42+100+200+seg || st.OldestPending != "00000002.history" || st.OldestPendingSeconds != 600 {
		t.Fatalf("status: %+v", st)
	}

	// Segment 1 and the history file uploaded.
	u.known = true
	u.done["00000002.history"], u.done["000000010000000000000001"] = true, true
	if lsn, ok := u.floor(files); !ok || lsn != 2*seg {
		t.Fatalf("floor %d %v, want %d", lsn, ok, 2*seg)
	}
	plan := []string{"000000010000000000000001.zst", "000000010000000000000002", "000000010000000000000002.zst"}
	if got := u.onlyUploaded(plan); !slices.Equal(got, plan[:1]) {
		t.Fatalf("onlyUploaded: %v", got)
	}
	// The floor protects through PlanRemoval as well: MAX_SIZE 1 would
	// remove everything but the newest complete segment.
	p := Protect{NotUploaded: 2 * seg}
	if got := PlanRemoval(files, p, at.Add(time.Hour), 0, 1); !slices.Equal(got, []string{"000000010000000000000001.zst"}) {
		t.Fatalf("PlanRemoval with NotUploaded: %v", got)
	}
	if k := (Protect{SlotRestart: 5 * seg, BackupStart: 3 * seg, NotUploaded: 2 * seg}).KeepFrom(); k != 2*seg {
		t.Fatalf("KeepFrom %d", k)
	}
	if k := (Protect{SlotRestart: 5 * seg}).KeepFrom(); k != 5*seg {
		t.Fatalf("KeepFrom %d", k)
	}
	st = u.status(files, at.Add(10*time.Minute))
	if st.PendingFiles != 2 || st.OldestPending != "000000010000000000000002" {
		t.Fatalf("status after uploads: %+v", st)
	}
}
