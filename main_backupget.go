package main

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/pgverbs/pgverbs/backup"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/storage"
)

// backupGetCommand is the subcommand main dispatches to runBackupGet,
// before the proxy's own configuration is read.
const backupGetCommand = "backup-get"

// Exit statuses of pgverbs backup-get (README: "Restoring a backup").
const (
	bgOK          = 0   // DATADIR holds the verified backup
	bgVerify      = 1   // a file or archive does not match the manifest or the summary
	bgUsage       = 2   // bad arguments, a DATADIR that is not empty, a bad configuration
	bgSource      = 3   // the source cannot be read or is not a complete backup
	bgWrite       = 4   // DATADIR cannot be written (permissions, a full disk)
	bgInterrupted = 130 // SIGINT or SIGTERM
)

const backupGetUsage = `Usage: pgverbs backup-get [--config FILE] [--restore-command URL] [--token-file FILE] [--quiet] SOURCE DATADIR

Downloads, decompresses and unpacks the base backup SOURCE into DATADIR,
which must not exist or be empty, verifying every file against the
backup's manifest as it goes (size and checksum; no file missing, none
extra). Tablespaces become directories in DATADIR/pg_tblspc/OID, the
backup's WAL goes to DATADIR/pg_wal and backup_manifest into DATADIR, so
that pg_verifybackup DATADIR checks the result. On any failure, an
interrupt included, what was written to DATADIR is removed.

SOURCE is a backup directory BASE BACKUP wrote (plain or tar, any
compression) or 'storage://target/path' (a target of the storage map of
the configuration file, which --config or $PGVERBS_CONFIG names).

  --config FILE           pgverbs's configuration file, for storage:// targets
  --restore-command URL   also write restore_command = 'pgverbs wal-get --url URL ...'
                          into postgresql.auto.conf and create recovery.signal
  --token-file FILE       the bearer token file restore_command passes to wal-get
  --quiet                 no progress on stderr

Exit status: 0 restored and verified; 1 verification failed; 2 usage or
configuration; 3 SOURCE unreadable or not a complete backup; 4 DATADIR
cannot be written; 130 interrupted.
`

// bgError is a failure with its exit status.
type bgError struct {
	code int
	err  error
}

func (e *bgError) Error() string { return e.err.Error() }
func (e *bgError) Unwrap() error { return e.err }

func bgFail(code int, format string, args ...any) error {
	return &bgError{code, fmt.Errorf(format, args...)}
}

// exitCode is err's exit status.
func exitCode(err error) int {
	var be *bgError
	if errors.As(err, &be) {
		return be.code
	}
	return bgWrite
}

// backupGetOptions are backup-get's arguments.
type backupGetOptions struct {
	source, datadir string
	config          string
	configGiven     bool
	restoreURL      string
	tokenFile       string
	self            string // the pgverbs binary, for restore_command
	getenv          func(string) string
	progress        *bgProgress
}

// runBackupGet is pgverbs backup-get.
func runBackupGet(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet(backupGetCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := backupGetOptions{getenv: getenv}
	fs.StringVar(&o.config, "config", "", "")
	fs.StringVar(&o.restoreURL, "restore-command", "", "")
	fs.StringVar(&o.tokenFile, "token-file", "", "")
	quiet := fs.Bool("quiet", false, "")
	fs.Usage = func() { fmt.Fprint(stderr, backupGetUsage) }
	// Flags may come after the arguments too, as in most commands.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return bgOK
			}
			return bgUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	fs.Visit(func(f *flag.Flag) { o.configGiven = o.configGiven || f.Name == "config" })
	if len(pos) != 2 {
		fs.Usage()
		return bgUsage
	}
	o.source, o.datadir = pos[0], pos[1]
	if o.tokenFile != "" && o.restoreURL == "" {
		fmt.Fprintln(stderr, "pgverbs backup-get: --token-file is for --restore-command")
		return bgUsage
	}
	if o.restoreURL != "" && !strings.HasPrefix(o.restoreURL, "http://") && !strings.HasPrefix(o.restoreURL, "https://") {
		fmt.Fprintf(stderr, "pgverbs backup-get: --restore-command %q is not an http:// or https:// URL of pgverbs's HTTP listener\n", o.restoreURL)
		return bgUsage
	}
	o.self, _ = os.Executable()
	if o.self == "" {
		o.self = "pgverbs"
	}
	o.progress = newBGProgress(stderr, *quiet)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := backupGet(ctx, o)
	o.progress.finish(err == nil)
	if err != nil {
		code := exitCode(err)
		if ctx.Err() != nil {
			code, err = bgInterrupted, errors.New("interrupted; what was written to "+o.datadir+" was removed")
		}
		fmt.Fprintf(stderr, "pgverbs backup-get: %v\n", err)
		return code
	}
	return bgOK
}

// backupGet restores o.source into o.datadir, removing what it wrote on
// failure.
func backupGet(ctx context.Context, o backupGetOptions) (err error) {
	src, err := openBGSource(ctx, o)
	if err != nil {
		return err
	}
	created, err := prepareDatadir(o.datadir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			removeDatadir(o.datadir, created)
		}
	}()
	r := &restorer{ctx: ctx, src: src, dir: o.datadir, progress: o.progress}
	if err := r.run(); err != nil {
		return err
	}
	if o.restoreURL != "" {
		if err := writeRestoreCommand(o); err != nil {
			return err
		}
	}
	if err := syncTree(o.datadir); err != nil {
		return &bgError{bgWrite, fmt.Errorf("sync %s: %w", o.datadir, err)}
	}
	return nil
}

// prepareDatadir creates dir (0700) or checks that it is an empty
// directory; created reports that backup-get made it.
func prepareDatadir(dir string) (created bool, err error) {
	err = os.Mkdir(dir, 0o700)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, &bgError{bgWrite, fmt.Errorf("create DATADIR: %w", err)}
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, &bgError{bgWrite, fmt.Errorf("DATADIR: %w", err)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		return false, bgFail(bgUsage, "DATADIR %s exists and is not a directory", dir)
	}
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return false, bgFail(bgUsage, "DATADIR %s exists and is not empty", dir)
	}
	// A data directory must be the server user's alone.
	if err := os.Chmod(dir, 0o700); err != nil {
		return false, &bgError{bgWrite, fmt.Errorf("DATADIR: %w", err)}
	}
	return false, nil
}

// removeDatadir removes what backup-get wrote: dir itself when it made
// it, else dir's contents.
func removeDatadir(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// bgFile is one stored file of a backup: an archive or backup_manifest.
type bgFile struct {
	name string
	size int64
}

// restoreSource is a backup to restore: its stored files, or for a plain
// backup its directory.
type restoreSource struct {
	// files are the archives and backup_manifest of a tar backup.
	files []bgFile
	open  func(ctx context.Context, name string) (io.ReadCloser, error)
	// plainDir is a plain backup's directory ("" for tar).
	plainDir string
}

// archiveFile matches the stored archives of a tar backup.
var archiveFile = regexp.MustCompile(`^(base|pg_wal|[1-9][0-9]{0,9})\.tar(\.gz|\.lz4|\.zst)?$`)

// openBGSource finds the backup's files and checks it is complete.
func openBGSource(ctx context.Context, o backupGetOptions) (*restoreSource, error) {
	if storage.IsURL(o.source) {
		return openObjectSource(ctx, o)
	}
	dir := o.source
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, bgFail(bgSource, "SOURCE: %v", err)
	}
	if !fi.IsDir() {
		return nil, bgFail(bgSource, "SOURCE %s is not a directory (a backup is the directory BASE BACKUP wrote)", dir)
	}
	if _, err := os.Lstat(filepath.Join(dir, ".pgverbs-backup-in-progress")); err == nil {
		return nil, bgFail(bgSource, "SOURCE %s is a backup still being written (or one that failed): it is not complete", dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "backup_manifest")); err != nil {
		return nil, bgFail(bgSource, "SOURCE %s has no backup_manifest: backup-get verifies every file against it (%v)", dir, err)
	}
	src := &restoreSource{open: func(_ context.Context, name string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(dir, name))
	}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, bgFail(bgSource, "SOURCE: %v", err)
	}
	hasBase := false
	for _, e := range ents {
		if !e.Type().IsRegular() || !(archiveFile.MatchString(e.Name()) || e.Name() == "backup_manifest") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, bgFail(bgSource, "SOURCE: %v", err)
		}
		hasBase = hasBase || strings.HasPrefix(e.Name(), "base.tar")
		src.files = append(src.files, bgFile{e.Name(), info.Size()})
	}
	if !hasBase {
		if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
			return nil, bgFail(bgSource, "SOURCE %s holds neither base.tar nor a data directory", dir)
		}
		src.files, src.plainDir = nil, dir
	}
	return src, nil
}

// openObjectSource reads the summary of a backup in object storage and
// checks that every object it lists is there at its size.
func openObjectSource(ctx context.Context, o backupGetOptions) (*restoreSource, error) {
	var args []string
	if o.configGiven {
		args = []string{"--config", o.config}
	}
	cfg, err := conf.Load(args, o.getenv, io.Discard)
	if err != nil {
		return nil, bgFail(bgUsage, "configuration: %v", err)
	}
	stores, err := newStores(cfg)
	if err != nil {
		return nil, bgFail(bgUsage, "configuration: %v", err)
	}
	store, dir, err := stores.Resolve(o.source)
	if err != nil {
		return nil, bgFail(bgUsage, "%s", pgMessage(err))
	}
	data, err := store.ReadAll(ctx, storage.Join(dir, backup.SummaryName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, bgFail(bgSource, "%s is not a complete backup: it has no %s", o.source, backup.SummaryName)
	}
	if err != nil {
		return nil, bgFail(bgSource, "%s", pgMessage(err))
	}
	sum, err := backup.ParseSummary(data)
	if err != nil {
		return nil, bgFail(bgSource, "%s: %s: %v", o.source, backup.SummaryName, err)
	}
	objs, err := store.List(ctx, dir)
	if err != nil {
		return nil, bgFail(bgSource, "%s", pgMessage(err))
	}
	sizes := map[string]int64{}
	for _, ob := range objs {
		sizes[ob.Name] = ob.Size
	}
	src := &restoreSource{open: func(ctx context.Context, name string) (io.ReadCloser, error) {
		r, _, err := store.Open(ctx, storage.Join(dir, name))
		return r, err
	}}
	hasManifest := false
	for _, ob := range sum.Objects {
		if !archiveFile.MatchString(ob.Name) && ob.Name != "backup_manifest" {
			return nil, bgFail(bgVerify, "%s: %s lists an object backup-get does not know: %q", o.source, backup.SummaryName, ob.Name)
		}
		size, ok := sizes[storage.Join(dir, ob.Name)]
		if !ok {
			return nil, bgFail(bgSource, "%s is not complete: object %s is missing", o.source, ob.Name)
		}
		if size != ob.Size {
			return nil, bgFail(bgVerify, "%s: object %s is %d bytes, the backup wrote %d", o.source, ob.Name, size, ob.Size)
		}
		hasManifest = hasManifest || ob.Name == "backup_manifest"
		src.files = append(src.files, bgFile{ob.Name, ob.Size})
	}
	if !hasManifest {
		return nil, bgFail(bgSource, "%s has no backup_manifest: backup-get verifies every file against it", o.source)
	}
	return src, nil
}

// pgMessage is err's message with its DETAIL and HINT.
func pgMessage(err error) string {
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

// manifestEntry is one file of backup_manifest.
type manifestEntry struct {
	size      int64
	algorithm string
	checksum  string
	seen      bool
}

// bgManifest is the parsed backup_manifest.
type bgManifest struct {
	files map[string]*manifestEntry
}

// ignoredPath reports the files pg_verifybackup ignores by default: those
// a restore or a standby setup may change or add, and WAL.
func ignoredPath(p string) bool {
	switch p {
	case "backup_manifest", "postgresql.auto.conf", "recovery.signal", "standby.signal":
		return true
	}
	return p == "pg_wal" || strings.HasPrefix(p, "pg_wal/")
}

// parseManifest checks the manifest's own checksum (the SHA-256 of
// everything before its last line, as pg_verifybackup does) and reads its
// files.
func parseManifest(data []byte) (*bgManifest, error) {
	last := -1
	penultimate := -1
	for i, c := range data {
		if c == '\n' {
			penultimate, last = last, i
		}
	}
	if last != len(data)-1 || penultimate < 0 {
		return nil, errors.New("backup_manifest does not end in a newline-terminated checksum line")
	}
	var doc struct {
		Version  int    `json:"PostgreSQL-Backup-Manifest-Version"`
		Checksum string `json:"Manifest-Checksum"`
		Files    []struct {
			Path        string `json:"Path"`
			EncodedPath string `json:"Encoded-Path"`
			Size        int64  `json:"Size"`
			Algorithm   string `json:"Checksum-Algorithm"`
			Checksum    string `json:"Checksum"`
		} `json:"Files"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("backup_manifest: %v", err)
	}
	if doc.Version != 1 && doc.Version != 2 {
		return nil, fmt.Errorf("backup_manifest: unknown version %d", doc.Version)
	}
	sum := sha256.Sum256(data[:penultimate+1])
	if !strings.EqualFold(hex.EncodeToString(sum[:]), doc.Checksum) {
		return nil, errors.New("backup_manifest: its checksum does not match its contents")
	}
	m := &bgManifest{files: map[string]*manifestEntry{}}
	for _, f := range doc.Files {
		p := f.Path
		if f.EncodedPath != "" {
			b, err := hex.DecodeString(f.EncodedPath)
			if err != nil {
				return nil, fmt.Errorf("backup_manifest: bad Encoded-Path %q", f.EncodedPath)
			}
			p = string(b)
		}
		alg := strings.ToUpper(f.Algorithm)
		if alg != "" && alg != "NONE" && newChecksum(alg) == nil {
			return nil, fmt.Errorf("backup_manifest: unknown checksum algorithm %q", f.Algorithm)
		}
		m.files[p] = &manifestEntry{size: f.Size, algorithm: alg, checksum: strings.ToLower(f.Checksum)}
	}
	return m, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newChecksum is the manifest's algorithm alg, nil for NONE or unknown.
func newChecksum(alg string) hash.Hash {
	switch alg {
	case "CRC32C":
		return crc32.New(castagnoli)
	case "SHA224":
		return sha256.New224()
	case "SHA256":
		return sha256.New()
	case "SHA384":
		return sha512.New384()
	case "SHA512":
		return sha512.New()
	}
	return nil
}

// checksumHex renders a checksum as the manifest does: CRC32C as the
// bytes of the uint32 in little-endian order, the others as the digest.
func checksumHex(alg string, h hash.Hash) string {
	if alg == "CRC32C" {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], h.(hash.Hash32).Sum32())
		return hex.EncodeToString(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// fileCheck verifies one file as it passes.
type fileCheck struct {
	path string
	e    *manifestEntry // nil: not in the manifest (ignored or extra)
	h    hash.Hash
	n    int64
}

func (m *bgManifest) check(p string) *fileCheck {
	c := &fileCheck{path: p, e: m.files[p]}
	if c.e != nil {
		c.h = newChecksum(c.e.algorithm)
	}
	return c
}

func (c *fileCheck) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	if c.h != nil {
		c.h.Write(b)
	}
	return len(b), nil
}

// done reports a mismatch with the manifest and marks the file seen;
// extra lists a file the manifest lacks.
func (c *fileCheck) done(extra *[]string) error {
	if ignoredPath(c.path) {
		if c.e != nil {
			c.e.seen = true
		}
		return nil
	}
	if c.e == nil {
		*extra = append(*extra, c.path)
		return nil
	}
	if c.e.seen {
		return bgFail(bgVerify, "%s appears twice in the backup", c.path)
	}
	c.e.seen = true
	if c.n != c.e.size {
		return bgFail(bgVerify, "%s is %d bytes, the manifest says %d", c.path, c.n, c.e.size)
	}
	if c.h != nil {
		if got := checksumHex(c.e.algorithm, c.h); got != c.e.checksum {
			return bgFail(bgVerify, "checksum mismatch for %s: %s %s, the manifest says %s", c.path, c.e.algorithm, got, c.e.checksum)
		}
	}
	return nil
}

// restorer unpacks one backup.
type restorer struct {
	ctx      context.Context
	src      *restoreSource
	dir      string
	progress *bgProgress
	man      *bgManifest
	extra    []string
	// inPlace reports a tablespace restored as a directory.
	inPlace bool
}

func (r *restorer) run() error {
	if r.src.plainDir != "" {
		return r.copyPlain()
	}
	var total int64
	for _, f := range r.src.files {
		total += f.size
	}
	r.progress.start(total)
	data, err := r.readAll("backup_manifest")
	if err != nil {
		return err
	}
	if r.man, err = parseManifest(data); err != nil {
		return &bgError{bgVerify, err}
	}
	// base.tar first: it makes pg_tblspc and pg_wal; WAL last.
	order := func(name string) int {
		switch {
		case strings.HasPrefix(name, "base.tar"):
			return 0
		case strings.HasPrefix(name, "pg_wal.tar"):
			return 2
		}
		return 1
	}
	files := append([]bgFile(nil), r.src.files...)
	sort.SliceStable(files, func(i, j int) bool { return order(files[i].name) < order(files[j].name) })
	for _, f := range files {
		if f.name == "backup_manifest" {
			continue
		}
		if err := r.archive(f.name); err != nil {
			return err
		}
	}
	if err := r.man.complete(r.extra); err != nil {
		return err
	}
	if err := r.allowInPlace(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.dir, "backup_manifest"), data, 0o600); err != nil {
		return &bgError{bgWrite, err}
	}
	return nil
}

// complete fails unless every file of the manifest was seen and no other.
func (m *bgManifest) complete(extra []string) error {
	var missing []string
	for p, e := range m.files {
		if !e.seen && !ignoredPath(p) {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	var problems []string
	for _, p := range missing {
		problems = append(problems, p+" is in the manifest but not in the backup")
	}
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
	return bgFail(bgVerify, "the backup does not match its manifest:\n  %s", msg)
}

// sourceError marks a failure to read the source (not its contents).
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// srcReader reads a stored file, counting progress, stopping at an
// interrupt and marking its errors as the source's.
type srcReader struct {
	ctx  context.Context
	r    io.Reader
	prog *bgProgress
}

func (s *srcReader) Read(p []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, &sourceError{err}
	}
	n, err := s.r.Read(p)
	s.prog.add(int64(n))
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

func (r *restorer) openSrc(name string) (io.ReadCloser, io.Reader, error) {
	rc, err := r.src.open(r.ctx, name)
	if err != nil {
		if r.ctx.Err() != nil {
			return nil, nil, &bgError{bgInterrupted, r.ctx.Err()}
		}
		return nil, nil, bgFail(bgSource, "%s: %s", name, pgMessage(err))
	}
	return rc, &srcReader{ctx: r.ctx, r: rc, prog: r.progress}, nil
}

func (r *restorer) readAll(name string) ([]byte, error) {
	rc, sr, err := r.openSrc(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(sr)
	if err != nil {
		return nil, r.readError(name, err)
	}
	return data, nil
}

// readError classifies an error met while reading name's contents.
func (r *restorer) readError(name string, err error) error {
	var be *bgError
	switch {
	case errors.As(err, &be):
		return err
	case r.ctx.Err() != nil:
		return &bgError{bgInterrupted, r.ctx.Err()}
	}
	var se *sourceError
	if errors.As(err, &se) {
		return bgFail(bgSource, "reading %s: %s", name, pgMessage(se.err))
	}
	return bgFail(bgVerify, "%s is damaged: %v", name, err)
}

// decompress reads r decompressed as name's suffix says. zstd is
// klauspost's decoder, not libzstd's streaming reader, which ends a
// truncated stream with io.EOF as if it were whole.
func decompress(name string, r io.Reader) (io.ReadCloser, error) {
	switch path.Ext(name) {
	case ".gz":
		return gzip.NewReader(r)
	case ".lz4":
		return io.NopCloser(lz4.NewReader(r)), nil
	case ".zst":
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<30))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

// tarEnd is the two zero blocks that end a tar archive.
const tarEnd = 2 * 512

// tailReader remembers the last tarEnd bytes read: a tar stream that
// stops at an entry's end without them was cut short, which tar.Reader
// does not tell from its end.
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

// archive unpacks one stored archive: base.tar into DATADIR, OID.tar
// into DATADIR/pg_tblspc/OID, pg_wal.tar into DATADIR/pg_wal. Its tar
// stream is read here, every file checked against the manifest, and
// written again for backup.Unpack, the hardened unpacker, which does the
// writing.
func (r *restorer) archive(name string) error {
	base := strings.SplitN(name, ".", 2)[0]
	dest, prefix := r.dir, ""
	switch base {
	case "base":
	case "pg_wal":
		dest, prefix = filepath.Join(r.dir, "pg_wal"), "pg_wal/"
	default:
		dest, prefix = filepath.Join(r.dir, "pg_tblspc", base), "pg_tblspc/"+base+"/"
		r.inPlace = true
	}
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return &bgError{bgWrite, err}
	}
	rc, sr, err := r.openSrc(name)
	if err != nil {
		return err
	}
	defer rc.Close()
	dr, err := decompress(name, sr)
	if err != nil {
		return r.readError(name, err)
	}
	defer dr.Close()

	pr, pw := io.Pipe()
	unpacked := make(chan error, 1)
	go func() {
		_, _, err := backup.Unpack(pr, dest)
		if err != nil {
			// Stops the filter, and the download, at its next write.
			pr.CloseWithError(err)
		} else {
			// Whatever the unpacker left unread (the end blocks) must
			// not block the writer.
			io.Copy(io.Discard, pr)
			pr.Close()
		}
		unpacked <- err
	}()
	ferr := r.filter(name, base, prefix, dr, pw)
	if ferr == nil {
		// To its end, past the tar end blocks: a compressed stream is
		// only checked whole (its frame checksum, its last block).
		_, ferr = io.Copy(io.Discard, dr)
	}
	pw.CloseWithError(ferr)
	uerr := <-unpacked
	switch {
	case ferr != nil && !errors.Is(ferr, io.ErrClosedPipe):
		return r.readError(name, ferr)
	case uerr != nil:
		var pe *pgerr.Error
		if errors.As(uerr, &pe) && pe.Code == pgerr.ProtocolViolation {
			return bgFail(bgVerify, "%s: %s", name, pe.Message)
		}
		return &bgError{bgWrite, fmt.Errorf("%s: %s", name, pgMessage(uerr))}
	case ferr != nil:
		return r.readError(name, ferr)
	}
	return nil
}

// filter copies the tar stream in to out, checking each file against
// the manifest (paths below prefix) and turning base.tar's tablespace
// links pg_tblspc/OID into the directories OID.tar is unpacked into.
func (r *restorer) filter(name, base, prefix string, in io.Reader, out io.Writer) error {
	tail := &tailReader{r: in}
	tr := tar.NewReader(tail)
	tw := tar.NewWriter(out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			if !tail.ended() {
				return errors.New("the archive is cut short: it lacks the blocks that end a tar file")
			}
			return tw.Close()
		}
		if err != nil {
			return err
		}
		clean := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			if base != "base" || !strings.HasPrefix(clean, "pg_tblspc/") {
				return bgFail(bgVerify, "%s: unexpected symbolic link %s", name, hdr.Name)
			}
			// An in-place tablespace: its files come from OID.tar.
			hdr = &tar.Header{Name: clean + "/", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: hdr.ModTime}
			r.inPlace = true
		case tar.TypeReg:
			c := r.man.check(prefix + clean)
			if base == "base" && clean == "tablespace_map" {
				// Checked, not written: at the start of recovery the
				// server would replace the in-place tablespace
				// directories by links to the original locations.
				if _, err := io.Copy(c, tr); err != nil {
					return err
				}
				if err := c.done(&r.extra); err != nil {
					return err
				}
				continue
			}
			hdr.Format = tar.FormatPAX // names and sizes of any length
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := io.Copy(io.MultiWriter(tw, c), tr); err != nil {
				return err
			}
			if err := c.done(&r.extra); err != nil {
				return err
			}
			continue
		}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
}

// copyPlain copies a plain backup's directory, checking every file;
// tablespaces (pg_tblspc/OID links to ../tablespaces/OID, or to
// anywhere inside the backup) become directories.
func (r *restorer) copyPlain() error {
	srcDir := r.src.plainDir
	data, err := os.ReadFile(filepath.Join(srcDir, "backup_manifest"))
	if err != nil {
		return bgFail(bgSource, "backup_manifest: %v", err)
	}
	if r.man, err = parseManifest(data); err != nil {
		return &bgError{bgVerify, err}
	}
	var total int64
	for _, e := range r.man.files {
		total += e.size
	}
	r.progress.start(total)
	realSrc, err := filepath.EvalSymlinks(srcDir)
	if err != nil {
		return bgFail(bgSource, "SOURCE: %v", err)
	}
	var copyDir func(from, rel string) error
	copyDir = func(from, rel string) error {
		ents, err := os.ReadDir(from)
		if err != nil {
			return bgFail(bgSource, "SOURCE: %v", err)
		}
		for _, e := range ents {
			p := path.Join(rel, e.Name())
			src := filepath.Join(from, e.Name())
			if rel == "" && (e.Name() == "tablespaces" || e.Name() == "backup_manifest") {
				continue // the tablespaces come through pg_tblspc; the manifest last
			}
			switch {
			case e.Type()&fs.ModeSymlink != 0:
				if path.Dir(p) != "pg_tblspc" {
					return bgFail(bgVerify, "unexpected symbolic link %s", p)
				}
				target, err := filepath.EvalSymlinks(src)
				if err != nil {
					return bgFail(bgSource, "tablespace %s: %v", p, err)
				}
				if rel, err := filepath.Rel(realSrc, target); err != nil || !filepath.IsLocal(rel) {
					return bgFail(bgSource, "tablespace %s lies outside the backup directory", p)
				}
				if err := os.Mkdir(filepath.Join(r.dir, p), 0o700); err != nil {
					return &bgError{bgWrite, err}
				}
				r.inPlace = true
				if err := copyDir(target, p); err != nil {
					return err
				}
			case e.IsDir():
				if err := os.Mkdir(filepath.Join(r.dir, p), 0o700); err != nil {
					return &bgError{bgWrite, err}
				}
				if err := copyDir(src, p); err != nil {
					return err
				}
			case e.Type().IsRegular():
				if err := r.copyFile(src, p); err != nil {
					return err
				}
			default:
				return bgFail(bgVerify, "%s is not a regular file, directory or tablespace link", p)
			}
		}
		return nil
	}
	if err := copyDir(srcDir, ""); err != nil {
		return err
	}
	if err := r.man.complete(r.extra); err != nil {
		return err
	}
	if err := r.allowInPlace(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.dir, "backup_manifest"), data, 0o600); err != nil {
		return &bgError{bgWrite, err}
	}
	return nil
}

func (r *restorer) copyFile(src, rel string) error {
	in, err := os.Open(src)
	if err != nil {
		return bgFail(bgSource, "%s: %v", rel, err)
	}
	defer in.Close()
	out, err := os.OpenFile(filepath.Join(r.dir, filepath.FromSlash(rel)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return &bgError{bgWrite, err}
	}
	c := r.man.check(rel)
	_, err = io.Copy(io.MultiWriter(out, c), &srcReader{ctx: r.ctx, r: in, prog: r.progress})
	if cerr := out.Close(); err == nil && cerr != nil {
		return &bgError{bgWrite, cerr}
	}
	if err != nil {
		var se *sourceError
		if errors.As(err, &se) {
			return r.readError(rel, err)
		}
		return &bgError{bgWrite, err}
	}
	return c.done(&r.extra)
}

// allowInPlace lets the server recover with in-place tablespaces: without
// allow_in_place_tablespaces, recovery stops (PANIC) at a directory in
// pg_tblspc that is not a link.
func (r *restorer) allowInPlace() error {
	if !r.inPlace {
		return nil
	}
	return appendAutoConf(r.dir, "# Added by pgverbs backup-get: the tablespaces are directories in pg_tblspc.\nallow_in_place_tablespaces = on\n")
}

// appendAutoConf appends lines to DATADIR/postgresql.auto.conf, where
// the last setting of a name wins.
func appendAutoConf(dir, lines string) error {
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.auto.conf"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return &bgError{bgWrite, err}
	}
	_, err = f.WriteString("\n" + lines)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &bgError{bgWrite, err}
	}
	return nil
}

// writeRestoreCommand sets restore_command in postgresql.auto.conf (the
// server reads it after postgresql.conf, and the last setting wins) and
// creates recovery.signal: the server starts in archive recovery,
// fetching WAL through pgverbs wal-get. --partial lets recovery reach the
// end of the archive's last, still incomplete, segment.
func writeRestoreCommand(o backupGetOptions) error {
	cmd := []string{shellWord(o.self), "wal-get", "--url", shellWord(o.restoreURL)}
	if o.tokenFile != "" {
		tf, err := filepath.Abs(o.tokenFile)
		if err != nil {
			return &bgError{bgUsage, err}
		}
		cmd = append(cmd, "--token-file", shellWord(tf))
	}
	cmd = append(cmd, "--partial", "%f", "%p")
	line := "# Added by pgverbs backup-get.\nrestore_command = '" + strings.ReplaceAll(strings.Join(cmd, " "), "'", "''") + "'\n"
	if err := appendAutoConf(o.datadir, line); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.datadir, "recovery.signal"), nil, 0o600); err != nil {
		return &bgError{bgWrite, err}
	}
	return nil
}

// shellWord quotes w for the shell that runs restore_command, leaving
// words of only safe characters as they are.
func shellWord(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-:+@=") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// syncTree fsyncs every file and directory below dir, as pg_basebackup
// does before it reports success.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
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

// bgProgress shows how far the download is: a bar redrawn on a terminal,
// else a line per 10 %.
type bgProgress struct {
	w     io.Writer
	quiet bool
	tty   bool

	mu       sync.Mutex
	total    int64
	done     int64
	began    time.Time
	lastDraw time.Time
	lastTen  int64
}

func newBGProgress(w io.Writer, quiet bool) *bgProgress {
	p := &bgProgress{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *bgProgress) start(total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total, p.began = total, time.Now()
}

func (p *bgProgress) add(n int64) {
	if p == nil || p.quiet || n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.tty {
		if time.Since(p.lastDraw) >= 200*time.Millisecond {
			p.lastDraw = time.Now()
			p.draw()
		}
		return
	}
	if p.total > 0 {
		if ten := p.done * 10 / p.total; ten > p.lastTen && ten < 10 {
			p.lastTen = ten
			fmt.Fprintf(p.w, "pgverbs backup-get: %d%% (%s of %s)\n", ten*10, mb(p.done), mb(p.total))
		}
	}
}

// draw redraws the bar; the caller holds mu.
func (p *bgProgress) draw() {
	const width = 30
	frac := 0.0
	if p.total > 0 {
		frac = min(float64(p.done)/float64(p.total), 1)
	}
	filled := int(frac * width)
	rate := float64(p.done) / max(time.Since(p.began).Seconds(), 0.001)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %s of %s, %s/s ", strings.Repeat("#", filled), strings.Repeat(" ", width-filled),
		frac*100, mb(p.done), mb(p.total), mb(int64(rate)))
}

func (p *bgProgress) finish(ok bool) {
	if p == nil || p.quiet || p.began.IsZero() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.draw()
		fmt.Fprintln(p.w)
	}
	if ok {
		fmt.Fprintf(p.w, "pgverbs backup-get: done, %s in %.1f s\n", mb(p.done), time.Since(p.began).Seconds())
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
