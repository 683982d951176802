package proxy

import (
	"encoding/binary"
	"fmt"

	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// framer finds message boundaries in a byte stream that arrives in chunks
// of any size, without copying it: the event-loop relay (issue 10, part 2)
// reads into a pooled buffer, writes the same bytes on, and only needs to
// know where each message starts, its type and its size. Between chunks it
// keeps the bytes still due of the message in flight and, when a chunk ended
// inside a header, that header's first bytes.
type framer struct {
	// left is how many bytes of the current message's body are still due.
	left int
	// hdr holds the first nhdr bytes of a header split across chunks.
	hdr  [pgwire.HeaderLen]byte
	nhdr int
}

// frame is one message start found by scan.
type frame struct {
	// off is the offset in the chunk of the message's first byte; negative
	// when its header began in an earlier chunk.
	off   int
	typ   byte
	total int // type byte included
}

// scan reports every message whose header completes in chunk, in order,
// appending to frames. A length word PostgreSQL could not send (under 4,
// over 1 GiB) is errFraming: the stream cannot be framed past it, and
// frames then hold the messages before it.
func (f *framer) scan(chunk []byte, frames []frame) ([]frame, error) {
	i := 0
	for i < len(chunk) {
		if f.left > 0 {
			n := min(f.left, len(chunk)-i)
			f.left -= n
			i += n
			continue
		}
		var hdr []byte
		off := i
		if f.nhdr > 0 || len(chunk)-i < pgwire.HeaderLen {
			n := copy(f.hdr[f.nhdr:], chunk[i:])
			f.nhdr += n
			i += n
			if f.nhdr < pgwire.HeaderLen {
				return frames, nil
			}
			off = i - pgwire.HeaderLen
			hdr = f.hdr[:]
			f.nhdr = 0
		} else {
			hdr = chunk[i : i+pgwire.HeaderLen]
			i += pgwire.HeaderLen
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n < 4 || n > 1<<30 {
			return frames, fmt.Errorf("%w: %d", errFraming, n)
		}
		frames = append(frames, frame{off: off, typ: hdr[0], total: int(n) + 1})
		f.left = int(n) - 4
	}
	return frames, nil
}

// atBoundary reports whether the stream so far ends between two messages.
func (f *framer) atBoundary() bool { return f.left == 0 && f.nhdr == 0 }
