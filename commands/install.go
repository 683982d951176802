package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Install is the INSTALL EXTENSION command.
type Install struct {
	extContext
	// preferPackages makes a package win over a server extension of the
	// same name (config extension_collision: package).
	preferPackages bool
}

// NewInstall returns INSTALL EXTENSION over the packages in repo.
// preferPackages decides name collisions with server extensions.
func NewInstall(repo *extension.Repo, preferPackages bool) *Install {
	return &Install{extContext{repo}, preferPackages}
}

// Name implements Command.
func (*Install) Name() string { return "INSTALL EXTENSION" }

// Keywords implements Command.
func (*Install) Keywords() []string { return []string{"INSTALL", "EXTENSION"} }

// Parse implements Parser.
func (i *Install) Parse(sql string) (Prepared, error) {
	st, err := ParseInstall(sql)
	if err != nil {
		return nil, err
	}
	if err := extension.ValidName(st.Name); err != nil {
		return nil, err
	}
	return &installRun{i, st}, nil
}

type installRun struct {
	cmd *Install
	st  *InstallStmt
}

func (*installRun) Columns() []Column { return nil }

func (r *installRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	st, repo := r.st, r.cmd.repo
	done := &Outcome{Tag: "INSTALL EXTENSION"}
	state, err := loadState(c, false)
	if err != nil {
		return nil, err
	}
	ss := state.server
	if inst, ok := state.installed[st.Name]; ok && st.Version != "" && extension.CompareVersions(st.Version, inst.Version) != 0 {
		return upgrade(c, repo, state, st.Name, inst.Version, st.Version, done)
	}
	env := extension.Env{Installed: state.installed, ServerInstalled: ss.installed, ServerAvailable: ss.available, PreferPackages: r.cmd.preferPackages}
	plan, err := extension.ResolveEnv(repo, st.Name, st.Version, env, st.Cascade)
	if err != nil {
		if errors.Is(err, extension.ErrAlreadyInstalled) && st.IfNotExists {
			c.Notice("NOTICE", fmt.Sprintf("extension %q already exists, skipping", st.Name), "")
			return done, nil
		}
		return nil, err
	}
	for _, n := range plan.Notes {
		c.Notice("NOTICE", n, "")
	}
	saved, err := saveSettings(c)
	if err != nil {
		return nil, err
	}
	// Read and check every script of every step before anything runs.
	steps := make([]preparedStep, 0, len(plan.Actions))
	planned := map[string]string{}
	for _, a := range plan.Actions {
		ps := preparedStep{Step: a}
		if a.Pkg != nil {
			if err := r.prepareStep(c, &ps, state, planned, saved.quoteAll); err != nil {
				return nil, err
			}
			planned[a.Pkg.Name] = ps.schema
		}
		steps = append(steps, ps)
	}
	for _, ps := range steps {
		if ps.Name() != st.Name {
			c.Notice("NOTICE", fmt.Sprintf("installing required extension %q", ps.Name()), "")
		}
		if ps.Server != "" {
			if err := createServerExtension(c, ps.Server, st.Schema, ps.Version, ps.Cascade); err != nil {
				return nil, err
			}
			continue
		}
		if err := installPackage(c, ps, saved); err != nil {
			return nil, err
		}
	}
	return done, nil
}

// prepareStep decides a package step's schema, checks it can be installed
// over the wire by this role, and reads and prepares its scripts. planned
// holds the schemas of the packages the plan installs before it.
func (r *installRun) prepareStep(c Conn, ps *preparedStep, state *extState, planned map[string]string, quoteAll bool) error {
	pkg, repo, st, ss := ps.Pkg, r.cmd.repo, r.st, state.server
	needs, err := repo.NeedsLibrary(pkg, ps.Version)
	if err != nil {
		return err
	}
	if needs {
		e := pgerr.New(pgerr.FeatureNotSupported, "extension %q needs a shared library and cannot be installed over the wire", pkg.Name)
		e.Detail = "Its scripts refer to MODULE_PATHNAME, $libdir or a LANGUAGE C function, which only a library installed on the server provides."
		e.Hint = "Install the extension's package on the server; INSTALL EXTENSION then runs CREATE EXTENSION."
		return e
	}
	if pkg.Layout == extension.LayoutNative && pkg.Superuser && !pkg.Trusted && !ss.superuser {
		e := pgerr.New(pgerr.InsufficientPrivilege, "permission denied to create extension %q", pkg.Name)
		e.Hint = "Must be superuser to create this extension."
		return e
	}
	schema, err := pkg.InstallSchema(st.Schema, pkg.Name != st.Name || st.Cascade)
	if err != nil {
		return err
	}
	if pkg.Schema == "" {
		if schema, err = targetSchema(c, schema); err != nil {
			return err
		}
	}
	ps.schema = schema
	var reqSchemas map[string]string
	reqSchemas, ps.required = requiredSchemas(pkg.Requires, state.schemas, ss.schemas, planned)
	ps.files, ps.sum, err = prepareScripts(repo, pkg, ps.Scripts, func(at *extension.Package) extension.ScriptOptions {
		return scriptOptions(at, schema, ss.owner, reqSchemas, quoteAll)
	})
	return err
}

// targetSchema checks the SCHEMA option, or picks the first schema of the
// search path as CREATE EXTENSION does.
func targetSchema(c Conn, schema string) (string, error) {
	if schema == "" {
		r, err := queryRow(c, 1, `SELECT pg_catalog.current_schema()`)
		if err != nil {
			return "", err
		}
		if r[0] == nil {
			return "", pgerr.New(pgerr.InvalidSchemaName, "no schema has been selected to create in")
		}
		return string(r[0]), nil
	}
	res, err := c.Exec(`SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1`, &schema)
	if err != nil {
		return "", err
	}
	if len(res.Rows) == 0 {
		return "", pgerr.New(pgerr.InvalidSchemaName, "schema %q does not exist", schema)
	}
	return schema, nil
}

// installPackage runs one prepared package step and records it.
func installPackage(c Conn, ps preparedStep, saved *savedSettings) error {
	pkg := ps.Pkg
	if pkg.Schema != "" {
		// Created only when missing, as CREATE EXTENSION does: CREATE
		// SCHEMA IF NOT EXISTS refuses reserved names such as pg_catalog
		// even when the schema exists.
		if err := execFormatted(c, `SELECT pg_catalog.format('CREATE SCHEMA %I', $1::text) WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`, &ps.schema); err != nil {
			return err
		}
	}
	created, err := runTracked(c, pkg.Name, ps, saved)
	if err != nil {
		return err
	}
	_, err = c.Exec(`INSERT INTO pgverbs.extensions (name, version, schema, requires, script_sha256) VALUES ($1, $2, $3, $4::text[], $5)`,
		&pkg.Name, &ps.Version, &ps.schema, strp(arrayLiteral(pkg.Requires)), &ps.sum)
	if err != nil {
		return err
	}
	if err := created(); err != nil {
		return err
	}
	for _, set := range pkg.Settings {
		if err := databaseSetting(c, set.Name, &set.Value); err != nil {
			return err
		}
	}
	return nil
}

// createServerExtension runs CREATE EXTENSION for an extension the server
// provides itself.
func createServerExtension(c Conn, name, schema, version string, cascade bool) error {
	return execFormatted(c, `SELECT pg_catalog.format('CREATE EXTENSION %I', $1::text)
	|| CASE WHEN $2::text <> '' THEN pg_catalog.format(' SCHEMA %I', $2::text) ELSE '' END
	|| CASE WHEN $3::text <> '' THEN pg_catalog.format(' VERSION %L', $3::text) ELSE '' END
	|| CASE WHEN $4::bool THEN ' CASCADE' ELSE '' END`, &name, &schema, &version, strp(strconv.FormatBool(cascade)))
}
