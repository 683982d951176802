package walarchive

// An archive started TO 'storage://target/path' is a local archive like
// any other, in a staging directory below the backup root, plus an
// uploader: the promise upstream is unchanged (what is acknowledged is
// fsynced locally), and completed files are copied to object storage
// afterwards. The local copy of a segment goes only once its upload is
// confirmed and local retention lets it go; the store keeps everything
// (RETENTION and MAX_SIZE apply to the staging directory only).
//
// What is uploaded is not recorded locally: the store's listing is the
// record, read when the uploader starts. Objects appear whole (a
// PutObject or a completed multipart upload), so a listed object is a
// confirmed upload, and one a crash interrupted is simply not there and
// is uploaded again.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/storage"
)

// Bounds of the wait between failed upload passes, and of one upload.
const (
	minUploadBackoff = time.Second
	maxUploadBackoff = time.Minute
	uploadTimeout    = 10 * time.Minute
	// uploadInterval is how often the uploader looks without being
	// prompted (a file completed, maintenance ran).
	uploadInterval = time.Minute
)

// StagingDir is the directory below the backup root that holds the local
// staging directories of archives uploading to object storage:
// StagingDir/target/path for storage://target/path.
const StagingDir = ".pgverbs-wal"

// uploader copies one run's completed files to its store.
type uploader struct {
	url    string
	store  *storage.Store // nil when the URL's target is not configured
	prefix string         // the URL's path: objects are prefix/NAME
	broken error          // why store is nil
	// work prompts a pass (maintenance ran, a file completed).
	work chan struct{}

	mu sync.Mutex
	// known is set once the store's listing filled done.
	known bool
	// done holds the logical names (NAME for NAME and NAME.zst, and
	// N.history) whose upload is confirmed.
	done    map[string]bool
	lastErr string
}

// newUploader resolves o.Storage among the configured stores; an unknown
// target leaves the uploader broken (reported, nothing uploaded, nothing
// removed locally) rather than the archive stopped: a restarted pgverbs
// whose configuration lost the target still archives locally.
func (m *Manager) newUploader(o Options) *uploader {
	u := &uploader{url: o.Storage, work: make(chan struct{}, 1), done: map[string]bool{}}
	u.store, u.prefix, u.broken = m.cfg.Stores.Resolve(o.Storage)
	if u.broken != nil {
		u.lastErr = errorText(u.broken)
	} else {
		registerRemote(o.Dir, u.store, u.prefix)
	}
	return u
}

// prompt asks for a pass soon.
func (u *uploader) prompt() {
	select {
	case u.work <- struct{}{}:
	default:
	}
}

// logicalName is the name a file of the archive is uploaded and counted
// under: NAME for NAME.zst.
func logicalName(name string) string {
	return strings.TrimSuffix(name, compressedSuffix)
}

// uploadable tells the files that are uploaded: complete segments
// (compressed or not) and history files, never a .partial (it is still
// written, or the end of a past timeline that the next timeline's
// segment holds as well).
func uploadable(f SegmentInfo) bool {
	return f.State == SegComplete || f.State == SegCompressed || f.State == SegHistory
}

// pendingLocked returns the files of files whose upload is not confirmed,
// in upload order (history files, then segments by position), one per
// logical name, the compressed one when both are there. With waitZstd a
// segment not compressed yet is left out (the maintenance goroutine is
// about to replace it by NAME.zst, which is what gets uploaded). u.mu is
// held.
func (u *uploader) pendingLocked(files []SegmentInfo, waitZstd bool) []SegmentInfo {
	var out []SegmentInfo
	at := map[string]int{}
	for _, f := range files {
		if !uploadable(f) {
			continue
		}
		ln := logicalName(f.Name)
		if u.done[ln] {
			continue
		}
		if i, ok := at[ln]; ok {
			if f.State == SegCompressed {
				out[i] = f
			}
			continue
		}
		at[ln] = len(out)
		out = append(out, f)
	}
	if !waitZstd {
		return out
	}
	kept := out[:0]
	for _, f := range out {
		if f.State != SegComplete {
			kept = append(kept, f)
		}
	}
	return kept
}

// status reports the lag of files, the archive's directory as scanned.
func (u *uploader) status(files []SegmentInfo, now time.Time) UploadStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := UploadStatus{Storage: u.url, Known: u.known, LastError: u.lastErr}
	for _, f := range u.pendingLocked(files, false) {
		s.PendingFiles++
		s.PendingBytes += f.Bytes
		if s.OldestPending == "" {
			s.OldestPending = logicalName(f.Name)
			if !f.CompletedAt.IsZero() {
				s.OldestPendingSeconds = max(0, now.Sub(f.CompletedAt).Seconds())
			}
		}
	}
	return s
}

// floor is Protect.NotUploaded for files: the start of the oldest
// complete segment not uploaded (at least 1), 0 when all are; ok is false
// while the store's listing is not known, when nothing may be removed.
func (u *uploader) floor(files []SegmentInfo) (lsn uint64, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.known {
		return 0, false
	}
	for _, f := range files {
		if (f.State == SegComplete || f.State == SegCompressed) && !u.done[logicalName(f.Name)] {
			if start := max(f.Start, 1); lsn == 0 || start < lsn {
				lsn = start
			}
		}
	}
	return lsn, true
}

// onlyUploaded cuts remove, retention's plan, before its first file whose
// upload is not confirmed: whatever the LSN arithmetic said, the only
// copy of a segment is never removed.
func (u *uploader) onlyUploaded(remove []string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, name := range remove {
		if !u.known || !u.done[logicalName(name)] {
			return remove[:i]
		}
	}
	return remove
}

// uploadLoop runs upload passes until ctx ends: prompted, once a minute,
// and after a failure with exponential backoff.
func (m *Manager) uploadLoop(ctx context.Context, run *archiveRun) {
	u := run.up
	backoff := minUploadBackoff
	tick := time.NewTicker(uploadInterval)
	defer tick.Stop()
	for {
		err := m.uploadPass(ctx, run)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			u.mu.Lock()
			u.lastErr = errorText(err)
			u.mu.Unlock()
			m.log.Warn("WAL archive: upload to object storage failed, retrying", zap.String("storage", u.url),
				zap.Duration("backoff", backoff), zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxUploadBackoff)
			continue
		}
		backoff = minUploadBackoff
		select {
		case <-ctx.Done():
			return
		case <-u.work:
		case <-tick.C:
		}
	}
}

// uploadPass lists the store when it is not known yet, then uploads the
// pending files in order, stopping at the first failure (a later segment
// is never uploaded before an earlier one).
func (m *Manager) uploadPass(ctx context.Context, run *archiveRun) error {
	u := run.up
	if u.broken != nil {
		return u.broken
	}
	// run.st is replaced under m.mu by ALTER; the segment size stays.
	m.mu.Lock()
	segSize := run.st.SegmentSize
	m.mu.Unlock()
	if err := u.list(ctx, segSize); err != nil {
		return err
	}
	uploaded := 0
	defer func() {
		if uploaded > 0 {
			// Retention may now remove what it kept for the upload.
			select {
			case run.work <- struct{}{}:
			default:
			}
		}
	}()
	// A file may be compressed between the scan and its upload: scan
	// again then.
	for range 3 {
		m.mu.Lock()
		zstdOn := run.opts.Compression == Zstd
		m.mu.Unlock()
		files, err := scan(run.dir, segSize)
		if err != nil {
			return archiveError("list", err)
		}
		u.mu.Lock()
		pending := u.pendingLocked(files, zstdOn)
		u.mu.Unlock()
		again := false
		for _, f := range pending {
			n, err := m.uploadFile(ctx, run, f.Name, segSize)
			if errors.Is(err, fs.ErrNotExist) {
				again = true
				break
			}
			if err != nil {
				return err
			}
			uploaded++
			u.mu.Lock()
			u.done[logicalName(f.Name)] = true
			u.lastErr = ""
			u.mu.Unlock()
			m.mu.Lock()
			m.uploadedFiles++
			m.uploadedBytes += uint64(n)
			m.mu.Unlock()
			m.log.Debug("WAL archive: uploaded", zap.String("file", f.Name), zap.String("storage", u.url))
		}
		if !again {
			return nil
		}
	}
	return nil
}

// list fills u.done from the store's listing of the prefix, once.
func (u *uploader) list(ctx context.Context, segSize uint64) error {
	u.mu.Lock()
	known := u.known
	u.mu.Unlock()
	if known {
		return nil
	}
	objs, err := u.store.List(ctx, u.prefix)
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Name, u.prefix+"/")
		if u.prefix == "" {
			rel = o.Name
		}
		if strings.Contains(rel, "/") {
			continue
		}
		info, ok := fileInfo(rel, segSize)
		if !ok || !uploadable(info) {
			continue
		}
		if info.State == SegComplete && o.Size != int64(segSize) {
			// Not a whole segment of this archive: uploaded again.
			continue
		}
		done[logicalName(rel)] = true
	}
	u.mu.Lock()
	u.done, u.known = done, true
	u.mu.Unlock()
	return nil
}

// uploadFile streams the archive's file name to prefix/name (one
// PutObject or a multipart upload, CRC32C-checked by the store) and
// returns its length. The upload is confirmed when this returns nil. A
// file that is gone (compressed meanwhile) is an error matching
// fs.ErrNotExist.
func (m *Manager) uploadFile(ctx context.Context, run *archiveRun, name string, segSize uint64) (int64, error) {
	u := run.up
	f, size, err := openRegular(run.dir, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
		return 0, fileError("open", name, err)
	}
	defer f.Close()
	if info, ok := fileInfo(name, segSize); ok && info.State == SegComplete && size != int64(segSize) {
		return 0, fmt.Errorf("walarchive: %s is %d bytes, not the segment size %d", name, size, segSize)
	}
	ctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	defer cancel()
	w := u.store.Create(ctx, storage.Join(u.prefix, name), storage.WriteOptions{SizeHint: size, ParallelParts: 1})
	n, err := io.Copy(w, f)
	if err == nil && n != size {
		err = fmt.Errorf("walarchive: %s changed while uploaded (%d bytes, then %d)", name, size, n)
	}
	if err != nil {
		w.Abort()
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	return n, nil
}

// remoteState is the object StateFile beside the uploaded WAL: whose WAL
// the prefix holds, so that a second cluster is not archived into it.
type remoteState struct {
	SystemID    string `json:"system_id"`
	SegmentSize uint64 `json:"segment_size"`
}

// checkRemote refuses a prefix that holds another system's WAL and marks
// a new one as this system's. It runs at START, which thereby also
// reports a store it cannot reach.
func checkRemote(ctx context.Context, store *storage.Store, prefix string, st state) error {
	name := storage.Join(prefix, StateFile)
	b, err := store.ReadAll(ctx, name)
	if errors.Is(err, os.ErrNotExist) {
		data, err := json.MarshalIndent(remoteState{SystemID: st.SystemID, SegmentSize: st.SegmentSize}, "", "  ")
		if err != nil {
			return err
		}
		return store.Put(ctx, name, append(data, '\n'))
	}
	if err != nil {
		return err
	}
	var rs remoteState
	if err := json.Unmarshal(b, &rs); err != nil {
		return pgerr.New(pgerr.ObjectNotInPrerequisiteState, "%s is damaged: %v", store.URL(name), err)
	}
	if rs.SystemID != st.SystemID || rs.SegmentSize != st.SegmentSize {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "%s holds the WAL archive of another database system (system identifier %s)", store.URL(prefix), rs.SystemID)
		e.Hint = "Archive each cluster to a storage path of its own."
		return e
	}
	return nil
}

// errorText is err as SHOW WAL ARCHIVE shows it: a *pgerr.Error's
// message, else the error.
func errorText(err error) string {
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		return pe.Message
	}
	return err.Error()
}

// remote is where the uploaded copies of an archive directory are.
type remote struct {
	store  *storage.Store
	prefix string
}

// remotes maps an archive directory to its remote, for /wal/: the
// handler knows the directory (ArchiveFunc), and a file no longer there
// may be in the store. Kept after STOP, as the directory is served.
var remotes sync.Map

func registerRemote(dir string, store *storage.Store, prefix string) {
	remotes.Store(dir, &remote{store: store, prefix: prefix})
}

func remoteOf(dir string) *remote {
	if r, ok := remotes.Load(dir); ok {
		return r.(*remote)
	}
	return nil
}

// open streams the uploaded copy of the WAL file name, as OpenFile reads
// the local one: a segment NAME, else NAME.zst decompressed, or a
// history file. A .partial is never uploaded. An absent object matches
// fs.ErrNotExist.
func (r *remote) open(ctx context.Context, name string, segSize uint64) (io.ReadCloser, int64, error) {
	n, err := ParseName(name, segSize)
	if err != nil {
		return nil, 0, err
	}
	if n.Kind == Partial {
		return nil, 0, fs.ErrNotExist
	}
	rc, size, err := r.store.Open(ctx, storage.Join(r.prefix, name))
	if errors.Is(err, os.ErrNotExist) && n.Kind == Segment {
		rc, _, err = r.store.Open(ctx, storage.Join(r.prefix, name+compressedSuffix))
		if err != nil {
			return nil, 0, err
		}
		return newZstdSegment(rc, name, segSize), int64(segSize), nil
	}
	if err != nil {
		return nil, 0, err
	}
	if n.Kind != History && size != int64(segSize) {
		rc.Close()
		return nil, 0, fmt.Errorf("walarchive: %s in object storage is %d bytes, not the segment size %d", name, size, segSize)
	}
	return rc, size, nil
}
