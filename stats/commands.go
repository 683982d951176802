package stats

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// Commands records the pgverbs commands run, by command and outcome, with
// their durations. Commands are rare next to relayed messages, so a lock
// per record is cheap.
type Commands struct {
	mu sync.Mutex
	m  map[CommandKey]*Histogram
}

// CommandKey is what a command run is counted by. Both are bounded: the
// registered commands' names and the SQLSTATE classes.
type CommandKey struct {
	Command string // the command's name, e.g. "INSTALL EXTENSION"
	Outcome string // "ok", or the SQLSTATE class of its error, e.g. "42"
}

// CommandStats is the record of one command and outcome.
type CommandStats struct {
	CommandKey
	Duration HistogramSnapshot
}

// OutcomeOK is the outcome of a command that succeeded.
const OutcomeOK = "ok"

// OutcomeOf returns the outcome label of a command that failed with
// SQLSTATE code: its class, the first two characters. A malformed code
// counts as an internal error (XX).
func OutcomeOf(code string) string {
	if len(code) != 5 {
		return "XX"
	}
	return strings.ToUpper(code[:2])
}

// Record counts one run of command that ended with outcome after d.
func (c *Commands) Record(command, outcome string, d time.Duration) {
	k := CommandKey{Command: command, Outcome: outcome}
	c.mu.Lock()
	h := c.m[k]
	if h == nil {
		if c.m == nil {
			c.m = make(map[CommandKey]*Histogram)
		}
		h = NewHistogram(CommandBuckets)
		c.m[k] = h
	}
	c.mu.Unlock()
	h.ObserveDuration(d)
}

// Snapshot returns every command and outcome seen so far, sorted.
func (c *Commands) Snapshot() []CommandStats {
	c.mu.Lock()
	out := make([]CommandStats, 0, len(c.m))
	hs := make([]*Histogram, 0, len(c.m))
	for k, h := range c.m {
		out = append(out, CommandStats{CommandKey: k})
		hs = append(hs, h)
	}
	c.mu.Unlock()
	for i, h := range hs {
		out[i].Duration = h.Snapshot()
	}
	slices.SortFunc(out, func(a, b CommandStats) int {
		if n := strings.Compare(a.Command, b.Command); n != 0 {
			return n
		}
		return strings.Compare(a.Outcome, b.Outcome)
	})
	return out
}

// Backups records the base backups that succeeded. Their failures are
// counted by Commands, by outcome.
type Backups struct {
	mu sync.Mutex
	s  BackupStats
}

// BackupStats is what Backups recorded.
type BackupStats struct {
	Succeeded    uint64
	Bytes        uint64 // written by all the backups that succeeded
	LastBytes    uint64
	LastDuration time.Duration
	LastSuccess  time.Time // zero before the first
}

// Record counts a backup of n bytes that took d and succeeded at end. It
// does nothing on a nil Backups, so that a command run without one (tests)
// needs no check.
func (b *Backups) Record(n int64, d time.Duration, end time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.s.Succeeded++
	b.s.Bytes += uint64(max(n, 0))
	b.s.LastBytes = uint64(max(n, 0))
	b.s.LastDuration = d
	b.s.LastSuccess = end
}

// Snapshot returns what was recorded.
func (b *Backups) Snapshot() BackupStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.s
}

type backupsKey struct{}

// WithBackups returns ctx carrying b, for the BASE BACKUP command to
// report to: the engine that runs it holds the server's recorder, the
// command knows the size.
func WithBackups(ctx context.Context, b *Backups) context.Context {
	return context.WithValue(ctx, backupsKey{}, b)
}

// BackupsFrom returns the recorder WithBackups put in ctx, or nil (which
// Record accepts).
func BackupsFrom(ctx context.Context) *Backups {
	b, _ := ctx.Value(backupsKey{}).(*Backups)
	return b
}
