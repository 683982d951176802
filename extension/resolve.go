package extension

import (
	"errors"
	"sort"
	"strings"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Installed describes an extension already in the database (from
// pgverbs.extensions).
type Installed struct {
	Name, Version string
	// Requires names the extensions it depends on.
	Requires []string
}

// Plan is what INSTALL EXTENSION must do, decided before anything runs.
type Plan struct {
	// Steps are the packages to install, in order: every package after all
	// of its dependencies, the target last. Packages already installed are
	// not in it, and none appears twice.
	Steps []*Package
}

// Resolve plans INSTALL EXTENSION name [VERSION version] [CASCADE] against
// the repository and the installed extensions (keyed by name). version ""
// means whatever the package provides. Every check runs before anything is
// installed, so a refused command changes nothing.
//
// Errors are *pgerr.Error values, in PostgreSQL's message style:
//
//   - 42710 `extension "foo" already exists` when the target is installed,
//     also wrapping ErrAlreadyInstalled; INSTALL EXTENSION IF NOT EXISTS
//     turns it into a notice.
//   - 42704 `extension "foo" is not available` (wrapping ErrNotFound) for the
//     target or, with CASCADE, a dependency missing from the repository.
//   - 22023 `version "2.0" of extension "foo" is not available` when VERSION
//     names another version than the package directory provides (versions
//     compare with CompareVersions, so VERSION '1.0.0' accepts 1.0).
//   - 42704 `required extension "bar" is not installed`, with a HINT to use
//     CASCADE, for a dependency neither installed nor (without CASCADE)
//     installable. This is PostgreSQL's CREATE EXTENSION message and code.
//   - 22023 `required extension "bar" version 1.0 does not satisfy >= 1.1`
//     when the installed version, or the one the repository would install,
//     fails a depends constraint. Like the VERSION error this is a wanted
//     version that cannot be had, hence the same code; the DETAIL says
//     which extension requires what, and whether 1.0 is installed or
//     available.
//   - 42P17 `cyclic dependency between extensions: a -> b -> a`
//     (invalid_object_definition: the control files together define
//     something that cannot exist).
//   - 55000 `extension "foo" conflicts with installed extension "bla"
//     version 0.7` (object_not_in_prerequisite_state: the database, or the
//     plan, holds something that must go first), with a DETAIL quoting the
//     conflicts rule and the control file that declares it.
//   - Errors from Repo.Load for broken packages: those of the plan, and
//     installed ones whose rules are read. A broken installed package thus
//     blocks installs until fixed, rather than letting its conflicts go
//     unchecked.
//
// Conflicts are checked both ways: a package of the plan that declares a
// conflict with an installed or planned package, and an installed package
// whose control file declares a conflict with a planned one. Installed
// extensions do not record their conflicts, so the rules of an installed
// package are read from the repository, and only when the repository still
// holds the installed version: another version's rules may differ.
//
// The order of Steps is deterministic: a depth-first walk of depends
// entries in the order the control files list them, each package placed
// after its dependencies.
func Resolve(r *Repo, name, version string, installed map[string]Installed, cascade bool) (*Plan, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if _, ok := installed[name]; ok {
		return nil, withSentinel(pgerr.New(pgerr.DuplicateObject, "extension %s already exists", quote(name)), ErrAlreadyInstalled)
	}
	target, err := r.Load(name)
	if err != nil {
		return nil, err
	}
	if version != "" && CompareVersions(version, target.Version) != 0 {
		return nil, newErr(pgerr.InvalidParameterValue, "Available version: "+target.Version+".", "",
			"version %s of extension %s is not available", quote(version), quote(name))
	}
	rs := &resolver{
		repo:      r,
		installed: installed,
		cascade:   cascade,
		state:     map[string]visit{},
		pkgs:      map[string]*Package{name: target},
	}
	if err := rs.visit(target); err != nil {
		return nil, err
	}
	if err := rs.checkConflicts(); err != nil {
		return nil, err
	}
	return &Plan{Steps: rs.plan}, nil
}

type visit int

const (
	unvisited visit = iota
	visiting
	visited
)

type resolver struct {
	repo      *Repo
	installed map[string]Installed
	cascade   bool
	state     map[string]visit
	pkgs      map[string]*Package // every package loaded so far, by name
	stack     []string            // the depends path being walked, for cycle messages
	plan      []*Package
}

func (rs *resolver) visit(p *Package) error {
	rs.state[p.Name] = visiting
	rs.stack = append(rs.stack, p.Name)
	for _, req := range p.Depends {
		if inst, ok := rs.installed[req.Name]; ok {
			if err := unsatisfied(p, req, inst.Version, "installed"); err != nil {
				return err
			}
			continue
		}
		switch rs.state[req.Name] {
		case visiting:
			i := indexOf(rs.stack, req.Name)
			path := append(append([]string{}, rs.stack[i:]...), req.Name)
			return pgerr.New(pgerr.InvalidObjectDefinition, "cyclic dependency between extensions: %s", strings.Join(path, " -> "))
		case visited:
			// Reached again through another path (a diamond): already
			// planned, but this path's constraints must hold too.
			if err := unsatisfied(p, req, rs.pkgs[req.Name].Version, "available"); err != nil {
				return err
			}
			continue
		}
		if !rs.cascade {
			return newErr(pgerr.UndefinedObject,
				"Extension "+quote(p.Name)+" requires "+req.String()+".",
				"Use INSTALL EXTENSION ... CASCADE to install required extensions too.",
				"required extension %s is not installed", quote(req.Name))
		}
		dep, err := rs.repo.Load(req.Name)
		if err != nil {
			var pe *pgerr.Error
			if errors.Is(err, ErrNotFound) && errors.As(err, &pe) {
				// Same error, but saying why this package was wanted.
				e := *pe
				e.Detail = "Extension " + quote(p.Name) + " requires " + req.String() + "."
				return withSentinel(&e, ErrNotFound)
			}
			return err
		}
		if err := unsatisfied(p, req, dep.Version, "available"); err != nil {
			return err
		}
		rs.pkgs[dep.Name] = dep
		if err := rs.visit(dep); err != nil {
			return err
		}
	}
	rs.stack = rs.stack[:len(rs.stack)-1]
	rs.state[p.Name] = visited
	rs.plan = append(rs.plan, p)
	return nil
}

// unsatisfied returns the 22023 error when version (installed or available,
// as how says) fails p's requirement req.
func unsatisfied(p *Package, req Requirement, version, how string) error {
	c, ok := req.unsatisfied(version)
	if ok {
		return nil
	}
	return newErr(pgerr.InvalidParameterValue,
		"Extension "+quote(p.Name)+" requires "+req.String()+"; version "+version+" is "+how+".", "",
		"required extension %s version %s does not satisfy %s", quote(req.Name), version, c.String())
}

// checkConflicts checks the conflicts rules of the plan against installed
// and planned packages, then those of installed packages against the plan.
func (rs *resolver) checkConflicts() error {
	planned := map[string]*Package{}
	for _, p := range rs.plan {
		planned[p.Name] = p
	}
	for _, p := range rs.plan {
		for _, c := range p.Conflicts {
			if c.Name == p.Name {
				continue
			}
			if inst, ok := rs.installed[c.Name]; ok && c.Satisfied(inst.Version) {
				return conflictError(p.Name, c.Name, inst.Version, true, p.Name, c)
			}
			if q, ok := planned[c.Name]; ok && c.Satisfied(q.Version) {
				return conflictError(p.Name, q.Name, q.Version, false, p.Name, c)
			}
		}
	}
	names := make([]string, 0, len(rs.installed))
	for n := range rs.installed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		inst := rs.installed[n]
		if ValidName(n) != nil {
			continue // cannot be in the repository
		}
		ip, err := rs.repo.Load(n)
		if errors.Is(err, ErrNotFound) {
			continue // removed from the repository: its rules are unknown
		}
		if err != nil {
			return err
		}
		if CompareVersions(ip.Version, inst.Version) != 0 {
			continue // the repository's rules are another version's
		}
		for _, c := range ip.Conflicts {
			if q, ok := planned[c.Name]; ok && c.Name != n && c.Satisfied(q.Version) {
				return conflictError(q.Name, n, inst.Version, true, n, c)
			}
		}
	}
	return nil
}

// conflictError reports that extension pkg cannot coexist with other at
// otherVersion, because declarer's control file has rule.
func conflictError(pkg, other, otherVersion string, otherInstalled bool, declarer string, rule Requirement) error {
	detail := "The control file " + quote(declarer+"/control") + " declares: conflicts = " + rule.String() + "."
	if otherInstalled {
		return newErr(pgerr.ObjectNotInPrerequisiteState, detail, "",
			"extension %s conflicts with installed extension %s version %s", quote(pkg), quote(other), otherVersion)
	}
	return newErr(pgerr.ObjectNotInPrerequisiteState, detail, "",
		"extension %s conflicts with extension %s version %s, which this command would also install", quote(pkg), quote(other), otherVersion)
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// DependentsOf returns the installed extensions that require name, directly
// or through others, in an order safe for removal: each extension comes
// before every extension it requires. UNINSTALL EXTENSION uses it to refuse
// (RESTRICT) or to remove dependents first (CASCADE). name itself is not in
// the result. Ties are broken by name, so the order is deterministic; a
// dependency cycle among installed extensions does not loop.
func DependentsOf(name string, installed map[string]Installed) []string {
	// Reverse edges: who requires whom.
	requiredBy := map[string][]string{}
	for n, inst := range installed {
		for _, req := range inst.Requires {
			requiredBy[req] = append(requiredBy[req], n)
		}
	}
	dependents := map[string]bool{}
	queue := []string{name}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, d := range requiredBy[n] {
			if d != name && !dependents[d] {
				dependents[d] = true
				queue = append(queue, d)
			}
		}
	}
	// Kahn's algorithm over the dependents: repeatedly take the first name,
	// in sorted order, that no remaining dependent requires.
	required := map[string]map[string]bool{} // n -> remaining dependents requiring n
	for d := range dependents {
		for _, r := range installed[d].Requires {
			if dependents[r] && r != d {
				if required[r] == nil {
					required[r] = map[string]bool{}
				}
				required[r][d] = true
			}
		}
	}
	remaining := make([]string, 0, len(dependents))
	for d := range dependents {
		remaining = append(remaining, d)
	}
	sort.Strings(remaining)
	order := make([]string, 0, len(remaining))
	for len(remaining) > 0 {
		pick := 0 // on a cycle nothing is free: break it at the first name
		for i, n := range remaining {
			if len(required[n]) == 0 {
				pick = i
				break
			}
		}
		n := remaining[pick]
		remaining = append(remaining[:pick], remaining[pick+1:]...)
		order = append(order, n)
		for _, r := range installed[n].Requires {
			delete(required[r], n)
		}
	}
	return order
}
