package backup

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"

	"github.com/pgverbs/pgverbs/walarchive"
)

// The WAL layout verifyWAL reads, as PostgreSQL's xlog_internal.h and
// xlogrecord.h define it (little-endian, MAXALIGN 8: the machines pgverbs
// runs on).
const (
	walShortHeader   = 24 // SizeOfXLogShortPHD
	walLongHeader    = 40 // SizeOfXLogLongPHD
	xlpFirstIsCont   = 0x0001
	xlpLongHeaderBit = 0x0002
	xlpAllFlags      = 0x000F
	recordHeader     = 24 // SizeOfXLogRecord
	crcOffset        = 20 // offsetof(XLogRecord, xl_crc)
	maxRecordSize    = 1020 << 20
	dataBlockSize    = 8192 // BLCKSZ, for block images

	xlrMaxBlockID      = 32
	xlrBlockDataShort  = 255
	xlrBlockDataLong   = 254
	xlrBlockOrigin     = 253
	xlrBlockToplevel   = 252
	bkpBlockHasImage   = 0x10
	bkpBlockHasData    = 0x20
	bkpBlockSameRel    = 0x80
	bkpImageHasHole    = 0x01
	rmXLOGID           = 0
	xlogSwitchInfo     = 0x40
	rmMaxBuiltinID     = 63  // generous: 21 in PostgreSQL 15-17
	rmMinCustomID      = 128 // RM_MIN_CUSTOM_ID
	pageMagicBefore15  = 0xD10D
	walSegSizeFallback = 16 << 20
)

// walReader reads the pages of one timeline's WAL forward, segment by
// segment, checking every page header it hands out as
// XLogReaderValidatePageHeader does.
type walReader struct {
	ctx     context.Context
	src     *backupSegments
	tli     uint32
	segSize uint64
	blcksz  uint64
	magic   uint16
	lastTLI uint32

	segno   uint64
	seg     io.ReadCloser
	r       *bufio.Reader
	segName string
	next    uint64 // offset in the segment of the next page to read

	page    []byte
	pageLSN uint64
	have    bool
}

// walProblem is a WAL problem: the reading stops there.
type walProblem struct {
	seg string
	msg string
}

func (e *walProblem) Error() string { return e.msg }

func (w *walReader) fail(format string, args ...any) error {
	return &walProblem{seg: w.segName, msg: fmt.Sprintf(format, args...)}
}

// open opens segment segno and reads and checks its first page.
func (w *walReader) open(segno uint64) error {
	w.close()
	w.segno, w.next, w.have = segno, 0, false
	w.segName = walarchive.SegmentName(w.tli, segno*w.segSize, w.segSize)
	rc, err := w.src.OpenSegment(w.ctx, w.segName, w.segSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return w.fail("WAL segment %s is missing (needed for LSN %s; looked in %s)", w.segName, LSN(segno*w.segSize), w.src.where(w.segName))
		}
		return w.fail("WAL segment %s cannot be read: %v", w.segName, err)
	}
	w.seg, w.r = rc, bufio.NewReaderSize(rc, 64<<10)
	return w.readPage(true)
}

func (w *walReader) close() {
	if w.seg != nil {
		w.seg.Close()
		w.seg, w.r = nil, nil
	}
}

// readPage reads the page at w.next into w.page; check says whether to
// check its header (pages before the range's start are skipped).
func (w *walReader) readPage(check bool) error {
	lsn := w.segno*w.segSize + w.next
	if w.next == 0 && w.blcksz == 0 {
		hdr := make([]byte, walLongHeader)
		if _, err := io.ReadFull(w.r, hdr); err != nil {
			return w.short(lsn, err)
		}
		w.blcksz = uint64(binary.LittleEndian.Uint32(hdr[36:]))
		if w.blcksz < 1024 || w.blcksz&(w.blcksz-1) != 0 || w.blcksz > 65536 || w.blcksz > w.segSize {
			return w.fail("invalid XLOG_BLCKSZ %d in the long page header of WAL segment %s", w.blcksz, w.segName)
		}
		w.page = make([]byte, w.blcksz)
		copy(w.page, hdr)
		if _, err := io.ReadFull(w.r, w.page[walLongHeader:]); err != nil {
			return w.short(lsn, err)
		}
	} else if _, err := io.ReadFull(w.r, w.page); err != nil {
		return w.short(lsn, err)
	}
	w.next += w.blcksz
	w.pageLSN, w.have = lsn, true
	if !check {
		return nil
	}
	return w.checkHeader()
}

func (w *walReader) short(lsn uint64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return w.fail("WAL segment %s ends before LSN %s: it is shorter than the segment size %d", w.segName, LSN(lsn+1), w.segSize)
	}
	return w.fail("WAL segment %s cannot be read at LSN %s: %v", w.segName, LSN(lsn), err)
}

// checkHeader checks the header of the page in w.page.
func (w *walReader) checkHeader() error {
	le := binary.LittleEndian
	h := w.page
	magic, info, tli, addr := le.Uint16(h[0:]), le.Uint16(h[2:]), le.Uint32(h[4:]), le.Uint64(h[8:])
	off := w.pageLSN % w.segSize
	at := fmt.Sprintf("in WAL segment %s, LSN %s, offset %d", w.segName, LSN(w.pageLSN), off)
	if w.magic == 0 && magic&0xFF00 == 0xD100 {
		w.magic = magic
	}
	switch {
	case magic != w.magic:
		return w.fail("invalid magic number %04X %s", magic, at)
	case info&^xlpAllFlags != 0:
		return w.fail("invalid info bits %04X %s", info, at)
	case off == 0 && info&xlpLongHeaderBit == 0:
		return w.fail("invalid info bits %04X %s", info, at)
	case addr != w.pageLSN:
		return w.fail("unexpected pageaddr %s %s", LSN(addr), at)
	case tli < w.lastTLI:
		return w.fail("out-of-sequence timeline ID %d (after %d) %s", tli, w.lastTLI, at)
	}
	w.lastTLI = tli
	if info&xlpLongHeaderBit != 0 {
		if segSize := uint64(le.Uint32(h[32:])); segSize != w.segSize {
			return w.fail("invalid WAL segment size in the page header (%d, expected %d) %s", segSize, w.segSize, at)
		}
		if blcksz := uint64(le.Uint32(h[36:])); blcksz != w.blcksz {
			return w.fail("invalid XLOG_BLCKSZ in the page header (%d, expected %d) %s", blcksz, w.blcksz, at)
		}
	}
	return nil
}

// pageAt makes the page holding lsn the current one, reading forward.
func (w *walReader) pageAt(lsn uint64) error {
	segno := lsn / w.segSize
	if w.seg == nil || segno != w.segno {
		if err := w.open(segno); err != nil {
			return err
		}
	}
	want := lsn - lsn%w.blcksz
	for !w.have || w.pageLSN != want {
		if w.pageLSN > want {
			return w.fail("internal error: WAL read backwards to %s", LSN(lsn))
		}
		if err := w.ctx.Err(); err != nil {
			return err
		}
		// Pages before the wanted one are skipped unchecked, as
		// pg_waldump never reads them.
		if err := w.readPage(w.segno*w.segSize+w.next == want); err != nil {
			return err
		}
	}
	return nil
}

// headerSize is the size of the current page's header.
func (w *walReader) headerSize() uint64 {
	if binary.LittleEndian.Uint16(w.page[2:])&xlpLongHeaderBit != 0 {
		return walLongHeader
	}
	return walShortHeader
}

// verifyWAL reads every record of r's WAL as pg_waldump --start --end
// would, and returns how many it read and the first problem (nil for
// none): every page header from the one holding Start on (and each
// segment's first page), each record's header (length, resource manager,
// xl_prev chaining to the previous record), its continuation over page
// boundaries (XLP_FIRST_IS_CONTRECORD with the right xlp_rem_len), its
// CRC-32C, and its block headers (DecodeXLogRecord's checks); an
// XLOG_SWITCH record skips to the next segment. Reading stops, without a
// problem, at the first record that would end past End.
func verifyWAL(ctx context.Context, src *backupSegments, r WALRange, segSize uint64) (int, *Problem) {
	defer src.close()
	if segSize == 0 {
		segSize = findSegSize(ctx, src, r)
	}
	w := &walReader{ctx: ctx, src: src, tli: r.Timeline, segSize: segSize}
	defer w.close()
	rd := recordReader{w: w, end: uint64(r.End)}
	n, err := rd.run(uint64(r.Start))
	if err == nil {
		return n, nil
	}
	var we *walProblem
	if !errors.As(err, &we) {
		we = &walProblem{seg: w.segName, msg: err.Error()}
	}
	return n, &Problem{Kind: "wal", Path: "pg_wal/" + we.seg, Message: fmt.Sprintf("WAL from %s to %s on timeline %d: %s", r.Start, r.End, r.Timeline, we.msg)}
}

// findSegSize tries the valid segment sizes, 16 MB first, for the one
// whose name for the range's start the source has.
func findSegSize(ctx context.Context, src *backupSegments, r WALRange) uint64 {
	sizes := []uint64{walSegSizeFallback}
	for s := uint64(1 << 20); s <= 1<<30; s <<= 1 {
		if s != walSegSizeFallback {
			sizes = append(sizes, s)
		}
	}
	for _, s := range sizes {
		name := walarchive.SegmentName(r.Timeline, uint64(r.Start), s)
		rc, err := src.OpenSegment(ctx, name, s)
		if err != nil {
			continue
		}
		hdr := make([]byte, walLongHeader)
		_, err = io.ReadFull(rc, hdr)
		rc.Close()
		src.close()
		if err == nil && uint64(binary.LittleEndian.Uint32(hdr[32:])) == s {
			return s
		}
	}
	return walSegSizeFallback
}

// recordReader assembles and checks records.
type recordReader struct {
	w    *walReader
	end  uint64
	rec  []byte
	prev uint64
}

func (rd *recordReader) run(start uint64) (int, error) {
	w := rd.w
	pos := start
	first := true
	n := 0
	for pos < rd.end {
		if err := w.pageAt(pos); err != nil {
			return n, err
		}
		off := pos % w.blcksz
		hs := w.headerSize()
		switch {
		case off == 0:
			pos += hs
			if first && binary.LittleEndian.Uint16(w.page[2:])&xlpFirstIsCont != 0 {
				// pg_waldump's XLogFindNextRecord: start after the
				// record continued from before.
				rem := uint64(binary.LittleEndian.Uint32(w.page[16:]))
				pos = walMaxAlign(pos + rem)
				if pos%w.blcksz == 0 {
					continue
				}
			} else if binary.LittleEndian.Uint16(w.page[2:])&xlpFirstIsCont != 0 {
				return n, w.fail("contrecord is requested by %s", LSN(pos))
			}
			if pos >= rd.end {
				return n, nil
			}
		case off < hs:
			return n, w.fail("invalid record offset at %s", LSN(pos))
		}
		recEnd, done, err := rd.read(pos, first)
		if err != nil || done {
			return n, err
		}
		n++
		first = false
		rd.prev = pos
		h := rd.rec
		if h[17] == rmXLOGID && h[16]&0xF0 == xlogSwitchInfo {
			// The rest of the segment is unused after an XLOG_SWITCH.
			pos = (recEnd + w.segSize - 1) / w.segSize * w.segSize
			continue
		}
		pos = walMaxAlign(recEnd)
	}
	return n, nil
}

// read assembles the record at pos into rd.rec and checks it; done says
// that it ends past rd.end (reading stops there, as pg_waldump's does).
func (rd *recordReader) read(pos uint64, first bool) (recEnd uint64, done bool, err error) {
	w := rd.w
	le := binary.LittleEndian
	off := pos % w.blcksz
	total := uint64(le.Uint32(w.page[off:]))
	if total < recordHeader {
		return 0, false, w.fail("invalid record length at %s: expected at least %d, got %d", LSN(pos), recordHeader, total)
	}
	if total > maxRecordSize {
		return 0, false, w.fail("record length %d at %s too long", total, LSN(pos))
	}
	rd.rec = rd.rec[:0]
	cur := pos
	headerChecked := false
	for uint64(len(rd.rec)) < total {
		if cur%w.blcksz == 0 {
			if cur >= rd.end {
				return 0, true, nil
			}
			if err := w.pageAt(cur); err != nil {
				return 0, false, err
			}
			info := le.Uint16(w.page[2:])
			rem := uint64(le.Uint32(w.page[16:]))
			if info&xlpFirstIsCont == 0 {
				return 0, false, w.fail("there is no contrecord flag at %s", LSN(cur))
			}
			if rem == 0 || rem != total-uint64(len(rd.rec)) {
				return 0, false, w.fail("invalid contrecord length %d (expected %d) at %s", rem, total-uint64(len(rd.rec)), LSN(cur))
			}
			cur += w.headerSize()
		}
		o := cur % w.blcksz
		k := min(w.blcksz-o, total-uint64(len(rd.rec)))
		rd.rec = append(rd.rec, w.page[o:o+k]...)
		cur += k
		if !headerChecked && len(rd.rec) >= recordHeader {
			headerChecked = true
			if err := rd.checkHeader(pos, first); err != nil {
				return 0, false, err
			}
		}
	}
	if cur > rd.end {
		return 0, true, nil
	}
	rec := rd.rec
	crc := crc32.Update(0, castagnoli, rec[recordHeader:])
	crc = crc32.Update(crc, castagnoli, rec[:crcOffset])
	if crc != le.Uint32(rec[crcOffset:]) {
		return 0, false, w.fail("incorrect resource manager data checksum in record at %s", LSN(pos))
	}
	if msg := decodeBlocks(rec, w.magic); msg != "" {
		return 0, false, w.fail("%s at %s", msg, LSN(pos))
	}
	return cur, false, nil
}

// checkHeader is ValidXLogRecordHeader.
func (rd *recordReader) checkHeader(pos uint64, first bool) error {
	le := binary.LittleEndian
	h := rd.rec
	rmid := h[17]
	prev := le.Uint64(h[8:])
	switch {
	case rmid > rmMaxBuiltinID && rmid < rmMinCustomID:
		return rd.w.fail("invalid resource manager ID %d at %s", rmid, LSN(pos))
	case first && prev >= pos:
		return rd.w.fail("record with incorrect prev-link %s at %s", LSN(prev), LSN(pos))
	case !first && prev != rd.prev:
		return rd.w.fail("record with incorrect prev-link %s at %s", LSN(prev), LSN(pos))
	}
	return nil
}

// decodeBlocks checks the block and main-data headers of a record as
// DecodeXLogRecord does, and returns what is wrong ("" for nothing).
func decodeBlocks(rec []byte, magic uint16) string {
	p := rec[recordHeader:]
	remaining := uint64(len(p))
	var datatotal uint64
	maxBlock := -1
	haveRel := false
	take := func(n uint64) ([]byte, bool) {
		if remaining < n {
			return nil, false
		}
		b := p[:n]
		p, remaining = p[n:], remaining-n
		return b, true
	}
	const short = "record with invalid length"
	le := binary.LittleEndian
loop:
	for remaining > datatotal {
		b, _ := take(1)
		id := b[0]
		switch {
		case id == xlrBlockDataShort:
			l, ok := take(1)
			if !ok {
				return short
			}
			datatotal += uint64(l[0])
			break loop
		case id == xlrBlockDataLong:
			l, ok := take(4)
			if !ok {
				return short
			}
			datatotal += uint64(le.Uint32(l))
			break loop
		case id == xlrBlockOrigin:
			if _, ok := take(2); !ok {
				return short
			}
		case id == xlrBlockToplevel:
			if _, ok := take(4); !ok {
				return short
			}
		case id <= xlrMaxBlockID:
			if int(id) <= maxBlock {
				return fmt.Sprintf("out-of-order block_id %d", id)
			}
			maxBlock = int(id)
			hb, ok := take(3)
			if !ok {
				return short
			}
			flags, dataLen := hb[0], uint64(le.Uint16(hb[1:]))
			hasData := flags&bkpBlockHasData != 0
			if hasData && dataLen == 0 {
				return "BKPBLOCK_HAS_DATA set, but no data included"
			}
			if !hasData && dataLen != 0 {
				return fmt.Sprintf("BKPBLOCK_HAS_DATA not set, but data length is %d", dataLen)
			}
			datatotal += dataLen
			if flags&bkpBlockHasImage != 0 {
				ib, ok := take(5)
				if !ok {
					return short
				}
				imgLen, holeOff, imgInfo := uint64(le.Uint16(ib)), uint64(le.Uint16(ib[2:])), ib[4]
				compressed := imgInfo&0x1C != 0 // PGLZ, LZ4, ZSTD since 15
				if magic != 0 && magic <= pageMagicBefore15 {
					compressed = imgInfo&0x02 != 0 // BKPIMAGE_IS_COMPRESSED before 15
				}
				hasHole := imgInfo&bkpImageHasHole != 0
				var holeLen uint64
				if compressed {
					if hasHole {
						hl, ok := take(2)
						if !ok {
							return short
						}
						holeLen = uint64(le.Uint16(hl))
					}
				} else {
					holeLen = dataBlockSize - imgLen
				}
				datatotal += imgLen
				switch {
				case hasHole && (holeOff == 0 || holeLen == 0 || imgLen == dataBlockSize):
					return fmt.Sprintf("BKPIMAGE_HAS_HOLE set, but hole offset %d length %d block image length %d", holeOff, holeLen, imgLen)
				case !hasHole && (holeOff != 0 || holeLen != 0):
					return fmt.Sprintf("BKPIMAGE_HAS_HOLE not set, but hole offset %d length %d", holeOff, holeLen)
				case compressed && imgLen == dataBlockSize:
					return fmt.Sprintf("BKPIMAGE_COMPRESSED set, but block image length %d", imgLen)
				case !hasHole && !compressed && imgLen != dataBlockSize:
					return fmt.Sprintf("neither BKPIMAGE_HAS_HOLE nor BKPIMAGE_COMPRESSED set, but block image length is %d", imgLen)
				}
			}
			if flags&bkpBlockSameRel == 0 {
				if _, ok := take(12); !ok {
					return short
				}
				haveRel = true
			} else if !haveRel {
				return "BKPBLOCK_SAME_REL set but no previous rel"
			}
			if _, ok := take(4); !ok {
				return short
			}
		default:
			return fmt.Sprintf("invalid block_id %d", id)
		}
	}
	if remaining != datatotal {
		return short
	}
	return ""
}

// walMaxAlign rounds up to PostgreSQL's MAXALIGN on 64-bit machines.
func walMaxAlign(n uint64) uint64 { return (n + 7) &^ 7 }
