package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/storage"
)

// SummaryName is the object a backup in object storage ends with. It is
// written after everything it lists, so a prefix without it holds no
// complete backup: SHOW BACKUPS, VERIFY BACKUP and backup-get ignore or
// refuse such a prefix.
const SummaryName = "pgverbs_backup.json"

// Summary is what SummaryName holds: the backup's Result and the objects
// it consists of, which a restore checks it has all of.
type Summary struct {
	// Version is the summary format's version, 1.
	Version int `json:"version"`
	// Label is the backup label.
	Label string `json:"label"`
	// Format, Compression, Method and WAL are the backup's options.
	Format      string `json:"format"`
	Compression string `json:"compression"`
	Method      string `json:"method"`
	WAL         string `json:"wal"`
	// StartLSN and EndLSN delimit the WAL the backup needs, on Timeline.
	StartLSN string `json:"start_lsn"`
	EndLSN   string `json:"end_lsn"`
	Timeline uint32 `json:"timeline"`
	// StartTime and EndTime are when the backup began and was complete.
	StartTime time.Time `json:"start_time"`
	EndTime   time.Time `json:"end_time"`
	// Bytes is what the server sent (before compression).
	Bytes int64 `json:"bytes"`
	// Manifest reports whether backup_manifest is among Objects.
	Manifest bool `json:"manifest"`
	// Objects are the backup's objects with their stored sizes, the
	// summary itself not included.
	Objects []SummaryObject `json:"objects"`
}

// SummaryObject is one object of a backup.
type SummaryObject struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

// ParseSummary decodes a SummaryName object.
func ParseSummary(b []byte) (*Summary, error) {
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.Version != 1 {
		return nil, errors.New("unknown backup summary version")
	}
	return &s, nil
}

// dest is where createOut makes its files: the target directory
// (targetDir) or a prefix in object storage (objectDest).
type dest interface {
	createRaw(name string) (rawFile, error)
}

// rawFile is one file of a dest, before compression.
type rawFile interface {
	io.Writer
	Close() error
	abort()
}

// createRaw creates name (0600, must not exist) in the target.
func (t *targetDir) createRaw(name string) (rawFile, error) { return dirDest{t.dir}.createRaw(name) }

// dirDest is a directory as a dest.
type dirDest struct{ dir *os.Root }

func (d dirDest) createRaw(name string) (rawFile, error) {
	f, err := d.dir.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fileError("create", name, err)
	}
	return localFile{f}, nil
}

// localFile is a file of the target directory, written in pieces.
type localFile struct{ f *os.File }

func (l localFile) Write(p []byte) (int, error) { return writePieces(l.f, p) }
func (l localFile) Close() error                { return l.f.Close() }
func (l localFile) abort()                      { l.f.Close() }

// objectDest writes a backup's files as objects below dir of a store,
// each a streaming multipart upload, and remembers what it wrote for the
// summary. Uploads still open after a failure are aborted by abortAll.
type objectDest struct {
	ctx   context.Context
	store *storage.Store
	dir   string
	hint  func() int64 // the backup's size estimate so far

	mu      sync.Mutex
	open    map[*objectFile]bool
	objects []SummaryObject
}

func (d *objectDest) createRaw(name string) (rawFile, error) {
	opts := storage.WriteOptions{SizeHint: d.hint()}
	if !strings.HasPrefix(name, "base.tar") {
		// WAL and tablespace archives are uploaded beside base.tar or
		// are small: one part in flight keeps the backup's memory bound.
		opts.ParallelParts = 1
	}
	f := &objectFile{d: d, name: name, w: d.store.Create(d.ctx, storage.Join(d.dir, name), opts)}
	d.mu.Lock()
	d.open[f] = true
	d.mu.Unlock()
	return f, nil
}

// abortAll aborts every upload still open.
func (d *objectDest) abortAll() {
	d.mu.Lock()
	open := make([]*objectFile, 0, len(d.open))
	for f := range d.open {
		open = append(open, f)
	}
	d.mu.Unlock()
	for _, f := range open {
		f.abort()
	}
}

// objectFile is one object of an objectDest.
type objectFile struct {
	d    *objectDest
	name string
	w    *storage.Writer
}

func (f *objectFile) Write(p []byte) (int, error) { return f.w.Write(p) }

func (f *objectFile) Close() error {
	err := f.w.Close()
	f.d.mu.Lock()
	delete(f.d.open, f)
	if err == nil {
		f.d.objects = append(f.d.objects, SummaryObject{Name: f.name, Size: f.w.Written()})
	}
	f.d.mu.Unlock()
	return err
}

func (f *objectFile) abort() {
	f.w.Abort()
	f.d.mu.Lock()
	delete(f.d.open, f)
	f.d.mu.Unlock()
}

// Process-wide exclusion of Runs writing to the same prefix of a store,
// or to prefixes inside one another (the in-process half of what
// targetsMu does for directories).
//
// Across processes, claimObjects does for a prefix what createTarget does
// for a directory: the marker is created with a conditional PUT
// (If-None-Match: *, object storage's O_EXCL), then the prefix must hold
// nothing but it and no parent prefix a marker. On a store that ignores
// the condition only the re-checks remain, and two processes that start
// the same prefix at the same moment can both go on; several instances
// sharing a storage target should then give their backups distinct
// names, as in a name with the host.
var (
	objectsMu sync.Mutex
	objects   = map[string]bool{}
)

func lockObjects(store *storage.Store, dir, url string) (func(), error) {
	key := store.Name() + "/" + dir + "/"
	objectsMu.Lock()
	defer objectsMu.Unlock()
	for k := range objects {
		if strings.HasPrefix(k, key) || strings.HasPrefix(key, k) {
			return nil, inUse(url)
		}
	}
	objects[key] = true
	return func() {
		objectsMu.Lock()
		delete(objects, key)
		objectsMu.Unlock()
	}, nil
}

// runObject is Run for a backup to object storage: tar format, every
// file streamed into its object, the summary written last, and on any
// failure every upload aborted and every object written deleted.
func runObject(ctx context.Context, o Options, s *settings, began time.Time) (*Result, error) {
	store, dir := o.Store, strings.Trim(o.Target, "/")
	url := store.URL(dir)
	if s.Format != Tar {
		return nil, pgerr.New(pgerr.FeatureNotSupported, "BASE BACKUP to object storage needs FORMAT tar").
			WithHint("Add WITH (FORMAT tar); a plain data directory cannot be streamed into objects.")
	}
	if dir == "" {
		return nil, withHint(invalid("backup target %s is the storage target's whole prefix", quote(url)), "Name a path below the target, as in 'storage://target/nightly/2026-12-02'.")
	}
	unlock, err := lockObjects(store, dir, url)
	if err != nil {
		return nil, err
	}
	defer unlock()
	existing, err := store.List(ctx, dir)
	if err != nil {
		return nil, err
	}
	for _, o := range existing {
		if path.Base(o.Name) == markerName {
			return nil, inUse(url)
		}
	}
	if len(existing) > 0 {
		return nil, pgerr.New(pgerr.DuplicateDatabase, "backup target %s already exists and is not empty", quote(url)).WithCause(ErrTargetExists)
	}
	if ctx.Err() != nil {
		return nil, canceledError(ctx)
	}
	// The marker says whose prefix this is until the summary is written:
	// CleanStorage removes what a killed pgverbs left half-written.
	host, _ := os.Hostname()
	marker := fmt.Sprintf("pid %d\nhost %s\nstarted %s\n", os.Getpid(), host, began.UTC().Format(time.RFC3339))
	if err := claimObjects(ctx, store, dir, url, []byte(marker)); err != nil {
		return nil, err
	}
	b := &run{
		s:    s,
		prog: newProgress(o.Progress),
		res:  &Result{Path: url, Format: s.Format, Method: s.Method},
	}
	od := &objectDest{ctx: ctx, store: store, dir: dir, hint: b.prog.estimate, open: map[*objectFile]bool{}}
	b.out = od
	switch s.Method {
	case Replication:
		err = b.replication(ctx)
	case SQL:
		err = b.sql(ctx)
	}
	if err == nil {
		err = b.writeSummary(ctx, od, began)
	}
	if err == nil {
		// The backup is complete with its summary; a marker left behind
		// by a failure here is only noise, which CleanStorage removes.
		_ = store.Delete(ctx, storage.Join(dir, markerName))
	}
	if err != nil {
		b.prog.close(false)
		if ctx.Err() != nil {
			err = canceledError(ctx)
		}
		od.abortAll()
		// The client's context may be gone: clean up on one of our own.
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if derr := store.DeletePrefix(cctx, dir); derr != nil {
			if pe := asPgErr(err); pe != nil && pe.Detail == "" {
				pe.Detail = "The partial backup could not be removed completely: " + derr.Error()
			}
		}
		return nil, err
	}
	b.prog.close(true)
	b.res.Duration = time.Since(began)
	return b.res, nil
}

// writeSummary writes the completion marker, the last object.
func (b *run) writeSummary(ctx context.Context, od *objectDest, began time.Time) error {
	od.mu.Lock()
	objs := append([]SummaryObject(nil), od.objects...)
	od.mu.Unlock()
	label := b.s.Label
	if label == "" {
		label = "pgverbs"
	}
	sum := Summary{
		Version: 1, Label: label,
		Format: b.s.Format.String(), Compression: b.s.Compression.String(),
		Method: b.s.Method.String(), WAL: b.s.WAL.String(),
		StartLSN: b.res.StartLSN.String(), EndLSN: b.res.EndLSN.String(), Timeline: b.res.Timeline,
		StartTime: began.UTC(), EndTime: time.Now().UTC(),
		Bytes: b.res.Bytes, Manifest: b.res.Manifest, Objects: objs,
	}
	data, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	return od.store.Put(ctx, storage.Join(od.dir, SummaryName), append(data, '\n'))
}

// CleanStorage removes what pgverbs processes killed before since left in
// store: backups that never completed (an in-progress marker older than
// since, no summary: the prefix is deleted; with a summary only the
// marker goes) and the multipart uploads begun before since. A marker
// another process may still be writing behind is left alone, with the
// uploads below it: one written on another host, or by a process of
// this host that is still running (markerStale). pgverbs calls it at
// start with its own start time, so that its own backups are never
// touched.
func CleanStorage(ctx context.Context, store *storage.Store, since time.Time) (aborted, removed int, err error) {
	objs, err := store.List(ctx, "")
	if err != nil {
		return 0, 0, err
	}
	have := map[string]bool{}
	for _, o := range objs {
		have[o.Name] = true
	}
	var live, stale []string
	for _, o := range objs {
		dir, base := path.Split(o.Name)
		dir = strings.TrimSuffix(dir, "/")
		if base != markerName || dir == "" {
			continue
		}
		if !o.Modified.Before(since) {
			live = append(live, dir)
			continue
		}
		content, err := store.ReadAll(ctx, o.Name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, 0, err
		}
		if err == nil && !markerStale(content) {
			live = append(live, dir)
			continue
		}
		stale = append(stale, dir)
	}
	ups, err := store.Uploads(ctx, "")
	if err != nil {
		return 0, 0, err
	}
	for _, u := range ups {
		if !u.Started.Before(since) || below(u.Name, live) {
			continue
		}
		if err := store.AbortUpload(ctx, u); err != nil {
			return aborted, 0, err
		}
		aborted++
	}
	for _, dir := range stale {
		if have[storage.Join(dir, SummaryName)] {
			err = store.Delete(ctx, storage.Join(dir, markerName))
		} else {
			err = store.DeletePrefix(ctx, dir)
			removed++
		}
		if err != nil {
			return aborted, removed, err
		}
	}
	return aborted, removed, nil
}

// below reports whether object name lies below one of the prefixes.
func below(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(name, p+"/") {
			return true
		}
	}
	return false
}

// markerStale reports whether the process that wrote an in-progress
// marker (pid and host, as runObject writes them) is gone: it ran on this
// host and its pid is not running, or is this process's own (which did
// not write a marker older than its start). A marker of another host is
// not stale here: that host's pgverbs cleans it, or the bucket's
// lifecycle rules do. A marker that does not parse is stale.
func markerStale(content []byte) bool {
	var pid int
	var host string
	for _, line := range strings.Split(string(content), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "pid":
			pid, _ = strconv.Atoi(v)
		case "host":
			host = v
		}
	}
	if pid <= 0 {
		return true
	}
	if me, _ := os.Hostname(); host != "" && host != me {
		return false
	}
	return pid == os.Getpid() || !processAlive(pid)
}

// claimObjects plants the in-progress marker of a backup to dir and makes
// sure no other process writes there or above: the marker is created
// only if absent, then dir must hold nothing else and no parent prefix a
// marker. As in createTarget, whichever of two processes writes its
// marker second sees the other's (its own listing or an ancestor's
// marker), so at most one goes on; both may refuse, and then a retry
// decides. A refused claim removes its marker (the refusal is 55006).
func claimObjects(ctx context.Context, store *storage.Store, dir, url string, marker []byte) error {
	name := storage.Join(dir, markerName)
	if err := store.PutNew(ctx, name, marker); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return inUse(url)
		}
		return err
	}
	conflict := func() error {
		objs, err := store.List(ctx, dir)
		if err != nil {
			return err
		}
		for _, o := range objs {
			if o.Name != name {
				return inUse(url)
			}
		}
		for p := path.Dir(dir); p != "." && p != "/" && p != ""; p = path.Dir(p) {
			_, err := store.Stat(ctx, storage.Join(p, markerName))
			if err == nil {
				return inUse(url)
			}
			if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	}
	if err := conflict(); err != nil {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = store.Delete(cctx, name)
		return err
	}
	return nil
}
