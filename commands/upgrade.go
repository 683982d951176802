package commands

import (
	"fmt"

	"github.com/pgverbs/pgverbs/extension"
)

// upgrade moves an installed package from one version to another along
// its update path, in the current transaction, rechecking dependencies,
// conflicts and dependents' constraints against the new version first
// (extension.CheckUpdate). INSTALL EXTENSION ... VERSION and ALTER
// EXTENSION ... UPDATE both come here, with state from loadState.
func upgrade(c Conn, repo *extension.Repo, state *extState, name, from, to string, done *Outcome) (*Outcome, error) {
	if err := refreshObjects(c); err != nil {
		return nil, err
	}
	pkg, err := repo.LoadVersion(name, to)
	if err != nil {
		return nil, err
	}
	path, err := repo.UpdatePath(pkg, from, to)
	if err != nil {
		return nil, err
	}
	ss := state.server
	if err := extension.CheckUpdate(repo, pkg, state.installed, ss.installed); err != nil {
		return nil, err
	}
	schema := state.schemas[name]
	reqSchemas, required := requiredSchemas(pkg.Requires, state.schemas, ss.schemas)
	saved, err := saveSettings(c)
	if err != nil {
		return nil, err
	}
	ps := preparedStep{schema: schema, required: required}
	ps.files, _, err = prepareScripts(repo, pkg, path, func(at *extension.Package) extension.ScriptOptions {
		return scriptOptions(at, schema, ss.owner, reqSchemas, saved.quoteAll)
	})
	if err != nil {
		return nil, err
	}
	created, err := runTracked(c, name, ps, saved)
	if err != nil {
		return nil, err
	}
	if _, err := c.Exec(`UPDATE pgverbs.extensions SET version = $2, requires = $3::text[] WHERE name = $1`,
		&name, &pkg.Version, strp(arrayLiteral(pkg.Requires))); err != nil {
		return nil, err
	}
	if err := created(); err != nil {
		return nil, err
	}
	if err := forgetMissingObjects(c, name); err != nil {
		return nil, err
	}
	c.Notice("NOTICE", fmt.Sprintf("extension %q updated from version %s to %s", name, from, pkg.Version), "")
	return done, nil
}
