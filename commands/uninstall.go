package commands

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Uninstall is the UNINSTALL EXTENSION command.
type Uninstall struct{ extContext }

// NewUninstall returns UNINSTALL EXTENSION over the packages in repo.
func NewUninstall(repo *extension.Repo) *Uninstall { return &Uninstall{extContext{repo}} }

// Name implements Command.
func (*Uninstall) Name() string { return "UNINSTALL EXTENSION" }

// Keywords implements Command.
func (*Uninstall) Keywords() []string { return []string{"UNINSTALL", "EXTENSION"} }

// Parse implements Parser.
func (u *Uninstall) Parse(sql string) (Prepared, error) {
	st, err := ParseUninstall(sql)
	if err != nil {
		return nil, err
	}
	return &uninstallRun{u, st}, nil
}

type uninstallRun struct {
	cmd *Uninstall
	st  *UninstallStmt
}

func (*uninstallRun) Columns() []Column { return nil }

// uninstallStep is one package to remove, with its uninstall script read
// and prepared.
type uninstallStep struct {
	name  string
	pkg   *extension.Package // nil when the package left the directory
	files []preparedFile     // the uninstall script; none: drop the recorded objects
}

func (r *uninstallRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	st, repo := r.st, r.cmd.repo
	done := &Outcome{Tag: "UNINSTALL EXTENSION"}
	state, err := loadState(c, true)
	if err != nil {
		return nil, err
	}
	installed, schemas, ss := state.installed, state.schemas, state.server
	targets := map[string]bool{}
	var server []string // server-native targets: DROP EXTENSION
	for _, name := range st.Names {
		if _, ok := installed[name]; ok {
			targets[name] = true
			continue
		}
		if _, ok := ss.installed[name]; ok {
			targets[name] = true
			server = append(server, name)
			continue
		}
		if !st.IfExists {
			return nil, pgerr.New(pgerr.UndefinedObject, "extension %q does not exist", name)
		}
		c.Notice("NOTICE", fmt.Sprintf("extension %q does not exist, skipping", name), "")
	}
	if len(targets) == 0 {
		return done, nil
	}
	// Everything pgverbs installed that depends on a target, directly or
	// not (a package may require a server extension too).
	remove := map[string]bool{}
	var blocked []string
	for name := range targets {
		if _, ok := installed[name]; ok {
			remove[name] = true
		}
		for _, dep := range extension.DependentsOf(name, installed) {
			if !targets[dep] {
				blocked = append(blocked, fmt.Sprintf("extension %q depends on extension %q", dep, name))
			}
			remove[dep] = true
		}
	}
	if len(blocked) > 0 && !st.Cascade {
		sort.Strings(blocked)
		e := pgerr.New(pgerr.DependentObjectsStillExist, "cannot uninstall extension %q because other objects depend on it", st.Names[0])
		e.Detail = strings.Join(blocked, "\n")
		e.Hint = "Use UNINSTALL EXTENSION ... CASCADE to uninstall the dependent extensions too."
		return nil, e
	}
	saved, err := saveSettings(c)
	if err != nil {
		return nil, err
	}
	order := removalOrder(remove, installed)
	steps := make([]uninstallStep, 0, len(order))
	for _, name := range order {
		s, err := prepareUninstall(repo, name, installed[name].Version, schemas[name], ss.owner, saved.quoteAll)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	for _, s := range steps {
		if !targets[s.name] {
			c.Notice("NOTICE", fmt.Sprintf("uninstall cascades to extension %q", s.name), "")
		}
		if err := removePackage(c, s, schemas[s.name], saved, st.Cascade); err != nil {
			return nil, err
		}
	}
	for _, name := range server {
		if err := execFormatted(c, `SELECT pg_catalog.format('DROP EXTENSION %I', $1::text) || CASE WHEN $2::bool THEN ' CASCADE' ELSE '' END`,
			&name, strp(strconv.FormatBool(st.Cascade))); err != nil {
			return nil, err
		}
	}
	return done, nil
}

// prepareUninstall loads package name at its installed version and reads
// and prepares its uninstall script, if it has one.
func prepareUninstall(repo *extension.Repo, name, version, schema, owner string, quoteAll bool) (uninstallStep, error) {
	s := uninstallStep{name: name}
	pkg, err := repo.LoadVersion(name, version)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		// The package left the directory: its recorded objects are
		// still known.
		return s, nil
	case err != nil:
		return s, err
	}
	s.pkg = pkg
	// Only the pgverbs layout has uninstall scripts; a native package is
	// removed by its recorded objects, as DROP EXTENSION removes its
	// members.
	if pkg.Layout == extension.LayoutNative || !pkg.HasUninstall {
		return s, nil
	}
	f, err := repo.UninstallScript(pkg)
	if err != nil {
		return s, err
	}
	s.files, _, err = prepareScripts(repo, pkg, []extension.ScriptFile{f}, func(*extension.Package) extension.ScriptOptions {
		return extension.ScriptOptions{Extension: name, Schema: schema, Owner: owner, QuoteAll: quoteAll}
	})
	return s, err
}

// removePackage runs one uninstall step, in schema, and forgets the
// package.
func removePackage(c Conn, s uninstallStep, schema string, saved *savedSettings, cascade bool) error {
	name := s.name
	changed, err := saved.enter(c, scriptPath(schema, nil, saved.quoteAll), "")
	if err != nil {
		return err
	}
	if len(s.files) > 0 {
		for _, f := range s.files {
			if err := runScript(c, f.name, f.stmts, nil); err != nil {
				return err
			}
		}
	} else if err := dropTrackedObjects(c, name, cascade); err != nil {
		return err
	}
	if err := saved.leave(c, changed, nil); err != nil {
		return err
	}
	if _, err := c.Exec(`DELETE FROM pgverbs.extension_config WHERE extension = $1`, &name); err != nil {
		return err
	}
	if err := checkNoObjectsLeft(c, name); err != nil {
		return err
	}
	if _, err := c.Exec(`DELETE FROM pgverbs.extensions WHERE name = $1`, &name); err != nil {
		return err
	}
	if s.pkg != nil {
		for _, set := range s.pkg.Settings {
			if err := databaseSetting(c, set.Name, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// removalOrder orders names so that each extension comes before those it
// requires.
func removalOrder(names map[string]bool, installed map[string]extension.Installed) []string {
	var order []string
	left := make(map[string]bool, len(names))
	for n := range names {
		left[n] = true
	}
	for len(left) > 0 {
		var ready []string
		for n := range left {
			needed := false
			for m := range left {
				for _, r := range installed[m].Requires {
					if r == n && m != n {
						needed = true
					}
				}
			}
			if !needed {
				ready = append(ready, n)
			}
		}
		if len(ready) == 0 {
			// A cycle cannot be installed, but never loop forever.
			for n := range left {
				ready = append(ready, n)
			}
		}
		sort.Strings(ready)
		for _, n := range ready {
			order = append(order, n)
			delete(left, n)
		}
	}
	return order
}
