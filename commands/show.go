package commands

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// The SHOW commands list what can be installed, from both places an
// extension can come from: the packages of pgverbs' extensions directory
// (source "pgverbs") and the extensions the server itself offers (source
// "server", from pg_available_extensions and its relatives). They only
// read, so any role can run them, inside any transaction.
//
//	SHOW AVAILABLE EXTENSIONS
//	SHOW AVAILABLE EXTENSION VERSIONS [name]
//	SHOW EXTENSION UPDATE PATHS name
//
// Rows come with the CommandComplete tag "SHOW", as PostgreSQL's own SHOW
// sends them; clients display and read the rows from the RowDescription and
// DataRows, not from the tag.

// Values of the source column.
const (
	showSourcePgverbs = "pgverbs"
	showSourceServer  = "server"
)

// listing is one of the SHOW commands: its words, its columns and how it
// finds its rows.
type listing interface {
	// words are the command's words after SHOW, upper case.
	words() []string
	// takesName tells whether an extension name follows the words, and
	// whether it must.
	takesName() (allowed, required bool)
	columns() []Column
	// rows lists, for name when the command takes one ("" when omitted).
	rows(c Conn, repo *extension.Repo, name string) ([][]*string, error)
}

// ShowCommands returns the SHOW commands over the packages in repo, one
// per listing.
func ShowCommands(repo *extension.Repo) []*Show {
	return []*Show{{repo, showExtensions{}}, {repo, showVersions{}}, {repo, showUpdatePaths{}}}
}

// Show is one of the SHOW commands over the packages of a repository.
type Show struct {
	repo *extension.Repo
	list listing
}

// Name implements Command.
func (s *Show) Name() string { return strings.Join(s.Keywords(), " ") }

// Keywords implements Command.
func (s *Show) Keywords() []string { return append([]string{"SHOW"}, s.list.words()...) }

// Parse implements Parser.
func (s *Show) Parse(sql string) (Prepared, error) {
	name, err := parse(sql, func(p *parser) (string, error) { return p.show(s.list) })
	if err != nil {
		return nil, err
	}
	return &showRun{s, name}, nil
}

type showRun struct {
	cmd  *Show
	name string
}

// Columns implements Prepared.
func (r *showRun) Columns() []Column { return r.cmd.list.columns() }

// Execute implements Prepared.
func (r *showRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	rows, err := r.cmd.list.rows(c, r.cmd.repo, r.name)
	if err != nil {
		return nil, err
	}
	return &Outcome{Tag: "SHOW", Rows: rows}, nil
}

// showExtensions is SHOW AVAILABLE EXTENSIONS.
type showExtensions struct{}

func (showExtensions) words() []string                     { return []string{"AVAILABLE", "EXTENSIONS"} }
func (showExtensions) takesName() (allowed, required bool) { return false, false }

func (showExtensions) columns() []Column {
	return []Column{
		{"name", pgwire.TextOID}, {"default_version", pgwire.TextOID}, {"installed_version", pgwire.TextOID},
		{"source", pgwire.TextOID}, {"comment", pgwire.TextOID}, {"requires", pgwire.TextOID}, {"conflicts", pgwire.TextOID},
	}
}

// rows lists the packages and the server's extensions.
func (showExtensions) rows(c Conn, repo *extension.Repo, _ string) ([][]*string, error) {
	pkgs, err := showPackages(c, repo)
	if err != nil {
		return nil, err
	}
	installed := map[string]string{}
	if len(pkgs) > 0 {
		if installed, err = showInstalled(c); err != nil {
			return nil, err
		}
	}
	var rows [][]*string
	for _, p := range pkgs {
		var inst *string
		if v, ok := installed[p.Name]; ok {
			inst = strp(v)
		}
		rows = append(rows, []*string{strp(p.Name), showOrNull(p.DefaultVersion), inst,
			strp(showSourcePgverbs), showOrNull(p.Comment), showRequirements(p.Depends), showRequirements(p.Conflicts)})
	}
	server, err := queryRows(c, 5, `SELECT e.name, e.default_version, e.installed_version, e.comment, pg_catalog.array_to_string(v.requires, ', ')
FROM pg_catalog.pg_available_extensions e
LEFT JOIN pg_catalog.pg_available_extension_versions v ON v.name = e.name AND v.version = e.default_version`)
	if err != nil {
		return nil, err
	}
	for _, v := range server {
		rows = append(rows, []*string{showText(v[0]), showText(v[1]), showText(v[2]),
			strp(showSourceServer), showText(v[3]), showText(v[4]), nil})
	}
	showSortRows(rows, 0, 3, -1)
	return rows, nil
}

// showVersions is SHOW AVAILABLE EXTENSION VERSIONS [name].
type showVersions struct{}

func (showVersions) words() []string                     { return []string{"AVAILABLE", "EXTENSION", "VERSIONS"} }
func (showVersions) takesName() (allowed, required bool) { return true, false }

func (showVersions) columns() []Column {
	return []Column{
		{"name", pgwire.TextOID}, {"version", pgwire.TextOID}, {"installed", pgwire.BoolOID},
		{"source", pgwire.TextOID}, {"requires", pgwire.TextOID}, {"comment", pgwire.TextOID},
	}
}

// rows lists the versions of extension name, or of all when name is "".
func (showVersions) rows(c Conn, repo *extension.Repo, name string) ([][]*string, error) {
	var pkgs []*extension.Package
	var notFound error
	if name == "" {
		var err error
		if pkgs, err = showPackages(c, repo); err != nil {
			return nil, err
		}
	} else {
		p, err := showLoad(repo, name)
		switch {
		case err == nil:
			pkgs = []*extension.Package{p}
		case errors.Is(err, extension.ErrNotFound):
			notFound = err
		default:
			return nil, err
		}
	}
	installed := map[string]string{}
	if len(pkgs) > 0 {
		var err error
		if installed, err = showInstalled(c); err != nil {
			return nil, err
		}
	}
	var rows [][]*string
	for _, p := range pkgs {
		for _, v := range p.Versions {
			pv := p
			if p.Layout == extension.LayoutNative && v != p.Version {
				// A secondary control file may change requires and comment.
				var err error
				if pv, err = repo.LoadVersion(p.Name, v); err != nil {
					if name != "" {
						return nil, err
					}
					showWarnLeftOut(c, fmt.Sprintf("version %q of extension %q", v, p.Name), err)
					continue
				}
			}
			inst := "f"
			if iv, ok := installed[p.Name]; ok && iv == v {
				inst = "t"
			}
			rows = append(rows, []*string{strp(p.Name), strp(v), strp(inst),
				strp(showSourcePgverbs), showRequirements(pv.Depends), showOrNull(pv.Comment)})
		}
	}
	sql := `SELECT name, version, installed, pg_catalog.array_to_string(requires, ', '), comment FROM pg_catalog.pg_available_extension_versions`
	var args []*string
	if name != "" {
		sql += ` WHERE name = $1`
		args = append(args, &name)
	}
	server, err := queryRows(c, 5, sql, args...)
	if err != nil {
		return nil, err
	}
	for _, v := range server {
		rows = append(rows, []*string{showText(v[0]), showText(v[1]), showText(v[2]),
			strp(showSourceServer), showText(v[3]), showText(v[4])})
	}
	if len(rows) == 0 && name != "" {
		return nil, notFound
	}
	showSortRows(rows, 0, 3, 1)
	return rows, nil
}

// showUpdatePaths is SHOW EXTENSION UPDATE PATHS name.
type showUpdatePaths struct{}

func (showUpdatePaths) words() []string                     { return []string{"EXTENSION", "UPDATE", "PATHS"} }
func (showUpdatePaths) takesName() (allowed, required bool) { return true, true }

func (showUpdatePaths) columns() []Column {
	return []Column{{"source", pgwire.TextOID}, {"target", pgwire.TextOID}, {"path", pgwire.TextOID}}
}

// rows lists the update paths of package name, or else of the server's
// extension.
func (showUpdatePaths) rows(c Conn, repo *extension.Repo, name string) ([][]*string, error) {
	p, err := showLoad(repo, name)
	if err == nil {
		paths, err := repo.UpdatePaths(p)
		if err != nil {
			return nil, err
		}
		rows := make([][]*string, 0, len(paths))
		for _, vp := range paths {
			var path *string
			if vp.Path != nil {
				path = strp(strings.Join(vp.Path, "--"))
			}
			rows = append(rows, []*string{strp(vp.Source), strp(vp.Target), path})
		}
		return rows, nil
	}
	if !errors.Is(err, extension.ErrNotFound) {
		return nil, err
	}
	// pg_extension_update_paths() fails for an extension the server lacks,
	// and before PostgreSQL 16 with a message that shows the server's file
	// system; ask first.
	res, qerr := c.Exec(`SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = $1`, &name)
	if qerr != nil {
		return nil, qerr
	}
	if len(res.Rows) == 0 {
		return nil, err
	}
	server, err := queryRows(c, 3, `SELECT source, target, path FROM pg_catalog.pg_extension_update_paths($1)`, &name)
	if err != nil {
		return nil, err
	}
	rows := make([][]*string, 0, len(server))
	for _, v := range server {
		rows = append(rows, []*string{showText(v[0]), showText(v[1]), showText(v[2])})
	}
	// The server lists versions in the order it finds the scripts on disk;
	// sort as Repo.UpdatePaths does.
	sort.SliceStable(rows, func(i, j int) bool {
		if c := showCompareVersions(rows[i][0], rows[j][0]); c != 0 {
			return c < 0
		}
		return showCompareVersions(rows[i][1], rows[j][1]) < 0
	})
	return rows, nil
}

// showLoad loads package name, failing with an error that wraps
// extension.ErrNotFound when the repository does not have it, including
// names no package can have (which the server may still offer) and a
// missing extensions directory.
func showLoad(repo *extension.Repo, name string) (*extension.Package, error) {
	if extension.ValidName(name) != nil || showMissingDir(repo) {
		// Wraps extension.ErrNotFound like the repository's own.
		return nil, pgerr.New(pgerr.UndefinedObject, "extension %q is not available", name).WithCause(extension.ErrNotFound)
	}
	return repo.Load(name)
}

// showMissingDir reports whether the extensions directory does not exist.
func showMissingDir(repo *extension.Repo) bool {
	_, err := repo.Names()
	var pe *pgerr.Error
	return errors.As(err, &pe) && pe.Code == pgerr.UndefinedFile
}

// showPackages loads every package of the repository at its default
// version. A package that fails to load is left out with a WARNING, so that
// one broken package does not hide the others; a missing extensions
// directory holds no packages, as PostgreSQL treats a missing extension
// directory.
func showPackages(c Conn, repo *extension.Repo) ([]*extension.Package, error) {
	names, err := repo.Names()
	if err != nil {
		if showMissingDir(repo) {
			return nil, nil
		}
		return nil, err
	}
	pkgs := make([]*extension.Package, 0, len(names))
	for _, n := range names {
		p, err := repo.Load(n)
		if err != nil {
			showWarnLeftOut(c, fmt.Sprintf("extension %q", n), err)
			continue
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// showWarnLeftOut tells the client that what is left out of a listing, and
// why.
func showWarnLeftOut(c Conn, what string, err error) {
	msg, detail := err.Error(), ""
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		msg, detail = pe.Message, pe.Detail
	}
	c.Notice("WARNING", what+" is left out: "+msg, detail)
}

// showInstalled returns the version of each extension recorded in
// pgverbs.extensions, which does not exist before the first INSTALL
// EXTENSION in the database.
func showInstalled(c Conn) (map[string]string, error) {
	out := map[string]string{}
	exists, err := catalogExists(c)
	if err != nil || !exists {
		return out, err
	}
	rows, err := queryRows(c, 2, `SELECT name, version FROM pgverbs.extensions`)
	if err != nil {
		return nil, err
	}
	for _, v := range rows {
		out[string(v[0])] = string(v[1])
	}
	return out, nil
}

// requirements renders requirements as a control file writes them,
// "bar (>= 1.1), baz", or NULL when there are none, as PostgreSQL shows
// an extension without requires.
func showRequirements(reqs []extension.Requirement) *string {
	if len(reqs) == 0 {
		return nil
	}
	parts := make([]string, len(reqs))
	for i, r := range reqs {
		parts[i] = r.String()
	}
	return strp(strings.Join(parts, ", "))
}

// showOrNull is s, or NULL when s is empty.
func showOrNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// showText converts a value of a Result row.
func showText(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// showSortRows orders rows by the name column, byte-wise as PostgreSQL sorts
// the name type, then the packages before the server's extensions (the
// source column), then, when versionCol is not negative, by version.
func showSortRows(rows [][]*string, nameCol, sourceCol, versionCol int) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if x, y := showDeref(a[nameCol]), showDeref(b[nameCol]); x != y {
			return x < y
		}
		if x, y := showDeref(a[sourceCol]), showDeref(b[sourceCol]); x != y {
			return x == showSourcePgverbs
		}
		return versionCol >= 0 && showCompareVersions(a[versionCol], b[versionCol]) < 0
	})
}

// showCompareVersions orders versions with extension.CompareVersions, then
// byte-wise, so that versions it holds equal (1.0, 1.0.0) keep a fixed
// order; NULL comes last.
func showCompareVersions(a, b *string) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	if c := extension.CompareVersions(*a, *b); c != 0 {
		return c
	}
	return strings.Compare(*a, *b)
}

func showDeref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
