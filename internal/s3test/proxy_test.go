package s3test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The framings the SDK does not use over plain HTTP, against a plain HTTP
// server: the damage lands in the payload, never in the framing, and the
// connection keeps working for the next request.
func TestFaultProxyFramings(t *testing.T) {
	bodies := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		bodies <- string(b)
	}))
	defer srv.Close()
	p := NewFaultProxy(t, strings.TrimPrefix(srv.URL, "http://"))

	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	send := func(req string) {
		t.Helper()
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %s", resp.Status)
		}
	}
	p.CorruptRequests(3, func(line string) bool { return strings.Contains(line, "bad") })

	// Transfer-Encoding: chunked: the first data byte.
	send("PUT /bad/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	if got := <-bodies; got != "\x97ello world" {
		t.Errorf("chunked body %q", got)
	}
	// Content-Encoding: aws-chunked inside Content-Length: the first byte
	// after the first chunk's header; the server here sees the framing.
	aws := "5;chunk-signature=abc\r\nhello\r\n0;chunk-signature=def\r\n\r\n"
	send(fmt.Sprintf("PUT /bad/aws HTTP/1.1\r\nHost: x\r\nContent-Encoding: aws-chunked\r\nContent-Length: %d\r\n\r\n%s", len(aws), aws))
	if got, want := <-bodies, strings.Replace(aws, "hello", "\x97ello", 1); got != want {
		t.Errorf("aws-chunked body %q, want %q", got, want)
	}
	// Not matched: intact, and not counted.
	send("PUT /good HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	if got := <-bodies; got != "hello" {
		t.Errorf("unmatched body %q", got)
	}
	// No body: not counted either.
	send("GET /bad/nobody HTTP/1.1\r\nHost: x\r\n\r\n")
	<-bodies
	if n := p.Corrupted(); n != 2 {
		t.Errorf("Corrupted() = %d, want 2", n)
	}
	// The one corruption left.
	send("PUT /bad/plain HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	if got := <-bodies; got != "\x97ello" {
		t.Errorf("plain body %q", got)
	}
	send("PUT /bad/plain HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	if got := <-bodies; got != "hello" {
		t.Errorf("body after the orders ran out %q", got)
	}

	// Cut: the open connection ends, new ones are refused, Resume lets
	// them through again.
	p.Cut()
	if _, err := r.ReadByte(); err == nil {
		t.Error("connection survived Cut")
	}
	if _, err := http.Get(p.Endpoint + "/x"); err == nil {
		t.Error("request through a cut proxy succeeded")
	}
	p.Resume()
	resp, err := http.Get(p.Endpoint + "/x")
	if err != nil {
		t.Fatalf("after Resume: %v", err)
	}
	resp.Body.Close()
}
