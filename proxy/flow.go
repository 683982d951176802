package proxy

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// flow is one direction of a session in the event-loop relay: bytes read
// from the source wait in buf until they are written to the destination,
// and message boundaries are found in place, without copying. buf holds
//
//	buf[head:scan]  framed and accounted for, still to be written;
//	buf[scan:tail]  read but not framed yet: a header that is not all
//	                here, or a message that must be seen whole first.
//
// A message passed through without being seen whole may be longer than
// buf: left counts its bytes still to come. buf is nil while nothing is in
// flight, so that an idle session holds no buffer.
type flow struct {
	buf              []byte
	pooled           *[]byte // buf's pool entry, when it came from flowBufs
	head, scan, tail int
	left             int
	// need is how many bytes the message at scan needs in buf before it
	// can be framed, when it cannot be yet.
	need int
}

// flowBufSize is the size of the pooled buffers flows read into.
const flowBufSize = bufSize

var flowBufs = sync.Pool{New: func() any { b := make([]byte, flowBufSize); return &b }}

// skipBody passes over the bytes of a message that is streamed through,
// reporting whether scan now sits at a message boundary with bytes after it.
func (f *flow) skipBody() bool {
	if f.left > 0 {
		n := min(f.left, f.tail-f.scan)
		f.scan += n
		f.left -= n
	}
	return f.left == 0 && f.scan < f.tail
}

// header reads the header of the message at scan, at a boundary: its type
// and total size (type byte included). ok is false, and need set, when the
// header is not all in buf yet. A length PostgreSQL could not send (under
// 4, over 1 GiB) is errFraming: the stream cannot be framed past it.
func (f *flow) header() (typ byte, total int, ok bool, err error) {
	if f.tail-f.scan < pgwire.HeaderLen {
		f.need = pgwire.HeaderLen
		return 0, 0, false, nil
	}
	n := binary.BigEndian.Uint32(f.buf[f.scan+1:])
	if n < 4 || n > 1<<30 {
		return 0, 0, false, fmt.Errorf("%w: %d", errFraming, n)
	}
	return f.buf[f.scan], int(n) + 1, true, nil
}

// whole returns the message at scan if all its total bytes are in buf;
// otherwise it sets need and returns nil.
func (f *flow) whole(total int) []byte {
	if f.tail-f.scan < total {
		f.need = total
		return nil
	}
	return f.buf[f.scan : f.scan+total]
}

// pass frames the message at scan: as much of it as buf holds becomes
// ready to write, and left counts the rest.
func (f *flow) pass(total int) {
	f.need = 0
	if avail := f.tail - f.scan; avail < total {
		f.scan = f.tail
		f.left = total - avail
		return
	}
	f.scan += total
}

// room makes space at the end of buf to read into. It is called only once
// everything framed was written (head == scan), so what buf holds is a
// message waiting to be whole: it moves to the front, and a buffer too
// small for it is replaced by one twice its size, or of the message's
// size if that is less.
func (f *flow) room() {
	if f.buf == nil {
		f.getBuf()
		return
	}
	if f.tail < len(f.buf) {
		return
	}
	if f.head > 0 {
		n := copy(f.buf, f.buf[f.head:f.tail])
		f.scan -= f.head
		f.tail = n
		f.head = 0
	}
	if f.tail == len(f.buf) {
		// Grown by doubling, not to need at once: a length word alone
		// must not make the proxy allocate up to 1 GiB before the bytes
		// that would fill it arrive.
		size := 2 * len(f.buf)
		if f.need > len(f.buf) && f.need < size {
			size = f.need
		}
		nb := make([]byte, size)
		copy(nb, f.buf[:f.tail])
		f.putBuf()
		f.buf = nb
	}
}

// idle drops the buffer once nothing is left in it.
func (f *flow) idle() {
	if f.buf != nil && f.head == f.tail {
		f.putBuf()
		f.buf = nil
		f.head, f.scan, f.tail = 0, 0, 0
	}
}

// getBuf takes buf from the pool.
func (f *flow) getBuf() {
	f.pooled = flowBufs.Get().(*[]byte)
	f.buf = *f.pooled
}

// putBuf returns buf to the pool if it came from there. The pool holds
// pointers, so that neither taking nor returning a buffer allocates.
func (f *flow) putBuf() {
	if f.pooled != nil {
		flowBufs.Put(f.pooled)
		f.pooled = nil
	}
}

// load appends b to what the flow holds, unframed: bytes read ahead by a
// reader that served the session before the flow did.
func (f *flow) load(b []byte) {
	if len(b) == 0 {
		return
	}
	if f.buf == nil {
		f.getBuf()
	}
	if len(f.buf)-f.tail < len(b) {
		nb := make([]byte, f.tail-f.head+len(b)+flowBufSize)
		n := copy(nb, f.buf[f.head:f.tail])
		f.putBuf()
		f.scan -= f.head
		f.buf, f.head, f.tail = nb, 0, n
	}
	f.tail += copy(f.buf[f.tail:], b)
}

// atBoundary reports whether everything framed ends between two messages.
func (f *flow) atBoundary() bool { return f.left == 0 }

// empty reports whether nothing is held at all.
func (f *flow) empty() bool { return f.head == f.tail && f.left == 0 }
