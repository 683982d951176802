package extension

import (
	"slices"
	"sort"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// CheckUpdate checks that the installed extension pkg.Name may move to
// version pkg (from Repo.LoadVersion), before any update script runs:
//
//   - the new version's requirements and conflicts hold as they would for
//     an install of it (ResolveEnv without CASCADE), with the extension
//     itself set aside and the rest of installed and serverInstalled as
//     the database holds them; its errors are ResolveEnv's.
//   - every installed extension that requires it accepts the new version,
//     as its control file at its installed version says: 22023 `extension
//     "bar" requires foo (< 2.0), which version 2.0 does not satisfy`.
//     Dependents are checked by name; one whose control file the
//     repository no longer has at that version is not checked, as its
//     constraints are unknown.
func CheckUpdate(r *Repo, pkg *Package, installed map[string]Installed, serverInstalled map[string]string) error {
	name := pkg.Name
	others := make(map[string]Installed, len(installed))
	for k, v := range installed {
		if k != name {
			others[k] = v
		}
	}
	if _, err := ResolveEnv(r, name, pkg.Version, Env{Installed: others, ServerInstalled: serverInstalled}, false); err != nil {
		return err
	}
	names := make([]string, 0, len(others))
	for n, inst := range others {
		if slices.Contains(inst.Requires, name) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		inst := others[n]
		dep, err := r.LoadVersion(inst.Name, inst.Version)
		if err != nil {
			continue
		}
		for _, d := range dep.Depends {
			if d.Name == name && !d.Satisfied(pkg.Version) {
				return pgerr.New(pgerr.InvalidParameterValue, "extension %s requires %s, which version %s does not satisfy", quote(inst.Name), d.String(), pkg.Version)
			}
		}
	}
	return nil
}
