package backup

import (
	"io"
	"sync"
)

// Sizes of a bufPipe: enough chunks that the goroutine reading the
// server's stream rarely waits for the one writing files, small enough to
// keep a backup's memory at a few MB.
const (
	pipeChunk = 256 << 10
	pipeDepth = 8
)

// bufPipe is io.Pipe with a buffer: Write copies into chunks and returns
// while the reader is still busy with earlier ones, so that receiving the
// stream and writing (or compressing) it run at the same time. io.Pipe
// hands each Write over directly, which leaves one side idle while the
// other works. One goroutine writes, one reads.
type bufPipe struct {
	full chan []byte // chunks ready for the reader; closed by Close
	free chan []byte // empty chunks for the writer
	stop chan struct{}

	cur []byte // the writer's chunk being filled

	once sync.Once
	rerr error // why the reader stopped, valid once stop is closed
	werr error // why the writer stopped, valid once full is closed

	wclosed bool // Close or CloseWrite was called
}

func newBufPipe() *bufPipe {
	p := &bufPipe{
		full: make(chan []byte, pipeDepth),
		free: make(chan []byte, pipeDepth),
		stop: make(chan struct{}),
	}
	for range pipeDepth {
		p.free <- make([]byte, 0, pipeChunk)
	}
	return p
}

// Write copies b into the pipe. It fails with the reader's error once the
// reader has stopped.
func (p *bufPipe) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		if p.cur == nil {
			select {
			case p.cur = <-p.free:
			case <-p.stop:
				return n, p.rerr
			}
		}
		k := copy(p.cur[len(p.cur):cap(p.cur)], b)
		p.cur = p.cur[:len(p.cur)+k]
		b = b[k:]
		n += k
		if len(p.cur) == cap(p.cur) {
			if err := p.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (p *bufPipe) flush() error {
	if len(p.cur) == 0 {
		return nil
	}
	select {
	case p.full <- p.cur:
		p.cur = nil
		return nil
	case <-p.stop:
		return p.rerr
	}
}

// Close ends the stream: WriteTo returns after the data written so far.
// It returns the reader's error if the reader stopped first.
func (p *bufPipe) Close() error {
	if p.wclosed {
		return nil
	}
	err := p.flush()
	p.wclosed = true
	close(p.full)
	return err
}

// CloseWrite ends the stream with an error, without waiting for the
// reader: WriteTo returns err, possibly before the last data written.
// Nothing may be written after it.
func (p *bufPipe) CloseWrite(err error) {
	if p.wclosed {
		return
	}
	p.wclosed = true
	p.werr = err
	close(p.full)
}

// WriteTo hands the chunks to w until Close (nil) or CloseWrite (its
// error). It is the reading side: io.Copy from the pipe uses it.
func (p *bufPipe) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for c := range p.full {
		k, err := w.Write(c)
		n += int64(k)
		p.free <- c[:0] // never blocks: free holds every chunk
		if err != nil {
			return n, err
		}
	}
	return n, p.werr
}

// CloseRead stops the reader: Write and Close then return err. The reader
// must not read after this.
func (p *bufPipe) CloseRead(err error) {
	p.once.Do(func() {
		p.rerr = err
		close(p.stop)
	})
}
