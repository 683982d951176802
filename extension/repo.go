package extension

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Size limits. The files are small in practice (PostGIS's largest script is
// a few megabytes); the limits keep a mistaken or hostile file from
// exhausting the proxy's memory.
const (
	maxControlSize = 1 << 20
	maxScriptSize  = 64 << 20
)

// Repo is an extensions directory: one subdirectory per package. It holds
// only the path, so that packages added or changed on disk are seen by the
// next call; it is safe for concurrent use.
type Repo struct {
	dir string
}

// OpenRepo returns the repository at dir. It does not touch the file
// system: a missing or unreadable directory shows up as errors from Load,
// Names and Script.
func OpenRepo(dir string) *Repo { return &Repo{dir: dir} }

// root returns the repository directory, absolute and with symbolic links
// resolved: the reference every containment check compares against.
func (r *Repo) root() (string, error) {
	abs, err := filepath.Abs(r.dir)
	if err != nil {
		return "", dirError(err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", dirError(err)
	}
	return resolved, nil
}

// inside resolves path and returns it relative to root, refusing with
// ErrOutsideRepo when symbolic links lead out of root. name identifies the
// path in messages.
func inside(root, path, name string) (resolved, rel string, err error) {
	resolved, err = filepath.EvalSymlinks(path)
	if err != nil {
		return "", "", err
	}
	rel, err = filepath.Rel(root, resolved)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", "", newErr(pgerr.InsufficientPrivilege,
			quote(name)+" resolves to a path outside the extensions directory.", "",
			"%s is outside the extensions directory", quote(name)).WithCause(ErrOutsideRepo)
	}
	return resolved, rel, nil
}

// readInside reads the regular file at path, which must lie inside root.
// The EvalSymlinks check gives a clear error; opening through os.Root then
// also holds if a link is swapped between the check and the open.
func readInside(root, path, name string, limit int64) ([]byte, error) {
	_, rel, err := inside(root, path, name)
	if err != nil {
		return nil, wrapFileError(name, err)
	}
	rt, err := os.OpenRoot(root)
	if err != nil {
		return nil, fileError(name, err)
	}
	defer rt.Close()
	// A FIFO would block the open itself, a device might never end: check
	// before opening, and again on the open file in case it was swapped.
	if fi, err := rt.Stat(rel); err != nil {
		return nil, fileError(name, err)
	} else if !fi.Mode().IsRegular() {
		return nil, notRegular(name)
	}
	f, err := rt.Open(rel)
	if err != nil {
		return nil, fileError(name, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, fileError(name, err)
	} else if !fi.Mode().IsRegular() {
		return nil, notRegular(name)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fileError(name, err)
	}
	if int64(len(data)) > limit {
		return nil, pgerr.New(pgerr.ProgramLimitExceeded, "%s is larger than %d bytes", quote(name), limit)
	}
	return data, nil
}

func notRegular(name string) error {
	return pgerr.New(pgerr.IOError, "%s is not a regular file", quote(name))
}

// wrapFileError passes errors that are already wire errors through.
func wrapFileError(name string, err error) error {
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		return err
	}
	return fileError(name, err)
}

// regularInside reports whether path is a regular file inside root.
func regularInside(root, path, name string) (bool, error) {
	resolved, _, err := inside(root, path, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, wrapFileError(name, err)
	}
	fi, err := os.Stat(resolved)
	if err != nil {
		return false, fileError(name, err)
	}
	return fi.Mode().IsRegular(), nil
}

// Load reads package name at its default version, in either layout (see
// the package documentation): LoadVersion(name, "").
//
// For the pgverbs layout it reads the control file and <name>.conf if
// present, checks that the control file's name matches the directory, that
// install.sql exists, and notes whether uninstall.sql does.
//
// Nothing outside the repository is read: the package directory and every
// file are resolved with filepath.EvalSymlinks and must stay inside the
// resolved repository directory (filepath.Rel), so a symbolic link is
// followed only while it stays inside; one that leaves yields a
// *pgerr.Error with SQLSTATE 42501 wrapping ErrOutsideRepo.
//
// A package that does not exist yields a *pgerr.Error with SQLSTATE 42704,
// `extension "x" is not available`, wrapping ErrNotFound, with a HINT
// naming packages with similar names. An invalid name gives ValidName's
// error. A name defined in both layouts (foo/control and foo.control) is
// SQLSTATE 42P17 naming both files. Messages name files relative to the
// repository ("foo/control", "foo.control"), never by absolute path, since
// clients see them.
func (r *Repo) Load(name string) (*Package, error) {
	return r.LoadVersion(name, "")
}

// LoadVersion reads package name as it is at version ("" for its default
// version): Version is set to it and, for the native layout, the secondary
// control file foo--<version>.control, if any, overrides the primary one.
//
// A version the package cannot install is SQLSTATE 22023 `version "x" of
// extension "foo" is not available`, listing the available versions in
// DETAIL. Versions match exactly or, failing that, when CompareVersions
// holds them equal to only one available version (VERSION '1.0.0' finds
// 1.0). A native package whose default version cannot be installed fails
// Load with PostgreSQL's 22023 `extension "foo" has no installation script
// nor update path for version "1.0"`; one without default_version loads
// with Version "" (installing it needs a VERSION).
//
// For the native layout the control file <name>.control is parsed with
// parseNativeControl; the scripts are looked for in its directory key,
// resolved inside the extensions directory (42501 wrapping ErrOutsideRepo
// otherwise), or in the extensions directory itself; Versions is read from
// the script names; HasUninstall tells whether uninstall_<name>.sql exists
// there. Native packages have no settings file. Names with "--", or
// beginning or ending with "-", cannot be native packages (PostgreSQL
// refuses them as extension names).
func (r *Repo) LoadVersion(name, version string) (*Package, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	root, err := r.root()
	if err != nil {
		return nil, err
	}
	pgverbs, err := r.hasPgverbs(root, name)
	if err != nil {
		return nil, err
	}
	native, err := r.hasNative(root, name)
	if err != nil {
		return nil, err
	}
	switch {
	case pgverbs && native:
		return nil, newErr(pgerr.InvalidObjectDefinition,
			"An extension is either a directory with a control file (pgverbs layout) or a control file named after it (PostgreSQL's layout), not both.",
			"Remove one of "+quote(name+"/control")+" and "+quote(name+".control")+".",
			"extension %s is defined twice: by %s and by %s", quote(name), quote(name+"/control"), quote(name+".control"))
	case native:
		return r.loadNative(root, name, version)
	case !pgverbs:
		return nil, r.notAvailable(name)
	}
	p, err := r.loadPgverbs(root, name)
	if err != nil {
		return nil, err
	}
	if version != "" && CompareVersions(version, p.Version) != 0 {
		return nil, versionNotAvailable(name, version, p.Versions)
	}
	return p, nil
}

// exists reports whether the repository defines name in either layout,
// broken or not (a definition that cannot be checked counts).
func (r *Repo) exists(name string) bool {
	if ValidName(name) != nil {
		return false
	}
	root, err := r.root()
	if err != nil {
		return false
	}
	pgverbs, err1 := r.hasPgverbs(root, name)
	native, err2 := r.hasNative(root, name)
	return pgverbs || native || err1 != nil || err2 != nil
}

// definesPgverbs reports whether name is (or may be: a definition that
// cannot be checked counts) a package of the pgverbs layout.
func (r *Repo) definesPgverbs(name string) bool {
	root, err := r.root()
	if err != nil {
		return true // Load will say what is wrong
	}
	ok, err := r.hasPgverbs(root, name)
	return ok || err != nil
}

// hasPgverbs reports whether name/control exists (of whatever file type:
// loadPgverbs explains what is wrong with it), refusing links that lead
// outside.
func (r *Repo) hasPgverbs(root, name string) (bool, error) {
	dir, _, err := inside(root, filepath.Join(root, name), name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, wrapFileError(name, err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return false, nil
	}
	_, _, err = inside(root, filepath.Join(dir, "control"), name+"/control")
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, wrapFileError(name+"/control", err)
	}
	return true, nil
}

// hasNative reports whether name.control exists, for names that can be
// native packages, refusing links that lead outside.
func (r *Repo) hasNative(root, name string) (bool, error) {
	if validNativeName(name) != nil {
		return false, nil
	}
	file := name + ".control"
	_, _, err := inside(root, filepath.Join(root, file), file)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, wrapFileError(file, err)
	}
	return true, nil
}

// loadPgverbs loads a package of the pgverbs layout.
func (r *Repo) loadPgverbs(root, name string) (*Package, error) {
	dir, _, err := inside(root, filepath.Join(root, name), name)
	if err != nil {
		return nil, wrapFileError(name, err)
	}
	controlName := name + "/control"
	data, err := readInside(root, filepath.Join(dir, "control"), controlName, maxControlSize)
	if isUndefinedFile(err) {
		return nil, r.notAvailable(name)
	}
	if err != nil {
		return nil, err
	}
	p, lines, err := parseControl(controlName, data)
	if err != nil {
		return nil, err
	}
	if p.Name != name {
		return nil, pgerr.New(pgerr.InvalidParameterValue, "%sname %s does not match the package directory %s",
			at(controlName, lines["name"]), quote(p.Name), quote(name))
	}
	p.Dir = dir
	p.Layout = LayoutPgverbs
	p.DefaultVersion = p.Version
	p.Versions = []string{p.Version}
	for _, d := range p.Depends {
		p.Requires = append(p.Requires, d.Name)
	}

	install := name + "/install.sql"
	ok, err := regularInside(root, filepath.Join(dir, "install.sql"), install)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, pgerr.New(pgerr.UndefinedFile, "extension %s has no install script %s", quote(name), quote(install))
	}
	if p.HasUninstall, err = regularInside(root, filepath.Join(dir, "uninstall.sql"), name+"/uninstall.sql"); err != nil {
		return nil, err
	}

	confName := name + "/" + name + ".conf"
	data, err = readInside(root, filepath.Join(dir, name+".conf"), confName, maxControlSize)
	switch {
	case err == nil:
		if p.Settings, err = ParseSettings(confName, data); err != nil {
			return nil, err
		}
	case !isUndefinedFile(err):
		return nil, err
	}
	return p, nil
}

// loadNative loads a package of PostgreSQL's layout at version ("" for
// the default).
func (r *Repo) loadNative(root, name, version string) (*Package, error) {
	file := name + ".control"
	data, err := readInside(root, filepath.Join(root, file), file, maxControlSize)
	if err != nil {
		return nil, err
	}
	p, lines, err := parseNativeControl(name, file, data)
	if err != nil {
		return nil, err
	}
	p.Dir = root
	rel := ""
	if p.Directory != "" {
		clean := path.Clean(strings.ReplaceAll(p.Directory, `\`, "/"))
		if clean == ".." || strings.HasPrefix(clean, "../") {
			// Refused before looking: whether it exists out there is none
			// of the client's business.
			return nil, newErr(pgerr.InsufficientPrivilege,
				quote(p.Directory)+" leads outside the extensions directory.", "",
				"%sdirectory %s is outside the extensions directory", at(file, lines["directory"]), quote(p.Directory)).WithCause(ErrOutsideRepo)
		}
		resolved, relDir, err := inside(root, filepath.Join(root, filepath.FromSlash(clean)), p.Directory)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, pgerr.New(pgerr.UndefinedFile, "%sdirectory %s does not exist", at(file, lines["directory"]), quote(p.Directory))
		}
		if err != nil {
			return nil, wrapFileError(p.Directory, err)
		}
		if fi, err := os.Stat(resolved); err != nil {
			return nil, fileError(p.Directory, err)
		} else if !fi.IsDir() {
			return nil, pgerr.New(pgerr.IOError, "%sdirectory %s is not a directory", at(file, lines["directory"]), quote(p.Directory))
		}
		p.Dir = resolved
		if relDir != "." {
			rel = filepath.ToSlash(relDir)
		}
	}
	g, err := scanScripts(p.Dir, rel, name)
	if err != nil {
		return nil, err
	}
	p.Versions = g.available()

	if version == "" {
		if p.DefaultVersion == "" {
			p.Version = ""
			return r.finishNative(root, rel, p)
		}
		if _, ok := matchVersion(p.Versions, p.DefaultVersion); !ok {
			return nil, newErr(pgerr.InvalidParameterValue, availableDetail(p.Versions), "",
				"extension %s has no installation script nor update path for version %s", quote(name), quote(p.DefaultVersion))
		}
		version = p.DefaultVersion
	}
	v, ok := matchVersion(p.Versions, version)
	if !ok {
		return nil, versionNotAvailable(name, version, p.Versions)
	}
	p.Version = v

	secondary := name + "--" + v + ".control"
	secName := joinRel(rel, secondary)
	data, err = readInside(root, filepath.Join(p.Dir, secondary), secName, maxControlSize)
	switch {
	case err == nil:
		if _, err := applyNativeControl(p, secName, data, true); err != nil {
			return nil, err
		}
	case !isUndefinedFile(err):
		return nil, err
	}
	return r.finishNative(root, rel, p)
}

func (r *Repo) finishNative(root, rel string, p *Package) (*Package, error) {
	un := "uninstall_" + p.Name + ".sql"
	var err error
	p.HasUninstall, err = regularInside(root, filepath.Join(p.Dir, un), joinRel(rel, un))
	if err != nil {
		return nil, err
	}
	return p, nil
}

// availableDetail lists versions for a DETAIL.
func availableDetail(vs []string) string {
	switch len(vs) {
	case 0:
		return "No version can be installed."
	case 1:
		return "Available version: " + vs[0] + "."
	}
	return "Available versions: " + strings.Join(vs, ", ") + "."
}

func isUndefinedFile(err error) bool {
	var pe *pgerr.Error
	return errors.As(err, &pe) && pe.Code == pgerr.UndefinedFile
}

// notAvailable builds Load's 42704 error, with a hint when some package's
// name is close to the one asked for, as a typo usually is.
func (r *Repo) notAvailable(name string) error {
	e := pgerr.New(pgerr.UndefinedObject, "extension %s is not available", quote(name))
	e.Detail = "There is no package " + quote(name) + " in the extensions directory."
	if names, err := r.Names(); err == nil {
		if similar := similarNames(name, names); len(similar) > 0 {
			q := make([]string, len(similar))
			for i, s := range similar {
				q[i] = quote(s)
			}
			e.Hint = "Available extensions with similar names: " + strings.Join(q, ", ") + "."
		}
	}
	return e.WithCause(ErrNotFound)
}

// Names lists the packages of the repository, sorted, in both layouts:
// the subdirectories with a valid package name and a control file, and the
// files <name>.control with a name valid for a native package (so not the
// secondary control files foo--1.1.control), all inside the repository. A
// name defined in both layouts is listed once (Load reports the clash). It
// does not parse the control files.
func (r *Repo) Names() ([]string, error) {
	root, err := r.root()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, dirError(err)
	}
	seen := map[string]bool{}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if base, ok := strings.CutSuffix(n, ".control"); ok && validNativeName(base) == nil && !seen[base] {
			if ok, err := regularInside(root, filepath.Join(root, n), n); err == nil && ok {
				seen[base] = true
				names = append(names, base)
			}
		}
		if ValidName(n) != nil || seen[n] {
			continue
		}
		// A package that is broken or leads outside is left out here and
		// explained by Load.
		if ok, err := regularInside(root, filepath.Join(root, n, "control"), n+"/control"); err == nil && ok {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, nil
}

// Script returns the text of p's "install" or "uninstall" script, with the
// same containment check as Load: p.Dir and the script must resolve to
// paths inside the repository. For the pgverbs layout these are install.sql
// and uninstall.sql in p.Dir; for the native layout, the install script of
// p.Version itself (foo--1.0.sql; a version installed through update
// scripts has none: use InstallPath and ReadScript, which handle both
// layouts) and uninstall_<name>.sql. A missing script is a *pgerr.Error
// with SQLSTATE 58P01. The text goes to PrepareScriptOpts before anything runs.
func (r *Repo) Script(p *Package, which string) (string, error) {
	if p == nil || (which != "install" && which != "uninstall") {
		return "", pgerr.New(pgerr.InternalError, "extension: Script(%q): want \"install\" or \"uninstall\"", which)
	}
	if p.Layout == LayoutNative {
		_, rel, err := r.scriptDir(p)
		if err != nil {
			return "", err
		}
		base := "uninstall_" + p.Name + ".sql"
		if which == "install" {
			if p.Version == "" {
				return "", versionRequired(p.Name)
			}
			base = p.Name + "--" + p.Version + ".sql"
		}
		return r.ReadScript(p, ScriptFile{Name: joinRel(rel, base), To: p.Version})
	}
	root, err := r.root()
	if err != nil {
		return "", err
	}
	name := p.Name + "/" + which + ".sql"
	data, err := readInside(root, filepath.Join(p.Dir, which+".sql"), name, maxScriptSize)
	if err != nil {
		return "", err
	}
	return string(data), nil
}

// ReadScript returns the text of script f of package p, as InstallPath and
// UpdatePath name it (or the uninstall script), with Script's containment
// checks. f.Name must be a script of p in p's script directory; anything
// else is refused (SQLSTATE XX000), so that a forged name cannot read other
// files. For a native package whose control file sets encoding, a LATIN1
// script is converted to UTF-8; other encodings are accepted only for
// scripts that are plain ASCII (0A000 otherwise), since scripts are sent as
// UTF-8.
func (r *Repo) ReadScript(p *Package, f ScriptFile) (string, error) {
	if err := checkPackage(p, "ReadScript"); err != nil {
		return "", err
	}
	base := path.Base(f.Name)
	notScript := func() error {
		return pgerr.New(pgerr.InternalError, "extension: %s is not a script of extension %s", quote(f.Name), quote(p.Name))
	}
	if p.Layout != LayoutNative {
		which := strings.TrimSuffix(base, ".sql")
		if f.Name != p.Name+"/"+base || (which != "install" && which != "uninstall") {
			return "", notScript()
		}
		return r.Script(p, which)
	}
	root, rel, err := r.scriptDir(p)
	if err != nil {
		return "", err
	}
	ok := base == "uninstall_"+p.Name+".sql" ||
		(strings.HasPrefix(base, p.Name+"--") && strings.HasSuffix(base, ".sql") && len(base) > len(p.Name)+6)
	if !ok || f.Name != joinRel(rel, base) {
		return "", notScript()
	}
	data, err := readInside(root, filepath.Join(p.Dir, base), f.Name, maxScriptSize)
	if err != nil {
		return "", err
	}
	return decodeScript(p.Encoding, f.Name, data)
}

// decodeScript turns a script in encoding enc into UTF-8 text.
func decodeScript(enc, file string, data []byte) (string, error) {
	switch enc {
	case "", "UTF8", "SQL_ASCII":
		return string(data), nil
	case "LATIN1":
		var b strings.Builder
		for _, c := range data {
			b.WriteRune(rune(c))
		}
		return b.String(), nil
	}
	for _, c := range data {
		if c >= 0x80 {
			return "", newErr(pgerr.FeatureNotSupported,
				"pgverbs sends scripts as UTF-8 and converts only LATIN1 ones.",
				"Convert the script to UTF-8 and set encoding = UTF8 in the control file.",
				"extension script %s in encoding %s holds non-ASCII characters", quote(file), enc)
		}
	}
	return string(data), nil
}

// similarNames returns up to five names close to name: at Levenshtein
// distance at most 2 (but less than the name's length, so that "x" does not
// suggest every two-letter name), or where one is a prefix of the other and
// the shorter has at least three characters. Closest first, then by name.
func similarNames(name string, names []string) []string {
	type cand struct {
		name string
		dist int
	}
	want := []rune(strings.ToLower(name))
	var cs []cand
	for _, n := range names {
		if n == name {
			continue
		}
		got := []rune(strings.ToLower(n))
		d := levenshtein(want, got)
		short := min(len(want), len(got))
		prefix := short >= 3 && (strings.HasPrefix(string(want), string(got)) || strings.HasPrefix(string(got), string(want)))
		if (d <= 2 && d < len(want)) || prefix {
			cs = append(cs, cand{n, d})
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].dist != cs[j].dist {
			return cs[i].dist < cs[j].dist
		}
		return cs[i].name < cs[j].name
	})
	var out []string
	for i := 0; i < len(cs) && i < 5; i++ {
		out = append(out, cs[i].name)
	}
	return out
}

func levenshtein(a, b []rune) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
