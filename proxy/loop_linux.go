//go:build linux

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/stats"
)

// loopsSupported reports whether this build has the event-loop relay.
const loopsSupported = true

// loopSet is a server's event loops, one per GOMAXPROCS, started when the
// first session is handed to them.
type loopSet struct {
	once  sync.Once
	loops []*loop
	err   error
	next  atomic.Uint32
}

func newLoopSet() *loopSet { return &loopSet{} }

// pick returns the loop for a new session, round robin.
func (ls *loopSet) pick() (*loop, error) {
	ls.once.Do(func() {
		for range runtime.GOMAXPROCS(0) {
			lp, err := newLoop()
			if err != nil {
				ls.err = err
				return
			}
			ls.loops = append(ls.loops, lp)
			go lp.run()
		}
	})
	if ls.err != nil {
		return nil, ls.err
	}
	return ls.loops[ls.next.Add(1)%uint32(len(ls.loops))], nil
}

// stop ends the loops; they must serve no session any more.
func (ls *loopSet) stop() {
	if ls == nil {
		return
	}
	for _, lp := range ls.loops {
		lp.post(func() { lp.stopped = true })
	}
}

// loop is one event loop: a goroutine waiting on an epoll set of the
// sockets of its sessions, edge-triggered. Everything a
// loop session holds is touched only by its loop, except while the session
// is detached for the engine (see detach).
type loop struct {
	epfd   int
	wakefd int // eventfd that wakes epoll_wait for posted tasks
	conns  map[int32]*loopSession
	events []unix.EpollEvent

	mu      sync.Mutex
	tasks   []func()
	stopped bool
}

func newLoop() (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Nonblocking, so that os.NewFile puts it in the runtime's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, err
	}
	return &loop{epfd: epfd, wakefd: wakefd, conns: make(map[int32]*loopSession), events: make([]unix.EpollEvent, 256)}, nil
}

// post runs f on the loop's goroutine.
func (lp *loop) post(f func()) {
	lp.mu.Lock()
	lp.tasks = append(lp.tasks, f)
	first := len(lp.tasks) == 1
	lp.mu.Unlock()
	if first {
		one := [8]byte{1}
		_, _ = unix.Write(lp.wakefd, one[:])
	}
}

func (lp *loop) run() {
	// The loop waits for its epoll fd in the runtime's own poller (an epoll
	// fd is readable while it has events), then collects the events without
	// blocking. A blocking epoll_wait would hold an OS thread in a syscall
	// that the scheduler must hand its P off from and back to, a futex
	// wake-up each time the loop sleeps and wakes: the cost the loops are
	// here to save.
	f := os.NewFile(uintptr(lp.epfd), "epoll")
	defer func() {
		f.Close()
		unix.Close(lp.wakefd)
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		panic("pgverbs: epoll fd: " + err.Error())
	}
	for !lp.stopped {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), lp.events, 0)
			return n != 0 || (werr != nil && werr != unix.EINTR)
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			panic("pgverbs: epoll_wait: " + err.Error())
		}
		for i := range n {
			ev := lp.events[i]
			if ev.Fd == int32(lp.wakefd) {
				lp.runTasks()
				continue
			}
			if ls := lp.conns[ev.Fd]; ls != nil {
				ls.ready(ev.Fd, ev.Events)
			}
		}
	}
}

func (lp *loop) runTasks() {
	var buf [8]byte
	_, _ = unix.Read(lp.wakefd, buf[:])
	lp.mu.Lock()
	tasks := lp.tasks
	lp.tasks = nil
	lp.mu.Unlock()
	for _, f := range tasks {
		f()
	}
}

// loopSession is a session relayed by a loop: its two sockets as raw
// nonblocking fds, one flow per direction, and the ledger, owned by the
// loop (no lock) or, while detached, by the goroutine running the engine.
type loopSession struct {
	s       *session
	lp      *loop
	cfd     int
	bfd     int
	up      flow // client to backend
	down    flow // backend to client
	l       ledger
	inspect bool

	// Readiness as last reported by epoll and not used up since: edge
	// triggering reports a change once, so the loop remembers it.
	cIn, cOut, bIn, bOut bool
	// cHup and bHup: the peer closed its side; reads go on to EOF even
	// after a short read.
	cHup, bHup bool

	// step is the engine's step for the client message just claimed;
	// stepSkip the size of that message in up.
	step     func() error
	stepSkip int
	detached bool
	// io holds the engine's buffered I/O while detached.
	io *portIO

	// end is why the session ends, once known; closing is set once the
	// last message (a FATAL, or nothing) is queued to the client.
	end     error
	closing bool
	closed  bool
	// killed is set when the session must end at the next boundary of
	// down with the session's killed error.
	killed bool
	grace  *time.Timer
}

// Reasons a loop session ends.
var (
	errClientGone  = errors.New("client connection ended")
	errBackendLost = errors.New("backend connection lost")
	errKilled      = errors.New("session terminated")
)

// toLoop hands an authenticated plaintext session to an event loop. It
// reports false, leaving the session as it was, when the session cannot
// be served by one (TLS on either side), or the loops are unavailable.
func (s *session) toLoop() bool {
	if s.srv.loops == nil {
		return false
	}
	cfd, ok := rawFD(s.client)
	if !ok {
		return false
	}
	bfd, ok := rawFD(s.backend)
	if !ok {
		unix.Close(cfd)
		return false
	}
	lp, err := s.srv.loops.pick()
	if err != nil {
		s.logger().Warn("event loop unavailable; relaying with goroutines", zap.Error(err))
		unix.Close(cfd)
		unix.Close(bfd)
		return false
	}
	ls := &loopSession{
		s: s, lp: lp, cfd: cfd, bfd: bfd, l: newLedger(),
		inspect: !s.replication && !s.srv.commands.Empty(),
		cIn:     true, cOut: true, bIn: true, bOut: true,
	}
	// What the startup readers read ahead belongs to the relay now.
	ls.up.load(buffered(s.cr))
	ls.down.load(buffered(s.br))
	s.eng.p = fdPort{ls}
	s.mu.Lock()
	s.ls = ls
	// The dups keep the sockets open; closing the net.Conns takes them
	// out of the runtime's poller. No further read through the startup
	// buffers may happen.
	s.client.Close()
	s.backend.Close()
	s.cr, s.cw, s.br, s.bw = nil, nil, nil, nil
	s.mu.Unlock()
	// The runtime may leave a socket it closes in blocking mode, and the
	// dup shares that flag; one blocking read would stall a whole loop.
	_ = unix.SetNonblock(cfd, true)
	_ = unix.SetNonblock(bfd, true)
	lp.post(ls.attach)
	return true
}

// rawFD duplicates the descriptor of a plain TCP or Unix socket.
func rawFD(c any) (int, bool) {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return 0, false
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	fd := -1
	if err := rc.Control(func(f uintptr) {
		fd, err = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || fd < 0 {
		return 0, false
	}
	return fd, true
}

// attach registers the session's sockets with the loop and starts relaying
// what is already there.
func (ls *loopSession) attach() {
	lp := ls.lp
	for _, fd := range []int{ls.cfd, ls.bfd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
		if err := unix.EpollCtl(lp.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			ls.s.logger().Warn("cannot add session to event loop", zap.Error(err))
			ls.end = errClientGone
			ls.close()
			return
		}
	}
	lp.conns[int32(ls.cfd)] = ls
	lp.conns[int32(ls.bfd)] = ls
	if ls.s.killed.Load() != nil {
		ls.kill()
	}
	ls.pump()
}

// ready records what epoll reported for fd and relays what it allows.
func (ls *loopSession) ready(fd int32, events uint32) {
	if ls.detached || ls.closed {
		// The engine's goroutine owns the flags; reattach sets them all.
		return
	}
	hup := events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0
	in := events&unix.EPOLLIN != 0 || hup
	out := events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0
	if fd == int32(ls.cfd) {
		ls.cIn, ls.cOut, ls.cHup = ls.cIn || in, ls.cOut || out, ls.cHup || hup
	} else {
		ls.bIn, ls.bOut, ls.bHup = ls.bIn || in, ls.bOut || out, ls.bHup || hup
	}
	ls.pump()
}

// pump relays both directions as far as the sockets allow, then acts on
// what it found: a claimed message detaches the session for the engine, an
// ending queues the last words and closes.
func (ls *loopSession) pump() {
	defer ls.recoverPanic()
	ls.moveUp()
	ls.moveDown()
	if ls.end != nil {
		if !ls.closing {
			ls.finish()
			ls.moveDown()
		}
		// Until the last words are written; the client's EPOLLOUT, or the
		// grace timer, comes back here.
		if ls.down.head == ls.down.scan {
			ls.close()
		}
		return
	}
	if ls.step != nil {
		ls.detach()
	}
}

// moveUp relays client messages to the backend.
func (ls *loopSession) moveUp() {
	f := &ls.up
	for ls.end == nil && ls.step == nil {
		if f.head < f.scan {
			if !ls.bOut {
				return
			}
			if !ls.write(ls.bfd, f, &ls.bOut) {
				return
			}
		}
		if f.scan < f.tail && f.need == 0 {
			// Unframed bytes left by the engine's step or the startup
			// readers.
			ls.frameUp()
			continue
		}
		read, err := fill(ls.cfd, f, &ls.cIn, ls.cHup)
		if err != nil {
			if err != io.EOF {
				ls.s.debug("client read failed", zap.Error(err))
			}
			ls.s.clientDone.Store(true)
			ls.setEnd(errClientGone)
			return
		}
		if !read {
			return
		}
		// One clock read per read event, not per message.
		ls.s.st.Touch()
		ls.frameUp()
	}
}

// fill reads what fd holds into f while *readable, reporting whether it
// read anything; end of stream is io.EOF. A drained socket clears
// *readable and returns f's buffer to the pool while it is empty.
func fill(fd int, f *flow, readable *bool, hup bool) (bool, error) {
	if !*readable {
		f.idle()
		return false, nil
	}
	f.room()
	n, err := readFD(fd, f.buf[f.tail:])
	switch {
	case err == unix.EAGAIN:
		*readable = false
		f.idle()
		return false, nil
	case err != nil:
		return false, err
	case n == 0:
		return false, io.EOF
	}
	if f.tail += n; f.tail < len(f.buf) && !hup {
		// A short read drained the socket (epoll(7)): edge-triggered
		// readiness will say when there is more.
		*readable = false
	}
	return true, nil
}

// frameUp frames client messages, recording what each will be answered
// with before the server can see it, and offers the engine those it wants,
// whole.
func (ls *loopSession) frameUp() {
	f := &ls.up
	f.need = 0
	// Counted as the goroutine relay counts (publishUp): the messages
	// passed on, whole, once framed.
	var bytes int
	var queries uint64
	defer func() {
		ls.s.st.AddIn(bytes)
		// Before the queries can reach the server: see publishUp.
		if queries > 0 {
			ls.s.st.AddQueries(queries)
			ls.s.st.SetState(stats.Active)
		}
	}()
	for f.skipBody() {
		b, total, ok, err := f.header()
		if err != nil {
			ls.s.logger().Info("client protocol violation", zap.Error(err))
			ls.s.killed.CompareAndSwap(nil, pgerr.Protocol("invalid message length"))
			ls.setEnd(errKilled)
			return
		}
		if !ok {
			return
		}
		typ := pgwire.Frontend(b)
		inspect := ls.inspect && ls.s.eng.wants(typ)
		if inspect || total <= flowBufSize {
			// Whole, as the goroutine relay forwards what fits its buffer:
			// a peer that dies mid-message leaves the other at a boundary.
			msg := f.whole(total)
			if msg == nil {
				return
			}
			if inspect {
				if step, ok := ls.s.eng.claim(typ, msg); ok {
					ls.step, ls.stepSkip = step, total
					return
				}
			}
		}
		ls.l.sent(typ)
		bytes += total
		if typ == pgwire.Query || typ == pgwire.Sync {
			queries++
		}
		if typ == pgwire.Terminate {
			ls.s.clientDone.Store(true)
		}
		f.pass(total)
	}
}

// moveDown relays backend messages to the client.
func (ls *loopSession) moveDown() {
	f := &ls.down
	for ls.end == nil || ls.closing {
		if f.head < f.scan {
			if !ls.cOut {
				return
			}
			if !ls.write(ls.cfd, f, &ls.cOut) {
				return
			}
		}
		if ls.closing || ls.step != nil {
			return
		}
		if f.scan < f.tail && f.need == 0 {
			ls.frameDown()
			continue
		}
		read, err := fill(ls.bfd, f, &ls.bIn, ls.bHup)
		if err != nil {
			if err != io.EOF {
				ls.s.debug("backend read failed", zap.Error(err))
			}
			ls.setEnd(errBackendLost)
			return
		}
		if !read {
			return
		}
		ls.frameDown()
	}
}

// frameDown frames backend messages and ticks them off the ledger. A kill
// stops it at the first message boundary.
func (ls *loopSession) frameDown() {
	f := &ls.down
	f.need = 0
	var bytes int
	var txs uint64 // ended: see pending.msgs
	var ready bool
	defer func() {
		ls.s.st.AddOut(bytes)
		ls.s.st.AddTransactions(txs)
		if ready {
			ls.s.st.SetStatus(ls.l.status)
		}
	}()
	for f.skipBody() {
		if ls.killed {
			ls.setEnd(errKilled)
			return
		}
		b, total, ok, err := f.header()
		if err != nil {
			ls.s.logger().Warn("backend protocol violation", zap.Error(err))
			ls.setEnd(errBackendLost)
			return
		}
		if !ok {
			return
		}
		typ := pgwire.Backend(b)
		var msg []byte
		if total <= flowBufSize {
			// Whole: see frameUp. ReadyForQuery's status and an
			// ErrorResponse's severity are read from it.
			if msg = f.whole(total); msg == nil {
				return
			}
			if typ == pgwire.ErrorResponse {
				ls.s.backendFatal = pgerr.IsFatalResponse(msg[pgwire.HeaderLen:])
			}
		}
		ls.l.received(typ, msg)
		bytes += total
		if typ == pgwire.ReadyForQuery && len(msg) > pgwire.HeaderLen {
			ready = true
			if msg[pgwire.HeaderLen] == pgwire.TxIdle {
				txs++
			}
		}
		f.pass(total)
	}
	if ls.killed && f.atBoundary() {
		ls.setEnd(errKilled)
	}
}

// write writes what f has framed to fd, reporting whether all of it went.
func (ls *loopSession) write(fd int, f *flow, ready *bool) bool {
	for f.head < f.scan {
		n, err := unix.Write(fd, f.buf[f.head:f.scan])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			*ready = false
			return false
		}
		if err != nil {
			if fd == ls.cfd {
				ls.s.clientDone.Store(true)
				ls.setEnd(errClientGone)
			} else {
				ls.setEnd(errBackendLost)
			}
			return false
		}
		f.head += n
	}
	return true
}

// readFD reads once, retrying interrupted reads.
func readFD(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Read(fd, p)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// setEnd records the first reason the session ends.
func (ls *loopSession) setEnd(err error) {
	if ls.end == nil {
		ls.end = err
	}
}

// finish queues what the client is told as the session ends, as the
// goroutine relay's finish does: the kill's error, or FATAL 08006 when the
// backend vanished without a FATAL of its own; nothing when the client is
// gone or down stopped inside a message.
func (ls *loopSession) finish() {
	s := ls.s
	ls.closing = true
	f := &ls.down
	// What was not framed is not sent.
	f.tail = f.scan
	var e *pgerr.Error
	switch {
	case s.clientDone.Load() || !f.atBoundary():
	case ls.end == errKilled:
		e = s.killed.Load()
	case ls.end == errBackendLost && !s.backendFatal:
		s.logger().Warn("backend connection lost")
		e = pgerr.BackendLost(nil)
	}
	if e == nil {
		f.head = f.scan
		return
	}
	wire := e.AppendWire(nil)
	if f.buf == nil || len(f.buf)-f.tail < len(wire) {
		f.load(wire)
	} else {
		f.tail += copy(f.buf[f.tail:], wire)
	}
	f.scan = f.tail
	if ls.grace == nil {
		ls.grace = time.AfterFunc(killGrace, func() { ls.lp.post(ls.close) })
	}
}

// kill ends the session at the next boundary of what the backend sends,
// with the session's killed error; after killGrace its sockets are closed
// whatever the client does. A detached session's engine is woken by
// shutting the sockets down under it.
func (ls *loopSession) kill() {
	if ls.closed {
		return
	}
	if ls.grace == nil {
		ls.grace = time.AfterFunc(killGrace, func() { ls.lp.post(ls.hardClose) })
	}
	if ls.detached {
		// The goroutine owns the session: reattach sees s.killed.
		ls.s.eng.cancelRunning()
		_ = unix.Shutdown(ls.bfd, unix.SHUT_RD)
		return
	}
	ls.killed = true
	if ls.down.atBoundary() {
		ls.setEnd(errKilled)
	}
	ls.pump()
}

// hardClose closes a session that did not end in its grace time.
func (ls *loopSession) hardClose() {
	if ls.closed {
		return
	}
	if ls.detached {
		_ = unix.Shutdown(ls.cfd, unix.SHUT_RDWR)
		_ = unix.Shutdown(ls.bfd, unix.SHUT_RDWR)
		return
	}
	ls.close()
}

// close releases the session's sockets and buffers and ends the session.
func (ls *loopSession) close() {
	if ls.closed {
		return
	}
	ls.closed = true
	if ls.grace != nil {
		ls.grace.Stop()
	}
	delete(ls.lp.conns, int32(ls.cfd))
	delete(ls.lp.conns, int32(ls.bfd))
	unix.Close(ls.cfd)
	unix.Close(ls.bfd)
	ls.up.head, ls.up.tail, ls.down.head, ls.down.tail = 0, 0, 0, 0
	ls.up.idle()
	ls.down.idle()
	s := ls.s
	s.close()
	s.srv.endSession(s)
}

// recoverPanic ends this session alone when relaying it hits a bug.
func (ls *loopSession) recoverPanic() {
	if r := recover(); r != nil {
		ls.s.logger().Error("session failed with an internal error", zap.Any("panic", r), zap.Stack("stack"))
		ls.close()
	}
}

// kill asks the session's loop to end it; see loopSession.kill.
func (ls *loopSession) postKill() { ls.lp.post(ls.kill) }

// detach runs the engine's step on a goroutine of its own, away from the
// loop: it may block on the backend and the client for as long as the
// command takes. The loop ignores the session's events meanwhile; the
// goroutine owns everything the session holds until it posts reattach.
func (ls *loopSession) detach() {
	ls.detached = true
	step := ls.step
	go func() {
		err := ls.runStep(step)
		ls.lp.post(func() { ls.reattach(err) })
	}()
}

// runStep writes out what was framed before the claimed message, drops the
// message (the step owns a copy) and runs the step.
func (ls *loopSession) runStep(step func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			ls.s.logger().Error("command failed with an internal error", zap.Any("panic", r), zap.Stack("stack"))
			err = errClientGone
		}
	}()
	if err := blockingWrite(ls.bfd, &ls.up); err != nil {
		return errBackendLost
	}
	if err := blockingWrite(ls.cfd, &ls.down); err != nil {
		return errClientGone
	}
	ls.up.scan += ls.stepSkip
	ls.up.head = ls.up.scan
	ls.step, ls.stepSkip = nil, 0
	if err := step(); err != nil {
		switch {
		case ls.s.killed.Load() != nil:
			return errKilled
		case errors.Is(err, errBackendGone):
			return errBackendLost
		}
		ls.s.debug("command step ended the session", zap.Error(err))
		return errClientGone
	}
	return nil
}

// reattach returns the session to the loop after the engine's step. The
// sockets may have become ready unseen: relaying resumes as if they had.
func (ls *loopSession) reattach(err error) {
	ls.detached = false
	ls.io = nil
	if ls.closed {
		return
	}
	if err != nil {
		if err == errClientGone {
			ls.s.clientDone.Store(true)
		}
		ls.setEnd(err)
	} else if ls.s.killed.Load() != nil {
		ls.killed = true
		if ls.down.atBoundary() {
			ls.setEnd(errKilled)
		}
	}
	ls.cIn, ls.cOut, ls.bIn, ls.bOut = true, true, true, true
	ls.pump()
}
