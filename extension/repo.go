package extension

import (
	"errors"
	"io"
	"io/fs"
	"os"
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
		return "", "", withSentinel(newErr(pgerr.InsufficientPrivilege,
			quote(name)+" resolves to a path outside the extensions directory.", "",
			"%s is outside the extensions directory", quote(name)), ErrOutsideRepo)
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

// Load reads package name: its control file, and <name>.conf if present.
// It checks that the control file's name matches the directory, that
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
// error. Messages name files relative to the repository ("foo/control"),
// never by absolute path, since clients see them.
func (r *Repo) Load(name string) (*Package, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	root, err := r.root()
	if err != nil {
		return nil, err
	}
	dir, _, err := inside(root, filepath.Join(root, name), name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, r.notAvailable(name)
	}
	if err != nil {
		return nil, wrapFileError(name, err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, r.notAvailable(name)
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
	return withSentinel(e, ErrNotFound)
}

// Names lists the packages of the repository, sorted: the subdirectories
// with a valid package name and a control file, both inside the
// repository. It does not parse the control files.
func (r *Repo) Names() ([]string, error) {
	root, err := r.root()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, dirError(err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if ValidName(n) != nil {
			continue
		}
		// A package that is broken or leads outside is left out here and
		// explained by Load.
		if ok, err := regularInside(root, filepath.Join(root, n, "control"), n+"/control"); err == nil && ok {
			names = append(names, n)
		}
	}
	return names, nil
}

// Script returns the text of p's "install" or "uninstall" script
// (install.sql, uninstall.sql in p.Dir), with the same containment check as
// Load: p.Dir and the script must resolve to paths inside the repository.
// A missing script is a *pgerr.Error with SQLSTATE 58P01. The text goes to
// PrepareScript before anything runs.
func (r *Repo) Script(p *Package, which string) (string, error) {
	if p == nil || (which != "install" && which != "uninstall") {
		return "", pgerr.New(pgerr.InternalError, "extension: Script(%q): want \"install\" or \"uninstall\"", which)
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
