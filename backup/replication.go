package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walstream"
)

// errAborted stops the helpers of a backup that failed.
var errAborted = errors.New("backup failed")

// archiveName matches the archive names BASE_BACKUP sends.
var archiveName = regexp.MustCompile(`^(base|[1-9][0-9]{0,9})\.tar$`)

// archive is where one archive of the server's stream goes.
type archive interface {
	io.Writer
	Close() error // finish; the archive is complete
	abort()       // give up after a failure; waits for helpers to stop
	files() int
}

// replication takes the backup with BASE_BACKUP.
func (b *run) replication(parent context.Context) (err error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	rb := &replBackup{run: b, ctx: ctx, cancel: cancel}
	defer func() { err = rb.release(parent, err) }()

	if err := rb.connect(); err != nil {
		return err
	}
	if b.s.WAL == WALStream {
		if err := rb.prepareWAL(); err != nil {
			return err
		}
	}
	if err := rb.startBackup(); err != nil {
		return err
	}
	rb.startStreaming()
	b.prog.setPhase("copying")
	spcRows, err := rb.tablespaces()
	if err != nil {
		return err
	}
	if err := rb.copyArchives(spcRows); err != nil {
		return err
	}
	if err := rb.endBackup(); err != nil {
		return err
	}
	if rb.ws != nil {
		b.prog.setPhase("wal")
		if err := rb.finishWAL(); err != nil {
			return err
		}
	}
	b.res.Manifest = b.s.Manifest
	return nil
}

// replBackup is the state of one replication-method backup.
type replBackup struct {
	*run
	ctx    context.Context
	cancel context.CancelCauseFunc // ends ctx, e.g. when the streamer fails

	conn  *pgconn.PgConn // BASE_BACKUP's connection
	mc    *msgConn       // reads conn
	major int            // the server's major version

	wc     *walstream.Conn // WAL streaming's connection, nil without
	ws     *walStreamer    // nil without WAL streaming
	wsDone chan error      // the streamer's result while it runs, else nil
}

// release closes the connections, which ends the backup on the server and
// drops the temporary slot, and stops the streamer: it must be gone
// before the caller removes the directory. After a failure it aborts the
// WAL sink and returns the streamer's own error, if it failed, as the
// cause, unless the caller's context (parent) ended.
func (rb *replBackup) release(parent context.Context, err error) error {
	closeConn(rb.conn)
	if rb.wsDone != nil {
		// Stop the streamer (it notices within pollInterval) before
		// touching its connection.
		rb.cancel(errAborted)
		<-rb.wsDone
	}
	if rb.wc != nil {
		_ = rb.wc.Close()
	}
	if rb.ws != nil && err != nil {
		rb.ws.out.abort()
		if werr := rb.ws.failure(); werr != nil && parent.Err() == nil {
			err = werr
		}
	}
	return err
}

// connect opens the replication connection BASE_BACKUP runs on and
// refuses servers before 13, which have no backup manifests.
func (rb *replBackup) connect() error {
	var err error
	if rb.conn, err = rb.s.connect(rb.ctx, true); err != nil {
		return connectError(rb.ctx, err)
	}
	rb.mc = &msgConn{ctx: rb.ctx, conn: rb.conn, what: "BASE_BACKUP", warnings: &rb.res.Warnings}
	if rb.major, err = serverMajor(rb.conn); err != nil {
		return err
	}
	if rb.major < 13 {
		return pgerr.New(pgerr.FeatureNotSupported, "BASE BACKUP needs PostgreSQL 13 or later with METHOD replication (server is %d)", rb.major)
	}
	return nil
}

// prepareWAL opens the WAL streaming connection and reserves the WAL from
// now on in a temporary slot, before BASE_BACKUP starts, so that none of
// the WAL the backup needs can be removed before it is streamed.
func (rb *replBackup) prepareWAL() error {
	// Not rb.s.connect: walstream reads through its own large buffer.
	pc, err := rb.s.Connect(rb.ctx, true)
	if err != nil {
		return connectError(rb.ctx, err)
	}
	if rb.wc, err = walstream.New(pc); err != nil {
		closeConn(pc)
		return connectError(rb.ctx, err)
	}
	segSize, err := rb.wc.SegmentSize(rb.ctx)
	if err != nil {
		return walError(rb.ctx, "SHOW wal_segment_size", err)
	}
	slot := "pgverbs_" + randomSuffix()
	if err := rb.wc.CreateSlot(rb.ctx, slot, true); err != nil {
		return walError(rb.ctx, "CREATE_REPLICATION_SLOT", err)
	}
	out, err := rb.walSink()
	if err != nil {
		return err
	}
	rb.ws = &walStreamer{
		ctx:     rb.ctx,
		wc:      rb.wc,
		slot:    slot,
		segSize: segSize,
		out:     out,
		marks:   rb.s.Format == Plain,
	}
	return nil
}

// startBackup sends BASE_BACKUP and reads the start of the backup's WAL,
// which the server sends once its checkpoint is done.
func (rb *replBackup) startBackup() error {
	if err := rb.mc.send(rb.baseBackupCommand(rb.major)); err != nil {
		return err
	}
	start, tli, err := readPosition(rb.mc)
	if err != nil {
		return err
	}
	rb.res.StartLSN, rb.res.Timeline = start, tli
	return nil
}

// startStreaming starts the WAL streamer, if any, from the backup's start;
// a streamer that fails cancels the backup with its error.
func (rb *replBackup) startStreaming() {
	if rb.ws == nil {
		return
	}
	rb.wsDone = make(chan error, 1)
	start, tli := rb.res.StartLSN, rb.res.Timeline
	go func() {
		err := rb.ws.run(start, tli)
		if err != nil && rb.ctx.Err() == nil {
			rb.ws.setFailed(err)
			rb.cancel(err)
		}
		rb.wsDone <- err
	}()
}

// tablespaces reads the server's tablespace list, checks TABLESPACE_MAP
// against it and sets the progress total from its sizes.
func (rb *replBackup) tablespaces() ([][][]byte, error) {
	_, spcRows, err := rb.mc.resultSet()
	if err != nil {
		return nil, err
	}
	var locations []string
	for _, row := range spcRows {
		if len(row) >= 2 && row[0] != nil && row[1] != nil {
			locations = append(locations, string(row[1]))
		}
	}
	if err := rb.checkMapped(locations); err != nil {
		return nil, err
	}
	var total int64
	for _, row := range spcRows {
		if len(row) >= 3 && row[2] != nil {
			kb, _ := strconv.ParseInt(string(row[2]), 10, 64)
			total += kb * 1024
		}
	}
	rb.prog.setTotal(total)
	return spcRows, nil
}

// copyArchives receives the archives and the manifest in the stream form
// of the server's version.
func (rb *replBackup) copyArchives(spcRows [][][]byte) error {
	if rb.major >= 15 {
		return rb.copyStream(rb.mc)
	}
	return rb.copyLegacy(rb.mc, spcRows)
}

// endBackup reads the end of the backup's WAL and waits for the command
// to complete.
func (rb *replBackup) endBackup() error {
	end, endTLI, err := readPosition(rb.mc)
	if err != nil {
		return err
	}
	if err := rb.mc.untilReady(); err != nil {
		return err
	}
	rb.res.EndLSN = end
	if tli := rb.res.Timeline; endTLI != tli {
		rb.res.Warnings = append(rb.res.Warnings, fmt.Sprintf("WARNING: the backup started on timeline %d and ended on timeline %d", tli, endTLI))
	}
	return nil
}

// finishWAL tells the streamer where the backup's WAL ends, waits until
// it has written that much and completes its sink.
func (rb *replBackup) finishWAL() error {
	rb.ws.setEnd(rb.res.EndLSN)
	werr := <-rb.wsDone
	rb.wsDone = nil
	if werr != nil {
		return werr
	}
	if err := rb.ws.out.close(); err != nil {
		return err
	}
	rb.res.Bytes += rb.ws.bytes
	rb.res.Files += rb.ws.files
	return nil
}

// walSink is where streamed WAL goes: pg_wal/ (with archive_status/) of
// a plain backup, pg_wal.tar of a tar backup.
func (b *run) walSink() (sink, error) {
	if b.s.Format == Tar {
		ts, err := newTarSink(b.out, "pg_wal.tar", b.s.Compression, b.s.Level)
		if err != nil {
			return nil, err
		}
		return ts, nil
	}
	d := dirSink{dir: b.t.dir, prefix: "pg_wal"}
	if err := d.mkdir("archive_status", time.Now()); err != nil {
		return nil, err
	}
	return d, nil
}

// baseBackupCommand builds BASE_BACKUP in the syntax of the server's
// version (parenthesized options since 15).
func (b *run) baseBackupCommand(major int) string {
	s := b.s
	type opt struct{ name, val, old string }
	var opts []opt
	add := func(name, val, old string) { opts = append(opts, opt{name, val, old}) }
	add("LABEL", replLiteral(s.Label), "LABEL "+replLiteral(s.Label))
	add("PROGRESS", "", "PROGRESS")
	if s.Checkpoint == FastCheckpoint {
		add("CHECKPOINT", "'fast'", "FAST")
	}
	if s.WAL == WALFetch {
		add("WAL", "", "WAL")
	}
	if s.WAL != WALNone {
		// The WAL comes with the backup: no waiting for the archiver.
		add("WAIT", "false", "NOWAIT")
	}
	if s.maxRateKB > 0 {
		add("MAX_RATE", strconv.Itoa(s.maxRateKB), "MAX_RATE "+strconv.Itoa(s.maxRateKB))
	}
	if s.Format == Tar {
		add("TABLESPACE_MAP", "", "TABLESPACE_MAP")
	}
	if s.VerifyChecksums {
		add("VERIFY_CHECKSUMS", "true", "")
	} else {
		add("VERIFY_CHECKSUMS", "false", "NOVERIFY_CHECKSUMS")
	}
	if s.Manifest {
		add("MANIFEST", "'yes'", "MANIFEST 'yes'")
		add("MANIFEST_CHECKSUMS", replLiteral(s.checksums), "MANIFEST_CHECKSUMS "+replLiteral(s.checksums))
	}
	var parts []string
	for _, o := range opts {
		switch {
		case major < 15 && o.old != "":
			parts = append(parts, o.old)
		case major < 15:
		case o.val == "":
			parts = append(parts, o.name)
		default:
			parts = append(parts, o.name+" "+o.val)
		}
	}
	if major < 15 {
		return "BASE_BACKUP " + strings.Join(parts, " ")
	}
	return "BASE_BACKUP (" + strings.Join(parts, ", ") + ")"
}

// readPosition reads the result set holding an LSN and a timeline.
func readPosition(mc *msgConn) (LSN, uint32, error) {
	_, rows, err := mc.resultSet()
	if err != nil {
		return 0, 0, err
	}
	if len(rows) != 1 || len(rows[0]) < 2 || rows[0][0] == nil || rows[0][1] == nil {
		return 0, 0, protocolError("unexpected WAL position result in %s", mc.what)
	}
	lsn, err := parseLSN(string(rows[0][0]))
	if err != nil {
		return 0, 0, err
	}
	tli, err := strconv.ParseUint(string(rows[0][1]), 10, 32)
	if err != nil || tli == 0 {
		return 0, 0, protocolError("invalid timeline %q in %s", rows[0][1], mc.what)
	}
	return lsn, uint32(tli), nil
}

// copyStream reads the single CopyOut of PostgreSQL 15 and later.
func (b *run) copyStream(mc *msgConn) (err error) {
	msg, err := mc.next()
	if err != nil {
		return err
	}
	if _, ok := msg.(*pgproto3.CopyOutResponse); !ok {
		return protocolError("expected CopyOutResponse from BASE_BACKUP, got %T", msg)
	}
	var (
		cur      archive
		manifest *outFile
	)
	defer func() {
		if err != nil {
			if cur != nil {
				cur.abort()
			}
			if manifest != nil {
				manifest.abort()
			}
		}
	}()
	closeCur := func() error {
		if cur == nil {
			return nil
		}
		a := cur
		cur = nil
		if err := a.Close(); err != nil {
			return err
		}
		b.res.Files += a.files()
		return nil
	}
	var pending pgproto3.BackendMessage // received by an unpacker, not handled yet
	for {
		msg := pending
		pending = nil
		if msg == nil {
			if msg, err = mc.next(); err != nil {
				return err
			}
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				return protocolError("empty CopyData from BASE_BACKUP")
			}
			d := m.Data[1:]
			switch m.Data[0] {
			case 'n':
				if err := closeCur(); err != nil {
					return err
				}
				if manifest != nil {
					return protocolError("archive after the manifest in BASE_BACKUP's stream")
				}
				parts := bytes.SplitN(d, []byte{0}, 3)
				if len(parts) != 3 {
					return protocolError("invalid new-archive message from BASE_BACKUP")
				}
				if cur, err = b.openArchive(string(parts[0]), string(parts[1])); err != nil {
					return err
				}
				if pa, ok := cur.(*plainArchive); ok {
					sr := &streamReader{b: b, mc: mc}
					if err := pa.pull(sr); err != nil {
						return err
					}
					if err := closeCur(); err != nil {
						return err
					}
					pending = sr.stop
				}
			case 'd':
				var w io.Writer = cur
				if manifest != nil {
					w = manifest
				} else if cur == nil {
					return protocolError("archive data before any archive in BASE_BACKUP's stream")
				}
				if _, err := w.Write(d); err != nil {
					return err
				}
				b.res.Bytes += int64(len(d))
				b.prog.add(int64(len(d)))
			case 'p':
				if _, ok := parseProgress(d); !ok {
					return protocolError("invalid progress message from BASE_BACKUP")
				}
			case 'm':
				if err := closeCur(); err != nil {
					return err
				}
				if manifest != nil {
					return protocolError("second manifest in BASE_BACKUP's stream")
				}
				b.prog.setPhase("manifest")
				if manifest, err = createOut(b.out, "backup_manifest", NoCompression, 0); err != nil {
					return err
				}
			default:
				return protocolError("unexpected message type %q in BASE_BACKUP's stream", m.Data[0])
			}
		case *pgproto3.CopyDone:
			if err := closeCur(); err != nil {
				return err
			}
			if manifest != nil {
				m := manifest
				manifest = nil
				if err := m.Close(); err != nil {
					return err
				}
			} else if b.s.Manifest {
				return protocolError("BASE_BACKUP sent no manifest")
			}
			return nil
		default:
			return protocolError("unexpected %T in BASE_BACKUP's stream", msg)
		}
	}
}

// copyLegacy reads the CopyOuts of PostgreSQL 13 and 14: one per
// tablespace in the order of the tablespace list (raw tar), then one for
// the manifest.
func (b *run) copyLegacy(mc *msgConn, spcRows [][][]byte) (err error) {
	n := len(spcRows)
	if b.s.Manifest {
		n++
	}
	for i := 0; i < n; i++ {
		msg, err := mc.next()
		if err != nil {
			return err
		}
		if _, ok := msg.(*pgproto3.CopyOutResponse); !ok {
			return protocolError("expected CopyOutResponse from BASE_BACKUP, got %T", msg)
		}
		var w archive
		if i < len(spcRows) {
			name, location := "base.tar", ""
			if row := spcRows[i]; len(row) > 1 && row[0] != nil {
				name, location = string(row[0])+".tar", string(row[1])
			}
			w, err = b.openArchive(name, location)
		} else {
			b.prog.setPhase("manifest")
			var m *outFile
			m, err = createOut(b.out, "backup_manifest", NoCompression, 0)
			if err == nil {
				w = manifestArchive{m}
			}
		}
		if err != nil {
			return err
		}
		if err := b.copyOne(mc, w); err != nil {
			w.abort()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		b.res.Files += w.files()
	}
	return nil
}

// copyOne copies one legacy CopyOut into w.
func (b *run) copyOne(mc *msgConn, w io.Writer) error {
	for {
		msg, err := mc.next()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if _, err := w.Write(m.Data); err != nil {
				return err
			}
			b.res.Bytes += int64(len(m.Data))
			b.prog.add(int64(len(m.Data)))
		case *pgproto3.CopyDone:
			return nil
		default:
			return protocolError("unexpected %T in BASE_BACKUP's stream", msg)
		}
	}
}

// manifestArchive lets the legacy loop treat the manifest as an archive.
type manifestArchive struct{ *outFile }

func (m manifestArchive) abort()     { m.outFile.abort() }
func (m manifestArchive) files() int { return 0 }

// openArchive starts the archive the server named; location is the
// tablespace's, "" for base.tar.
func (b *run) openArchive(name, location string) (archive, error) {
	if !archiveName.MatchString(name) {
		return nil, protocolError("unexpected archive name %q from BASE_BACKUP", name)
	}
	if b.s.Format == Tar {
		out, err := createOut(b.out, name, b.s.Compression, b.s.Level)
		if err != nil {
			return nil, err
		}
		return newAsyncArchive(&tarArchive{out: out}), nil
	}
	if name == "base.tar" {
		return newPlainArchive(b.t.dir, "", b.spcLink, nil), nil
	}
	oid := strings.TrimSuffix(name, ".tar")
	if d := b.spcDir[filepath.Clean(location)]; d != nil && location != "" {
		return newPlainArchive(d.dir, d.r.typed+"/", nil, nil), nil
	}
	rel := path.Join(tablespacesDir, oid)
	if inPlace := "pg_tblspc/" + oid; location == inPlace {
		// An in-place tablespace (allow_in_place_tablespaces) is a
		// directory inside the data directory; it stays there.
		rel = inPlace
	}
	if err := b.t.dir.MkdirAll(rel, 0o700); err != nil {
		return nil, fileError("create directory", rel, err)
	}
	dir, err := b.t.dir.OpenRoot(rel)
	if err != nil {
		return nil, fileError("open", rel, err)
	}
	return newPlainArchive(dir, rel+"/", nil, dir), nil
}

// plainArchive unpacks an archive while it arrives. PostgreSQL 15's single
// stream is read by the unpacker itself (pull, through a streamReader);
// the older per-tablespace streams are written to it (Write), which feeds
// a pipe that an unpacker goroutine reads.
type plainArchive struct {
	u      *unpacker
	closer *os.Root // closed at the end, if not nil

	pw   *io.PipeWriter // Write's pipe, nil until the first Write
	done chan struct{}
	err  error // the unpacker goroutine's result, valid after done
}

// newPlainArchive unpacks into dir; link, for base.tar only, allows the
// tablespace links and says where they point.
func newPlainArchive(dir *os.Root, prefix string, link func(oid, location string) string, closer *os.Root) *plainArchive {
	return &plainArchive{
		u:      &unpacker{root: dir, tblspcLinks: link != nil, link: link, prefix: prefix},
		closer: closer,
	}
}

// pull unpacks the archive read from r in the calling goroutine (no pipe,
// no hand-over between goroutines per message); whatever follows the
// end-of-archive blocks is read and ignored.
func (a *plainArchive) pull(r io.Reader) error {
	err := a.u.unpack(r)
	if err == nil {
		_, err = io.Copy(io.Discard, r)
	}
	return err
}

func (a *plainArchive) Write(p []byte) (int, error) {
	if a.pw == nil {
		pr, pw := io.Pipe()
		a.pw, a.done = pw, make(chan struct{})
		go func() {
			defer close(a.done)
			a.err = a.pull(pr)
			if a.err != nil {
				pr.CloseWithError(a.err)
			}
		}()
	}
	n, err := a.pw.Write(p)
	if err != nil {
		<-a.done
		if a.err != nil {
			return n, a.err
		}
		return n, fmt.Errorf("unpacking archive: %w", err)
	}
	return n, nil
}

func (a *plainArchive) Close() error {
	if a.pw != nil {
		a.pw.Close()
		<-a.done
	}
	if a.closer != nil {
		a.closer.Close()
	}
	return a.err
}

func (a *plainArchive) abort() {
	if a.pw != nil {
		a.pw.CloseWithError(io.ErrUnexpectedEOF)
		<-a.done
	}
	if a.closer != nil {
		a.closer.Close()
	}
}

// streamReader reads the data of one archive from BASE_BACKUP's stream
// ('d' messages, skipping progress reports) and returns io.EOF at the
// first other message, which it keeps in stop for the caller.
type streamReader struct {
	b    *run
	mc   *msgConn
	buf  []byte // the rest of the current message; valid until the next receive
	stop pgproto3.BackendMessage
}

func (r *streamReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.stop != nil {
			return 0, io.EOF
		}
		msg, err := r.mc.next()
		if err != nil {
			return 0, err
		}
		if m, ok := msg.(*pgproto3.CopyData); ok && len(m.Data) > 0 {
			switch m.Data[0] {
			case 'd':
				r.buf = m.Data[1:]
				r.b.res.Bytes += int64(len(r.buf))
				r.b.prog.add(int64(len(r.buf)))
				continue
			case 'p':
				if _, ok := parseProgress(m.Data[1:]); !ok {
					return 0, protocolError("invalid progress message from BASE_BACKUP")
				}
				continue
			}
		}
		r.stop = msg
		return 0, io.EOF
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (a *plainArchive) files() int { return a.u.files }

// tarArchive satisfies archive.
func (a *tarArchive) abort()     { a.out.abort() }
func (a *tarArchive) files() int { return a.count.files }
