package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// refFrames frames a whole stream the obvious way: the reference for scan.
func refFrames(in []byte) (frames []frame, complete bool, err error) {
	off := 0
	for len(in)-off >= 5 {
		n := binary.BigEndian.Uint32(in[off+1:])
		if n < 4 || n > 1<<30 {
			return frames, false, errFraming
		}
		frames = append(frames, frame{off: off, typ: in[off], total: int(n) + 1})
		off += int(n) + 1
	}
	return frames, off == len(in), nil
}

// FuzzFramer cuts a stream into chunks at the sizes the fuzzer picks, as
// reads of a socket would, and checks that a flow finds the same messages,
// at the same stream offsets, as framing the whole stream at once, and the
// same framing error. Messages of an odd type byte are framed whole, as
// the relay frames the messages it inspects, the others streamed through.
func FuzzFramer(f *testing.F) {
	for _, s := range framingSeeds() {
		f.Add(s, []byte{1, 3, 7})
		f.Add(s, []byte{5})
		f.Add(s, []byte{0})
	}
	f.Fuzz(func(t *testing.T, in []byte, cuts []byte) {
		want, complete, wantErr := refFrames(in)
		if n := len(want); n > 0 && want[n-1].typ&1 == 1 && want[n-1].off+want[n-1].total > len(in) {
			// Framed whole, a message the stream cuts short is never found.
			want = want[:n-1]
		}
		var fl flow
		fl.buf = make([]byte, 64)
		var got []frame
		var out []byte
		var err error
		base, k := 0, 0 // base: stream offset of buf[0]
		for err == nil {
			// Write out what is framed, as the relay does before reading.
			out = append(out, fl.buf[fl.head:fl.scan]...)
			fl.head = fl.scan
			if fl.head == fl.tail {
				base += fl.tail
				fl.head, fl.scan, fl.tail = 0, 0, 0
			}
			if base+fl.tail == len(in) {
				break
			}
			before := fl.head
			fl.room()
			base += before - fl.head
			size := len(in)
			if len(cuts) > 0 {
				size = int(cuts[k%len(cuts)]) + 1
				k++
			}
			n := copy(fl.buf[fl.tail:], in[base+fl.tail:min(base+fl.tail+size, len(in))])
			fl.tail += n
			for fl.skipBody() {
				var typ byte
				var total int
				var ok bool
				typ, total, ok, err = fl.header()
				if !ok {
					break
				}
				if typ&1 == 1 {
					msg := fl.whole(total)
					if msg == nil {
						break
					}
					if !bytes.Equal(msg, in[base+fl.scan:base+fl.scan+total]) {
						t.Fatalf("whole message at %d differs from the stream", base+fl.scan)
					}
				}
				got = append(got, frame{off: base + fl.scan, typ: typ, total: total})
				fl.pass(total)
			}
		}
		if !errors.Is(err, wantErr) && !(err == nil && wantErr == nil) {
			t.Fatalf("error %v, want %v", err, wantErr)
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames, want %d: %+v vs %+v", len(got), len(want), got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("frame %d = %+v, want %+v", i, got[i], want[i])
			}
		}
		if err == nil {
			if done := fl.empty(); done != complete {
				t.Fatalf("flow empty %v, stream complete %v", done, complete)
			}
			if end := base + fl.scan; !bytes.Equal(out, in[:end]) {
				t.Fatalf("wrote %d bytes that differ from the stream's first %d", len(out), end)
			}
		}
	})
}

// frame is one message found in a stream: where it starts, its type and
// its total size.
type frame struct {
	off   int
	typ   byte
	total int
}

// frameBytewise feeds in to a flow one byte per read and returns the
// frames found, seeing every message whole.
func frameBytewise(t *testing.T, in []byte) (frames []frame, fl flow, err error) {
	fl.buf = make([]byte, 4)
	base := 0
	for base+fl.tail < len(in) {
		fl.head = fl.scan
		before := fl.head
		fl.room()
		base += before - fl.head
		fl.buf[fl.tail] = in[base+fl.tail]
		fl.tail++
		for fl.skipBody() {
			typ, total, ok, err := fl.header()
			if err != nil {
				return frames, fl, err
			}
			if !ok || fl.whole(total) == nil {
				break
			}
			frames = append(frames, frame{off: base + fl.scan, typ: typ, total: total})
			fl.pass(total)
		}
	}
	return frames, fl, nil
}

func TestFramerSplitHeader(t *testing.T) {
	msg := append([]byte{'Q', 0, 0, 0, 9}, "SEL\x00X"...)
	msg = append(msg, 'S', 0, 0, 0, 4)
	frames, fl, err := frameBytewise(t, msg)
	if err != nil {
		t.Fatal(err)
	}
	want := []frame{{off: 0, typ: 'Q', total: 10}, {off: 10, typ: 'S', total: 5}}
	if len(frames) != 2 || frames[0] != want[0] || frames[1] != want[1] {
		t.Fatalf("frames %+v, want %+v", frames, want)
	}
	if !fl.empty() && fl.scan != fl.tail {
		t.Fatal("not at a boundary after whole messages")
	}
	if _, _, err := frameBytewise(t, bytes.Repeat([]byte{0}, 5)); !errors.Is(err, errFraming) {
		t.Fatalf("length word 0: %v", err)
	}
}

// TestFlowGrowsWithTheBytes sends the header of a message framed whole
// that claims 1 GiB: the buffer must grow with the bytes that arrive, not
// to the claimed size at once.
func TestFlowGrowsWithTheBytes(t *testing.T) {
	var fl flow
	fl.buf = make([]byte, 64)
	hdr := []byte{'Q', 0x40, 0, 0, 0} // 1 GiB, counting the length word
	for sent := 0; sent < 1<<12; {
		fl.room()
		if len(fl.buf) > 2*max(sent, 64) {
			t.Fatalf("buffer of %d bytes after %d bytes received", len(fl.buf), sent)
		}
		chunk := fl.buf[fl.tail:]
		if sent == 0 {
			copy(chunk, hdr)
		}
		fl.tail += len(chunk)
		sent += len(chunk)
		_, total, ok, err := fl.header()
		if err != nil || !ok || total != 1<<30+1 {
			t.Fatalf("header: total %d, ok %v, err %v", total, ok, err)
		}
		if fl.whole(total) != nil {
			t.Fatal("a 1 GiB message cannot be whole yet")
		}
	}
}
