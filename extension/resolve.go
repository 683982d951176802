package extension

import (
	"errors"
	"fmt"
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
	// Actions are the steps, in order: packages to install and server
	// extensions to create, each after everything it depends on, the
	// target last. Packages already installed are not in it, and none
	// appears twice.
	Actions []Step
	// Notes are messages for the client (NOTICE), such as a name that is
	// both a package and a server extension, saying which one is used.
	Notes []string
}

// Step is one step of a Plan: a package to install from the extensions
// directory (Pkg set), or an extension to create on the server with
// CREATE EXTENSION (Server set).
type Step struct {
	// Pkg is the package to install, at Pkg.Version; nil for a server step.
	Pkg *Package
	// Scripts is Repo.InstallPath(Pkg, Pkg.Version): the scripts to run,
	// in order. Nil for a server step.
	Scripts []ScriptFile
	// Server names the extension to create with CREATE EXTENSION, "" for
	// a package step.
	Server string
	// Version is the version the step installs: Pkg.Version, or for a
	// server step the VERSION the command asked for or else the server's
	// default_version from Env.ServerAvailable ("" when unknown: then let
	// the server choose).
	Version string
	// Cascade tells a server step to add CASCADE, so that the server
	// installs what the extension requires in turn: always for
	// dependencies, as the command asked for the target.
	Cascade bool
}

// Name is the name of the extension the step installs.
func (s Step) Name() string {
	if s.Pkg != nil {
		return s.Pkg.Name
	}
	return s.Server
}

// Env is what ResolveEnv knows of the database.
type Env struct {
	// Installed are the extensions installed by pgverbs (from
	// pgverbs.extensions), keyed by name.
	Installed map[string]Installed
	// ServerInstalled are the extensions created on the server, name ->
	// version (pg_extension.extname, extversion). They satisfy a
	// dependency, with its constraints checked against that version.
	ServerInstalled map[string]string
	// ServerAvailable are the extensions the server could create, name ->
	// default_version (pg_available_extensions). With CASCADE a missing
	// dependency found only here becomes a server step.
	ServerAvailable map[string]string
	// PreferPackages makes a package of the extensions directory win over
	// a server extension of the same name; by default the server's wins.
	// Either way the collision is reported in Plan.Notes.
	PreferPackages bool
}

// ResolveEnv plans INSTALL EXTENSION name [VERSION version] [CASCADE]
// against the repository and env. version "" means the package's default
// version; for a native package another version is loaded with
// Repo.LoadVersion (its secondary control file applied). Every check runs
// before anything is installed, so a refused command changes nothing.
//
// Dependencies (depends, or a native package's requires) are satisfied, in
// this order, by an extension pgverbs installed (env.Installed), one
// created on the server (env.ServerInstalled), or one this plan installs;
// constraints are checked against that version. Otherwise, with CASCADE,
// the dependency is installed first: from the repository, or, when the
// server offers it (env.ServerAvailable), as a server step, CREATE
// EXTENSION ... CASCADE, as PostgreSQL installs required extensions at
// their default version. A name that is both a package and a server
// extension is taken from the server unless env.PreferPackages; either way
// Plan.Notes says so. The same choice applies to the target: a target that
// only the server offers becomes a single server step.
//
// A native package installed through update scripts (InstallPath) needs
// what every version along the way requires, as PostgreSQL checks the
// requires of each script's control file: its dependencies are the union,
// in path order.
//
// Errors are *pgerr.Error values, in PostgreSQL's message style:
//
//   - 42710 `extension "foo" already exists` when the target is installed,
//     by pgverbs or on the server, also wrapping ErrAlreadyInstalled;
//     INSTALL EXTENSION IF NOT EXISTS turns it into a notice.
//   - 42704 `extension "foo" is not available` (wrapping ErrNotFound) for the
//     target or, with CASCADE, a dependency missing from the repository and
//     the server.
//   - 22023 `version "2.0" of extension "foo" is not available` when VERSION
//     names a version the package cannot install (versions compare with
//     CompareVersions, so VERSION '1.0.0' accepts 1.0), with the available
//     ones in DETAIL; `version to install must be specified` for a native
//     package without default_version.
//   - 42704 `required extension "bar" is not installed`, with a HINT to use
//     CASCADE, for a dependency neither installed nor (without CASCADE)
//     installable. This is PostgreSQL's CREATE EXTENSION message and code.
//   - 22023 `required extension "bar" version 1.0 does not satisfy >= 1.1`
//     when the installed version, or the one the repository or the server
//     would install, fails a depends constraint. Like the VERSION error
//     this is a wanted version that cannot be had, hence the same code; the
//     DETAIL says which extension requires what, and whether 1.0 is
//     installed or available (on the server, or not).
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
// conflict with an installed (by pgverbs or on the server) or planned
// extension, and an installed package whose control file declares a
// conflict with a planned one. Installed extensions do not record their
// conflicts, so the rules of an installed package are read from the
// repository, and only when the repository still holds the installed
// version: another version's rules may differ.
//
// The order of the steps is deterministic: a depth-first walk of depends
// entries in the order the control files list them, each package placed
// after its dependencies.
func ResolveEnv(r *Repo, name, version string, env Env, cascade bool) (*Plan, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	_, pgv := env.Installed[name]
	_, srv := env.ServerInstalled[name]
	if pgv || srv {
		return nil, pgerr.New(pgerr.DuplicateObject, "extension %s already exists", quote(name)).WithCause(ErrAlreadyInstalled)
	}
	rs := &resolver{
		repo:    r,
		env:     env,
		cascade: cascade,
		state:   map[string]visit{},
		pkgs:    map[string]*Package{},
		server:  map[string]string{},
	}
	if rs.fromServer(name) {
		if version == "" {
			version = env.ServerAvailable[name]
		}
		rs.addServer(name, version, cascade)
	} else {
		target, err := r.LoadVersion(name, version)
		if err != nil {
			return nil, err
		}
		if target.Version == "" {
			return nil, versionRequired(name)
		}
		rs.pkgs[name] = target
		if err := rs.visit(target); err != nil {
			return nil, err
		}
	}
	if err := rs.checkConflicts(); err != nil {
		return nil, err
	}
	return &Plan{Actions: rs.plan, Notes: rs.notes}, nil
}

type visit int

const (
	unvisited visit = iota
	visiting
	visited
)

type resolver struct {
	repo    *Repo
	env     Env
	cascade bool
	state   map[string]visit
	pkgs    map[string]*Package // every package loaded so far, by name
	server  map[string]string   // server steps planned: name -> version
	stack   []string            // the depends path being walked, for cycle messages
	plan    []Step
	notes   []string
}

// fromServer decides whether name, to be installed, comes from the server,
// noting a name that both offer.
func (rs *resolver) fromServer(name string) bool {
	if _, ok := rs.env.ServerAvailable[name]; !ok {
		return false
	}
	if !rs.repo.exists(name) {
		return true
	}
	if rs.env.PreferPackages {
		rs.notes = append(rs.notes, fmt.Sprintf("extension %s is both a package in the extensions directory and available on the server; installing the package", quote(name)))
		return false
	}
	rs.notes = append(rs.notes, fmt.Sprintf("extension %s is both a package in the extensions directory and available on the server; installing the server's with CREATE EXTENSION", quote(name)))
	return true
}

func (rs *resolver) addServer(name, version string, cascade bool) {
	rs.state[name] = visited
	rs.server[name] = version
	rs.plan = append(rs.plan, Step{Server: name, Version: version, Cascade: cascade})
}

// requirements returns what installing p needs, with its install scripts:
// p.Depends, or for a native package installed through update scripts the
// union of what each version on the way requires.
func (rs *resolver) requirements(p *Package) ([]Requirement, []ScriptFile, error) {
	files, err := rs.repo.InstallPath(p, p.Version)
	if err != nil {
		return nil, nil, err
	}
	if p.Layout != LayoutNative || len(files) < 2 {
		return p.Depends, files, nil
	}
	var reqs []Requirement
	seen := map[string]bool{}
	for _, f := range files {
		q := p
		if f.To != p.Version {
			if q, err = rs.repo.LoadVersion(p.Name, f.To); err != nil {
				return nil, nil, err
			}
		}
		for _, d := range q.Depends {
			if !seen[d.Name] {
				seen[d.Name] = true
				reqs = append(reqs, d)
			}
		}
	}
	return reqs, files, nil
}

func (rs *resolver) visit(p *Package) error {
	rs.state[p.Name] = visiting
	rs.stack = append(rs.stack, p.Name)
	reqs, files, err := rs.requirements(p)
	if err != nil {
		return err
	}
	for _, req := range reqs {
		if inst, ok := rs.env.Installed[req.Name]; ok {
			if err := unsatisfied(p, req, inst.Version, "installed"); err != nil {
				return err
			}
			continue
		}
		if v, ok := rs.env.ServerInstalled[req.Name]; ok {
			if err := unsatisfied(p, req, v, "installed on the server"); err != nil {
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
			if v, ok := rs.server[req.Name]; ok {
				if err := unsatisfied(p, req, v, "available on the server"); err != nil {
					return err
				}
				continue
			}
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
		if rs.fromServer(req.Name) {
			v := rs.env.ServerAvailable[req.Name]
			if err := unsatisfied(p, req, v, "available on the server"); err != nil {
				return err
			}
			rs.addServer(req.Name, v, true)
			continue
		}
		dep, err := rs.repo.Load(req.Name)
		if err != nil {
			var pe *pgerr.Error
			if errors.Is(err, ErrNotFound) && errors.As(err, &pe) {
				// Same error, but saying why this package was wanted.
				e := *pe
				e.Detail = "Extension " + quote(p.Name) + " requires " + req.String() + "."
				return e.WithCause(ErrNotFound)
			}
			return err
		}
		if dep.Version == "" {
			return versionRequired(dep.Name)
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
	rs.plan = append(rs.plan, Step{Pkg: p, Scripts: files, Version: p.Version})
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
// and planned extensions, then those of installed packages against the
// plan.
func (rs *resolver) checkConflicts() error {
	planned := map[string]string{} // name -> version
	for _, s := range rs.plan {
		planned[s.Name()] = s.Version
	}
	for _, s := range rs.plan {
		p := s.Pkg
		if p == nil {
			continue
		}
		for _, c := range p.Conflicts {
			if c.Name == p.Name {
				continue
			}
			if inst, ok := rs.env.Installed[c.Name]; ok && c.Satisfied(inst.Version) {
				return conflictError(p.Name, c.Name, inst.Version, true, p.Name, c)
			}
			if v, ok := rs.env.ServerInstalled[c.Name]; ok && c.Satisfied(v) {
				return conflictError(p.Name, c.Name, v, true, p.Name, c)
			}
			if v, ok := planned[c.Name]; ok && c.Satisfied(v) {
				return conflictError(p.Name, c.Name, v, false, p.Name, c)
			}
		}
	}
	names := make([]string, 0, len(rs.env.Installed))
	for n := range rs.env.Installed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		inst := rs.env.Installed[n]
		if ValidName(n) != nil {
			continue // cannot be in the repository
		}
		if !rs.repo.definesPgverbs(n) {
			continue // gone, or a native package: no conflicts rules
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
			if v, ok := planned[c.Name]; ok && c.Name != n && c.Satisfied(v) {
				return conflictError(c.Name, n, inst.Version, true, n, c)
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
