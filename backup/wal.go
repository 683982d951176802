package backup

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// statusInterval is how often the WAL receiver reports its position, as
// pg_basebackup's default --status-interval.
const statusInterval = 10 * time.Second

// walSegmentName returns the file name of the segment holding lsn; the
// SQL method names the segments it copies with it.
func walSegmentName(tli uint32, lsn, segSize uint64) string {
	return walarchive.SegmentName(tli, lsn, segSize)
}

// walStreamer receives the WAL of a backup on its own replication
// connection, from a temporary physical slot.
type walStreamer struct {
	ctx     context.Context // the backup's: its end stops the streamer
	wc      *walstream.Conn
	slot    string
	segSize uint64
	out     sink // pg_wal/ or pg_wal.tar (run.walSink)
	// marks asks for archive_status/NAME.done beside each complete file
	// (plain format, as pg_basebackup does), so that a server started on
	// the backup does not archive the WAL again.
	marks bool

	end atomic.Uint64 // the backup's end LSN once known, else 0
	// streaming is set once START_REPLICATION has started the copy: only
	// from then on may setEnd wake a read, as the commands before it
	// cannot resume a read that timed out.
	streaming atomic.Bool

	// Owned by the run goroutine until it ends.
	pos   uint64 // next WAL byte expected
	tli   uint32
	cur   *sizedFile
	curNm string
	bytes int64
	files int

	mu     sync.Mutex
	failed error
}

func (s *walStreamer) setFailed(err error) {
	s.mu.Lock()
	s.failed = err
	s.mu.Unlock()
}

func (s *walStreamer) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// walError turns an error of a WAL connection into the backup's own, as
// msgConn does for BASE_BACKUP's connection: a canceled ctx is 57014, the
// server's errors and a lost connection go through serverError, and an
// answer walstream could not make sense of is a protocol violation.
func walError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return canceledError(ctx)
	}
	var pe *pgconn.PgError
	var ne net.Error
	if errors.As(err, &pe) || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return serverError(what, err)
	}
	return pgerr.New(pgerr.ProtocolViolation, "unexpected answer from the server during %s: %v", what, err).WithCause(err)
}

// fail is walError for the streamer's connection.
func (s *walStreamer) fail(err error) error { return walError(s.ctx, "WAL streaming", err) }

// run streams from the segment holding start on timeline tli until the
// end LSN set by setEnd has been written.
func (s *walStreamer) run(start LSN, tli uint32) (err error) {
	defer func() {
		if err != nil && s.cur != nil {
			// No padding for a backup that failed: just let go of the file.
			s.cur.abort()
			s.cur = nil
		}
	}()
	s.tli = tli
	if tli > 1 {
		if err := s.history(tli); err != nil {
			return err
		}
	}
	s.pos = uint64(start) - uint64(start)%s.segSize
	ended, err := s.wc.StartReplication(s.ctx, s.slot, s.pos, tli)
	if err != nil {
		return s.fail(err)
	}
	if ended != nil {
		return protocolError("the server ended WAL streaming at %s, before the end of the backup", LSN(s.pos))
	}
	s.streaming.Store(true)

	nc := s.wc.NetConn()
	lastStatus := time.Now()
	for {
		if s.ctx.Err() != nil {
			return canceledError(s.ctx)
		}
		if end := s.end.Load(); end != 0 && s.pos >= end {
			return s.finish()
		}
		if time.Since(lastStatus) >= statusInterval {
			if err := s.status(time.Now()); err != nil {
				return err
			}
			lastStatus = time.Now()
		}
		// walstream has no poll of its own: the deadline bounds how long
		// a read blocks before ctx and the end are looked at again (and
		// setEnd moves it to now). A read that times out resumes.
		_ = nc.SetReadDeadline(time.Now().Add(pollInterval))
		msg, err := s.wc.ReadMessage()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && s.ctx.Err() == nil {
				continue
			}
			return s.fail(err)
		}
		switch m := msg.(type) {
		case *walstream.XLogData:
			if err := s.write(m.Start, m.Data); err != nil {
				return err
			}
		case *walstream.Keepalive:
			if m.ReplyRequested {
				if err := s.status(time.Now()); err != nil {
					return err
				}
				lastStatus = time.Now()
			}
		case *walstream.CopyDone:
			return protocolError("the server ended WAL streaming at %s, before the end of the backup", LSN(s.pos))
		}
	}
}

// setEnd tells the streamer where the backup's WAL ends, and wakes its
// read so that it need not wait out pollInterval to notice. Before the
// copy started there is nothing to wake: run looks at the end first.
func (s *walStreamer) setEnd(end LSN) {
	s.end.Store(uint64(end))
	if s.streaming.Load() {
		_ = s.wc.NetConn().SetReadDeadline(time.Now())
	}
}

// write stores WAL data that starts at LSN start.
func (s *walStreamer) write(start uint64, data []byte) error {
	if start > s.pos {
		return protocolError("gap in the WAL stream: expected %s, got %s", LSN(s.pos), LSN(start))
	}
	if skip := s.pos - start; skip > 0 {
		if skip >= uint64(len(data)) {
			return nil
		}
		data = data[skip:]
	}
	for len(data) > 0 {
		if s.cur == nil {
			s.curNm = walarchive.SegmentName(s.tli, s.pos, s.segSize)
			w, err := createFile(s.out, s.curNm, int64(s.segSize), time.Now(), true)
			if err != nil {
				return err
			}
			s.cur = w
			s.files++
		}
		room := s.segSize - s.pos%s.segSize
		n := min(uint64(len(data)), room)
		if _, err := s.cur.Write(data[:n]); err != nil {
			return err
		}
		s.pos += n
		s.bytes += int64(n)
		data = data[n:]
		if s.pos%s.segSize == 0 {
			w := s.cur
			s.cur = nil
			if err := w.Close(); err != nil {
				return err
			}
			if err := s.complete(s.curNm); err != nil {
				return err
			}
		}
	}
	return nil
}

// status reports the write position, and an invalid flush and apply
// position, as pg_basebackup does. The backup's WAL is durable only when
// the backup is synced at its end, so the streamer must never count as a
// synchronous standby's flush: a flush position equal to the write
// position (pglogrepl's SendStandbyStatusUpdate puts one there; walstream
// sends what it is given) would let a primary whose
// synchronous_standby_names matched this connection release commits that
// are durable nowhere else.
func (s *walStreamer) status(now time.Time) error {
	if err := s.wc.SendStatus(s.pos, 0, 0, now, false); err != nil {
		return s.fail(err)
	}
	return nil
}

// finish pads the last segment, ends streaming with CopyDone and waits a
// little for the server to acknowledge. Once every byte is written, a
// server that does not answer cleanly is no reason to fail the backup.
func (s *walStreamer) finish() error {
	if s.cur != nil {
		w := s.cur
		s.cur = nil
		if err := w.Close(); err != nil {
			return err
		}
	}
	_ = s.wc.NetConn().SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = s.wc.EndStreaming(s.ctx)
	return nil
}

// history fetches the timeline history file of tli into the WAL, as
// pg_basebackup does: recovery needs it to follow the timeline. walstream
// refuses an answer that names another file than tli's.
func (s *walStreamer) history(tli uint32) error {
	_, content, err := s.wc.TimelineHistory(s.ctx, tli)
	if err != nil {
		return s.fail(err)
	}
	name := walarchive.HistoryName(tli)
	w, err := createFile(s.out, name, int64(len(content)), time.Now(), true)
	if err != nil {
		return err
	}
	if err := writeAll(w, content); err != nil {
		return err
	}
	s.files++
	return s.complete(name)
}

// complete marks a file of which every byte arrived (see marks).
func (s *walStreamer) complete(name string) error {
	if !s.marks {
		return nil
	}
	w, err := s.out.create(path.Join("archive_status", name+".done"), 0, time.Now())
	if err != nil {
		return err
	}
	return w.Close()
}

// parseProgress decodes the 'p' message of the PostgreSQL 15 copy stream.
func parseProgress(d []byte) (int64, bool) {
	if len(d) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(d)), true
}
