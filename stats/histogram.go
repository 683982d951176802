package stats

import (
	"sync"
	"time"
)

// Histogram counts observations into cumulative buckets, as Prometheus
// histograms do. It takes a lock per observation: it is for rare events
// (backend connects, commands), never for relayed messages.
type Histogram struct {
	bounds []float64 // upper bounds, ascending

	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	count  uint64
}

// NewHistogram returns a histogram with the given upper bounds, which
// must ascend.
func NewHistogram(bounds []float64) *Histogram {
	return &Histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

// Observe records one value.
func (h *Histogram) Observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.count++
	h.mu.Unlock()
}

// ObserveDuration records d in seconds, the unit the metrics use.
func (h *Histogram) ObserveDuration(d time.Duration) { h.Observe(d.Seconds()) }

// HistogramSnapshot is a histogram's state at one moment.
type HistogramSnapshot struct {
	// Buckets maps each upper bound to the number of observations at or
	// below it (cumulative, +Inf left out: it is Count).
	Buckets map[float64]uint64
	Count   uint64
	Sum     float64
}

// Snapshot returns the histogram's state.
func (h *Histogram) Snapshot() HistogramSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	snap := HistogramSnapshot{Buckets: make(map[float64]uint64, len(h.bounds)), Count: h.count, Sum: h.sum}
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		snap.Buckets[b] = cum
	}
	return snap
}

// ConnectBuckets are the bounds, in seconds, of the backend connect
// latency: a local server answers in well under a millisecond, a remote one
// or one under load in tens of milliseconds, a failing one at the timeout.
var ConnectBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// CommandBuckets are the bounds, in seconds, of command durations: from a
// SHOW answered at once to a BASE BACKUP of a large cluster.
var CommandBuckets = []float64{0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600, 3600}
