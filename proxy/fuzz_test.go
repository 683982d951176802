package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/jackc/pgx/v5/pgproto3"
)

// encodeStartup builds a startup-phase packet: length word, code, body.
func encodeStartup(code uint32, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, body...)
}

// encodeParams builds a StartupMessage body from name, value pairs, in order.
func encodeParams(kv ...string) []byte {
	var b []byte
	for _, s := range kv {
		b = append(b, s...)
		b = append(b, 0)
	}
	return append(b, 0)
}

func encodeCancel(pid uint32, secret []byte) []byte {
	body := binary.BigEndian.AppendUint32(nil, pid)
	return encodeStartup(cancelRequestCode, append(body, secret...))
}

// startupSeeds are the packets also committed under
// testdata/fuzz/FuzzStartupPacket.
func startupSeeds() [][]byte {
	oversized := encodeStartup(196608, encodeParams("user", strings.Repeat("u", 10000)))
	return [][]byte{
		encodeStartup(sslRequestCode, nil),
		encodeStartup(gssEncRequestCode, nil),
		encodeStartup(3<<16, encodeParams("user", "alice", "database", "app")),
		encodeStartup(3<<16|2, encodeParams("user", "alice", "_pq_.foo", "bar")),
		encodeStartup(3<<16|9999, encodeParams("user", "alice")),
		encodeStartup(3<<16, encodeParams()), // no parameters at all
		encodeStartup(3<<16, encodeParams("user", "alice", "replication", "database")),
		encodeCancel(4242, []byte{1, 2, 3, 4}),
		encodeCancel(4242, bytes.Repeat([]byte{0xAB}, 32)),
		encodeCancel(4242, bytes.Repeat([]byte{0xCD}, 256)),
		encodeCancel(4242, bytes.Repeat([]byte{0xCD}, 257)), // secret too long
		encodeCancel(4242, []byte{1, 2, 3}),                 // secret too short
		encodeStartup(3<<16, []byte("user\x00alice\x00")),   // no terminator
		encodeStartup(3<<16, []byte("user\x00alice")),       // unterminated value
		encodeStartup(3<<16, []byte("user")),                // unterminated name
		encodeStartup(3<<16, []byte("user\x00alice\x00\x00x")),
		encodeStartup(sslRequestCode, nil)[:6],                  // truncated
		append(encodeStartup(3<<16, encodeParams("a", "b")), 0), // longer than its length word
		oversized,
		{0, 0, 0, 0, 0, 0, 0, 0},
		{0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0},
	}
}

// FuzzStartupPacket checks that parseStartupPacket never panics and that
// every packet it accepts is consistent with its bytes.
func FuzzStartupPacket(f *testing.F) {
	for _, s := range startupSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		orig := bytes.Clone(raw)
		p, err := parseStartupPacket(raw)
		if !bytes.Equal(raw, orig) {
			t.Fatalf("input modified: %q became %q", orig, raw)
		}
		if err != nil {
			if p != nil {
				t.Fatalf("packet %+v returned with error %v", p, err)
			}
			if !errors.Is(err, errBadStartup) {
				t.Fatalf("error %v does not wrap errBadStartup", err)
			}
			return
		}
		if p == nil {
			t.Fatal("nil packet without error")
		}
		if len(raw) < minStartupPacketLen {
			t.Fatalf("accepted %d-byte packet", len(raw))
		}
		if n := binary.BigEndian.Uint32(raw); int64(n) != int64(len(raw)) {
			t.Fatalf("accepted length word %d for %d bytes", n, len(raw))
		}
		if !bytes.Equal(p.raw, raw) {
			t.Fatalf("raw %q differs from input %q", p.raw, raw)
		}
		code := binary.BigEndian.Uint32(raw[4:])
		switch p.kind {
		case kindSSLRequest:
			if code != sslRequestCode {
				t.Fatalf("SSLRequest with code %d", code)
			}
		case kindGSSEncRequest:
			if code != gssEncRequestCode {
				t.Fatalf("GSSENCRequest with code %d", code)
			}
		case kindCancel:
			if code != cancelRequestCode {
				t.Fatalf("cancel with code %d", code)
			}
			if len(p.secret) < 4 || len(p.secret) > 256 {
				t.Fatalf("cancel secret of %d bytes", len(p.secret))
			}
			if p.pid != binary.BigEndian.Uint32(raw[8:]) || !bytes.Equal(p.secret, raw[12:]) {
				t.Fatalf("cancel pid %d secret %x do not match %x", p.pid, p.secret, raw)
			}
			// The secret outlives the read buffer: it must not alias it.
			if &p.secret[0] == &raw[12] {
				t.Fatal("cancel secret aliases the packet")
			}
			// pgproto3 decodes the same key.
			var cr pgproto3.CancelRequest
			if err := cr.Decode(raw[4:]); err != nil {
				t.Fatalf("pgproto3 rejects accepted cancel %x: %v", raw, err)
			}
			if cr.ProcessID != p.pid || !bytes.Equal(cr.SecretKey, p.secret) {
				t.Fatalf("pgproto3 decodes %d/%x, we %d/%x", cr.ProcessID, cr.SecretKey, p.pid, p.secret)
			}
		case kindStartup:
			if code == sslRequestCode || code == gssEncRequestCode || code == cancelRequestCode {
				t.Fatalf("startup kind for special code %d", code)
			}
			if uint32(p.major)<<16|uint32(p.minor) != code {
				t.Fatalf("version %d.%d for code %d", p.major, p.minor, code)
			}
			if p.verbatim {
				// Left for the server to refuse: nothing read from it.
				if len(p.params) != 0 {
					t.Fatalf("verbatim packet %q with parameters %v", raw, p.params)
				}
				return
			}
			if p.major != 3 {
				t.Fatalf("protocol %d.%d read as 3.x", p.major, p.minor)
			}
			kv := make([]string, 0, 2*len(p.params))
			seen := map[string]string{}
			for _, prm := range p.params {
				if prm.name == "" {
					t.Fatalf("empty parameter name in %q", raw)
				}
				if strings.IndexByte(prm.name, 0) >= 0 || strings.IndexByte(prm.value, 0) >= 0 {
					t.Fatalf("NUL inside parameter %q=%q", prm.name, prm.value)
				}
				if _, dup := seen[prm.name]; !dup {
					seen[prm.name] = prm.value
				}
				kv = append(kv, prm.name, prm.value)
			}
			if re := encodeStartup(code, encodeParams(kv...)); !bytes.Equal(re, raw) {
				t.Fatalf("re-encoding gives %q, not %q", re, raw)
			}
			// param returns the first value given for a name.
			for name, v := range seen {
				if got := p.param(name); got != v {
					t.Fatalf("param(%q) = %q, want %q", name, got, v)
				}
			}
			// pgproto3 (which only knows 3.0 and 3.2, and needs at least one
			// parameter) agrees on the parameters.
			if (code == pgproto3.ProtocolVersion30 || code == pgproto3.ProtocolVersion32) &&
				len(p.params) > 0 && len(seen) == len(p.params) {
				var sm pgproto3.StartupMessage
				if err := sm.Decode(raw[4:]); err != nil {
					t.Fatalf("pgproto3 rejects accepted startup %q: %v", raw, err)
				}
				if len(sm.Parameters) != len(seen) {
					t.Fatalf("pgproto3 decodes %v, we %v", sm.Parameters, seen)
				}
				for k, v := range seen {
					if sm.Parameters[k] != v {
						t.Fatalf("pgproto3 decodes %v, we %v", sm.Parameters, seen)
					}
				}
			}
		default:
			t.Fatalf("unknown kind %d", p.kind)
		}
	})
}

// encodeMsg builds a regular protocol message: type, length word, body.
func encodeMsg(typ byte, body []byte) []byte {
	b := []byte{typ}
	b = binary.BigEndian.AppendUint32(b, uint32(4+len(body)))
	return append(b, body...)
}

// framingSeeds are the streams also committed under testdata/fuzz/FuzzFraming.
func framingSeeds() [][]byte {
	query := encodeMsg('Q', []byte("SELECT 1\x00"))
	parse := encodeMsg('P', []byte("stmt\x00SELECT $1::int\x00\x00\x01\x00\x00\x00\x17"))
	copyData := encodeMsg('d', bytes.Repeat([]byte("row\t1\n"), 40)) // over 64 bytes
	sync := encodeMsg('S', nil)
	return [][]byte{
		query,
		parse,
		copyData,
		bytes.Join([][]byte{parse, sync, query, copyData, encodeMsg('c', nil)}, nil),
		append(bytes.Clone(query), 'X', 0, 0, 0, 3), // length word 3
		append(bytes.Clone(query), 'Q', 0, 0),       // truncated header
		copyData[:100],                              // truncated streamed message
		query[:8],                                   // truncated small message
		{'Q', 0x40, 0, 0, 1},                        // over 1 GiB
		{'Q', 0x40, 0, 0, 0, 'x'},                   // exactly 1 GiB, truncated
		{'X', 0, 0, 0, 4},
		{},
		encodeMsg('d', bytes.Repeat([]byte{'a'}, framingBufSize-5)), // fills the buffer exactly
		encodeMsg('d', bytes.Repeat([]byte{'b'}, framingBufSize-4)), // one byte over
	}
}

// framingBufSize is the relay reader's size in FuzzFraming: small, so that
// both the peek path and the streaming path of copyMessage run.
const framingBufSize = 64

// FuzzFraming feeds arbitrary bytes through peekHeader and copyMessage as
// the relay loops do, and checks that what is copied out is exactly the
// input's leading whole messages, each with a valid length word.
func FuzzFraming(f *testing.F) {
	for _, s := range framingSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		readers := map[string]func() io.Reader{
			"plain":    func() io.Reader { return bytes.NewReader(in) },
			"one-byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(in)) },
			"data-err": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(in)) },
		}
		for name, newReader := range readers {
			checkFraming(t, name, in, newReader())
		}
	})
}

func checkFraming(t *testing.T, name string, in []byte, src io.Reader) {
	r := bufio.NewReaderSize(src, framingBufSize)
	var out bytes.Buffer
	w := bufio.NewWriterSize(&out, framingBufSize)
	off := 0 // end of the last whole message copied
	for {
		rest := in[off:]
		typ, total, err := peekHeader(r)
		if err != nil {
			switch {
			case len(rest) == 0:
				if err != io.EOF {
					t.Fatalf("%s: at end of input: %v, want io.EOF", name, err)
				}
			case len(rest) < 5:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("%s: %d-byte header: %v, want io.ErrUnexpectedEOF", name, len(rest), err)
				}
			default:
				n := binary.BigEndian.Uint32(rest[1:])
				if n >= 4 && n <= 1<<30 {
					t.Fatalf("%s: valid length word %d refused: %v", name, n, err)
				}
				if !errors.Is(err, errFraming) || typ != rest[0] {
					t.Fatalf("%s: length word %d: type %q, error %v", name, n, typ, err)
				}
			}
			// Peeking consumes nothing.
			if left, _ := io.ReadAll(r); !bytes.Equal(left, rest) {
				t.Fatalf("%s: peekHeader consumed bytes", name)
			}
			break
		}
		if len(rest) < 5 {
			t.Fatalf("%s: header decoded from %d bytes", name, len(rest))
		}
		n := binary.BigEndian.Uint32(rest[1:])
		if typ != rest[0] || n < 4 || n > 1<<30 || total != int(n)+1 {
			t.Fatalf("%s: header %x gave type %q total %d", name, rest[:5], typ, total)
		}
		msg, mid, err := copyMessage(w, r, total)
		if ferr := w.Flush(); ferr != nil {
			t.Fatal(ferr)
		}
		got := out.Bytes()
		if !bytes.HasPrefix(in, got) {
			t.Fatalf("%s: output is not a prefix of the input", name)
		}
		if err != nil {
			if total <= len(rest) {
				t.Fatalf("%s: whole %d-byte message failed: %v", name, total, err)
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%s: truncated message: %v", name, err)
			}
			if len(got) < off || len(got)-off >= total {
				t.Fatalf("%s: %d bytes out for a failed message at %d", name, len(got), off)
			}
			if len(got) > off && !mid {
				t.Fatalf("%s: %d bytes of a message forwarded, mid false", name, len(got)-off)
			}
			break
		}
		if total > len(rest) {
			t.Fatalf("%s: %d-byte message copied from %d bytes", name, total, len(rest))
		}
		if mid {
			t.Fatalf("%s: mid set without error", name)
		}
		if total <= framingBufSize {
			if !bytes.Equal(msg, rest[:total]) {
				t.Fatalf("%s: msg %q, want %q", name, msg, rest[:total])
			}
		} else if msg != nil {
			t.Fatalf("%s: streamed message returned for inspection", name)
		}
		off += total
		if len(got) != off {
			t.Fatalf("%s: %d bytes out after %d bytes of whole messages", name, len(got), off)
		}
	}
}
