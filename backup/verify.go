package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pgverbs/pgverbs/storage"
	"github.com/pgverbs/pgverbs/walarchive"
)

// Manifest is a parsed backup manifest (PostgreSQL-Backup-Manifest-Version
// 1, or 2 with System-Identifier, as PostgreSQL 17 writes).
type Manifest struct {
	Version  int
	SystemID uint64
	Files    []ManifestFile
	WAL      []WALRange
	// Checksum is the manifest's Manifest-Checksum, in hex.
	Checksum string
}

// ManifestFile is one file of a manifest.
type ManifestFile struct {
	// Path is the file's path in the data directory (Encoded-Path
	// decoded).
	Path string
	Size int64
	// Algorithm is the checksum's algorithm ("NONE" without one), Checksum
	// the checksum in hex.
	Algorithm, Checksum string
}

// WALRange is one entry of a manifest's WAL-Ranges: the WAL of Timeline
// from Start to End that a restore of the backup replays.
type WALRange struct {
	Timeline   uint32
	Start, End LSN
}

// ParseManifest parses a backup manifest and checks its Manifest-Checksum:
// the SHA-256 of everything up to the newline that precedes its line, as
// pg_verifybackup checks it. A manifest that parses but whose checksum
// does not match is returned with ErrManifestChecksum.
func ParseManifest(data []byte) (*Manifest, error) {
	var raw struct {
		Version  *int    `json:"PostgreSQL-Backup-Manifest-Version"`
		SystemID *uint64 `json:"System-Identifier"`
		Files    []struct {
			Path        *string `json:"Path"`
			EncodedPath *string `json:"Encoded-Path"`
			Size        *int64  `json:"Size"`
			Algorithm   string  `json:"Checksum-Algorithm"`
			Checksum    string  `json:"Checksum"`
		} `json:"Files"`
		WAL []struct {
			Timeline *uint32 `json:"Timeline"`
			Start    string  `json:"Start-LSN"`
			End      string  `json:"End-LSN"`
		} `json:"WAL-Ranges"`
		Checksum *string `json:"Manifest-Checksum"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("the manifest is not valid JSON: %v", err)
	}
	if raw.Version == nil || (*raw.Version != 1 && *raw.Version != 2) {
		return nil, errors.New("the manifest has no PostgreSQL-Backup-Manifest-Version 1 or 2")
	}
	if raw.Checksum == nil {
		return nil, errors.New("the manifest has no Manifest-Checksum")
	}
	m := &Manifest{Version: *raw.Version, Checksum: *raw.Checksum}
	if raw.SystemID != nil {
		m.SystemID = *raw.SystemID
	}
	for i, f := range raw.Files {
		var mf ManifestFile
		switch {
		case f.Path != nil && f.EncodedPath == nil:
			mf.Path = *f.Path
		case f.EncodedPath != nil && f.Path == nil:
			b, err := hex.DecodeString(*f.EncodedPath)
			if err != nil {
				return nil, fmt.Errorf("file %d of the manifest: invalid Encoded-Path", i+1)
			}
			mf.Path = string(b)
		default:
			return nil, fmt.Errorf("file %d of the manifest: needs exactly one of Path and Encoded-Path", i+1)
		}
		if f.Size == nil || *f.Size < 0 {
			return nil, fmt.Errorf("file %s of the manifest: missing or invalid Size", quote(mf.Path))
		}
		mf.Size = *f.Size
		mf.Algorithm = strings.ToUpper(f.Algorithm)
		if mf.Algorithm == "" {
			mf.Algorithm = "NONE"
		}
		if mf.Algorithm != "NONE" && newHash(mf.Algorithm) == nil {
			return nil, fmt.Errorf("file %s of the manifest: unknown Checksum-Algorithm %s", quote(mf.Path), quote(f.Algorithm))
		}
		mf.Checksum = strings.ToLower(f.Checksum)
		m.Files = append(m.Files, mf)
	}
	for i, w := range raw.WAL {
		start, err1 := parseLSN(w.Start)
		end, err2 := parseLSN(w.End)
		if w.Timeline == nil || err1 != nil || err2 != nil || end < start {
			return nil, fmt.Errorf("WAL range %d of the manifest is invalid", i+1)
		}
		m.WAL = append(m.WAL, WALRange{Timeline: *w.Timeline, Start: start, End: end})
	}
	// The checksum covers the bytes up to and including the newline that
	// ends the line before Manifest-Checksum's: the penultimate newline.
	end := bytes.LastIndexByte(bytes.TrimRight(data, "\n"), '\n')
	if bytes.HasSuffix(data, []byte("\n")) {
		end = bytes.LastIndexByte(data[:len(data)-1], '\n')
	}
	if end < 0 {
		return m, ErrManifestChecksum
	}
	sum := sha256.Sum256(data[:end+1])
	if hex.EncodeToString(sum[:]) != strings.ToLower(m.Checksum) {
		return m, ErrManifestChecksum
	}
	return m, nil
}

// ErrManifestChecksum is ParseManifest's error for a manifest whose
// Manifest-Checksum does not match its content.
var ErrManifestChecksum = errors.New("manifest checksum mismatch")

// Problem is one thing VerifyBackup found wrong.
type Problem struct {
	// Kind is what is wrong: "manifest", "missing", "extra", "size",
	// "checksum", "archive" (an archive or object that cannot be read) or
	// "wal".
	Kind string
	// Path is the file, object or WAL segment concerned ("" when none).
	Path string
	// Message says what was found, as pg_verifybackup would.
	Message string
}

// VerifyResult is what VerifyBackup checked and found.
type VerifyResult struct {
	// Problems are in the order found: the manifest's, then the files'
	// in walk order, then the missing files, then the WAL's.
	Problems []Problem
	// Files and Bytes count the data-directory files whose size and
	// checksum were checked against the manifest.
	Files int
	Bytes int64
	// WAL is the manifest's WAL ranges; WALChecked reports whether their
	// records were read, WALRecords how many.
	WAL        []WALRange
	WALChecked bool
	WALRecords int
}

// OK reports whether nothing was found wrong.
func (r *VerifyResult) OK() bool { return len(r.Problems) == 0 }

// SegmentSource gives WAL segments by file name
// ("000000010000000000000002"). A missing segment is an error that
// errors.Is(err, fs.ErrNotExist).
type SegmentSource interface {
	OpenSegment(ctx context.Context, name string, segSize uint64) (io.ReadCloser, error)
}

// DirSegments is a WAL archive directory (or a data directory's pg_wal) as
// a SegmentSource: NAME, else NAME.zst decompressed, as restore_command is
// served.
func DirSegments(dir string) SegmentSource { return dirSegments(dir) }

type dirSegments string

func (d dirSegments) OpenSegment(_ context.Context, name string, segSize uint64) (io.ReadCloser, error) {
	root, err := os.OpenRoot(string(d))
	if err != nil {
		return nil, err
	}
	defer root.Close()
	rc, _, err := walarchive.OpenFile(root, name, segSize)
	return rc, err
}

// StoreSegments is a WAL archive in object storage (below prefix of store)
// as a SegmentSource: prefix/NAME, else prefix/NAME.zst decompressed.
func StoreSegments(store *storage.Store, prefix string) SegmentSource {
	return storeSegments{store, strings.Trim(prefix, "/")}
}

type storeSegments struct {
	store  *storage.Store
	prefix string
}

func (s storeSegments) OpenSegment(ctx context.Context, name string, _ uint64) (io.ReadCloser, error) {
	rc, _, err := s.store.Open(ctx, storage.Join(s.prefix, name))
	if errors.Is(err, fs.ErrNotExist) {
		var zerr error
		rc, _, zerr = s.store.Open(ctx, storage.Join(s.prefix, name+".zst"))
		if zerr != nil {
			return nil, err
		}
		return decompress(rc, Zstd)
	}
	return rc, err
}

// VerifyOptions are VerifyBackup's.
type VerifyOptions struct {
	// WAL checks the WAL ranges' records (pg_verifybackup's default).
	WAL bool
	// Archive gives the segments the backup does not hold itself; nil
	// for none.
	Archive SegmentSource
	// SegSize is the WAL segment size; 0 finds it out from the backup's
	// own segments, else from the first segment's page header.
	SegSize uint64
}

// ignored reports whether pg_verifybackup passes over path: neither
// checked against the manifest nor reported as extra or missing.
func ignored(p string) bool {
	switch p {
	case ManifestName, "postgresql.auto.conf", "standby.signal", "recovery.signal", "pg_wal":
		return true
	}
	return strings.HasPrefix(p, "pg_wal/")
}

// manifestCheck compares the files of a backup, as a walk meets them,
// with its manifest: the one check VERIFY BACKUP (VerifyBackup) and
// backup-get (Restore) make, each reporting in its own words.
type manifestCheck struct {
	m    *Manifest
	want map[string]*ManifestFile
	seen map[string]bool
}

// What manifestCheck finds of a file.
const (
	checkOK        = iota
	checkIgnored   // a path pg_verifybackup passes over (ignored)
	checkDuplicate // a path met before in the walk
	checkExtra     // a path the manifest does not list
	checkSize      // a size other than the manifest's
	checkSum       // a checksum other than the manifest's
)

// newManifestCheck checks against m; dups are the paths m lists more
// than once (the last entry is the one checked).
func newManifestCheck(m *Manifest) (c *manifestCheck, dups []string) {
	c = &manifestCheck{m: m, want: make(map[string]*ManifestFile, len(m.Files)), seen: make(map[string]bool, len(m.Files))}
	for i := range m.Files {
		f := &m.Files[i]
		if _, dup := c.want[f.Path]; dup {
			dups = append(dups, f.Path)
		}
		c.want[f.Path] = f
	}
	return c, dups
}

// entry classifies the file p of size bytes before its content is read,
// and marks it seen: checkOK, checkIgnored, checkDuplicate, checkExtra or
// checkSize; f is its manifest entry (for checkOK and checkSize).
func (c *manifestCheck) entry(p string, size int64) (f *ManifestFile, kind int) {
	if ignored(p) {
		return nil, checkIgnored
	}
	if c.seen[p] {
		return nil, checkDuplicate
	}
	c.seen[p] = true
	f = c.want[p]
	switch {
	case f == nil:
		return nil, checkExtra
	case size != f.Size:
		return f, checkSize
	}
	return f, checkOK
}

// missing lists the files of the manifest no entry call met, in the
// manifest's order.
func (c *manifestCheck) missing() []string {
	var out []string
	for _, f := range c.m.Files {
		if !c.seen[f.Path] && !ignored(f.Path) {
			out = append(out, f.Path)
		}
	}
	return out
}

// fileSum checksums a file's content as it is written through it.
type fileSum struct {
	f *ManifestFile
	h hash.Hash // nil for NONE
	n int64
}

func newFileSum(f *ManifestFile) *fileSum { return &fileSum{f: f, h: newHash(f.Algorithm)} }

func (s *fileSum) Write(p []byte) (int, error) {
	s.n += int64(len(p))
	if s.h != nil {
		s.h.Write(p)
	}
	return len(p), nil
}

// verdict compares what was written with the manifest: checkOK,
// checkSize or checkSum (got is then the checksum found).
func (s *fileSum) verdict() (kind int, got string) {
	if s.n != s.f.Size {
		return checkSize, ""
	}
	if s.h != nil {
		if got = checksumHex(s.f.Algorithm, s.h); got != s.f.Checksum {
			return checkSum, got
		}
	}
	return checkOK, ""
}

// VerifyBackup checks the backup b as pg_verifybackup does, streaming
// every file from where it is stored: the manifest's checksum, every
// file's size and checksum, no file missing and none extra (ignoring
// backup_manifest, pg_wal/, postgresql.auto.conf, standby.signal and
// recovery.signal, as pg_verifybackup does), and with o.WAL every WAL
// record of the manifest's WAL ranges present and well-formed (see
// verifyWAL). In object storage it also checks that every object the
// summary lists is there with its size, and that no other object is.
// Problems are in the result; the error is for a backup that could not be
// read at all, or a canceled ctx.
func VerifyBackup(ctx context.Context, b *Stored, o VerifyOptions) (*VerifyResult, error) {
	res := &VerifyResult{}
	add := func(kind, p, format string, args ...any) {
		res.Problems = append(res.Problems, Problem{Kind: kind, Path: p, Message: fmt.Sprintf(format, args...)})
	}
	if b.Summary != nil {
		checkObjects(b, add)
	}
	data, err := b.Manifest(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, canceledError(ctx)
		}
		if errors.Is(err, fs.ErrNotExist) {
			add("manifest", ManifestName, "the backup has no manifest")
			return res, nil
		}
		return nil, err
	}
	m, err := ParseManifest(data)
	if err == ErrManifestChecksum {
		add("manifest", ManifestName, "manifest checksum mismatch")
	} else if err != nil {
		add("manifest", ManifestName, "%v", err)
		return res, nil
	}
	res.WAL = m.WAL
	check, dups := newManifestCheck(m)
	for _, p := range dups {
		add("manifest", p, "duplicate path name in backup manifest: %s", quote(p))
	}
	wal := map[string]walEntry{} // segments found in the backup's pg_wal
	buf := make([]byte, 256<<10)
	walkErr := b.Walk(ctx, func(e *Entry, r io.Reader) error {
		if e.Type != File {
			return nil
		}
		if rest, ok := strings.CutPrefix(e.Path, "pg_wal/"); ok && !strings.Contains(rest, "/") {
			wal[rest] = walEntry{archive: e.Archive, size: e.Size}
		}
		f, kind := check.entry(e.Path, e.Size)
		switch kind {
		case checkIgnored:
			return nil
		case checkDuplicate:
			add("extra", e.Path, "%s appears more than once in the backup", quote(e.Path))
			return nil
		case checkExtra:
			add("extra", e.Path, "%s is present in the backup but not in the manifest", quote(e.Path))
			return nil
		case checkSize:
			add("size", e.Path, "%s has size %d in the backup but size %d in the manifest", quote(e.Path), e.Size, f.Size)
			return nil
		}
		res.Files++
		res.Bytes += e.Size
		if f.Algorithm == "NONE" {
			return nil
		}
		sum := newFileSum(f)
		_, err := io.CopyBuffer(sum, r, buf)
		if err != nil {
			var ae *ArchiveError
			if errors.As(err, &ae) {
				return err
			}
			add("archive", e.Path, "%s could not be read: %v", quote(e.Path), err)
			return nil
		}
		switch kind, _ := sum.verdict(); kind {
		case checkSize:
			add("size", e.Path, "%s has size %d in the backup but size %d in the manifest", quote(e.Path), sum.n, f.Size)
		case checkSum:
			add("checksum", e.Path, "checksum mismatch for file %s", quote(e.Path))
		}
		return nil
	}, func(ae *ArchiveError) {
		add("archive", ae.Archive, "archive %s cannot be read: %v", quote(ae.Archive), ae.Err)
	})
	if walkErr != nil {
		if ctx.Err() != nil {
			return nil, canceledError(ctx)
		}
		var ae *ArchiveError
		if !errors.As(walkErr, &ae) {
			return nil, walkErr
		}
		add("archive", ae.Archive, "archive %s cannot be read: %v", quote(ae.Archive), ae.Err)
	}
	for _, p := range check.missing() {
		add("missing", p, "%s is present in the manifest but not in the backup", quote(p))
	}
	if !o.WAL {
		return res, nil
	}
	res.WALChecked = true
	src := &backupSegments{b: b, wal: wal, archive: o.Archive}
	segSize := o.SegSize
	if segSize == 0 {
		for name, w := range wal {
			if len(name) == 24 && walarchive.ValidSegmentSize(uint64(w.size)) {
				segSize = uint64(w.size)
				break
			}
		}
	}
	for _, r := range m.WAL {
		n, p := verifyWAL(ctx, src, r, segSize)
		res.WALRecords += n
		if ctx.Err() != nil {
			return nil, canceledError(ctx)
		}
		if p != nil {
			res.Problems = append(res.Problems, *p)
		}
	}
	return res, nil
}

// VerifyRecordName is the object VERIFY BACKUP writes into a backup's
// prefix with its last result (commands.VerifyResultName, which SHOW
// BACKUPS reads): not part of the backup, so never an extra object.
const VerifyRecordName = "pgverbs_verify.json"

// checkObjects compares an object-storage backup's objects with its
// summary: each listed one there with its size, no other (but the
// summary, the in-progress marker CleanStorage removes, and the record of
// the last verification).
func checkObjects(b *Stored, add func(kind, p, format string, args ...any)) {
	have := map[string]int64{}
	for _, o := range b.Objects {
		have[o.Name] = o.Size
	}
	listed := map[string]bool{SummaryName: true, markerName: true, VerifyRecordName: true}
	for _, o := range b.Summary.Objects {
		listed[o.Name] = true
		size, ok := have[o.Name]
		switch {
		case !ok:
			add("missing", o.Name, "object %s listed in %s is missing", quote(o.Name), SummaryName)
		case size != o.Size:
			add("size", o.Name, "object %s has %d bytes, %s lists %d", quote(o.Name), size, SummaryName, o.Size)
		}
	}
	for _, o := range b.Objects {
		if !listed[o.Name] {
			add("extra", o.Name, "object %s is not part of the backup (%s does not list it)", quote(o.Name), SummaryName)
		}
	}
}

// walEntry is a segment file of the backup's own pg_wal.
type walEntry struct {
	archive string // "" in a plain backup
	size    int64
}

// backupSegments gives segments from the backup's own pg_wal when it has
// them, else from the archive. A segment in a tar archive is found by
// reading the archive onward from where the last one was found (segments
// are asked for in order), from its start again when needed.
type backupSegments struct {
	b       *Stored
	wal     map[string]walEntry
	archive SegmentSource

	cur     string // the archive open for segments
	entries chan tarMember
	stop    chan struct{}
}

// tarMember is one segment member handed from the archive-reading
// goroutine; done is closed by the consumer when it finished reading r.
type tarMember struct {
	name string
	r    io.Reader
	done chan struct{}
}

// where says where a segment was read from, for messages.
func (s *backupSegments) where(name string) string {
	w, ok := s.wal[name]
	switch {
	case !ok:
		return "the WAL archive"
	case w.archive == "":
		return "the backup's pg_wal"
	}
	return w.archive
}

func (s *backupSegments) OpenSegment(ctx context.Context, name string, segSize uint64) (io.ReadCloser, error) {
	w, ok := s.wal[name]
	if !ok {
		if s.archive == nil {
			return nil, fs.ErrNotExist
		}
		return s.archive.OpenSegment(ctx, name, segSize)
	}
	if w.archive == "" {
		return DirSegments(filepath.Join(s.b.dir, "pg_wal")).OpenSegment(ctx, name, segSize)
	}
	fresh := false
	if s.cur != w.archive {
		s.close()
		s.openArchive(ctx, w.archive)
		fresh = true
	}
	for attempt := 0; attempt < 2; attempt++ {
		if attempt == 1 {
			if fresh {
				break
			}
			// Asked for a segment before the last one: read again.
			s.close()
			s.openArchive(ctx, w.archive)
		}
		for m := range s.entries {
			if m.name == "pg_wal/"+name {
				return &memberReader{m: m}, nil
			}
			close(m.done)
		}
	}
	return nil, fs.ErrNotExist
}

// openArchive starts reading archive's pg_wal members in a goroutine of
// its own, which hands each over on s.entries.
func (s *backupSegments) openArchive(ctx context.Context, archive string) {
	s.cur = archive
	entries, stop := make(chan tarMember), make(chan struct{})
	s.entries, s.stop = entries, stop
	go func() {
		defer close(entries)
		_ = s.b.WalkArchive(ctx, archive, func(e *Entry, r io.Reader) error {
			if e.Type != File || !strings.HasPrefix(e.Path, "pg_wal/") {
				return nil
			}
			m := tarMember{name: e.Path, r: r, done: make(chan struct{})}
			select {
			case entries <- m:
			case <-stop:
				return ErrSkipArchive
			}
			select {
			case <-m.done:
				return nil
			case <-stop:
				return ErrSkipArchive
			}
		})
	}()
}

func (s *backupSegments) close() {
	if s.stop != nil {
		close(s.stop)
		for range s.entries {
		}
		s.stop, s.entries, s.cur = nil, nil, ""
	}
}

// memberReader is a segment inside an archive; Close lets the archive's
// goroutine go on.
type memberReader struct {
	m      tarMember
	closed bool
}

func (r *memberReader) Read(p []byte) (int, error) { return r.m.r.Read(p) }

func (r *memberReader) Close() error {
	if !r.closed {
		r.closed = true
		close(r.m.done)
	}
	return nil
}
