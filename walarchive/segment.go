package walarchive

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/pgverbs/pgverbs/walstream"
)

// Kind tells the three kinds of file the archive holds apart.
type Kind uint8

const (
	// Segment is a complete WAL segment, NAME.
	Segment Kind = iota + 1
	// Partial is a segment still being written, or the last one of a
	// timeline that ended inside it: NAME.partial.
	Partial
	// History is a timeline history file, XXXXXXXX.history.
	History
)

// partialSuffix marks a segment that is not complete, as pg_receivewal
// names it; restore_command asks for the name without it.
const partialSuffix = ".partial"

// historySuffix ends a timeline history file's name.
const historySuffix = ".history"

// Name is a parsed WAL file name.
type Name struct {
	Kind     Kind
	Timeline uint32
	// SegNo is the segment number (the segment's start LSN divided by
	// the segment size); 0 for a history file.
	SegNo uint64
}

// ValidSegmentSize reports whether size is a WAL segment size PostgreSQL
// accepts (its IsValidWalSegSize): a power of two from 1 MB to 1 GB.
// Everything here divides by it, and a segment number only maps to one
// name for such sizes.
func ValidSegmentSize(size uint64) bool {
	return size >= 1<<20 && size <= 1<<30 && size&(size-1) == 0
}

// segsPerID is how many segments of segSize the low eight hex digits of a
// name count before the middle eight move on (XLogSegmentsPerXLogId).
func segsPerID(segSize uint64) uint64 { return 0x100000000 / segSize }

// SegmentName returns the name of the segment of segSize bytes that holds
// lsn on timeline tli (XLogFileName).
func SegmentName(tli uint32, lsn, segSize uint64) string {
	return segNoName(tli, lsn/segSize, segSize)
}

func segNoName(tli uint32, segno, segSize uint64) string {
	per := segsPerID(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, segno/per, segno%per)
}

// HistoryName returns the name of timeline tli's history file.
func HistoryName(tli uint32) string { return fmt.Sprintf("%08X%s", tli, historySuffix) }

// FileName returns n's file name for segments of segSize bytes; ParseName
// undoes it.
func (n Name) FileName(segSize uint64) string {
	switch n.Kind {
	case History:
		return HistoryName(n.Timeline)
	case Partial:
		return segNoName(n.Timeline, n.SegNo, segSize) + partialSuffix
	default:
		return segNoName(n.Timeline, n.SegNo, segSize)
	}
}

// ParseName parses a WAL file name of an archive whose segments are
// segSize bytes, and refuses anything that is not exactly a name
// SegmentName or HistoryName writes (optionally with .partial after a
// segment's): that makes a parsed name safe to open in the archive.
func ParseName(name string, segSize uint64) (Name, error) {
	if !ValidSegmentSize(segSize) {
		return Name{}, fmt.Errorf("walarchive: invalid WAL segment size %d", segSize)
	}
	bad := func(why string) (Name, error) {
		return Name{}, fmt.Errorf("walarchive: %q is not a WAL file name: %s", name, why)
	}
	if hex, ok := strings.CutSuffix(name, historySuffix); ok {
		tli, ok := parseHex8(hex)
		if !ok || len(hex) != 8 {
			return bad("a history file is 8 upper-case hex digits and .history")
		}
		if tli == 0 {
			return bad("timeline 0 does not exist")
		}
		return Name{Kind: History, Timeline: tli}, nil
	}
	kind := Segment
	if hex, ok := strings.CutSuffix(name, partialSuffix); ok {
		kind, name = Partial, hex
	}
	if len(name) != 24 {
		return bad("a segment is 24 upper-case hex digits")
	}
	tli, ok1 := parseHex8(name[:8])
	log, ok2 := parseHex8(name[8:16])
	seg, ok3 := parseHex8(name[16:])
	switch {
	case !ok1 || !ok2 || !ok3:
		return bad("a segment is 24 upper-case hex digits")
	case tli == 0:
		return bad("timeline 0 does not exist")
	case uint64(seg) >= segsPerID(segSize):
		// Such a name would alias the first segments of the next
		// "log": PostgreSQL never writes it.
		return bad(fmt.Sprintf("segment part %08X is too large for %d-byte segments", seg, segSize))
	}
	return Name{Kind: kind, Timeline: tli, SegNo: uint64(log)*segsPerID(segSize) + uint64(seg)}, nil
}

// parseHex8 parses up to eight upper-case hex digits; strconv alone would
// take lower case and signs.
func parseHex8(s string) (uint32, bool) {
	if s == "" || len(s) > 8 || strings.Trim(s, "0123456789ABCDEF") != "" {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err == nil
}

// ErrDiffers is returned by SegmentFile.Write when a complete segment
// already holds other bytes where the write would go: a complete segment
// is never overwritten.
var ErrDiffers = errors.New("walarchive: the complete segment holds different bytes")

// SegmentFile writes one WAL segment (see the package documentation for
// the order of operations). It is owned by one goroutine; Durable may be
// read from any (a status reporter, SHOW WAL ARCHIVE).
type SegmentFile struct {
	dir     *os.Root
	f       *os.File
	name    string // NAME, without .partial
	start   uint64 // LSN of the segment's first byte
	size    uint64
	sealed  bool          // NAME existed at Open: writes are compared, not written
	written uint64        // LSN after the last byte written (or compared)
	durable atomic.Uint64 // LSN after the last byte known to be on disk
}

// OpenSegment opens segment segno of timeline tli, segSize bytes, in dir.
//
// resume is the LSN up to which the caller holds the segment's existing
// bytes for good; writing continues there. For a new segment it must be
// the segment's start. For an existing NAME.partial it is the caller's
// choice: the segment's start is always safe (the same WAL is written
// again over itself, and a slot keeps the segment on the upstream because
// its restart_lsn is never past the flush position reported, which lies in
// this segment); the end of the valid pages found by reading the file is
// the other choice. Either way OpenSegment fsyncs the file first: after
// a crash of pgverbs alone, bytes a scan found may still be only in the
// page cache. For an existing complete NAME, resume is where the
// comparison of writes with its bytes begins.
func OpenSegment(dir *os.Root, tli uint32, segno, segSize, resume uint64) (*SegmentFile, error) {
	if !ValidSegmentSize(segSize) {
		return nil, fmt.Errorf("walarchive: invalid WAL segment size %d", segSize)
	}
	if tli == 0 {
		return nil, errors.New("walarchive: timeline 0 does not exist")
	}
	if segno >= (1<<64-1)/segSize { // End must not wrap around
		return nil, fmt.Errorf("walarchive: segment number %d is past the end of WAL", segno)
	}
	s := &SegmentFile{dir: dir, name: segNoName(tli, segno, segSize), start: segno * segSize, size: segSize}
	if resume < s.start || resume-s.start > segSize {
		return nil, fmt.Errorf("walarchive: %s: resume position %s is outside the segment", s.name, walstream.FormatLSN(resume))
	}
	var err error
	switch s.f, err = dir.Open(s.name); {
	case err == nil:
		s.sealed = true
		if err = s.checkSize(s.name, false); err == nil {
			// Whoever put it there (a copy, a crash before Complete's
			// directory fsync) may not have synced it; comparisons then
			// count as durable.
			if err = s.f.Sync(); err != nil {
				err = fileError("sync", s.name, err)
			}
		}
	case errors.Is(err, fs.ErrNotExist):
		err = s.openPartial(resume)
	default:
		err = fileError("open", s.name, err)
	}
	if err == nil {
		err = s.syncDir()
	}
	if err != nil {
		if s.f != nil {
			s.f.Close()
		}
		return nil, err
	}
	s.written = resume
	s.durable.Store(resume)
	return s, nil
}

// openPartial opens NAME.partial, creating and preallocating it when it
// does not exist, and makes its size and content durable.
func (s *SegmentFile) openPartial(resume uint64) error {
	partial := s.name + partialSuffix
	f, err := s.dir.OpenFile(partial, os.O_RDWR, 0)
	switch {
	case err == nil:
		s.f = f
		if err := s.checkSize(partial, true); err != nil {
			return err
		}
	case errors.Is(err, fs.ErrNotExist):
		if resume != s.start {
			return fmt.Errorf("walarchive: %s does not exist: a new segment is written from its start, not from %s", partial, walstream.FormatLSN(resume))
		}
		// 0600 as pg_receivewal: WAL is the whole database.
		f, err := s.dir.OpenFile(partial, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fileError("create", partial, err)
		}
		s.f = f
		if err := preallocate(f, 0, int64(s.size)); err != nil {
			// The file holds no WAL yet, only what preallocation put
			// there: removing it leaves the archive as it was, and a
			// short .partial would be refused at the next attempt.
			f.Close()
			s.f = nil
			_ = s.dir.Remove(partial)
			return fileError("preallocate", partial, err)
		}
	default:
		return fileError("open", partial, err)
	}
	// A full fsync (not fdatasync) once per segment: the new size must be
	// on disk before any fdatasync of data may count as durable.
	if err := s.f.Sync(); err != nil {
		return fileError("sync", partial, err)
	}
	return nil
}

// checkSize refuses a file of the wrong size; grow allows a NAME.partial
// that is shorter (a crash during the preallocation by zeros: beyond what
// the caller resumes from, nothing in it counts) to be preallocated again.
// Nothing is ever truncated.
func (s *SegmentFile) checkSize(name string, grow bool) error {
	fi, err := s.f.Stat()
	if err != nil {
		return fileError("stat", name, err)
	}
	size := fi.Size()
	if grow && size < int64(s.size) {
		if err := preallocate(s.f, size, int64(s.size)); err != nil {
			return fileError("preallocate", name, err)
		}
		size = int64(s.size)
	}
	if size != int64(s.size) {
		return fmt.Errorf("walarchive: %s has %d bytes, a segment has %d", name, size, s.size)
	}
	return nil
}

// writeZeros preallocates by writing zeros from byte from to size, where
// the file system cannot allocate (no fallocate).
func writeZeros(f *os.File, from, size int64) error {
	zeros := make([]byte, 64<<10)
	for off := from; off < size; {
		n, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off)
		if err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// Name returns the segment's complete file name (without .partial).
func (s *SegmentFile) Name() string { return s.name }

// Start returns the LSN of the segment's first byte.
func (s *SegmentFile) Start() uint64 { return s.start }

// End returns the LSN just past the segment's last byte.
func (s *SegmentFile) End() uint64 { return s.start + s.size }

// Written returns the LSN after the last byte written; the next Write
// must start there.
func (s *SegmentFile) Written() uint64 { return s.written }

// Durable returns the LSN up to which the segment is on disk: the only
// position that may be reported upstream as flushed.
func (s *SegmentFile) Durable() uint64 { return s.durable.Load() }

// Write stores WAL bytes that start at LSN lsn, which must be Written
// (the caller skips what it has already written), and must not run past
// End (the caller splits at segment boundaries); a write that breaks
// these rules changes nothing. On a complete segment the bytes are
// compared with the file's instead (ErrDiffers). After an I/O error or a
// difference Written goes back to Durable.
func (s *SegmentFile) Write(lsn uint64, p []byte) error {
	if lsn != s.written {
		return fmt.Errorf("walarchive: %s: write at %s, expected %s", s.name, walstream.FormatLSN(lsn), walstream.FormatLSN(s.written))
	}
	if uint64(len(p)) > s.End()-lsn {
		return fmt.Errorf("walarchive: %s: %d bytes at %s run past the segment's end %s", s.name, len(p), walstream.FormatLSN(lsn), walstream.FormatLSN(s.End()))
	}
	off := int64(lsn - s.start)
	var err error
	if s.sealed {
		err = s.compare(p, off)
	} else if _, err = s.f.WriteAt(p, off); err != nil {
		err = fileError("write", s.name+partialSuffix, err)
	}
	if err != nil {
		s.written = s.Durable()
		return err
	}
	s.written += uint64(len(p))
	return nil
}

// compare checks that a complete segment holds p at off.
func (s *SegmentFile) compare(p []byte, off int64) error {
	have := make([]byte, len(p))
	if _, err := s.f.ReadAt(have, off); err != nil {
		return fileError("read", s.name, err)
	}
	if !bytes.Equal(have, p) {
		return fmt.Errorf("%w: %s at %s", ErrDiffers, s.name, walstream.FormatLSN(s.start+uint64(off)))
	}
	return nil
}

// Sync makes what was written durable (one fdatasync) and moves Durable
// there. On error Written goes back to Durable: the caller writes again
// from there (see the package documentation for why).
func (s *SegmentFile) Sync() error {
	if s.sealed {
		// Synced at Open; the compared bytes are those already there.
		s.durable.Store(s.written)
		return nil
	}
	if err := fdatasync(s.f); err != nil {
		s.written = s.Durable()
		return fileError("fdatasync", s.name+partialSuffix, err)
	}
	s.durable.Store(s.written)
	return nil
}

// Complete ends a segment of which every byte has been written: Sync,
// rename NAME.partial to NAME, fsync the directory so the rename lasts,
// close. For a segment that was complete at Open it checks that every
// byte was compared and closes it. On error the file stays as it is,
// open, for the caller to retry or Close.
func (s *SegmentFile) Complete() error {
	if s.written != s.End() {
		return fmt.Errorf("walarchive: %s is not complete: written up to %s of %s", s.name, walstream.FormatLSN(s.written), walstream.FormatLSN(s.End()))
	}
	if err := s.Sync(); err != nil {
		return err
	}
	if !s.sealed {
		if err := s.dir.Rename(s.name+partialSuffix, s.name); err != nil {
			return fileError("rename", s.name+partialSuffix, err)
		}
		s.sealed = true
		if err := s.syncDir(); err != nil {
			return err
		}
	}
	return s.Close()
}

// Close closes the file without completing it: a NAME.partial stays, with
// what Durable says is on disk (and maybe more).
func (s *SegmentFile) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	if err != nil {
		return fileError("close", s.name, err)
	}
	return nil
}

// syncDir fsyncs the archive directory, which makes its entries (a new
// NAME.partial, a rename) survive a crash.
func (s *SegmentFile) syncDir() error { return syncDir(s.dir) }

// fileError wraps an os or syscall error with what was done to which
// file; errors.Is(err, syscall.ENOSPC) still sees a full disk.
func fileError(op, name string, err error) error {
	return fmt.Errorf("walarchive: %s %s: %w", op, name, err)
}
