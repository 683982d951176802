package walsender

import (
	"testing"

	"github.com/pgverbs/pgverbs/walarchive"
)

// feedArchive records what the walsender hands the archive; the other
// methods are not reached here.
type feedArchive struct {
	Archive
	feedback []walarchive.Feedback
	demand   int
}

func (f *feedArchive) SetFeedback(fb walarchive.Feedback) { f.feedback = append(f.feedback, fb) }
func (f *feedArchive) SetDemand(n int)                    { f.demand = n }

func TestAggregateFeedback(t *testing.T) {
	a := &feedArchive{}
	s := NewServer(Config{Archive: a})
	old := &standby{info: Standby{Xmin: 4000000000, CatalogXmin: 0}, xminEpoch: 0}
	wrapped := &standby{info: Standby{Xmin: 100, CatalogXmin: 90}, xminEpoch: 1, catalogEpoch: 1}
	none := &standby{}
	for _, sb := range []*standby{old, wrapped, none} {
		s.register(sb)
	}
	if a.demand != 3 {
		t.Errorf("demand %d, want 3", a.demand)
	}
	s.aggregateFeedback()
	// Epoch 0's 4000000000 is older than epoch 1's 100: the minimum is
	// by full transaction id, not by the 32-bit xid.
	want := walarchive.Feedback{Xmin: 4000000000, CatalogXmin: 90, CatalogXminEpoch: 1}
	if got := a.feedback[len(a.feedback)-1]; got != want {
		t.Fatalf("feedback %+v, want %+v", got, want)
	}
	n := len(a.feedback)
	s.aggregateFeedback()
	if len(a.feedback) != n {
		t.Error("unchanged feedback sent again")
	}
	s.unregister(old)
	want = walarchive.Feedback{Xmin: 100, XminEpoch: 1, CatalogXmin: 90, CatalogXminEpoch: 1}
	if got := a.feedback[len(a.feedback)-1]; got != want || a.demand != 2 {
		t.Fatalf("after the old standby left: %+v (demand %d), want %+v", got, a.demand, want)
	}
	s.unregister(wrapped)
	if got := a.feedback[len(a.feedback)-1]; got != (walarchive.Feedback{}) {
		t.Fatalf("with no feedback left: %+v, want none", got)
	}
}
