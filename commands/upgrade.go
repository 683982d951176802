package commands

import (
	"fmt"

	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// upgrade moves an installed package from one version to another along
// its update path, in the current transaction, rechecking dependencies and
// conflicts against the new version first. INSTALL EXTENSION ... VERSION
// and ALTER EXTENSION ... UPDATE both come here, with state from
// loadState.
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
	installed, ss := state.installed, state.server
	// Check the new version's requirements and conflicts as an install of
	// it would, with the extension itself set aside.
	others := make(map[string]extension.Installed, len(installed))
	for k, v := range installed {
		if k != name {
			others[k] = v
		}
	}
	env := extension.Env{Installed: others, ServerInstalled: ss.installed}
	if _, err := extension.ResolveEnv(repo, name, pkg.Version, env, false); err != nil {
		return nil, err
	}
	for _, inst := range installed {
		for _, r := range inst.Requires {
			if r == name {
				// A dependent's constraint on name may no longer hold; its
				// control file says which versions it accepts.
				dep, err := repo.LoadVersion(inst.Name, inst.Version)
				if err != nil {
					continue
				}
				for _, d := range dep.Depends {
					if d.Name == name && !d.Satisfied(pkg.Version) {
						return nil, pgerr.New(pgerr.InvalidParameterValue, "extension %q requires %s, which version %s does not satisfy", inst.Name, d.String(), pkg.Version)
					}
				}
			}
		}
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
