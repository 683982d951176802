package walarchive

import (
	"context"
	"time"

	"github.com/pgverbs/pgverbs/stats"
)

// Compression of completed segments.
type Compression uint8

const (
	// NoCompression keeps completed segments as NAME.
	NoCompression Compression = iota
	// Zstd compresses each completed segment to NAME.zst (the complete
	// NAME is removed once NAME.zst is durable).
	Zstd
)

// String names c as the COMPRESSION option spells it.
func (c Compression) String() string {
	if c == Zstd {
		return "zstd"
	}
	return "none"
}

// compressedSuffix ends a completed segment compressed with zstd.
const compressedSuffix = ".zst"

// StateFile is the archive's own record in its directory: what START was
// given, so that a restarted pgverbs resumes the archive by itself.
const StateFile = "pgverbs_wal_archive.json"

// Options are what START WAL ARCHIVE and ALTER WAL ARCHIVE SET choose.
type Options struct {
	// Dir is the archive directory, absolute, already resolved inside the
	// backup root by the caller.
	Dir string
	// Slot is the physical replication slot on the upstream ("pgverbs").
	Slot string
	// CreateSlot creates Slot when it does not exist (default true).
	CreateSlot bool
	// ApplicationName is what the archive's replication connection calls
	// itself ("pgverbs"): the name synchronous_standby_names names.
	ApplicationName string
	// Synchronous fsyncs after every batch of received messages and
	// reports at once; otherwise fsync happens at segment end and on the
	// status interval. The flush position reported is honest either way.
	Synchronous bool
	// Compression of completed segments, and its level (0: the default).
	Compression Compression
	Level       int
	// Retention, when not zero, lets segments older than this go (never
	// what the newest base backup older than the window or the slot still
	// needs, never history files).
	Retention time.Duration
	// MaxSize, when not zero, bounds the archive's bytes by removing the
	// oldest segments under the same protections as Retention.
	MaxSize int64
	// User is the role the archive connects as when the configured
	// connection string names none (the role that ran START).
	User string
	// Source, set by SET SOURCE or FAILOVER, is the conninfo of the
	// server the archive streams from instead of the configured one.
	Source string
	// Storage, when not empty, is the storage:// URL completed files are
	// uploaded to (upload.go); Dir is then the local staging directory.
	// It cannot change while the archive runs.
	Storage string
}

// State is what the archive is doing.
type State string

// The states SHOW WAL ARCHIVE reports.
const (
	Streaming    State = "streaming"
	Paused       State = "paused"
	Reconnecting State = "reconnecting"
	Stopped      State = "stopped"
	Failed       State = "failed"
)

// Status is one snapshot of the archive, for SHOW WAL ARCHIVE, SHOW
// PGVERBS STATS and /metrics.
type Status struct {
	State           State
	Dir             string
	Upstream        string // host:port or socket of the upstream, no credentials
	Slot            string
	ApplicationName string
	Timeline        uint32
	// Received is the LSN after the last WAL byte received, Flushed after
	// the last one fsynced (what was reported upstream as flushed), and
	// UpstreamFlush the upstream's own WAL end as it last said.
	Received, Flushed, UpstreamFlush uint64
	LagBytes                         int64
	LagSeconds                       float64
	Segments                         int   // files of WAL held (complete, compressed, partial)
	Bytes                            int64 // bytes on disk
	Oldest, Newest                   string
	Synchronous                      bool
	Compression                      Compression
	// LastError is the last failure (empty when none since the last
	// success), with its SQLSTATE (53100 for a full disk).
	LastError     string
	LastErrorCode string
	// Counters since this pgverbs started.
	Reconnects     uint64
	Fsyncs         uint64
	BytesReceived  uint64
	SegmentsClosed uint64
	// FsyncSeconds is the distribution of the archive's fdatasync calls;
	// nil before the first Start.
	FsyncSeconds *stats.HistogramSnapshot
	// Upload is the upload to object storage of an archive started TO a
	// storage URL; its zero value otherwise.
	Upload UploadStatus
}

// UploadStatus is how far the upload of completed files to object
// storage lags behind the local archive.
type UploadStatus struct {
	// Storage is the storage:// URL uploaded to; "" for a local archive.
	Storage string
	// Known is false until the store's listing said what it holds: until
	// then every file counts as pending and retention removes nothing.
	Known bool
	// PendingFiles and PendingBytes are the completed segments and
	// history files held locally and not yet uploaded; OldestPending is
	// the first of them in upload order, completed OldestPendingSeconds
	// ago.
	PendingFiles         int
	PendingBytes         int64
	OldestPending        string
	OldestPendingSeconds float64
	// LastError is the last upload's failure, empty once one succeeds.
	LastError string
	// Counters since this pgverbs started.
	UploadedFiles, UploadedBytes uint64
}

// SegmentState is what SHOW WAL ARCHIVE SEGMENTS says of a file.
type SegmentState string

// The states of a file in the archive.
const (
	SegPartial    SegmentState = "partial"
	SegComplete   SegmentState = "complete"
	SegCompressed SegmentState = "compressed"
	SegHistory    SegmentState = "history"
)

// SegmentInfo is one file of the archive.
type SegmentInfo struct {
	Name     string // file name as on disk (NAME, NAME.partial, NAME.zst, N.history)
	Timeline uint32
	// Start and End are the LSNs the segment covers (End exclusive); zero
	// for a history file.
	Start, End  uint64
	State       SegmentState
	Bytes       int64 // bytes on disk
	CompletedAt time.Time
}

// CheckResult is what CHECK WAL ARCHIVE found: one line per thing
// checked, or the first problem.
type CheckResult struct {
	OK bool
	// Checked says what was verified ("12 segments 000000010000000000000001
	// to ..., 3 timelines, 1536 pages"), Problem the first thing wrong
	// (with the file and LSN).
	Checked, Problem string
	Segments, Pages  int
	From, To         uint64
}

// Archiver is what the WAL ARCHIVE commands drive: the one archive of a
// pgverbs process. Errors a client can cause are *pgerr.Error.
type Archiver interface {
	// Start begins archiving with o (refused when an archive runs or
	// o.Dir holds another system's WAL) and records o in the directory's
	// StateFile so that a restart resumes it.
	Start(ctx context.Context, o Options) error
	// Stop ends archiving and forgets the StateFile (the WAL stays);
	// dropSlot drops the upstream slot too.
	Stop(ctx context.Context, dropSlot bool) error
	// Alter changes the running archive's options: change edits a copy
	// (Dir cannot change); a new slot or application name reconnects.
	Alter(ctx context.Context, change func(*Options) error) error
	// SetPaused pauses (stops receiving and acknowledging, the slot keeps
	// the WAL upstream) or resumes the archive.
	SetPaused(paused bool) error
	// Status reports the archive; false when none was started.
	Status() (Status, bool)
	// Segments lists the archive's files in LSN order, history files
	// first.
	Segments() ([]SegmentInfo, error)
	// Check verifies the archive's continuity.
	Check(ctx context.Context) (CheckResult, error)
}
