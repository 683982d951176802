package proxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// errFraming marks a message whose length word is impossible.
var errFraming = errors.New("invalid message length")

// peekHeader returns the type and total size (type byte included) of the
// next message in r without consuming it.
func peekHeader(r *bufio.Reader) (typ byte, total int, err error) {
	hdr, err := r.Peek(5)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	// The length counts itself; PostgreSQL's messages stay under 1 GiB, and
	// the cap keeps total from overflowing an int on any platform.
	if n < 4 || n > 1<<30 {
		return hdr[0], 0, fmt.Errorf("%w: %d", errFraming, n)
	}
	return hdr[0], int(n) + 1, nil
}

// copyMessage forwards one message of total bytes from r to w. Messages
// that fit the reader's buffer are returned for inspection; larger ones are
// streamed and msg is nil. mid reports whether an error left a message
// partly forwarded.
func copyMessage(w *bufio.Writer, r *bufio.Reader, total int) (msg []byte, mid bool, err error) {
	if total <= r.Size() {
		msg, err = r.Peek(total)
		if err != nil {
			// Nothing of this message was written yet.
			return nil, false, err
		}
		if _, err := w.Write(msg); err != nil {
			return nil, true, writeError{err}
		}
		_, _ = r.Discard(total)
		return msg, false, nil
	}
	n, err := io.CopyN(writerOnly{w}, r, int64(total))
	if err != nil {
		return nil, n > 0, err
	}
	return nil, false, nil
}

// buffered returns the bytes r has read ahead, without consuming them.
func buffered(r *bufio.Reader) []byte {
	if r == nil {
		return nil
	}
	b, _ := r.Peek(r.Buffered())
	return b
}

// writeError marks a failure to write to the destination, so that the
// session can tell which peer went away.
type writeError struct{ err error }

func (e writeError) Error() string { return "write: " + e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// writerOnly wraps write errors of w as writeError for io.CopyN.
type writerOnly struct{ w *bufio.Writer }

func (w writerOnly) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		err = writeError{err}
	}
	return n, err
}

// relayLoops runs the relay phase: one goroutine copies client messages to
// the backend, this one copies backend messages to the client. Each side
// stops the other by closing or interrupting the connections, so neither
// outlives the session:
//
//   - client EOF or Terminate: the backend is closed after its last replies;
//   - client protocol error: killed is set and the backend reader woken to
//     send the FATAL at a message boundary;
//   - backend EOF: the client gets the server's FATAL if it sent one, else
//     FATAL 08006, and is closed;
//   - kill (shutdown): as for a client protocol error.
func (s *session) relayLoops() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer s.recoverPanic()
		err := s.clientToBackend()
		switch {
		case err == nil || isClosed(err):
			s.clientDone.Store(true)
			// Let the server see the Terminate (or EOF) and close its side;
			// the backend loop then ends on EOF. Closing now would only race
			// with replies nobody reads.
			if err != nil {
				s.backend.Close()
			}
		case errors.As(err, new(writeError)):
			// The backend went away under a client write: the backend loop
			// reports it to the client as 08006.
			s.backend.Close()
		case errors.Is(err, errFraming):
			s.logger().Info("client protocol violation", zap.Error(err))
			s.kill(pgerr.Protocol("invalid message length"))
		default:
			s.logger().Debug("client side ended", zap.Error(err))
			s.clientDone.Store(true)
			s.backend.Close()
		}
	}()

	mid, err := s.backendToClient()
	s.finish(mid, err)
	s.client.Close()
	s.backend.Close()
	<-done
}

// finish tells the client why the session ends, if it can still hear it.
func (s *session) finish(mid bool, err error) {
	if s.clientDone.Load() || mid {
		return
	}
	if e := s.killed.Load(); e != nil {
		s.sendFatal(e)
		return
	}
	if s.backendFatal {
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, new(writeError)) {
		s.logger().Debug("client connection lost", zap.Error(err))
		return
	}
	s.logger().Warn("backend connection lost", zap.Error(err))
	s.sendFatal(pgerr.BackendLost(err))
}

// clientToBackend forwards client messages until the client leaves. The
// messages the engine wants to see (Query, Parse, and those that refer to a
// command statement or portal) are offered to it whole first.
func (s *session) clientToBackend() error {
	inspect := !s.replication && !s.srv.commands.Empty()
	defer s.publishUp()
	for {
		b, total, err := peekHeader(s.cr)
		if err != nil {
			return err
		}
		typ := pgwire.Frontend(b)
		if inspect && s.eng.wants(typ) {
			handled, err := s.offer(typ, total)
			if err != nil {
				return err
			}
			if handled {
				if err := s.flushIfIdle(); err != nil {
					return err
				}
				continue
			}
		}
		// Record the expected replies before the bytes can reach the
		// server: a full buffer flushes inside copyMessage.
		s.h.sent(typ)
		if typ == pgwire.Terminate {
			// Before the server can see Terminate and close: its EOF must
			// not be taken for a lost backend.
			s.clientDone.Store(true)
		}
		s.up.countUp(typ, total)
		if _, _, err := copyMessage(s.bw, s.cr, total); err != nil {
			return err
		}
		if typ == pgwire.Terminate {
			return s.flushBackend()
		}
		if err := s.flushIfIdle(); err != nil {
			return err
		}
	}
}

// offer shows the next client message, whole, to the engine. If the engine
// claims it, the message is consumed and the engine's step run; otherwise
// it stays in the reader to be forwarded as usual, unless it was too big to
// peek at: it is then forwarded from memory here, and handled reports true.
func (s *session) offer(typ pgwire.Frontend, total int) (handled bool, err error) {
	if total > s.cr.Size() {
		msg := make([]byte, total)
		if _, err := io.ReadFull(s.cr, msg); err != nil {
			return false, err
		}
		if step, ok := s.eng.claim(typ, msg); ok {
			return true, step()
		}
		s.h.sent(typ)
		s.up.countUp(typ, total)
		_, err := s.bw.Write(msg)
		return true, err
	}
	msg, err := s.cr.Peek(total)
	if err != nil {
		return false, err
	}
	step, ok := s.eng.claim(typ, msg)
	if !ok {
		return false, nil
	}
	// The step owns what it needs: the reader may reuse its buffer now, as
	// watchClient's read does.
	_, _ = s.cr.Discard(total)
	return true, step()
}

// flushIfIdle sends what was written to the backend once no more client
// input is buffered, so that pipelined messages go out in one write.
func (s *session) flushIfIdle() error {
	if s.cr.Buffered() > 0 {
		return nil
	}
	return s.flushBackend()
}

// flushBackend flushes the backend writer. A failed write means the
// backend went away, not the client: writeError says so. What was
// counted is published first: the client reader has nothing buffered, so
// this is once per read.
func (s *session) flushBackend() error {
	s.publishUp()
	if err := s.bw.Flush(); err != nil {
		return writeError{err}
	}
	return nil
}

// backendToClient forwards backend messages until the backend connection
// ends or is interrupted. While the engine has the backend (execMode), it
// delivers messages to the engine instead.
func (s *session) backendToClient() (mid bool, err error) {
	h := s.h
	defer h.close()
	defer s.publishDown()
	for {
		b, total, err := s.peekBackend()
		if err != nil {
			// A failed peek consumed nothing: the client is at a message
			// boundary and may still be told why the session ends.
			return false, err
		}
		typ := pgwire.Backend(b)
		if h.execMode.Load() {
			if err := s.toEngine(typ, total); err != nil {
				return false, err
			}
			continue
		}
		h.writing.Store(true)
		if h.execMode.Load() {
			// The engine took over between the two loads; it waits for
			// writing to clear before it touches the client.
			h.writing.Store(false)
			continue
		}
		msg, mid, err := copyMessage(s.cw, s.br, total)
		if err != nil {
			h.writing.Store(false)
			return mid, err
		}
		if typ == pgwire.ErrorResponse && msg != nil {
			s.backendFatal = pgerr.IsFatalResponse(msg[pgwire.HeaderLen:])
		}
		s.down.countDown(typ, total, msg)
		if s.br.Buffered() == 0 {
			s.publishDown()
			if err := s.cw.Flush(); err != nil {
				h.writing.Store(false)
				return false, writeError{err}
			}
		}
		h.writing.Store(false)
		h.received(typ, msg)
	}
}

// toEngine reads one whole message and hands it to the engine. If the
// engine released the backend in the meantime, the message is forwarded to
// the client instead, with the usual accounting.
func (s *session) toEngine(typ pgwire.Backend, total int) error {
	msg := make([]byte, total)
	if _, err := io.ReadFull(s.br, msg); err != nil {
		return err
	}
	if s.h.deliver(backendMsg{typ: typ, msg: msg}) {
		return nil
	}
	if _, err := s.cw.Write(msg); err != nil {
		return writeError{err}
	}
	s.h.received(typ, msg)
	if s.br.Buffered() == 0 {
		if err := s.cw.Flush(); err != nil {
			return writeError{err}
		}
	}
	return nil
}

// peekBackend is peekHeader on the backend reader, stopping at a message
// boundary when the session has been killed.
func (s *session) peekBackend() (byte, int, error) {
	if s.killed.Load() != nil {
		return 0, 0, os.ErrDeadlineExceeded
	}
	typ, total, err := peekHeader(s.br)
	if err != nil && s.killed.Load() != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The deadline was ours; nothing is lost as no byte was consumed.
		return 0, 0, err
	}
	return typ, total, err
}
