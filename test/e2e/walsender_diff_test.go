package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/walstream"
)

// The walsender conformance test (issue 14): the same list of replication
// commands is sent over a physical replication connection
// (replication=true) to a real PostgreSQL walsender and to pgverbs, whose
// WAL archive holds the same history, and the replies are compared
// message by message: message types, column names and type OIDs, data
// rows, command tags, errors (severity, SQLSTATE, message, DETAIL, HINT),
// and for START_REPLICATION the CopyBoth flow with the WAL bytes
// themselves (the XLogData payloads concatenated, compared over the range
// both sent), CopyDone, the end-of-timeline result set and its two
// CommandCompletes.
//
// The history: a primary P writes some WAL; a standby S streams it, and
// pgverbs, in front of S, archives it from S; S is promoted (timeline 2,
// forked from timeline 1 at the switch point SP) and writes more, which
// the archive follows. S is then the real walsender serving that history,
// and pgverbs serves it from the archive.
//
// Masked, because the two servers legitimately differ there, and only
// where a case says so: WAL positions (the servers' flush positions, the
// restart_lsn of slots created at different moments, the segment each
// one removed last). Nothing else is masked; no case here embeds a pid.
//
// A case whose difference is a known gap in pgverbs's walsender is listed
// in wsPending: its difference is logged, not asserted, and the test says
// when it answers as PostgreSQL does, so that its line can go.
var wsPending = map[string]string{}

// wsLSN and wsSegment match the WAL positions and segment names a masked
// case's replies may hold.
var (
	wsLSN     = regexp.MustCompile(`\b[0-9A-F]{1,8}/[0-9A-F]{1,8}\b`)
	wsSegment = regexp.MustCompile(`\b[0-9A-F]{24}\b`)
)

// wsMask replaces positions and segment names by placeholders.
func wsMask(s string) string {
	return wsSegment.ReplaceAllString(wsLSN.ReplaceAllString(s, "X/X"), "<segment>")
}

// wsSide is what differs between the two servers a command is built for.
type wsSide struct {
	addr string // host:port
	// removed is a position in a segment older than the oldest the
	// server still holds on timeline 1.
	removed uint64
}

// wsCase is one replication command.
type wsCase struct {
	name string
	sql  func(s wsSide) string
	// mask replaces the positions in the replies before they are
	// compared (see wsMask).
	mask bool
	// until, for a START_REPLICATION that streams the current timeline
	// (which never ends by itself), is where the client ends the copy
	// with CopyDone once it has received the WAL up to there.
	until uint64
	// want, when set, is what the real walsender must answer: it keeps
	// the case from passing on two servers that fail alike (a setup that
	// lost the WAL the case needs).
	want []string
}

// wsReply is what a server answered one command.
type wsReply struct {
	lines    []string // the replies as compared
	wal      []byte   // the XLogData payloads, concatenated
	walStart uint64
	largest  int // the largest XLogData payload
}

// wsMaxSend is the walsender's MAX_SEND_SIZE, 16 pages: the most WAL one
// XLogData carries.
const wsMaxSend = 16 * 8192

// TestWalsenderDiff runs the replication commands against S and against
// pgverbs and compares the replies; see the comment at the top of the
// file.
func TestWalsenderDiff(t *testing.T) {
	h := newWSHistory(t)
	cases := wsCases(h)
	pg := wsSide{addr: net.JoinHostPort(h.s.Host, itoa(h.s.Port)), removed: h.removedS}
	ours := wsSide{addr: h.e.p.Addr(), removed: h.removedP}
	want := wsRun(t, pg, cases)
	got := wsRun(t, ours, cases)
	// Relayed to S, the sessions would answer as S does and prove
	// nothing about pgverbs's walsender.
	if !strings.Contains(h.e.p.Log.String(), "replication session served by pgverbs") {
		t.Errorf("pgverbs did not serve the replication connections itself")
	}
	for i, c := range cases {
		w, g := want[i], got[i]
		if testing.Verbose() {
			t.Logf("%s\n  %s\n  (%d bytes of WAL)", c.sql(pg), strings.Join(w.lines, "\n  "), len(w.wal))
		}
		if c.want != nil && !slices.Equal(w.lines, c.want) {
			t.Errorf("%s: the real walsender answered\n  %s\nthe test expects\n  %s", c.name, strings.Join(w.lines, "\n  "), strings.Join(c.want, "\n  "))
		}
		if g.largest > wsMaxSend {
			t.Errorf("%s: pgverbs sent %d bytes of WAL in one XLogData, more than a walsender's %d", c.name, g.largest, wsMaxSend)
		}
		diff := wsDiff(w, g)
		if diff == "" {
			if _, ok := wsPending[c.name]; ok {
				t.Logf("pending case %q answers as PostgreSQL does now: take it out of wsPending", c.name)
			}
			continue
		}
		msg := fmt.Sprintf("%s: %s\npostgres:\n  %s\npgverbs:\n  %s", c.name, diff, strings.Join(w.lines, "\n  "), strings.Join(g.lines, "\n  "))
		if why, ok := wsPending[c.name]; ok {
			t.Logf("pending (%s): %s", why, msg)
			continue
		}
		t.Error(msg)
	}
	for name := range wsPending {
		if !wsHasCase(cases, name) {
			t.Errorf("wsPending names %q, which is no case", name)
		}
	}
}

func wsHasCase(cases []wsCase, name string) bool {
	for _, c := range cases {
		if c.name == name {
			return true
		}
	}
	return false
}

// wsDiff says how two replies differ, "" when they do not: the lines,
// then the WAL over the range both sent (which must not be empty when
// either sent some).
func wsDiff(want, got wsReply) string {
	if !slices.Equal(want.lines, got.lines) {
		return "the replies differ"
	}
	if len(want.wal) == 0 && len(got.wal) == 0 {
		return ""
	}
	if want.walStart != got.walStart {
		return fmt.Sprintf("WAL from %s, want from %s", walstream.FormatLSN(got.walStart), walstream.FormatLSN(want.walStart))
	}
	n := min(len(want.wal), len(got.wal))
	if n == 0 {
		return fmt.Sprintf("WAL: %d bytes, want %d", len(got.wal), len(want.wal))
	}
	for i := range n {
		if want.wal[i] != got.wal[i] {
			return fmt.Sprintf("the WAL differs at %s (compared %d bytes from %s)", walstream.FormatLSN(want.walStart+uint64(i)), n, walstream.FormatLSN(want.walStart))
		}
	}
	return ""
}

// wsHistory is the setup both servers serve: S promoted, and pgverbs in
// front of it with the archive holding the same history.
type wsHistory struct {
	s        *pgtest.Cluster
	e        *archiveEnv // pgverbs, archiving S
	segSize  uint64
	sysid    string
	history  string // 00000002.history
	first    uint64 // start of the archive's first segment, on timeline 1
	sp       uint64 // where timeline 2 forked from timeline 1
	from     uint64 // a page on timeline 2 that both have
	flushed  uint64 // what both have flushed on timeline 2
	removedS uint64 // a position S no longer holds (see wsSide.removed)
	removedP uint64 // one pgverbs's archive never held
}

// newWSHistory builds the history; see the comment at the top of the file.
func newWSHistory(t *testing.T) *wsHistory {
	t.Helper()
	ctx := testCtx(t)
	p := cluster(t, pgtest.Options{})
	srvP := connect(t, p.SuperURL())
	// Two segments before the base backup, so that S holds none of them
	// and a removed segment on timeline 1 exists to ask for.
	for _, sql := range []string{"SET synchronous_commit = on", "CREATE TABLE fill(id int, pad text)", "SELECT pg_switch_wal()", "INSERT INTO fill VALUES (0, '')", "SELECT pg_switch_wal()"} {
		if _, err := srvP.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	base := filepath.Join(t.TempDir(), "standby")
	cmd := exec.Command(p.Bin("pg_basebackup"), "-D", base, "-R", "-X", "stream", "-c", "fast", "-d", p.SuperURL())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	// wal_keep_size keeps timeline 1 in S's pg_wal past the promotion
	// and the CHECKPOINT: the historic cases stream it.
	s := pgtest.StartCopy(t, base, pgtest.Options{BinDir: p.BinDir, Password: p.Password, Settings: map[string]string{"wal_keep_size": "1GB"}}, nil)
	root := t.TempDir()
	h := &wsHistory{s: s, e: &archiveEnv{c: s, p: startProxy(t, s.URL("", "", "postgres"), "--backup-root", root), root: root, srv: connect(t, s.SuperURL()), top: t}}
	h.segSize = h.e.segSize(t)
	h.e.run(t, "START WAL ARCHIVE TO '"+walArchiveDir+"'")
	archiveWait(t, "the archive streaming", func() bool { return h.e.status(t)["state"] == "streaming" })

	// Timeline 1: a few MB, a segment switch, and a row after it, so that
	// the switch point lies inside a segment.
	for _, sql := range []string{"INSERT INTO fill SELECT g, md5(g::text) FROM generate_series(1, 40000) g", "SELECT pg_switch_wal()", "INSERT INTO fill VALUES (1, 'after the switch')"} {
		if _, err := srvP.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	end := wsLSNOf(t, srvP.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan)
	archiveWait(t, "S and the archive at "+walstream.FormatLSN(end), func() bool {
		replayed := wsLSNOf(t, h.e.srv.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn(), '0/0')::text").Scan)
		f := h.e.status(t)["flushed_lsn"]
		return replayed >= end && f != "" && lsnOf(t, f) >= end
	})

	var promoted bool
	if err := h.e.srv.QueryRow(ctx, "SELECT pg_promote()").Scan(&promoted); err != nil || !promoted {
		t.Fatalf("pg_promote: %v %v", promoted, err)
	}
	// Timeline 2: more WAL, synchronously committed so that it is
	// flushed when the INSERT returns.
	if _, err := h.e.srv.Exec(ctx, "SET synchronous_commit = on"); err != nil {
		t.Fatal(err)
	}
	h.from = h.e.serverLSN(t, "SELECT pg_current_wal_insert_lsn()")
	h.from -= h.from % 8192
	if _, err := h.e.srv.Exec(ctx, "INSERT INTO fill SELECT g, md5(g::text) FROM generate_series(1, 10000) g"); err != nil {
		t.Fatal(err)
	}
	h.flushed = h.e.serverLSN(t, "SELECT pg_current_wal_flush_lsn()")
	archiveWait(t, "the archive on timeline 2 at "+walstream.FormatLSN(h.flushed), func() bool {
		st := h.e.status(t)
		return st["timeline"] == "2" && st["flushed_lsn"] != "" && lsnOf(t, st["flushed_lsn"]) >= h.flushed
	})

	var history string
	if err := h.e.srv.QueryRow(ctx, "SELECT pg_read_file('pg_wal/00000002.history')").Scan(&history); err != nil {
		t.Fatal(err)
	}
	fields := strings.Split(history, "\t")
	if len(fields) < 2 || fields[0] != "1" {
		t.Fatalf("00000002.history: %q", history)
	}
	h.sp, h.history = lsnOf(t, fields[1]), history
	if err := h.e.srv.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&h.sysid); err != nil {
		t.Fatal(err)
	}

	if _, err := h.e.srv.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	var oldest string
	if err := h.e.srv.QueryRow(ctx, `SELECT min(name) FROM pg_ls_waldir() WHERE name ~ '^00000001[0-9A-F]{16}$'`).Scan(&oldest); err != nil {
		t.Fatal(err)
	}
	h.removedS = h.segStart(t, oldest) - h.segSize
	for _, r := range h.e.rows(t, "SHOW WAL ARCHIVE SEGMENTS") {
		if r["state"] != "history" {
			h.first = lsnOf(t, r["start_lsn"])
			break
		}
	}
	h.removedP = h.first - h.segSize
	if h.removedS == 0 || h.removedP == 0 || h.first == 0 || h.first >= h.sp {
		t.Fatalf("positions: S holds timeline 1 from %s, the archive from %s, the switch at %s", oldest, walstream.FormatLSN(h.first), walstream.FormatLSN(h.sp))
	}
	t.Logf("archive from %s, switch point %s, timeline 2 from %s to %s, removed %s (S) and %s (pgverbs)",
		walstream.FormatLSN(h.first), walstream.FormatLSN(h.sp), walstream.FormatLSN(h.from), walstream.FormatLSN(h.flushed),
		walstream.FormatLSN(h.removedS), walstream.FormatLSN(h.removedP))
	return h
}

// segStart is where the segment named name starts.
func (h *wsHistory) segStart(t *testing.T, name string) uint64 {
	t.Helper()
	var log, seg uint64
	if _, err := fmt.Sscanf(name[8:], "%08X%08X", &log, &seg); err != nil {
		t.Fatalf("segment name %q: %v", name, err)
	}
	return (log*(0x100000000/h.segSize) + seg) * h.segSize
}

// wsLSNOf scans a pg_lsn read as text.
func wsLSNOf(t *testing.T, scan func(...any) error) uint64 {
	t.Helper()
	var s string
	if err := scan(&s); err != nil {
		t.Fatal(err)
	}
	return lsnOf(t, s)
}

func wsFixed(sql string) func(wsSide) string { return func(wsSide) string { return sql } }

// wsCases is the command list, in the order it runs on one connection
// (slots created by one case are read and dropped by later ones).
func wsCases(h *wsHistory) []wsCase {
	lsn := walstream.FormatLSN
	sp := lsn(h.sp)
	endOfTimeline := []string{
		"RowDescription(next_tli:20, next_tli_startpos:25)",
		"DataRow(\"2\", \"" + sp + "\")",
		"CommandComplete(START_STREAMING)",
		"CommandComplete(START_REPLICATION)",
		"ReadyForQuery(I)",
	}
	past := h.sp - h.sp%h.segSize + h.segSize
	return []wsCase{
		// xlogpos is each server's own flush position.
		{name: "IDENTIFY_SYSTEM", sql: wsFixed("IDENTIFY_SYSTEM"), mask: true,
			want: []string{"RowDescription(systemid:25, timeline:23, xlogpos:25, dbname:25)", `DataRow("` + h.sysid + `", "2", "X/X", NULL)`, "CommandComplete(IDENTIFY_SYSTEM)", "ReadyForQuery(I)"}},
		{name: "TIMELINE_HISTORY 2", sql: wsFixed("TIMELINE_HISTORY 2"),
			want: []string{"RowDescription(filename:25, content:25)", fmt.Sprintf(`DataRow("00000002.history", %q)`, h.history), "CommandComplete(TIMELINE_HISTORY)", "ReadyForQuery(I)"}},
		{name: "TIMELINE_HISTORY 3", sql: wsFixed("TIMELINE_HISTORY 3"),
			want: []string{"RowDescription(filename:25, content:25)", `ErrorResponse(ERROR 58P01 could not open file "pg_wal/00000003.history": No such file or directory)`, "ReadyForQuery(I)"}},
		{name: "SHOW wal_segment_size", sql: wsFixed("SHOW wal_segment_size")},
		{name: "SHOW data_directory_mode", sql: wsFixed("SHOW data_directory_mode")},
		{name: "READ_REPLICATION_SLOT missing", sql: wsFixed("READ_REPLICATION_SLOT nosuch"),
			want: []string{"RowDescription(slot_type:25, restart_lsn:25, restart_tli:20)", "DataRow(NULL, NULL, NULL)", "CommandComplete(READ_REPLICATION_SLOT)", "ReadyForQuery(I)"}},
		{name: "CREATE_REPLICATION_SLOT legacy RESERVE_WAL", sql: wsFixed(`CREATE_REPLICATION_SLOT "s1" PHYSICAL RESERVE_WAL`)},
		{name: "CREATE_REPLICATION_SLOT (RESERVE_WAL)", sql: wsFixed(`CREATE_REPLICATION_SLOT "s2" PHYSICAL (RESERVE_WAL)`)},
		{name: "CREATE_REPLICATION_SLOT TEMPORARY", sql: wsFixed(`CREATE_REPLICATION_SLOT "t1" TEMPORARY PHYSICAL`)},
		// restart_lsn is where each server's WAL stood at the CREATE.
		{name: "READ_REPLICATION_SLOT s1", sql: wsFixed("READ_REPLICATION_SLOT s1"), mask: true},
		{name: "READ_REPLICATION_SLOT temporary", sql: wsFixed("READ_REPLICATION_SLOT t1")},
		// An ERROR drops the session's temporary slots (the walsender's
		// error cleanup): t1 is gone after this one.
		{name: "CREATE_REPLICATION_SLOT existing", sql: wsFixed(`CREATE_REPLICATION_SLOT "s1" PHYSICAL`)},
		{name: "READ_REPLICATION_SLOT temporary after an error", sql: wsFixed("READ_REPLICATION_SLOT t1")},
		{name: "DROP_REPLICATION_SLOT s1", sql: wsFixed(`DROP_REPLICATION_SLOT "s1"`)},
		{name: "DROP_REPLICATION_SLOT missing", sql: wsFixed(`DROP_REPLICATION_SLOT "nosuch"`)},
		{name: "START_REPLICATION timeline 1 before the switch point", sql: wsFixed("START_REPLICATION " + lsn(h.first) + " TIMELINE 1"),
			want: append([]string{"CopyBothResponse(0)", "XLogData(" + lsn(h.first) + ".." + sp + ")", "CopyDone"}, endOfTimeline...)},
		// No TIMELINE: the current one, 2, which starts at the switch
		// point; before it the WAL is timeline 1's.
		{name: "START_REPLICATION current timeline before the switch point", sql: wsFixed("START_REPLICATION " + lsn(h.first)), until: h.sp},
		{name: "START_REPLICATION timeline 1 at the switch point", sql: wsFixed("START_REPLICATION " + sp + " TIMELINE 1"), want: endOfTimeline},
		{name: "START_REPLICATION timeline 1 past the switch point", sql: wsFixed("START_REPLICATION " + lsn(past) + " TIMELINE 1"),
			want: []string{"ErrorResponse(ERROR XX000 requested starting point " + lsn(past) + " on timeline 1 is not in this server's history; DETAIL: This server's history forked from timeline 1 at " + sp + ".)", "ReadyForQuery(I)"}},
		// The flush positions in the error differ between the servers.
		{name: "START_REPLICATION ahead of the flush position", sql: wsFixed("START_REPLICATION " + lsn(h.flushed+64*h.segSize) + " TIMELINE 2"), mask: true,
			want: []string{"CopyBothResponse(0)", "ErrorResponse(ERROR XX000 requested starting point X/X is ahead of the WAL flush position of this server X/X)", "ReadyForQuery(I)"}},
		// Each server removed (or never held) other segments.
		{name: "START_REPLICATION removed segment", sql: func(s wsSide) string { return "START_REPLICATION " + lsn(s.removed) + " TIMELINE 1" }, mask: true,
			want: []string{"CopyBothResponse(0)", "ErrorResponse(ERROR 58P01 requested WAL segment <segment> has already been removed)", "ReadyForQuery(I)"}},
		// A standby's walreceiver after a failover: its slot, the old
		// timeline from the segment of the switch point.
		{name: "START_REPLICATION SLOT s2 timeline 1", sql: wsFixed(`START_REPLICATION SLOT "s2" PHYSICAL ` + lsn(h.sp-h.sp%h.segSize) + " TIMELINE 1"),
			want: append([]string{"CopyBothResponse(0)", "XLogData(" + lsn(h.sp-h.sp%h.segSize) + ".." + sp + ")", "CopyDone"}, endOfTimeline...)},
		{name: "START_REPLICATION SLOT s2", sql: wsFixed(`START_REPLICATION SLOT "s2" PHYSICAL ` + lsn(h.from)), until: h.flushed,
			want: []string{"CopyBothResponse(0)", "XLogData(from " + lsn(h.from) + ")", "CopyDone", "CommandComplete(START_STREAMING)", "CommandComplete(START_REPLICATION)", "ReadyForQuery(I)"}},
		{name: "START_REPLICATION SLOT missing", sql: wsFixed(`START_REPLICATION SLOT "nosuch" PHYSICAL ` + lsn(h.from))},
		{name: "START_REPLICATION timeline 3", sql: wsFixed("START_REPLICATION " + lsn(h.from) + " TIMELINE 3")},
		{name: "CREATE_REPLICATION_SLOT invalid name", sql: wsFixed(`CREATE_REPLICATION_SLOT "Bad" PHYSICAL`)},
		{name: "CREATE_REPLICATION_SLOT LOGICAL", sql: wsFixed(`CREATE_REPLICATION_SLOT "l1" LOGICAL pgoutput`)},
		{name: "SHOW another setting", sql: wsFixed("SHOW max_wal_senders")},
		{name: "empty query", sql: wsFixed("")},
		{name: "two commands in one query", sql: wsFixed("IDENTIFY_SYSTEM; IDENTIFY_SYSTEM")},
		{name: "SQL on a physical replication connection", sql: wsFixed("SELECT 1")},
		{name: "unknown command", sql: wsFixed("NO_SUCH_COMMAND")},
		{name: "syntax error", sql: wsFixed("IDENTIFY_SYSTEM now")},
		{name: "DROP_REPLICATION_SLOT temporary", sql: wsFixed(`DROP_REPLICATION_SLOT "t1"`)},
		{name: "DROP_REPLICATION_SLOT s2", sql: wsFixed(`DROP_REPLICATION_SLOT "s2" WAIT`)},
	}
}

// wsConn is a raw physical replication connection.
type wsConn struct {
	conn net.Conn
	fe   *pgproto3.Frontend
}

// wsDial connects to addr with replication=true as postgres (trust) and
// takes the connection over from pgconn after the startup.
func wsDial(t *testing.T, addr string) *wsConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig("postgres://postgres@" + addr + "/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "true"
	pc, err := pgconn.ConnectConfig(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("replication connection to %s: %v", addr, err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hj.Conn.Close() })
	return &wsConn{conn: hj.Conn, fe: hj.Frontend}
}

// wsRun runs the cases on one connection to side, in order; a case that
// loses the connection is recorded so, and the next one connects anew.
func wsRun(t *testing.T, side wsSide, cases []wsCase) []wsReply {
	t.Helper()
	var c *wsConn
	out := make([]wsReply, len(cases))
	for i, tc := range cases {
		if c == nil {
			c = wsDial(t, side.addr)
		}
		r, err := c.exchange(tc.sql(side), tc.until)
		if err != nil {
			r.lines = append(r.lines, "<"+wsErr(err)+">")
			c.conn.Close()
			c = nil
		}
		if tc.mask {
			for j := range r.lines {
				r.lines[j] = wsMask(r.lines[j])
			}
		}
		out[i] = r
	}
	if c != nil {
		c.fe.Send(&pgproto3.Terminate{})
		_ = c.fe.Flush()
	}
	return out
}

func wsErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	return "connection lost: " + err.Error()
}

// wsReplyTimeout bounds the wait for each message: a walsender streaming
// a timeline sends WAL or keepalives well within it.
const wsReplyTimeout = 30 * time.Second

// exchange sends sql as a simple Query and reads the replies up to
// ReadyForQuery. In CopyBoth it collects the WAL, answers keepalives that
// ask for a reply, answers the server's CopyDone with its own and, with
// until set, sends CopyDone itself once it received the WAL up to until.
func (c *wsConn) exchange(sql string, until uint64) (wsReply, error) {
	var r wsReply
	c.fe.Send(&pgproto3.Query{String: sql})
	if err := c.fe.Flush(); err != nil {
		return r, err
	}
	var walEnd uint64 // the end of the WAL received, 0 before any
	inWAL, sentDone := false, false
	endWAL := func() {
		if !inWAL {
			return
		}
		inWAL = false
		if until != 0 {
			r.lines = append(r.lines, "XLogData(from "+walstream.FormatLSN(r.walStart)+")")
		} else {
			r.lines = append(r.lines, "XLogData("+walstream.FormatLSN(r.walStart)+".."+walstream.FormatLSN(walEnd)+")")
		}
	}
	sendDone := func() error {
		sentDone = true
		c.fe.Send(&pgproto3.CopyDone{})
		return c.fe.Flush()
	}
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(wsReplyTimeout))
		msg, err := c.fe.Receive()
		if err != nil {
			endWAL()
			return r, err
		}
		if cd, ok := msg.(*pgproto3.CopyData); ok {
			line, err := c.copyData(&r, cd.Data, &walEnd, &inWAL)
			if err != nil {
				return r, err
			}
			if line != "" {
				endWAL()
				r.lines = append(r.lines, line)
			}
			if until != 0 && walEnd >= until && !sentDone {
				if err := sendDone(); err != nil {
					return r, err
				}
			}
			continue
		}
		endWAL()
		switch m := msg.(type) {
		case *pgproto3.ParameterStatus:
			// Not part of a command's reply; a relay may add some.
			continue
		case *pgproto3.CopyDone:
			r.lines = append(r.lines, "CopyDone")
			if !sentDone {
				if err := sendDone(); err != nil {
					return r, err
				}
			}
			continue
		case *pgproto3.ReadyForQuery:
			r.lines = append(r.lines, fmt.Sprintf("ReadyForQuery(%c)", m.TxStatus))
			return r, c.drain(&r)
		}
		r.lines = append(r.lines, wsLine(msg))
	}
}

// wsDrainWait is how long a reply is waited for after ReadyForQuery: a
// message then belongs to no command, and is recorded with the one it
// followed rather than taken for the next command's reply.
const wsDrainWait = 200 * time.Millisecond

// drain records what comes after ReadyForQuery, within wsDrainWait, as
// "after ReadyForQuery" lines.
func (c *wsConn) drain(r *wsReply) error {
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(wsDrainWait))
		msg, err := c.fe.Receive()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
		line := wsLine(msg)
		if m, ok := msg.(*pgproto3.ReadyForQuery); ok {
			line = fmt.Sprintf("ReadyForQuery(%c)", m.TxStatus)
		}
		r.lines = append(r.lines, "after ReadyForQuery: "+line)
	}
}

// copyData takes one CopyData of a replication stream: XLogData joins the
// WAL (a gap or an overlap with what came before is a line of its own),
// a keepalive is answered when it asks for a reply, and anything else is
// a line.
func (c *wsConn) copyData(r *wsReply, data []byte, walEnd *uint64, inWAL *bool) (string, error) {
	if len(data) == 0 {
		return "CopyData(empty)", nil
	}
	switch data[0] {
	case 'w':
		if len(data) < 25 {
			return fmt.Sprintf("XLogData(short: %d bytes)", len(data)), nil
		}
		start := binary.BigEndian.Uint64(data[1:])
		payload := data[25:]
		if *walEnd == 0 {
			r.walStart = start
		} else if start != *walEnd {
			return fmt.Sprintf("XLogData(at %s after %s)", walstream.FormatLSN(start), walstream.FormatLSN(*walEnd)), nil
		}
		r.wal = append(r.wal, payload...)
		r.largest = max(r.largest, len(payload))
		*walEnd = start + uint64(len(payload))
		*inWAL = true
		return "", nil
	case 'k':
		if len(data) != 18 {
			return fmt.Sprintf("Keepalive(%d bytes)", len(data)), nil
		}
		if data[17] == 1 {
			c.fe.Send(&pgproto3.CopyData{Data: walstream.StandbyStatus(*walEnd, *walEnd, *walEnd, time.Now(), false)})
			return "", c.fe.Flush()
		}
		return "", nil
	}
	return fmt.Sprintf("CopyData(%q)", data[:1]), nil
}

// wsLine is the compared form of a reply other than ReadyForQuery and
// the copy stream.
func wsLine(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.RowDescription:
		cols := make([]string, len(m.Fields))
		for i, f := range m.Fields {
			cols[i] = fmt.Sprintf("%s:%d", f.Name, f.DataTypeOID)
		}
		return "RowDescription(" + strings.Join(cols, ", ") + ")"
	case *pgproto3.DataRow:
		vals := make([]string, len(m.Values))
		for i, v := range m.Values {
			if v == nil {
				vals[i] = "NULL"
			} else {
				vals[i] = fmt.Sprintf("%q", v)
			}
		}
		return "DataRow(" + strings.Join(vals, ", ") + ")"
	case *pgproto3.CommandComplete:
		return "CommandComplete(" + string(m.CommandTag) + ")"
	case *pgproto3.ErrorResponse:
		return "ErrorResponse(" + wsNotice(m.Severity, m.Code, m.Message, m.Detail, m.Hint) + ")"
	case *pgproto3.NoticeResponse:
		return "NoticeResponse(" + wsNotice(m.Severity, m.Code, m.Message, m.Detail, m.Hint) + ")"
	case *pgproto3.CopyBothResponse:
		return fmt.Sprintf("CopyBothResponse(%d%s)", m.OverallFormat, wsFormats(m.ColumnFormatCodes))
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3.")
}

func wsNotice(severity, code, message, detail, hint string) string {
	s := severity + " " + code + " " + message
	if detail != "" {
		s += "; DETAIL: " + detail
	}
	if hint != "" {
		s += "; HINT: " + hint
	}
	return s
}

func wsFormats(codes []uint16) string {
	if len(codes) == 0 {
		return ""
	}
	return fmt.Sprintf(", columns %v", codes)
}
