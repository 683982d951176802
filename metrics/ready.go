package metrics

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// readyFor is how long a readiness answer is reused: a probe every few
// seconds from each of several load balancers still asks the backend at
// most once a second.
const readyFor = time.Second

// probeTimeout bounds one question to the backend; a server that does not
// answer in that time is not ready.
const probeTimeout = 3 * time.Second

// Dialer opens a connection to the backend ready for a startup packet
// (backend.Target.Dial).
type Dialer func(ctx context.Context) (net.Conn, error)

// readiness caches whether the backend accepts connections. Concurrent
// checks share one probe.
type readiness struct {
	probe func(ctx context.Context) error
	now   func() time.Time

	mu      sync.Mutex
	at      time.Time // when err was found; zero before the first probe
	err     error
	running chan struct{} // closed when the probe under way ends; nil if none
}

func newReadiness(probe func(ctx context.Context) error) *readiness {
	return &readiness{probe: probe, now: time.Now}
}

// check returns the backend's readiness, probing only when the last answer
// is older than readyFor and no probe is under way.
func (r *readiness) check(ctx context.Context) error {
	r.mu.Lock()
	if !r.at.IsZero() && r.now().Sub(r.at) < readyFor {
		err := r.err
		r.mu.Unlock()
		return err
	}
	if r.running == nil {
		r.running = make(chan struct{})
		go r.run(r.running)
	}
	done := r.running
	r.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// run probes once, on a context of its own: the request that started it
// may go away, the others waiting still want the answer.
func (r *readiness) run(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	err := r.probe(ctx)
	cancel()
	r.mu.Lock()
	r.err, r.at, r.running = err, r.now(), nil
	r.mu.Unlock()
	close(done)
}

// errStartingUp is the server's 57P03: up, but not accepting connections
// (starting, shutting down, or in recovery without hot standby).
var errStartingUp = errors.New("the backend does not accept connections yet (57P03)")

// pgIsReady asks the server as pg_isready does: it opens a connection,
// sends a startup packet for user and database, and reads the first
// answer. An authentication request or any error other than 57P03 means
// the server accepts connections; the connection is closed at once, so no
// session starts.
func pgIsReady(dial Dialer, user, database string) func(ctx context.Context) error {
	packet := startupPacket(user, database)
	return func(ctx context.Context) error {
		conn, err := dial(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		if _, err := conn.Write(packet); err != nil {
			return err
		}
		var hdr [5]byte
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return err
		}
		switch hdr[0] {
		case 'R', 'v': // an authentication request, NegotiateProtocolVersion
			return nil
		case 'E':
		default:
			return fmt.Errorf("unexpected message %q from the backend", hdr[0])
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n < 4 || n > 64<<10 {
			return fmt.Errorf("invalid error message length %d from the backend", n)
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(conn, body); err != nil {
			return err
		}
		if errorCode(body) == "57P03" {
			return errStartingUp
		}
		return nil
	}
}

// startupPacket encodes a protocol 3.0 StartupMessage.
func startupPacket(user, database string) []byte {
	body := binary.BigEndian.AppendUint32(nil, 3<<16)
	for _, s := range []string{"user", user, "database", database, "application_name", "pgverbs readyz"} {
		body = append(append(body, s...), 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(4+len(body))), body...)
}

// errorCode returns the SQLSTATE field of an ErrorResponse body.
func errorCode(body []byte) string {
	for len(body) > 0 && body[0] != 0 {
		field := body[0]
		end := 1
		for end < len(body) && body[end] != 0 {
			end++
		}
		if field == 'C' {
			return string(body[1:end])
		}
		if end >= len(body) {
			break
		}
		body = body[end+1:]
	}
	return ""
}
