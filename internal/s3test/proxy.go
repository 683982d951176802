package s3test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FaultProxy is a TCP proxy in front of an S3 server that damages traffic on
// demand. It forwards bytes unchanged in both directions, except that it
// reads the client's side as HTTP/1.1 requests (keep-alive included) so that
// it can flip one byte in the body of chosen requests.
type FaultProxy struct {
	// Addr is the proxy's host:port on 127.0.0.1.
	Addr string
	// Endpoint is http://Addr, to give a client instead of the server's.
	Endpoint string

	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	refusing  bool
	closed    bool
	match     func(requestLine string) bool
	remaining int
	corrupted int
}

// NewFaultProxy starts a proxy to target (host:port), closed when t ends.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("s3test: fault proxy: %v", err)
	}
	p := &FaultProxy{
		Addr:   ln.Addr().String(),
		target: target,
		ln:     ln,
		conns:  make(map[net.Conn]struct{}),
	}
	p.Endpoint = "http://" + p.Addr
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// CorruptUploadParts damages the body of the next n UploadPart requests
// (request line with partNumber=, UploadPartCopy included).
func (p *FaultProxy) CorruptUploadParts(n int) {
	p.CorruptRequests(n, func(line string) bool { return strings.Contains(line, "partNumber=") })
}

// CorruptRequests damages the body of the next n requests whose request line
// ("PUT /bucket/key?x=y HTTP/1.1") match accepts. A request without a body
// is forwarded intact and not counted. It replaces any earlier order; n = 0
// cancels it.
func (p *FaultProxy) CorruptRequests(n int, match func(requestLine string) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.match, p.remaining = match, n
}

// Corrupted returns how many request bodies the proxy has damaged so far, so
// that a test can tell a refused upload from one that never went through.
func (p *FaultProxy) Corrupted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.corrupted
}

// take reports whether the request with this request line and a body is to
// be damaged, counting it if so.
func (p *FaultProxy) take(line string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.remaining <= 0 || p.match == nil || !p.match(line) {
		return false
	}
	p.remaining--
	p.corrupted++
	return true
}

// Cut closes every connection through the proxy and refuses new ones (they
// are accepted and closed at once, so the port stays the proxy's) until
// Resume.
func (p *FaultProxy) Cut() {
	p.mu.Lock()
	p.refusing = true
	conns := p.conns
	p.conns = make(map[net.Conn]struct{})
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Resume lets new connections through again after Cut.
func (p *FaultProxy) Resume() {
	p.mu.Lock()
	p.refusing = false
	p.mu.Unlock()
}

// Close stops the proxy and closes its connections.
func (p *FaultProxy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

// track registers c, or reports false when connections are refused.
func (p *FaultProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refusing || p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *FaultProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refusing := p.refusing
		p.mu.Unlock()
		if refusing {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *FaultProxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	// Registered after the dial, so a Cut during it must be checked for.
	if !p.track(client, server) {
		client.Close()
		server.Close()
		return
	}
	defer p.untrack(client, server)
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			server.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(client, server)
		closeBoth()
	}()
	p.forwardRequests(server, bufio.NewReaderSize(client, 64<<10))
	closeBoth()
	<-done
}

// forwardRequests copies HTTP requests from client to server until either
// side ends. Should the stream stop parsing as HTTP, the rest is copied
// as it is: a proxy that breaks what it does not understand would make
// faults of its own.
func (p *FaultProxy) forwardRequests(server net.Conn, client *bufio.Reader) {
	w := bufio.NewWriterSize(server, 64<<10)
	for {
		head, err := readHead(client)
		if err != nil {
			if errors.Is(err, errNotHTTP) {
				w.Write(head.raw)
				w.Flush()
				io.Copy(server, client)
			}
			return
		}
		if _, err := w.Write(head.raw); err != nil {
			return
		}
		// Flushed before the body: a client that sent Expect:
		// 100-continue waits for the server's answer to the head.
		if err := w.Flush(); err != nil {
			return
		}
		if head.chunked {
			// aws-chunked framing inside HTTP chunks is not taken apart (the
			// SDK sends it only over TLS, which this proxy cannot read
			// anyway): such a body passes intact and uncounted.
			err = copyChunked(w, client, !head.awsChunked && p.take(head.line))
		} else if head.length > 0 {
			corrupt := p.take(head.line)
			err = copyBody(w, client, head.length, corrupt, corrupt && head.awsChunked)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			return
		}
	}
}

// errNotHTTP marks a request head that does not parse.
var errNotHTTP = errors.New("not an HTTP request")

type requestHead struct {
	raw        []byte // as received
	line       string // request line, without CRLF
	length     int64  // Content-Length, 0 if none
	chunked    bool   // Transfer-Encoding: chunked
	awsChunked bool   // Content-Encoding: aws-chunked (framing inside the body)
}

// readHead reads a request line and headers. At a clean end of the stream
// before any byte it returns io.EOF.
func readHead(r *bufio.Reader) (requestHead, error) {
	var h requestHead
	var raw bytes.Buffer
	first := true
	for {
		line, err := r.ReadSlice('\n')
		raw.Write(line)
		if err != nil {
			h.raw = raw.Bytes()
			if errors.Is(err, bufio.ErrBufferFull) {
				return h, errNotHTTP
			}
			return h, err
		}
		text := strings.TrimRight(string(line), "\r\n")
		if first {
			first = false
			if !strings.HasSuffix(text, " HTTP/1.1") && !strings.HasSuffix(text, " HTTP/1.0") {
				h.raw = raw.Bytes()
				return h, errNotHTTP
			}
			h.line = text
			continue
		}
		if text == "" {
			h.raw = raw.Bytes()
			return h, nil
		}
		name, value, ok := strings.Cut(text, ":")
		if !ok {
			h.raw = raw.Bytes()
			return h, errNotHTTP
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 {
				h.raw = raw.Bytes()
				return h, errNotHTTP
			}
			h.length = n
		case "transfer-encoding":
			h.chunked = strings.Contains(strings.ToLower(value), "chunked")
		case "content-encoding":
			h.awsChunked = strings.Contains(strings.ToLower(value), "aws-chunked")
		}
	}
}

// copyBody copies a body of n bytes, flipping its first payload byte when
// corrupt: the first byte for a plain body, the first byte after the first
// chunk's header line for an aws-chunked one, so that the framing stays
// intact and the server reads the damage as data.
func copyBody(w *bufio.Writer, r *bufio.Reader, n int64, corrupt, awsChunked bool) error {
	if corrupt && awsChunked {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		w.Write(line)
		n -= int64(len(line))
		size, _, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), ";")
		if sz, err := strconv.ParseInt(size, 16, 64); err != nil || sz == 0 {
			corrupt = false // no payload to damage, or framing not understood
		}
	}
	if corrupt && n > 0 {
		b, err := r.ReadByte()
		if err != nil {
			return err
		}
		w.WriteByte(b ^ 0xff)
		n--
	}
	_, err := io.CopyN(w, r, n)
	return err
}

// copyChunked copies a Transfer-Encoding: chunked body through its last
// chunk and trailers, flipping the first payload byte when corrupt.
func copyChunked(w *bufio.Writer, r *bufio.Reader, corrupt bool) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		w.Write(line)
		size, _, _ := strings.Cut(strings.TrimSpace(string(line)), ";")
		n, err := strconv.ParseInt(size, 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad chunk size %q", size)
		}
		if n == 0 {
			// Trailers, up to an empty line.
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return err
				}
				w.Write(line)
				if strings.TrimRight(string(line), "\r\n") == "" {
					return nil
				}
			}
		}
		if err := copyBody(w, r, n, corrupt, false); err != nil {
			return err
		}
		corrupt = false
		// The CRLF after the chunk's data.
		crlf, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		w.Write(crlf)
	}
}
