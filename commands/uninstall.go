package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/pgverbs/pgverbs/extension"
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
	rm, err := extension.PlanUninstall(st.Names, installed, ss.installed, st.IfExists, st.Cascade)
	if rm != nil {
		for _, n := range rm.Notes {
			c.Notice("NOTICE", n, "")
		}
	}
	if err != nil {
		return nil, err
	}
	if rm.Empty() {
		return done, nil
	}
	saved, err := saveSettings(c)
	if err != nil {
		return nil, err
	}
	steps := make([]uninstallStep, 0, len(rm.Packages))
	for _, name := range rm.Packages {
		s, err := prepareUninstall(repo, name, installed[name].Version, schemas[name], ss.owner, saved.quoteAll)
		if err != nil {
			return nil, err
		}
		steps = append(steps, s)
	}
	for _, s := range steps {
		if rm.Cascaded[s.name] {
			c.Notice("NOTICE", fmt.Sprintf("uninstall cascades to extension %q", s.name), "")
		}
		if err := removePackage(c, s, schemas[s.name], saved, st.Cascade); err != nil {
			return nil, err
		}
	}
	for _, name := range rm.Server {
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
