package commands

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// VerifyBackupStmt is a parsed VERIFY BACKUP statement:
//
//	VERIFY BACKUP 'path' [WITH (option [, ...])]
//
// Options are WAL on|off (on, the default, checks the WAL records the
// backup needs, as pg_verifybackup does; a bare WAL means on) and
// WAL_ARCHIVE 'dir' or 'storage://target/path', where the segments the
// backup does not hold itself are read (by default from the running WAL
// archive).
type VerifyBackupStmt struct {
	// Path is the backup as typed: a path below the backup root or a
	// storage URL.
	Path string
	// WAL is the WAL option.
	WAL bool
	// WALArchive is the WAL_ARCHIVE option, "" when not given.
	WALArchive string
}

var verifyOptionNames = []string{"wal", "wal_archive"}

// ParseVerifyBackup parses one VERIFY BACKUP statement. Errors are
// *pgerr.Error: 42601 for syntax, with the position, and 22023 for an
// unknown option or value.
func ParseVerifyBackup(sql string) (*VerifyBackupStmt, error) {
	return parse(sql, func(p *parser) (*VerifyBackupStmt, error) {
		for _, w := range []string{"verify", "backup"} {
			if err := p.expectWord(w); err != nil {
				return nil, err
			}
		}
		t := p.peek(0)
		if t == nil || t.Token != pg_query.Token_SCONST || p.text(t)[0] != '\'' {
			return nil, p.syntaxError(t)
		}
		st := &VerifyBackupStmt{Path: unquoteString(p.text(t)), WAL: true}
		if st.Path == "" {
			e := pgerr.New(pgerr.InvalidParameterValue, "VERIFY BACKUP needs a backup path")
			e.Position = PositionAt(p.sql, int(t.Start))
			return nil, e
		}
		p.pos++
		if p.peekIs(0, pg_query.Token_WITH) {
			p.pos++
			err := p.optionList("VERIFY BACKUP", verifyOptionNames, func(name string) error {
				switch name {
				case "wal":
					if p.peekIs(0, pg_query.Token_ASCII_44) || p.peekIs(0, pg_query.Token_ASCII_41) || p.peek(0) == nil {
						st.WAL = true
						return nil
					}
					v, err := p.verifyWord(name, onOff)
					st.WAL = isOn(v)
					return err
				default:
					t := p.peek(0)
					if t == nil || t.Token != pg_query.Token_SCONST || p.text(t)[0] != '\'' {
						return p.syntaxError(t)
					}
					st.WALArchive = unquoteString(p.text(t))
					p.pos++
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		return st, p.finish()
	})
}

// verifyWord reads an option's value, a word or a string, that must be
// one of allowed (in any letter case).
func (p *parser) verifyWord(name string, allowed []string) (string, error) {
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
		e := pgerr.New(pgerr.InvalidParameterValue, "invalid value %q for VERIFY BACKUP option %q", v, asciiUpper(name))
		e.Hint = "Valid values are: on, off."
		e.Position = PositionAt(p.sql, int(t.Start))
		return "", e
	}
	p.pos++
	return v, nil
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
