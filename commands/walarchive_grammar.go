package commands

import (
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walarchive"
)

// WALArchiveVerb is what a WAL ARCHIVE statement does.
type WALArchiveVerb uint8

// The WAL ARCHIVE statements.
const (
	WALStart        WALArchiveVerb = iota // START WAL ARCHIVE TO 'dir' [WITH (option [, ...])]
	WALStop                               // STOP WAL ARCHIVE [DROP SLOT]
	WALAlter                              // ALTER WAL ARCHIVE SET (option [, ...])
	WALPause                              // ALTER WAL ARCHIVE PAUSE
	WALResume                             // ALTER WAL ARCHIVE RESUME
	WALShow                               // SHOW WAL ARCHIVE
	WALShowSegments                       // SHOW WAL ARCHIVE SEGMENTS
	WALCheck                              // CHECK WAL ARCHIVE
	WALSetSource                          // ALTER WAL ARCHIVE SET SOURCE 'conninfo' [WITH (FORCE on)]
)

// WALArchiveStmt is a parsed WAL ARCHIVE statement.
type WALArchiveStmt struct {
	Verb WALArchiveVerb
	// Dir is START's directory, as typed (resolved at execution).
	Dir string
	// DropSlot is STOP's DROP SLOT.
	DropSlot bool
	// Options are those START and ALTER ... SET were given.
	Options WALArchiveOptions
	// Source is SET SOURCE's conninfo, Force its FORCE.
	Source string
	Force  bool
}

// WALArchiveOptions are the options given to START or ALTER ... SET; a
// nil field was not given. RETENTION and MAX_SIZE stay text: the client's
// server parses them, as PostgreSQL parses an interval and a size.
type WALArchiveOptions struct {
	Slot            *string
	CreateSlot      *bool
	ApplicationName *string
	Synchronous     *bool
	Compression     *walarchive.Compression
	Level           int // COMPRESSION zstd LEVEL n, 0 when not given
	Retention       *string
	MaxSize         *string
}

// walOptionNames are the options, in the order the messages list them.
var walOptionNames = []string{"slot", "create_slot", "application_name", "synchronous", "compression", "retention", "max_size"}

// onOff are the values of a boolean option, as BASE BACKUP takes them.
var onOff = []string{"on", "off", "true", "false", "yes", "no"}

// maxZstdLevel is zstd's highest compression level.
const maxZstdLevel = 22

// ParseWALArchive parses one of the WAL ARCHIVE statements:
//
//	START WAL ARCHIVE TO 'dir' | 'storage://target/path' [WITH (option [, ...])]
//	STOP WAL ARCHIVE [DROP SLOT]
//	ALTER WAL ARCHIVE SET (option [, ...])
//	ALTER WAL ARCHIVE SET SOURCE 'conninfo' [WITH (FORCE on|off)]
//	ALTER WAL ARCHIVE PAUSE | RESUME
//	SHOW WAL ARCHIVE [SEGMENTS]
//	CHECK WAL ARCHIVE
//
// Options are SLOT 'name', CREATE_SLOT on|off, APPLICATION_NAME 'name',
// SYNCHRONOUS on|off, COMPRESSION none|zstd [LEVEL n], RETENTION
// 'interval' and MAX_SIZE 'size'. Words are matched in any letter case,
// strings are standard string literals (a quote inside doubled), and trailing
// semicolons are allowed, as for BASE BACKUP.
//
// Errors are *pgerr.Error with a position: 42601 for syntax and for an
// option given twice, 22023 for an unknown option or value (as BASE
// BACKUP reports its own), and PostgreSQL's own 42602 and 42622 for a
// slot name the server would refuse.
func ParseWALArchive(sql string) (*WALArchiveStmt, error) {
	return parse(sql, (*parser).walArchive)
}

func (p *parser) walArchive() (*WALArchiveStmt, error) {
	st := &WALArchiveStmt{}
	first := ""
	for _, w := range []string{"start", "stop", "alter", "show", "check"} {
		if p.isWord(0, w) {
			first = w
		}
	}
	if first == "" {
		return nil, p.syntaxError(p.peek(0))
	}
	p.pos++
	for _, w := range []string{"wal", "archive"} {
		if err := p.expectWord(w); err != nil {
			return nil, err
		}
	}
	switch first {
	case "start":
		st.Verb = WALStart
		if err := p.expect(pg_query.Token_TO); err != nil {
			return nil, err
		}
		dir, err := p.walString()
		if err != nil {
			return nil, err
		}
		st.Dir = dir
		if p.peekIs(0, pg_query.Token_WITH) {
			p.pos++
			if err := p.walOptions(&st.Options); err != nil {
				return nil, err
			}
		}
	case "stop":
		st.Verb = WALStop
		if p.peekIs(0, pg_query.Token_DROP) {
			p.pos++
			if err := p.expectWord("slot"); err != nil {
				return nil, err
			}
			st.DropSlot = true
		}
	case "alter":
		switch {
		case p.peekIs(0, pg_query.Token_SET) && p.isWord(1, "source"):
			p.pos += 2
			st.Verb = WALSetSource
			src, err := p.walString()
			if err != nil {
				return nil, err
			}
			st.Source = src
			if p.peekIs(0, pg_query.Token_WITH) {
				p.pos++
				opts, err := p.onOffOptions("ALTER WAL ARCHIVE SET SOURCE", []string{"force"})
				if err != nil {
					return nil, err
				}
				st.Force = opts["force"]
			}
		case p.peekIs(0, pg_query.Token_SET):
			p.pos++
			st.Verb = WALAlter
			if err := p.walOptions(&st.Options); err != nil {
				return nil, err
			}
		case p.isWord(0, "pause"):
			p.pos++
			st.Verb = WALPause
		case p.isWord(0, "resume"):
			p.pos++
			st.Verb = WALResume
		default:
			return nil, p.syntaxError(p.peek(0))
		}
	case "show":
		st.Verb = WALShow
		if p.isWord(0, "segments") {
			p.pos++
			st.Verb = WALShowSegments
		}
	case "check":
		st.Verb = WALCheck
	}
	return st, p.finish()
}

// walString parses a standard string literal, the only kind BASE BACKUP
// takes too.
func (p *parser) walString() (string, error) {
	t := p.peek(0)
	if t == nil || t.Token != pg_query.Token_SCONST {
		return "", p.syntaxError(t)
	}
	if raw := p.text(t); raw[0] != '\'' {
		e := p.syntaxError(t)
		e.Hint = "Write a plain string literal, such as 'it''s'."
		return "", e
	}
	p.pos++
	return unquoteString(p.text(t)), nil
}

// walOptions parses "(option [, ...])" into o.
func (p *parser) walOptions(o *WALArchiveOptions) error {
	if err := p.expect(pg_query.Token_ASCII_40); err != nil { // '('
		return err
	}
	seen := map[string]bool{}
	for {
		if err := p.walOption(o, seen); err != nil {
			return err
		}
		if !p.peekIs(0, pg_query.Token_ASCII_44) { // ','
			break
		}
		p.pos++
	}
	return p.expect(pg_query.Token_ASCII_41) // ')'
}

// walOption parses one "name value" pair.
func (p *parser) walOption(o *WALArchiveOptions, seen map[string]bool) error {
	nameTok := p.peek(0)
	if nameTok == nil || nameTok.Token == pg_query.Token_SCONST || nameTok.Token == pg_query.Token_ASCII_41 ||
		nameTok.Token == pg_query.Token_ASCII_44 {
		return p.syntaxError(nameTok)
	}
	name := asciiLower(p.text(nameTok))
	if !p.isWord(0, name) || !contains(walOptionNames, name) {
		e := pgerr.New(pgerr.InvalidParameterValue, "unrecognized WAL ARCHIVE option %q", p.text(nameTok))
		e.Hint = "Valid options are: " + strings.ToUpper(strings.Join(walOptionNames, ", ")) + "."
		e.Position = PositionAt(p.sql, int(nameTok.Start))
		return e
	}
	if seen[name] {
		e := pgerr.New(pgerr.SyntaxError, "conflicting or redundant options")
		e.Position = PositionAt(p.sql, int(nameTok.Start))
		return e
	}
	seen[name] = true
	p.pos++
	valTok := p.peek(0)
	switch name {
	case "slot", "application_name", "retention", "max_size":
		v, err := p.walString()
		if err != nil {
			return err
		}
		dst, check := o.stringOption(name)
		if check != nil {
			if err := check(v); err != nil {
				err.Position = PositionAt(p.sql, int(valTok.Start))
				return err
			}
		}
		*dst = &v
	case "create_slot", "synchronous":
		v, err := p.walWord(name, onOff)
		if err != nil {
			return err
		}
		b := isOn(v)
		if name == "synchronous" {
			o.Synchronous = &b
		} else {
			o.CreateSlot = &b
		}
	case "compression":
		v, err := p.walWord(name, []string{"none", "zstd"})
		if err != nil {
			return err
		}
		c := walarchive.NoCompression
		if v == "zstd" {
			c = walarchive.Zstd
		}
		o.Compression = &c
		if p.isWord(0, "level") {
			return p.walLevel(o, c)
		}
	}
	return nil
}

// stringOption is where the value of the string option name goes, and
// what checks it (nil: the server, when the command runs).
func (o *WALArchiveOptions) stringOption(name string) (**string, func(string) *pgerr.Error) {
	switch name {
	case "slot":
		return &o.Slot, checkSlotName
	case "application_name":
		return &o.ApplicationName, checkApplicationName
	case "retention":
		return &o.Retention, nil
	}
	return &o.MaxSize, nil
}

// walWord parses the value of option name, a word or string in allowed
// (any letter case).
func (p *parser) walWord(name string, allowed []string) (string, error) {
	return p.optionWord("WAL ARCHIVE", name, allowed)
}

// optionWord parses the value of command's option name, a word or a
// string that must be one of allowed (in any letter case).
func (p *parser) optionWord(command, name string, allowed []string) (string, error) {
	t := p.peek(0)
	if t == nil || t.Token == pg_query.Token_ASCII_44 || t.Token == pg_query.Token_ASCII_41 {
		return "", p.syntaxError(t)
	}
	v := p.text(t)
	if t.Token == pg_query.Token_SCONST {
		if v[0] != '\'' {
			return "", p.syntaxError(t)
		}
		v = unquoteString(v)
	}
	v = asciiLower(v)
	if !contains(allowed, v) {
		e := pgerr.New(pgerr.InvalidParameterValue, "invalid value %q for %s option %q", v, command, strings.ToUpper(name))
		e.Hint = "Valid values are: " + strings.Join(allowed, ", ") + "."
		e.Position = PositionAt(p.sql, int(t.Start))
		return "", e
	}
	p.pos++
	return v, nil
}

// walLevel parses COMPRESSION's LEVEL n, which only zstd takes.
func (p *parser) walLevel(o *WALArchiveOptions, c walarchive.Compression) error {
	levelTok := p.peek(0)
	p.pos++
	t := p.peek(0)
	if t == nil || t.Token != pg_query.Token_ICONST {
		return p.syntaxError(t)
	}
	n, err := strconv.Atoi(p.text(t))
	switch {
	case c != walarchive.Zstd:
		e := pgerr.New(pgerr.InvalidParameterValue, "COMPRESSION none takes no LEVEL")
		e.Position = PositionAt(p.sql, int(levelTok.Start))
		return e
	case err != nil || n < 1 || n > maxZstdLevel:
		e := pgerr.New(pgerr.InvalidParameterValue, "zstd compression level %s is out of range", p.text(t))
		e.Hint = "Levels go from 1 to " + strconv.Itoa(maxZstdLevel) + "."
		e.Position = PositionAt(p.sql, int(t.Start))
		return e
	}
	o.Level = n
	p.pos++
	return nil
}

// checkSlotName refuses what PostgreSQL's ReplicationSlotValidateName
// refuses, with its codes and words, so that a bad name fails at once and
// not at the upstream on every reconnection.
func checkSlotName(name string) *pgerr.Error {
	if name == "" {
		return pgerr.New(pgerr.InvalidName, "replication slot name %q is too short", name)
	}
	if len(name) > maxNameLen {
		return pgerr.New(pgerr.NameTooLong, "replication slot name %q is too long", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			e := pgerr.New(pgerr.InvalidName, "replication slot name %q contains invalid character", name)
			e.Hint = "Replication slot names may only contain lower case letters, numbers, and the underscore character."
			return e
		}
	}
	return nil
}

// checkApplicationName refuses an application_name that the primary
// would not keep as written (it truncates to 63 bytes and replaces what is
// not printable ASCII with '?'), since synchronous_standby_names must name
// it exactly.
func checkApplicationName(name string) *pgerr.Error {
	if name == "" || len(name) > maxNameLen {
		return pgerr.New(pgerr.InvalidParameterValue, "APPLICATION_NAME must be 1 to %d bytes long", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 32 || c > 126 {
			e := pgerr.New(pgerr.InvalidParameterValue, "APPLICATION_NAME %q contains a character that is not printable ASCII", name)
			e.Hint = "The server would replace it, and synchronous_standby_names would no longer name the archive."
			return e
		}
	}
	return nil
}

// maxNameLen is NAMEDATALEN - 1, the longest name PostgreSQL keeps.
const maxNameLen = 63
