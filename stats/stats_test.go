package stats

import (
	"context"
	"testing"
	"time"
)

func TestHistogramCumulative(t *testing.T) {
	h := NewHistogram([]float64{1, 2, 5})
	for _, v := range []float64{0.5, 1, 1.5, 3, 10} {
		h.Observe(v)
	}
	snap := h.Snapshot()
	want := map[float64]uint64{1: 2, 2: 3, 5: 4}
	for b, n := range want {
		if snap.Buckets[b] != n {
			t.Errorf("bucket <= %v: %d, want %d", b, snap.Buckets[b], n)
		}
	}
	if snap.Count != 5 || snap.Sum != 16 {
		t.Errorf("count %d sum %v, want 5 and 16", snap.Count, snap.Sum)
	}
}

func TestCommandsByOutcome(t *testing.T) {
	var c Commands
	c.Record("INSTALL EXTENSION", OutcomeOK, time.Millisecond)
	c.Record("INSTALL EXTENSION", OutcomeOf("42P01"), 2*time.Second)
	c.Record("INSTALL EXTENSION", OutcomeOK, 3*time.Millisecond)
	c.Record("BASE BACKUP", OutcomeOf("bad"), time.Second)
	got := c.Snapshot()
	want := []struct {
		cmd, outcome string
		n            uint64
	}{{"BASE BACKUP", "XX", 1}, {"INSTALL EXTENSION", "42", 1}, {"INSTALL EXTENSION", "ok", 2}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, w := range want {
		if got[i].Command != w.cmd || got[i].Outcome != w.outcome || got[i].Duration.Count != w.n {
			t.Errorf("%d: got %s/%s x%d, want %s/%s x%d", i, got[i].Command, got[i].Outcome, got[i].Duration.Count, w.cmd, w.outcome, w.n)
		}
	}
}

func TestBackupsThroughContext(t *testing.T) {
	// A command run without a recorder must not fail.
	BackupsFrom(context.Background()).Record(1, time.Second, time.Now())

	var b Backups
	ctx := WithBackups(context.Background(), &b)
	end := time.Unix(1700000000, 0)
	BackupsFrom(ctx).Record(100, time.Second, end.Add(-time.Hour))
	BackupsFrom(ctx).Record(50, 2*time.Second, end)
	s := b.Snapshot()
	if s.Succeeded != 2 || s.Bytes != 150 || s.LastBytes != 50 || s.LastDuration != 2*time.Second || !s.LastSuccess.Equal(end) {
		t.Fatalf("got %+v", s)
	}
}

func TestSessionCounters(t *testing.T) {
	var s Session
	s.AddIn(10)
	s.AddIn(5)
	s.AddOut(7)
	s.AddQueries(2)
	s.AddTransactions(1)
	s.SetStatus('T')
	s.Touch()
	var c Client
	s.Fill(&c)
	if Counting {
		if c.BytesIn != 15 || c.BytesOut != 7 || c.Queries != 2 || c.Transactions != 1 ||
			c.State != InTransaction || c.LastMessageAt.IsZero() {
			t.Fatalf("got %+v", c)
		}
	}
	s.StartCommand("BASE BACKUP")
	s.Fill(&c)
	if c.State != Command || c.Command != "BASE BACKUP" {
		t.Fatalf("while a command runs: %+v", c)
	}
	s.EndCommand('E')
	c = Client{}
	s.Fill(&c)
	if c.State != FailedTransaction || c.Command != "" {
		t.Fatalf("after the command: %+v", c)
	}
	var tot Totals
	tot.AddSession(&s)
	tot.AddSession(&s)
	if Counting && (tot.BytesIn != 30 || tot.Queries != 4) {
		t.Fatalf("totals %+v", tot)
	}
}

func TestCounters(t *testing.T) {
	var c Counters
	c.Accept()
	c.Accept()
	c.Refuse(RefusedAuth)
	c.Refuse(Refusal(99)) // out of range: ignored, not a panic
	var tot Totals
	c.Fill(&tot)
	if tot.Accepted != 2 || tot.Refused[RefusedAuth] != 1 || tot.Refused[RefusedLimit] != 0 {
		t.Fatalf("got %+v", tot)
	}
}
