package commands

import (
	"context"
	"strconv"
	"strings"
	"time"
	"unicode"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walstream"
)

// WALSourceSetter is the archive's side of SET SOURCE and FAILOVER
// (*walarchive.Manager).
type WALSourceSetter interface {
	SetSource(ctx context.Context, conninfo, user string, force bool) (walarchive.SourceResult, error)
	Failover(ctx context.Context, o walarchive.FailoverOptions) (walarchive.FailoverResult, error)
}

// LocalAdmin is implemented by the Conn of a session pgverbs
// authenticated itself while the backend was unreachable: there is no
// server to ask for the role's privileges, so pgverbs's auth file says
// whether the role is an admin.
type LocalAdmin interface {
	LocalAdmin() bool
}

// WALFailover is FAILOVER WAL ARCHIVE TO 'conninfo' [WITH (...)].
type WALFailover struct {
	archiver WALSourceSetter
}

// NewWALFailover returns FAILOVER WAL ARCHIVE over a (nil: refused).
func NewWALFailover(a WALSourceSetter) *WALFailover { return &WALFailover{archiver: a} }

// Name implements Command.
func (*WALFailover) Name() string { return "FAILOVER WAL ARCHIVE" }

// Keywords implements Command.
func (*WALFailover) Keywords() []string { return []string{"FAILOVER", "WAL", "ARCHIVE"} }

// failoverStmt is a parsed FAILOVER.
type failoverStmt struct {
	conninfo                string
	catchUp, promote, force bool
	timeout                 time.Duration
}

// failoverOptions are FAILOVER's WITH options.
var failoverOptions = []string{"catch_up", "promote", "timeout", "force"}

// Parse implements Parser.
func (f *WALFailover) Parse(sql string) (Prepared, error) {
	st, err := parse(sql, (*parser).failover)
	if err != nil {
		return nil, err
	}
	return &failoverRun{cmd: f, st: st}, nil
}

func (p *parser) failover() (*failoverStmt, error) {
	for _, w := range []string{"failover", "wal", "archive"} {
		if err := p.expectWord(w); err != nil {
			return nil, err
		}
	}
	if err := p.expect(pg_query.Token_TO); err != nil {
		return nil, err
	}
	conninfo, err := p.walString()
	if err != nil {
		return nil, err
	}
	st := &failoverStmt{conninfo: conninfo, catchUp: true, promote: true, timeout: time.Minute}
	if p.peekIs(0, pg_query.Token_WITH) {
		p.pos++
		err := p.optionList("FAILOVER WAL ARCHIVE", failoverOptions, func(name string) error {
			if name == "timeout" {
				vt := p.peek(0)
				v, err := p.walString()
				if err != nil {
					return err
				}
				d, ok := parseInterval(v)
				if !ok || d <= 0 {
					e := pgerr.New(pgerr.InvalidParameterValue, "invalid TIMEOUT %q", v)
					e.Hint = "Write a positive interval such as '30s', '2 min' or '1 hour'."
					e.Position = PositionAt(p.sql, int(vt.Start))
					return e
				}
				st.timeout = d
				return nil
			}
			v, err := p.walWord(name, onOff)
			if err != nil {
				return err
			}
			switch name {
			case "catch_up":
				st.catchUp = isOn(v)
			case "promote":
				st.promote = isOn(v)
			case "force":
				st.force = isOn(v)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return st, p.finish()
}

// optionList parses "(name value [, ...])" with the options allowed of
// cmd, each at most once; value reads the value of the option name (the
// parser stands after the name).
func (p *parser) optionList(cmd string, allowed []string, value func(name string) error) error {
	if err := p.expect(pg_query.Token_ASCII_40); err != nil {
		return err
	}
	seen := map[string]bool{}
	for {
		t := p.peek(0)
		name := ""
		if t != nil {
			name = asciiLower(p.text(t))
		}
		if t == nil || !contains(allowed, name) {
			return unknownOption(p, t, cmd, allowed)
		}
		if seen[name] {
			e := pgerr.New(pgerr.SyntaxError, "conflicting or redundant options")
			e.Position = PositionAt(p.sql, int(t.Start))
			return e
		}
		seen[name] = true
		p.pos++
		if err := value(name); err != nil {
			return err
		}
		if !p.peekIs(0, pg_query.Token_ASCII_44) {
			break
		}
		p.pos++
	}
	return p.expect(pg_query.Token_ASCII_41)
}

// onOffOptions parses "(name on|off [, ...])" for the boolean options
// allowed of cmd; a missing value means on.
func (p *parser) onOffOptions(cmd string, allowed []string) (map[string]bool, error) {
	out := map[string]bool{}
	err := p.optionList(cmd, allowed, func(name string) error {
		out[name] = true
		if !p.peekIs(0, pg_query.Token_ASCII_44) && !p.peekIs(0, pg_query.Token_ASCII_41) && p.peek(0) != nil {
			w, err := p.walWord(name, onOff)
			if err != nil {
				return err
			}
			out[name] = isOn(w)
		}
		return nil
	})
	return out, err
}

// unknownOption is 22023 for an option cmd does not take.
func unknownOption(p *parser, t *pg_query.ScanToken, cmd string, allowed []string) error {
	if t == nil {
		return p.syntaxError(t)
	}
	e := pgerr.New(pgerr.InvalidParameterValue, "unrecognized %s option %q", cmd, p.text(t))
	e.Hint = "Valid options are: " + strings.ToUpper(strings.Join(allowed, ", ")) + "."
	e.Position = PositionAt(p.sql, int(t.Start))
	return e
}

// parseInterval reads the interval forms a TIMEOUT takes without a server
// to ask (FAILOVER runs when the primary is gone): a number of seconds, or
// number-unit pairs ("90s", "2 min", "1 hour 30 minutes").
func parseInterval(s string) (time.Duration, bool) {
	units := map[string]time.Duration{
		"ms": time.Millisecond, "millisecond": time.Millisecond, "milliseconds": time.Millisecond,
		"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
		"min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
		"h": time.Hour, "hour": time.Hour, "hours": time.Hour,
	}
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "" {
		return 0, false
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return 0, false
		}
		s = strings.TrimLeft(s[i:], " ")
		j := strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) })
		if j < 0 {
			j = len(s)
		}
		unit := time.Second
		if j > 0 {
			u, ok := units[s[:j]]
			if !ok {
				return 0, false
			}
			unit = u
		}
		total += time.Duration(n * float64(unit))
		s = strings.TrimLeft(s[j:], " ")
	}
	return total, true
}

// failoverRun is one FAILOVER.
type failoverRun struct {
	cmd *WALFailover
	st  *failoverStmt
}

// Standalone implements Standalone: it promotes a server and moves the
// archive, nothing of the client's transaction.
func (*failoverRun) Standalone() {}

// CommandName names the command in the engine's messages.
func (*failoverRun) CommandName() string { return "FAILOVER WAL ARCHIVE" }

// failoverColumns are FAILOVER's row.
var failoverColumns = []Column{
	{"timeline", pgwire.Int8OID}, {"switch_point", pgwire.PgLSNOID}, {"standbys", pgwire.TextOID},
}

// Columns implements Prepared.
func (*failoverRun) Columns() []Column { return failoverColumns }

// Execute implements Prepared.
func (r *failoverRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	if r.cmd.archiver == nil {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "WAL ARCHIVE is disabled: no backup root is configured")
		e.Hint = "Start pgverbs with --backup-root DIR (config backup_root)."
		return nil, e
	}
	if err := requireWALRole(c, "FAILOVER WAL ARCHIVE", false); err != nil {
		return nil, err
	}
	res, err := r.cmd.archiver.Failover(ctx, walarchive.FailoverOptions{
		Conninfo: r.st.conninfo, User: c.User(), CatchUp: r.st.catchUp, Promote: r.st.promote,
		Force: r.st.force, Timeout: r.st.timeout,
	})
	if err != nil {
		return nil, err
	}
	var sp *string
	if res.SwitchPoint != 0 {
		sp = strp(walstream.FormatLSN(res.SwitchPoint))
	}
	return &Outcome{Tag: "FAILOVER WAL ARCHIVE", Rows: [][]*string{{
		strp(strconv.FormatUint(uint64(res.Timeline), 10)), sp, strp(strings.Join(res.Standbys, ",")),
	}}}, nil
}
