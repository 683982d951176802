package walarchive

import (
	"context"
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walstream"
)

// statusInterval is how often the receiver reports its position without
// being asked, as pg_receivewal's default --status-interval; asynchronous
// archives also fsync at this interval, so that an idle primary sees the
// last bytes flushed without waiting for the segment's end.
const statusInterval = 10 * time.Second

// setupTimeout bounds a receiver's connection and the commands it runs
// before streaming; a retry follows.
const setupTimeout = 30 * time.Second

// receiver runs one replication connection's worth of streaming: connect,
// find where to resume, stream, write, fsync and report, until an error
// or ctx ends. The Manager runs receivers in a loop with backoff.
type receiver struct {
	m    *Manager
	arun *archiveRun
	opts Options
	dir  *os.Root
	st   state
	conn *walstream.Conn

	tli   uint32
	pos   uint64 // LSN of the next byte expected
	seg   *SegmentFile
	floor uint64 // flush position reported by an earlier run (the slot's restart_lsn)
	dirty bool   // bytes written since the last fsync
}

// run streams until an error; the error says why (a *pgerr.Error for what
// SHOW WAL ARCHIVE shows).
func (r *receiver) run(ctx context.Context) (err error) {
	defer func() {
		if r.seg != nil {
			// Keep what was written as it is: NAME.partial with
			// whatever is durable; the next run writes it again.
			if r.dirty {
				_ = r.sync()
			}
			_ = r.seg.Close()
			r.seg = nil
		}
		if r.conn != nil {
			r.conn.Close()
			r.conn = nil
		}
	}()
	// The setup (connect, the commands before streaming) must not hang
	// on an upstream that accepts connections and then says nothing.
	setup, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	pc, err := r.m.dial(setup, r.opts)
	if err != nil {
		return upstreamError("cannot connect to the upstream", err)
	}
	if r.conn, err = walstream.New(pc); err != nil {
		return upstreamError("cannot connect to the upstream", err)
	}
	sys, err := r.conn.IdentifySystem(setup)
	if err != nil {
		return upstreamError("IDENTIFY_SYSTEM failed", err)
	}
	if sys.ID != r.st.SystemID {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the upstream is another database system (system identifier %s, the archive holds %s)", sys.ID, r.st.SystemID)
		e.Hint = "Archive each cluster into a directory of its own."
		return e
	}
	segSize, err := r.conn.SegmentSize(setup)
	if err != nil {
		return upstreamError("SHOW wal_segment_size failed", err)
	}
	if segSize != r.st.SegmentSize {
		return pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the upstream's WAL segments are %d bytes, the archive's %d", segSize, r.st.SegmentSize)
	}
	slot, created, err := ensureSlot(setup, r.conn, r.opts)
	if err != nil {
		return err
	}
	r.m.mu.Lock()
	sameSource := r.arun == nil || r.arun.floorSource == r.opts.Source
	r.m.mu.Unlock()
	files, err := scan(r.dir, segSize)
	if err != nil {
		return archiveError("list", err)
	}
	tli, pos, ok := resumePoint(files)
	if ok {
		// What an earlier run reported is durable here; without this
		// floor a resumed archive would report a flush position below
		// the slot's, moving the slot back. Only a restart_lsn inside
		// the segment being resumed is one this archive reported: a
		// slot further on (created anew, advanced by hand) vouches for
		// nothing the archive holds.
		// A slot created now, or one on another source than the one
		// the archive streamed from, vouches for nothing either.
		if slot.RestartLSN <= pos+segSize && !created && sameSource {
			r.floor = slot.RestartLSN
		}
	} else {
		tli, pos = sys.Timeline, slot.RestartLSN
		if pos == 0 {
			pos = sys.XLogPos
		}
		if slot.RestartTLI != 0 {
			tli = slot.RestartTLI
		}
		pos -= pos % segSize
	}
	r.tli, r.pos = tli, pos
	r.m.update(func(s *Status) {
		s.Timeline, s.Received, s.Flushed = tli, pos, max(s.Flushed, r.floor)
		s.UpstreamFlush = sys.XLogPos
	})
	for {
		step, cancel := context.WithTimeout(ctx, setupTimeout)
		end, err := r.startTimeline(step)
		cancel()
		if err != nil {
			return upstreamError("START_REPLICATION failed", err)
		}
		if end == nil {
			r.m.update(func(s *Status) { s.State, s.LastError, s.LastErrorCode = Streaming, "", "" })
			if r.arun != nil {
				r.m.mu.Lock()
				r.arun.floorSource = r.opts.Source
				r.m.mu.Unlock()
			}
			r.m.resetBackoff()
			if end, err = r.stream(ctx); err != nil {
				return err
			}
		}
		if err := r.timelineSwitch(ctx, end); err != nil {
			return err
		}
	}
}

// startTimeline archives the history file of the timeline about to be
// streamed (recovery needs it to follow the timeline) and starts
// streaming it.
func (r *receiver) startTimeline(ctx context.Context) (*walstream.TimelineEnd, error) {
	if r.tli > 1 {
		if err := r.history(ctx, r.tli); err != nil {
			return nil, err
		}
	}
	end, err := r.conn.StartReplication(ctx, r.opts.Slot, r.pos, r.tli)
	if e := slotTaken(r.opts.Slot, err); e != nil {
		return nil, e
	}
	if err != nil {
		return nil, upstreamError("START_REPLICATION failed", err)
	}
	return end, nil
}

// ensureSlot reads the archive's slot, creating it when allowed.
func ensureSlot(ctx context.Context, conn *walstream.Conn, o Options) (_ walstream.Slot, created bool, _ error) {
	slot, err := conn.ReadSlot(ctx, o.Slot)
	if err != nil {
		return slot, false, upstreamError("READ_REPLICATION_SLOT failed", err)
	}
	if slot.Exists {
		if slot.Type != "physical" {
			return slot, false, pgerr.New(pgerr.WrongObjectType, "replication slot %q is a %s slot", o.Slot, slot.Type)
		}
		return slot, false, nil
	}
	if !o.CreateSlot {
		e := pgerr.New(pgerr.UndefinedObject, "replication slot %q does not exist on the upstream", o.Slot)
		e.Hint = "Create it with pg_create_physical_replication_slot, or let the archive create it (CREATE_SLOT on)."
		return slot, false, e
	}
	if err := conn.CreateSlot(ctx, o.Slot, false); err != nil {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != string(pgerr.DuplicateObject) {
			return slot, false, upstreamError("cannot create replication slot "+o.Slot, err)
		}
		// Created meanwhile by another instance's START: use it as an
		// existing slot; which of the two streams the server decides.
		if slot, err = conn.ReadSlot(ctx, o.Slot); err != nil {
			return slot, false, upstreamError("READ_REPLICATION_SLOT failed", err)
		}
		if slot.Type != "physical" {
			return slot, false, pgerr.New(pgerr.WrongObjectType, "replication slot %q is a %s slot", o.Slot, slot.Type)
		}
		return slot, false, nil
	}
	slot, err = conn.ReadSlot(ctx, o.Slot)
	if err != nil {
		return slot, true, upstreamError("READ_REPLICATION_SLOT failed", err)
	}
	return slot, true, nil
}

// stream receives WAL until the server ends the timeline (the returned
// TimelineEnd) or an error.
func (r *receiver) stream(ctx context.Context) (*walstream.TimelineEnd, error) {
	nc := r.conn.NetConn()
	stop := context.AfterFunc(ctx, func() { _ = nc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	lastStatus := time.Time{}
	for {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if time.Since(lastStatus) >= statusInterval {
			if err := r.report(); err != nil {
				return nil, err
			}
			lastStatus = time.Now()
		}
		_ = nc.SetReadDeadline(lastStatus.Add(statusInterval))
		msg, err := r.conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return nil, upstreamError("WAL streaming failed", err)
		}
		switch m := msg.(type) {
		case *walstream.XLogData:
			if err := r.write(m.Start, m.Data); err != nil {
				return nil, err
			}
			r.m.update(func(s *Status) {
				s.Received = r.pos
				s.UpstreamFlush = max(s.UpstreamFlush, m.ServerWALEnd)
				s.BytesReceived += uint64(len(m.Data))
			})
		case *walstream.Keepalive:
			r.m.update(func(s *Status) {
				s.UpstreamFlush = max(s.UpstreamFlush, m.ServerWALEnd)
			})
			if m.ReplyRequested {
				if err := r.report(); err != nil {
					return nil, err
				}
				lastStatus = time.Now()
			}
		case *walstream.CopyDone:
			end, err := r.conn.EndStreaming(ctx)
			if err != nil {
				return nil, upstreamError("the end of the timeline failed", err)
			}
			return end, nil
		}
		if r.conn.Buffered() == 0 && (r.opts.Synchronous || r.m.demand.Load() > 0) && r.dirty {
			// The end of a batch: one fdatasync for everything received,
			// and the new flush position at once, so that a synchronous
			// primary waits one fsync.
			if err := r.report(); err != nil {
				return nil, err
			}
			lastStatus = time.Now()
		}
	}
}

// write stores WAL that starts at start, opening and completing segments.
func (r *receiver) write(start uint64, data []byte) error {
	if start > r.pos {
		return pgerr.New(pgerr.ProtocolViolation, "gap in the WAL stream: expected %s, got %s", walstream.FormatLSN(r.pos), walstream.FormatLSN(start))
	}
	if skip := r.pos - start; skip > 0 {
		if skip >= uint64(len(data)) {
			return nil
		}
		data = data[skip:]
	}
	segSize := r.st.SegmentSize
	for len(data) > 0 {
		if r.seg == nil {
			// A run starts at a segment's start and keeps a segment open
			// until it is complete, so r.pos is a segment's start here.
			seg, err := OpenSegment(r.dir, r.tli, r.pos/segSize, segSize, r.pos)
			if err != nil {
				return archiveError("open a segment", err)
			}
			r.seg = seg
		}
		n := min(uint64(len(data)), r.seg.End()-r.pos)
		failpoint("write")
		if err := r.seg.Write(r.pos, data[:n]); err != nil {
			r.pos = r.seg.Written()
			return archiveError("write", err)
		}
		r.pos += n
		r.dirty = true
		data = data[n:]
		if r.pos == r.seg.End() {
			if err := r.complete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// complete ends the full segment: fdatasync, rename, directory fsync;
// then the flush position is reported at once.
func (r *receiver) complete() error {
	t := time.Now()
	failpoint("before-rename")
	err := r.seg.Complete()
	r.m.fsynced(time.Since(t))
	if err != nil {
		r.pos = r.seg.Durable()
		return archiveError("complete", err)
	}
	name := r.seg.Name()
	r.seg = nil
	r.dirty = false
	r.m.segmentDone(name)
	return r.report()
}

// sync makes what was written durable.
func (r *receiver) sync() error {
	if r.seg == nil || !r.dirty {
		return nil
	}
	t := time.Now()
	err := r.seg.Sync()
	r.m.fsynced(time.Since(t))
	if err != nil {
		r.pos = r.seg.Written()
		return archiveError("fdatasync", err)
	}
	r.dirty = false
	failpoint("after-fsync")
	return nil
}

// durable is the position that may be reported as flushed.
func (r *receiver) durable() uint64 {
	d := r.pos
	if r.seg != nil {
		d = r.seg.Durable()
	}
	return max(d, r.floor)
}

// report fsyncs what was written (if anything) and sends the position:
// written as received, flushed only as far as it is on disk.
func (r *receiver) report() error {
	if err := r.sync(); err != nil {
		return err
	}
	flush := r.durable()
	// Shown before it is sent: the position is durable already, and a
	// reader who saw a commit released must find it in the status.
	r.m.update(func(s *Status) { s.Flushed = flush; s.Received = r.pos })
	if err := r.conn.SendStatus(r.pos, flush, 0, time.Now(), false); err != nil {
		return upstreamError("cannot send the archive's position", err)
	}
	if f, ok := r.m.pendingFeedback(); ok {
		if err := r.conn.SendFeedback(time.Now(), f.Xmin, f.XminEpoch, f.CatalogXmin, f.CatalogXminEpoch); err != nil {
			return upstreamError("cannot send the standbys' feedback", err)
		}
		r.m.feedbackDone(f)
	}
	failpoint("after-ack")
	return nil
}

// timelineSwitch follows the end of a timeline: the last segment stays
// NAME.partial (complete only up to the switch point), the new
// timeline's history file is archived, streaming continues on it from the
// start of the segment holding the switch point, as pg_receivewal does.
func (r *receiver) timelineSwitch(ctx context.Context, end *walstream.TimelineEnd) error {
	if end == nil || end.NextTimeline == 0 {
		return pgerr.New(pgerr.ConnectionFailure, "the upstream ended WAL streaming at %s", walstream.FormatLSN(r.pos))
	}
	if end.NextTimeline <= r.tli || end.NextStart > r.pos {
		return pgerr.New(pgerr.ProtocolViolation, "the upstream switched to timeline %d at %s, after the archive's %s on timeline %d",
			end.NextTimeline, walstream.FormatLSN(end.NextStart), walstream.FormatLSN(r.pos), r.tli)
	}
	if r.seg != nil {
		if err := r.sync(); err != nil {
			return err
		}
		if err := r.seg.Close(); err != nil {
			return archiveError("close", err)
		}
		r.seg = nil
	}
	// Up to the switch point the old timeline's WAL is durable; what
	// counts from now on is the new timeline's.
	// The history first: a walsender that sees the new timeline reads
	// it at once to lead its standbys across.
	hctx, cancel := context.WithTimeout(ctx, setupTimeout)
	err := r.history(hctx, end.NextTimeline)
	cancel()
	if err != nil {
		return err
	}
	r.floor = 0
	r.tli = end.NextTimeline
	r.pos = end.NextStart - end.NextStart%r.st.SegmentSize
	r.m.update(func(s *Status) { s.Timeline = r.tli })
	return nil
}

// history archives timeline tli's history file, unless it is there.
func (r *receiver) history(ctx context.Context, tli uint32) error {
	name := HistoryName(tli)
	if _, err := r.dir.Stat(name); err == nil {
		return nil
	}
	_, content, err := r.conn.TimelineHistory(ctx, tli)
	if err != nil {
		return upstreamError("TIMELINE_HISTORY failed", err)
	}
	if err := writeDurable(r.dir, name, content); err != nil {
		return archiveError("write", err)
	}
	r.m.segmentDone(name)
	return nil
}

// upstreamError is a failure of the upstream connection, as SHOW WAL
// ARCHIVE shows it: the server's own error when it sent one.
func upstreamError(what string, err error) error {
	var pgErr *pgerr.Error
	if errors.As(err, &pgErr) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		e := pgerr.FromServer(pe)
		e.Message = what + ": " + pe.Message
		return e
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return pgerr.New(pgerr.ConnectionFailure, "%s: %v", what, err).WithCause(err)
}

// archiveError is a failure writing the archive: 53100 for a full disk.
func archiveError(what string, err error) error {
	code := pgerr.IOError
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		code = pgerr.DiskFull
	}
	return pgerr.New(code, "could not %s in the WAL archive: %v", what, err).WithCause(err)
}
