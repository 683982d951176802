package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// Startup packet codes, from PostgreSQL's pqcomm.h.
const (
	sdCancelCode = 80877102
	sdSSLCode    = 80877103
	sdGSSCode    = 80877104
)

// sdCase is one startup-phase exchange. Every step but the last is an
// SSLRequest or GSSENCRequest whose one-byte answer is read before the next
// step is written; after the last step the client half-closes and reads
// until the peer closes.
type sdCase struct {
	name  string
	steps [][]byte
}

// TestStartupDifferential sends the same startup-phase bytes to PostgreSQL
// and to pgverbs and requires the same replies: byte for byte, apart from
// the F, L and R fields of ErrorResponse and NoticeResponse (the source
// file, line and routine, which a relayed server error keeps and an error
// pgverbs makes itself has not) and BackendKeyData's contents (pgverbs
// hands out a key of its own, for another backend). A silent close is an
// empty reply. The cases follow ProcessStartupPacket in PostgreSQL 15's
// postmaster.c branch by branch, plus the FATALs a trust cluster sends
// right after authentication.
//
// PostgreSQL is reached on its Unix socket: over TCP a build with GSSAPI
// answers a GSSENCRequest 'G' and starts a GSSAPI handshake, where pgverbs,
// which has no GSSAPI encryption, answers 'N' as PostgreSQL does on a Unix
// socket. The cluster has ssl=off, so SSLRequest is 'N' both ways too. Not
// covered: the branches for a server that is starting up, shutting down,
// in recovery or out of connection slots, which need a server in that
// state.
func TestStartupDifferential(t *testing.T) {
	c, p := trustSetup(t, pgtest.Options{})
	direct := func() (net.Conn, error) {
		return net.DialTimeout("unix", filepath.Join(c.SocketDir, fmt.Sprintf(".s.PGSQL.%d", c.Port)), 5*time.Second)
	}
	proxied := func() (net.Conn, error) { return net.DialTimeout("tcp", p.Addr(), 5*time.Second) }

	ok := sdParams("user", "postgres", "database", "postgres")
	for _, tc := range sdCases(ok) {
		t.Run(tc.name, func(t *testing.T) {
			want, err := sdExchange(direct, tc.steps)
			if err != nil {
				t.Fatalf("PostgreSQL: %v", err)
			}
			got, err := sdExchange(proxied, tc.steps)
			if err != nil {
				t.Fatalf("pgverbs: %v", err)
			}
			w, g := sdNormalize(want), sdNormalize(got)
			if w != g {
				t.Errorf("replies differ\nPostgreSQL:\n%s\npgverbs:\n%s", sdShow(w), sdShow(g))
			} else {
				t.Logf("reply:\n%s", sdShow(w))
			}
		})
	}
}

// sdCases lists the exchanges; ok is a valid parameter list.
func sdCases(ok []byte) []sdCase {
	v3 := uint32(3 << 16)
	ssl, gss := sdPacket(sdSSLCode), sdPacket(sdGSSCode)
	startup := sdPacket(v3, ok)
	// The largest packet PostgreSQL takes: its limit, 10000 bytes, counts
	// the body after the length word.
	padded := func(total int) []byte {
		pad := total - len(startup) - len("pgverbs_test.pad") - 2
		return sdPacket(v3, sdParams("user", "postgres", "database", "postgres", "pgverbs_test.pad", strings.Repeat("x", pad)))
	}
	return []sdCase{
		// The length word.
		{name: "eof at once", steps: [][]byte{{}}},
		{name: "partial length word", steps: [][]byte{{0, 0}}},
		{name: "length 0", steps: [][]byte{sdBE32(0)}},
		{name: "length 7", steps: [][]byte{append(sdBE32(7), 0, 3, 0)}},
		{name: "length 10005", steps: [][]byte{sdBE32(10005)}},
		{name: "length 10004", steps: [][]byte{padded(10004)}},
		{name: "length 10005 complete", steps: [][]byte{padded(10005)}},
		{name: "terminate first", steps: [][]byte{{'X', 0, 0, 0, 4}}},
		{name: "tls client hello", steps: [][]byte{{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}}},
		{name: "body cut off", steps: [][]byte{startup[:len(startup)-5]}},

		// CancelRequest: a wrong length, an unknown key; both unanswered.
		{name: "cancel 12 bytes", steps: [][]byte{sdPacket(sdCancelCode, sdBE32(1))}},
		{name: "cancel 20 bytes", steps: [][]byte{sdPacket(sdCancelCode, sdBE32(1), sdBE32(2), sdBE32(3))}},
		{name: "cancel unknown key", steps: [][]byte{sdPacket(sdCancelCode, sdBE32(999999), sdBE32(12345))}},

		// Encryption requests, in every order PostgreSQL distinguishes.
		{name: "ssl", steps: [][]byte{ssl}},
		{name: "ssl startup", steps: [][]byte{ssl, startup}},
		{name: "ssl with extra bytes", steps: [][]byte{append(append([]byte{}, ssl...), startup...)}},
		{name: "ssl twice", steps: [][]byte{ssl, ssl}},
		{name: "ssl cancel", steps: [][]byte{ssl, sdPacket(sdCancelCode, sdBE32(999999), sdBE32(12345))}},
		{name: "gss", steps: [][]byte{gss}},
		{name: "gss startup", steps: [][]byte{gss, startup}},
		{name: "gss with extra bytes", steps: [][]byte{append(append([]byte{}, gss...), startup...)}},
		{name: "gss twice", steps: [][]byte{gss, gss}},
		{name: "ssl gss startup", steps: [][]byte{ssl, gss, startup}},
		{name: "gss ssl startup", steps: [][]byte{gss, ssl, startup}},
		{name: "ssl gss ssl", steps: [][]byte{ssl, gss, ssl}},
		{name: "gss ssl gss", steps: [][]byte{gss, ssl, gss}},
		{name: "ssl length 7", steps: [][]byte{ssl, append(sdBE32(7), 0, 3, 0)}},
		{name: "ssl partial length word", steps: [][]byte{ssl, {0}}},

		// Protocol versions: the old protocols' fixed-width packet gets the
		// old error format, others 0A000.
		{name: "protocol 2.0", steps: [][]byte{sdPacket(2<<16, sdOldStartup("postgres", "postgres"))}},
		{name: "protocol 1.0", steps: [][]byte{sdPacket(1<<16, sdOldStartup("postgres", "postgres"))}},
		{name: "protocol 0.1", steps: [][]byte{sdPacket(1, sdOldStartup("postgres", "postgres"))}},
		{name: "protocol 0.0", steps: [][]byte{sdPacket(0, ok)}},
		{name: "protocol 2.0 short", steps: [][]byte{sdPacket(2 << 16)}},
		{name: "protocol 4.0", steps: [][]byte{sdPacket(4<<16, ok)}},
		{name: "protocol 1234.5681", steps: [][]byte{sdPacket(1234<<16 | 5681)}},

		// The parameter list.
		{name: "3.0 length 8", steps: [][]byte{sdPacket(v3)}},
		{name: "no terminator", steps: [][]byte{sdPacket(v3, ok[:len(ok)-1])}},
		{name: "odd number of strings", steps: [][]byte{sdPacket(v3, []byte("user\x00postgres\x00database\x00\x00"))}},
		{name: "name without nul", steps: [][]byte{sdPacket(v3, []byte("user\x00postgres\x00data"))}},
		{name: "bytes after terminator", steps: [][]byte{sdPacket(v3, append(append([]byte{}, ok...), "xyz"...))}},
		{name: "no user", steps: [][]byte{sdPacket(v3, sdParams("database", "postgres"))}},
		{name: "empty user", steps: [][]byte{sdPacket(v3, sdParams("user", "", "database", "postgres"))}},
		{name: "empty list", steps: [][]byte{sdPacket(v3, []byte{0})}},
		{name: "replication bogus", steps: [][]byte{sdPacket(v3, sdParams("user", "postgres", "replication", "bogus"))}},

		// Minor versions and protocol options: NegotiateProtocolVersion,
		// then the session.
		{name: "3.0", steps: [][]byte{startup}},
		{name: "database defaults to user", steps: [][]byte{sdPacket(v3, sdParams("user", "postgres"))}},
		{name: "3.1", steps: [][]byte{sdPacket(v3|1, ok)}},
		{name: "3.2", steps: [][]byte{sdPacket(v3|2, ok)}},
		{name: "3.9999 pq option", steps: [][]byte{sdPacket(v3|9999, sdParams("user", "postgres", "_pq_.grease", "x"))}},
		{name: "3.0 pq option", steps: [][]byte{sdPacket(v3, sdParams("user", "postgres", "_pq_.a", "1", "_pq_.b", "2"))}},

		// The FATALs after authentication.
		{name: "unknown database", steps: [][]byte{sdPacket(v3, sdParams("user", "postgres", "database", "nosuch"))}},
		{name: "unknown user", steps: [][]byte{sdPacket(v3, sdParams("user", "nosuch", "database", "postgres"))}},
		{name: "invalid setting", steps: [][]byte{sdPacket(v3, sdParams("user", "postgres", "work_mem", "bogus"))}},
		{name: "unknown setting in options", steps: [][]byte{sdPacket(v3, sdParams("user", "postgres", "options", "-c nosuch_setting=1"))}},
	}
}

// sdExchange runs steps on a new connection and returns what the peer sent
// until it closed.
func sdExchange(dial func() (net.Conn, error), steps [][]byte) ([]byte, error) {
	conn, err := dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	var got []byte
	for i, step := range steps {
		if len(step) > 0 {
			if _, err := conn.Write(step); err != nil {
				return got, fmt.Errorf("step %d: write: %w", i, err)
			}
		}
		if i == len(steps)-1 {
			break
		}
		// An encryption request's answer: one byte, unless the peer
		// closes instead.
		var b [1]byte
		n, err := io.ReadFull(conn, b[:])
		got = append(got, b[:n]...)
		if err != nil {
			if sdClosed(err) {
				return got, nil
			}
			return got, fmt.Errorf("step %d: read answer: %w", i, err)
		}
	}
	// Half-closed, so that a peer waiting for the rest of a packet or for
	// the next message sees the end of the stream.
	// A peer that already closed, leaving bytes of ours unread, has reset
	// the connection: the half-close fails, what it sent is still read.
	_ = conn.(interface{ CloseWrite() error }).CloseWrite()
	rest, err := io.ReadAll(conn)
	got = append(got, rest...)
	if err != nil && !sdClosed(err) {
		return got, fmt.Errorf("read: %w", err)
	}
	return got, nil
}

// sdClosed reports an end of stream; a reset is one too, for a peer that
// closed with bytes of ours unread.
func sdClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// sdNormalize renders a reply one message a line: protocol 3 messages
// with their type and quoted body, ErrorResponse and NoticeResponse as
// their fields without F, L and R, BackendKeyData without its contents.
// A single-byte encryption answer, or bytes that do not frame as protocol
// 3 messages (the old protocol's error), are shown as they are.
func sdNormalize(b []byte) string {
	var out []string
	for len(b) > 0 {
		if len(b) == 1 || (len(b) >= 5 && (b[0] == 'N' || b[0] == 'S' || b[0] == 'G') && !sdFrames(b)) {
			out = append(out, fmt.Sprintf("answer %q", b[0]))
			b = b[1:]
			continue
		}
		if !sdFrames(b) {
			out = append(out, fmt.Sprintf("raw %q", b))
			break
		}
		typ, n := b[0], int(binary.BigEndian.Uint32(b[1:]))
		body := b[5 : 1+n]
		b = b[1+n:]
		switch typ {
		case 'E', 'N':
			out = append(out, fmt.Sprintf("%c %s", typ, sdFields(body)))
		case 'K':
			out = append(out, fmt.Sprintf("K <%d bytes>", len(body)))
		default:
			out = append(out, fmt.Sprintf("%c %q", typ, body))
		}
	}
	return strings.Join(out, "\n")
}

// sdFrames reports whether b starts with a whole protocol 3 message.
func sdFrames(b []byte) bool {
	if len(b) < 5 {
		return false
	}
	n := binary.BigEndian.Uint32(b[1:])
	return n >= 4 && int64(n)+1 <= int64(len(b)) && (b[0] >= 'A' && b[0] <= 'Z' || b[0] >= 'a' && b[0] <= 'z')
}

// sdFields renders an ErrorResponse or NoticeResponse body without the
// source position fields.
func sdFields(body []byte) string {
	var fields []string
	for len(body) > 0 && body[0] != 0 {
		code := body[0]
		v, rest, found := bytes.Cut(body[1:], []byte{0})
		if !found {
			return fmt.Sprintf("%s unterminated %q", strings.Join(fields, " "), body)
		}
		body = rest
		if code == 'F' || code == 'L' || code == 'R' {
			continue
		}
		fields = append(fields, fmt.Sprintf("%c=%q", code, v))
	}
	if !bytes.Equal(body, []byte{0}) {
		fields = append(fields, fmt.Sprintf("tail=%q", body))
	}
	return strings.Join(fields, " ")
}

func sdShow(s string) string {
	if s == "" {
		return "  (closed without a word)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func sdBE32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// sdPacket is a startup-phase packet: length word, code, body.
func sdPacket(code uint32, body ...[]byte) []byte {
	all := sdBE32(code)
	for _, b := range body {
		all = append(all, b...)
	}
	return append(sdBE32(uint32(len(all)+4)), all...)
}

// sdParams is a protocol 3 parameter list: name and value strings, then
// the terminating empty name.
func sdParams(kv ...string) []byte {
	var b []byte
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	return append(b, 0)
}

// sdOldStartup is the body of the protocol 1 and 2 startup packet after
// the version: fixed-width database (64), user (32), options (64), unused
// (64) and tty (64) fields.
func sdOldStartup(database, user string) []byte {
	b := make([]byte, 64+32+64+64+64)
	copy(b, database)
	copy(b[64:], user)
	return b
}
