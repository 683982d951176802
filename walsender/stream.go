package walsender

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// xlogDataHeader is the bytes before an XLogData message's WAL: CopyData
// type and length, 'w', dataStart, walEnd, sendTime.
const xlogDataHeader = 1 + 4 + 1 + 3*8

// sendBatch bounds one round of sending, so that a long catch-up still
// reads the standby's replies (and its silence is not misjudged).
const sendBatch = 4 << 20

// maxSend is MAX_SEND_SIZE: at most 16 pages of WAL a message.
const maxSend = 16 * pageSize

// pageSize is XLOG_BLCKSZ: a message that does not reach the durable end
// is cut at a page boundary, as the walsender cuts it.
const pageSize = 8192

// Standby is one standby streaming from pgverbs, for SHOW WAL STANDBYS
// and /metrics (pg_stat_replication's columns).
type Standby struct {
	PID                         uint32
	User                        string
	ApplicationName, ClientAddr string
	Slot                        string
	// State is startup, catchup, streaming or stopping.
	State    string
	Timeline uint32
	// Sent is the end of what pgverbs sent; Write, Flush and Replay what
	// the standby last reported (0: not yet).
	Sent, Write, Flush, Replay uint64
	// The lags as pg_stat_replication measures them: the time from
	// sending WAL to the report that it was written, flushed, replayed;
	// -1 when unknown.
	WriteLag, FlushLag, ReplayLag time.Duration
	ReplyTime                     time.Time
	Started                       time.Time
	// Xmin and CatalogXmin are its hot-standby feedback (0: none).
	Xmin, CatalogXmin uint32
}

// standby is a streaming connection's shared record.
type standby struct {
	mu   sync.Mutex
	info Standby
	// xminEpoch and catalogEpoch complete the feedback.
	xminEpoch, catalogEpoch uint32
	lag                     lagTracker
}

func (sb *standby) snapshot() Standby {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	return sb.info
}

// lagTracker remembers when WAL positions were sent, so that a reply
// says how long the standby took (PostgreSQL's LagTracker, simplified to
// one ring of samples read by three cursors).
type lagTracker struct {
	samples [256]struct {
		lsn uint64
		at  time.Time
	}
	head int
	read [3]int // write, flush, replay
}

func (l *lagTracker) sent(lsn uint64, at time.Time) {
	prev := (l.head + len(l.samples) - 1) % len(l.samples)
	if l.samples[prev].lsn >= lsn {
		return
	}
	next := (l.head + 1) % len(l.samples)
	for i, r := range l.read {
		if r == next {
			// Full: the oldest sample goes, read as if seen.
			l.read[i] = (r + 1) % len(l.samples)
		}
	}
	l.samples[l.head].lsn, l.samples[l.head].at = lsn, at
	l.head = next
}

// lag returns how long ago the newest sample at or below lsn was sent,
// for cursor i; ok is false when no sample was passed.
func (l *lagTracker) lag(i int, lsn uint64, now time.Time) (time.Duration, bool) {
	var found time.Time
	for l.read[i] != l.head && l.samples[l.read[i]].lsn <= lsn {
		found = l.samples[l.read[i]].at
		l.read[i] = (l.read[i] + 1) % len(l.samples)
	}
	if found.IsZero() {
		return 0, false
	}
	return now.Sub(found), true
}

// reply is what the standby sent during streaming.
type reply struct {
	typ  byte // 'r', 'h', or 'c' for CopyDone
	body []byte
	err  error
}

// startReplication runs START_REPLICATION as walsender.c's
// StartReplication does, from the archive.
func (c *conn) startReplication(ctx context.Context, cmd command) error {
	a := c.srv.cfg.Archive
	if cmd.name != "" {
		if err := walarchive.CheckSlotName(cmd.name); err != nil {
			return err
		}
		if _, err := a.AcquireSlot(cmd.name, c.s.PID); err != nil {
			return err
		}
		// Released however the command ends, as the walsender's error
		// cleanup does; a temporary slot stays with its connection.
		defer a.ReleaseSlot(cmd.name, c.s.PID)
	}
	p, _, err := c.position()
	if err != nil {
		return err
	}
	st := &streamState{c: c, cmd: cmd, tli: p.Timeline, segSize: p.SegmentSize}
	if cmd.timeline != 0 && cmd.timeline != p.Timeline {
		h, err := c.history(p.Timeline)
		if err != nil {
			return pgerr.New(pgerr.UndefinedFile, "could not open file \"pg_wal/%08X.history\": No such file or directory", p.Timeline)
		}
		end, next, ok := switchPoint(cmd.timeline, p.Timeline, h)
		if !ok {
			return pgerr.New(pgerr.InternalError, "requested timeline %d is not in this server's history", cmd.timeline)
		}
		if end < cmd.lsn {
			e := pgerr.New(pgerr.InternalError, "requested starting point %s on timeline %d is not in this server's history",
				walstream.FormatLSN(cmd.lsn), cmd.timeline)
			e.Detail = "This server's history forked from timeline " + strconv.FormatUint(uint64(cmd.timeline), 10) +
				" at " + walstream.FormatLSN(end) + "."
			return e
		}
		st.tli, st.historic, st.validUpto, st.nextTLI = cmd.timeline, true, end, next
	}
	if !st.historic || cmd.lsn < st.validUpto {
		c.out = appendCopyBoth(c.out)
		if err := c.flush(); err != nil {
			return err
		}
		if !st.historic && p.Flushed < cmd.lsn {
			if p = c.awaitSwitch(ctx, p, cmd.lsn); p.Flushed < cmd.lsn {
				return pgerr.New(pgerr.InternalError, "requested starting point %s is ahead of the WAL flush position of this server %s",
					walstream.FormatLSN(cmd.lsn), walstream.FormatLSN(p.Flushed))
			}
		}
		if err := st.run(ctx); err != nil {
			return err
		}
	}
	if st.historic {
		c.out = appendRowDescription(c.out, int8Col("next_tli"), textCol("next_tli_startpos"))
		c.out = appendDataRow(c.out, []byte(strconv.FormatUint(uint64(st.nextTLI), 10)), []byte(walstream.FormatLSN(st.validUpto)))
	}
	c.out = appendCommandComplete(c.out, "START_STREAMING")
	c.out = appendCommandComplete(c.out, "START_REPLICATION")
	return nil
}

// switchWait bounds how long a standby that follows the archive to a new
// timeline waits for the archive to hold the new timeline's WAL up to
// the switch point (it writes the switch segment again from its start).
const switchWait = 10 * time.Second

// awaitSwitch waits, when lsn is at or before the point where the
// archive's timeline began, until the archive's durable position reaches
// it: right after a timeline switch the archive is briefly behind the
// point its standbys stopped at, which is no reason to refuse them.
func (c *conn) awaitSwitch(ctx context.Context, p walarchive.Position, lsn uint64) walarchive.Position {
	h, err := c.history(p.Timeline)
	if err != nil || len(h) == 0 || h[len(h)-1].end < lsn {
		return p
	}
	deadline := time.After(switchWait)
	for {
		p, changed, err := c.position()
		if err != nil || p.Flushed >= lsn {
			return p
		}
		select {
		case <-changed:
		case <-deadline:
			return p
		case <-ctx.Done():
			return p
		}
	}
}

// streamState is one START_REPLICATION's streaming.
type streamState struct {
	c       *conn
	cmd     command
	sb      *standby
	tli     uint32
	segSize uint64
	// historic: tli is not the archive's newest timeline; streaming ends
	// at validUpto, where nextTLI begins.
	historic  bool
	validUpto uint64
	nextTLI   uint32
	sent      uint64

	seg      io.ReadCloser
	segTLI   uint32
	segNo    uint64
	segOff   uint64
	buf      []byte
	lastRead time.Time // the last reply from the standby
	pinged   bool      // a keepalive asking for a reply is unanswered
}

// run streams until the timeline ends (historic) or the standby ends the
// COPY; errors are the ones the client sees, or end the connection.
func (st *streamState) run(ctx context.Context) error {
	c := st.c
	st.sent = st.cmd.lsn
	st.buf = make([]byte, 0, maxSend+64)
	st.sb = &standby{info: Standby{PID: c.s.PID, User: c.s.User, ApplicationName: c.s.ApplicationName,
		ClientAddr: c.s.ClientAddr, Slot: st.cmd.name, State: "catchup", Timeline: st.tli, Sent: st.sent,
		WriteLag: -1, FlushLag: -1, ReplayLag: -1, Started: time.Now()}}
	c.srv.register(st.sb)
	defer func() {
		c.srv.unregister(st.sb)
		if st.seg != nil {
			st.seg.Close()
		}
	}()

	replies := make(chan reply, 64)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go st.readReplies(rctx, replies)
	// After the reader goroutine is done with the client's reader, the
	// command loop may read it again.
	defer func() {
		cancel()
		_ = c.s.Client.SetReadDeadline(time.Unix(1, 0))
		for r := range replies {
			_ = r
		}
		_ = c.s.Client.SetReadDeadline(time.Time{})
	}()

	timeout := c.srv.cfg.Timeout
	st.lastRead = time.Now()
	tick := time.NewTicker(min(timeout/4, time.Second))
	defer tick.Stop()
	doneSending := false
	for {
		p, changed, err := c.position()
		if err != nil {
			return err
		}
		if !st.historic && p.Timeline != st.tli {
			if err := st.becomeHistoric(p.Timeline); err != nil {
				return err
			}
		}
		limit := p.Flushed
		if st.historic {
			limit = st.validUpto
		}
		if !doneSending && st.sent < limit {
			if err := st.send(min(limit, st.sent+sendBatch), limit); err != nil {
				return err
			}
		}
		if !doneSending && st.historic && st.sent >= st.validUpto {
			// The end of the timeline: CopyDone, then wait for the
			// standby's own.
			st.setState("stopping")
			c.out = appendCopyDone(c.out)
			if err := c.flush(); err != nil {
				return err
			}
			doneSending = true
		}
		if !doneSending && st.sent >= limit {
			st.setState("streaming")
		}
		if !doneSending && st.sent < limit {
			// More to send: check replies without waiting.
			select {
			case r := <-replies:
				if end, err := st.handle(r, doneSending); end || err != nil {
					return err
				}
			default:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return pgerr.NewFatal(pgerr.AdminShutdown, "terminating walsender process due to administrator command")
		case <-changed:
		case r := <-replies:
			if end, err := st.handle(r, doneSending); end || err != nil {
				return err
			}
		case now := <-tick.C:
			silent := now.Sub(st.lastRead)
			if silent >= timeout {
				c.srv.log.Info("terminating walsender process due to replication timeout",
					zap.String("application_name", c.s.ApplicationName), zap.String("client", c.s.ClientAddr))
				return errors.New("replication timeout")
			}
			if silent >= timeout/2 && !st.pinged {
				st.pinged = true
				c.out = appendKeepalive(c.out, st.sent, now, true)
				if err := c.flush(); err != nil {
					return err
				}
			}
		}
	}
}

// becomeHistoric follows the archive to a new timeline while streaming
// the old one: the stream now ends at the switch point, and the standby
// gets the end-of-timeline handshake there.
func (st *streamState) becomeHistoric(cur uint32) error {
	h, err := st.c.history(cur)
	if err != nil {
		return pgerr.NewFatal(pgerr.UndefinedFile, "could not read the history of timeline %d: %v", cur, err)
	}
	end, next, ok := switchPoint(st.tli, cur, h)
	if !ok {
		return pgerr.NewFatal(pgerr.InternalError, "timeline %d is not in the history of the archive's new timeline %d", st.tli, cur)
	}
	st.historic, st.validUpto, st.nextTLI = true, end, next
	return nil
}

// send writes XLogData from st.sent up to limit: at most maxSend a
// message, cut at a page boundary unless it reaches walEnd (the durable
// end, which every message names), flushed once.
func (st *streamState) send(limit, walEnd uint64) error {
	c := st.c
	for st.sent < limit {
		end := min(limit, st.sent+maxSend)
		if end < walEnd {
			end -= end % pageSize
			if end <= st.sent {
				end = min(limit, st.sent+maxSend)
			}
		}
		n := int(end - st.sent)
		now := time.Now()
		c.out = appendXLogDataHeader(c.out, st.sent, walEnd, now, n)
		at := len(c.out)
		c.out = slices.Grow(c.out, n)[:at+n]
		if err := st.read(c.out[at:], st.sent); err != nil {
			c.out = c.out[:at-xlogDataHeader]
			return err
		}
		st.sent = end
		st.sb.mu.Lock()
		st.sb.info.Sent = end
		st.sb.lag.sent(end, now)
		st.sb.mu.Unlock()
		if len(c.out) >= 256<<10 {
			if err := c.flush(); err != nil {
				return err
			}
		}
	}
	return c.flush()
}

// read fills p with the WAL at lsn from the archive's files.
func (st *streamState) read(p []byte, lsn uint64) error {
	for len(p) > 0 {
		segno, off := lsn/st.segSize, lsn%st.segSize
		if err := st.open(segno, off); err != nil {
			return err
		}
		n := min(uint64(len(p)), st.segSize-off)
		got, err := io.ReadFull(st.seg, p[:n])
		st.segOff += uint64(got)
		if err != nil {
			return pgerr.New(pgerr.IOError, "could not read from WAL segment %s, offset %d: %v",
				walarchive.SegmentName(st.segTLI, lsn, st.segSize), off, err)
		}
		p, lsn = p[n:], lsn+n
	}
	return nil
}

// open positions st.seg at offset off of segment segno: the streamed
// timeline's file, or for the segment where a historic timeline ends the
// new timeline's (which holds the same bytes up to the switch point), as
// WalSndSegmentOpen chooses.
func (st *streamState) open(segno, off uint64) error {
	if st.seg != nil && st.segNo == segno && st.segOff == off {
		return nil
	}
	if st.seg != nil && st.segNo == segno && st.segOff < off {
		if _, err := io.CopyN(io.Discard, st.seg, int64(off-st.segOff)); err == nil {
			st.segOff = off
			return nil
		}
	}
	if st.seg != nil {
		st.seg.Close()
		st.seg = nil
	}
	a := st.c.srv.cfg.Archive
	tlis := []uint32{st.tli}
	if st.historic && segno == st.validUpto/st.segSize {
		tlis = []uint32{st.tli, st.nextTLI}
	}
	var err error
	for _, tli := range tlis {
		var f io.ReadCloser
		if f, err = a.ReadSegment(tli, segno); err == nil {
			st.seg, st.segTLI, st.segNo, st.segOff = f, tli, segno, 0
			break
		}
	}
	if err != nil {
		name := walarchive.SegmentName(st.tli, segno*st.segSize, st.segSize)
		if errors.Is(err, fs.ErrNotExist) {
			return pgerr.New(pgerr.UndefinedFile, "requested WAL segment %s has already been removed", name)
		}
		return pgerr.New(pgerr.IOError, "could not open file \"pg_wal/%s\": %v", name, err)
	}
	if off > 0 {
		if _, err := io.CopyN(io.Discard, st.seg, int64(off)); err != nil {
			return pgerr.New(pgerr.IOError, "could not seek in WAL segment %s: %v", walarchive.SegmentName(st.segTLI, segno*st.segSize, st.segSize), err)
		}
		st.segOff = off
	}
	return nil
}

// readReplies reads the standby's messages during COPY until an error or
// ctx ends, and closes ch.
func (st *streamState) readReplies(ctx context.Context, ch chan<- reply) {
	defer close(ch)
	for ctx.Err() == nil {
		typ, body, err := readMessage(st.c.s.ClientR, maxMessage)
		if err != nil {
			if ctx.Err() == nil {
				ch <- reply{err: err}
			}
			return
		}
		switch pgwire.Frontend(typ) {
		case pgwire.CopyData:
			if len(body) > 0 {
				ch <- reply{typ: body[0], body: body[1:]}
			}
		case pgwire.CopyDone:
			ch <- reply{typ: 'c'}
			return
		case pgwire.Terminate:
			ch <- reply{err: io.EOF}
			return
		default:
			ch <- reply{err: pgerr.NewFatal(pgerr.ProtocolViolation, "unexpected message type 0x%02X during COPY", typ)}
			return
		}
	}
}

// handle processes one message of the standby; end is true when the
// COPY is over.
func (st *streamState) handle(r reply, doneSending bool) (end bool, err error) {
	c := st.c
	if r.err != nil {
		return true, r.err
	}
	st.lastRead, st.pinged = time.Now(), false
	switch r.typ {
	case 'c':
		if !doneSending {
			c.out = appendCopyDone(c.out)
			if err := c.flush(); err != nil {
				return true, err
			}
		}
		return true, nil
	case 'r':
		if len(r.body) < 33 {
			return true, pgerr.NewFatal(pgerr.ProtocolViolation, "invalid standby status message")
		}
		write := binary.BigEndian.Uint64(r.body[0:])
		flush := binary.BigEndian.Uint64(r.body[8:])
		apply := binary.BigEndian.Uint64(r.body[16:])
		sendTime := int64(binary.BigEndian.Uint64(r.body[24:]))
		st.status(write, flush, apply, fromPGTime(sendTime))
		if r.body[32] != 0 {
			c.out = appendKeepalive(c.out, st.sent, time.Now(), false)
			return false, c.flush()
		}
	case 'h':
		if len(r.body) < 24 {
			return true, pgerr.NewFatal(pgerr.ProtocolViolation, "invalid hot standby feedback message")
		}
		st.sb.mu.Lock()
		st.sb.info.Xmin = binary.BigEndian.Uint32(r.body[8:])
		st.sb.xminEpoch = binary.BigEndian.Uint32(r.body[12:])
		st.sb.info.CatalogXmin = binary.BigEndian.Uint32(r.body[16:])
		st.sb.catalogEpoch = binary.BigEndian.Uint32(r.body[20:])
		xmin, cxmin := st.sb.info.Xmin, st.sb.info.CatalogXmin
		st.sb.mu.Unlock()
		if st.cmd.name != "" {
			c.srv.cfg.Archive.AdvanceSlot(st.cmd.name, 0, 0, xmin, cxmin)
		}
		c.srv.aggregateFeedback()
	default:
		return true, pgerr.NewFatal(pgerr.ProtocolViolation, "unexpected message type \"%c\"", r.typ)
	}
	return false, nil
}

// status records a standby status update: positions, lags, the slot.
func (st *streamState) status(write, flush, apply uint64, replyTime time.Time) {
	now := time.Now()
	st.sb.mu.Lock()
	st.sb.info.Write, st.sb.info.Flush, st.sb.info.Replay, st.sb.info.ReplyTime = write, flush, apply, replyTime
	for i, lsn := range []uint64{write, flush, apply} {
		if d, ok := st.sb.lag.lag(i, lsn, now); ok {
			switch i {
			case 0:
				st.sb.info.WriteLag = d
			case 1:
				st.sb.info.FlushLag = d
			case 2:
				st.sb.info.ReplayLag = d
			}
		}
	}
	xmin, cxmin := st.sb.info.Xmin, st.sb.info.CatalogXmin
	st.sb.mu.Unlock()
	if st.cmd.name != "" && flush != 0 {
		st.c.srv.cfg.Archive.AdvanceSlot(st.cmd.name, flush, st.tli, xmin, cxmin)
	}
}

func (st *streamState) setState(s string) {
	st.sb.mu.Lock()
	st.sb.info.State = s
	st.sb.mu.Unlock()
}

// register adds a streaming standby.
func (s *Server) register(sb *standby) {
	s.mu.Lock()
	s.standbys[sb] = struct{}{}
	n := len(s.standbys)
	s.mu.Unlock()
	s.cfg.Archive.SetDemand(n)
}

func (s *Server) unregister(sb *standby) {
	s.mu.Lock()
	delete(s.standbys, sb)
	n := len(s.standbys)
	s.mu.Unlock()
	s.cfg.Archive.SetDemand(n)
	s.aggregateFeedback()
}

// aggregateFeedback sends the oldest xmin and catalog_xmin any standby
// asked for upstream as the archive's own (epoch-aware: epoch<<32|xid).
func (s *Server) aggregateFeedback() {
	var f walarchive.Feedback
	var xmin, cxmin uint64
	s.mu.Lock()
	for sb := range s.standbys {
		sb.mu.Lock()
		if sb.info.Xmin != 0 {
			if v := uint64(sb.xminEpoch)<<32 | uint64(sb.info.Xmin); xmin == 0 || v < xmin {
				xmin, f.Xmin, f.XminEpoch = v, sb.info.Xmin, sb.xminEpoch
			}
		}
		if sb.info.CatalogXmin != 0 {
			if v := uint64(sb.catalogEpoch)<<32 | uint64(sb.info.CatalogXmin); cxmin == 0 || v < cxmin {
				cxmin, f.CatalogXmin, f.CatalogXminEpoch = v, sb.info.CatalogXmin, sb.catalogEpoch
			}
		}
		sb.mu.Unlock()
	}
	changed := f != s.feedback
	s.feedback = f
	s.mu.Unlock()
	if changed {
		s.cfg.Archive.SetFeedback(f)
	}
}
