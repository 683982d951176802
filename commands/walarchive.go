package commands

import (
	"context"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pgverbs/pgverbs/backup"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/storage"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// The WAL ARCHIVE commands drive the one WAL archive of a pgverbs process
// (walarchive.Archiver). START, STOP, ALTER and CHECK are standalone, as
// BASE BACKUP is: they act on the proxy's own replication connection and
// files, never on the client's transaction, so they refuse a transaction
// block and a multi-statement query, and a cancel request ends them. SHOW
// WAL ARCHIVE only reads a snapshot, so like SHOW PGVERBS it runs
// anywhere, a monitoring query inside a transaction included.
//
// Who may run them is the server's to say, asked over the client's own
// session as BASE BACKUP asks: a superuser or a role with REPLICATION,
// since the archive holds every byte of the database; SHOW also to
// members of pg_monitor, as PostgreSQL shows pg_stat_replication.

// Defaults of START WAL ARCHIVE, the issue's: SYNCHRONOUS is on because
// the archive exists to lose no acknowledged commit, and with it a
// synchronous primary waits one fdatasync per batch rather than until a
// segment ends.
const (
	defaultWALSlot            = "pgverbs"
	defaultWALApplicationName = "pgverbs"
	defaultWALSynchronous     = true
)

// WALArchive is one of the WAL ARCHIVE commands, named by its first word.
type WALArchive struct {
	verb     string // START, STOP, ALTER, SHOW or CHECK
	root     string
	archiver walarchive.Archiver
}

// WALArchiveCommands returns START, STOP, ALTER, SHOW and CHECK WAL
// ARCHIVE over a, with archive directories below root, the backup root.
// With a nil a or an empty root they refuse to run (55000), as BASE
// BACKUP does without a root.
//
// SHOW WAL ARCHIVE SEGMENTS is SHOW WAL ARCHIVE's: the registry takes
// the first command whose keywords lead a statement, so one command
// parses both.
func WALArchiveCommands(root string, a walarchive.Archiver) []Command {
	var cmds []Command
	for _, verb := range []string{"START", "STOP", "ALTER", "SHOW", "CHECK"} {
		cmds = append(cmds, &WALArchive{verb: verb, root: root, archiver: a})
	}
	return cmds
}

// Name implements Command.
func (w *WALArchive) Name() string { return w.verb + " WAL ARCHIVE" }

// Keywords implements Command.
func (w *WALArchive) Keywords() []string { return []string{w.verb, "WAL", "ARCHIVE"} }

// Parse implements Parser.
func (w *WALArchive) Parse(sql string) (Prepared, error) {
	st, err := ParseWALArchive(sql)
	if err != nil {
		return nil, err
	}
	if walVerbWord(st.Verb) != w.verb {
		// Only a caller that bypassed the registry gets here.
		e := pgerr.New(pgerr.SyntaxError, "not a %s statement", w.Name())
		e.Position = 1
		return nil, e
	}
	if st.Verb == WALShow || st.Verb == WALShowSegments {
		return &walShowRun{cmd: w, st: st}, nil
	}
	return &walRun{cmd: w, st: st}, nil
}

func walVerbWord(v WALArchiveVerb) string {
	switch v {
	case WALStart:
		return "START"
	case WALStop:
		return "STOP"
	case WALAlter, WALPause, WALResume, WALSetSource:
		return "ALTER"
	case WALShow, WALShowSegments:
		return "SHOW"
	}
	return "CHECK"
}

// allowed refuses to run without an archive or a backup root (55000),
// then unless the current role may run cmd (42501, see requireWALRole).
func (w *WALArchive) allowed(c Conn, cmd string, monitor bool) error {
	if w.archiver == nil || w.root == "" {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "WAL ARCHIVE is disabled: no backup root is configured")
		e.Hint = "Start pgverbs with --backup-root DIR (config backup_root); archive directories lie below it."
		return e
	}
	return requireWALRole(c, cmd, monitor)
}

// walColumns are the columns of the rows of a statement doing v.
func walColumns(v WALArchiveVerb) []Column {
	switch v {
	case WALCheck:
		return checkColumns
	case WALShow:
		return statusColumns
	case WALShowSegments:
		return segmentColumns
	}
	return nil
}

// walRun is START, STOP, ALTER or CHECK WAL ARCHIVE.
type walRun struct {
	cmd *WALArchive
	st  *WALArchiveStmt
}

// Standalone implements Standalone.
func (*walRun) Standalone() {}

// CommandName names the command in the engine's messages.
func (r *walRun) CommandName() string { return r.cmd.Name() }

// checkColumns are CHECK WAL ARCHIVE's.
var checkColumns = []Column{
	{"ok", pgwire.BoolOID}, {"checked", pgwire.TextOID}, {"problem", pgwire.TextOID},
	{"segments", pgwire.Int8OID}, {"pages", pgwire.Int8OID},
	{"from_lsn", pgwire.PgLSNOID}, {"to_lsn", pgwire.PgLSNOID},
}

// Columns implements Prepared: CHECK returns a row, the others none.
func (r *walRun) Columns() []Column { return walColumns(r.st.Verb) }

// Execute implements Prepared.
func (r *walRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	if err := r.cmd.allowed(c, r.cmd.Name(), false); err != nil {
		return nil, err
	}
	a := r.cmd.archiver
	done := &Outcome{Tag: r.cmd.Name()}
	switch r.st.Verb {
	case WALStart:
		dir, url, err := walArchiveDir(r.cmd.root, r.st.Dir)
		if err != nil {
			return nil, err
		}
		s, err := walSettingsFrom(c, r.st.Options)
		if err != nil {
			return nil, err
		}
		o := walarchive.Options{
			Dir: dir, Slot: defaultWALSlot, CreateSlot: true, ApplicationName: defaultWALApplicationName,
			Synchronous: defaultWALSynchronous, User: c.User(), Storage: url,
		}
		s.apply(&o)
		if sc, ok := a.(slotCheckedStarter); ok {
			if _, local := c.(LocalAdmin); !local {
				return outcomeOr(done, sc.StartChecked(ctx, o, slotHolderOver(c)))
			}
		}
		return outcomeOr(done, a.Start(ctx, o))
	case WALStop:
		return outcomeOr(done, a.Stop(ctx, r.st.DropSlot))
	case WALAlter:
		// The server parses the values first: the change runs while the
		// archive holds its lock.
		s, err := walSettingsFrom(c, r.st.Options)
		if err != nil {
			return nil, err
		}
		return outcomeOr(done, a.Alter(ctx, func(o *walarchive.Options) error { s.apply(o); return nil }))
	case WALPause, WALResume:
		return outcomeOr(done, a.SetPaused(r.st.Verb == WALPause))
	case WALSetSource:
		ss, ok := a.(WALSourceSetter)
		if !ok {
			return nil, pgerr.New(pgerr.FeatureNotSupported, "this WAL archive cannot change its source")
		}
		res, err := ss.SetSource(ctx, r.st.Source, c.User(), r.st.Force)
		if err != nil {
			return nil, err
		}
		if len(res.Diverged) > 0 {
			c.Notice("WARNING", "WAL beyond the new source's switch point was set aside and will not be served: "+strings.Join(res.Diverged, ", "), "")
		}
		return done, nil
	}
	res, err := a.Check(ctx)
	if err != nil {
		return nil, err
	}
	if !res.OK {
		// A row, not an error, so that a script reads ok and the problem
		// in one place; the warning makes psql users see it too.
		c.Notice("WARNING", "WAL archive check failed: "+res.Problem, "")
	}
	lsnNull := res.From == 0 && res.To == 0
	done.Rows = [][]*string{{
		strp(showBool(res.OK)), showOrNull(res.Checked), showOrNull(res.Problem),
		strp(strconv.Itoa(res.Segments)), strp(strconv.Itoa(res.Pages)),
		walLSN(res.From, lsnNull), walLSN(res.To, lsnNull),
	}}
	return done, nil
}

// slotCheckedStarter is an Archiver whose START can first ask who holds
// the slot (walarchive.Manager).
type slotCheckedStarter interface {
	StartChecked(ctx context.Context, o walarchive.Options, check walarchive.SlotCheck) error
}

// slotHolderOver asks the client's server, the archive's upstream unless
// backup_conninfo names another, who has a slot active: its walsender's
// PID, and pg_stat_replication's application_name and client address for
// it where the role may see them (NULL otherwise, and then left out).
func slotHolderOver(c Conn) walarchive.SlotCheck {
	return func(_ context.Context, slot string) (*walarchive.SlotHolder, error) {
		rows, err := queryRows(c, 3, `SELECT s.active_pid, r.application_name, pg_catalog.host(r.client_addr)
FROM pg_catalog.pg_replication_slots s LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = $1 AND s.active_pid IS NOT NULL`, &slot)
		if err != nil || len(rows) == 0 {
			return nil, err
		}
		h := &walarchive.SlotHolder{ApplicationName: string(rows[0][1]), ClientAddr: string(rows[0][2])}
		h.PID, _ = strconv.Atoi(string(rows[0][0]))
		return h, nil
	}
}

// walArchiveDir resolves START's TO: a directory inside the backup root,
// or a storage URL, whose local staging directory is
// <root>/.pgverbs-wal/<target>/<path> (url is then the URL, for the
// archive to upload to; the target is looked up at START).
func walArchiveDir(root, to string) (dir, url string, err error) {
	if !storage.IsURL(to) {
		dir, err = backup.ResolveDir(root, to)
		return dir, "", err
	}
	target, p, err := storage.ParseURL(to)
	if err != nil {
		return "", "", err
	}
	if p == "" {
		return "", "", pgerr.New(pgerr.InvalidParameterValue, "a WAL archive needs a path below the storage target, not its whole prefix").
			WithHint("Name it as 'storage://%s/wal'.", target)
	}
	dir, err = backup.ResolveDir(root, filepath.Join(walarchive.StagingDir, target, filepath.FromSlash(p)))
	return dir, to, err
}

// outcomeOr is done, or err when there is one.
func outcomeOr(done *Outcome, err error) (*Outcome, error) {
	if err != nil {
		return nil, err
	}
	return done, nil
}

// walSettings are given options with RETENTION and MAX_SIZE read by the
// server.
type walSettings struct {
	given     WALArchiveOptions
	retention time.Duration
	maxSize   int64
}

// walSettingsFrom has the client's server read RETENTION and MAX_SIZE,
// exactly as PostgreSQL reads an interval and pg_size_bytes a size; its
// errors (22007 for a bad interval, say) reach the client as the server's.
func walSettingsFrom(c Conn, g WALArchiveOptions) (walSettings, error) {
	s := walSettings{given: g}
	if g.Retention != nil {
		r, err := queryRow(c, 1, `SELECT extract(epoch FROM $1::pg_catalog.interval)`, g.Retention)
		if err != nil {
			return s, err
		}
		secs, err := strconv.ParseFloat(string(r[0]), 64)
		if err != nil || secs < 0 || secs > math.MaxInt64/float64(time.Second) {
			return s, pgerr.New(pgerr.InvalidParameterValue, "invalid RETENTION %q: want an interval of 0 or more, shorter than 292 years", *g.Retention)
		}
		s.retention = time.Duration(secs * float64(time.Second))
	}
	if g.MaxSize != nil {
		r, err := queryRow(c, 1, `SELECT pg_catalog.pg_size_bytes($1)`, g.MaxSize)
		if err != nil {
			return s, err
		}
		n, err := strconv.ParseInt(string(r[0]), 10, 64)
		if err != nil || n < 0 {
			return s, pgerr.New(pgerr.InvalidParameterValue, "invalid MAX_SIZE %q: want a size of 0 or more, such as '100GB'", *g.MaxSize)
		}
		s.maxSize = n
	}
	return s, nil
}

// apply sets the given options in o.
func (s walSettings) apply(o *walarchive.Options) {
	g := s.given
	if g.Slot != nil {
		o.Slot = *g.Slot
	}
	if g.CreateSlot != nil {
		o.CreateSlot = *g.CreateSlot
	}
	if g.ApplicationName != nil {
		o.ApplicationName = *g.ApplicationName
	}
	if g.Synchronous != nil {
		o.Synchronous = *g.Synchronous
	}
	if g.Compression != nil {
		o.Compression, o.Level = *g.Compression, g.Level
	}
	if g.Retention != nil {
		o.Retention = s.retention
	}
	if g.MaxSize != nil {
		o.MaxSize = s.maxSize
	}
}

// requireWALRole fails with 42501 unless the current role is a superuser
// or has REPLICATION, or, when monitor is set, is a member of pg_monitor.
func requireWALRole(c Conn, cmd string, monitor bool) error {
	if la, ok := c.(LocalAdmin); ok {
		if la.LocalAdmin() {
			return nil
		}
		return pgerr.New(pgerr.InsufficientPrivilege, "permission denied to run %s", cmd)
	}
	q := `SELECT coalesce((SELECT rolsuper OR rolreplication FROM pg_catalog.pg_roles WHERE rolname = current_user), false)`
	if monitor {
		q += ` OR pg_catalog.pg_has_role(current_user, '` + monitorRole + `', 'MEMBER')`
	}
	r, err := queryRow(c, 1, q)
	if err != nil || string(r[0]) == "t" {
		return err
	}
	e := pgerr.New(pgerr.InsufficientPrivilege, "permission denied to run %s", cmd)
	if monitor {
		e.Hint = "Only superusers, roles with the REPLICATION attribute and members of the \"" + monitorRole + "\" role may run " + cmd + "."
	} else {
		e.Detail = "Only roles with the REPLICATION attribute or superusers may run " + cmd + "."
	}
	return e
}

// walShowRun is SHOW WAL ARCHIVE [SEGMENTS].
type walShowRun struct {
	cmd *WALArchive
	st  *WALArchiveStmt
}

// statusColumns are SHOW WAL ARCHIVE's, in the order.
var statusColumns = []Column{
	{"state", pgwire.TextOID}, {"upstream", pgwire.TextOID}, {"slot", pgwire.TextOID},
	{"application_name", pgwire.TextOID}, {"timeline", pgwire.Int8OID},
	{"received_lsn", pgwire.PgLSNOID}, {"flushed_lsn", pgwire.PgLSNOID}, {"upstream_flush_lsn", pgwire.PgLSNOID},
	{"lag_bytes", pgwire.Int8OID}, {"lag_seconds", pgwire.Float8OID},
	{"segments", pgwire.Int8OID}, {"bytes", pgwire.Int8OID},
	{"oldest_segment", pgwire.TextOID}, {"newest_segment", pgwire.TextOID},
	{"synchronous", pgwire.BoolOID}, {"last_error", pgwire.TextOID}, {"last_error_sqlstate", pgwire.TextOID},
	// The upload to object storage (NULL for a local archive).
	{"storage", pgwire.TextOID}, {"upload_pending_files", pgwire.Int8OID}, {"upload_pending_bytes", pgwire.Int8OID},
	{"upload_oldest_pending", pgwire.TextOID}, {"upload_oldest_pending_seconds", pgwire.Float8OID},
	{"upload_last_error", pgwire.TextOID},
}

// segmentColumns are SHOW WAL ARCHIVE SEGMENTS'. completed_at is text,
// as SHOW PGVERBS CLIENTS' times are: the proxy encodes no timestamptz
// in binary, which pgx would ask for.
var segmentColumns = []Column{
	{"name", pgwire.TextOID}, {"timeline", pgwire.Int8OID},
	{"start_lsn", pgwire.PgLSNOID}, {"end_lsn", pgwire.PgLSNOID},
	{"state", pgwire.TextOID}, {"bytes", pgwire.Int8OID}, {"completed_at", pgwire.TextOID},
}

// Columns implements Prepared.
func (r *walShowRun) Columns() []Column { return walColumns(r.st.Verb) }

// Execute implements Prepared.
func (r *walShowRun) Execute(_ context.Context, c Conn) (*Outcome, error) {
	name := "SHOW WAL ARCHIVE"
	if r.st.Verb == WALShowSegments {
		name += " SEGMENTS"
	}
	if err := r.cmd.allowed(c, name, true); err != nil {
		return nil, err
	}
	if r.st.Verb == WALShowSegments {
		segs, err := r.cmd.archiver.Segments()
		if err != nil {
			return nil, err
		}
		rows := make([][]*string, 0, len(segs))
		for _, s := range segs {
			var completed *string
			if !s.CompletedAt.IsZero() {
				completed = strp(showTime(s.CompletedAt))
			}
			history := s.State == walarchive.SegHistory
			rows = append(rows, []*string{strp(s.Name), showUint(uint64(s.Timeline)),
				walLSN(s.Start, history), walLSN(s.End, history), strp(string(s.State)),
				strp(strconv.FormatInt(s.Bytes, 10)), completed})
		}
		return &Outcome{Tag: "SHOW", Rows: rows}, nil
	}
	return &Outcome{Tag: "SHOW", Rows: [][]*string{statusRow(r.cmd.archiver)}}, nil
}

// statusRow is SHOW WAL ARCHIVE's row. Before any START (and with no
// archive to resume) it says stopped, and NULL for everything else:
// there is nothing to report, not zeros.
func statusRow(a walarchive.Archiver) []*string {
	s, ok := a.Status()
	if !ok {
		row := make([]*string, len(statusColumns))
		row[0] = strp(string(walarchive.Stopped))
		return row
	}
	return append([]*string{
		strp(string(s.State)), showOrNull(s.Upstream), showOrNull(s.Slot), showOrNull(s.ApplicationName),
		walTimeline(s.Timeline),
		walLSN(s.Received, s.Received == 0), walLSN(s.Flushed, s.Flushed == 0), walLSN(s.UpstreamFlush, s.UpstreamFlush == 0),
		strp(strconv.FormatInt(s.LagBytes, 10)), strp(strconv.FormatFloat(s.LagSeconds, 'f', 3, 64)),
		strp(strconv.Itoa(s.Segments)), strp(strconv.FormatInt(s.Bytes, 10)),
		showOrNull(s.Oldest), showOrNull(s.Newest), strp(showBool(s.Synchronous)),
		showOrNull(s.LastError), showOrNull(s.LastErrorCode),
	}, uploadCells(s.Upload)...)
}

// uploadCells are SHOW WAL ARCHIVE's upload columns: NULL for a local
// archive. Until the store's listing is known every local file counts as
// pending: none is known to be uploaded, and none is removed.
func uploadCells(u walarchive.UploadStatus) []*string {
	if u.Storage == "" {
		return make([]*string, 6)
	}
	cells := []*string{strp(u.Storage), strp(strconv.Itoa(u.PendingFiles)), strp(strconv.FormatInt(u.PendingBytes, 10)),
		showOrNull(u.OldestPending), nil, showOrNull(u.LastError)}
	if u.OldestPending != "" {
		cells[4] = strp(strconv.FormatFloat(u.OldestPendingSeconds, 'f', 3, 64))
	}
	return cells
}

// walLSN renders lsn as pg_lsn does, or NULL.
func walLSN(lsn uint64, null bool) *string {
	if null {
		return nil
	}
	return strp(walstream.FormatLSN(lsn))
}

// walTimeline is NULL before the archive knows its timeline.
func walTimeline(tli uint32) *string {
	if tli == 0 {
		return nil
	}
	return showUint(uint64(tli))
}
