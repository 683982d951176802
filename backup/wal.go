package backup

import (
	"encoding/binary"
	"fmt"
	"path"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgproto3"
)

// statusInterval is how often the WAL receiver reports its position, as
// pg_basebackup's default --status-interval.
const statusInterval = 10 * time.Second

// walSegmentName returns the file name of the segment holding lsn.
func walSegmentName(tli uint32, lsn, segSize uint64) string {
	segno := lsn / segSize
	perID := 0x100000000 / segSize
	return fmt.Sprintf("%08X%08X%08X", tli, segno/perID, segno%perID)
}

// historyName matches the timeline history file names the server sends.
var historyName = regexp.MustCompile(`^[0-9A-F]{8}\.history$`)

// walStreamer receives the WAL of a backup on its own replication
// connection, from a temporary physical slot.
type walStreamer struct {
	mc      *msgConn
	slot    string
	segSize uint64
	out     sink // pg_wal/ or pg_wal.tar (run.walSink)
	// marks asks for archive_status/NAME.done beside each complete file
	// (plain format, as pg_basebackup does), so that a server started on
	// the backup does not archive the WAL again.
	marks bool

	end atomic.Uint64 // the backup's end LSN once known, else 0

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
	cmd := fmt.Sprintf("START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %d", s.slot, LSN(s.pos), tli)
	if err := s.mc.send(cmd); err != nil {
		return err
	}
	for started := false; !started; {
		msg, err := s.mc.next()
		if err != nil {
			return err
		}
		switch msg.(type) {
		case *pgproto3.CopyBothResponse:
			started = true
		default:
			return protocolError("unexpected %T in answer to START_REPLICATION", msg)
		}
	}

	lastStatus := time.Now()
	for {
		if end := s.end.Load(); end != 0 && s.pos >= end {
			return s.finish()
		}
		if time.Since(lastStatus) >= statusInterval {
			if err := s.status(); err != nil {
				return err
			}
			lastStatus = time.Now()
		}
		msg, err := s.mc.receive()
		if err == errTimeout {
			continue
		}
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				return protocolError("empty CopyData in the WAL stream")
			}
			switch m.Data[0] {
			case 'w':
				xld, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return protocolError("invalid WAL data message: %v", err)
				}
				if err := s.write(uint64(xld.WALStart), xld.WALData); err != nil {
					return err
				}
			case 'k':
				if len(m.Data) != 18 {
					return protocolError("invalid keepalive message in the WAL stream")
				}
				if m.Data[17] != 0 {
					if err := s.status(); err != nil {
						return err
					}
					lastStatus = time.Now()
				}
			default:
				return protocolError("unexpected message type %q in the WAL stream", m.Data[0])
			}
		case *pgproto3.CopyDone:
			return protocolError("the server ended WAL streaming at %s, before the end of the backup", LSN(s.pos))
		default:
			return protocolError("unexpected %T in the WAL stream", msg)
		}
	}
}

// setEnd tells the streamer where the backup's WAL ends, and wakes its
// receive so that it need not wait out pollInterval to notice.
func (s *walStreamer) setEnd(end LSN) {
	s.end.Store(uint64(end))
	_ = s.mc.conn.Conn().SetReadDeadline(time.Now())
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
			s.curNm = walSegmentName(s.tli, s.pos, s.segSize)
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
// synchronous standby's flush: pglogrepl's SendStandbyStatusUpdate would
// copy the write position into the flush position, and a primary whose
// synchronous_standby_names matched this connection would release commits
// that are durable nowhere else.
func (s *walStreamer) status() error {
	s.mc.conn.Frontend().Send(&pgproto3.CopyData{Data: standbyStatus(s.pos, time.Now())})
	if err := s.mc.conn.Frontend().Flush(); err != nil {
		return serverError(s.mc.what, err)
	}
	return nil
}

// pgEpoch is PostgreSQL's epoch, which the replication protocol's clock
// counts from.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// standbyStatus builds a Standby Status Update ('r') reporting write as
// written and nothing as flushed or applied (InvalidXLogRecPtr), without
// asking for a reply.
func standbyStatus(write uint64, now time.Time) []byte {
	b := make([]byte, 0, 34)
	b = append(b, 'r')
	b = binary.BigEndian.AppendUint64(b, write)
	b = binary.BigEndian.AppendUint64(b, 0) // flush
	b = binary.BigEndian.AppendUint64(b, 0) // apply
	b = binary.BigEndian.AppendUint64(b, uint64(now.Sub(pgEpoch).Microseconds()))
	return append(b, 0)
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
	s.mc.conn.Frontend().Send(&pgproto3.CopyDone{})
	if err := s.mc.conn.Frontend().Flush(); err != nil {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		msg, err := s.mc.receive()
		if err == errTimeout {
			continue
		}
		if err != nil {
			return nil
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return nil
		}
	}
	return nil
}

// history fetches the timeline history file of tli into the WAL, as
// pg_basebackup does: recovery needs it to follow the timeline.
func (s *walStreamer) history(tli uint32) error {
	if err := s.mc.send(fmt.Sprintf("TIMELINE_HISTORY %d", tli)); err != nil {
		return err
	}
	_, rows, err := s.mc.resultSet()
	if err != nil {
		return err
	}
	if err := s.mc.untilReady(); err != nil {
		return err
	}
	if len(rows) != 1 || len(rows[0]) != 2 || !historyName.Match(rows[0][0]) {
		return protocolError("unexpected answer to TIMELINE_HISTORY")
	}
	name, content := string(rows[0][0]), rows[0][1]
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
