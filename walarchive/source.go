package walarchive

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walstream"
)

// ConnectFunc opens a connection to the server conninfo names, as user
// when conninfo names none; params are added to the startup packet
// (replication=true for a replication connection).
type ConnectFunc func(ctx context.Context, conninfo, user string, params map[string]string) (*pgconn.PgConn, error)

// divergedSuffix marks a segment set aside by SET SOURCE: WAL the archive
// holds beyond the new source's switch point. ParseName refuses the name,
// so nothing serves it or counts it as part of the archive.
const divergedSuffix = ".diverged"

// dial opens the receiver's replication connection: to o.Source when SET
// SOURCE chose one, else to the configured upstream.
func (m *Manager) dial(ctx context.Context, o Options) (*pgconn.PgConn, error) {
	if o.Source == "" {
		return m.cfg.Dial(ctx, o.User, o.ApplicationName)
	}
	if m.cfg.Connect == nil {
		return nil, errors.New("walarchive: no way to connect to a SOURCE")
	}
	return m.cfg.Connect(ctx, o.Source, o.User, map[string]string{"replication": "true", "application_name": o.ApplicationName})
}

// SourceResult is what SET SOURCE did.
type SourceResult struct {
	// Timeline is the new source's timeline; SwitchPoint where the
	// archive's timeline ends in its history (0: the same timeline).
	Timeline    uint32
	SwitchPoint uint64
	// Diverged names the files set aside (WAL beyond the switch point).
	Diverged []string
}

// SetSource feeds the archive from another server of the same system
// (ALTER WAL ARCHIVE SET SOURCE): its system identifier is checked, its
// timeline must not be behind the archive's, and the archive's timeline
// must be in its history. WAL the archive holds beyond the switch point is
// set aside (NAME.diverged...), never served; with SYNCHRONOUS on that
// WAL may hold acknowledged commits, so it is refused unless force.
func (m *Manager) SetSource(ctx context.Context, conninfo, user string, force bool) (SourceResult, error) {
	var res SourceResult
	m.mu.Lock()
	run := m.cur
	if run == nil {
		m.mu.Unlock()
		return res, notRunning()
	}
	o := run.opts
	tli, flushed := m.status.Timeline, m.status.Flushed
	m.mu.Unlock()
	o.Source = conninfo
	if o.User == "" {
		o.User = user
	}
	pc, err := m.dial(ctx, o)
	if err != nil {
		return res, upstreamError("cannot connect to the new source", err)
	}
	conn, err := walstream.New(pc)
	if err != nil {
		return res, upstreamError("cannot connect to the new source", err)
	}
	defer conn.Close()
	sys, err := conn.IdentifySystem(ctx)
	if err != nil {
		return res, upstreamError("IDENTIFY_SYSTEM failed on the new source", err)
	}
	if sys.ID != run.st.SystemID {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the new source is another database system (system identifier %s, the archive holds %s)", sys.ID, run.st.SystemID)
		e.Hint = "SET SOURCE takes a server of the same cluster: a standby, or the promoted one."
		return res, e
	}
	res.Timeline = sys.Timeline
	if sys.Timeline < tli {
		return res, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the new source is on timeline %d, behind the archive's timeline %d", sys.Timeline, tli)
	}
	if sys.Timeline > tli {
		_, content, err := conn.TimelineHistory(ctx, sys.Timeline)
		if err != nil {
			return res, upstreamError("TIMELINE_HISTORY failed on the new source", err)
		}
		sp, ok := historySwitch(content, tli)
		if !ok {
			e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the archive's timeline %d is not in the history of the new source's timeline %d", tli, sys.Timeline)
			e.Detail = "The new source did not fork from the archive's timeline."
			return res, e
		}
		res.SwitchPoint = sp
		if flushed > sp && o.Synchronous && !force {
			e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the archive holds WAL up to %s, beyond the new source's switch point %s on timeline %d",
				walstream.FormatLSN(flushed), walstream.FormatLSN(sp), tli)
			e.Detail = "The archive is synchronous: that WAL may hold commits the old primary acknowledged, which the new source does not have."
			e.Hint = "Catch the new source up first (FAILOVER WAL ARCHIVE does), or use WITH (FORCE on) to set that WAL aside."
			return res, e
		}
		if err := writeDurable(run.dir, HistoryName(sys.Timeline), content); err != nil {
			return res, archiveError("write", err)
		}
	}
	conn.Close()

	// The receiver stops before files move and options change.
	m.mu.Lock()
	if m.cur != run {
		m.mu.Unlock()
		return res, notRunning()
	}
	run.kick()
	m.mu.Unlock()
	run.receiving.Lock()
	defer run.receiving.Unlock()
	if res.SwitchPoint != 0 && flushed > res.SwitchPoint {
		moved, durable, err := setAside(run, tli, res.SwitchPoint)
		res.Diverged = moved
		if err != nil {
			return res, err
		}
		if len(moved) > 0 {
			m.log.Warn("WAL archive: WAL beyond the new source's switch point set aside",
				zap.Strings("files", moved), zap.String("switch_point", walstream.FormatLSN(res.SwitchPoint)))
			m.update(func(s *Status) { s.Flushed, s.Received = min(s.Flushed, durable), min(s.Received, durable) })
		}
	}
	err = m.Alter(ctx, func(a *Options) error {
		a.Source = conninfo
		if a.User == "" {
			a.User = user
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	m.log.Info("WAL archive: new source", zap.Uint32("timeline", sys.Timeline))
	if m.cfg.OnSource != nil {
		m.cfg.OnSource(conninfo)
	}
	return res, nil
}

// historySwitch is where timeline tli ends in a history file's content.
func historySwitch(content []byte, tli uint32) (uint64, bool) {
	for _, line := range strings.Split(string(content), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		t, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || uint32(t) != tli {
			continue
		}
		sp, err := walstream.ParseLSN(f[1])
		return sp, err == nil
	}
	return 0, false
}

// setAside renames timeline tli's segments that end after sp (the switch
// point) to NAME.diverged[.N]...: the receiver then resumes at the start
// of the segment holding sp and writes it again up to sp from the new
// source. It returns the new names and the end of what stays.
func setAside(run *archiveRun, tli uint32, sp uint64) ([]string, uint64, error) {
	segSize := run.st.SegmentSize
	files, err := scan(run.dir, segSize)
	if err != nil {
		return nil, 0, archiveError("list", err)
	}
	keep := sp - sp%segSize
	var moved []string
	for _, f := range files {
		if f.State == SegHistory || f.Timeline != tli || f.End <= keep {
			continue
		}
		base, rest, _ := strings.Cut(f.Name, ".")
		to := base + divergedSuffix
		for i := 1; ; i++ {
			cand := to
			if i > 1 {
				cand = fmt.Sprintf("%s%s.%d", base, divergedSuffix, i)
			}
			if _, err := run.dir.Stat(cand + dotted(rest)); errors.Is(err, fs.ErrNotExist) {
				to = cand + dotted(rest)
				break
			}
		}
		if err := run.dir.Rename(f.Name, to); err != nil {
			return moved, keep, fileError("rename", f.Name, err)
		}
		moved = append(moved, to)
	}
	if len(moved) > 0 {
		if err := syncDir(run.dir); err != nil {
			return moved, keep, archiveError("fsync", err)
		}
	}
	return moved, keep, nil
}

func dotted(s string) string {
	if s == "" {
		return ""
	}
	return "." + s
}

// FailoverOptions are FAILOVER WAL ARCHIVE TO's.
type FailoverOptions struct {
	// Conninfo names the standby to promote.
	Conninfo string
	// User connects when Conninfo names no user (the role running it).
	User string
	// CatchUp waits until the candidate flushed everything the archive
	// holds; Promote runs pg_promote(); Force goes on although the old
	// upstream still answers (and sets diverged WAL aside).
	CatchUp, Promote, Force bool
	// Timeout bounds the catch-up, the promotion and the archive's move to
	// the new timeline.
	Timeout time.Duration
}

// FailoverResult is FAILOVER's row.
type FailoverResult struct {
	Timeline    uint32
	SwitchPoint uint64
	// Standbys are the application names of the standbys pgverbs
	// serves, which follow the new timeline through it.
	Standbys []string
}

// Failover makes a standby the archive's new source, as the seed's
// manual procedure did by hand: refuse while the old upstream answers
// (unless Force), catch the candidate up with the archive (it streams
// from pgverbs), create the archive's slot on it, promote it, feed the
// archive from it. When the catch-up times out the candidate is not
// promoted: promoting it would lose acknowledged commits (CatchUp off
// takes that risk knowingly).
func (m *Manager) Failover(ctx context.Context, o FailoverOptions) (FailoverResult, error) {
	var res FailoverResult
	m.mu.Lock()
	run := m.cur
	if run == nil {
		m.mu.Unlock()
		return res, notRunning()
	}
	opts := run.opts
	oldTLI := m.status.Timeline
	m.mu.Unlock()
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if !o.Force && m.upstreamAnswers(ctx, opts) {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the archive's upstream still answers")
		e.Detail = "A failover while the primary runs would leave two primaries."
		e.Hint = "Stop the old primary first, or use WITH (FORCE on)."
		return res, e
	}
	if m.cfg.Connect == nil {
		return res, errors.New("walarchive: no way to connect to the candidate")
	}
	pc, err := m.cfg.Connect(ctx, o.Conninfo, o.User, nil)
	if err != nil {
		return res, upstreamError("cannot connect to the candidate", err)
	}
	defer pc.Close(context.Background())
	row, err := sqlRow(ctx, pc, "SELECT pg_catalog.pg_is_in_recovery()::text, (SELECT system_identifier::text FROM pg_catalog.pg_control_system())")
	if err != nil {
		return res, upstreamError("cannot query the candidate", err)
	}
	inRecovery := row[0] == "true"
	if row[1] != run.st.SystemID {
		return res, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the candidate is another database system (system identifier %s, the archive holds %s)", row[1], run.st.SystemID)
	}
	if inRecovery && !o.Promote {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the candidate is still a standby and PROMOTE is off")
		e.Hint = "Promote it first, or let FAILOVER promote it (PROMOTE on)."
		return res, e
	}
	if inRecovery && o.CatchUp {
		if err := m.catchUp(ctx, pc); err != nil {
			return res, err
		}
	}
	if err := ensureSQLSlot(ctx, pc, opts.Slot); err != nil {
		return res, err
	}
	if inRecovery && o.Promote {
		secs := max(1, int(time.Until(deadline(ctx)).Seconds()))
		row, err := sqlRow(ctx, pc, fmt.Sprintf("SELECT pg_catalog.pg_promote(true, %d)::text", secs))
		if err != nil {
			return res, upstreamError("pg_promote() failed on the candidate", err)
		}
		if row[0] != "true" {
			return res, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the candidate did not finish its promotion within %d seconds", secs)
		}
	}
	sres, err := m.SetSource(ctx, o.Conninfo, o.User, o.Force)
	if err != nil {
		return res, err
	}
	res.Timeline, res.SwitchPoint = sres.Timeline, sres.SwitchPoint
	// Done when the archive streams the new timeline.
	for {
		p, changed, ok := m.Position()
		if !ok {
			return res, notRunning()
		}
		if p.Timeline > oldTLI || res.Timeline == oldTLI {
			break
		}
		select {
		case <-ctx.Done():
			return res, pgerr.New(pgerr.QueryCanceled, "the archive did not reach timeline %d within the TIMEOUT; it goes on trying", res.Timeline)
		case <-changed:
		}
	}
	if m.cfg.Standbys != nil {
		res.Standbys = m.cfg.Standbys()
	}
	return res, nil
}

func deadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok {
		return time.Now().Add(time.Minute)
	}
	return d
}

// upstreamAnswers reports whether the archive's current upstream accepts
// a replication connection within a few seconds.
func (m *Manager) upstreamAnswers(ctx context.Context, o Options) bool {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	pc, err := m.dial(pctx, o)
	if err != nil {
		return false
	}
	conn, err := walstream.New(pc)
	if err != nil {
		return false
	}
	defer conn.Close()
	_, err = conn.IdentifySystem(pctx)
	return err == nil
}

// catchUp waits until the candidate's walreceiver flushed everything the
// archive holds.
func (m *Manager) catchUp(ctx context.Context, pc *pgconn.PgConn) error {
	p, _, ok := m.Position()
	if !ok {
		return notRunning()
	}
	for {
		row, err := sqlRow(ctx, pc, "SELECT coalesce(pg_catalog.pg_last_wal_receive_lsn()::text, '0/0')")
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return upstreamError("cannot query the candidate", err)
		}
		got, _ := walstream.ParseLSN(row[0])
		if got >= p.Flushed {
			return nil
		}
		select {
		case <-ctx.Done():
			e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the candidate did not catch up with the archive within the TIMEOUT: it flushed %s, the archive holds %s",
				walstream.FormatLSN(got), walstream.FormatLSN(p.Flushed))
			e.Detail = "It was not promoted: promoting it would lose WAL the archive holds, acknowledged commits among it."
			e.Hint = "Check that the candidate streams from pgverbs, then run FAILOVER again, or use a longer TIMEOUT."
			return e
		case <-time.After(100 * time.Millisecond):
		}
	}
	return context.Cause(ctx)
}

// ensureSQLSlot creates the archive's physical slot on the candidate,
// reserving WAL at once, before its promotion: nothing it writes as the
// new primary may be removed before the archive streams it.
func ensureSQLSlot(ctx context.Context, pc *pgconn.PgConn, slot string) error {
	row, err := sqlRow(ctx, pc, "SELECT count(*)::text FROM pg_catalog.pg_replication_slots WHERE slot_name = '"+strings.ReplaceAll(slot, "'", "''")+"'")
	if err != nil {
		return upstreamError("cannot read the candidate's slots", err)
	}
	if row[0] != "0" {
		return nil
	}
	if _, err := sqlRow(ctx, pc, "SELECT pg_catalog.pg_create_physical_replication_slot('"+strings.ReplaceAll(slot, "'", "''")+"', true)::text"); err != nil {
		return upstreamError("cannot create the archive's slot on the candidate", err)
	}
	return nil
}

// sqlRow runs a query that returns one row of text.
func sqlRow(ctx context.Context, pc *pgconn.PgConn, sql string) ([]string, error) {
	rr := pc.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if rr.Err != nil {
		return nil, rr.Err
	}
	if len(rr.Rows) != 1 {
		return nil, fmt.Errorf("walarchive: %d rows from %q", len(rr.Rows), sql)
	}
	out := make([]string, len(rr.Rows[0]))
	for i, v := range rr.Rows[0] {
		out[i] = string(v)
	}
	return out, nil
}

// sourceAddress is a conninfo's host and port, for SHOW WAL ARCHIVE.
func sourceAddress(conninfo string) string {
	cfg, err := pgconn.ParseConfig(conninfo)
	if err != nil {
		return "source"
	}
	return fmt.Sprintf("tcp:%s:%d", cfg.Host, cfg.Port)
}
