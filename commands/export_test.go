package commands

import (
	"errors"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// ShowStmt is a statement of one of the SHOW commands, for the external
// tests of their grammar.
type ShowStmt struct {
	// Command is the command's name, such as "SHOW AVAILABLE EXTENSIONS".
	Command string
	// Name is the extension named, "" when none was.
	Name string
}

// ParseShow parses sql as each SHOW command would. When none accepts it,
// the error is the one found furthest into sql (the latest position),
// where a grammar of all three forms would fail.
func ParseShow(sql string) (*ShowStmt, error) {
	var furthest *pgerr.Error
	for _, s := range ShowCommands(nil) {
		name, err := parse(sql, func(p *parser) (string, error) { return p.show(s.list) })
		if err == nil {
			return &ShowStmt{Command: s.Name(), Name: name}, nil
		}
		var pe *pgerr.Error
		if !errors.As(err, &pe) {
			return nil, err
		}
		if furthest == nil || pe.Position > furthest.Position {
			furthest = pe
		}
	}
	return nil, furthest
}
