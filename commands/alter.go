package commands

import (
	"context"
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgverbs/pgverbs/extension"
)

// AlterUpdateStmt is a parsed ALTER EXTENSION name UPDATE [TO version].
type AlterUpdateStmt struct {
	Name    string
	Version string // "" means the package's default version
}

// ParseAlterUpdate parses ALTER EXTENSION name UPDATE [TO version]. ok is
// false for every other ALTER EXTENSION form (and for text that is not an
// ALTER EXTENSION at all): those belong to PostgreSQL.
func ParseAlterUpdate(sql string) (st *AlterUpdateStmt, ok bool) {
	st, err := parse(sql, func(p *parser) (*AlterUpdateStmt, error) {
		if err := p.expect(pg_query.Token_ALTER); err != nil {
			return nil, err
		}
		if err := p.expect(pg_query.Token_EXTENSION); err != nil {
			return nil, err
		}
		st := &AlterUpdateStmt{}
		var err error
		if st.Name, err = p.colID(); err != nil {
			return nil, err
		}
		if err := p.expect(pg_query.Token_UPDATE); err != nil {
			return nil, err
		}
		if p.peekIs(0, pg_query.Token_TO) {
			p.pos++
			if st.Version, err = p.version(); err != nil {
				return nil, err
			}
		}
		return st, p.finish()
	})
	return st, err == nil
}

// AlterExtension intercepts ALTER EXTENSION: UPDATE of an extension
// pgverbs installed moves it along its package's update path; every other
// statement, and UPDATE of an extension the server manages, runs on the
// server unchanged.
type AlterExtension struct {
	extContext
}

// NewAlterExtension returns the ALTER EXTENSION interceptor over repo.
func NewAlterExtension(repo *extension.Repo) *AlterExtension {
	return &AlterExtension{extContext{repo}}
}

// Name implements Command.
func (*AlterExtension) Name() string { return "ALTER EXTENSION" }

// Keywords implements Command.
func (*AlterExtension) Keywords() []string { return []string{"ALTER", "EXTENSION"} }

// Parse implements Parser. It never fails: what it does not recognise, the
// server parses.
func (a *AlterExtension) Parse(sql string) (Prepared, error) {
	st, _ := ParseAlterUpdate(sql)
	return &alterRun{a, sql, st}, nil
}

type alterRun struct {
	cmd *AlterExtension
	sql string
	st  *AlterUpdateStmt // nil: not an UPDATE
}

func (*alterRun) Columns() []Column { return nil }

func (r *alterRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	done := &Outcome{Tag: "ALTER EXTENSION"}
	if r.st != nil {
		exists, err := catalogExists(c)
		if err != nil {
			return nil, err
		}
		if exists {
			state, err := loadState(c, false)
			if err != nil {
				return nil, err
			}
			if inst, ok := state.installed[r.st.Name]; ok {
				repo := r.cmd.repo
				to := r.st.Version
				if to == "" {
					pkg, err := repo.Load(r.st.Name)
					if err != nil {
						return nil, err
					}
					to = pkg.DefaultVersion
				}
				if extension.CompareVersions(to, inst.Version) == 0 {
					c.Notice("NOTICE", fmt.Sprintf("version %q of extension %q is already installed", inst.Version, r.st.Name), "")
					return done, nil
				}
				return upgrade(c, repo, state, r.st.Name, inst.Version, to, done)
			}
		}
	}
	// Not ours: the server runs the statement as the client wrote it.
	res, err := c.Exec(r.sql)
	if err != nil {
		return nil, err
	}
	done.Tag = res.Tag
	return done, nil
}
