package commands

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walsender"
)

// SHOW WAL STANDBYS and SHOW WAL SLOTS report the WAL relay: the
// standbys streaming from pgverbs's own walsender, as pg_stat_replication
// reports a server's, and the archive's own replication slots, as
// pg_replication_slots does. Like SHOW WAL ARCHIVE they read a snapshot,
// run anywhere (inside a transaction too) and are for superusers, roles
// with REPLICATION and members of pg_monitor, who see
// pg_stat_replication whole on a server.

// WALRelay is what the two commands read: *walsender.Server's standbys
// and *walarchive.Manager's slots, behind one interface so that the
// commands need neither running.
type WALRelay interface {
	Standbys() []walsender.Standby
	Slots() []walarchive.Slot
}

// WALRelayShow is SHOW WAL STANDBYS or SHOW WAL SLOTS.
type WALRelayShow struct {
	what  string // STANDBYS or SLOTS
	root  string
	relay WALRelay
}

// WALRelayCommands returns SHOW WAL STANDBYS and SHOW WAL SLOTS over r.
// With a nil r or an empty root (the backup root, without which no
// archive runs) they refuse to run with 55000, as the WAL ARCHIVE
// commands do, rather than reaching the server as unknown syntax.
func WALRelayCommands(root string, r WALRelay) []Command {
	return []Command{
		&WALRelayShow{what: "STANDBYS", root: root, relay: r},
		&WALRelayShow{what: "SLOTS", root: root, relay: r},
	}
}

// Name implements Command.
func (w *WALRelayShow) Name() string { return "SHOW WAL " + w.what }

// Keywords implements Command.
func (w *WALRelayShow) Keywords() []string { return []string{"SHOW", "WAL", w.what} }

// Parse implements Parser: SHOW WAL STANDBYS or SHOW WAL SLOTS, words in
// any letter case, trailing semicolons allowed; anything else is 42601
// with the position of the first token that does not fit.
func (w *WALRelayShow) Parse(sql string) (Prepared, error) {
	_, err := parse(sql, func(p *parser) (struct{}, error) {
		if err := p.expect(pg_query.Token_SHOW); err != nil {
			return struct{}{}, err
		}
		for _, word := range []string{"wal", w.what} {
			if err := p.expectWord(word); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, p.finish()
	})
	if err != nil {
		return nil, err
	}
	return &walRelayRun{cmd: w}, nil
}

// walRelayRun is a parsed SHOW WAL STANDBYS or SLOTS.
type walRelayRun struct{ cmd *WALRelayShow }

// standbyColumns are SHOW WAL STANDBYS', pg_stat_replication's names.
// The lags are text as pg_stat_replication prints its intervals
// (00:00:00.001234), for a reader comparing the two; /metrics has them as
// seconds for machines. Times are text as in SHOW PGVERBS CLIENTS (the
// proxy encodes no timestamptz in binary), xids are int8: numbers a
// script compares without a cast, and the digits xid prints.
var standbyColumns = []Column{
	{"pid", pgwire.Int4OID}, {"usename", pgwire.TextOID}, {"application_name", pgwire.TextOID},
	{"client_addr", pgwire.TextOID}, {"client_port", pgwire.Int4OID}, {"slot_name", pgwire.TextOID}, {"state", pgwire.TextOID},
	{"timeline", pgwire.Int8OID},
	{"sent_lsn", pgwire.PgLSNOID}, {"write_lsn", pgwire.PgLSNOID}, {"flush_lsn", pgwire.PgLSNOID}, {"replay_lsn", pgwire.PgLSNOID},
	{"write_lag", pgwire.TextOID}, {"flush_lag", pgwire.TextOID}, {"replay_lag", pgwire.TextOID},
	{"reply_time", pgwire.TextOID}, {"backend_xmin", pgwire.Int8OID}, {"catalog_xmin", pgwire.Int8OID},
	{"started_at", pgwire.TextOID},
}

// slotColumns are SHOW WAL SLOTS', pg_replication_slots' names for what
// a pgverbs slot has: all are physical, none belongs to a database.
var slotColumns = []Column{
	{"slot_name", pgwire.TextOID}, {"slot_type", pgwire.TextOID}, {"temporary", pgwire.BoolOID},
	{"active", pgwire.BoolOID}, {"active_pid", pgwire.Int4OID},
	{"restart_lsn", pgwire.PgLSNOID}, {"restart_tli", pgwire.Int8OID},
	{"xmin", pgwire.Int8OID}, {"catalog_xmin", pgwire.Int8OID}, {"wal_status", pgwire.TextOID},
}

// Columns implements Prepared.
func (r *walRelayRun) Columns() []Column {
	if r.cmd.what == "SLOTS" {
		return slotColumns
	}
	return standbyColumns
}

// Execute implements Prepared.
func (r *walRelayRun) Execute(_ context.Context, c Conn) (*Outcome, error) {
	w := r.cmd
	if w.relay == nil || w.root == "" {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "the WAL relay is disabled: no backup root is configured")
		e.Hint = "Start pgverbs with --backup-root DIR (config backup_root) and START WAL ARCHIVE: standbys stream from the archive."
		return nil, e
	}
	if err := requireWALRole(c, w.Name(), true); err != nil {
		return nil, err
	}
	var rows [][]*string
	if w.what == "SLOTS" {
		for _, s := range w.relay.Slots() {
			rows = append(rows, slotRow(s))
		}
	} else {
		for _, s := range w.relay.Standbys() {
			rows = append(rows, standbyRow(s))
		}
	}
	return &Outcome{Tag: "SHOW", Rows: rows}, nil
}

// standbyRow is one standby's row: what it has not reported yet is NULL,
// as in pg_stat_replication, not 0/0.
func standbyRow(s walsender.Standby) []*string {
	var reply *string
	if !s.ReplyTime.IsZero() {
		reply = strp(showTime(s.ReplyTime))
	}
	// pg_stat_replication splits the client's address and port; a Unix
	// socket client has neither (NULL).
	addr, port := s.ClientAddr, ""
	if h, p, err := net.SplitHostPort(s.ClientAddr); err == nil {
		addr, port = h, p
	}
	return []*string{
		showUint(uint64(s.PID)), showOrNull(s.User), strp(s.ApplicationName), showOrNull(addr), showOrNull(port),
		showOrNull(s.Slot), strp(s.State), walTimeline(s.Timeline),
		walLSN(s.Sent, s.Sent == 0), walLSN(s.Write, s.Write == 0), walLSN(s.Flush, s.Flush == 0), walLSN(s.Replay, s.Replay == 0),
		showLag(s.WriteLag), showLag(s.FlushLag), showLag(s.ReplayLag),
		reply, showXid(s.Xmin), showXid(s.CatalogXmin), strp(showTime(s.Started)),
	}
}

// slotRow is one slot's row. wal_status is reserved while the slot holds
// WAL back (the archive never invalidates a slot), NULL before it does,
// as pg_replication_slots says for a slot with no restart_lsn.
func slotRow(s walarchive.Slot) []*string {
	var pid, status *string
	if s.ActivePID != 0 {
		pid = showUint(uint64(s.ActivePID))
	}
	if s.RestartLSN != 0 {
		status = strp("reserved")
	}
	return []*string{
		strp(s.Name), strp("physical"), strp(showBool(s.Temporary)), strp(showBool(s.ActivePID != 0)), pid,
		walLSN(s.RestartLSN, s.RestartLSN == 0), walTimeline(s.RestartTLI),
		showXid(s.Xmin), showXid(s.CatalogXmin), status,
	}
}

// showXid is NULL for InvalidTransactionId (no feedback).
func showXid(x uint32) *string {
	if x == 0 {
		return nil
	}
	return showUint(uint64(x))
}

// showLag prints d as PostgreSQL prints an interval of hours, minutes
// and seconds (00:00:00.001234: hours may pass 24, trailing zeros of the
// microseconds dropped), NULL when unknown (negative).
func showLag(d time.Duration) *string {
	if d < 0 {
		return nil
	}
	us := d.Microseconds()
	secs := us / 1e6
	s := fmt.Sprintf("%02d:%02d:%02d", secs/3600, secs/60%60, secs%60)
	if frac := us % 1e6; frac != 0 {
		s += "." + strings.TrimRight(strconv.FormatInt(1e6+frac, 10)[1:], "0")
	}
	return &s
}
