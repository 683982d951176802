package walarchive

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/pgverbs/pgverbs/walstream"
)

// Position is what a walsender serving standbys from the archive needs to
// know of it at one moment.
type Position struct {
	SystemID    string
	SegmentSize uint64
	// Timeline is the timeline being archived and Flushed the end of what
	// is durable on it: nothing beyond is ever served.
	Timeline uint32
	Flushed  uint64
}

// Position returns the running archive's position and a channel closed at
// its next change (the durable position moves, the timeline switches, the
// archive stops); ok is false when no archive runs.
func (m *Manager) Position() (p Position, changed <-chan struct{}, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.changed == nil {
		m.changed = make(chan struct{})
	}
	if m.cur == nil {
		return Position{}, m.changed, false
	}
	return Position{SystemID: m.cur.st.SystemID, SegmentSize: m.cur.st.SegmentSize,
		Timeline: m.status.Timeline, Flushed: m.status.Flushed}, m.changed, true
}

// notifyLocked wakes everyone waiting on Position's channel; m.mu is held.
func (m *Manager) notifyLocked() {
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
}

// History returns timeline tli's history file as the archive holds it
// (an error matching fs.ErrNotExist when it holds none).
func (m *Manager) History(tli uint32) ([]byte, error) {
	dir, err := m.dir()
	if err != nil {
		return nil, err
	}
	return dir.ReadFile(HistoryName(tli))
}

// dir returns the running archive's directory.
func (m *Manager) dir() (*os.Root, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return nil, notRunning()
	}
	return m.cur.dir, nil
}

// ReadSegment opens segment segno of timeline tli for reading, whichever
// form it has (NAME, NAME.zst, or NAME.partial: the one being written or
// the end of a past timeline); the caller reads no further than what
// Position says is durable. An absent segment is an error matching
// fs.ErrNotExist.
func (m *Manager) ReadSegment(tli uint32, segno uint64) (io.ReadCloser, error) {
	dir, err := m.dir()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	segSize := m.cur.st.SegmentSize
	m.mu.Unlock()
	name := segNoName(tli, segno, segSize)
	f, _, err := OpenFile(dir, name, segSize)
	if err == nil {
		return f, nil
	}
	if !isNotExist(err) {
		return nil, err
	}
	p, err := dir.Open(name + partialSuffix)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// SetDemand says how many standbys stream from the archive: while any
// does, an asynchronous archive fsyncs at the end of every batch too, so
// that what it serves them is minutes fresher than a segment's end.
func (m *Manager) SetDemand(standbys int) { m.demand.Store(int32(standbys)) }

// Feedback is hot-standby feedback, as a standby sends it ('h'): the
// oldest transaction ids it still needs, with their epochs (0: none).
type Feedback struct {
	Xmin, XminEpoch, CatalogXmin, CatalogXminEpoch uint32
}

// SetFeedback records the feedback to send upstream as the archive's own
// (the minimum over the standbys it serves); a zero Feedback stops it.
func (m *Manager) SetFeedback(f Feedback) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.feedback != f {
		m.feedback, m.feedbackSent = f, false
	}
}

// pendingFeedback returns the feedback not yet sent upstream, if any.
func (m *Manager) pendingFeedback() (Feedback, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.feedback, !m.feedbackSent
}

// feedbackDone notes that f went upstream.
func (m *Manager) feedbackDone(f Feedback) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.feedback == f {
		m.feedbackSent = true
	}
}

// String formats a position for logs.
func (p Position) String() string {
	return fmt.Sprintf("%s on timeline %d", walstream.FormatLSN(p.Flushed), p.Timeline)
}
