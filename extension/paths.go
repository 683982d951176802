package extension

import (
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// ScriptFile is one script to run: an install script, or an update script
// from one version to the next.
type ScriptFile struct {
	// Name is the file relative to the extensions directory, with "/"
	// separators: "foo/install.sql" (pgverbs layout), "foo--1.0.sql" or,
	// with a directory key, "foo_dir/foo--1.0--1.1.sql" (native layout). It
	// is what messages and PrepareScriptOpts's file argument should show, and
	// what Repo.ReadScript reads.
	Name string
	// From is the version the script starts from, "" for an install script.
	From string
	// To is the version installed once the script has run. PostgreSQL runs
	// each script with the control file of its To version (secondary
	// control file applied): use Repo.LoadVersion(name, To) for its
	// ModulePathname and Requires.
	To string
}

// VersionPath is one row of Repo.UpdatePaths, like a row of PostgreSQL's
// pg_extension_update_paths().
type VersionPath struct {
	// Source and Target are the versions the row is about.
	Source, Target string
	// Path lists the versions from Source to Target, both included; nil
	// when no update scripts lead there.
	Path []string
}

// verGraph is the version graph of a native package, read from its script
// file names: install scripts foo--1.0.sql make 1.0 installable, update
// scripts foo--1.0--1.1.sql are edges from 1.0 to 1.1.
type verGraph struct {
	installable map[string]bool
	next, prev  map[string][]string
	// all lists every version a script names, sorted with CompareVersions.
	all []string
}

// scanScripts reads the script names of native package name in dir. As
// PostgreSQL does, a file name with more than two "--" separators is
// ignored, and so are versions that PostgreSQL would refuse as names (and
// those with characters validVersion does not allow). relDir names dir in
// messages.
func scanScripts(dir, relDir, name string) (*verGraph, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if relDir == "" {
			return nil, dirError(err)
		}
		return nil, fileError(relDir, err)
	}
	g := &verGraph{installable: map[string]bool{}, next: map[string][]string{}, prev: map[string][]string{}}
	seen := map[string]bool{}
	add := func(v string) {
		if !seen[v] {
			seen[v] = true
			g.all = append(g.all, v)
		}
	}
	for _, e := range entries {
		base := e.Name()
		if e.IsDir() || !strings.HasPrefix(base, name+"--") || !strings.HasSuffix(base, ".sql") {
			continue
		}
		vers := strings.Split(strings.TrimSuffix(strings.TrimPrefix(base, name+"--"), ".sql"), "--")
		ok := len(vers) <= 2
		for _, v := range vers {
			ok = ok && validNativeVersion(v)
		}
		if !ok {
			continue
		}
		for _, v := range vers {
			add(v)
		}
		if len(vers) == 1 {
			g.installable[vers[0]] = true
			continue
		}
		if vers[0] != vers[1] {
			g.next[vers[0]] = append(g.next[vers[0]], vers[1])
			g.prev[vers[1]] = append(g.prev[vers[1]], vers[0])
		}
	}
	sortVersions(g.all)
	return g, nil
}

// sortVersions sorts with CompareVersions, then byte-wise, so that
// versions that compare equal (1.0, 1.0.0) still have a fixed order.
func sortVersions(vs []string) {
	sort.Slice(vs, func(i, j int) bool {
		if c := CompareVersions(vs[i], vs[j]); c != 0 {
			return c < 0
		}
		return vs[i] < vs[j]
	})
}

// available returns the installable versions and those reachable from them
// through update scripts, sorted.
func (g *verGraph) available() []string {
	reach := map[string]bool{}
	var queue []string
	for _, v := range g.all {
		if g.installable[v] {
			reach[v] = true
			queue = append(queue, v)
		}
	}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, w := range g.next[v] {
			if !reach[w] {
				reach[w] = true
				queue = append(queue, w)
			}
		}
	}
	var out []string
	for _, v := range g.all { // already sorted
		if reach[v] {
			out = append(out, v)
		}
	}
	return out
}

// shortest returns the versions on the path with the fewest update scripts
// from start to target, both included, or nil when there is none. With
// rejectIndirect the path may not pass through (or end at) an installable
// version other than start.
//
// Among paths of equal length it chooses exactly as PostgreSQL's
// find_update_path does (a Dijkstra search with unit weights): each
// version's predecessor is the one whose name sorts first byte-wise among
// those one step closer to start. PostgreSQL calls this tie-break
// undocumented; following it means that a package installed by pgverbs runs
// the same scripts as CREATE EXTENSION would.
func (g *verGraph) shortest(start, target string, rejectIndirect bool) []string {
	if start == target {
		return []string{start}
	}
	dist := map[string]int{start: 0}
	layer := []string{start}
	for len(layer) > 0 {
		if _, ok := dist[target]; ok {
			break
		}
		var next []string
		for _, u := range layer {
			for _, v := range g.next[u] {
				if rejectIndirect && g.installable[v] {
					continue
				}
				if _, ok := dist[v]; !ok {
					dist[v] = dist[u] + 1
					next = append(next, v)
				}
			}
		}
		layer = next
	}
	if _, ok := dist[target]; !ok {
		return nil
	}
	path := []string{target}
	for v := target; v != start; {
		best, found := "", false
		for _, u := range g.prev[v] {
			if du, ok := dist[u]; ok && du == dist[v]-1 && (!found || u < best) {
				best, found = u, true
			}
		}
		path = append(path, best)
		v = best
	}
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	return path
}

// installPath returns the versions of the install script to run and of the
// update scripts after it, as PostgreSQL 10+'s find_install_path chooses
// them: the target's own install script when there is one; otherwise,
// among the installable versions with a path to the target that passes
// through no other installable version, the one with the fewest update
// steps, ties going to the start version whose name sorts last byte-wise
// (PostgreSQL's rule again). nil when the target cannot be installed.
func (g *verGraph) installPath(target string) []string {
	if g.installable[target] {
		return []string{target}
	}
	var best []string
	for _, s := range g.all {
		if !g.installable[s] {
			continue
		}
		p := g.shortest(s, target, true)
		if p == nil {
			continue
		}
		if best == nil || len(p) < len(best) || (len(p) == len(best) && best[0] < s) {
			best = p
		}
	}
	return best
}

// matchVersion finds version among versions: itself, or else the only one
// that CompareVersions holds equal to it (so that VERSION '1.0.0' finds
// 1.0, as for the pgverbs layout).
func matchVersion(versions []string, version string) (string, bool) {
	var match string
	n := 0
	for _, v := range versions {
		if v == version {
			return v, true
		}
		if CompareVersions(v, version) == 0 {
			match = v
			n++
		}
	}
	return match, n == 1
}

// versionNotAvailable is the 22023 error for a version that a package
// cannot install, listing those it can.
func versionNotAvailable(name, version string, available []string) error {
	return newErr(pgerr.InvalidParameterValue, availableDetail(available), "",
		"version %s of extension %s is not available", quote(version), quote(name))
}

// noUpdatePath is PostgreSQL's 22023 error of ALTER EXTENSION UPDATE.
func noUpdatePath(name, from, to string) error {
	return pgerr.New(pgerr.InvalidParameterValue, "extension %s has no update path from version %s to version %s",
		quote(name), quote(from), quote(to))
}

// versionRequired is PostgreSQL's error for a native package without
// default_version installed without VERSION.
func versionRequired(name string) error {
	return newErr(pgerr.InvalidParameterValue, "The control file of extension "+quote(name)+" sets no default_version.", "",
		"version to install must be specified")
}

// scriptDir returns the repository root and p's script directory relative
// to it ("" for the root itself, "/"-separated), refusing a p.Dir outside.
func (r *Repo) scriptDir(p *Package) (root, rel string, err error) {
	root, err = r.root()
	if err != nil {
		return "", "", err
	}
	_, rel, err = inside(root, p.Dir, p.Name)
	if err != nil {
		return "", "", wrapFileError(p.Name, err)
	}
	if rel == "." {
		rel = ""
	}
	return root, filepath.ToSlash(rel), nil
}

// joinRel names a file of directory rel (relative, "" for the root).
func joinRel(rel, base string) string {
	if rel == "" {
		return base
	}
	return path.Join(rel, base)
}

// graph reads the version graph of native package p.
func (r *Repo) graph(p *Package) (*verGraph, string, error) {
	_, rel, err := r.scriptDir(p)
	if err != nil {
		return nil, "", err
	}
	g, err := scanScripts(p.Dir, rel, p.Name)
	return g, rel, err
}

func checkPackage(p *Package, method string) error {
	if p == nil {
		return pgerr.New(pgerr.InternalError, "extension: %s of a nil package", method)
	}
	return nil
}

// InstallPath returns the scripts that install version of p ("" for
// p.Version), in order.
//
// For the pgverbs layout that is install.sql, for its one version. For the
// native layout it is the version's own install script foo--2.0.sql when
// there is one; otherwise, as in PostgreSQL 10 and later, an install script
// of another version followed by update scripts: the chain with the fewest
// update steps that passes through no other installable version, ties
// broken as PostgreSQL does (the start version whose name sorts last
// byte-wise, then, along the way, predecessors whose names sort first; see
// the package documentation). So with foo--1.0.sql, foo--1.0--1.1.sql,
// foo--1.1--2.0.sql and foo--1.0--2.0.sql, version 2.0 installs with
// foo--1.0.sql then foo--1.0--2.0.sql.
//
// A version that cannot be installed is 22023 `version "x" of extension
// "foo" is not available`, with the available versions in DETAIL. Versions
// match as in LoadVersion: exactly, or else the only one equal under
// CompareVersions.
func (r *Repo) InstallPath(p *Package, version string) ([]ScriptFile, error) {
	if err := checkPackage(p, "InstallPath"); err != nil {
		return nil, err
	}
	if version == "" {
		version = p.Version
	}
	if p.Layout != LayoutNative {
		if CompareVersions(version, p.Version) != 0 {
			return nil, versionNotAvailable(p.Name, version, []string{p.Version})
		}
		return []ScriptFile{{Name: p.Name + "/install.sql", To: p.Version}}, nil
	}
	if version == "" {
		return nil, versionRequired(p.Name)
	}
	g, rel, err := r.graph(p)
	if err != nil {
		return nil, err
	}
	avail := g.available()
	v, ok := matchVersion(avail, version)
	if !ok {
		return nil, versionNotAvailable(p.Name, version, avail)
	}
	vers := g.installPath(v)
	files := []ScriptFile{{Name: joinRel(rel, p.Name+"--"+vers[0]+".sql"), To: vers[0]}}
	return append(files, updateFiles(p.Name, rel, vers)...), nil
}

// updateFiles turns a path of versions into its update scripts.
func updateFiles(name, rel string, vers []string) []ScriptFile {
	var files []ScriptFile
	for i := 1; i < len(vers); i++ {
		files = append(files, ScriptFile{
			Name: joinRel(rel, name+"--"+vers[i-1]+"--"+vers[i]+".sql"),
			From: vers[i-1], To: vers[i],
		})
	}
	return files
}

// UpdatePath returns the update scripts that take p from version from to
// version to, in order, as ALTER EXTENSION UPDATE would run them: the
// fewest steps over the foo--a--b.sql scripts (a breadth-first search,
// ties broken as PostgreSQL does). Equal versions need no script (nil).
// Without a path, the error is PostgreSQL's 22023 `extension "foo" has no
// update path from version "a" to version "b"`. The pgverbs layout has one
// version, so any other is that error.
func (r *Repo) UpdatePath(p *Package, from, to string) ([]ScriptFile, error) {
	if err := checkPackage(p, "UpdatePath"); err != nil {
		return nil, err
	}
	if p.Layout != LayoutNative {
		if CompareVersions(from, to) == 0 {
			return nil, nil
		}
		return nil, noUpdatePath(p.Name, from, to)
	}
	if from == to {
		return nil, nil
	}
	g, rel, err := r.graph(p)
	if err != nil {
		return nil, err
	}
	f, okf := matchVersion(g.all, from)
	t, okt := matchVersion(g.all, to)
	if !okf || !okt {
		return nil, noUpdatePath(p.Name, from, to)
	}
	if f == t {
		return nil, nil
	}
	vers := g.shortest(f, t, false)
	if vers == nil {
		return nil, noUpdatePath(p.Name, from, to)
	}
	return updateFiles(p.Name, rel, vers), nil
}

// UpdatePaths lists, like PostgreSQL's pg_extension_update_paths(), every
// ordered pair of distinct versions named by p's scripts (including ones
// that cannot be installed, such as pgTAP's "unpackaged") with the update
// path between them, nil when there is none. Sources and targets come in
// CompareVersions order. The pgverbs layout has one version, hence no
// pairs.
func (r *Repo) UpdatePaths(p *Package) ([]VersionPath, error) {
	if err := checkPackage(p, "UpdatePaths"); err != nil {
		return nil, err
	}
	if p.Layout != LayoutNative {
		return nil, nil
	}
	g, _, err := r.graph(p)
	if err != nil {
		return nil, err
	}
	var out []VersionPath
	for _, s := range g.all {
		for _, t := range g.all {
			if s != t {
				out = append(out, VersionPath{Source: s, Target: t, Path: g.shortest(s, t, false)})
			}
		}
	}
	return out, nil
}

// UninstallScript names p's uninstall script, for ReadScript and messages:
// uninstall.sql (pgverbs layout) or uninstall_<name>.sql in the script
// directory (native layout), with From p.Version and To "". A package
// without one (HasUninstall false) is SQLSTATE 58P01.
func (r *Repo) UninstallScript(p *Package) (ScriptFile, error) {
	if err := checkPackage(p, "UninstallScript"); err != nil {
		return ScriptFile{}, err
	}
	name := p.Name + "/uninstall.sql"
	if p.Layout == LayoutNative {
		_, rel, err := r.scriptDir(p)
		if err != nil {
			return ScriptFile{}, err
		}
		name = joinRel(rel, "uninstall_"+p.Name+".sql")
	}
	if !p.HasUninstall {
		return ScriptFile{}, pgerr.New(pgerr.UndefinedFile, "extension %s has no uninstall script %s", quote(p.Name), quote(name))
	}
	return ScriptFile{Name: name, From: p.Version}, nil
}
