package stats

import (
	"context"
	"testing"
	"time"
)

// fakeSource reports the totals a test sets.
type fakeSource struct{ t Totals }

func (f *fakeSource) Clients() []Client { return nil }
func (f *fakeSource) Totals() Totals    { return f.t }

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestWindow() (*Window, *fakeSource, *fakeClock) {
	src, clk := &fakeSource{}, &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return NewWindow(src, clk.now), src, clk
}

func queries(t Totals) uint64 { return t.Queries }

func perSecond(t *testing.T, r Reading) float64 {
	t.Helper()
	v, ok := r.PerSecond(queries)
	if !ok {
		t.Fatalf("no rate (span %v)", r.Span)
	}
	return v
}

func TestWindowFirstReadHasNoRate(t *testing.T) {
	w, src, _ := newTestWindow()
	src.t.Queries = 7
	r := w.Read()
	if r.Now.Queries != 7 || r.Span != 0 {
		t.Fatalf("Read = %+v, want Now.Queries 7 and Span 0", r)
	}
	if _, ok := r.PerSecond(queries); ok {
		t.Fatal("PerSecond reported a rate without an earlier sample")
	}
}

// TestWindowRateOverLastSpan samples once a second, as Run does: the rate
// is over the last minute only, and the samples kept stay bounded.
func TestWindowRateOverLastSpan(t *testing.T) {
	w, src, clk := newTestWindow()
	step := func(n int, perSec uint64) {
		for range n {
			w.Sample()
			clk.advance(WindowStep)
			src.t.Queries += perSec
		}
	}
	step(10, 4)
	r := w.Read()
	if r.Span != 10*time.Second || perSecond(t, r) != 4 {
		t.Fatalf("after 10 s at 4/s: span %v, rate %v", r.Span, perSecond(t, r))
	}
	step(110, 10) // well past the span at 10/s
	r = w.Read()
	if r.Span != WindowSpan || perSecond(t, r) != 10 {
		t.Fatalf("after 2 min at 10/s: span %v, rate %v, want %v and 10", r.Span, perSecond(t, r), WindowSpan)
	}
	step(30, 0) // half the span idle
	if got := perSecond(t, w.Read()); got != 5 {
		t.Fatalf("half a minute idle after 10/s: rate %v, want 5", got)
	}
	step(60, 0)
	if got := perSecond(t, w.Read()); got != 0 {
		t.Fatalf("a minute idle: rate %v, want 0", got)
	}
	if n := len(w.samples); n > int(WindowSpan/WindowStep)+2 {
		t.Fatalf("%d samples kept, want at most %d", n, int(WindowSpan/WindowStep)+2)
	}
}

// TestWindowReadsBetweenTicks: many reads within a step add no samples, so
// a busy SHOW cannot grow the window.
func TestWindowReadsBetweenTicks(t *testing.T) {
	w, _, clk := newTestWindow()
	w.Sample()
	for range 1000 {
		clk.advance(time.Millisecond)
		w.Read()
	}
	// 1 s of reads: the first sample, then one per half step.
	if n := len(w.samples); n > 3 {
		t.Fatalf("%d samples after 1000 reads in a second, want at most 3", n)
	}
}

// TestWindowUnrun: without Run, reads alone sample, and the rate is over
// the time since the base read.
func TestWindowUnrun(t *testing.T) {
	w, src, clk := newTestWindow()
	w.Read()
	clk.advance(20 * time.Second)
	src.t.Queries = 100
	r := w.Read()
	if r.Span != 20*time.Second || perSecond(t, r) != 5 {
		t.Fatalf("span %v rate %v, want 20s and 5", r.Span, perSecond(t, r))
	}
}

func TestWindowCounterRestarts(t *testing.T) {
	w, src, clk := newTestWindow()
	src.t.Queries = 1000
	w.Sample()
	clk.advance(10 * time.Second)
	src.t.Queries = 50 // a new Source behind a Deferred
	if got := perSecond(t, w.Read()); got != 5 {
		t.Fatalf("rate %v after a restart to 50 in 10 s, want 5", got)
	}
}

func TestWindowRunSamplesUntilDone(t *testing.T) {
	w, _, _ := newTestWindow()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.Run(ctx) // returns: ctx is done
	if len(w.samples) != 1 {
		t.Fatalf("Run took %d samples before stopping, want 1", len(w.samples))
	}
}
