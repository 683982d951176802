package stats

import (
	"context"
	"sync"
	"time"
)

// Rates are told over the last WindowSpan from samples WindowStep apart.
const (
	WindowSpan = 60 * time.Second
	WindowStep = time.Second
)

// Window keeps recent samples of a Source's Totals, so that a reader can
// tell rates over the last WindowSpan (SHOW PGVERBS STATS). It samples
// only the server-wide totals, never per client, and costs the relay
// nothing: the Source folds its counters when asked, as for a scrape.
//
// Samples come from Run, once every WindowStep, and from each Read, so
// that a Window nobody runs still works; it then tells rates over the
// time since the oldest read it keeps, which Reading.Span gives.
type Window struct {
	src Source
	now func() time.Time

	mu sync.Mutex
	// samples are oldest first. Only samples[0] may be older than
	// WindowSpan: it is the base the rates are told from. Samples are at
	// least WindowStep/2 apart, so there are never more than about
	// 2*WindowSpan/WindowStep of them.
	samples []sample
}

type sample struct {
	at time.Time
	t  Totals
}

// NewWindow returns a Window over src that reads the time from now (nil:
// time.Now); tests pass a fake clock.
func NewWindow(src Source, now func() time.Time) *Window {
	if now == nil {
		now = time.Now
	}
	return &Window{src: src, now: now}
}

// Run samples every WindowStep until ctx is done. One Run serves every
// reader; its owner starts it once.
func (w *Window) Run(ctx context.Context) {
	tick := time.NewTicker(WindowStep)
	defer tick.Stop()
	for {
		w.Sample()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Sample records the Source's totals now.
func (w *Window) Sample() { w.record(w.now(), w.src.Totals()) }

// Read returns the totals now and the sample the rates are told from.
func (w *Window) Read() Reading {
	at, cur := w.now(), w.src.Totals()
	base := w.record(at, cur)
	return Reading{Now: cur, base: base.t, Span: at.Sub(base.at)}
}

// record keeps t, sampled at at, unless the newest sample is less than
// half a step older (a read just after a tick), drops what is past the
// span, and returns the base sample.
func (w *Window) record(at time.Time, t Totals) sample {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.samples); n == 0 || at.Sub(w.samples[n-1].at) >= WindowStep/2 {
		w.samples = append(w.samples, sample{at, t})
	}
	drop := 0
	for drop+1 < len(w.samples) && !w.samples[drop+1].at.After(at.Add(-WindowSpan)) {
		drop++
	}
	if drop > 0 {
		// Copy down rather than reslice, so the array does not grow
		// without bound as the window slides.
		w.samples = append(w.samples[:0], w.samples[drop:]...)
	}
	return w.samples[0]
}

// Reading is what Window.Read returns.
type Reading struct {
	// Now are the totals at the time of the read.
	Now  Totals
	base Totals
	// Span is the time the rates are over: WindowSpan once the Window has
	// been sampled that long, less before, zero when it has no earlier
	// sample (the first read of a Window nobody runs).
	Span time.Duration
}

// PerSecond returns the rate of the counter that get picks from Totals
// over r.Span, and false when r.Span is zero. A counter lower than at the
// base (a Source that was replaced, see Deferred) counts from zero.
func (r Reading) PerSecond(get func(Totals) uint64) (float64, bool) {
	if r.Span <= 0 {
		return 0, false
	}
	now, base := get(r.Now), get(r.base)
	if now < base {
		base = 0
	}
	return float64(now-base) / r.Span.Seconds(), true
}
