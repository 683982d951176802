package backup

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// chunkSize is how much one pg_read_binary_file call reads.
const chunkSize = 1 << 20

var (
	// versionDirName matches TABLESPACE_VERSION_DIRECTORY.
	versionDirName = regexp.MustCompile(`^PG_[0-9]+_[0-9]+$`)
	// startTimeline finds the timeline in a backup label.
	startTimeline = regexp.MustCompile(`(?m)^START TIMELINE: ([0-9]+)$`)
)

// sqlConn runs the SQL method's statements.
type sqlConn struct {
	ctx  context.Context
	conn *pgconn.PgConn
}

// query runs sql with text parameters and returns the rows in text format.
func (c *sqlConn) query(sql string, args ...string) ([][][]byte, error) {
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	res := c.conn.ExecParams(c.ctx, sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, c.err(res.Err)
	}
	return res.Rows, nil
}

func (c *sqlConn) err(err error) error {
	if c.ctx.Err() != nil {
		return canceledError(c.ctx)
	}
	err = serverError("BASE BACKUP", err)
	if pe := asPgErr(err); pe != nil && pe.Code == pgerr.InsufficientPrivilege && pe.Hint == "" {
		// The functions the SQL method calls are superuser-only by
		// default, which REPLICATION (enough for the client's check and
		// for the replication method) does not cover.
		pe.Hint = "METHOD sql reads the data directory with SQL functions: it needs a superuser, or a role with REPLICATION that was granted EXECUTE on pg_backup_start, pg_backup_stop, pg_ls_dir, pg_stat_file and pg_read_binary_file. METHOD replication needs only REPLICATION."
	}
	return err
}

// readStmt is the prepared statement reading file chunks.
const (
	readStmt = "pgverbs_backup_read"
	readSQL  = "SELECT pg_read_binary_file($1, $2::bigint, $3::bigint, true)"
)

// read returns up to n bytes of the server file name from off; ok is false
// when the file does not exist (any more).
func (c *sqlConn) read(name string, off, n int64) (data []byte, ok bool, err error) {
	return c.readInto(nil, name, off, n)
}

// readInto is read appending the data to buf[:0], so that a caller
// reading many chunks reuses its buffers instead of leaving 1 MB of
// garbage per chunk.
func (c *sqlConn) readInto(buf []byte, name string, off, n int64) (data []byte, ok bool, err error) {
	params := [][]byte{[]byte(name), []byte(strconv.FormatInt(off, 10)), []byte(strconv.FormatInt(n, 10))}
	rr := c.conn.ExecPrepared(c.ctx, readStmt, params, nil, []int16{1})
	rows := 0
	for rr.NextRow() {
		rows++
		if v := rr.Values(); len(v) == 1 && v[0] != nil {
			data, ok = append(buf[:0], v[0]...), true
		}
	}
	if _, err := rr.Close(); err != nil {
		return nil, false, c.err(err)
	}
	if rows != 1 || len(rr.FieldDescriptions()) != 1 {
		return nil, false, protocolError("unexpected answer from pg_read_binary_file")
	}
	if ok && data == nil {
		data = []byte{}
	}
	return data, ok, nil
}

// sqlBackup is the state of one SQL-method backup.
type sqlBackup struct {
	*run
	c          *sqlConn
	readers    *chunkReaders
	versionDir string
	spcs       map[string]string // OID -> location, tablespaces outside the data directory
	man        *manifestBuilder
	major      int    // the server's major version
	segSize    uint64 // the server's WAL segment size
	base       sink
	sinks      []sink // every sink, for closing
	copyStart  time.Time
	copied     int64
}

// sql takes the backup with SQL functions over a normal connection.
func (b *run) sql(ctx context.Context) (err error) {
	conn, err := b.s.connect(ctx, false)
	if err != nil {
		return connectError(ctx, err)
	}
	// Closing the session aborts a backup still running on the server and
	// drops the temporary slot.
	defer closeConn(conn)
	sb := &sqlBackup{run: b, c: &sqlConn{ctx: ctx, conn: conn}}
	defer func() {
		if err != nil {
			for _, s := range sb.sinks {
				s.abort()
			}
		}
	}()
	return sb.do()
}

// do takes the backup in its phases, each a method below.
func (sb *sqlBackup) do() error {
	if err := sb.checkServer(); err != nil {
		return err
	}
	if sb.s.WAL != WALNone {
		if err := sb.reserveWAL(); err != nil {
			return err
		}
	}
	if err := sb.openReaders(); err != nil {
		return err
	}
	defer sb.readers.close()
	if err := sb.startBackup(); err != nil {
		return err
	}
	sb.prog.setPhase("copying")
	sb.copyStart = time.Now()
	if err := sb.readLayout(); err != nil {
		return err
	}
	if err := sb.copyData(); err != nil {
		return err
	}
	label, spcmap, err := sb.stopBackup()
	if err != nil {
		return err
	}
	if err := sb.writeLabel(label, spcmap); err != nil {
		return err
	}
	if sb.s.WAL != WALNone {
		sb.prog.setPhase("wal")
		if err := sb.wal(); err != nil {
			return err
		}
	}
	if err := sb.closeSinks(); err != nil {
		return err
	}
	if sb.man != nil {
		sb.prog.setPhase("manifest")
		return sb.writeManifest()
	}
	return nil
}

// checkServer refuses servers before 10 and reads what the backup needs
// to know of the server before it starts.
func (sb *sqlBackup) checkServer() error {
	c := sb.c
	var err error
	if sb.major, err = serverMajor(c.conn); err != nil {
		return err
	}
	if sb.major < 10 {
		return pgerr.New(pgerr.FeatureNotSupported, "BASE BACKUP needs PostgreSQL 10 or later with METHOD sql (server is %d)", sb.major)
	}
	if sb.segSize, err = walSegmentSize(c.ctx, c.conn); err != nil {
		return c.err(err)
	}
	if sb.s.Manifest {
		sb.man = newManifest(sb.s.checksums)
	}
	if sb.s.VerifyChecksums {
		sb.res.Warnings = append(sb.res.Warnings, "NOTICE: data page checksums are not verified with METHOD sql")
	}
	return nil
}

// reserveWAL creates a temporary slot, which keeps checkpoints from
// removing the WAL the backup needs before it is copied; it is reserved
// before the backup starts. Without a free slot the backup goes on with a
// warning.
func (sb *sqlBackup) reserveWAL() error {
	c := sb.c
	slot := "pgverbs_" + randomSuffix()
	if _, err := c.query("SELECT 1 FROM pg_create_physical_replication_slot($1, true, true)", slot); err != nil {
		if asPgErr(err) == nil || c.ctx.Err() != nil {
			return err
		}
		if !c.conn.IsClosed() {
			sb.res.Warnings = append(sb.res.Warnings, "WARNING: could not create a temporary replication slot, WAL needed by the backup may be removed before it is copied: "+asPgErr(err).Message)
		}
	}
	return nil
}

// openReaders prepares the chunk read on the backup's own session and
// opens the helper sessions that read alongside it.
func (sb *sqlBackup) openReaders() error {
	c := sb.c
	if _, err := c.conn.Prepare(c.ctx, readStmt, readSQL, nil); err != nil {
		return c.err(err)
	}
	var err error
	sb.readers, err = newChunkReaders(c.ctx, c, sqlReaders-1, sb.s.connect)
	return err
}

// startBackup runs pg_backup_start (pg_start_backup before 15), which
// waits for the checkpoint the backup starts from.
func (sb *sqlBackup) startBackup() error {
	fast := strconv.FormatBool(sb.s.Checkpoint == FastCheckpoint)
	startSQL := "SELECT pg_backup_start($1, $2::boolean)::text"
	if sb.major < 15 {
		startSQL = "SELECT pg_start_backup($1, $2::boolean, false)::text"
	}
	rows, err := sb.c.query(startSQL, sb.s.Label, fast)
	if err != nil {
		return err
	}
	if len(rows) != 1 || rows[0][0] == nil {
		return protocolError("unexpected answer from pg_backup_start")
	}
	sb.res.StartLSN, err = parseLSN(string(rows[0][0]))
	return err
}

// readLayout reads the tablespace version directory and the tablespaces,
// checks TABLESPACE_MAP against them and estimates the total size.
func (sb *sqlBackup) readLayout() error {
	c := sb.c
	rows, err := c.query("SELECT 'PG_' || (current_setting('server_version_num')::int / 10000)::text || '_' || catalog_version_no::text FROM pg_control_system()")
	if err != nil {
		return err
	}
	sb.versionDir = string(rows[0][0])
	if !versionDirName.MatchString(sb.versionDir) {
		return protocolError("unexpected tablespace version directory %q", sb.versionDir)
	}
	rows, err = c.query("SELECT oid::text, pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid")
	if err != nil {
		return err
	}
	sb.spcs = map[string]string{}
	for _, r := range rows {
		if loc := string(r[1]); strings.HasPrefix(loc, "/") && isOID(string(r[0])) {
			sb.spcs[string(r[0])] = loc
		}
	}
	var locations []string
	for _, oid := range sortedKeys(sb.spcs) {
		locations = append(locations, sb.spcs[oid])
	}
	if err := sb.checkMapped(locations); err != nil {
		return err
	}
	// The total is an estimate (the databases, tablespaces included); a
	// role that may not see every database's size just gets none.
	if rows, err := c.query("SELECT sum(pg_database_size(oid))::bigint FROM pg_database WHERE datallowconn"); err == nil && len(rows) == 1 && rows[0][0] != nil {
		total, _ := strconv.ParseInt(string(rows[0][0]), 10, 64)
		sb.prog.setTotal(total)
	} else if err != nil && (c.conn.IsClosed() || c.ctx.Err() != nil) {
		return err
	}
	return nil
}

// copyData copies the data directory, then the tablespaces, then
// global/pg_control.
func (sb *sqlBackup) copyData() error {
	if sb.s.Format == Plain {
		sb.base = dirSink{dir: sb.t.dir}
	} else {
		var err error
		if sb.base, err = sb.addTar("base.tar"); err != nil {
			return err
		}
	}
	if err := sb.walk(".", sb.base, "", "", true); err != nil {
		return err
	}
	for _, oid := range sortedKeys(sb.spcs) {
		if err := sb.tablespace(oid); err != nil {
			return err
		}
	}
	return sb.control()
}

// stopBackup runs pg_backup_stop (pg_stop_backup before 15), which
// returns the end of the backup's WAL, the backup label and the
// tablespace map; waiting for the WAL to be archived only without WAL in
// the backup.
func (sb *sqlBackup) stopBackup() (label, spcmap []byte, err error) {
	waitArchive := strconv.FormatBool(sb.s.WAL == WALNone)
	stopSQL := "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop($1::boolean)"
	if sb.major < 15 {
		stopSQL = "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, $1::boolean)"
	}
	rows, err := sb.c.query(stopSQL, waitArchive)
	if err != nil {
		return nil, nil, err
	}
	if len(rows) != 1 || len(rows[0]) != 3 || rows[0][0] == nil || rows[0][1] == nil {
		return nil, nil, protocolError("unexpected answer from pg_backup_stop")
	}
	if sb.res.EndLSN, err = parseLSN(string(rows[0][0])); err != nil {
		return nil, nil, err
	}
	label, spcmap = rows[0][1], rows[0][2]
	m := startTimeline.FindSubmatch(label)
	if m == nil {
		return nil, nil, protocolError("backup label without START TIMELINE")
	}
	tli, err := strconv.ParseUint(string(m[1]), 10, 32)
	if err != nil || tli == 0 {
		return nil, nil, protocolError("invalid START TIMELINE in the backup label")
	}
	sb.res.Timeline = uint32(tli)
	return label, spcmap, nil
}

// writeLabel writes backup_label byte for byte as the server gave it,
// and, in a tar backup, tablespace_map (a plain one has the links).
func (sb *sqlBackup) writeLabel(label, spcmap []byte) error {
	now := time.Now()
	if err := sb.writeFile(sb.base, "backup_label", "backup_label", label, now); err != nil {
		return err
	}
	if sb.s.Format == Tar && len(spcmap) > 0 {
		return sb.writeFile(sb.base, "tablespace_map", "tablespace_map", spcmap, now)
	}
	return nil
}

// closeSinks completes the tar files, or the directory.
func (sb *sqlBackup) closeSinks() error {
	for _, s := range sb.sinks {
		if err := s.close(); err != nil {
			return err
		}
	}
	sb.sinks = nil
	return nil
}

// writeManifest writes backup_manifest, once every file is in it.
func (sb *sqlBackup) writeManifest() error {
	data := sb.man.finish(sb.res.Timeline, sb.res.StartLSN, sb.res.EndLSN)
	out, err := createOut(sb.out, "backup_manifest", NoCompression, 0)
	if err != nil {
		return err
	}
	if err := writeAll(out, data); err != nil {
		return err
	}
	sb.res.Manifest = true
	return nil
}

// dirEntry is one entry of a server directory listing.
type dirEntry struct {
	name  string
	size  int64
	mtime time.Time
	isDir bool
}

// list lists the server directory dir (relative to the data directory).
func (sb *sqlBackup) list(dir string) ([]dirEntry, error) {
	rows, err := sb.c.query(`SELECT n, s.size, extract(epoch FROM s.modification)::bigint, s.isdir
		FROM pg_ls_dir($1, true, false) AS n
		CROSS JOIN LATERAL pg_stat_file($1 || '/' || n, true) AS s
		ORDER BY n`, dir)
	if err != nil {
		return nil, err
	}
	var out []dirEntry
	for _, r := range rows {
		if r[3] == nil {
			continue // gone since the listing
		}
		size, _ := strconv.ParseInt(string(r[1]), 10, 64)
		mt, _ := strconv.ParseInt(string(r[2]), 10, 64)
		out = append(out, dirEntry{name: string(r[0]), size: size, mtime: time.Unix(mt, 0), isDir: string(r[3]) == "t"})
	}
	return out, nil
}

// walk copies the server directory src into dst at dstDir, with manifest
// paths under manDir; top is true for the data directory itself.
func (sb *sqlBackup) walk(src string, dst sink, dstDir, manDir string, top bool) error {
	entries, err := sb.list(src)
	if err != nil {
		return err
	}
	rel := strings.TrimPrefix(src, "./")
	if rel == "." {
		rel = ""
	}
	dbDir := isDBDir(rel, sb.versionDir)
	siblings := make(map[string]bool, len(entries))
	for _, e := range entries {
		siblings[e.name] = true
	}
	for _, e := range entries {
		if excluded(e.name, dbDir, siblings) {
			continue
		}
		srcPath := path.Join(src, e.name)
		dstPath := path.Join(dstDir, e.name)
		manPath := path.Join(manDir, e.name)
		if top && rel == "" && e.name == "pg_wal" {
			// No WAL from here; the directory and archive_status only.
			if err := dst.mkdir(dstPath, e.mtime); err != nil {
				return err
			}
			if err := dst.mkdir(path.Join(dstPath, "archive_status"), e.mtime); err != nil {
				return err
			}
			continue
		}
		if top && rel == "global" && e.name == "pg_control" {
			continue // copied last
		}
		if !e.isDir && isSocket(e.name) {
			continue
		}
		if top && rel == "pg_tblspc" && sb.spcs[e.name] != "" {
			if sb.s.Format == Plain {
				if err := dst.symlink(dstPath, sb.spcLink(e.name, sb.spcs[e.name])); err != nil {
					return err
				}
			}
			continue // tablespace_map (tar) and tablespace() take care of it
		}
		if e.isDir {
			if err := dst.mkdir(dstPath, e.mtime); err != nil {
				return err
			}
			if excludeDirContents[e.name] {
				continue
			}
			if err := sb.walk(srcPath, dst, dstPath, manPath, top); err != nil {
				return err
			}
			continue
		}
		if err := sb.copyFile(srcPath, e.size, e.mtime, dst, dstPath, manPath); err != nil {
			return err
		}
	}
	return nil
}

// tablespace copies the version directory of tablespace oid.
func (sb *sqlBackup) tablespace(oid string) error {
	var dst sink
	if sb.s.Format == Tar {
		var err error
		if dst, err = sb.addTar(oid + ".tar"); err != nil {
			return err
		}
	} else if d := sb.spcDir[filepath.Clean(sb.spcs[oid])]; d != nil {
		dst = dirSink{dir: d.dir}
	} else {
		dst = dirSink{dir: sb.t.dir, prefix: path.Join(tablespacesDir, oid)}
		if err := dst.mkdir("", time.Now()); err != nil {
			return err
		}
	}
	src := path.Join("pg_tblspc", oid, sb.versionDir)
	if err := dst.mkdir(sb.versionDir, time.Now()); err != nil {
		return err
	}
	return sb.walk(src, dst, sb.versionDir, path.Join("pg_tblspc", oid, sb.versionDir), false)
}

// copyFile copies a server file of the size listed; what the file gained
// since is left to WAL replay, as the server's own backup does. The chunks
// are requested ahead over all reader sessions and written in order, so
// that the server's reads (on two backends) overlap each other and the
// writes to disk. Every request is answered before copyFile returns, so
// the backup's own session is free again.
func (sb *sqlBackup) copyFile(src string, size int64, mtime time.Time, dst sink, dstName, manPath string) (err error) {
	var (
		pending []<-chan chunk
		lens    []int64
		next    int64 // offset of the next chunk to request
		all     bool  // every chunk is requested
	)
	defer func() {
		for _, p := range pending {
			<-p
		}
	}()
	fill := func() {
		for !all && len(pending) < sb.readers.window() {
			n := min(size-next, chunkSize) // 0 once for an empty file
			pending = append(pending, sb.readers.request(src, next, n))
			lens = append(lens, n)
			next += n
			all = next >= size
		}
	}
	var w *sizedFile
	defer func() {
		if w != nil && err != nil {
			w.abort()
		}
	}()
	fill()
	for len(pending) > 0 {
		c := <-pending[0]
		requested := lens[0]
		pending, lens = pending[1:], lens[1:]
		if c.err != nil {
			return c.err
		}
		if !c.ok {
			break // a file that vanished is no error; one that did meanwhile is cut short
		}
		if w == nil {
			if w, err = sb.open(dst, dstName, manPath, size, mtime); err != nil {
				return err
			}
		}
		_, err := w.Write(c.data)
		sb.readers.release(c.data)
		if err != nil {
			return err
		}
		sb.res.Bytes += int64(len(c.data))
		sb.prog.add(int64(len(c.data)))
		if err := sb.throttle(int64(len(c.data))); err != nil {
			return err
		}
		if int64(len(c.data)) < requested {
			break // the file shrank: WAL replay has the rest
		}
		fill()
	}
	if w == nil {
		return nil
	}
	err = w.Close()
	w = nil
	if err != nil {
		return err
	}
	sb.res.Files++
	return nil
}

// addTar starts the tar file name of a tar backup and keeps it for
// closing.
func (sb *sqlBackup) addTar(name string) (sink, error) {
	ts, err := newTarSink(sb.out, name, sb.s.Compression, sb.s.Level)
	if err != nil {
		return nil, err
	}
	sb.sinks = append(sb.sinks, ts)
	return ts, nil
}

// open starts a file in dst, recorded in the manifest as manPath; "" is
// for WAL, which is not in the manifest and is padded to its full size.
func (sb *sqlBackup) open(dst sink, name, manPath string, size int64, mtime time.Time) (*sizedFile, error) {
	w, err := createFile(dst, name, size, mtime, manPath == "")
	if err != nil {
		return nil, err
	}
	if sb.man != nil && manPath != "" {
		w.record(sb.man, manPath)
	}
	return w, nil
}

// writeFile writes a file whose content is known.
func (sb *sqlBackup) writeFile(dst sink, name, manPath string, content []byte, mtime time.Time) error {
	w, err := sb.open(dst, name, manPath, int64(len(content)), mtime)
	if err != nil {
		return err
	}
	if err := writeAll(w, content); err != nil {
		return err
	}
	sb.res.Files++
	return nil
}

// throttle sleeps to keep the average rate under MaxRate.
func (sb *sqlBackup) throttle(n int64) error {
	sb.copied += n
	if sb.s.MaxRate <= 0 {
		return nil
	}
	due := sb.copyStart.Add(time.Duration(float64(sb.copied) / float64(sb.s.MaxRate) * float64(time.Second)))
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-sb.c.ctx.Done():
		return canceledError(sb.c.ctx)
	case <-t.C:
		return nil
	}
}

// control copies global/pg_control, re-reading it until its CRC is valid:
// the server may be rewriting it while it is read.
func (sb *sqlBackup) control() error {
	const name = "global/pg_control"
	var data []byte
	for attempt := 0; ; attempt++ {
		d, ok, err := sb.c.read(name, 0, 8192)
		if err != nil {
			return err
		}
		if !ok {
			return pgerr.New(pgerr.UndefinedFile, "the server has no %s", name)
		}
		if controlCRCValid(d) {
			data = d
			break
		}
		if attempt == 20 {
			return pgerr.New(pgerr.DataCorrupted, "could not read a consistent %s from the server (CRC mismatch)", name)
		}
		select {
		case <-sb.c.ctx.Done():
			return canceledError(sb.c.ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
	now := time.Now()
	return sb.writeFile(sb.base, name, name, data, now)
}

// controlCRCValid checks the CRC-32C of a ControlFileData image without
// knowing the version's layout: the CRC covers the struct up to the crc
// field and is stored there, so some 4-byte aligned offset must hold the
// CRC of everything before it (a chance match is about 2^-32 per offset).
func controlCRCValid(d []byte) bool {
	limit := min(len(d), 1024)
	crc := crc32.New(castagnoli)
	for off := 0; off+4 <= limit; off += 4 {
		if off >= 16 {
			sum := crc.Sum32()
			if binary.LittleEndian.Uint32(d[off:]) == sum || binary.BigEndian.Uint32(d[off:]) == sum {
				return true
			}
		}
		crc.Write(d[off : off+4])
	}
	return false
}

// wal copies the WAL segments from the one holding the start LSN to the
// one holding the stop LSN out of the server's pg_wal.
func (sb *sqlBackup) wal() error {
	segSize := sb.segSize
	dst, dstPrefix := sb.base, "pg_wal"
	if sb.s.Format == Tar {
		var err error
		if dst, err = sb.addTar("pg_wal.tar"); err != nil {
			return err
		}
		dstPrefix = ""
	}
	tli := sb.res.Timeline
	if tli > 1 {
		hist := fmt.Sprintf("%08X.history", tli)
		data, ok, err := sb.c.read("pg_wal/"+hist, 0, 1<<30)
		if err != nil {
			return err
		}
		if ok {
			if err := sb.writeFile(dst, path.Join(dstPrefix, hist), "", data, time.Now()); err != nil {
				return err
			}
		}
	}
	first := uint64(sb.res.StartLSN) / segSize
	last := uint64(sb.res.EndLSN) / segSize
	for seg := first; seg <= last; seg++ {
		name := walSegmentName(tli, seg*segSize, segSize)
		removed := pgerr.New(pgerr.UndefinedFile, "WAL segment %s was removed before it could be copied", name)
		data, ok, err := sb.c.read("pg_wal/"+name, 0, chunkSize)
		if err != nil {
			return err
		}
		if !ok {
			if seg == last && seg > first {
				break // the segment after the stop point may not exist yet
			}
			return removed
		}
		mf, err := sb.open(dst, path.Join(dstPrefix, name), "", int64(segSize), time.Now())
		if err != nil {
			return err
		}
		for off := int64(0); ; {
			if _, err := mf.Write(data); err != nil {
				mf.abort()
				return err
			}
			off += int64(len(data))
			sb.res.Bytes += int64(len(data))
			if err := sb.throttle(int64(len(data))); err != nil {
				mf.abort()
				return err
			}
			if len(data) < chunkSize || off >= int64(segSize) {
				break
			}
			if data, ok, err = sb.c.read("pg_wal/"+name, off, chunkSize); err == nil && !ok {
				err = removed
			}
			if err != nil {
				mf.abort()
				return err
			}
		}
		if err := mf.Close(); err != nil {
			return err
		}
		sb.res.Files++
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// OIDs sort numerically when compared by length first.
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && (len(keys[j]) < len(keys[j-1]) || len(keys[j]) == len(keys[j-1]) && keys[j] < keys[j-1]); j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}
