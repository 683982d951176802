package commands

import (
	"errors"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	pgparser "github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// ParseAll parses every statement of a query string before any runs, as
// PostgreSQL does: a syntax error anywhere means nothing runs. Ordinary
// statements get a raw parse by pg_query (PostgreSQL's grammar, no catalog
// access, so a statement may refer to a table an earlier one creates) and
// have a nil entry in preps; commands are parsed by their own grammar.
// Error positions are made relative to the whole string.
func ParseAll(sql string, stmts []Statement) (preps []Prepared, err error) {
	preps = make([]Prepared, len(stmts))
	for i, st := range stmts {
		before := int32(utf8.RuneCountInString(sql[:st.Offset]))
		if st.Command == nil {
			if _, err := pg_query.Parse(st.SQL); err != nil {
				e := pgerr.New(pgerr.SyntaxError, "%s", err.Error())
				var perr *pgparser.Error
				if errors.As(err, &perr) && perr.Cursorpos > 0 {
					e.Position = int32(perr.Cursorpos) + before
				}
				return nil, e
			}
			continue
		}
		prep, err := st.Command.Parse(st.SQL)
		if err != nil {
			var pe *pgerr.Error
			if errors.As(err, &pe) && pe.Position > 0 {
				pe.Position += before
			}
			return nil, err
		}
		preps[i] = prep
	}
	return preps, nil
}
