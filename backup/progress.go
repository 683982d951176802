package backup

import (
	"sync"
	"time"
)

// progress tracks a running backup and reports it to Options.Progress once
// a second from its own goroutine.
type progress struct {
	fn func(Progress)

	mu       sync.Mutex
	phase    string
	bytes    int64
	total    int64
	copyFrom time.Time // when copying began, for the rate

	stop chan struct{}
	done chan struct{}
}

func newProgress(fn func(Progress)) *progress {
	p := &progress{fn: fn, phase: "checkpoint"}
	if fn != nil {
		p.stop = make(chan struct{})
		p.done = make(chan struct{})
		go p.loop()
	}
	return p
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.fn(p.snapshot())
		}
	}
}

func (p *progress) snapshot() Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Progress{Phase: p.phase, Bytes: p.bytes, Total: p.total}
	if !p.copyFrom.IsZero() {
		if d := time.Since(p.copyFrom); d > 0 {
			s.Rate = int64(float64(p.bytes) / d.Seconds())
		}
	}
	return s
}

func (p *progress) setPhase(phase string) {
	p.mu.Lock()
	p.phase = phase
	if phase == "copying" && p.copyFrom.IsZero() {
		p.copyFrom = time.Now()
	}
	p.mu.Unlock()
}

func (p *progress) setTotal(total int64) {
	p.mu.Lock()
	p.total = total
	p.mu.Unlock()
}

// estimate is the backup's expected size as the server estimated it, 0
// before it said.
func (p *progress) estimate() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

func (p *progress) add(n int64) {
	p.mu.Lock()
	p.bytes += n
	p.mu.Unlock()
}

// close stops the reporting goroutine; with success, a last report with
// Phase "done" follows.
func (p *progress) close(success bool) {
	if p.fn == nil {
		return
	}
	close(p.stop)
	<-p.done
	if success {
		p.setPhase("done")
		p.fn(p.snapshot())
	}
}
