package localauth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// rawClient drives Authenticate over a pipe with hand-made messages, to
// reach the cases real clients never produce.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
	done chan error
}

func startRaw(t *testing.T, user string, e Entry) *rawClient {
	t.Helper()
	server, client := net.Pipe()
	c := &rawClient{t: t, conn: client, fe: pgproto3.NewFrontend(client, client), done: make(chan error, 1)}
	go func() {
		err := Authenticate(server, user, e)
		// Closing unblocks a client still writing what the server no longer reads.
		server.Close()
		c.done <- err
	}()
	t.Cleanup(func() { client.Close() })
	return c
}

func (c *rawClient) receive() pgproto3.BackendMessage {
	c.t.Helper()
	msg, err := c.fe.Receive()
	if err != nil {
		c.t.Fatalf("client: receive: %v", err)
	}
	return msg
}

// send writes a message of type typ; errors are ignored, since the server
// may rightly stop reading halfway.
func (c *rawClient) send(typ byte, body []byte) {
	msg := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(msg[1:], uint32(4+len(body)))
	c.conn.Write(append(msg, body...))
}

// result waits for Authenticate, reading and dropping what it still sends
// so that a server that wrongly carries on cannot block on the pipe.
func (c *rawClient) result() error {
	go io.Copy(io.Discard, c.conn)
	return <-c.done
}

// initialResponse is a SASLInitialResponse body.
func initialResponse(mech, data string) []byte {
	b := append([]byte(mech), 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(mech)+1:], uint32(len(data)))
	return append(b, data...)
}

// scramClientFinal computes, as a client would, the client-final message
// for password after first (client-first) and serverFirst; without is the
// client-final-message-without-proof with its nonce placeholder "<nonce>".
func scramClientFinal(t *testing.T, password, first, serverFirst, without string) (final string, proof []byte) {
	t.Helper()
	attrs := map[string]string{}
	for _, kv := range strings.Split(serverFirst, ",") {
		attrs[kv[:1]] = kv[2:]
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil {
		t.Fatal(err)
	}
	iter, _ := strconv.Atoi(attrs["i"])
	salted, _ := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	mac := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	without = strings.Replace(without, "<nonce>", attrs["r"], 1)
	bare := first[strings.Index(first, ",n=")+1:]
	sig := mac(storedKey[:], bare+","+serverFirst+","+without)
	proof = make([]byte, 32)
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return without, proof
}

func aliceEntry(t *testing.T) Entry {
	e, ok := testFile(t).Lookup("alice")
	if !ok {
		t.Fatal("alice missing")
	}
	return e
}

// TestSCRAMVariants covers what real clients may send and pgconn does not:
// the y flag (TLS client, no -PLUS offered), extensions, no initial response.
func TestSCRAMVariants(t *testing.T) {
	for _, tc := range []struct {
		name, first, without string
		noInitial            bool
	}{
		{"y flag", "y,,n=,r=abc", "c=eSws,r=<nonce>", false},
		{"user name in message ignored", "n,,n=mallory,r=abc", "c=biws,r=<nonce>", false},
		{"extensions ignored", "n,,n=,r=abc,x=1", "c=biws,r=<nonce>,e=2", false},
		{"no initial response", "n,,n=,r=abc", "c=biws,r=<nonce>", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startRaw(t, "alice", aliceEntry(t))
			if _, ok := c.receive().(*pgproto3.AuthenticationSASL); !ok {
				t.Fatal("want AuthenticationSASL")
			}
			if tc.noInitial {
				body := append([]byte(scramMechanism), 0, 0xff, 0xff, 0xff, 0xff)
				c.send('p', body)
				if m, ok := c.receive().(*pgproto3.AuthenticationSASLContinue); !ok || len(m.Data) != 0 {
					t.Fatalf("want an empty AuthenticationSASLContinue, got %#v", m)
				}
				c.send('p', []byte(tc.first))
			} else {
				c.send('p', initialResponse(scramMechanism, tc.first))
			}
			sf := string(c.receive().(*pgproto3.AuthenticationSASLContinue).Data)
			if !strings.HasPrefix(sf, "r=abc") || !strings.Contains(sf, ",s=UcrFXgxfK9RMT3GYTlIU2Q==,i=4096") {
				t.Fatalf("server-first %q: want the client nonce first, the verifier's salt and iterations", sf)
			}
			without, proof := scramClientFinal(t, "pencil", tc.first, sf, tc.without)
			c.send('p', []byte(without+",p="+base64.StdEncoding.EncodeToString(proof)))
			if _, ok := c.receive().(*pgproto3.AuthenticationSASLFinal); !ok {
				t.Fatal("want AuthenticationSASLFinal")
			}
			if err := c.result(); err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
		})
	}
}

// TestMalformedClient sends what breaks the protocol: each case must end
// in the FATAL PostgreSQL sends, never a panic or a success.
func TestMalformedClient(t *testing.T) {
	const first = "n,,n=,r=abc"
	type step func(t *testing.T, c *rawClient)
	// scram sends a valid SASLInitialResponse, then final(serverFirst).
	scram := func(final func(t *testing.T, sf string) string) step {
		return func(t *testing.T, c *rawClient) {
			c.receive()
			c.send('p', initialResponse(scramMechanism, first))
			sf := string(c.receive().(*pgproto3.AuthenticationSASLContinue).Data)
			c.send('p', []byte(final(t, sf)))
		}
	}
	initial := func(body []byte) step {
		return func(t *testing.T, c *rawClient) { c.receive(); c.send('p', body) }
	}
	withFirst := func(s string) step { return initial(initialResponse(scramMechanism, s)) }
	proof := func(t *testing.T, sf, without string) string {
		w, p := scramClientFinal(t, "pencil", first, sf, without)
		return w + ",p=" + base64.StdEncoding.EncodeToString(p)
	}
	for _, tc := range []struct {
		name            string
		md5             bool
		steps           step
		code            pgerr.Code
		message, detail string
	}{
		{"query instead of SASL response", false, func(t *testing.T, c *rawClient) { c.receive(); c.send('Q', []byte("SELECT 1\x00")) },
			pgerr.ProtocolViolation, "expected SASL response, got message type 81", ""},
		{"message too long", false, func(t *testing.T, c *rawClient) {
			c.receive()
			c.conn.Write([]byte{'p', 0x40, 0, 0, 0})
		}, pgerr.ProtocolViolation, "invalid message length", ""},
		{"length below 4", false, func(t *testing.T, c *rawClient) { c.receive(); c.conn.Write([]byte{'p', 0, 0, 0, 3}) },
			pgerr.ProtocolViolation, "invalid message length", ""},
		{"mechanism unterminated", false, initial([]byte("SCRAM-SHA-256")), pgerr.ProtocolViolation, "invalid string in message", ""},
		{"PLUS mechanism", false, initial(initialResponse("SCRAM-SHA-256-PLUS", first)),
			pgerr.ProtocolViolation, "client selected an invalid SASL authentication mechanism", ""},
		{"no length", false, initial([]byte("SCRAM-SHA-256\x00\x00")), pgerr.ProtocolViolation, "insufficient data left in message", ""},
		{"length past the end", false, initial(append([]byte("SCRAM-SHA-256\x00"), 0, 0, 0, 9, 'n')),
			pgerr.ProtocolViolation, "insufficient data left in message", ""},
		{"bytes after the data", false, initial(append(initialResponse(scramMechanism, first), 'x')),
			pgerr.ProtocolViolation, "invalid message format", ""},
		{"empty", false, withFirst(""), pgerr.ProtocolViolation, "malformed SCRAM message", "The message is empty."},
		{"NUL inside", false, withFirst("n,,n=\x00,r=abc"), pgerr.ProtocolViolation, "malformed SCRAM message", "Message length does not match input length."},
		{"channel binding required", false, withFirst("p=tls-server-end-point,,n=,r=abc"), pgerr.ProtocolViolation, "malformed SCRAM message",
			"The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data."},
		{"bad flag", false, withFirst("x,,n=,r=abc"), pgerr.ProtocolViolation, "malformed SCRAM message", `Unexpected channel-binding flag "'x'".`},
		{"no comma after flag", false, withFirst("n;,n=,r=abc"), pgerr.ProtocolViolation, "malformed SCRAM message", `Comma expected, but found character "';'".`},
		{"authzid", false, withFirst("n,a=bob,n=,r=abc"), pgerr.FeatureNotSupported, "client uses authorization identity, but it is not supported", ""},
		{"junk for authzid", false, withFirst("n,\x01,n=,r=abc"), pgerr.ProtocolViolation, "malformed SCRAM message", `Unexpected attribute "0x01" in client-first-message.`},
		{"mandatory extension", false, withFirst("n,,m=x,n=,r=abc"), pgerr.FeatureNotSupported, "client requires an unsupported SCRAM extension", ""},
		{"no user attribute", false, withFirst("n,,r=abc"), pgerr.ProtocolViolation, "malformed SCRAM message", `Expected attribute "n" but found "'r'".`},
		{"no nonce", false, withFirst("n,,n="), pgerr.ProtocolViolation, "malformed SCRAM message", `Expected attribute "r" but found "0x00".`},
		{"attribute without =", false, withFirst("n,,n=,rabc"), pgerr.ProtocolViolation, "malformed SCRAM message", `Expected character "=" for attribute "r".`},
		{"non-printable nonce", false, withFirst("n,,n=,r=a\x7fb"), pgerr.ProtocolViolation, "non-printable characters in SCRAM nonce", ""},
		{"bad extension", false, withFirst("n,,n=,r=abc,1=x"), pgerr.ProtocolViolation, "malformed SCRAM message", `Attribute expected, but found invalid character "'1'".`},
		{"wrong channel binding", false, scram(func(t *testing.T, sf string) string { return proof(t, sf, "c=eSws,r=<nonce>") }),
			pgerr.ProtocolViolation, "unexpected SCRAM channel-binding attribute in client-final-message", ""},
		{"wrong nonce", false, scram(func(t *testing.T, sf string) string { return proof(t, sf, "c=biws,r=abcX") }),
			pgerr.ProtocolViolation, "invalid SCRAM response", "Nonce does not match."},
		{"no proof", false, scram(func(t *testing.T, sf string) string { return "c=biws,r=" + sf[2:strings.Index(sf, ",")] }),
			pgerr.ProtocolViolation, "malformed SCRAM message", "Attribute expected, but found end of string."},
		{"short proof", false, scram(func(t *testing.T, sf string) string {
			return "c=biws,r=" + sf[2:strings.Index(sf, ",")] + ",p=AAAA"
		}), pgerr.ProtocolViolation, "malformed SCRAM message", "Malformed proof in client-final-message."},
		{"garbage after proof", false, scram(func(t *testing.T, sf string) string { return proof(t, sf, "c=biws,r=<nonce>") + ",x" }),
			pgerr.ProtocolViolation, "malformed SCRAM message", "Garbage found at the end of client-final-message."},
		{"proof of another message", false, scram(func(t *testing.T, sf string) string {
			p := proof(t, sf, "c=biws,r=<nonce>,x=1") // proves x=1, sent without it
			return strings.Replace(p, ",x=1", "", 1)
		}), pgerr.InvalidPassword, `password authentication failed for user "alice"`, ""},
		{"md5: SASL message", true, initial(initialResponse(scramMechanism, first)), pgerr.ProtocolViolation, "invalid password packet size", ""},
		{"md5: unterminated", true, initial([]byte("md5abc")), pgerr.ProtocolViolation, "invalid password packet size", ""},
		{"md5: no body", true, initial(nil), pgerr.ProtocolViolation, "invalid password packet size", ""},
		{"md5: empty", true, initial([]byte{0}), pgerr.InvalidPassword, "empty password returned by client", ""},
		{"md5: query", true, func(t *testing.T, c *rawClient) { c.receive(); c.send('Q', []byte("SELECT 1\x00")) },
			pgerr.ProtocolViolation, "expected password response, got message type 81", ""},
		{"md5: wrong hash", true, initial([]byte("md5" + strings.Repeat("0", 32) + "\x00")),
			pgerr.InvalidPassword, `password authentication failed for user "alice"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := aliceEntry(t)
			if tc.md5 {
				e, _ = NewEntry("alice", bobMD5)
			}
			c := startRaw(t, "alice", e)
			tc.steps(t, c)
			err := c.result()
			pe, ok := errors.AsType[*pgerr.Error](err)
			if !ok {
				t.Fatalf("got %v, want a *pgerr.Error", err)
			}
			if pe.Severity != pgerr.SeverityFatal || pe.Code != tc.code || pe.Message != tc.message || pe.Detail != tc.detail {
				t.Fatalf("got %s %s %q (%q), want FATAL %s %q (%q)", pe.Severity, pe.Code, pe.Message, pe.Detail, tc.code, tc.message, tc.detail)
			}
		})
	}
}

// TestClientGone: a client that hangs up mid-exchange is an I/O error,
// not a message for a connection that no longer exists.
func TestClientGone(t *testing.T) {
	c := startRaw(t, "alice", aliceEntry(t))
	c.receive()
	c.conn.Write([]byte{'p', 0, 0})
	c.conn.Close()
	err := c.result()
	if _, isPG := errors.AsType[*pgerr.Error](err); isPG || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want an EOF error", err)
	}
}

// TestZeroEntry: the zero Entry runs a mock exchange that fails like a
// wrong password, with the same salt each time, even given the proof a
// client would compute for an empty verifier.
func TestZeroEntry(t *testing.T) {
	var salts []string
	for range 2 {
		c := startRaw(t, "mallory", Entry{})
		if _, ok := c.receive().(*pgproto3.AuthenticationSASL); !ok {
			t.Fatal("want AuthenticationSASL")
		}
		const first = "n,,n=,r=abc"
		c.send('p', initialResponse(scramMechanism, first))
		sf := string(c.receive().(*pgproto3.AuthenticationSASLContinue).Data)
		salts = append(salts, sf[strings.Index(sf, ",s="):])
		without, proof := scramClientFinal(t, "", first, sf, "c=biws,r=<nonce>")
		c.send('p', []byte(without+",p="+base64.StdEncoding.EncodeToString(proof)))
		err := c.result()
		if pe, ok := errors.AsType[*pgerr.Error](err); !ok || pe.Code != pgerr.InvalidPassword ||
			pe.Message != `password authentication failed for user "mallory"` || !errors.Is(err, ErrNoSuchUser) {
			t.Fatalf("got %v, want 28P01 caused by ErrNoSuchUser", err)
		}
	}
	if salts[0] != salts[1] {
		t.Fatalf("mock salt changed between attempts: %s, %s", salts[0], salts[1])
	}
}
