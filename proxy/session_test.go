package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap/zaptest"

	"github.com/pgverbs/pgverbs/backend"
	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/proxy"
)

// ioTimeout bounds every blocking read and write of these tests.
const ioTimeout = 10 * time.Second

// Startup packet codes, from PostgreSQL's pqcomm.h.
const (
	cancelRequestCode = 80877102
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
)

// ---------------------------------------------------------------------------
// Fake backend

// fakeBackend is a scripted PostgreSQL server. Each accepted connection's
// first packet is read raw: cancel requests are decoded and queued on
// cancels, other connections are queued on conns for the test to script.
type fakeBackend struct {
	ln      net.Listener
	addr    string
	dials   atomic.Int32
	conns   chan *beConn
	cancels chan pgproto3.CancelRequest

	done chan struct{} // closed at cleanup
	mu   sync.Mutex
	open []net.Conn
	wg   sync.WaitGroup
}

func newFakeBackend(t *testing.T) *fakeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{
		ln:      ln,
		addr:    ln.Addr().String(),
		conns:   make(chan *beConn, 16),
		cancels: make(chan pgproto3.CancelRequest, 16),
		done:    make(chan struct{}),
	}
	fb.wg.Add(1)
	go func() {
		defer fb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fb.dials.Add(1)
			fb.mu.Lock()
			fb.open = append(fb.open, c)
			fb.mu.Unlock()
			fb.wg.Add(1)
			go func() {
				defer fb.wg.Done()
				fb.handle(t, c)
			}()
		}
	}()
	t.Cleanup(func() {
		close(fb.done)
		ln.Close()
		fb.mu.Lock()
		for _, c := range fb.open {
			c.Close()
		}
		fb.mu.Unlock()
		fb.wg.Wait()
	})
	return fb
}

func (fb *fakeBackend) handle(t *testing.T, c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		c.Close()
		return
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 8 || n > 10004 {
		t.Errorf("fake backend: startup packet length %d", n)
		c.Close()
		return
	}
	raw := make([]byte, n)
	copy(raw, hdr[:])
	if _, err := io.ReadFull(c, raw[4:]); err != nil {
		t.Errorf("fake backend: read startup packet: %v", err)
		c.Close()
		return
	}
	if binary.BigEndian.Uint32(raw[4:]) == cancelRequestCode {
		var cr pgproto3.CancelRequest
		if err := cr.Decode(raw[4:]); err != nil {
			t.Errorf("fake backend: bad cancel request %x: %v", raw, err)
		}
		// Queue before closing: the proxy waits for the close, so a
		// forwarded cancel is always queued once the client is answered.
		select {
		case fb.cancels <- cr:
		case <-fb.done:
		}
		c.Close()
		return
	}
	rc := &recConn{Conn: c}
	select {
	case fb.conns <- &beConn{t: t, conn: c, rec: rc, startup: raw, be: pgproto3.NewBackend(rc, c)}:
	case <-fb.done:
		c.Close()
	}
}

// accept returns the next backend connection the proxy opened.
func (fb *fakeBackend) accept(t *testing.T) *beConn {
	t.Helper()
	select {
	case bc := <-fb.conns:
		bc.t = t
		return bc
	case <-time.After(ioTimeout):
		t.Fatal("the proxy did not connect to the backend")
		return nil
	}
}

// expectCancel returns the next cancel request the backend received.
func (fb *fakeBackend) expectCancel(t *testing.T) pgproto3.CancelRequest {
	t.Helper()
	select {
	case cr := <-fb.cancels:
		return cr
	case <-time.After(ioTimeout):
		t.Fatal("no cancel request reached the backend")
		return pgproto3.CancelRequest{}
	}
}

// expectNoCancel checks that no cancel request has reached the backend.
// The proxy forwards a cancel before it closes the client's connection, so
// calling this after that close is deterministic.
func (fb *fakeBackend) expectNoCancel(t *testing.T) {
	t.Helper()
	select {
	case cr := <-fb.cancels:
		t.Fatalf("cancel request pid %d secret %x reached the backend", cr.ProcessID, cr.SecretKey)
	default:
	}
}

// recConn records what is read from a connection.
type recConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// take returns and forgets the bytes read so far.
func (c *recConn) take() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := bytes.Clone(c.buf.Bytes())
	c.buf.Reset()
	return b
}

// beConn is one connection from the proxy to the fake backend.
type beConn struct {
	t       *testing.T
	conn    net.Conn
	rec     *recConn
	startup []byte // the startup packet as received
	be      *pgproto3.Backend
}

func (bc *beConn) send(msgs ...pgproto3.BackendMessage) {
	bc.t.Helper()
	if err := bc.trySend(msgs...); err != nil {
		bc.t.Fatalf("fake backend: send: %v", err)
	}
}

func (bc *beConn) trySend(msgs ...pgproto3.BackendMessage) error {
	for _, m := range msgs {
		bc.be.Send(m)
	}
	return bc.be.Flush()
}

func (bc *beConn) writeRaw(b []byte) {
	bc.t.Helper()
	if _, err := bc.conn.Write(b); err != nil {
		bc.t.Fatalf("fake backend: write: %v", err)
	}
}

func (bc *beConn) receive() pgproto3.FrontendMessage {
	bc.t.Helper()
	m, err := bc.be.Receive()
	if err != nil {
		bc.t.Fatalf("fake backend: receive: %v", err)
	}
	return m
}

// expectEOF checks that the proxy closes the backend connection.
func (bc *beConn) expectEOF() {
	bc.t.Helper()
	m, err := bc.be.Receive()
	if err == nil {
		bc.t.Fatalf("fake backend: got %T %+v, want the connection closed", m, m)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) {
		bc.t.Fatalf("fake backend: got %v, want EOF", err)
	}
}

// handshake completes the startup of a session: AuthenticationOk, a
// parameter, the backend key and ReadyForQuery.
func (bc *beConn) handshake(pid uint32, secret []byte) {
	bc.t.Helper()
	bc.send(
		&pgproto3.AuthenticationOk{},
		&pgproto3.ParameterStatus{Name: "server_version", Value: "18.0"},
		&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: secret},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
}

// ---------------------------------------------------------------------------
// Proxy and raw client

type proxyEnv struct {
	srv  *proxy.Server
	addr string
}

func startProxy(t *testing.T, backendAddr string, opts ...func(*proxy.Options)) *proxyEnv {
	t.Helper()
	target, err := backend.Parse("postgres://u@" + backendAddr + "/db?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	o := proxy.Options{
		Logger: zaptest.NewLogger(t),
		Target: target,
		Limits: proxy.Limits{MaxClientConns: 10, AuthTimeout: 5 * time.Second},
		// make test runs these tests in each relay mode.
		RelayMode: os.Getenv("PGVERBS_RELAY_MODE"),
	}
	for _, f := range opts {
		f(&o)
	}
	srv := proxy.New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		select {
		case err := <-served:
			if !errors.Is(err, proxy.ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(ioTimeout):
			t.Error("Serve did not return after Close")
		}
	})
	return &proxyEnv{srv: srv, addr: ln.Addr().String()}
}

// waitSessions waits until the server serves n sessions.
func (p *proxyEnv) waitSessions(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for p.srv.Sessions() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", p.srv.Sessions(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// client is a raw protocol client of the proxy.
type client struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

func dialProxy(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return newClient(t, conn)
}

func newClient(t *testing.T, conn net.Conn) *client {
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	return &client{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
}

func (c *client) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("client: write: %v", err)
	}
}

// readByte reads the one-byte answer to SSLRequest or GSSENCRequest. It must
// come before any receive, which buffers.
func (c *client) readByte() byte {
	c.t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(c.conn, b[:]); err != nil {
		c.t.Fatalf("client: read: %v", err)
	}
	return b[0]
}

func (c *client) receive() pgproto3.BackendMessage {
	c.t.Helper()
	m, err := c.fe.Receive()
	if err != nil {
		c.t.Fatalf("client: receive: %v", err)
	}
	return m
}

// recv receives the next message and checks its type.
func recv[T pgproto3.BackendMessage](c *client) T {
	c.t.Helper()
	m := c.receive()
	v, ok := m.(T)
	if !ok {
		c.t.Fatalf("client: got %T %+v, want %T", m, m, v)
	}
	return v
}

// expectError receives an ErrorResponse with the given severity and code.
func (c *client) expectError(severity, code string) pgproto3.ErrorResponse {
	c.t.Helper()
	e := *recv[*pgproto3.ErrorResponse](c)
	if e.Severity != severity || e.SeverityUnlocalized != severity || e.Code != code {
		c.t.Fatalf("client: got %s/%s %s %q, want %s %s", e.Severity, e.SeverityUnlocalized, e.Code, e.Message, severity, code)
	}
	return e
}

// expectEOF checks that the proxy closed the connection with nothing more.
func (c *client) expectEOF() {
	c.t.Helper()
	m, err := c.fe.Receive()
	if err == nil {
		c.t.Fatalf("client: got %T %+v, want the connection closed", m, m)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		c.t.Fatalf("client: got %v, want EOF", err)
	}
}

// expectSilentClose checks that the proxy closes the connection without
// sending a byte.
func (c *client) expectSilentClose() {
	c.t.Helper()
	got, err := io.ReadAll(c.conn)
	if len(got) != 0 {
		c.t.Fatalf("client: got %q, want the connection closed without a word", got)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("client: got %v, want the connection closed", err)
	}
}

// expectHandshake receives what beConn.handshake sent and returns the
// client's key.
func (c *client) expectHandshake(pid uint32) []byte {
	c.t.Helper()
	recv[*pgproto3.AuthenticationOk](c)
	if ps := recv[*pgproto3.ParameterStatus](c); ps.Name != "server_version" || ps.Value != "18.0" {
		c.t.Fatalf("client: ParameterStatus %+v", ps)
	}
	kd := recv[*pgproto3.BackendKeyData](c)
	if kd.ProcessID != pid {
		c.t.Fatalf("client: BackendKeyData pid %d, want the backend's %d", kd.ProcessID, pid)
	}
	secret := bytes.Clone(kd.SecretKey)
	if rfq := recv[*pgproto3.ReadyForQuery](c); rfq.TxStatus != 'I' {
		c.t.Fatalf("client: ReadyForQuery %q", rfq.TxStatus)
	}
	return secret
}

func (c *client) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	if err := c.fe.Flush(); err != nil {
		c.t.Fatalf("client: send: %v", err)
	}
}

// startupMsg encodes a StartupMessage for protocol 3.minor with the
// parameters in the given order.
func startupMsg(minor uint16, kv ...string) []byte {
	body := binary.BigEndian.AppendUint32(nil, 3<<16|uint32(minor))
	for _, s := range kv {
		body = append(body, s...)
		body = append(body, 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(4+len(body))), body...)
}

func requestPacket(code uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, 8)
	return binary.BigEndian.AppendUint32(b, code)
}

func encode(t *testing.T, m interface {
	Encode([]byte) ([]byte, error)
}) []byte {
	t.Helper()
	b, err := m.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// sendCancel sends a CancelRequest on a new connection to the proxy and
// waits for the proxy to close it, which it does without an answer once the
// cancel is forwarded or dropped.
func sendCancel(t *testing.T, addr string, pid uint32, secret []byte) {
	t.Helper()
	c := dialProxy(t, addr)
	c.write(encode(t, &pgproto3.CancelRequest{ProcessID: pid, SecretKey: secret}))
	rest, err := io.ReadAll(c.conn)
	if err != nil {
		t.Fatalf("cancel connection: %v", err)
	}
	if len(rest) != 0 {
		t.Fatalf("cancel request answered with %q", rest)
	}
}

// establish starts a session through the proxy with the fake backend and
// returns both ends, the client's cancel key and the backend's.
func establish(t *testing.T, fb *fakeBackend, p *proxyEnv, minor uint16, keyLen int) (c *client, bc *beConn, clientKey, backendKey []byte) {
	t.Helper()
	c = dialProxy(t, p.addr)
	sm := startupMsg(minor, "user", "alice", "database", "app")
	c.write(sm)
	bc = fb.accept(t)
	if !bytes.Equal(bc.startup, sm) {
		t.Fatalf("backend got startup %q, client sent %q", bc.startup, sm)
	}
	backendKey = randBytes(t, keyLen)
	bc.handshake(4242, backendKey)
	clientKey = c.expectHandshake(4242)
	return c, bc, clientKey, backendKey
}

// roundTrip runs one simple query through an established session, which
// also proves that the session has reached the relay phase.
func roundTrip(t *testing.T, c *client, bc *beConn) {
	t.Helper()
	c.send(&pgproto3.Query{String: "SELECT 1"})
	if q, ok := bc.receive().(*pgproto3.Query); !ok || q.String != "SELECT 1" {
		t.Fatalf("backend got %T %+v, want the query", q, q)
	}
	bc.send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	if tag := recv[*pgproto3.CommandComplete](c).CommandTag; string(tag) != "SELECT 1" {
		t.Fatalf("client got tag %q", tag)
	}
	recv[*pgproto3.ReadyForQuery](c)
}

// ---------------------------------------------------------------------------
// Tests

// TestCancelKeys checks that the client gets a key of the proxy's own (32
// bytes under protocol 3.2, 4 under 3.0) with the backend's pid, that a
// cancel with that key reaches the backend with the backend's key, and that
// no other key gets through.
func TestCancelKeys(t *testing.T) {
	for _, tc := range []struct {
		name   string
		minor  uint16
		keyLen int
	}{
		{"3.0", 0, 4},
		{"3.2", 2, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c, bc, clientKey, backendKey := establish(t, fb, p, tc.minor, tc.keyLen)
			if len(clientKey) != tc.keyLen {
				t.Fatalf("client key of %d bytes, want %d", len(clientKey), tc.keyLen)
			}
			if bytes.Equal(clientKey, backendKey) {
				t.Fatal("the client was given the backend's secret")
			}

			flipped := bytes.Clone(clientKey)
			flipped[len(flipped)-1] ^= 1
			wrong := map[string]struct {
				pid    uint32
				secret []byte
			}{
				"flipped bit":     {4242, flipped},
				"backend's key":   {4242, backendKey},
				"other pid":       {4243, clientKey},
				"with extra byte": {4242, append(bytes.Clone(clientKey), 0)},
			}
			if tc.keyLen > 4 {
				wrong["prefix"] = struct {
					pid    uint32
					secret []byte
				}{4242, clientKey[:4]}
			}
			for name, w := range wrong {
				sendCancel(t, p.addr, w.pid, w.secret)
				select {
				case cr := <-fb.cancels:
					t.Fatalf("cancel with %s reached the backend as %d/%x", name, cr.ProcessID, cr.SecretKey)
				default:
				}
			}

			sendCancel(t, p.addr, 4242, clientKey)
			cr := fb.expectCancel(t)
			if cr.ProcessID != 4242 || !bytes.Equal(cr.SecretKey, backendKey) {
				t.Fatalf("backend got cancel %d/%x, want 4242/%x", cr.ProcessID, cr.SecretKey, backendKey)
			}
			fb.expectNoCancel(t)

			// Once the session is over its key is forgotten.
			c.send(&pgproto3.Terminate{})
			if m := bc.receive(); !isTerminate(m) {
				t.Fatalf("backend got %T, want Terminate", m)
			}
			bc.conn.Close()
			c.expectEOF()
			p.waitSessions(t, 0)
			sendCancel(t, p.addr, 4242, clientKey)
			fb.expectNoCancel(t)
		})
	}
}

func isTerminate(m pgproto3.FrontendMessage) bool {
	_, ok := m.(*pgproto3.Terminate)
	return ok
}

// TestNegotiateProtocolVersion checks that the server's
// NegotiateProtocolVersion reaches the client unchanged and that the proxy's
// key then follows the version the server settled on.
func TestNegotiateProtocolVersion(t *testing.T) {
	for _, tc := range []struct {
		name        string
		clientMinor uint16
		params      []string
		nv          pgproto3.NegotiateProtocolVersion
		keyLen      int
	}{
		{
			name:        "3.2 with option to a 3.0 server",
			clientMinor: 2,
			params:      []string{"user", "alice", "_pq_.foo", "bar"},
			nv:          pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: []string{"_pq_.foo"}},
			keyLen:      4,
		},
		{
			// PostgreSQL itself sends the whole version word, 3<<16|minor.
			name:        "3.2 with option to a 3.0 server, version word",
			clientMinor: 2,
			params:      []string{"user", "alice", "_pq_.foo", "bar"},
			nv:          pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 3 << 16, UnrecognizedOptions: []string{"_pq_.foo"}},
			keyLen:      4,
		},
		{
			name:        "grease 3.9999 to a 3.2 server, version word",
			clientMinor: 9999,
			params:      []string{"user", "alice", "_pq_.test_protocol_negotiation", ""},
			nv:          pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 3<<16 | 2, UnrecognizedOptions: []string{"_pq_.test_protocol_negotiation"}},
			keyLen:      32,
		},
		{
			name:        "grease 3.9999 to a 3.2 server",
			clientMinor: 9999,
			params:      []string{"user", "alice"},
			nv:          pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 2, UnrecognizedOptions: []string{}},
			keyLen:      32,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c := dialProxy(t, p.addr)
			sm := startupMsg(tc.clientMinor, tc.params...)
			c.write(sm)
			bc := fb.accept(t)
			if !bytes.Equal(bc.startup, sm) {
				t.Fatalf("backend got startup %q, client sent %q", bc.startup, sm)
			}
			sent := encode(t, &tc.nv)
			backendKey := randBytes(t, tc.keyLen)
			bc.send(&tc.nv)
			bc.handshake(99, backendKey)

			nv := recv[*pgproto3.NegotiateProtocolVersion](c)
			if got := encode(t, nv); !bytes.Equal(got, sent) {
				t.Fatalf("client got NegotiateProtocolVersion %q, backend sent %q", got, sent)
			}
			clientKey := c.expectHandshake(99)
			if len(clientKey) != tc.keyLen {
				t.Fatalf("client key of %d bytes after negotiating 3.%d, want %d", len(clientKey), tc.nv.NewestMinorProtocol, tc.keyLen)
			}
			sendCancel(t, p.addr, 99, clientKey)
			if cr := fb.expectCancel(t); !bytes.Equal(cr.SecretKey, backendKey) {
				t.Fatalf("backend got secret %x, want %x", cr.SecretKey, backendKey)
			}
		})
	}
}

// TestSASLChannelBindingStripped checks that SCRAM-SHA-256-PLUS is removed
// from the mechanisms and that the SASL exchange is otherwise relayed byte
// for byte.
func TestSASLChannelBindingStripped(t *testing.T) {
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	c := dialProxy(t, p.addr)
	c.write(startupMsg(0, "user", "alice"))
	bc := fb.accept(t)

	bc.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}})
	if mechs := recv[*pgproto3.AuthenticationSASL](c).AuthMechanisms; !slices.Equal(mechs, []string{"SCRAM-SHA-256"}) {
		t.Fatalf("client offered %q, want only SCRAM-SHA-256", mechs)
	}

	initial := encode(t, &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,,n=,r=rOprNGfwEbeRWgbNEkqO")})
	c.write(initial)
	if err := bc.be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		t.Fatal(err)
	}
	if m, ok := bc.receive().(*pgproto3.SASLInitialResponse); !ok || m.AuthMechanism != "SCRAM-SHA-256" {
		t.Fatalf("backend got %T %+v", m, m)
	}
	if got := bc.rec.take(); !bytes.Equal(got, initial) {
		t.Fatalf("backend got %q, client sent %q", got, initial)
	}

	cont := []byte("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
	bc.send(&pgproto3.AuthenticationSASLContinue{Data: cont})
	if got := recv[*pgproto3.AuthenticationSASLContinue](c).Data; !bytes.Equal(got, cont) {
		t.Fatalf("client got SASLContinue %q, want %q", got, cont)
	}
	final := encode(t, &pgproto3.SASLResponse{Data: []byte("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")})
	c.write(final)
	if err := bc.be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		t.Fatal(err)
	}
	if m, ok := bc.receive().(*pgproto3.SASLResponse); !ok {
		t.Fatalf("backend got %T", m)
	}
	if got := bc.rec.take(); !bytes.Equal(got, final) {
		t.Fatalf("backend got %q, client sent %q", got, final)
	}

	bc.send(&pgproto3.AuthenticationSASLFinal{Data: []byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")})
	bc.handshake(7, randBytes(t, 4))
	if got := recv[*pgproto3.AuthenticationSASLFinal](c).Data; string(got) != "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" {
		t.Fatalf("client got SASLFinal %q", got)
	}
	c.expectHandshake(7)
}

// TestSASLChannelBindingDowngradeRefused checks the client that supports
// channel binding and, not offered SCRAM-SHA-256-PLUS, says so with GS2
// header "y": a server that offered PLUS would take it for a downgrade
// attack, so the proxy refuses it plainly with FATAL 28000 and forwards
// nothing. When the server itself offered no PLUS, "y" is forwarded.
func TestSASLChannelBindingDowngradeRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		mechs     []string
		forwarded bool
	}{
		{"server offered PLUS", []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}, false},
		{"server offered no PLUS", []string{"SCRAM-SHA-256"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c := dialProxy(t, p.addr)
			c.write(startupMsg(0, "user", "alice"))
			bc := fb.accept(t)
			bc.send(&pgproto3.AuthenticationSASL{AuthMechanisms: tc.mechs})
			if mechs := recv[*pgproto3.AuthenticationSASL](c).AuthMechanisms; !slices.Equal(mechs, []string{"SCRAM-SHA-256"}) {
				t.Fatalf("client offered %q, want only SCRAM-SHA-256", mechs)
			}
			initial := encode(t, &pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("y,,n=,r=rOprNGfwEbeRWgbNEkqO")})
			c.write(initial)
			if err := bc.be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
				t.Fatal(err)
			}
			if tc.forwarded {
				bc.receive()
				if got := bc.rec.take(); !bytes.Equal(got, initial) {
					t.Fatalf("backend got %q, client sent %q", got, initial)
				}
				return
			}
			c.expectError("FATAL", "28000")
			c.expectEOF()
			bc.expectEOF()
			if got := bc.rec.take(); len(got) != 0 {
				t.Fatalf("backend got %q", got)
			}
		})
	}
}

// TestPasswordRelayed checks the cleartext password exchange: the request
// reaches the client and the answer the backend, both unchanged.
func TestPasswordRelayed(t *testing.T) {
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	c := dialProxy(t, p.addr)
	c.write(startupMsg(0, "user", "alice"))
	bc := fb.accept(t)
	bc.send(&pgproto3.AuthenticationCleartextPassword{})
	recv[*pgproto3.AuthenticationCleartextPassword](c)
	pw := encode(t, &pgproto3.PasswordMessage{Password: "s3cr3t"})
	c.write(pw)
	if m, ok := bc.receive().(*pgproto3.PasswordMessage); !ok || m.Password != "s3cr3t" {
		t.Fatalf("backend got %T %+v", m, m)
	}
	if got := bc.rec.take(); !bytes.Equal(got, pw) {
		t.Fatalf("backend got %q, client sent %q", got, pw)
	}
	bc.handshake(8, randBytes(t, 4))
	c.expectHandshake(8)
}

// TestEncryptionRequestsRefused checks that GSSENCRequest and, without a
// certificate, SSLRequest are answered 'N' and the startup then proceeds in
// plaintext.
func TestEncryptionRequestsRefused(t *testing.T) {
	for _, tc := range []struct {
		name     string
		requests []uint32
	}{
		{"GSSENCRequest", []uint32{gssEncRequestCode}},
		{"SSLRequest", []uint32{sslRequestCode}},
		{"GSSENCRequest then SSLRequest", []uint32{gssEncRequestCode, sslRequestCode}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c := dialProxy(t, p.addr)
			for _, code := range tc.requests {
				c.write(requestPacket(code))
				if b := c.readByte(); b != 'N' {
					t.Fatalf("request %d answered %q, want 'N'", code, b)
				}
			}
			sm := startupMsg(0, "user", "alice")
			c.write(sm)
			bc := fb.accept(t)
			if !bytes.Equal(bc.startup, sm) {
				t.Fatalf("backend got startup %q, client sent %q", bc.startup, sm)
			}
			bc.handshake(1, randBytes(t, 4))
			c.expectHandshake(1)
		})
	}
}

// TestTLS checks TLS towards the client: SSLRequest and direct TLS work,
// and plaintext sent right behind an SSLRequest is refused.
func TestTLS(t *testing.T) {
	sc := pgtest.SelfSigned(t, "localhost")
	cert, pool := &sc.TLS, sc.Pool
	withCert := func(o *proxy.Options) { o.Certificate = cert }

	// startOverTLS runs a session over an established TLS connection.
	startOverTLS := func(t *testing.T, fb *fakeBackend, tc *tls.Conn) {
		t.Helper()
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		c := newClient(t, tc)
		sm := startupMsg(2, "user", "alice")
		c.write(sm)
		bc := fb.accept(t)
		if !bytes.Equal(bc.startup, sm) {
			t.Fatalf("backend got startup %q, client sent %q", bc.startup, sm)
		}
		bc.handshake(5, randBytes(t, 32))
		c.expectHandshake(5)
	}

	t.Run("SSLRequest", func(t *testing.T) {
		fb := newFakeBackend(t)
		p := startProxy(t, fb.addr, withCert)
		c := dialProxy(t, p.addr)
		c.write(requestPacket(sslRequestCode))
		if b := c.readByte(); b != 'S' {
			t.Fatalf("SSLRequest answered %q, want 'S'", b)
		}
		startOverTLS(t, fb, tls.Client(c.conn, &tls.Config{ServerName: "localhost", RootCAs: pool}))
	})

	t.Run("direct", func(t *testing.T) {
		fb := newFakeBackend(t)
		p := startProxy(t, fb.addr, withCert)
		c := dialProxy(t, p.addr)
		startOverTLS(t, fb, tls.Client(c.conn, &tls.Config{ServerName: "localhost", RootCAs: pool, NextProtos: []string{"postgresql"}}))
	})

	t.Run("direct without ALPN", func(t *testing.T) {
		fb := newFakeBackend(t)
		p := startProxy(t, fb.addr, withCert)
		c := dialProxy(t, p.addr)
		tc := tls.Client(c.conn, &tls.Config{ServerName: "localhost", RootCAs: pool})
		// The handshake itself may complete; the session must not.
		if err := tc.Handshake(); err == nil {
			if _, err := tc.Write(startupMsg(0, "user", "alice")); err == nil {
				if n, err := tc.Read(make([]byte, 1)); err == nil {
					t.Fatalf("direct TLS without ALPN answered %d bytes", n)
				}
			}
		}
		if n := fb.dials.Load(); n != 0 {
			t.Fatalf("backend dialled %d times", n)
		}
	})

	t.Run("plaintext after SSLRequest", func(t *testing.T) {
		fb := newFakeBackend(t)
		p := startProxy(t, fb.addr, withCert)
		c := dialProxy(t, p.addr)
		// One write: the startup packet is in the proxy's buffer before the
		// handshake, where a man in the middle would have put it. A proxy
		// that went on would wait for a ClientHello (dropping those bytes)
		// instead of refusing.
		c.write(append(requestPacket(sslRequestCode), startupMsg(0, "user", "alice")...))
		got, err := io.ReadAll(c.conn)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		// PostgreSQL answers 'S' before it notices; the refusal that follows
		// is in plaintext.
		if len(got) > 0 && got[0] == 'S' {
			got = got[1:]
		}
		fe := pgproto3.NewFrontend(bytes.NewReader(got), io.Discard)
		m, err := fe.Receive()
		if e, ok := m.(*pgproto3.ErrorResponse); err != nil || !ok || e.Severity != "FATAL" || e.Code != "08P01" {
			t.Fatalf("answer %q to SSLRequest with plaintext behind it, want FATAL 08P01", got)
		}
		if _, err := fe.Receive(); err == nil {
			t.Fatalf("more after the FATAL: %q", got)
		}
		if n := fb.dials.Load(); n != 0 {
			t.Fatalf("backend dialled %d times", n)
		}
	})

	t.Run("SSLRequest over TLS", func(t *testing.T) {
		fb := newFakeBackend(t)
		p := startProxy(t, fb.addr, withCert)
		c := dialProxy(t, p.addr)
		c.write(requestPacket(sslRequestCode))
		if b := c.readByte(); b != 'S' {
			t.Fatalf("SSLRequest answered %q, want 'S'", b)
		}
		tc := tls.Client(c.conn, &tls.Config{ServerName: "localhost", RootCAs: pool})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		tlsClient := newClient(t, tc)
		// PostgreSQL reads a second request as a startup packet of
		// protocol 1234.5679.
		tlsClient.write(requestPacket(sslRequestCode))
		if e := tlsClient.expectError("FATAL", "0A000"); e.Message != "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0" {
			t.Fatalf("message %q", e.Message)
		}
		tlsClient.expectEOF()
		if n := fb.dials.Load(); n != 0 {
			t.Fatalf("backend dialled %d times", n)
		}
	})
}

// TestStartupPacketRejected checks that malformed startup packets get FATAL
// 08P01 and the connection closed, without the backend being dialled.
func TestStartupPacketRejected(t *testing.T) {
	// Only the first bytes of each packet are sent: they are what the proxy
	// judges, and sending the rest would leave unread bytes at its close,
	// which makes the kernel reset the connection under the client.
	withLen := func(n uint32, rest ...byte) []byte { return append(binary.BigEndian.AppendUint32(nil, n), rest...) }
	for _, tc := range []struct {
		name   string
		packet []byte
	}{
		{"length 10005", withLen(10005, 0, 3, 0, 0)},
		{"length 4294967295", withLen(0xffffffff, 0, 3, 0, 0)},
		{"length 7", withLen(7, 0, 3, 0)},
		{"length 0", withLen(0, 0, 3, 0, 0)},
		{"Terminate first", []byte{'X', 0, 0, 0, 4}},
		{"cancel request of 12 bytes", withLen(12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// PostgreSQL closes without a word.
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c := dialProxy(t, p.addr)
			c.write(tc.packet)
			c.expectSilentClose()
			if n := fb.dials.Load(); n != 0 {
				t.Fatalf("backend dialled %d times", n)
			}
		})
	}
}

// TestStartupPacketForServer checks that startup packets the proxy cannot
// read reach the server as they are, and its answer the client, byte for
// byte: the old protocol's error format for 2.0 is the server's to send.
func TestStartupPacketForServer(t *testing.T) {
	whole := func(body ...byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(4+len(body))), body...)
	}
	for _, tc := range []struct {
		name   string
		packet []byte
	}{
		{"no terminator", whole(0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 'b', 'c', 0)},
		{"value without terminator", whole(0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 'b', 'c')},
		{"garbage after terminator", whole(0, 3, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 0, 'x')},
		{"protocol 2.0", whole(0, 2, 0, 0, 'u', 's', 'e', 'r', 0, 'a', 0, 0)},
		{"protocol 4.0", whole(0, 4, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c := dialProxy(t, p.addr)
			c.write(tc.packet)
			bc := fb.accept(t)
			if !bytes.Equal(bc.startup, tc.packet) {
				t.Fatalf("server got %q, want %q", bc.startup, tc.packet)
			}
			answer := []byte("EFATAL:  the server's own words\n\x00")
			bc.writeRaw(answer)
			bc.conn.Close()
			got, err := io.ReadAll(c.conn)
			if err != nil || !bytes.Equal(got, answer) {
				t.Fatalf("client got %q (%v), want %q", got, err, answer)
			}
		})
	}
}

// TestUnencryptedDataAfterRequest checks PostgreSQL's refusal of bytes sent
// with an SSLRequest or GSSENCRequest, before its answer, and of a second
// request of either kind.
func TestUnencryptedDataAfterRequest(t *testing.T) {
	startup := startupMsg(0, "user", "u")
	for _, tc := range []struct {
		name      string
		send      [][]byte // each written after the answer to the one before
		answers   string
		code, msg string
	}{
		{"SSLRequest with a startup packet", [][]byte{append(requestPacket(sslRequestCode), startup...)}, "N",
			"08P01", "received unencrypted data after SSL request"},
		{"GSSENCRequest with a startup packet", [][]byte{append(requestPacket(gssEncRequestCode), startup...)}, "N",
			"08P01", "received unencrypted data after GSSAPI encryption request"},
		{"SSLRequest twice", [][]byte{requestPacket(sslRequestCode), requestPacket(sslRequestCode)}, "N",
			"0A000", "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0"},
		{"GSSENCRequest twice", [][]byte{requestPacket(gssEncRequestCode), requestPacket(gssEncRequestCode)}, "N",
			"0A000", "unsupported frontend protocol 1234.5680: server supports 3.0 to 3.0"},
		{"SSL, GSS, SSL", [][]byte{requestPacket(sslRequestCode), requestPacket(gssEncRequestCode), requestPacket(sslRequestCode)}, "NN",
			"0A000", "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c := dialProxy(t, p.addr)
			var answers []byte
			for i, b := range tc.send {
				c.write(b)
				if i < len(tc.answers) {
					answers = append(answers, c.readByte())
				}
			}
			if string(answers) != tc.answers {
				t.Fatalf("answers %q, want %q", answers, tc.answers)
			}
			e := c.expectError("FATAL", tc.code)
			if e.Message != tc.msg {
				t.Fatalf("message %q, want %q", e.Message, tc.msg)
			}
			if tc.code == "08P01" && !strings.Contains(e.Detail, "man-in-the-middle") {
				t.Fatalf("detail %q", e.Detail)
			}
			c.expectEOF()
			if n := fb.dials.Load(); n != 0 {
				t.Fatalf("backend dialled %d times", n)
			}
		})
	}
}

// TestBackendUnreachable checks FATAL 08006 when the backend cannot be
// dialled.
func TestBackendUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := startProxy(t, addr)
	c := dialProxy(t, p.addr)
	c.write(startupMsg(0, "user", "alice"))
	c.expectError("FATAL", "08006")
	c.expectEOF()
}

// TestBackendGoesAway checks what the client sees when the backend ends the
// session: its own FATAL relayed alone, or FATAL 08006 from the proxy when
// the backend closed silently.
func TestBackendGoesAway(t *testing.T) {
	fatal := pgproto3.ErrorResponse{
		Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01",
		Message: "terminating connection due to administrator command",
		File:    "postgres.c", Line: 3300, Routine: "ProcessInterrupts",
	}
	authFatal := pgproto3.ErrorResponse{
		Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28P01",
		Message: `password authentication failed for user "alice"`,
	}
	for _, tc := range []struct {
		name    string
		idle    bool // after ReadyForQuery, else during authentication
		backend func(bc *beConn)
		want    *pgproto3.ErrorResponse // nil for the proxy's 08006
	}{
		{"idle, silent close", true, func(bc *beConn) {}, nil},
		{"idle, FATAL then close", true, func(bc *beConn) { bc.send(&fatal) }, &fatal},
		{"auth, silent close", false, func(bc *beConn) {}, nil},
		{"auth, FATAL then close", false, func(bc *beConn) { bc.send(&authFatal) }, &authFatal},
		{"auth, truncated message", false, func(bc *beConn) { bc.writeRaw([]byte{'R', 0, 0, 0, 8, 0}) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c := dialProxy(t, p.addr)
			c.write(startupMsg(0, "user", "alice"))
			bc := fb.accept(t)
			if tc.idle {
				bc.handshake(3, randBytes(t, 4))
				c.expectHandshake(3)
			}
			tc.backend(bc)
			bc.conn.Close()
			if tc.want == nil {
				c.expectError("FATAL", "08006")
			} else {
				got := recv[*pgproto3.ErrorResponse](c)
				if want := encode(t, tc.want); !bytes.Equal(encode(t, got), want) {
					t.Fatalf("client got %+v, want %+v", got, tc.want)
				}
			}
			c.expectEOF()
		})
	}
}

// TestBackendDiesMidStream checks that when the backend goes away in the
// middle of a message, the whole messages before it still reach the client,
// followed by FATAL 08006 as the client is at a message boundary.
func TestBackendDiesMidStream(t *testing.T) {
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	c, bc, _, _ := establish(t, fb, p, 0, 4)
	notice := encode(t, &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "before the crash"})
	row := encode(t, &pgproto3.DataRow{Values: [][]byte{[]byte("a value")}})
	bc.writeRaw(append(notice, row[:len(row)-3]...))
	bc.conn.Close()
	if n := recv[*pgproto3.NoticeResponse](c); n.Message != "before the crash" {
		t.Fatalf("client got notice %q", n.Message)
	}
	c.expectError("FATAL", "08006")
	c.expectEOF()
}

// TestMaxClientConns checks FATAL 53300 over the limit, and that a session
// that ends frees its slot.
func TestMaxClientConns(t *testing.T) {
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr, func(o *proxy.Options) { o.Limits.MaxClientConns = 1 })
	c1, bc1, _, _ := establish(t, fb, p, 0, 4)

	c2 := dialProxy(t, p.addr)
	c2.write(startupMsg(0, "user", "bob"))
	c2.expectError("FATAL", "53300")
	c2.expectEOF()
	if n := fb.dials.Load(); n != 1 {
		t.Fatalf("backend dialled %d times, want 1", n)
	}

	c1.send(&pgproto3.Terminate{})
	if m := bc1.receive(); !isTerminate(m) {
		t.Fatalf("backend got %T, want Terminate", m)
	}
	bc1.conn.Close()
	c1.expectEOF()
	p.waitSessions(t, 0)

	establish(t, fb, p, 0, 4)
}

// TestPipelineOrder checks that 1000 queries pipelined in one write reach
// the backend in order and their replies the client in order.
func TestPipelineOrder(t *testing.T) {
	const n = 1000
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	c, bc, _, _ := establish(t, fb, p, 0, 4)

	echoed := make(chan error, 1)
	go func() {
		for i := range n {
			m, err := bc.be.Receive()
			if err != nil {
				echoed <- fmt.Errorf("query %d: %w", i, err)
				return
			}
			q, ok := m.(*pgproto3.Query)
			if want := fmt.Sprintf("SELECT %d", i); !ok || q.String != want {
				echoed <- fmt.Errorf("backend got %T %+v, want %q", m, m, want)
				return
			}
			bc.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(q.String)})
			bc.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			if err := bc.be.Flush(); err != nil {
				echoed <- err
				return
			}
		}
		echoed <- nil
	}()

	var batch []byte
	for i := range n {
		batch = append(batch, encode(t, &pgproto3.Query{String: fmt.Sprintf("SELECT %d", i)})...)
	}
	c.write(batch)
	for i := range n {
		if tag := recv[*pgproto3.CommandComplete](c).CommandTag; string(tag) != fmt.Sprintf("SELECT %d", i) {
			t.Fatalf("reply %d is for %q", i, tag)
		}
		recv[*pgproto3.ReadyForQuery](c)
	}
	if err := <-echoed; err != nil {
		t.Fatal(err)
	}
}

// TestLargeMessages checks messages larger than the relay's buffers, which
// are streamed rather than buffered, in both directions.
func TestLargeMessages(t *testing.T) {
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	c, bc, _, _ := establish(t, fb, p, 0, 4)

	big := "SELECT '" + strings.Repeat("x", 100<<10) + "'"
	c.send(&pgproto3.Query{String: big}, &pgproto3.Query{String: "SELECT 2"})
	if q, ok := bc.receive().(*pgproto3.Query); !ok || q.String != big {
		t.Fatal("backend did not get the large query intact")
	}
	if q, ok := bc.receive().(*pgproto3.Query); !ok || q.String != "SELECT 2" {
		t.Fatal("backend did not get the query after the large one")
	}

	value := bytes.Repeat([]byte("0123456789abcdef"), 20<<10)
	bc.send(
		&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("v"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}},
		&pgproto3.DataRow{Values: [][]byte{value}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	)
	recv[*pgproto3.RowDescription](c)
	if row := recv[*pgproto3.DataRow](c); len(row.Values) != 1 || !bytes.Equal(row.Values[0], value) {
		t.Fatal("client did not get the large row intact")
	}
	recv[*pgproto3.CommandComplete](c)
	recv[*pgproto3.ReadyForQuery](c)
}

// TestClientProtocolViolation checks that a client message with an
// impossible length gets FATAL 08P01 and ends the session.
func TestClientProtocolViolation(t *testing.T) {
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	c, bc, _, _ := establish(t, fb, p, 0, 4)
	c.write([]byte{'Q', 0, 0, 0, 3})
	c.expectError("FATAL", "08P01")
	c.expectEOF()
	bc.expectEOF()
}

// TestShutdown checks that sessions still open when Shutdown's context
// expires, or on Close, get FATAL 57P01, and that Shutdown otherwise waits
// for sessions to end by themselves.
func TestShutdown(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(t *testing.T, srv *proxy.Server)
	}{
		{"Shutdown deadline", func(t *testing.T, srv *proxy.Server) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Shutdown returned %v, want DeadlineExceeded", err)
			}
		}},
		{"Close", func(t *testing.T, srv *proxy.Server) { srv.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c, bc, _, _ := establish(t, fb, p, 2, 32)
			roundTrip(t, c, bc)
			tc.stop(t, p.srv)
			e := c.expectError("FATAL", "57P01")
			if e.Message != "terminating connection due to administrator command" {
				t.Errorf("message %q", e.Message)
			}
			c.expectEOF()
			bc.expectEOF()
			if conn, err := net.DialTimeout("tcp", p.addr, ioTimeout); err == nil {
				conn.Close()
				t.Fatal("the proxy still accepts connections")
			}
		})
	}

	t.Run("smart", func(t *testing.T) {
		fb := newFakeBackend(t)
		p := startProxy(t, fb.addr)
		c, bc, _, _ := establish(t, fb, p, 0, 4)
		done := make(chan error, 1)
		go func() { done <- p.srv.Shutdown(context.Background()) }()

		// Wait for the listener to close; the session must live on.
		deadline := time.Now().Add(ioTimeout)
		for {
			conn, err := net.DialTimeout("tcp", p.addr, ioTimeout)
			if err != nil {
				break
			}
			conn.Close()
			if time.Now().After(deadline) {
				t.Fatal("the proxy still accepts connections")
			}
			time.Sleep(time.Millisecond)
		}
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a session open", err)
		default:
		}
		roundTrip(t, c, bc) // still relaying

		c.send(&pgproto3.Terminate{})
		if m := bc.receive(); !isTerminate(m) {
			t.Fatalf("backend got %T, want Terminate", m)
		}
		bc.conn.Close()
		c.expectEOF()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Shutdown returned %v", err)
			}
		case <-time.After(ioTimeout):
			t.Fatal("Shutdown did not return after the last session ended")
		}
	})
}

// TestShutdownWhileBusy checks that a session killed while the backend is
// streaming replies still ends with FATAL 57P01 at a message boundary.
func TestShutdownWhileBusy(t *testing.T) {
	fb := newFakeBackend(t)
	p := startProxy(t, fb.addr)
	c, bc, _, _ := establish(t, fb, p, 0, 4)
	var batch []byte
	for range 200 {
		batch = append(batch, encode(t, &pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "flood"})...)
	}
	flooding := make(chan struct{})
	go func() {
		defer close(flooding)
		for {
			if _, err := bc.conn.Write(batch); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		bc.conn.Close()
		<-flooding
	})
	for range 1000 {
		recv[*pgproto3.NoticeResponse](c)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		p.srv.Close()
	}()
	t.Cleanup(func() { <-closed })
	for {
		m, err := c.fe.Receive()
		if err != nil {
			t.Fatalf("connection ended with %v before FATAL 57P01", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			if e.Severity != "FATAL" || e.Code != "57P01" {
				t.Fatalf("got %s %s %q, want FATAL 57P01", e.Severity, e.Code, e.Message)
			}
			break
		}
		if _, ok := m.(*pgproto3.NoticeResponse); !ok {
			t.Fatalf("got %T, want notices then FATAL", m)
		}
	}
	c.expectEOF()
}

// TestShutdownRightAfterReadyForQuery checks that a session killed just as
// its startup ends, when the client already has ReadyForQuery, still tells
// the client FATAL 57P01.
func TestShutdownRightAfterReadyForQuery(t *testing.T) {
	for i := range 50 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c, _, _, _ := establish(t, fb, p, 2, 32)
			p.srv.Close()
			c.expectError("FATAL", "57P01")
			c.expectEOF()
		})
	}
}

// TestBackendResetDuringCopy checks that a client streaming CopyData to a
// backend that resets the connection gets FATAL 08006, whichever of the
// proxy's two relay directions notices first.
func TestBackendResetDuringCopy(t *testing.T) {
	for i := range 30 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			fb := newFakeBackend(t)
			p := startProxy(t, fb.addr)
			c, bc, _, _ := establish(t, fb, p, 0, 4)
			chunk := encode(t, &pgproto3.CopyData{Data: bytes.Repeat([]byte("x"), 8000)})
			writing := make(chan struct{})
			go func() {
				defer close(writing)
				for {
					if _, err := c.conn.Write(chunk); err != nil {
						return
					}
				}
			}()
			t.Cleanup(func() {
				c.conn.Close()
				<-writing
			})
			if _, err := bc.conn.Read(make([]byte, 64<<10)); err != nil {
				t.Fatal(err)
			}
			if err := bc.conn.(*net.TCPConn).SetLinger(0); err != nil {
				t.Fatal(err)
			}
			bc.conn.Close() // sends RST
			for {
				m, err := c.fe.Receive()
				if err != nil {
					t.Fatalf("connection ended with %v before FATAL 08006", err)
				}
				if e, ok := m.(*pgproto3.ErrorResponse); ok {
					if e.Severity != "FATAL" || e.Code != "08006" {
						t.Fatalf("got %s %s %q, want FATAL 08006", e.Severity, e.Code, e.Message)
					}
					break
				}
			}
		})
	}
}
