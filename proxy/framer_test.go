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

// FuzzFramer cuts a stream into chunks at the sizes the fuzzer picks and
// checks that scan finds the same messages, at the same stream offsets,
// as framing the whole stream at once, and the same framing error.
func FuzzFramer(f *testing.F) {
	for _, s := range framingSeeds() {
		f.Add(s, []byte{1, 3, 7})
		f.Add(s, []byte{5})
		f.Add(s, []byte{0})
	}
	f.Fuzz(func(t *testing.T, in []byte, cuts []byte) {
		want, complete, wantErr := refFrames(in)
		var fr framer
		var got []frame
		var err error
		base := 0
		for k := 0; base < len(in) && err == nil; k++ {
			size := len(in)
			if len(cuts) > 0 {
				size = int(cuts[k%len(cuts)]) + 1
			}
			end := min(base+size, len(in))
			start := len(got)
			got, err = fr.scan(in[base:end], got)
			for j := start; j < len(got); j++ {
				got[j].off += base
			}
			base = end
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
		if err == nil && fr.atBoundary() != complete {
			t.Fatalf("atBoundary %v, stream complete %v", fr.atBoundary(), complete)
		}
	})
}

func TestFramerSplitHeader(t *testing.T) {
	msg := append([]byte{'Q', 0, 0, 0, 9}, "SEL\x00X"...)
	msg = append(msg, 'S', 0, 0, 0, 4)
	var fr framer
	var frames []frame
	for i := range msg {
		var err error
		n := len(frames)
		if frames, err = fr.scan(msg[i:i+1], frames); err != nil {
			t.Fatal(err)
		}
		for j := n; j < len(frames); j++ {
			frames[j].off += i
		}
	}
	want := []frame{{off: 0, typ: 'Q', total: 10}, {off: 10, typ: 'S', total: 5}}
	if len(frames) != 2 || frames[0] != want[0] || frames[1] != want[1] {
		t.Fatalf("frames %+v, want %+v", frames, want)
	}
	if !fr.atBoundary() {
		t.Fatal("not at a boundary after whole messages")
	}
	if _, err := fr.scan(bytes.Repeat([]byte{0}, 5), nil); !errors.Is(err, errFraming) {
		t.Fatalf("length word 0: %v", err)
	}
}
