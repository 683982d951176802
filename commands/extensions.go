package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// The catalog: installed state lives in the database itself, readable with
// plain SQL by any tool.
const (
	catalogDDL = `CREATE SCHEMA IF NOT EXISTS pgverbs;
CREATE TABLE IF NOT EXISTS pgverbs.extensions (
    name          text PRIMARY KEY,
    version       text NOT NULL,
    schema        text NOT NULL,
    requires      text[] NOT NULL DEFAULT '{}',
    installed_by  text NOT NULL DEFAULT current_user,
    installed_at  timestamptz NOT NULL DEFAULT now(),
    script_sha256 text NOT NULL
);
CREATE TABLE IF NOT EXISTS pgverbs.extension_objects (
    extension    text NOT NULL REFERENCES pgverbs.extensions (name) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED,
    classid      text NOT NULL,
    objid        oid NOT NULL,
    type         text NOT NULL,
    identity     text NOT NULL,
    object_names text[] NOT NULL,
    object_args  text[] NOT NULL,
    PRIMARY KEY (classid, objid)
);
GRANT USAGE ON SCHEMA pgverbs TO PUBLIC;
GRANT SELECT ON pgverbs.extensions, pgverbs.extension_objects TO PUBLIC;
COMMENT ON TABLE pgverbs.extensions IS 'extensions installed by pgverbs INSTALL EXTENSION'`

	// lockSQL serialises every pgverbs extension change in the database,
	// from any session or proxy, until the end of the transaction. The key
	// is "pgverbs!" as a bigint.
	lockSQL = `SELECT pg_catalog.pg_advisory_xact_lock(8099861380519949089)`
)

// session settings the scripts run with, saved and restored around them so
// that a command inside the client's transaction leaves them as they were.
var scriptSettings = []string{"search_path", "check_function_bodies", "client_min_messages"}

// extContext is what both extension commands share.
type extContext struct {
	repo *extension.Repo
}

// prepareCatalog takes the lock and creates the catalog on first use.
func prepareCatalog(ctx context.Context, c Conn) error {
	if _, err := c.Exec(ctx, lockSQL); err != nil {
		return err
	}
	res, err := c.Exec(ctx, `SELECT pg_catalog.to_regclass('pgverbs.extensions') IS NOT NULL AND pg_catalog.to_regclass('pgverbs.extension_objects') IS NOT NULL`)
	if err != nil {
		return err
	}
	if string(res.Rows[0][0]) == "t" {
		return nil
	}
	for _, stmt := range strings.Split(catalogDDL, ";\n") {
		if _, err := c.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// installedExtensions reads the catalog.
func installedExtensions(ctx context.Context, c Conn) (map[string]extension.Installed, map[string]string, error) {
	res, err := c.Exec(ctx, `SELECT name, version, schema, pg_catalog.array_to_string(requires, ',') FROM pgverbs.extensions`)
	if err != nil {
		return nil, nil, err
	}
	inst := make(map[string]extension.Installed, len(res.Rows))
	schemas := make(map[string]string, len(res.Rows))
	for _, r := range res.Rows {
		var req []string
		if len(r[3]) > 0 {
			req = strings.Split(string(r[3]), ",")
		}
		inst[string(r[0])] = extension.Installed{Name: string(r[0]), Version: string(r[1]), Requires: req}
		schemas[string(r[0])] = string(r[2])
	}
	return inst, schemas, nil
}

// saveSettings returns the current values of the script settings.
func saveSettings(ctx context.Context, c Conn) ([]*string, error) {
	res, err := c.Exec(ctx, `SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('check_function_bodies'), pg_catalog.current_setting('client_min_messages')`)
	if err != nil {
		return nil, err
	}
	vals := make([]*string, len(scriptSettings))
	for i, v := range res.Rows[0] {
		s := string(v)
		vals[i] = &s
	}
	return vals, nil
}

// setSettings sets the script settings transaction-locally, so they vanish
// with the transaction whatever happens.
func setSettings(ctx context.Context, c Conn, vals []*string) error {
	_, err := c.Exec(ctx, `SELECT pg_catalog.set_config('search_path', $1, true), pg_catalog.set_config('check_function_bodies', $2, true), pg_catalog.set_config('client_min_messages', $3, true)`, vals...)
	return err
}

func strp(s string) *string { return &s }

// quoteIdent double-quotes an identifier for SQL text.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// arrayLiteral renders names as a text[] literal.
func arrayLiteral(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(n) + `"`
	}
	return "{" + strings.Join(q, ",") + "}"
}

// settingName is what a foo.conf setting name may be: a dotted identifier.
var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$`)

// databaseSetting runs ALTER DATABASE <current> SET/RESET for one setting,
// built by the server's format() so that quoting is the server's own.
func databaseSetting(ctx context.Context, c Conn, name string, value *string) error {
	if !settingName.MatchString(name) {
		return pgerr.New(pgerr.InvalidParameterValue, "invalid setting name %q in extension configuration", name)
	}
	var res *Result
	var err error
	if value == nil {
		res, err = c.Exec(ctx, `SELECT pg_catalog.format('ALTER DATABASE %I RESET %s', pg_catalog.current_database(), $1::text)`, &name)
	} else {
		res, err = c.Exec(ctx, `SELECT pg_catalog.format('ALTER DATABASE %I SET %s = %L', pg_catalog.current_database(), $1::text, $2::text)`, &name, value)
	}
	if err != nil {
		return err
	}
	_, err = c.Exec(ctx, string(res.Rows[0][0]))
	return err
}

// runScript runs a package script's statements, pipelined. A failing
// statement's error names the script and line in its CONTEXT.
func runScript(ctx context.Context, c Conn, file string, stmts []extension.Statement) error {
	sqls := make([]string, len(stmts))
	for i, st := range stmts {
		sqls[i] = st.SQL
	}
	failed, err := c.ExecBatch(ctx, sqls)
	if err != nil {
		var se *ServerError
		if errors.As(err, &se) && failed >= 0 && failed < len(stmts) {
			return se.WithContext(fmt.Sprintf("extension script %s, line %d", file, stmts[failed].Line))
		}
		return err
	}
	return nil
}

// Install is the INSTALL EXTENSION command.
type Install struct{ extContext }

// NewInstall returns INSTALL EXTENSION over the packages in repo.
func NewInstall(repo *extension.Repo) *Install { return &Install{extContext{repo}} }

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
	if err := prepareCatalog(ctx, c); err != nil {
		return nil, err
	}
	installed, _, err := installedExtensions(ctx, c)
	if err != nil {
		return nil, err
	}
	if _, ok := installed[st.Name]; ok && st.IfNotExists {
		c.Notice("NOTICE", fmt.Sprintf("extension %q already exists, skipping", st.Name), "")
		return done, nil
	}
	plan, err := extension.Resolve(repo, st.Name, st.Version, installed, st.Cascade)
	if err != nil {
		return nil, err
	}
	schema, err := targetSchema(ctx, c, st.Schema)
	if err != nil {
		return nil, err
	}
	// Load and check every script before anything runs.
	scripts := make([][]extension.Statement, len(plan.Steps))
	sums := make([]string, len(plan.Steps))
	for i, pkg := range plan.Steps {
		text, err := repo.Script(pkg, "install")
		if err != nil {
			return nil, err
		}
		if scripts[i], err = extension.PrepareScript(pkg.Name+"/install.sql", text, schema); err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(text))
		sums[i] = hex.EncodeToString(sum[:])
	}
	saved, err := saveSettings(ctx, c)
	if err != nil {
		return nil, err
	}
	scriptEnv := []*string{strp(quoteIdent(schema) + ", pg_temp"), strp("off"), strp("warning")}
	for i, pkg := range plan.Steps {
		if pkg.Name != st.Name {
			c.Notice("NOTICE", fmt.Sprintf("installing required extension %q", pkg.Name), "")
		}
		before, err := snapshotObjects(ctx, c)
		if err != nil {
			return nil, err
		}
		if err := setSettings(ctx, c, scriptEnv); err != nil {
			return nil, err
		}
		if err := runScript(ctx, c, pkg.Name+"/install.sql", scripts[i]); err != nil {
			return nil, err
		}
		if err := setSettings(ctx, c, saved); err != nil {
			return nil, err
		}
		after, err := snapshotObjects(ctx, c)
		if err != nil {
			return nil, err
		}
		req := make([]string, len(pkg.Depends))
		for j, d := range pkg.Depends {
			req[j] = d.Name
		}
		_, err = c.Exec(ctx, `INSERT INTO pgverbs.extensions (name, version, schema, requires, script_sha256) VALUES ($1, $2, $3, $4::text[], $5)`,
			&pkg.Name, &pkg.Version, &schema, strp(arrayLiteral(req)), &sums[i])
		if err != nil {
			return nil, err
		}
		if err := recordNewObjects(ctx, c, pkg.Name, before, after); err != nil {
			return nil, err
		}
		for _, set := range pkg.Settings {
			if err := databaseSetting(ctx, c, set.Name, &set.Value); err != nil {
				return nil, err
			}
		}
	}
	return done, nil
}

// targetSchema checks the SCHEMA option, or picks the first schema of the
// search path as CREATE EXTENSION does.
func targetSchema(ctx context.Context, c Conn, schema string) (string, error) {
	if schema == "" {
		res, err := c.Exec(ctx, `SELECT pg_catalog.current_schema()`)
		if err != nil {
			return "", err
		}
		if res.Rows[0][0] == nil {
			return "", pgerr.New(pgerr.InvalidSchemaName, "no schema has been selected to create in")
		}
		return string(res.Rows[0][0]), nil
	}
	res, err := c.Exec(ctx, `SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1`, &schema)
	if err != nil {
		return "", err
	}
	if len(res.Rows) == 0 {
		return "", pgerr.New(pgerr.InvalidSchemaName, "schema %q does not exist", schema)
	}
	return schema, nil
}

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

func (r *uninstallRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	st, repo := r.st, r.cmd.repo
	done := &Outcome{Tag: "UNINSTALL EXTENSION"}
	if err := prepareCatalog(ctx, c); err != nil {
		return nil, err
	}
	installed, schemas, err := installedExtensions(ctx, c)
	if err != nil {
		return nil, err
	}
	targets := map[string]bool{}
	for _, name := range st.Names {
		if _, ok := installed[name]; ok {
			targets[name] = true
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
	// Everything that depends on a target, directly or not.
	remove := map[string]bool{}
	var blocked []string
	for name := range targets {
		remove[name] = true
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
	order := removalOrder(remove, installed)
	type step struct {
		pkg   *extension.Package
		stmts []extension.Statement
	}
	steps := make([]step, 0, len(order))
	for _, name := range order {
		pkg, err := repo.Load(name)
		if err != nil {
			return nil, err
		}
		var stmts []extension.Statement
		if pkg.HasUninstall {
			text, err := repo.Script(pkg, "uninstall")
			if err != nil {
				return nil, err
			}
			if stmts, err = extension.PrepareScript(name+"/uninstall.sql", text, schemas[name]); err != nil {
				return nil, err
			}
		}
		steps = append(steps, step{pkg, stmts})
	}
	saved, err := saveSettings(ctx, c)
	if err != nil {
		return nil, err
	}
	for _, s := range steps {
		name := s.pkg.Name
		if !targets[name] {
			c.Notice("NOTICE", fmt.Sprintf("uninstall cascades to extension %q", name), "")
		}
		env := []*string{strp(quoteIdent(schemas[name]) + ", pg_temp"), strp("off"), strp("warning")}
		if err := setSettings(ctx, c, env); err != nil {
			return nil, err
		}
		if s.pkg.HasUninstall {
			if err := runScript(ctx, c, name+"/uninstall.sql", s.stmts); err != nil {
				return nil, err
			}
		} else if err := dropTrackedObjects(ctx, c, name, st.Cascade); err != nil {
			return nil, err
		}
		if err := setSettings(ctx, c, saved); err != nil {
			return nil, err
		}
		if err := checkNoObjectsLeft(ctx, c, name); err != nil {
			return nil, err
		}
		if _, err := c.Exec(ctx, `DELETE FROM pgverbs.extensions WHERE name = $1`, &name); err != nil {
			return nil, err
		}
		for _, set := range s.pkg.Settings {
			if err := databaseSetting(ctx, c, set.Name, nil); err != nil {
				return nil, err
			}
		}
	}
	return done, nil
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
