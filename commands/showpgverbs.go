package commands

import (
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/walarchive"
)

// The SHOW PGVERBS commands report on pgverbs itself, for its operators:
//
//	SHOW PGVERBS CLIENTS   one row per client session
//	SHOW PGVERBS STATS     one row per counter: total since start, rate over the last minute
//	SHOW PGVERBS CONFIG    one row per setting in effect, secrets redacted, and where it came from
//	SHOW PGVERBS VERSION   pgverbs', Go's and the server's versions
//
// They are listings like the other SHOW commands (show.go), so they share
// its grammar and the way rows reach the client on every protocol path.
//
// Who may see what is the server's to say, asked over the session's own
// connection: CLIENTS, STATS and CONFIG need a superuser or a member of
// pg_monitor, the role PostgreSQL grants its own monitoring views to.
// Without it CLIENTS still lists the sessions of the roles whose
// privileges the current role has, as pg_stat_activity shows those in
// full, and the others get 42501. VERSION is open to every role, as
// version() is.

// monitorRole is the role whose members may see everything.
const monitorRole = "pg_monitor"

// ShowPgverbsCommands returns SHOW PGVERBS CLIENTS, STATS, CONFIG and
// VERSION. src is the proxy, rates a Window over it, and config returns the
// configuration in effect.
func ShowPgverbsCommands(src stats.Source, rates *stats.Window, config func() *conf.Config, opts ...PgverbsOption) []*Show {
	var o pgverbsOptions
	for _, opt := range opts {
		opt(&o)
	}
	return []*Show{
		{list: showClients{src: src}},
		{list: showStats{rates: rates, archive: o.archive}},
		{list: showConfig{config: config}},
		{list: showVersion{}},
	}
}

// PgverbsOption adds a part of pgverbs to what SHOW PGVERBS reports.
type PgverbsOption func(*pgverbsOptions)

type pgverbsOptions struct {
	archive walarchive.Archiver
}

// WithArchive has SHOW PGVERBS STATS report a, the WAL archive, once it
// was started (or resumed): its state, lag, flushed position, files and
// reconnections, after the proxy's counters.
func WithArchive(a walarchive.Archiver) PgverbsOption {
	return func(o *pgverbsOptions) { o.archive = a }
}

// pgverbsListing is the part of listing all SHOW PGVERBS commands share:
// no extension name and no use of the extensions' repository.
type pgverbsListing struct{}

func (pgverbsListing) takesName() (allowed, required bool) { return false, false }

// showClients is SHOW PGVERBS CLIENTS.
type showClients struct {
	pgverbsListing
	src stats.Source
}

func (showClients) words() []string { return []string{"PGVERBS", "CLIENTS"} }

func (showClients) columns() []Column {
	// Times are text: the proxy encodes no timestamptz, and clients that
	// ask for binary results (pgx) would ask for it in binary.
	return []Column{
		{"pid", pgwire.Int4OID}, {"user", pgwire.TextOID}, {"database", pgwire.TextOID},
		{"application_name", pgwire.TextOID}, {"client_addr", pgwire.TextOID}, {"tls", pgwire.BoolOID},
		{"state", pgwire.TextOID}, {"connected_at", pgwire.TextOID}, {"last_message_at", pgwire.TextOID},
		{"bytes_in", pgwire.Int8OID}, {"bytes_out", pgwire.Int8OID},
		{"transactions", pgwire.Int8OID}, {"queries", pgwire.Int8OID}, {"command", pgwire.TextOID},
	}
}

// rows lists every client to a monitor, else those of the roles whose
// privileges the current role has.
func (l showClients) rows(c Conn, _ *extension.Repo, _ string) ([][]*string, error) {
	clients := l.src.Clients()
	ok, err := showMonitor(c)
	if err != nil {
		return nil, err
	}
	if !ok && len(clients) > 0 {
		if clients, err = showOwnClients(c, clients); err != nil {
			return nil, err
		}
	}
	slices.SortStableFunc(clients, func(a, b stats.Client) int {
		if n := a.ConnectedAt.Compare(b.ConnectedAt); n != 0 {
			return n
		}
		return int(a.PID) - int(b.PID)
	})
	rows := make([][]*string, 0, len(clients))
	for _, cl := range clients {
		var pid, last *string
		if cl.PID != 0 {
			pid = strp(strconv.FormatUint(uint64(cl.PID), 10))
		}
		if !cl.LastMessageAt.IsZero() {
			last = strp(showTime(cl.LastMessageAt))
		}
		rows = append(rows, []*string{pid, strp(cl.User), strp(cl.Database),
			strp(cl.ApplicationName), showOrNull(cl.Addr), strp(showBool(cl.TLS)),
			strp(cl.State.String()), strp(showTime(cl.ConnectedAt)), last,
			showUint(cl.BytesIn), showUint(cl.BytesOut), showUint(cl.Transactions), showUint(cl.Queries),
			showOrNull(cl.Command)})
	}
	return rows, nil
}

// showOwnClients keeps the clients whose user the current role has the
// privileges of (itself, and the roles it inherits), as the server
// decides with pg_has_role's USAGE.
func showOwnClients(c Conn, clients []stats.Client) ([]stats.Client, error) {
	var users []string
	for _, cl := range clients {
		if !slices.Contains(users, cl.User) {
			users = append(users, cl.User)
		}
	}
	arr := arrayLiteral(users)
	res, err := queryRows(c, 1, `SELECT rolname FROM pg_catalog.pg_roles
WHERE rolname = ANY ($1::pg_catalog.text[]) AND pg_catalog.pg_has_role(current_user, oid, 'USAGE')`, &arr)
	if err != nil {
		return nil, err
	}
	own := map[string]bool{}
	for _, r := range res {
		own[string(r[0])] = true
	}
	return slices.DeleteFunc(clients, func(cl stats.Client) bool { return !own[cl.User] }), nil
}

// showStats is SHOW PGVERBS STATS: one row per counter rather than one
// column, so that counters added later (the WAL archive's, the relay's)
// are new rows that clients already know how to read, and each total sits
// beside its rate.
type showStats struct {
	pgverbsListing
	rates   *stats.Window
	archive walarchive.Archiver // nil: no archive rows
}

func (showStats) words() []string { return []string{"PGVERBS", "STATS"} }

func (showStats) columns() []Column {
	return []Column{{"name", pgwire.TextOID}, {"total", pgwire.Int8OID}, {"per_second_60s", pgwire.Float8OID}}
}

// statsCounter is a row of SHOW PGVERBS STATS.
type statsCounter struct {
	name string
	get  func(stats.Totals) uint64
}

// statsCounters lists the counters in the order they are shown, one per
// refusal reason among them.
var statsCounters = func() []statsCounter {
	cs := []statsCounter{{"accepted", func(t stats.Totals) uint64 { return t.Accepted }}}
	for _, r := range stats.Refusals {
		cs = append(cs, statsCounter{"refused_" + r.String(), func(t stats.Totals) uint64 { return t.Refused[r] }})
	}
	return append(cs,
		statsCounter{"bytes_in", func(t stats.Totals) uint64 { return t.BytesIn }},
		statsCounter{"bytes_out", func(t stats.Totals) uint64 { return t.BytesOut }},
		statsCounter{"transactions", func(t stats.Totals) uint64 { return t.Transactions }},
		statsCounter{"queries", func(t stats.Totals) uint64 { return t.Queries }},
	)
}()

func (l showStats) rows(c Conn, _ *extension.Repo, _ string) ([][]*string, error) {
	if err := showRequireMonitor(c, l.words()); err != nil {
		return nil, err
	}
	r := l.rates.Read()
	rows := make([][]*string, 0, len(statsCounters))
	for _, sc := range statsCounters {
		var rate *string
		if v, ok := r.PerSecond(sc.get); ok {
			// Three decimals: a rate over a minute of samples is not
			// worth the 17 digits of the float's shortest form.
			rate = strp(strconv.FormatFloat(math.Round(v*1000)/1000, 'g', -1, 64))
		}
		rows = append(rows, []*string{strp(sc.name), showUint(sc.get(r.Now)), rate})
	}
	return append(rows, archiveStatsRows(l.archive)...), nil
}

// archiveStates are the states the archive's rows count, one row each
// (1 for the current one), so that the set of rows does not change with
// the state and a script tests one name.
var archiveStates = []walarchive.State{walarchive.Streaming, walarchive.Paused, walarchive.Reconnecting, walarchive.Stopped, walarchive.Failed}

// archiveStatsRows are the WAL archive's rows of SHOW PGVERBS STATS, none
// before it was started. They carry no rate: the window samples the
// proxy's counters only. The flushed position is the LSN as a number of
// bytes, as pg_wal_lsn_diff counts them.
func archiveStatsRows(a walarchive.Archiver) [][]*string {
	if a == nil {
		return nil
	}
	s, ok := a.Status()
	if !ok {
		return nil
	}
	var rows [][]*string
	add := func(name string, v int64) {
		rows = append(rows, []*string{strp("wal_archive_" + name), strp(strconv.FormatInt(v, 10)), nil})
	}
	for _, st := range archiveStates {
		var current int64
		if s.State == st {
			current = 1
		}
		add("state_"+string(st), current)
	}
	add("lag_bytes", s.LagBytes)
	add("flushed_lsn", int64(s.Flushed))
	add("segments", int64(s.Segments))
	add("bytes", s.Bytes)
	add("reconnects", int64(s.Reconnects))
	return rows
}

// showConfig is SHOW PGVERBS CONFIG.
type showConfig struct {
	pgverbsListing
	config func() *conf.Config
}

func (showConfig) words() []string { return []string{"PGVERBS", "CONFIG"} }

func (showConfig) columns() []Column {
	return []Column{{"name", pgwire.TextOID}, {"setting", pgwire.TextOID}, {"source", pgwire.TextOID}, {"description", pgwire.TextOID}}
}

func (l showConfig) rows(c Conn, _ *extension.Repo, _ string) ([][]*string, error) {
	if err := showRequireMonitor(c, l.words()); err != nil {
		return nil, err
	}
	var rows [][]*string
	for _, s := range l.config().Settings() {
		rows = append(rows, []*string{strp(s.Name), strp(s.Value), strp(string(s.Source)), strp(s.Description)})
	}
	return rows, nil
}

// showVersion is SHOW PGVERBS VERSION.
type showVersion struct{ pgverbsListing }

func (showVersion) words() []string { return []string{"PGVERBS", "VERSION"} }

func (showVersion) columns() []Column {
	return []Column{{"pgverbs_version", pgwire.TextOID}, {"go_version", pgwire.TextOID}, {"server_version", pgwire.TextOID}}
}

func (showVersion) rows(c Conn, _ *extension.Repo, _ string) ([][]*string, error) {
	server, err := queryRow(c, 1, `SELECT pg_catalog.current_setting('server_version')`)
	if err != nil {
		return nil, err
	}
	return [][]*string{{strp(pgverbsVersion()), strp(runtime.Version()), showText(server[0])}}, nil
}

// pgverbsVersion is the main module's version as the go command stamped
// it: a release tag, a pseudo-version from the VCS, or "(devel)".
func pgverbsVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// showMonitor asks the server whether the current role is a superuser or
// a member of pg_monitor.
func showMonitor(c Conn) (bool, error) {
	if la, ok := c.(LocalAdmin); ok {
		// No server to ask while it is down: wal_auth_admins decides.
		return la.LocalAdmin(), nil
	}
	r, err := queryRow(c, 1, `SELECT coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), false)
OR pg_catalog.pg_has_role(current_user, '`+monitorRole+`', 'MEMBER')`)
	if err != nil {
		return false, err
	}
	return string(r[0]) == "t", nil
}

// showRequireMonitor fails with 42501, in PostgreSQL's words, unless the
// current role may run the command of words.
func showRequireMonitor(c Conn, words []string) error {
	ok, err := showMonitor(c)
	if err != nil || ok {
		return err
	}
	cmd := "SHOW " + strings.Join(words, " ")
	return pgerr.New(pgerr.InsufficientPrivilege, "permission denied to run %s", cmd).
		WithHint("Only superusers and members of the %q role may run %s.", monitorRole, cmd)
}

// showTime renders t as PostgreSQL's ISO DateStyle renders a timestamptz
// in UTC, e.g. 2026-12-03 14:51:19.123456+00.
func showTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.999999-07") }

func showUint(n uint64) *string { return strp(strconv.FormatUint(n, 10)) }

func showBool(b bool) string {
	if b {
		return "t"
	}
	return "f"
}
