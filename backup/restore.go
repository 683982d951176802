package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// RestoreOptions are Restore's.
type RestoreOptions struct {
	// RestoreCommand, when not empty, is written as restore_command into
	// postgresql.auto.conf (after what the backup holds: the last setting
	// wins), and recovery.signal is created: the server starts in
	// archive recovery.
	RestoreCommand string
	// Start, if not nil, is called once, before the files are read, with
	// how many stored bytes the restore reads (compressed, as stored; for
	// a plain backup the manifest's file sizes).
	Start func(total int64)
	// Read, if not nil, is called with each count of stored bytes read.
	Read func(n int64)
}

// RestoreResult is what Restore wrote.
type RestoreResult struct {
	// Files and Bytes count the regular files written and their size.
	Files int
	Bytes int64
	// InPlace reports tablespaces restored as directories in pg_tblspc,
	// for which allow_in_place_tablespaces was set.
	InPlace bool
}

// RestoreErrorKind tells what a RestoreError is about; backup-get's exit
// status follows it.
type RestoreErrorKind int

// The kinds of RestoreError.
const (
	// RestoreVerify: a file, archive or object does not match the
	// manifest or the summary, or cannot be decompressed or unpacked.
	RestoreVerify RestoreErrorKind = iota + 1
	// RestoreSource: the backup cannot be read, or is not complete.
	RestoreSource
	// RestoreWrite: the data directory cannot be written.
	RestoreWrite
)

// RestoreError is Restore's failure, its message for a terminal (no
// SQLSTATE).
type RestoreError struct {
	Kind RestoreErrorKind
	Err  error
}

func (e *RestoreError) Error() string { return e.Err.Error() }

func (e *RestoreError) Unwrap() error { return e.Err }

func restoreFail(kind RestoreErrorKind, format string, args ...any) error {
	return &RestoreError{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// ErrorText is err's message for a terminal: a *pgerr.Error's message with
// its DETAIL and HINT, without the severity and SQLSTATE.
func ErrorText(err error) string {
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		return err.Error()
	}
	msg := pe.Message
	if pe.Detail != "" {
		msg += "\nDETAIL: " + pe.Detail
	}
	if pe.Hint != "" {
		msg += "\nHINT: " + pe.Hint
	}
	return msg
}

// Restore makes src a data directory in datadir, an existing empty
// directory, as it reads it (Walk: nothing is stored locally on the
// way), verifying every file against the backup's manifest with the
// checks of VerifyBackup (size and checksum; none missing, none extra;
// the same files ignored) and every archive to its end. Tablespaces
// become directories in pg_tblspc/OID (in place, with
// allow_in_place_tablespaces on); a tablespace_map that names any is
// checked and not written, since recovery would replace those
// directories by links to the original locations. What is written goes through Unpack, the
// hardened unpacker (no escape from datadir, no links but pg_tblspc's,
// which arrive here as directories, files 0600 and directories 0700).
// Then backup_manifest is written, opts.RestoreCommand if any, and
// everything fsynced.
//
// The error is a *RestoreError, or canceledError's when ctx ends; on
// error, what was written stays in datadir for the caller to remove.
func Restore(ctx context.Context, src *Stored, datadir string, opts RestoreOptions) (*RestoreResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, canceledError(ctx)
	}
	r := &restorer{ctx: ctx, s: *src, dir: datadir, opts: opts}
	r.s.count = opts.Read
	if err := r.run(); err != nil {
		if ctx.Err() != nil {
			return nil, canceledError(ctx)
		}
		return nil, err
	}
	return &r.res, nil
}

// restorer is one Restore.
type restorer struct {
	ctx   context.Context
	s     Stored // a copy, counting what it reads
	dir   string
	opts  RestoreOptions
	check *manifestCheck
	extra []string
	res   RestoreResult
	// realDir is a plain backup's directory, links evaluated: tablespace
	// links must lead inside it.
	realDir string
}

func (r *restorer) run() error {
	name := r.s.Name()
	if r.s.Local() {
		if _, err := os.Lstat(filepath.Join(r.s.dir, markerName)); err == nil {
			return restoreFail(RestoreSource, "SOURCE %s is a backup still being written (or one that failed): it is not complete", name)
		}
	}
	if err := r.checkObjects(); err != nil {
		return err
	}
	data, err := r.s.Manifest(r.ctx)
	if errors.Is(err, fs.ErrNotExist) {
		return restoreFail(RestoreSource, "%s has no backup_manifest: every file is verified against it", name)
	}
	if err != nil {
		return restoreFail(RestoreSource, "%s: %s", ManifestName, ErrorText(err))
	}
	m, err := ParseManifest(data)
	switch {
	case err == ErrManifestChecksum:
		return restoreFail(RestoreVerify, "backup_manifest: its checksum does not match its contents")
	case err != nil:
		return restoreFail(RestoreVerify, "backup_manifest: %v", err)
	}
	check, dups := newManifestCheck(m)
	if len(dups) > 0 {
		return restoreFail(RestoreVerify, "backup_manifest lists %s more than once", dups[0])
	}
	r.check = check
	if err := r.start(m, int64(len(data))); err != nil {
		return err
	}
	if r.s.Format == Plain {
		real, err := filepath.EvalSymlinks(r.s.dir)
		if err != nil {
			return restoreFail(RestoreSource, "SOURCE: %v", err)
		}
		r.realDir = real
		r.s.links = real
	}
	if err := r.unpack(); err != nil {
		return err
	}
	if err := r.complete(); err != nil {
		return err
	}
	return r.finish(data)
}

// checkObjects checks, in object storage, that every object the summary
// lists is there with its size, and restores only the archives it lists
// (an object it does not list is not part of the backup).
func (r *restorer) checkObjects() error {
	if r.s.Summary == nil {
		return nil
	}
	have := map[string]int64{}
	for _, o := range r.s.Objects {
		have[o.Name] = o.Size
	}
	listed := map[string]bool{}
	for _, o := range r.s.Summary.Objects {
		if _, _, ok := splitArchive(o.Name); !ok && o.Name != ManifestName {
			return restoreFail(RestoreVerify, "%s: %s lists an object that is neither an archive nor the manifest: %q", r.s.Name(), SummaryName, o.Name)
		}
		size, ok := have[o.Name]
		if !ok {
			return restoreFail(RestoreSource, "%s is not complete: object %s is missing", r.s.Name(), o.Name)
		}
		if size != o.Size {
			return restoreFail(RestoreVerify, "%s: object %s is %d bytes, the backup wrote %d", r.s.Name(), o.Name, size, o.Size)
		}
		listed[o.Name] = true
	}
	if !listed[ManifestName] {
		return restoreFail(RestoreSource, "%s has no backup_manifest: every file is verified against it", r.s.Name())
	}
	var archives []string
	for _, a := range r.s.Archives {
		if listed[a] {
			archives = append(archives, a)
		}
	}
	r.s.Archives = archives
	return nil
}

// start tells opts.Start how much will be read, and opts.Read of the
// manifest, read already.
func (r *restorer) start(m *Manifest, manifestSize int64) error {
	total := manifestSize
	switch {
	case r.s.Format == Plain:
		for _, f := range m.Files {
			total += f.Size
		}
		total -= manifestSize // not counted as it is read
		manifestSize = 0
	case r.s.Summary != nil:
		total = 0
		for _, o := range r.s.Summary.Objects {
			total += o.Size
		}
	default:
		for _, a := range r.s.Archives {
			fi, err := os.Stat(filepath.Join(r.s.dir, a))
			if err != nil {
				return restoreFail(RestoreSource, "%s: %s", a, ErrorText(fileError("stat", a, err)))
			}
			total += fi.Size()
		}
	}
	if r.opts.Start != nil {
		r.opts.Start(total)
	}
	if r.opts.Read != nil && manifestSize > 0 {
		r.opts.Read(manifestSize)
	}
	return nil
}

// unpackError is a write into the unpacker that failed because the
// unpacker did.
type unpackError struct{ err error }

func (e *unpackError) Error() string { return e.err.Error() }

// unpackWriter marks the pipe's write errors as the unpacker's.
type unpackWriter struct{ w io.Writer }

func (u unpackWriter) Write(p []byte) (int, error) {
	n, err := u.w.Write(p)
	if err != nil {
		err = &unpackError{err}
	}
	return n, err
}

// unpack walks the backup into one tar stream that Unpack writes into
// r.dir, checking every file on the way.
func (r *restorer) unpack() error {
	pr, pw := io.Pipe()
	unpacked := make(chan error, 1)
	go func() {
		files, bytes, err := Unpack(pr, r.dir)
		r.res.Files, r.res.Bytes = files, bytes
		if err != nil {
			// Stops the walk, and the download, at its next write.
			pr.CloseWithError(err)
		} else {
			io.Copy(io.Discard, pr)
			pr.Close()
		}
		unpacked <- err
	}()
	tw := tar.NewWriter(unpackWriter{pw})
	var last string // the archive of the last entry, for messages
	werr := r.s.Walk(r.ctx, func(e *Entry, rd io.Reader) error {
		last = e.Archive
		return r.entry(tw, e, rd)
	}, nil)
	if werr == nil {
		werr = tw.Close()
	}
	pw.CloseWithError(werr)
	uerr := <-unpacked
	var ue *unpackError
	switch {
	case r.ctx.Err() != nil:
		return canceledError(r.ctx)
	case werr != nil && !errors.As(werr, &ue):
		return r.readError(werr)
	case uerr != nil:
		var pe *pgerr.Error
		if errors.As(uerr, &pe) && pe.Code == pgerr.ProtocolViolation {
			if last != "" {
				return restoreFail(RestoreVerify, "%s: %s", last, pe.Message)
			}
			return restoreFail(RestoreVerify, "%s", pe.Message)
		}
		return &RestoreError{Kind: RestoreWrite, Err: errors.New(ErrorText(uerr))}
	case werr != nil:
		return r.readError(werr)
	}
	return nil
}

// readError classifies an error of the walk.
func (r *restorer) readError(err error) error {
	var re *RestoreError
	if errors.As(err, &re) {
		return re
	}
	var se *SourceError
	var ae *ArchiveError
	switch {
	case errors.As(err, &se):
		what := r.s.Name()
		if errors.As(err, &ae) {
			what = ae.Archive
		}
		return restoreFail(RestoreSource, "reading %s: %s", what, ErrorText(se.Err))
	case errors.As(err, &ae):
		return restoreFail(RestoreVerify, "%s is damaged: %v", ae.Archive, ae.Err)
	}
	return restoreFail(RestoreSource, "%s", ErrorText(err))
}

// entry writes one entry of the walk into tw, checking a file against
// the manifest as it passes; a tablespace link becomes the directory its
// files are unpacked into.
func (r *restorer) entry(tw *tar.Writer, e *Entry, rd io.Reader) error {
	hdr := &tar.Header{Name: e.Path, Mode: 0o700, ModTime: e.ModTime, Format: tar.FormatPAX}
	switch e.Type {
	case Dir:
		hdr.Name += "/"
		hdr.Typeflag = tar.TypeDir
		return tw.WriteHeader(hdr)
	case Symlink:
		if err := r.tablespaceLink(e); err != nil {
			return err
		}
		hdr.Name += "/"
		hdr.Typeflag = tar.TypeDir
		r.res.InPlace = true
		return tw.WriteHeader(hdr)
	}
	if strings.HasPrefix(e.Path, "pg_tblspc/") {
		r.res.InPlace = true
	}
	f, kind := r.check.entry(e.Path, e.Size)
	switch kind {
	case checkDuplicate:
		return restoreFail(RestoreVerify, "%s appears twice in the backup", e.Path)
	case checkExtra:
		r.extra = append(r.extra, e.Path)
	case checkSize:
		return restoreFail(RestoreVerify, "%s is %d bytes, the manifest says %d", e.Path, e.Size, f.Size)
	}
	var sum io.Writer = io.Discard
	var fsum *fileSum
	if kind == checkOK {
		fsum = newFileSum(f)
		sum = fsum
	}
	out := io.Writer(tw)
	if e.Path == "tablespace_map" && e.Size > 0 {
		// Checked, not written: its links would replace the in-place
		// directories. An empty one (a cluster without tablespaces) is
		// written, so that the data directory is all the manifest lists.
		out = io.Discard
	} else {
		hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, e.Size, 0o600
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	if _, err := io.Copy(io.MultiWriter(out, sum), rd); err != nil {
		return err
	}
	if fsum == nil {
		return nil
	}
	switch kind, got := fsum.verdict(); kind {
	case checkSize:
		return restoreFail(RestoreVerify, "%s is %d bytes, the manifest says %d", e.Path, fsum.n, f.Size)
	case checkSum:
		return restoreFail(RestoreVerify, "checksum mismatch for %s: %s %s, the manifest says %s", e.Path, f.Algorithm, got, f.Checksum)
	}
	return nil
}

// tablespaceLink checks a link of the walk: only pg_tblspc/OID, from
// base.tar or, in a plain backup, leading inside the backup's directory
// (Walk then follows it).
func (r *restorer) tablespaceLink(e *Entry) error {
	dir, oid := path.Split(e.Path)
	if dir != "pg_tblspc/" || !isOID(oid) || (e.Archive != "" && archivePrefix(e.Archive) != "") {
		if e.Archive != "" {
			return restoreFail(RestoreVerify, "%s: unexpected symbolic link %s", e.Archive, e.Path)
		}
		return restoreFail(RestoreVerify, "unexpected symbolic link %s", e.Path)
	}
	if e.Archive != "" {
		return nil
	}
	target, err := filepath.EvalSymlinks(filepath.Join(r.s.dir, filepath.FromSlash(e.Path)))
	if err != nil {
		return restoreFail(RestoreSource, "tablespace %s: %v", e.Path, err)
	}
	if rel, err := filepath.Rel(r.realDir, target); err != nil || !filepath.IsLocal(rel) {
		return restoreFail(RestoreSource, "tablespace %s lies outside the backup directory", e.Path)
	}
	return nil
}

// complete fails unless every file of the manifest was met and no other.
func (r *restorer) complete() error {
	var problems []string
	for _, p := range r.check.missing() {
		problems = append(problems, p+" is in the manifest but not in the backup")
	}
	sort.Strings(problems)
	extra := append([]string(nil), r.extra...)
	sort.Strings(extra)
	for _, p := range extra {
		problems = append(problems, p+" is in the backup but not in the manifest")
	}
	if len(problems) == 0 {
		return nil
	}
	shown := problems[:min(len(problems), 10)]
	msg := strings.Join(shown, "\n  ")
	if len(problems) > len(shown) {
		msg += fmt.Sprintf("\n  and %d more", len(problems)-len(shown))
	}
	return restoreFail(RestoreVerify, "the backup does not match its manifest:\n  %s", msg)
}

// finish writes what the data directory needs beside the backup's files,
// then makes it durable.
func (r *restorer) finish(manifest []byte) error {
	root, err := os.OpenRoot(r.dir)
	if err != nil {
		return &RestoreError{Kind: RestoreWrite, Err: err}
	}
	defer root.Close()
	if r.res.InPlace {
		// Without it, recovery stops (PANIC) at a directory in pg_tblspc
		// that is not a link.
		if err := appendAutoConf(root, "# Added by pgverbs backup-get: the tablespaces are directories in pg_tblspc.\nallow_in_place_tablespaces = on\n"); err != nil {
			return err
		}
	}
	if r.opts.RestoreCommand != "" {
		if err := appendAutoConf(root, "# Added by pgverbs backup-get.\nrestore_command = "+confQuote(r.opts.RestoreCommand)+"\n"); err != nil {
			return err
		}
		if err := root.WriteFile("recovery.signal", nil, 0o600); err != nil {
			return &RestoreError{Kind: RestoreWrite, Err: err}
		}
	}
	if err := root.WriteFile(ManifestName, manifest, 0o600); err != nil {
		return &RestoreError{Kind: RestoreWrite, Err: err}
	}
	if err := syncTree(root); err != nil {
		return &RestoreError{Kind: RestoreWrite, Err: fmt.Errorf("sync %s: %w", r.dir, err)}
	}
	return nil
}

// appendAutoConf appends lines to postgresql.auto.conf, where the last
// setting of a name wins.
func appendAutoConf(root *os.Root, lines string) error {
	f, err := root.OpenFile("postgresql.auto.conf", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return &RestoreError{Kind: RestoreWrite, Err: err}
	}
	_, err = f.WriteString("\n" + lines)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &RestoreError{Kind: RestoreWrite, Err: err}
	}
	return nil
}

// syncTree fsyncs every file and directory of root, as pg_basebackup
// does before it reports success.
func syncTree(root *os.Root) error {
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := root.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	})
}
