package commands

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/DataDog/zstd"
	"github.com/klauspost/compress/gzip"
	"github.com/pierrec/lz4/v4"

	"github.com/pgverbs/pgverbs/backup"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/storage"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// SHOW BACKUPS lists the complete base backups below the backup root, or
// below a directory of it, or below a prefix of an object-storage target:
//
//	SHOW BACKUPS [IN 'dir' | IN 'storage://target/prefix']
//
// A local backup is a directory with backup_manifest or backup_label and
// without BASE BACKUP's in-progress marker (plain: a data directory; tar:
// base.tar[.gz|.lz4|.zst] beside the manifest); a backup in object
// storage is a prefix holding backup.SummaryName, which BASE BACKUP writes
// last. The search does not descend into a backup, a backup being
// written or a WAL archive directory, and follows no symbolic link.
//
// Like SHOW WAL ARCHIVE it only reads, so it runs anywhere, inside a
// transaction too; who may run it is what pg_stat_replication shows to:
// superusers, roles with REPLICATION (who could take the backups) and
// members of pg_monitor. A backup's paths, sizes and WAL positions are
// what an operator monitors; the data stays unread.

// VerifyResultName is the record of the last VERIFY BACKUP of a backup,
// {"time": RFC 3339, "result": "ok" | "N problems"}: an object inside a
// backup's prefix in object storage, and for a local backup a file beside
// its directory, DIR + VerifyResultSuffix (inside, it would be a file
// pg_verifybackup reports as not in the manifest). SHOW BACKUPS also reads
// DIR/VerifyResultName, should a writer put it there.
const (
	VerifyResultName   = "pgverbs_verify.json"
	VerifyResultSuffix = "." + VerifyResultName
)

// VerifyRecord is what VerifyResultName holds.
type VerifyRecord struct {
	Time   time.Time `json:"time"`
	Result string    `json:"result"`
}

// showBackupsTimeout bounds a listing of object storage: SHOW BACKUPS is
// not standalone, so no cancel request reaches it.
const showBackupsTimeout = 2 * time.Minute

// ShowBackups is the SHOW BACKUPS command.
type ShowBackups struct{ backupPlaces }

// backupPlaces is where SHOW BACKUPS and VERIFY BACKUP find backups and
// the WAL they do not hold: the backup root ("" when none is
// configured), the storage targets, and the WAL archive (nil for none).
type backupPlaces struct {
	root    string
	stores  *storage.Stores
	archive walarchive.Archiver
}

// NewShowBackups returns SHOW BACKUPS over the backup root root ("" when
// none is configured: only IN 'storage://...' works then), the storage
// targets stores and the WAL archive a (nil for none), which wal_present
// consults for the WAL a backup does not hold itself.
func NewShowBackups(root string, stores *storage.Stores, a walarchive.Archiver) *ShowBackups {
	return &ShowBackups{backupPlaces{root: root, stores: stores, archive: a}}
}

// Name implements Command.
func (*ShowBackups) Name() string { return "SHOW BACKUPS" }

// Keywords implements Command.
func (*ShowBackups) Keywords() []string { return []string{"SHOW", "BACKUPS"} }

// Parse implements Parser.
func (s *ShowBackups) Parse(sql string) (Prepared, error) {
	st, err := ParseShowBackups(sql)
	if err != nil {
		return nil, err
	}
	r := &showBackupsRun{cmd: s, in: st.In}
	if storage.IsURL(st.In) {
		// As BASE BACKUP does: a mistyped target or a path escape fails
		// before anything else.
		if r.store, r.prefix, err = s.stores.Resolve(st.In); err != nil {
			return nil, err
		}
	}
	return r, nil
}

type showBackupsRun struct {
	cmd    *ShowBackups
	in     string
	store  *storage.Store
	prefix string
}

// backupsColumns are SHOW BACKUPS'. The times are text in timestamptz's
// output format, as SHOW WAL ARCHIVE SEGMENTS' completed_at: the proxy
// encodes no timestamptz in binary, which pgx would ask for.
var backupsColumns = []Column{
	{"path", pgwire.TextOID}, {"label", pgwire.TextOID}, {"format", pgwire.TextOID}, {"compression", pgwire.TextOID},
	{"start_lsn", pgwire.PgLSNOID}, {"end_lsn", pgwire.PgLSNOID}, {"timeline", pgwire.Int8OID},
	{"start_time", pgwire.TimestamptzOID}, {"end_time", pgwire.TimestamptzOID}, {"bytes", pgwire.Int8OID},
	{"wal_present", pgwire.BoolOID}, {"last_verification", pgwire.TextOID},
}

// Columns implements Prepared.
func (*showBackupsRun) Columns() []Column { return backupsColumns }

// Execute implements Prepared.
func (r *showBackupsRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	if r.store == nil && r.cmd.root == "" {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "SHOW BACKUPS has no backup root to list: none is configured")
		e.Hint = "Start pgverbs with --backup-root DIR (config backup_root), or name object storage: SHOW BACKUPS IN 'storage://target/prefix'."
		return nil, e
	}
	if err := requireWALRole(c, "SHOW BACKUPS", true); err != nil {
		return nil, err
	}
	var infos []*backupInfo
	var err error
	if r.store != nil {
		ctx, cancel := context.WithTimeout(ctx, showBackupsTimeout)
		defer cancel()
		infos, err = objectBackups(ctx, r.store, r.prefix, func(what string, err error) { showWarnLeftOut(c, what, err) })
	} else {
		infos, err = r.localBackups(c)
	}
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, showBackupsTimeout)
	defer cancel()
	arch := &archiveWAL{ctx: actx, a: r.cmd.archive, stores: r.cmd.stores}
	rows := make([][]*string, 0, len(infos))
	for _, b := range infos {
		if b.wal == nil && len(b.ranges) > 0 {
			present := arch.covers(b.ranges)
			b.wal = &present
		}
		rows = append(rows, b.row())
	}
	return &Outcome{Tag: "SHOW", Rows: rows}, nil
}

// localBackups finds the backups below the backup root or IN's directory.
func (r *showBackupsRun) localBackups(c Conn) ([]*backupInfo, error) {
	root := r.cmd.root
	start := root
	if r.in != "" {
		dir, err := backup.ResolveDir(root, r.in)
		if errors.Is(err, backup.ErrTargetInUse) {
			return nil, nil // a backup being written: not complete
		}
		if err != nil {
			return nil, err
		}
		start = dir
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "SHOW BACKUPS: the backup root is not accessible: %v", pathErr(err))
	}
	realStart, err := filepath.EvalSymlinks(start)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, pgerr.New(pgerr.UndefinedFile, "directory %q does not exist", r.in)
	}
	if err != nil {
		return nil, pgerr.New(pgerr.IOError, "could not open directory %q: %v", r.in, pathErr(err))
	}
	if fi, err := os.Stat(realStart); err != nil || !fi.IsDir() {
		return nil, pgerr.New(pgerr.WrongObjectType, "%q is not a directory", r.in)
	}
	return localBackups(realRoot, realStart, func(what string, err error) { showWarnLeftOut(c, what, err) })
}

// pathErr strips the path from a *fs.PathError: messages quote what the
// user typed, not the server's file system.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// localBackups finds the complete local backups in start, a directory at
// or below root (both with symbolic links resolved), and describes each
// with paths relative to root. warn, when not nil, is told of what is
// left out (a directory that cannot be read, a backup whose files cannot
// be parsed). WAL presence is left unset (nil wal) when only the archive
// can tell.
func localBackups(root, start string, warn func(what string, err error)) ([]*backupInfo, error) {
	if warn == nil {
		warn = func(string, error) {}
	}
	var out []*backupInfo
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		rel, rerr := filepath.Rel(root, p)
		if rerr != nil {
			return rerr
		}
		rel = filepath.ToSlash(rel)
		if err != nil {
			if p == start {
				return pgerr.New(pgerr.IOError, "could not read directory %q: %v", rel, pathErr(err))
			}
			warn(fmt.Sprintf("directory %q", rel), pathErr(err))
			return filepath.SkipDir
		}
		if !d.IsDir() {
			return nil
		}
		has := func(name string) bool {
			fi, err := os.Lstat(filepath.Join(p, name))
			return err == nil && fi.Mode().IsRegular()
		}
		switch {
		case has(backupInProgress), has(walarchive.StateFile):
			return filepath.SkipDir
		case !has("backup_manifest") && !has("backup_label"):
			return nil
		}
		b, err := inspectLocal(p)
		if err != nil {
			warn(fmt.Sprintf("backup %q", rel), err)
			return filepath.SkipDir
		}
		b.path = rel
		out = append(out, b)
		return filepath.SkipDir
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].path < out[j].path })
	return out, nil
}

// backupInProgress is BASE BACKUP's marker in a backup being written
// (backup.markerName, which the package does not export).
const backupInProgress = ".pgverbs-backup-in-progress"

// walRange is one WAL range a backup needs, End exclusive.
type walRange struct {
	tli        uint32
	start, end uint64
}

// backupInfo is one row of SHOW BACKUPS.
type backupInfo struct {
	path               string
	label              *string
	format             string
	compression        string
	start, end         *uint64
	timeline           uint32
	startTime, endTime time.Time
	bytes              int64
	// ranges are the WAL the backup needs; wal says whether it is
	// present, nil until known (then the archive decides).
	ranges       []walRange
	wal          *bool
	verification *string
}

func (b *backupInfo) row() []*string {
	lsn := func(v *uint64) *string {
		if v == nil {
			return nil
		}
		return strp(walstream.FormatLSN(*v))
	}
	tm := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		return strp(showTime(t))
	}
	var tli, wal *string
	if b.timeline != 0 {
		tli = showUint(uint64(b.timeline))
	}
	if b.wal != nil {
		wal = strp(showBool(*b.wal))
	}
	return []*string{strp(b.path), b.label, strp(b.format), strp(b.compression),
		lsn(b.start), lsn(b.end), tli, tm(b.startTime), tm(b.endTime),
		strp(strconv.FormatInt(b.bytes, 10)), wal, b.verification}
}

// tarNames are the names base.tar takes, by compression.
var tarNames = []struct{ name, compression string }{
	{"base.tar", "none"}, {"base.tar.gz", "gzip"}, {"base.tar.lz4", "lz4"}, {"base.tar.zst", "zstd"},
}

// inspectLocal describes the backup in dir.
func inspectLocal(dir string) (*backupInfo, error) {
	b := &backupInfo{format: "plain", compression: "none"}
	baseTar := ""
	for _, t := range tarNames {
		if fi, err := os.Lstat(filepath.Join(dir, t.name)); err == nil && fi.Mode().IsRegular() {
			b.format, b.compression, baseTar = "tar", t.compression, t.name
			break
		}
	}
	man, manTime, err := readManifestFile(filepath.Join(dir, "backup_manifest"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		b.setManifest(man)
		b.endTime = manTime // backup_manifest is the last file a backup writes
	}
	var label *labelInfo
	if b.format == "plain" {
		f, err := os.Open(filepath.Join(dir, "backup_label"))
		if err == nil {
			label, err = parseLabel(f)
			f.Close()
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("backup_label: %w", pathErr(err))
		}
	} else {
		// backup_label is base.tar's first entry in a backup by the
		// replication method; a label the first entries do not hold (the
		// SQL method writes it last) stays unknown rather than making
		// SHOW BACKUPS decompress the whole archive.
		label = tarLabel(filepath.Join(dir, baseTar), b.compression)
	}
	if label != nil {
		b.label = label.label
		if !label.time.IsZero() {
			b.startTime = label.time
		}
		if b.start == nil && label.hasStart {
			s := label.start
			b.start, b.timeline = &s, label.tli
		}
	}
	if man == nil && label == nil {
		return nil, errors.New("neither backup_manifest nor backup_label can be read")
	}
	// The stored size: what the backup occupies.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				b.bytes += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		return nil, pathErr(err)
	}
	switch {
	case b.format == "tar":
		for _, suffix := range []string{"", ".gz", ".lz4", ".zst"} {
			if fi, err := os.Lstat(filepath.Join(dir, "pg_wal.tar"+suffix)); err == nil && fi.Mode().IsRegular() {
				present := true
				b.wal = &present
			}
		}
	case len(b.ranges) > 0:
		if localWALCovers(filepath.Join(dir, "pg_wal"), b.ranges) {
			present := true
			b.wal = &present
		}
	}
	b.verification = readVerifyFile(dir+VerifyResultSuffix, filepath.Join(dir, VerifyResultName))
	return b, nil
}

// manifestDoc is what SHOW BACKUPS and backup-get read of a
// backup_manifest.
type manifestDoc struct {
	Version int `json:"PostgreSQL-Backup-Manifest-Version"`
	Files   []struct {
		Path         string `json:"Path"`
		EncodedPath  string `json:"Encoded-Path"`
		Size         int64  `json:"Size"`
		LastModified string `json:"Last-Modified"`
	} `json:"Files"`
	Ranges []struct {
		Timeline uint32 `json:"Timeline"`
		Start    string `json:"Start-LSN"`
		End      string `json:"End-LSN"`
	} `json:"WAL-Ranges"`
}

func readManifestFile(p string) (*manifestDoc, time.Time, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	var m manifestDoc
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&m); err != nil {
		return nil, time.Time{}, fmt.Errorf("backup_manifest: %w", err)
	}
	return &m, fi.ModTime(), nil
}

// setManifest takes the WAL ranges and the label's time from m.
func (b *backupInfo) setManifest(m *manifestDoc) {
	var minStart, maxEnd uint64
	var endTLI uint32
	for i, r := range m.Ranges {
		s, err1 := walstream.ParseLSN(r.Start)
		e, err2 := walstream.ParseLSN(r.End)
		if err1 != nil || err2 != nil || r.Timeline == 0 {
			continue
		}
		b.ranges = append(b.ranges, walRange{r.Timeline, s, e})
		if i == 0 || s < minStart {
			minStart = s
		}
		if i == 0 || e > maxEnd {
			maxEnd, endTLI = e, r.Timeline
		}
	}
	if len(b.ranges) > 0 {
		b.start, b.end = &minStart, &maxEnd
		// The timeline the backup ended on, which recovery continues,
		// as BASE BACKUP's result row gives it.
		b.timeline = endTLI
	}
	for _, f := range m.Files {
		if f.Path == "backup_label" {
			if t, err := time.Parse("2006-01-02 15:04:05 GMT", f.LastModified); err == nil {
				b.startTime = t
			}
		}
	}
}

// labelInfo is what a backup_label says.
type labelInfo struct {
	label    *string
	hasStart bool
	start    uint64
	tli      uint32
	time     time.Time
}

// parseLabel reads backup_label's "KEY: value" lines.
func parseLabel(r io.Reader) (*labelInfo, error) {
	l := &labelInfo{}
	var hasLSN, hasTLI bool
	sc := bufio.NewScanner(io.LimitReader(r, 64<<10))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		switch key {
		case "LABEL":
			l.label = strp(val)
		case "START WAL LOCATION":
			lsn, _, _ := strings.Cut(val, " ")
			v, err := walstream.ParseLSN(lsn)
			l.start, hasLSN = v, err == nil
		case "START TIMELINE":
			v, err := strconv.ParseUint(val, 10, 32)
			l.tli, hasTLI = uint32(v), err == nil && v != 0
		case "START TIME":
			l.time = labelTime(val)
		}
	}
	l.hasStart = hasLSN && hasTLI
	return l, sc.Err()
}

// labelTime parses START TIME ("%Y-%m-%d %H:%M:%S %Z", the server's
// log_timezone): numeric zones and UTC/GMT exactly; another abbreviation
// gives the zero time, and the manifest's time is used instead.
func labelTime(s string) time.Time {
	for _, layout := range []string{"2006-01-02 15:04:05 -07", "2006-01-02 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	if t, err := time.Parse("2006-01-02 15:04:05 MST", s); err == nil {
		if zone, _ := t.Zone(); zone == "UTC" || zone == "GMT" {
			return t
		}
	}
	return time.Time{}
}

// tarLabelEntries and tarLabelBytes bound the search of base.tar for
// backup_label.
const (
	tarLabelEntries = 4
	tarLabelBytes   = 1 << 20
)

// tarLabel reads backup_label from the first entries of the archive p,
// nil when they do not hold it.
func tarLabel(p, compression string) *labelInfo {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	r, err := decompressor(f, compression)
	if err != nil {
		return nil
	}
	defer r.Close()
	tr := tar.NewReader(io.LimitReader(r, tarLabelBytes))
	for range tarLabelEntries {
		hdr, err := tr.Next()
		if err != nil {
			return nil
		}
		if path.Clean(hdr.Name) == "backup_label" && hdr.Typeflag == tar.TypeReg {
			l, err := parseLabel(tr)
			if err != nil {
				return nil
			}
			return l
		}
	}
	return nil
}

// decompressor reads r decompressed with the named algorithm ("none",
// "gzip", "lz4", "zstd", as backup.Compression names them). Closing it
// does not close r.
func decompressor(r io.Reader, compression string) (io.ReadCloser, error) {
	switch compression {
	case "none", "":
		return io.NopCloser(r), nil
	case "gzip":
		return gzip.NewReader(r)
	case "lz4":
		return io.NopCloser(lz4.NewReader(r)), nil
	case "zstd":
		return zstd.NewReader(r), nil
	}
	return nil, fmt.Errorf("unknown compression %q", compression)
}

// readVerifyFile renders the first VerifyRecord found among the files
// names, nil when there is none.
func readVerifyFile(names ...string) *string {
	for _, n := range names {
		if b, err := os.ReadFile(n); err == nil {
			return verifyText(b)
		}
	}
	return nil
}

// verifyText renders a VerifyRecord as "ok (2026-12-04 01:02:03+00)".
func verifyText(b []byte) *string {
	var v VerifyRecord
	if err := json.Unmarshal(b, &v); err != nil || v.Result == "" {
		return strp("unreadable " + VerifyResultName)
	}
	if v.Time.IsZero() {
		return strp(v.Result)
	}
	return strp(v.Result + " (" + showTime(v.Time) + ")")
}

// localWALCovers reports whether the segments in a plain backup's pg_wal
// directory hold every range. Their length is the segment size.
func localWALCovers(dir string, ranges []walRange) bool {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	var segs []segRange
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() || !walarchive.ValidSegmentSize(uint64(fi.Size())) {
			continue
		}
		size := uint64(fi.Size())
		n, err := walarchive.ParseName(e.Name(), size)
		if err != nil || n.Kind != walarchive.Segment {
			continue
		}
		segs = append(segs, segRange{n.Timeline, n.SegNo * size, (n.SegNo + 1) * size})
	}
	return covered(segs, ranges)
}

// segRange is WAL a file holds: [start, end) on tli.
type segRange struct {
	tli        uint32
	start, end uint64
}

// covered reports whether segs hold every byte of every range.
func covered(segs []segRange, ranges []walRange) bool {
	sort.Slice(segs, func(i, j int) bool { return segs[i].start < segs[j].start })
	for _, r := range ranges {
		at, end := r.start, r.end
		if end <= at {
			end = at + 1 // the segment holding the start, at least
		}
		for _, s := range segs {
			if s.tli == r.tli && s.start <= at && at < s.end {
				at = s.end
			}
		}
		if at < end {
			return false
		}
	}
	return true
}

// archiveWAL is what the running WAL archive holds, read once per
// statement.
type archiveWAL struct {
	ctx    context.Context
	a      walarchive.Archiver
	stores *storage.Stores
	segs   []segRange
	read   bool
}

// covers reports whether the archive holds ranges: complete and
// compressed segments whole, the partial one up to the durable position,
// and for an archive uploading to object storage what was uploaded
// (which the local retention may have removed).
func (w *archiveWAL) covers(ranges []walRange) bool {
	if w.a == nil {
		return false
	}
	if !w.read {
		w.read = true
		w.segs = w.uploaded()
		files, err := w.a.Segments()
		if err != nil {
			// A stopped archive keeps its WAL, which a restore through
			// wal-get can still fetch.
			w.segs = append(w.segs, stoppedArchiveSegments(w.a)...)
			return covered(append([]segRange(nil), w.segs...), ranges)
		}
		st, _ := w.a.Status()
		for _, f := range files {
			switch f.State {
			case walarchive.SegComplete, walarchive.SegCompressed:
				w.segs = append(w.segs, segRange{f.Timeline, f.Start, f.End})
			case walarchive.SegPartial:
				if f.Timeline == st.Timeline && st.Flushed > f.Start {
					w.segs = append(w.segs, segRange{f.Timeline, f.Start, min(f.End, st.Flushed)})
				}
			}
		}
	}
	return covered(append([]segRange(nil), w.segs...), ranges)
}

// objectBackups finds the complete backups below prefix in store: every
// prefix holding backup.SummaryName, not descending into one.
func objectBackups(ctx context.Context, store *storage.Store, prefix string, warn func(string, error)) ([]*backupInfo, error) {
	objs, err := store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	have := map[string]storage.Object{}
	var dirs []string
	for _, o := range objs {
		have[o.Name] = o
		if dir, base := path.Split(o.Name); base == backup.SummaryName && dir != "" {
			dirs = append(dirs, strings.TrimSuffix(dir, "/"))
		}
	}
	sort.Strings(dirs)
	var out []*backupInfo
	last := ""
	for _, dir := range dirs {
		if last != "" && strings.HasPrefix(dir, last+"/") {
			continue // inside a backup
		}
		last = dir
		data, err := store.ReadAll(ctx, storage.Join(dir, backup.SummaryName))
		if err != nil {
			return nil, err
		}
		sum, err := backup.ParseSummary(data)
		if err != nil {
			warn(fmt.Sprintf("backup %q", store.URL(dir)), err)
			continue
		}
		b := &backupInfo{path: store.URL(dir), label: strp(sum.Label), format: sum.Format, compression: sum.Compression,
			timeline: sum.Timeline, startTime: sum.StartTime, endTime: sum.EndTime}
		s, err1 := walstream.ParseLSN(sum.StartLSN)
		e, err2 := walstream.ParseLSN(sum.EndLSN)
		if err1 == nil && err2 == nil {
			b.start, b.end = &s, &e
			if sum.Timeline != 0 {
				b.ranges = []walRange{{sum.Timeline, s, e}}
			}
		}
		for _, o := range sum.Objects {
			b.bytes += o.Size
			if strings.HasPrefix(o.Name, "pg_wal.tar") {
				present := true
				b.wal = &present
			}
		}
		if sum.WAL == backup.WALFetch.String() {
			// Fetched WAL is inside base.tar.
			present := true
			b.wal = &present
		}
		if _, ok := have[storage.Join(dir, VerifyResultName)]; ok {
			if data, err := store.ReadAll(ctx, storage.Join(dir, VerifyResultName)); err == nil {
				b.verification = verifyText(data)
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// uploaded lists the segments an archive started TO 'storage://...'
// has uploaded (NAME or NAME.zst below its prefix); none when the store
// cannot be listed.
func (w *archiveWAL) uploaded() []segRange {
	st, ok := w.a.Status()
	if !ok || st.Upload.Storage == "" {
		return nil
	}
	_, segSize, ok := walarchive.StatusArchive(w.a)()
	if !ok {
		return nil
	}
	store, prefix, err := w.stores.Resolve(st.Upload.Storage)
	if err != nil {
		return nil
	}
	objs, err := store.List(w.ctx, prefix)
	if err != nil {
		return nil
	}
	var segs []segRange
	for _, o := range objs {
		name := strings.TrimSuffix(path.Base(o.Name), ".zst")
		n, err := walarchive.ParseName(name, segSize)
		if err != nil || n.Kind != walarchive.Segment || path.Dir(o.Name) != strings.Trim(prefix, "/") {
			continue
		}
		segs = append(segs, segRange{n.Timeline, n.SegNo * segSize, (n.SegNo + 1) * segSize})
	}
	return segs
}

// stoppedArchiveSegments lists the complete segments (NAME, NAME.zst) in
// the directory of an archive that is not running, as /wal/ serves them.
func stoppedArchiveSegments(a walarchive.Archiver) []segRange {
	dir, segSize, ok := walarchive.StatusArchive(a)()
	if !ok {
		return nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var segs []segRange
	for _, e := range ents {
		n, err := walarchive.ParseName(strings.TrimSuffix(e.Name(), ".zst"), segSize)
		if err != nil || n.Kind != walarchive.Segment || !e.Type().IsRegular() {
			continue
		}
		segs = append(segs, segRange{n.Timeline, n.SegNo * segSize, (n.SegNo + 1) * segSize})
	}
	return segs
}
