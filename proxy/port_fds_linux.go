//go:build linux

package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// fdPort is the engine's port in the event-loop relay. The engine runs
// while its session is detached from the loop (loopSession.detach), on a
// goroutine that then owns the session's sockets, flows and ledger: it
// reads and writes the nonblocking fds, waiting in poll(2) when they are
// not ready. Only claim's call of state runs on the loop itself, while the
// loop owns the ledger.
type fdPort struct{ ls *loopSession }

// portIO holds the buffered readers and writers of a detached session,
// allocated per detach so that an idle session holds none.
type portIO struct {
	cw, bw *bufio.Writer
	br     *bufio.Reader
}

func (p fdPort) io() *portIO {
	ls := p.ls
	if ls.io == nil {
		ls.io = &portIO{
			cw: bufio.NewWriterSize(fdIO{fd: ls.cfd}, bufSize),
			bw: bufio.NewWriterSize(fdIO{fd: ls.bfd, backend: true}, bufSize),
		}
	}
	return ls.io
}

func (p fdPort) writeClient(b []byte)  { _, _ = p.io().cw.Write(b) }
func (p fdPort) flushClient() error    { return p.io().cw.Flush() }
func (p fdPort) writeBackend(b []byte) { _, _ = p.io().bw.Write(b) }
func (p fdPort) flushBackend() error   { return p.io().bw.Flush() }

func (p fdPort) state() (status byte, discarding, copyIn bool) {
	return p.ls.l.status, p.ls.l.discarding, p.ls.l.copyIn
}
func (p fdPort) txEpoch() uint64       { return p.ls.l.epoch }
func (p fdPort) afterSync(status byte) { p.ls.l.afterSync(status) }
func (p fdPort) setDiscarding()        { p.ls.l.discarding = true }

// acquire relays what the backend owes the client, blocking, until nothing
// is outstanding and no message is half forwarded; the engine then reads
// the backend itself.
func (p fdPort) acquire() error {
	ls := p.ls
	pending, needFlush := ls.l.outstanding()
	if needFlush {
		// The server holds extended-protocol replies until Sync or Flush.
		p.writeBackend(pgwire.FlushMsg)
	}
	if err := p.flushBackend(); err != nil {
		return err
	}
	if !pending && ls.down.empty() {
		return nil
	}
	for {
		ls.moveDown()
		if ls.end != nil {
			return fmt.Errorf("%w: %v", errBackendGone, ls.end)
		}
		if ls.l.drained() && ls.down.empty() {
			return nil
		}
		switch {
		case !ls.cOut:
			if err := waitFD(ls.cfd, unix.POLLOUT); err != nil {
				return err
			}
			ls.cOut = true
		case !ls.bIn:
			if err := waitFD(ls.bfd, unix.POLLIN); err != nil {
				return fmt.Errorf("%w: %v", errBackendGone, err)
			}
			ls.bIn = true
		}
	}
}

// next reads the next whole backend message.
func (p fdPort) next() (backendMsg, error) {
	pio := p.io()
	if pio.br == nil {
		pio.br = bufio.NewReaderSize(fdIO{fd: p.ls.bfd, backend: true}, bufSize)
	}
	b, total, err := peekHeader(pio.br)
	if err != nil {
		return backendMsg{}, fmt.Errorf("%w: %v", errBackendGone, err)
	}
	msg := make([]byte, total)
	if _, err := io.ReadFull(pio.br, msg); err != nil {
		return backendMsg{}, fmt.Errorf("%w: %v", errBackendGone, err)
	}
	return backendMsg{typ: pgwire.Backend(b), msg: msg}, nil
}

// release gives what next read ahead back to the relay, which frames and
// forwards it as usual once the session is attached again.
func (p fdPort) release() error {
	pio := p.io()
	if pio.br != nil {
		p.ls.down.load(buffered(pio.br))
		pio.br = nil
	}
	return p.flushClient()
}

// watchClient calls cancel if the client hangs up while a standalone
// command runs. As in the goroutine relay, a client that has sent more is
// not watched: it is still there.
func (p fdPort) watchClient(cancel func()) (stop func()) {
	ls := p.ls
	if ls.up.scan < ls.up.tail {
		return func() {}
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fds := []unix.PollFd{{Fd: int32(ls.cfd), Events: unix.POLLIN | unix.POLLRDHUP}, {Fd: int32(efd), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || fds[1].Revents != 0 {
				return
			}
			break
		}
		gone := fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		if !gone {
			var one [1]byte
			n, _, err := unix.Recvfrom(ls.cfd, one[:], unix.MSG_PEEK)
			gone = err == nil && n == 0
		}
		if gone {
			ls.s.debug("client left during a command; cancelling it")
			cancel()
		}
	}()
	return func() {
		one := [8]byte{1}
		_, _ = unix.Write(efd, one[:])
		<-done
		unix.Close(efd)
	}
}

// fdIO reads and writes a nonblocking socket as if it blocked, waiting in
// poll(2). Errors on the backend's socket are errBackendGone.
type fdIO struct {
	fd      int
	backend bool
}

func (f fdIO) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(f.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := waitFD(f.fd, unix.POLLIN); err != nil {
				return 0, f.wrap(err)
			}
			continue
		case err != nil:
			return 0, f.wrap(err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (f fdIO) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(f.fd, p[done:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := waitFD(f.fd, unix.POLLOUT); err != nil {
				return done, f.wrap(err)
			}
			continue
		case err != nil:
			return done, f.wrap(err)
		}
		done += n
	}
	return done, nil
}

func (f fdIO) wrap(err error) error {
	if f.backend {
		return fmt.Errorf("%w: %v", errBackendGone, err)
	}
	return err
}

// blockingWrite writes what f has framed to fd, waiting as needed.
func blockingWrite(fd int, f *flow) error {
	if f.head == f.scan {
		return nil
	}
	n, err := fdIO{fd: fd}.Write(f.buf[f.head:f.scan])
	f.head += n
	return err
}

// waitFD waits until fd is ready for events (or has failed: the I/O that
// follows reports how).
func waitFD(fd int, events int16) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	for {
		_, err := unix.Poll(fds, -1)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
