package walarchive

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/pgverbs/pgverbs/walstream"
)

// The page header of a WAL page, as PostgreSQL's xlog_internal.h lays it
// out (little-endian: the archive holds WAL of the machines pgverbs runs
// on, and PostgreSQL writes WAL in its host's byte order).
const (
	shortHeaderSize = 24 // SizeOfXLogShortPHD: magic, info, tli, pageaddr, rem_len, padding
	longHeaderSize  = 40 // SizeOfXLogLongPHD: the short header, sysid, seg_size, xlog_blcksz
	xlpLongHeader   = 0x0002
	xlpAllFlags     = 0x000F
	defaultBlckSz   = 8192
)

// pageMagics names the versions whose XLOG_PAGE_MAGIC Check knows, for its
// report only: any magic is accepted as long as the whole archive has the
// same.
var pageMagics = map[uint16]string{0xD106: "13", 0xD10D: "14", 0xD110: "15", 0xD113: "16", 0xD116: "17"}

// Check verifies the WAL archive in dir, whose segments are segSize bytes,
// as CHECK WAL ARCHIVE reports it: the continuity of its files and the
// header of every page. A problem found (the first one, in LSN order, after
// those of the history files) is returned in the result with OK false;
// the error is for an archive that could not be read at all.
//
// Continuity: the timelines are those of the newest timeline's history
// file (timeline N > 1 needs N.history, and every history file in the
// archive must agree with it); each segment must lie on the timeline that
// owned its LSN range, and from the oldest segment to the newest every
// segment number must be present (NAME, NAME.zst or NAME.partial) on the
// newest timeline (with segments) that had begun by then. A child timeline
// begins in the segment holding its switch point; when the archive held the
// parent before the switch, the parent's copy of that segment must be there
// too (pg_receivewal keeps it as NAME.partial). A .partial is allowed only
// there and as the newest segment. Such a .partial older than every other
// segment (retention removed what followed it, and never removes a
// .partial) has its pages checked but does not start the range.
//
// Pages (XLOG_BLCKSZ from the long header, 8 kB by default): every page's
// xlp_magic equals the first page's (so archives of PostgreSQL 15, 16 or 17
// all check; the report names the version), no unknown xlp_info flags,
// xlp_pageaddr is the page's own LSN, xlp_tli is not above the file's
// timeline and never decreases within a file; the first page of a segment
// has the long header with xlp_sysid = systemID (0 skips that check),
// xlp_seg_size = segSize and the archive's xlp_xlog_blcksz. A .partial is
// checked up to its first page whose header is all zeros, and only zeros
// may follow. A complete segment may end in zero pages too, but only after
// an XLOG_SWITCH record (the last record that began before them):
// since 13, PostgreSQL writes the pages after an XLOG_SWITCH as zeros,
// their headers too (CopyXLogRecordToWAL, for compressibility), and the
// walsender sends them as they are. The header
// layout and XLOG_SWITCH are the same in PostgreSQL 15, 16 and 17 (the
// tests run on 15 only).
//
// Segments are read through OpenFile, as restore_command gets them (NAME
// before a NAME.zst beside it; a compressed one decompressed as it is
// read: a few pages of WAL are held in memory, never a segment); a file
// that cannot be read is a problem too.
func Check(dir *os.Root, segSize uint64, systemID uint64) (CheckResult, error) {
	if !ValidSegmentSize(segSize) {
		return CheckResult{}, fmt.Errorf("walarchive: invalid WAL segment size %d", segSize)
	}
	c := &checker{dir: dir, segSize: segSize, systemID: systemID, files: map[segKey][]archFile{}, histories: map[uint32]bool{}}
	if err := c.list(); err != nil {
		return CheckResult{}, err
	}
	if err := c.run(); err != nil {
		var p problem
		if !errors.As(err, &p) {
			return CheckResult{}, err
		}
		res := c.result()
		res.OK, res.Problem = false, string(p)
		return res, nil
	}
	res := c.result()
	res.OK = true
	return res, nil
}

// problem is something wrong in the archive, as opposed to an error reading
// it.
type problem string

func (p problem) Error() string { return string(p) }

func problemf(format string, args ...any) error { return problem(fmt.Sprintf(format, args...)) }

type segKey struct {
	tli   uint32
	segno uint64
}

// archFile is one segment file of the archive.
type archFile struct {
	name       string // on disk
	tli        uint32
	segno      uint64
	partial    bool
	compressed bool
}

// span is the LSN range of one timeline in the newest timeline's history:
// [begin, end), end 0 for the newest timeline.
type span struct {
	tli        uint32
	begin, end uint64
}

type checker struct {
	dir       *os.Root
	segSize   uint64
	systemID  uint64
	files     map[segKey][]archFile
	histories map[uint32]bool
	timelines map[uint32]bool // timelines with segments
	minSeg    uint64
	maxSeg    uint64
	path      []span // oldest timeline first

	// What was checked, for the result.
	magic    uint16
	blcksz   uint32
	segments int
	pages    int
	from, to uint64
	firstSeg string
	lastSeg  string
}

// list reads the archive's directory. Files that are neither WAL nor
// history (the state file, a compression's leftover .tmp) are not the
// archive's WAL and are passed over.
func (c *checker) list() error {
	entries, err := readDir(c.dir)
	if err != nil {
		return err
	}
	c.timelines = map[uint32]bool{}
	first := true
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		base, compressed := strings.CutSuffix(e.Name(), compressedSuffix)
		n, err := ParseName(base, c.segSize)
		if err != nil || (compressed && n.Kind != Segment) {
			continue
		}
		if n.Kind == History {
			c.histories[n.Timeline] = true
			continue
		}
		f := archFile{name: e.Name(), tli: n.Timeline, segno: n.SegNo, partial: n.Kind == Partial, compressed: compressed}
		k := segKey{n.Timeline, n.SegNo}
		c.files[k] = addFile(c.files[k], f)
		c.timelines[n.Timeline] = true
		if first || n.SegNo < c.minSeg {
			c.minSeg = n.SegNo
		}
		if first || n.SegNo > c.maxSeg {
			c.maxSeg = n.SegNo
		}
		first = false
	}
	return nil
}

// addFile adds f to the files of one segment. A NAME.zst beside its NAME
// is a compression that had not yet removed NAME; OpenFile serves NAME
// then, so NAME is the one checked.
func addFile(files []archFile, f archFile) []archFile {
	for i, o := range files {
		if o.partial == f.partial {
			if !f.compressed {
				files[i] = f
			}
			return files
		}
	}
	return append(files, f)
}

func (c *checker) run() error {
	if err := c.buildPath(); err != nil {
		return err
	}
	if len(c.files) == 0 {
		return nil
	}
	islands := c.skipIslands()
	if err := c.placeFiles(); err != nil {
		return err
	}
	for _, f := range islands {
		if err := c.checkFile(f); err != nil {
			return err
		}
	}
	for s := c.minSeg; s <= c.maxSeg; s++ {
		owner, ok := c.owner(s)
		if !ok {
			// placeFiles saw every file on a timeline of the path.
			return problemf("no timeline of the history covers segment %s", segNoName(1, s, c.segSize))
		}
		files := c.files[segKey{owner.tli, s}]
		if len(files) == 0 {
			return problemf("missing segment %s (LSN %s): a gap in the archive", segNoName(owner.tli, s, c.segSize), walstream.FormatLSN(s*c.segSize))
		}
		for _, f := range files {
			if f.partial && !(s == c.maxSeg) {
				return problemf("%s is partial but the archive continues on timeline %d after it (LSN %s)", f.name, owner.tli, walstream.FormatLSN((s+1)*c.segSize))
			}
		}
		// The parents' copies of a switch segment come first: their WAL
		// precedes the switch point.
		for i := range c.path {
			sp := c.path[i]
			if sp.tli == owner.tli {
				break
			}
			if err := c.checkFiles(c.files[segKey{sp.tli, s}]); err != nil {
				return err
			}
		}
		if err := c.checkFiles(files); err != nil {
			return err
		}
	}
	return nil
}

// skipIslands moves the start of the continuity check past the .partial
// ends of past timelines that retention left behind (it never removes
// them) when the rest of the archive begins after them, and returns those
// files, whose pages are still checked.
func (c *checker) skipIslands() []archFile {
	newest := c.path[len(c.path)-1].tli
	var islands []archFile
	first := true
	var minSeg uint64
	for k, files := range c.files {
		for _, f := range files {
			if f.partial && k.tli != newest {
				islands = append(islands, f)
			} else if first || k.segno < minSeg {
				minSeg, first = k.segno, false
			}
		}
	}
	if first {
		return nil // nothing but such partials: check them in order
	}
	islands = slices.DeleteFunc(islands, func(f archFile) bool { return f.segno >= minSeg })
	slices.SortFunc(islands, func(a, b archFile) int { return cmp.Compare(a.segno, b.segno) })
	c.minSeg = minSeg
	return islands
}

// buildPath reads the newest timeline's history and checks that every
// other history file agrees with it.
func (c *checker) buildPath() error {
	newest := uint32(1)
	for tli := range c.timelines {
		newest = max(newest, tli)
	}
	for tli := range c.histories {
		newest = max(newest, tli)
	}
	entries, err := c.readHistory(newest)
	if err != nil {
		return err
	}
	var begin uint64
	for _, e := range entries {
		c.path = append(c.path, span{tli: e.tli, begin: begin, end: e.end})
		begin = e.end
	}
	c.path = append(c.path, span{tli: newest, begin: begin})
	// Every timeline with segments needs its history file (PostgreSQL's
	// recovery reads it), which must be a prefix of the newest one's.
	need := make([]uint32, 0, len(c.timelines)+len(c.histories))
	for tli := range c.timelines {
		need = append(need, tli)
	}
	for tli := range c.histories {
		need = append(need, tli)
	}
	slices.Sort(need)
	for _, tli := range slices.Compact(need) {
		if tli == newest || tli == 1 {
			continue
		}
		h, err := c.readHistory(tli)
		if err != nil {
			return err
		}
		if len(h) > len(entries) || !slices.Equal(h, entries[:len(h)]) {
			return problemf("%s disagrees with %s: the timelines' histories fork", HistoryName(tli), HistoryName(newest))
		}
	}
	return nil
}

// historyEntry is one line of a history file: timeline tli ended at end
// (its switch point).
type historyEntry struct {
	tli uint32
	end uint64
}

// readHistory reads timeline tli's history file (none for timeline 1).
func (c *checker) readHistory(tli uint32) ([]historyEntry, error) {
	if tli == 1 {
		return nil, nil
	}
	name := HistoryName(tli)
	if !c.histories[tli] {
		return nil, problemf("missing history file %s: timeline %d has no known parent", name, tli)
	}
	f, err := c.dir.Open(name)
	if err != nil {
		return nil, fileError("open", name, err)
	}
	defer f.Close()
	entries, err := parseHistory(f, tli)
	if err != nil {
		var p problem
		if errors.As(err, &p) {
			return nil, problemf("%s: %s", name, p)
		}
		return nil, fileError("read", name, err)
	}
	return entries, nil
}

// parseHistory parses the history file of timeline tli as PostgreSQL's
// readTimeLineHistory does: per line, after leading white space, nothing
// or a '#' comment is skipped; otherwise "parentTLI<white space>X/X" and
// whatever reason follows. Parents increase and are below tli. The switch
// points must not decrease either (PostgreSQL does not check, but a
// history that goes back would make the LSN ranges of its timelines
// overlap).
func parseHistory(r io.Reader, tli uint32) ([]historyEntry, error) {
	var out []historyEntry
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimLeft(sc.Text(), " \t\r\n\v\f")
		if s == "" || s[0] == '#' {
			continue
		}
		parent, rest, ok := scanUint(s, 10, 32)
		if !ok {
			return nil, problemf("line %d: syntax error: expected a timeline ID", line)
		}
		rest = strings.TrimLeft(rest, " \t\r\n\v\f")
		hi, rest, ok1 := scanUint(rest, 16, 32)
		rest, ok2 := strings.CutPrefix(rest, "/")
		lo, _, ok3 := scanUint(rest, 16, 32)
		if !ok1 || !ok2 || !ok3 {
			return nil, problemf("line %d: syntax error: expected a write-ahead log switchpoint location", line)
		}
		e := historyEntry{tli: uint32(parent), end: hi<<32 | lo}
		if n := len(out); n > 0 && e.tli <= out[n-1].tli {
			return nil, problemf("line %d: timeline IDs must be in increasing sequence", line)
		}
		if n := len(out); n > 0 && e.end < out[n-1].end {
			return nil, problemf("line %d: switch point %s precedes the previous one", line, walstream.FormatLSN(e.end))
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if n := len(out); n > 0 && out[n-1].tli >= tli {
		return nil, problemf("timeline IDs must be less than the child timeline's ID %d", tli)
	}
	return out, nil
}

// scanUint reads the digits at the start of s as sscanf's %u or %X would
// (without a sign), refusing an empty number or one that overflows bits.
func scanUint(s string, base, bits int) (uint64, string, bool) {
	digits := "0123456789"
	if base == 16 {
		digits = "0123456789abcdefABCDEF"
	}
	i := 0
	for i < len(s) && strings.IndexByte(digits, s[i]) >= 0 {
		i++
	}
	if i == 0 {
		return 0, s, false
	}
	var v uint64
	for _, ch := range s[:i] {
		d := uint64(strings.IndexRune(digits, ch))
		if d >= 16 {
			d -= 6 // upper-case hex letters follow the lower-case ones
		}
		v = v*uint64(base) + d
		if v >= 1<<bits {
			return 0, s, false
		}
	}
	return v, s[i:], true
}

// spanOf returns the path's span of timeline tli.
func (c *checker) spanOf(tli uint32) (span, bool) {
	for _, sp := range c.path {
		if sp.tli == tli {
			return sp, true
		}
	}
	return span{}, false
}

// segRange returns the first and last segment numbers that may hold WAL of
// the span; the newest timeline has no last.
func (c *checker) segRange(sp span) (first, last uint64, bounded bool) {
	first = sp.begin / c.segSize
	if sp.end == 0 {
		return first, 0, false
	}
	if sp.end <= sp.begin {
		// A timeline that ended where it began holds no WAL of its own.
		return first, first, sp.end%c.segSize != 0
	}
	return first, (sp.end - 1) / c.segSize, true
}

// placeFiles checks that every segment lies on a timeline of the history,
// inside the range the timeline owned, and that the parent's copy of a
// switch segment is kept when the archive held the parent before.
func (c *checker) placeFiles() error {
	keys := make([]segKey, 0, len(c.files))
	for k := range c.files {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].segno != keys[j].segno {
			return keys[i].segno < keys[j].segno
		}
		return keys[i].tli < keys[j].tli
	})
	newest := c.path[len(c.path)-1].tli
	for _, k := range keys {
		name := c.files[k][0].name
		sp, ok := c.spanOf(k.tli)
		if !ok {
			return problemf("%s is on timeline %d, which is not in the history of timeline %d", name, k.tli, newest)
		}
		first, last, bounded := c.segRange(sp)
		switch {
		case k.segno < first:
			return problemf("%s precedes the start of timeline %d at LSN %s", name, k.tli, walstream.FormatLSN(sp.begin))
		case bounded && k.segno > last:
			return problemf("%s is past the switch of timeline %d to the next at LSN %s: the archive holds WAL the history abandoned", name, k.tli, walstream.FormatLSN(sp.end))
		}
		for _, f := range c.files[k] {
			if f.partial && bounded && k.segno != last {
				return problemf("%s is partial but timeline %d continues after it (LSN %s)", f.name, k.tli, walstream.FormatLSN((k.segno+1)*c.segSize))
			}
		}
	}
	for i := 1; i < len(c.path); i++ {
		parent, child := c.path[i-1], c.path[i]
		switchSeg := child.begin / c.segSize
		if child.begin%c.segSize == 0 || !c.timelines[parent.tli] || c.minSeg >= switchSeg {
			continue
		}
		if len(c.files[segKey{parent.tli, switchSeg}]) == 0 {
			return problemf("missing %s.partial: timeline %d's WAL up to its switch point %s", segNoName(parent.tli, switchSeg, c.segSize), parent.tli, walstream.FormatLSN(child.begin))
		}
	}
	return nil
}

// owner returns the timeline whose file holds segment s in a recovery: the
// newest of the path's timelines with segments that had begun by s.
func (c *checker) owner(s uint64) (span, bool) {
	for i := len(c.path) - 1; i >= 0; i-- {
		sp := c.path[i]
		if c.timelines[sp.tli] && sp.begin/c.segSize <= s {
			return sp, true
		}
	}
	return span{}, false
}

func (c *checker) checkFiles(files []archFile) error {
	for _, f := range files {
		if err := c.checkFile(f); err != nil {
			return err
		}
	}
	return nil
}

// checkFile checks the pages of one segment file.
func (c *checker) checkFile(f archFile) error {
	// OpenFile, as restore_command is served: NAME before NAME.zst,
	// decompressed as it is read, and refused when not a segment's size.
	logical, _ := strings.CutSuffix(f.name, compressedSuffix)
	rc, _, err := OpenFile(c.dir, logical, c.segSize)
	if err != nil {
		return problemf("%s cannot be read: %v", f.name, err)
	}
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 64<<10)
	start := f.segno * c.segSize
	page := make([]byte, max(c.blcksz, defaultBlckSz))
	var rec lastRecord
	var lastTLI uint32
	zeros := false // the zeros of the segment's rest have begun
	for off := uint64(0); off < c.segSize; {
		// The first page's long header says how long a page is; in the
		// zeros any step does.
		n := uint64(c.blcksz)
		switch {
		case zeros:
			n = min(uint64(len(page)), c.segSize-off)
		case off == 0:
			n = longHeaderSize
		}
		if _, err := io.ReadFull(r, page[:n]); err != nil {
			return c.readProblem(f, off, err)
		}
		lsn := start + off
		if !zeros && (f.partial || off > 0) && allZero(page[:min(n, shortHeaderSize)]) {
			// A partial segment's unwritten rest, or what follows an
			// XLOG_SWITCH record, which PostgreSQL writes as zeros.
			if !f.partial {
				if err := rec.switchBefore(lsn); err != nil {
					return problemf("%s: zero page at LSN %s: %v", f.name, walstream.FormatLSN(lsn), err)
				}
			}
			zeros = true
		}
		if zeros {
			if i := firstNonZero(page[:n]); i < int(n) {
				return problemf("%s: bytes after the zeros of the segment's rest, at LSN %s", f.name, walstream.FormatLSN(lsn+uint64(i)))
			}
			off += n
			continue
		}
		if err := c.checkHeader(f, page[:n], lsn, off == 0, &lastTLI); err != nil {
			return err
		}
		hdrSize := shortHeaderSize
		if off == 0 {
			if uint64(len(page)) < uint64(c.blcksz) {
				page = append(page[:n], make([]byte, int(c.blcksz)-int(n))...)
			}
			if _, err := io.ReadFull(r, page[n:c.blcksz]); err != nil {
				return c.readProblem(f, n, err)
			}
			n, hdrSize = uint64(c.blcksz), longHeaderSize
		}
		rec.page(page[:n], lsn, hdrSize)
		c.pages++
		c.to = lsn + n
		off += n
	}
	// A segment holds exactly segSize bytes.
	if n, err := r.Read(make([]byte, 1)); n > 0 || (err != nil && err != io.EOF) {
		if n > 0 {
			return problemf("%s is longer than a segment (%d bytes)", f.name, c.segSize)
		}
		return c.readProblem(f, c.segSize, err)
	}
	c.segments++
	if c.firstSeg == "" {
		c.firstSeg, c.from = f.name, start
	}
	c.lastSeg = f.name
	switch {
	case !f.partial:
		c.to = start + c.segSize // zeros after a switch: WAL goes on in the next segment
	case c.to < start:
		c.to = start
	}
	return nil
}

// The record header fields lastRecord reads (XLogRecord).
const (
	recordHeaderSize = 24 // SizeOfXLogRecord
	rmXLOG           = 0  // RM_XLOG_ID
	xlogSwitch       = 0x40
	xlpFirstIsCont   = 0x0001 // XLP_FIRST_IS_CONTRECORD
)

// lastRecord follows the record boundaries of a segment page by page (by
// xlp_rem_len and the records' xl_tot_len) and keeps the header of the
// last record that began, which may be split across two pages: only an
// XLOG_SWITCH may be followed by the zeros of a complete segment.
type lastRecord struct {
	hdr   [recordHeaderSize]byte
	have  int    // bytes of hdr known
	start uint64 // the record's LSN
	seen  bool
}

// page follows the records of page p at LSN lsn, whose header takes
// hdrSize bytes.
func (r *lastRecord) page(p []byte, lsn uint64, hdrSize int) {
	le := binary.LittleEndian
	pos := uint64(hdrSize)
	size := uint64(len(p))
	if le.Uint16(p[2:])&xlpFirstIsCont != 0 {
		rem := uint64(le.Uint32(p[16:]))
		if r.seen && r.have < recordHeaderSize {
			r.have += copy(r.hdr[r.have:], p[pos:min(size, pos+rem)])
		}
		if rem >= size-pos {
			return // the whole page continues a record
		}
		pos = maxAlign(pos + rem)
	}
	for pos < size {
		// pos and size are multiples of 8: xl_tot_len is in the page.
		if le.Uint32(p[pos:]) == 0 {
			return // the rest of the page is unused
		}
		r.seen, r.start = true, lsn+pos
		r.have = copy(r.hdr[:], p[pos:])
		if r.have < recordHeaderSize {
			return // the header goes on in the next page
		}
		pos = maxAlign(pos + uint64(le.Uint32(r.hdr[:])))
	}
}

// switchBefore checks that the last record is an XLOG_SWITCH that ended
// by lsn, where zeros begin.
func (r *lastRecord) switchBefore(lsn uint64) error {
	switch {
	case !r.seen:
		return errors.New("no record before it")
	case r.have < recordHeaderSize:
		return errors.New("the last record's header continues into it")
	case r.start+uint64(binary.LittleEndian.Uint32(r.hdr[:])) > lsn:
		return errors.New("the last record continues into it")
	case r.hdr[17] != rmXLOG || r.hdr[16]&0xF0 != xlogSwitch:
		return errors.New("the segment's WAL does not end in an XLOG_SWITCH record")
	}
	return nil
}

// maxAlign rounds up to PostgreSQL's MAXALIGN on 64-bit machines.
func maxAlign(n uint64) uint64 { return (n + 7) &^ 7 }

// readProblem reports a failure to read f at offset off: a file of the
// archive that cannot be read is a problem of the archive.
func (c *checker) readProblem(f archFile, off uint64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("it ends before the segment's %d bytes", c.segSize)
	}
	return problemf("%s cannot be read at LSN %s: %v", f.name, walstream.FormatLSN(f.segno*c.segSize+off), err)
}

// checkHeader checks one page header; long says it is the segment's first
// page.
func (c *checker) checkHeader(f archFile, h []byte, lsn uint64, long bool, lastTLI *uint32) error {
	le := binary.LittleEndian
	magic, info, tli, addr := le.Uint16(h[0:]), le.Uint16(h[2:]), le.Uint32(h[4:]), le.Uint64(h[8:])
	at := func(what string, args ...any) error {
		return problemf("%s: page at LSN %s: %s", f.name, walstream.FormatLSN(lsn), fmt.Sprintf(what, args...))
	}
	if c.magic == 0 {
		if magic&0xFF00 != 0xD100 && magic&0xFF00 != 0xD000 {
			return at("xlp_magic 0x%04X is not a WAL page magic", magic)
		}
		c.magic = magic
	}
	switch {
	case magic != c.magic:
		return at("xlp_magic 0x%04X, the archive's first page has 0x%04X", magic, c.magic)
	case info&^xlpAllFlags != 0:
		return at("invalid xlp_info 0x%04X", info)
	case addr != lsn:
		return at("xlp_pageaddr is %s", walstream.FormatLSN(addr))
	case tli == 0 || tli > f.tli:
		return at("xlp_tli %d, the file is on timeline %d", tli, f.tli)
	case tli < *lastTLI:
		return at("xlp_tli %d after %d in the same file", tli, *lastTLI)
	}
	*lastTLI = tli
	if !long {
		if info&xlpLongHeader != 0 {
			return at("a long header inside the segment")
		}
		return nil
	}
	if info&xlpLongHeader == 0 {
		return at("the first page of a segment lacks the long header")
	}
	sysid, segSize, blcksz := le.Uint64(h[24:]), le.Uint32(h[32:]), le.Uint32(h[36:])
	if c.blcksz == 0 {
		if blcksz < longHeaderSize || blcksz&(blcksz-1) != 0 || uint64(blcksz) > c.segSize {
			return at("invalid xlp_xlog_blcksz %d", blcksz)
		}
		c.blcksz = blcksz
	}
	switch {
	case c.systemID != 0 && sysid != c.systemID:
		return at("xlp_sysid %d, the archive's system is %d", sysid, c.systemID)
	case uint64(segSize) != c.segSize:
		return at("xlp_seg_size %d, the archive's segments have %d bytes", segSize, c.segSize)
	case blcksz != c.blcksz:
		return at("xlp_xlog_blcksz %d, the archive's pages have %d bytes", blcksz, c.blcksz)
	}
	return nil
}

func allZero(p []byte) bool { return firstNonZero(p) == len(p) }

func firstNonZero(p []byte) int {
	for i, b := range p {
		if b != 0 {
			return i
		}
	}
	return len(p)
}

// result says what was checked.
func (c *checker) result() CheckResult {
	res := CheckResult{Segments: c.segments, Pages: c.pages, From: c.from, To: c.to}
	if c.segments == 0 {
		res.Checked = "the archive holds no WAL segment"
		return res
	}
	tlis := make([]string, 0, len(c.path))
	for _, sp := range c.path {
		if c.timelines[sp.tli] {
			tlis = append(tlis, fmt.Sprint(sp.tli))
		}
	}
	res.Checked = fmt.Sprintf("%d segments %s to %s (LSN %s to %s), timelines %s, %d pages",
		c.segments, c.firstSeg, c.lastSeg, walstream.FormatLSN(c.from), walstream.FormatLSN(c.to), strings.Join(tlis, ", "), c.pages)
	if c.pages == 0 {
		return res // only unwritten partial segments
	}
	version := "unknown PostgreSQL version"
	if v, ok := pageMagics[c.magic]; ok {
		version = "PostgreSQL " + v
	}
	res.Checked += fmt.Sprintf(" of %d bytes, page magic 0x%04X (%s)", c.blcksz, c.magic, version)
	return res
}
