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
					v, err := p.optionWord("VERIFY BACKUP", name, onOff)
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
