package walarchive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/storage"
	"github.com/pgverbs/pgverbs/walstream"
)

// DialFunc opens a physical replication connection (replication=true) to
// the upstream as user (or the configured user when the connection string
// names one) with application_name set to applicationName.
type DialFunc func(ctx context.Context, user, applicationName string) (*pgconn.PgConn, error)

// Config is what a Manager needs from pgverbs.
type Config struct {
	// Root is the backup root: archive directories lie inside it, and
	// it holds the pointer to the running archive.
	Root string
	Dial DialFunc
	// Upstream is shown in SHOW WAL ARCHIVE (an address, no password).
	Upstream string
	Logger   *zap.Logger
	// Connect reaches a server by conninfo: SET SOURCE's and FAILOVER's.
	Connect ConnectFunc
	// OnSource is told each new source (the proxy's backend follows it).
	OnSource func(conninfo string)
	// Standbys names the standbys streaming from pgverbs, for FAILOVER's
	// result.
	Standbys func() []string
	// Stores are the object-storage targets an archive started TO a
	// storage URL uploads to (nil: none).
	Stores *storage.Stores
	// Instance, when set (the peer id of an instance among several),
	// names this process's pointer file in the backup root, so that
	// instances sharing a root each resume their own archive.
	Instance string
}

// Backoff bounds between reconnection attempts.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// fsyncBuckets are the fsync duration histogram's bounds: fdatasync costs
// about 0.1 ms on a VM's disk and tens of ms on a busy spinning one.
var fsyncBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}

// Manager is the one WAL archive of a pgverbs process: it implements
// Archiver.
type Manager struct {
	cfg   Config
	log   *zap.Logger
	fsync *stats.Histogram

	mu       sync.Mutex
	status   Status
	caughtUp time.Time // when Flushed last reached UpstreamFlush
	cur      *archiveRun
	backoff  time.Duration
	// The directory and segment size of the archive last started, kept
	// after STOP: its WAL is still served for restores.
	lastDir     string
	lastSegSize uint64

	// changed is closed when the durable position or the timeline moves
	// (Position's channel).
	changed chan struct{}
	// demand is the number of standbys streaming from the archive.
	demand atomic.Int32
	// feedback is the standbys' hot-standby feedback, sent upstream
	// when feedbackSent is false.
	feedback     Feedback
	feedbackSent bool
	// uploadedFiles and uploadedBytes count the uploads to object
	// storage since pgverbs started.
	uploadedFiles, uploadedBytes uint64
}

// archiveRun is one started archive.
type archiveRun struct {
	opts   Options
	dir    *os.Root
	lock   *os.File // lockDir's, released at Stop
	st     state
	paused bool
	cancel context.CancelFunc // ends the run
	kick   context.CancelFunc // ends the current receiver (pause, alter)
	wake   chan struct{}      // resume, alter
	done   chan struct{}
	// work is signalled when a file was completed, for compression and
	// retention.
	work chan struct{}
	// slots are the archive's own replication slots (SlotsFile and the
	// temporary ones); slotsDirty when an advance is not saved yet.
	slots      map[string]*Slot
	slotsDirty bool
	slotsSaved time.Time
	// slotsBroken: SlotsFile could not be read at the start.
	slotsBroken bool
	// receiving is held while a receiver runs: SET SOURCE takes it to
	// move files with no receiver writing.
	receiving sync.Mutex
	// floorSource is the source whose slot position vouches for the
	// archive's files (see receiver.floor); another source's does not.
	floorSource string
	// up uploads completed files to object storage (upload.go); nil for
	// a local archive.
	up *uploader
	// tries counts the receivers that ended; slotTaken is the error of
	// the last when another walsender held the slot (for waitFirst).
	tries     int
	slotTaken *pgerr.Error
}

var _ Archiver = (*Manager)(nil)

// NewManager returns the archive of a pgverbs process; nothing runs until
// Start or Recover.
func NewManager(cfg Config) *Manager {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Manager{cfg: cfg, log: log, fsync: stats.NewHistogram(fsyncBuckets), status: Status{State: Stopped}}
}

// Recover resumes the archive that was running when pgverbs stopped (or
// crashed), if any: a restart needs no new START.
func (m *Manager) Recover() error {
	if m.cfg.Root == "" {
		return nil
	}
	rel, err := os.ReadFile(filepath.Join(m.cfg.Root, m.pointerName()))
	if errors.Is(err, fs.ErrNotExist) && m.cfg.Instance != "" {
		// An archive started before this instance had an id.
		rel, err = os.ReadFile(filepath.Join(m.cfg.Root, pointerFile))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dir := filepath.Join(m.cfg.Root, strings.TrimSpace(string(rel)))
	if _, err := relInside(m.cfg.Root, dir); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("walarchive: cannot open the archive to resume: %w", err)
	}
	st, ok, err := readState(root)
	if err != nil || !ok || !st.Running {
		root.Close()
		if err == nil {
			err = fmt.Errorf("walarchive: %s names %s, which holds no running archive", m.pointerName(), dir)
		}
		return err
	}
	lock, err := lockDir(root)
	if err != nil {
		root.Close()
		if errors.Is(err, errDirLocked) {
			return fmt.Errorf("walarchive: %s is archived into by another pgverbs process", dir)
		}
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.launch(st.Options.options(dir), root, st)
	m.cur.lock = lock
	m.log.Info("WAL archive resumed", zap.String("dir", dir), zap.String("slot", st.Options.Slot))
	return nil
}

// Start implements Archiver.
func (m *Manager) Start(ctx context.Context, o Options) error {
	return m.StartChecked(ctx, o, nil)
}

// StartChecked is Start that first asks check (when not nil) who holds
// o.Slot upstream, so that a slot another pgverbs instance archives from
// is refused at once (SlotInUseError) instead of failing in the
// background. check is used during the call only.
func (m *Manager) StartChecked(ctx context.Context, o Options, check SlotCheck) error {
	if m.cfg.Root == "" {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "WAL ARCHIVE is disabled: no backup root is configured")
		e.Hint = "Start pgverbs with --backup-root DIR (config backup_root)."
		return e
	}
	if check != nil {
		m.mu.Lock()
		running := m.cur != nil
		m.mu.Unlock()
		// Before anything is written, and without the lock (SHOW goes
		// on meanwhile); a running archive is refused below, which says
		// it better.
		if !running {
			if err := checkSlotFree(ctx, check, o.Slot); err != nil {
				return err
			}
		}
	}
	run, err := m.start(ctx, o)
	if err != nil || check == nil || failAt.name != "" {
		// (A process a fault test armed to die at the receiver's first
		// write would die before START answered.)
		return err
	}
	return m.waitFirst(ctx, run, check, o.Slot)
}

// firstRunWait bounds how long START waits for its archive's first
// connection to stream or fail.
const firstRunWait = 10 * time.Second

// waitFirst waits for run's first receiver to stream or to fail. Two
// STARTs (in two instances) may both pass checkSlotFree; the server then
// lets one walsender have the slot and refuses the other, and the START
// whose receiver was refused is undone here and returns SlotInUseError,
// so that of the two exactly one succeeds. Any other outcome (streaming,
// another failure, which SHOW WAL ARCHIVE reports as before, the wait's
// end) leaves the archive started.
func (m *Manager) waitFirst(ctx context.Context, run *archiveRun, check SlotCheck, slot string) error {
	deadline := time.After(firstRunWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		m.mu.Lock()
		cur, streaming, tries, taken := m.cur == run, m.status.State == Streaming, run.tries, run.slotTaken
		m.mu.Unlock()
		switch {
		case !cur || streaming:
			return nil
		case taken != nil:
			if err := m.Stop(context.WithoutCancel(ctx), false); err != nil {
				m.log.Warn("WAL archive: cannot undo the START whose slot is taken", zap.Error(err))
			}
			m.log.Info("WAL archive not started: the slot is in use", zap.String("slot", slot), zap.String("error", taken.Message))
			if h, err := check(ctx, slot); err == nil && h != nil {
				return SlotInUseError(slot, *h)
			}
			return taken
		case tries > 0:
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline:
			return nil
		case <-tick.C:
		}
	}
}

// start is Start's work under the lock; it returns the run launched.
func (m *Manager) start(ctx context.Context, o Options) (*archiveRun, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur != nil {
		e := pgerr.New(pgerr.ObjectInUse, "a WAL archive is already running")
		e.Detail = "pgverbs runs one WAL archive; it writes to " + m.cur.opts.Dir + "."
		e.Hint = "Use ALTER WAL ARCHIVE to change it, or STOP WAL ARCHIVE first."
		return nil, e
	}
	rel, err := relInside(m.cfg.Root, o.Dir)
	if err != nil {
		return nil, pgerr.New(pgerr.InsufficientPrivilege, "the WAL archive must be inside the backup root")
	}
	// An unknown target is refused before anything is created.
	var store *storage.Store
	var prefix string
	if o.Storage != "" {
		if store, prefix, err = m.cfg.Stores.Resolve(o.Storage); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, archiveError("create the directory", err)
	}
	root, err := os.OpenRoot(o.Dir)
	if err != nil {
		return nil, archiveError("open the directory", err)
	}
	lock, err := lockDir(root)
	if err != nil {
		root.Close()
		if errors.Is(err, errDirLocked) {
			return nil, dirInUse(o.Dir)
		}
		return nil, archiveError("lock the directory", err)
	}
	st, err := m.probe(ctx, root, o)
	if err == nil && store != nil {
		err = checkRemote(ctx, store, prefix, st)
	}
	if err == nil {
		err = writeState(root, st)
	}
	if err == nil {
		err = m.writePointer(rel)
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		root.Close()
		return nil, err
	}
	// A new archive's state, but the counters go on: they count since
	// pgverbs started, and /metrics exports them as counters.
	old := m.status
	m.status = Status{State: Reconnecting, Reconnects: old.Reconnects, Fsyncs: old.Fsyncs,
		BytesReceived: old.BytesReceived, SegmentsClosed: old.SegmentsClosed}
	m.launch(o, root, st)
	m.cur.lock = lock
	m.log.Info("WAL archive started", zap.String("dir", o.Dir), zap.String("slot", o.Slot), zap.Bool("synchronous", o.Synchronous))
	return m.cur, nil
}

// pointerName is this process's pointer file in the backup root.
func (m *Manager) pointerName() string {
	if m.cfg.Instance == "" {
		return pointerFile
	}
	return pointerFile + "-" + m.cfg.Instance
}

// writePointer records rel as the running archive's directory, or
// removes the record when rel is "".
func (m *Manager) writePointer(rel string) error {
	root, err := os.OpenRoot(m.cfg.Root)
	if err != nil {
		return archiveError("open the backup root", err)
	}
	defer root.Close()
	if rel != "" {
		return writeDurable(root, m.pointerName(), []byte(rel+"\n"))
	}
	if err := root.Remove(m.pointerName()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return archiveError("remove "+m.pointerName(), err)
	}
	return syncDir(root)
}

// probe connects once, so that START reports at once what would make the
// archive fail (no login, no slot, another system's WAL in the
// directory), and returns the state to record.
func (m *Manager) probe(ctx context.Context, root *os.Root, o Options) (state, error) {
	pc, err := m.dial(ctx, o)
	if err != nil {
		return state{}, upstreamError("cannot connect to the upstream", err)
	}
	conn, err := walstream.New(pc)
	if err != nil {
		return state{}, upstreamError("cannot connect to the upstream", err)
	}
	defer conn.Close()
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		return state{}, upstreamError("IDENTIFY_SYSTEM failed", err)
	}
	segSize, err := conn.SegmentSize(ctx)
	if err != nil {
		return state{}, upstreamError("SHOW wal_segment_size failed", err)
	}
	old, ok, err := readState(root)
	if err != nil {
		return state{}, archiveError("read the state", err)
	}
	if ok && (old.SystemID != sys.ID || old.SegmentSize != segSize) {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the directory holds the WAL archive of another database system (system identifier %s)", old.SystemID)
		e.Hint = "Archive each cluster into a directory of its own."
		return state{}, e
	}
	if !ok {
		files, err := scan(root, segSize)
		if err != nil {
			return state{}, archiveError("list", err)
		}
		if len(files) > 0 {
			e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the directory holds WAL files but no %s", StateFile)
			e.Hint = "Archive into an empty directory."
			return state{}, e
		}
	}
	if _, _, err := ensureSlot(ctx, conn, o); err != nil {
		return state{}, err
	}
	return state{SystemID: sys.ID, SegmentSize: segSize, Running: true, Options: toState(o)}, nil
}

// launch starts the run's goroutine; m.mu is held.
func (m *Manager) launch(o Options, root *os.Root, st state) {
	ctx, cancel := context.WithCancel(context.Background())
	run := &archiveRun{opts: o, dir: root, st: st, cancel: cancel, kick: func() {}, wake: make(chan struct{}, 1), done: make(chan struct{}), work: make(chan struct{}, 1)}
	m.cur = run
	run.floorSource = o.Source
	var err error
	if run.slots, err = loadSlots(root); err != nil {
		// The slots protect WAL from retention; without them retention
		// must not run, nor may a new slot overwrite the file.
		m.log.Warn("WAL archive: cannot read the slots", zap.String("file", SlotsFile), zap.Error(err))
		run.slots, run.slotsBroken = map[string]*Slot{}, true
	}
	if files, err := scan(root, st.SegmentSize); err == nil {
		m.status.Timeline, m.status.Flushed = durableFrom(files, st)
		m.status.Received = m.status.Flushed
	}
	m.notifyLocked()
	m.lastDir, m.lastSegSize = o.Dir, st.SegmentSize
	m.status.Dir, m.status.Slot, m.status.ApplicationName = o.Dir, o.Slot, o.ApplicationName
	m.status.Synchronous, m.status.Compression, m.status.Upstream = o.Synchronous, o.Compression, m.upstreamName(o)
	m.status.State = Reconnecting
	m.backoff = minBackoff
	m.status.Upload = UploadStatus{}
	if o.Storage != "" {
		run.up = m.newUploader(o)
		go m.uploadLoop(ctx, run)
	}
	go m.loop(ctx, run)
	go m.maintain(ctx, run)
}

// upstreamName is what SHOW WAL ARCHIVE calls o's upstream: the
// configured one, or the source's host and port (never its password).
func (m *Manager) upstreamName(o Options) string {
	if o.Source == "" {
		return m.cfg.Upstream
	}
	return sourceAddress(o.Source)
}

// SetHooks sets what the Manager tells and asks pgverbs once both exist:
// onSource is told each new source, standbys names the standbys served.
func (m *Manager) SetHooks(onSource func(conninfo string), standbys func() []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.OnSource, m.cfg.Standbys = onSource, standbys
}

// Source returns the conninfo SET SOURCE or FAILOVER chose for the
// running archive ("" when it streams from the configured upstream).
func (m *Manager) Source() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return ""
	}
	return m.cur.opts.Source
}

// loop runs receivers until the run ends, with backoff between failures.
func (m *Manager) loop(ctx context.Context, run *archiveRun) {
	defer close(run.done)
	for ctx.Err() == nil {
		m.mu.Lock()
		paused, opts, st := run.paused, run.opts, run.st
		rctx, kick := context.WithCancel(ctx)
		run.kick = kick
		if paused {
			m.status.State = Paused
		}
		m.mu.Unlock()
		if paused {
			select {
			case <-ctx.Done():
			case <-run.wake:
			}
			kick()
			continue
		}
		run.receiving.Lock()
		r := &receiver{m: m, opts: opts, dir: run.dir, st: st, arun: run}
		err := r.run(rctx)
		run.receiving.Unlock()
		kick()
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		run.tries++
		run.slotTaken = nil
		if pe := (*pgerr.Error)(nil); errors.Is(err, ErrSlotInUse) && errors.As(err, &pe) {
			run.slotTaken = pe
		}
		paused = run.paused
		delay := m.backoff
		if rctx.Err() == nil || !paused {
			m.backoff = min(2*m.backoff, maxBackoff)
		}
		m.mu.Unlock()
		if errors.Is(err, context.Canceled) {
			// Paused or altered: go round at once.
			continue
		}
		m.failed(err)
		select {
		case <-ctx.Done():
		case <-run.wake:
		case <-time.After(delay):
		}
	}
}

// failed records why the receiver stopped.
func (m *Manager) failed(err error) {
	code, msg := string(pgerr.InternalError), err.Error()
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		code, msg = string(pe.Code), pe.Message
	}
	state := Reconnecting
	if !transient(code) {
		// Retried all the same (a slot can be created, a directory
		// fixed), but an operator has to look.
		state = Failed
	}
	m.log.Warn("WAL archive: streaming stopped, retrying", zap.String("sqlstate", code), zap.String("error", msg))
	m.update(func(s *Status) {
		s.State, s.LastError, s.LastErrorCode = state, msg, code
		s.Reconnects++
	})
}

// transient tells the errors that go away by themselves (a connection
// lost, the upstream restarting or in recovery, a full disk being freed,
// an I/O error) from those that need someone (another system upstream, a
// missing slot, a permission): the state is reconnecting for the first,
// failed for the second.
func transient(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"), strings.HasPrefix(code, "57"), strings.HasPrefix(code, "58"):
		return true
	}
	return false
}

// resetBackoff is called once streaming started.
func (m *Manager) resetBackoff() {
	m.mu.Lock()
	m.backoff = minBackoff
	m.mu.Unlock()
}

// update changes the status under the lock.
func (m *Manager) update(f func(*Status)) {
	m.mu.Lock()
	flushed, tli := m.status.Flushed, m.status.Timeline
	f(&m.status)
	if m.status.Flushed != flushed || m.status.Timeline != tli {
		m.notifyLocked()
	}
	if m.status.Flushed >= m.status.UpstreamFlush {
		m.caughtUp = time.Now()
	}
	m.mu.Unlock()
}

// fsynced records an fdatasync's duration.
func (m *Manager) fsynced(d time.Duration) {
	m.fsync.ObserveDuration(d)
	m.mu.Lock()
	m.status.Fsyncs++
	m.mu.Unlock()
}

// segmentDone notes a completed file, for the maintenance goroutine.
func (m *Manager) segmentDone(name string) {
	m.mu.Lock()
	m.status.SegmentsClosed++
	run := m.cur
	m.mu.Unlock()
	m.log.Debug("WAL archive: file complete", zap.String("file", name))
	if run != nil {
		select {
		case run.work <- struct{}{}:
		default:
		}
	}
}

// Stop implements Archiver.
func (m *Manager) Stop(ctx context.Context, dropSlot bool) error {
	m.mu.Lock()
	run := m.cur
	m.mu.Unlock()
	if run == nil {
		return notRunning()
	}
	run.cancel()
	select {
	case <-run.done:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cur = nil
	m.notifyLocked()
	m.status.State = Stopped
	run.st.Running = false
	m.recordLocked(run)
	err := writeState(run.dir, run.st)
	if perr := m.writePointer(""); err == nil {
		err = perr
	}
	if run.lock != nil {
		run.lock.Close()
	}
	run.dir.Close()
	if err != nil {
		return archiveError("record the stop", err)
	}
	m.log.Info("WAL archive stopped", zap.String("dir", run.opts.Dir))
	if dropSlot {
		return m.dropSlot(ctx, run.opts)
	}
	return nil
}

// dropSlot drops the archive's slot; the walsender that used it may take
// a moment to exit after the connection closed.
func (m *Manager) dropSlot(ctx context.Context, o Options) error {
	pc, err := m.dial(ctx, o)
	if err != nil {
		return upstreamError("cannot connect to drop the slot", err)
	}
	conn, err := walstream.New(pc)
	if err != nil {
		return upstreamError("cannot connect to drop the slot", err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := conn.DropSlot(ctx, o.Slot)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == string(pgerr.ObjectInUse) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			return upstreamError("cannot drop replication slot "+o.Slot, err)
		}
		return nil
	}
}

func notRunning() error {
	e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "no WAL archive is running")
	e.Hint = "Start one with START WAL ARCHIVE TO 'dir'."
	return e
}

// Alter implements Archiver.
func (m *Manager) Alter(ctx context.Context, change func(*Options) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	run := m.cur
	if run == nil {
		return notRunning()
	}
	o := run.opts
	if err := change(&o); err != nil {
		return err
	}
	if o.Dir != run.opts.Dir || o.Storage != run.opts.Storage {
		return pgerr.New(pgerr.FeatureNotSupported, "the directory of a running WAL archive cannot change")
	}
	st := run.st
	st.Options = toState(o)
	if err := writeState(run.dir, st); err != nil {
		return err
	}
	run.opts, run.st = o, st
	m.status.Slot, m.status.ApplicationName = o.Slot, o.ApplicationName
	m.status.Synchronous, m.status.Compression = o.Synchronous, o.Compression
	m.status.Upstream = m.upstreamName(o)
	// The receiver reads its options at connect: reconnect now.
	run.kick()
	m.signal(run)
	return nil
}

func (m *Manager) signal(run *archiveRun) {
	select {
	case run.wake <- struct{}{}:
	default:
	}
	select {
	case run.work <- struct{}{}:
	default:
	}
}

// SetPaused implements Archiver.
func (m *Manager) SetPaused(paused bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	run := m.cur
	if run == nil {
		return notRunning()
	}
	if run.paused == paused {
		return nil
	}
	run.paused = paused
	if paused {
		m.status.State = Paused
	} else {
		m.status.State = Reconnecting
		m.backoff = minBackoff
	}
	run.kick()
	m.signal(run)
	return nil
}

// Status implements Archiver.
func (m *Manager) Status() (Status, bool) {
	m.mu.Lock()
	s := m.status
	run := m.cur
	caughtUp := m.caughtUp
	uploadedFiles, uploadedBytes := m.uploadedFiles, m.uploadedBytes
	m.mu.Unlock()
	snap := m.fsync.Snapshot()
	s.FsyncSeconds = &snap
	if run == nil && s.Dir == "" {
		return s, false
	}
	if s.UpstreamFlush > s.Flushed {
		s.LagBytes = int64(s.UpstreamFlush - s.Flushed)
		if !caughtUp.IsZero() {
			s.LagSeconds = time.Since(caughtUp).Seconds()
		}
	}
	if run != nil {
		files, err := scan(run.dir, run.st.SegmentSize)
		if err == nil && run.up != nil {
			s.Upload = run.up.status(files, time.Now())
		}
		if err == nil {
			for _, f := range files {
				s.Bytes += f.Bytes
				if f.State == SegHistory {
					continue
				}
				s.Segments++
				if s.Oldest == "" {
					s.Oldest = f.Name
				}
				s.Newest = f.Name
			}
		}
	}
	s.Upload.UploadedFiles, s.Upload.UploadedBytes = uploadedFiles, uploadedBytes
	return s, true
}

// Location returns the directory and segment size of the archive last
// started (also once stopped), without the directory scan Status does:
// /wal/ asks at every request.
func (m *Manager) Location() (dir string, segSize uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastDir, m.lastSegSize, m.lastDir != ""
}

// Segments implements Archiver.
func (m *Manager) Segments() ([]SegmentInfo, error) {
	m.mu.Lock()
	run := m.cur
	m.mu.Unlock()
	if run == nil {
		return nil, notRunning()
	}
	files, err := scan(run.dir, run.st.SegmentSize)
	if err != nil {
		return nil, archiveError("list", err)
	}
	return files, nil
}

// maintenanceInterval is how often retention runs without a completed
// file to prompt it: an age limit moves with the clock.
const maintenanceInterval = time.Minute

// maintain compresses completed segments and applies retention when
// files are completed, options change, and once a minute.
func (m *Manager) maintain(ctx context.Context, run *archiveRun) {
	if err := cleanTemp(run.dir); err != nil {
		m.log.Warn("WAL archive: cannot remove interrupted compressions", zap.Error(err))
	}
	tick := time.NewTicker(maintenanceInterval)
	defer tick.Stop()
	for {
		m.mu.Lock()
		o, st := run.opts, run.st
		m.mu.Unlock()
		if err := m.maintainOnce(run.dir, o, st, time.Now()); err != nil {
			m.log.Warn("WAL archive: maintenance failed", zap.Error(err))
		}
		if run.up != nil {
			// What was just compressed is what gets uploaded.
			run.up.prompt()
		}
		select {
		case <-ctx.Done():
			return
		case <-run.work:
		case <-tick.C:
		}
	}
}

// maintainOnce compresses what COMPRESSION asks for and removes what
// RETENTION and MAX_SIZE let go (PlanRemoval decides, under the
// protection of the newest base backup older than the window and of the
// position reported upstream).
func (m *Manager) maintainOnce(dir *os.Root, o Options, st state, now time.Time) error {
	segSize, sysID := st.SegmentSize, st.SystemID
	files, err := scan(dir, segSize)
	if err != nil {
		return err
	}
	if o.Compression == Zstd {
		for i, f := range files {
			if f.State != SegComplete {
				continue
			}
			if err := compressSegment(dir, f.Name, o.Level); err != nil {
				return err
			}
			files[i].Name, files[i].State = f.Name+compressedSuffix, SegCompressed
			if fi, err := dir.Stat(files[i].Name); err == nil {
				files[i].Bytes = fi.Size()
			}
		}
	}
	if o.Retention <= 0 && o.MaxSize <= 0 {
		return nil
	}
	all, err := BackupStarts(m.cfg.Root)
	if err != nil {
		// Without knowing the backups, nothing may go.
		return err
	}
	// Backups of other clusters in the root are not this archive's to
	// protect; a tar backup's system is not known (0) and counts.
	var starts []BackupStart
	for _, b := range all {
		if b.SystemID == 0 || strconv.FormatUint(b.SystemID, 10) == sysID {
			starts = append(starts, b)
		}
	}
	var p Protect
	if b, ok := NewestBefore(starts, now.Add(-o.Retention)); ok {
		p.BackupStart = b.Start
	}
	m.mu.Lock()
	p.SlotRestart = m.status.Flushed
	if floor := m.slotFloorLocked(); floor != 0 && floor < p.SlotRestart {
		p.SlotRestart = floor
	}
	slotsKnown := m.cur != nil && !m.cur.slotsBroken
	var up *uploader
	if m.cur != nil {
		up = m.cur.up
	}
	m.mu.Unlock()
	if !slotsKnown {
		return fmt.Errorf("walarchive: %s unreadable, retention waits", SlotsFile)
	}
	if up != nil {
		floor, known := up.floor(files)
		if !known {
			// The store has not said what it holds: every local copy
			// may be the only one.
			return nil
		}
		p.NotUploaded = floor
	}
	remove := PlanRemoval(files, p, now, o.Retention, o.MaxSize)
	if up != nil {
		remove = up.onlyUploaded(remove)
	}
	for _, name := range remove {
		if err := dir.Remove(name); err != nil {
			return fileError("remove", name, err)
		}
	}
	if len(remove) > 0 {
		m.log.Info("WAL archive: retention removed old segments", zap.Int("files", len(remove)), zap.String("oldest_kept_after", remove[len(remove)-1]))
		return syncDir(dir)
	}
	return nil
}

// Check implements Archiver.
func (m *Manager) Check(ctx context.Context) (CheckResult, error) {
	m.mu.Lock()
	run := m.cur
	m.mu.Unlock()
	if run == nil {
		return CheckResult{}, notRunning()
	}
	sysID, err := strconv.ParseUint(run.st.SystemID, 10, 64)
	if err != nil {
		return CheckResult{}, fmt.Errorf("walarchive: invalid system identifier %q in %s", run.st.SystemID, StateFile)
	}
	return Check(run.dir, run.st.SegmentSize, sysID)
}

// recordLocked puts the durable position into run's state and saves the
// slots' last advances; m.mu is held.
func (m *Manager) recordLocked(run *archiveRun) {
	run.st.Flushed, run.st.FlushedTLI = m.status.Flushed, m.status.Timeline
	if run.slotsDirty {
		if err := m.saveSlotsLocked(run); err != nil {
			m.log.Warn("WAL archive: cannot save the slots", zap.Error(err))
		}
	}
}

// Close ends the archive for a shutdown of pgverbs: what was written is
// fsynced and the archive stays recorded as running, so that the next
// start resumes it.
func (m *Manager) Close() {
	m.mu.Lock()
	run := m.cur
	m.cur = nil
	m.mu.Unlock()
	if run == nil {
		return
	}
	run.cancel()
	<-run.done
	m.mu.Lock()
	m.notifyLocked()
	m.recordLocked(run)
	m.mu.Unlock()
	if err := writeState(run.dir, run.st); err != nil {
		m.log.Warn("WAL archive: cannot record the durable position", zap.Error(err))
	}
	if run.lock != nil {
		run.lock.Close()
	}
	run.dir.Close()
}
