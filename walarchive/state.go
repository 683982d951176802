package walarchive

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// state is the content of StateFile: what the archive holds and what
// START asked for, so that a restarted pgverbs carries on by itself.
type state struct {
	SystemID    string `json:"system_id"`
	SegmentSize uint64 `json:"segment_size"`
	// Running is false once STOP WAL ARCHIVE ran: the WAL stays, nothing
	// resumes it.
	Running bool         `json:"running"`
	Options stateOptions `json:"options"`
	// Flushed is a durable position on FlushedTLI recorded when the
	// archive last stopped or pgverbs shut down: what the archive may
	// serve standbys at its next start before the upstream answers. An
	// older value after a crash is still durable, only less.
	Flushed    uint64 `json:"flushed,omitempty"`
	FlushedTLI uint32 `json:"flushed_timeline,omitempty"`
}

// stateOptions is Options without Dir (the file lives in it), as JSON.
type stateOptions struct {
	Slot            string `json:"slot"`
	CreateSlot      bool   `json:"create_slot"`
	ApplicationName string `json:"application_name"`
	Synchronous     bool   `json:"synchronous"`
	Compression     string `json:"compression"`
	Level           int    `json:"level,omitempty"`
	RetentionSecs   int64  `json:"retention_seconds,omitempty"`
	MaxSize         int64  `json:"max_size,omitempty"`
	User            string `json:"user,omitempty"`
	Source          string `json:"source,omitempty"`
	Storage         string `json:"storage,omitempty"`
}

func toState(o Options) stateOptions {
	return stateOptions{
		Slot: o.Slot, CreateSlot: o.CreateSlot, ApplicationName: o.ApplicationName, Synchronous: o.Synchronous,
		Compression: o.Compression.String(), Level: o.Level, RetentionSecs: int64(o.Retention / time.Second),
		MaxSize: o.MaxSize, User: o.User, Source: o.Source, Storage: o.Storage,
	}
}

func (s stateOptions) options(dir string) Options {
	o := Options{
		Dir: dir, Slot: s.Slot, CreateSlot: s.CreateSlot, ApplicationName: s.ApplicationName, Synchronous: s.Synchronous,
		Level: s.Level, Retention: time.Duration(s.RetentionSecs) * time.Second, MaxSize: s.MaxSize, User: s.User, Source: s.Source, Storage: s.Storage,
	}
	if s.Compression == "zstd" {
		o.Compression = Zstd
	}
	return o
}

// readState reads dir's StateFile; ok is false when there is none.
func readState(dir *os.Root) (st state, ok bool, err error) {
	b, err := dir.ReadFile(StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, false, fmt.Errorf("walarchive: %s is damaged: %w", StateFile, err)
	}
	return st, true, nil
}

// writeDurable replaces name in dir with data atomically and durably:
// a temporary file, fsynced, renamed over name, the directory fsynced.
func writeDurable(dir *os.Root, name string, data []byte) error {
	tmp := name + ".tmp"
	f, err := dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fileError("create", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = dir.Remove(tmp)
		return fileError("write", tmp, err)
	}
	if err := dir.Rename(tmp, name); err != nil {
		return fileError("rename", tmp, err)
	}
	return syncDir(dir)
}

// syncDir fsyncs a directory, which makes its entries (a new file, a
// rename, a removal) survive a crash.
func syncDir(dir *os.Root) error {
	d, err := dir.Open(".")
	if err != nil {
		return fileError("open", "the directory", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fileError("sync", "the directory", err)
	}
	return nil
}

func writeState(dir *os.Root, st state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeDurable(dir, StateFile, append(b, '\n'))
}

// pointerFile, in the backup root, names the archive directory of a
// running archive (relative to the root), so that pgverbs finds it at
// start. It is removed by STOP.
const pointerFile = ".pgverbs_wal_archive"

// lockFile, in the archive directory, is what lockDir locks while an
// archive runs there.
const lockFile = ".pgverbs_wal_archive.lock"

// errDirLocked is lockDir finding the directory locked by another
// process.
var errDirLocked = errors.New("archive directory locked by another process")

// dirInUse is START's refusal of a directory another process archives
// into.
func dirInUse(dir string) error {
	return pgerr.New(pgerr.ObjectInUse, "WAL archive directory %q is in use by another pgverbs process", filepath.Base(dir)).
		WithHint("Each pgverbs instance sharing a backup root needs a WAL archive directory of its own.").WithCause(errDirLocked)
}

// scan lists the archive's WAL files: history files first (by
// timeline), then segments by position and timeline.
func scan(dir *os.Root, segSize uint64) ([]SegmentInfo, error) {
	d, err := dir.Open(".")
	if err != nil {
		return nil, err
	}
	entries, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	var out []SegmentInfo
	for _, e := range entries {
		info, ok := fileInfo(e.Name(), segSize)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // gone meanwhile (compressed or removed)
		}
		info.Bytes = fi.Size()
		if info.State != SegPartial {
			info.CompletedAt = fi.ModTime()
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.State == SegHistory) != (b.State == SegHistory) {
			return a.State == SegHistory
		}
		if a.Start != b.Start {
			return a.Start < b.Start
		}
		return a.Timeline < b.Timeline
	})
	return out, nil
}

// fileInfo describes a file name of the archive; ok is false for
// anything that is not WAL (the state file, temporary files).
func fileInfo(name string, segSize uint64) (SegmentInfo, bool) {
	state := SegComplete
	base := name
	if b, ok := strings.CutSuffix(name, compressedSuffix); ok {
		state, base = SegCompressed, b
	}
	n, err := ParseName(base, segSize)
	if err != nil || (state == SegCompressed && n.Kind != Segment) {
		return SegmentInfo{}, false
	}
	info := SegmentInfo{Name: name, Timeline: n.Timeline, State: state}
	switch n.Kind {
	case History:
		info.State = SegHistory
		return info, true
	case Partial:
		info.State = SegPartial
	}
	info.Start = n.SegNo * segSize
	info.End = info.Start + segSize
	return info, true
}

// resumePoint is where an archive of files continues: the newest
// timeline's newest segment, from its start when it is partial (written
// again over itself, see OpenSegment) or from its end. ok is false for an
// archive without segments.
func resumePoint(files []SegmentInfo) (tli uint32, lsn uint64, ok bool) {
	for _, f := range files {
		if f.State == SegHistory {
			continue
		}
		pos := f.End
		if f.State == SegPartial {
			pos = f.Start
		}
		if !ok || f.Timeline > tli || (f.Timeline == tli && pos > lsn) {
			tli, lsn, ok = f.Timeline, pos, true
		}
	}
	return tli, lsn, ok
}

// durableFrom is what the archive's files alone vouch for: the newest
// timeline and the end of its last complete segment (the start of its
// .partial), or the recorded position when it is further on the same
// timeline.
func durableFrom(files []SegmentInfo, st state) (tli uint32, lsn uint64) {
	tli, lsn, _ = resumePoint(files)
	if st.FlushedTLI == tli && st.Flushed > lsn {
		lsn = st.Flushed
	}
	return tli, lsn
}

// relInside returns dir relative to root, for the pointer file.
func relInside(root, dir string) (string, error) {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("walarchive: %s is not inside the backup root", dir)
	}
	return rel, nil
}
