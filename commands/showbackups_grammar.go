package commands

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// ShowBackupsStmt is a parsed SHOW BACKUPS statement.
type ShowBackupsStmt struct {
	// In is what IN names, as typed: a directory below the backup root or
	// 'storage://target/prefix'; "" without IN (the backup root).
	In string
}

// ParseShowBackups parses
//
//	SHOW BACKUPS [IN 'dir' | IN 'storage://target/prefix']
//
// with PostgreSQL's lexer: words in any letter case, a standard string
// literal, trailing semicolons. Errors are 42601 with a position.
func ParseShowBackups(sql string) (*ShowBackupsStmt, error) {
	return parse(sql, (*parser).showBackups)
}

func (p *parser) showBackups() (*ShowBackupsStmt, error) {
	if err := p.expect(pg_query.Token_SHOW); err != nil {
		return nil, err
	}
	if err := p.expectWord("backups"); err != nil {
		return nil, err
	}
	st := &ShowBackupsStmt{}
	if p.peekIs(0, pg_query.Token_IN_P) {
		p.pos++
		t := p.peek(0)
		in, err := p.walString()
		if err != nil {
			return nil, err
		}
		if in == "" {
			e := pgerr.New(pgerr.InvalidParameterValue, "SHOW BACKUPS IN needs a directory or a storage URL")
			e.Hint = "Leave out IN for the whole backup root."
			e.Position = PositionAt(p.sql, int(t.Start))
			return nil, e
		}
		st.In = in
	}
	return st, p.finish()
}
