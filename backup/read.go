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
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/storage"
)

// ManifestName is the backup manifest's name, in a plain backup's data
// directory and beside a tar backup's archives.
const ManifestName = "backup_manifest"

// ErrIncomplete is wrapped by the SQLSTATE 58P01 error OpenStored returns
// for a prefix in object storage without SummaryName: no backup there, or
// one that never completed.
var ErrIncomplete = errors.New("not a complete backup")

// Stored is a backup as it was stored, opened for reading: a plain data
// directory, a directory of tar archives, or the tar objects of a prefix in
// object storage. Nothing is copied locally: Walk streams every file from
// where it lies, decompressing tar archives as it reads them. VERIFY
// BACKUP and backup-get both read backups through it.
type Stored struct {
	// Format is Plain for a data directory, Tar for archives.
	Format Format
	// Compression is the archives' compression (by suffix; NoCompression
	// for plain backups).
	Compression Compression
	// Archives are the tar archives' names in the order Walk reads them:
	// base.tar..., then OID.tar... by OID, then pg_wal.tar...; none for a
	// plain backup.
	Archives []string
	// Summary is the object-storage backup's SummaryName, nil for a local
	// backup.
	Summary *Summary
	// Objects lists every object below the prefix, the summary included
	// (object storage only), sorted by name; VERIFY BACKUP reports those
	// the summary does not list.
	Objects []storage.Object

	dir    string // local: the backup's directory
	links  string // local: pg_tblspc links are followed only into here ("" anywhere)
	store  *storage.Store
	prefix string        // object storage: the backup's prefix in store
	url    string        // what the user named, for messages
	count  func(n int64) // if set, told of every stored byte read (Restore's progress)
}

// OpenLocal opens the backup in dir, a directory already resolved inside
// the backup root (ResolveDir): a plain backup when it holds
// global/pg_control, a tar backup when it holds base.tar (with any
// compression suffix). typed is the path as the user wrote it, the
// only one messages show. Anything else is 58P01 (undefined file).
func OpenLocal(dir, typed string) (*Stored, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fileError("open", typed, err)
	}
	if !fi.IsDir() {
		return nil, pgerr.New(pgerr.UndefinedFile, "backup %s is not a directory", quote(typed))
	}
	s := &Stored{dir: dir, url: typed}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fileError("list", typed, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "global", "pg_control")); err == nil {
		s.Format = Plain
		return s, nil
	}
	s.Format = Tar
	if err := s.findArchives(names); err != nil {
		return nil, err
	}
	return s, nil
}

// OpenStored opens the backup below prefix of store: its summary must be
// there (else 58P01 wrapping ErrIncomplete, with a HINT), and it must be a
// tar backup.
func OpenStored(ctx context.Context, store *storage.Store, prefix string) (*Stored, error) {
	prefix = strings.Trim(prefix, "/")
	s := &Stored{Format: Tar, store: store, prefix: prefix, url: store.URL(prefix)}
	objs, err := store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		o.Name = strings.TrimPrefix(o.Name, prefix+"/")
		if prefix == "" {
			o.Name = strings.TrimPrefix(o.Name, "/")
		}
		s.Objects = append(s.Objects, o)
		names = append(names, o.Name)
	}
	if !slices.Contains(names, SummaryName) {
		return nil, pgerr.New(pgerr.UndefinedFile, "%s is not a complete backup", quote(s.url)).
			WithDetail("The prefix holds no %s: no backup was written there, or it never completed.", SummaryName).
			WithHint("Name the prefix of a backup that BASE BACKUP TO 'storage://...' completed.").
			WithCause(ErrIncomplete)
	}
	data, err := store.ReadAll(ctx, storage.Join(prefix, SummaryName))
	if err != nil {
		return nil, err
	}
	if s.Summary, err = ParseSummary(data); err != nil {
		return nil, pgerr.New(pgerr.DataCorrupted, "the summary %s of backup %s cannot be read: %v", SummaryName, quote(s.url), err)
	}
	if err := s.findArchives(names); err != nil {
		return nil, err
	}
	return s, nil
}

// archiveSuffixes are the compressions by the suffix their archives have.
var archiveSuffixes = []struct {
	suffix string
	alg    Compression
}{{".tar", NoCompression}, {".tar.gz", Gzip}, {".tar.lz4", LZ4}, {".tar.zst", Zstd}}

// splitArchive splits an archive's name into its stem (base, pg_wal, an
// OID) and compression.
func splitArchive(name string) (stem string, alg Compression, ok bool) {
	for _, a := range archiveSuffixes {
		if s, found := strings.CutSuffix(name, a.suffix); found && s != "" && !strings.Contains(s, "/") {
			return s, a.alg, true
		}
	}
	return "", 0, false
}

// findArchives picks the archives out of a tar backup's file names.
func (s *Stored) findArchives(names []string) error {
	var base, wal string
	var spcs []string
	for _, n := range names {
		stem, alg, ok := splitArchive(n)
		if !ok {
			continue
		}
		switch {
		case stem == "base":
			base, s.Compression = n, alg
		case stem == "pg_wal":
			wal = n
		case isOID(stem):
			spcs = append(spcs, n)
		}
	}
	if base == "" {
		return pgerr.New(pgerr.UndefinedFile, "%s holds no base backup", quote(s.url)).
			WithDetail("Neither a data directory (global/pg_control) nor a base.tar archive is there.")
	}
	sort.Slice(spcs, func(i, j int) bool {
		a, b := strings.SplitN(spcs[i], ".", 2)[0], strings.SplitN(spcs[j], ".", 2)[0]
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		return a < b
	})
	s.Archives = append(append([]string{base}, spcs...), wal)
	if wal == "" {
		s.Archives = s.Archives[:len(s.Archives)-1]
	}
	return nil
}

// Name is the backup as the user named it: a path or a storage:// URL.
func (s *Stored) Name() string { return s.url }

// ConfineLinks makes Walk follow a plain backup's pg_tblspc links only
// when they lead into root (evaluated); others are yielded as links and
// not followed, so that a link planted in a backup cannot make VERIFY
// BACKUP read or name files outside the backup root.
func (s *Stored) ConfineLinks(root string) {
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	s.links = filepath.Clean(root)
}

// Dir is a local backup's directory, "" for one in object storage.
func (s *Stored) Dir() string { return s.dir }

// Local reports whether the backup is in a local directory.
func (s *Stored) Local() bool { return s.store == nil }

// Manifest reads the backup manifest whole (a manifest is one line per
// file, small next to the backup). A backup without one is an error that
// errors.Is(err, os.ErrNotExist).
func (s *Stored) Manifest(ctx context.Context) ([]byte, error) {
	if s.store != nil {
		return s.store.ReadAll(ctx, storage.Join(s.prefix, ManifestName))
	}
	b, err := os.ReadFile(filepath.Join(s.dir, ManifestName))
	if err != nil {
		return nil, fileError("read", ManifestName, err)
	}
	return b, nil
}

// EntryType is the kind of an Entry.
type EntryType int

// The kinds of entries Walk yields.
const (
	// File is a regular file, its content the reader Walk passes.
	File EntryType = iota
	// Dir is a directory.
	Dir
	// Symlink is a symbolic link, Entry.Link its target.
	Symlink
)

// Entry is one member of a backup's data directory.
type Entry struct {
	// Path is the member's path in the data directory, slash-separated,
	// without a leading "./" or a trailing slash: "global/pg_control",
	// "pg_tblspc/16385/PG_15_202209061/5/16386", "pg_wal/000000010000000000000002".
	Path string
	// Type is what the member is.
	Type EntryType
	// Size is a File's length in bytes (0 for the others).
	Size int64
	// Mode holds the permission bits.
	Mode fs.FileMode
	// ModTime is the member's modification time.
	ModTime time.Time
	// Link is a Symlink's target as stored (a tablespace's original
	// location in tar backups, ../tablespaces/OID in pgverbs's plain
	// ones).
	Link string
	// Archive is the tar archive the member comes from, "" in a plain
	// backup.
	Archive string
}

// WalkFunc receives one entry and, for a File, its content, which it may
// read in part or not at all before it returns (the rest is skipped); r
// is nil for the other types. An error it returns ends Walk with that
// error, except ErrSkipArchive.
type WalkFunc func(e *Entry, r io.Reader) error

// ErrSkipArchive, returned by a WalkFunc, skips the rest of the current tar
// archive (in a plain backup, the rest of the walk).
var ErrSkipArchive = errors.New("skip the rest of this archive")

// Walk calls fn for every member of the backup's data directory, in order:
// for a plain backup a walk of the directory in lexical order (the parent
// before its members), where pg_tblspc/OID, a symbolic link, is yielded as
// such and then followed, its members yielded below pg_tblspc/OID, while
// the tablespaces/ directory it points into is left out;
// .pgverbs-backup-in-progress and backup_manifest are not members. For a
// tar backup the archives in the order of Archives, each decompressed by
// its suffix while it is read: base.tar's members as they are (with
// pg_tblspc/OID a symbolic link to the tablespace's original location),
// OID.tar's members as pg_tblspc/OID/..., pg_wal.tar's as pg_wal/....
// Other entry types of an archive (devices, hard links) are passed over.
//
// An archive that cannot be read (a missing object, corrupt compression,
// a truncated tar) ends Walk with an ArchiveError, unless onArchiveError
// is not nil: then it is called with the error and Walk goes on with the
// next archive.
func (s *Stored) Walk(ctx context.Context, fn WalkFunc, onArchiveError func(*ArchiveError)) error {
	if s.Format == Plain {
		err := s.walkPlain(ctx, fn)
		if err == ErrSkipArchive {
			return nil
		}
		return err
	}
	for _, a := range s.Archives {
		err := s.WalkArchive(ctx, a, fn)
		var ae *ArchiveError
		if errors.As(err, &ae) && onArchiveError != nil {
			onArchiveError(ae)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// ArchiveError is a tar archive of a backup that could not be read.
type ArchiveError struct {
	// Archive is the archive's name.
	Archive string
	// Err is what went wrong.
	Err error
}

func (e *ArchiveError) Error() string { return fmt.Sprintf("archive %s: %v", e.Archive, e.Err) }

func (e *ArchiveError) Unwrap() error { return e.Err }

// archivePrefix is where an archive's members lie in the data directory.
func archivePrefix(name string) string {
	stem, _, _ := splitArchive(name)
	switch {
	case stem == "base":
		return ""
	case stem == "pg_wal":
		return "pg_wal/"
	}
	return "pg_tblspc/" + stem + "/"
}

// OpenArchive streams the archive name of a tar backup, decompressed.
// Failures to open or read the stored file itself (not its contents) are
// a *SourceError.
func (s *Stored) OpenArchive(ctx context.Context, name string) (io.ReadCloser, error) {
	var raw io.ReadCloser
	if s.store != nil {
		r, _, err := s.store.Open(ctx, storage.Join(s.prefix, name))
		if err != nil {
			return nil, &SourceError{Err: err}
		}
		raw = r
	} else {
		f, err := os.Open(filepath.Join(s.dir, name))
		if err != nil {
			return nil, &SourceError{Err: fileError("open", name, err)}
		}
		raw = f
	}
	_, alg, _ := splitArchive(name)
	return decompress(&sourceReader{ReadCloser: raw, ctx: ctx, count: s.count}, alg)
}

// SourceError is a failure to read a stored file (an object that went
// away, a local read error, an interrupt), as opposed to what the file
// holds being damaged: backup-get exits 3 for the one, 1 for the other.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return e.Err.Error() }

func (e *SourceError) Unwrap() error { return e.Err }

// sourceReader reads a stored file, counting what it reads for progress
// reports, stopping at ctx's end between reads (a large member is read
// in many), and marking its errors as the source's.
type sourceReader struct {
	io.ReadCloser
	ctx   context.Context
	count func(int64)
}

func (r *sourceReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, &SourceError{Err: canceledError(r.ctx)}
	}
	n, err := r.ReadCloser.Read(p)
	if r.count != nil && n > 0 {
		r.count(int64(n))
	}
	if err != nil && err != io.EOF {
		err = &SourceError{Err: err}
	}
	return n, err
}

// newZstdReader decodes a zstd stream. It is klauspost's decoder, not
// libzstd's streaming reader, which ends a truncated stream with io.EOF
// as if it were whole: this one reports a frame that does not end as
// io.ErrUnexpectedEOF.
func newZstdReader(r io.Reader) (io.ReadCloser, error) {
	d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
	if err != nil {
		return nil, err
	}
	return d.IOReadCloser(), nil
}

// decompress wraps raw in the decompressor of alg; Close closes both.
func decompress(raw io.ReadCloser, alg Compression) (io.ReadCloser, error) {
	switch alg {
	case Gzip:
		zr, err := gzip.NewReader(raw)
		if err != nil {
			raw.Close()
			return nil, err
		}
		return &stacked{Reader: zr, closers: []io.Closer{zr, raw}}, nil
	case LZ4:
		return &stacked{Reader: lz4.NewReader(raw), closers: []io.Closer{raw}}, nil
	case Zstd:
		zr, err := newZstdReader(raw)
		if err != nil {
			raw.Close()
			return nil, err
		}
		return &stacked{Reader: zr, closers: []io.Closer{zr, raw}}, nil
	}
	return raw, nil
}

// stacked is a decompressor over a file or object.
type stacked struct {
	io.Reader
	closers []io.Closer
}

func (s *stacked) Close() error {
	var err error
	for _, c := range s.closers {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// WalkArchive calls fn for the members of one archive of a tar backup,
// named with their data-directory paths as Walk names them. A failure to
// read the archive is an *ArchiveError: among them an archive without the
// two zero blocks that end a tar file (tar.Reader takes a stream cut at a
// member's end for a whole one) and compressed data that does not end
// well after them, for the archive is read to its end; fn's errors are
// returned as they are, ErrSkipArchive ending the walk without one (and
// without those checks).
func (s *Stored) WalkArchive(ctx context.Context, name string, fn WalkFunc) error {
	rc, err := s.OpenArchive(ctx, name)
	if err != nil {
		return &ArchiveError{Archive: name, Err: err}
	}
	defer rc.Close()
	prefix := archivePrefix(name)
	tail := &tailReader{r: rc}
	tr := tar.NewReader(tail)
	for {
		if err := ctx.Err(); err != nil {
			return canceledError(ctx)
		}
		h, err := tr.Next()
		if err == io.EOF {
			if !tail.ended() {
				return &ArchiveError{Archive: name, Err: ErrTarCutShort}
			}
			// A compressed stream is only checked whole: its last
			// block, its frame checksum.
			if _, err := io.Copy(io.Discard, rc); err != nil {
				return &ArchiveError{Archive: name, Err: err}
			}
			return nil
		}
		if err != nil {
			return &ArchiveError{Archive: name, Err: err}
		}
		p := strings.Trim(strings.TrimPrefix(path.Clean("/"+h.Name), "/"), "/")
		if p == "" {
			continue // the archive's root, "./"
		}
		e := &Entry{Path: prefix + p, Mode: fs.FileMode(h.Mode).Perm(), ModTime: h.ModTime, Archive: name}
		var r io.Reader
		switch h.Typeflag {
		case tar.TypeReg:
			e.Type, e.Size = File, h.Size
			r = &archiveReader{r: tr, name: name}
		case tar.TypeDir:
			e.Type = Dir
		case tar.TypeSymlink:
			e.Type, e.Link = Symlink, h.Linkname
		default:
			continue
		}
		if err := fn(e, r); err != nil {
			if err == ErrSkipArchive {
				return nil
			}
			return err
		}
	}
}

// ErrTarCutShort is the error of an *ArchiveError for a tar archive that
// stops at a member's end without the blocks that end a tar file.
var ErrTarCutShort = errors.New("the archive is cut short: it lacks the blocks that end a tar file")

// tarEnd is the two zero blocks that end a tar archive.
const tarEnd = 2 * 512

// tailReader remembers the last tarEnd bytes read, for ended.
type tailReader struct {
	r    io.Reader
	n    int64
	tail [tarEnd]byte
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if n >= tarEnd {
		copy(t.tail[:], p[n-tarEnd:n])
	} else {
		copy(t.tail[:], t.tail[n:])
		copy(t.tail[tarEnd-n:], p[:n])
	}
	return n, err
}

// ended reports whether the stream so far ends with the end blocks.
func (t *tailReader) ended() bool {
	if t.n < tarEnd {
		return false
	}
	for _, b := range t.tail {
		if b != 0 {
			return false
		}
	}
	return true
}

// archiveReader marks read errors of an archive's member as the
// archive's, so that callers tell them from their own.
type archiveReader struct {
	r    io.Reader
	name string
}

func (a *archiveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && err != io.EOF {
		err = &ArchiveError{Archive: a.name, Err: err}
	}
	return n, err
}

// walkPlain walks a plain backup's directory.
func (s *Stored) walkPlain(ctx context.Context, fn WalkFunc) error {
	followed := map[string]bool{} // the directories holding what pg_tblspc links lead to
	var walk func(abs, rel string) error
	walk = func(abs, rel string) error {
		entries, err := os.ReadDir(abs)
		if err != nil {
			return fileError("list", relOr(rel), err)
		}
		for _, de := range entries {
			if err := ctx.Err(); err != nil {
				return canceledError(ctx)
			}
			name := de.Name()
			childAbs, childRel := filepath.Join(abs, name), path.Join(rel, name)
			if rel == "" && (name == ManifestName || name == markerName) {
				continue
			}
			if rel == "" && name == "tablespaces" {
				if real, err := filepath.EvalSymlinks(childAbs); err == nil && followed[real] {
					continue
				}
			}
			fi, err := os.Lstat(childAbs)
			if err != nil {
				return fileError("stat", childRel, err)
			}
			e := &Entry{Path: childRel, Mode: fi.Mode().Perm(), ModTime: fi.ModTime()}
			switch {
			case fi.Mode().IsRegular():
				e.Type, e.Size = File, fi.Size()
				f, err := os.Open(childAbs)
				if err != nil {
					return fileError("open", childRel, err)
				}
				err = fn(e, &sourceReader{ReadCloser: f, ctx: ctx, count: s.count})
				f.Close()
				if err != nil {
					return err
				}
			case fi.IsDir():
				e.Type = Dir
				if err := fn(e, nil); err != nil {
					return err
				}
				if err := walk(childAbs, childRel); err != nil {
					return err
				}
			case fi.Mode()&fs.ModeSymlink != 0:
				e.Type = Symlink
				if e.Link, err = os.Readlink(childAbs); err != nil {
					return fileError("read the link", childRel, err)
				}
				if err := fn(e, nil); err != nil {
					return err
				}
				if rel != "pg_tblspc" {
					continue
				}
				target, err := filepath.EvalSymlinks(childAbs)
				if err != nil {
					return fileError("follow the link", childRel, err)
				}
				if ti, err := os.Stat(target); err != nil || !ti.IsDir() {
					continue
				}
				if s.links != "" && !strings.HasPrefix(target, s.links+string(filepath.Separator)) {
					continue
				}
				// The tablespaces/ directory of pgverbs's layout holds
				// what the links point to: walked once, through them.
				followed[filepath.Dir(target)] = true
				if err := walk(target, childRel); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(s.dir, "")
}

func relOr(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}
