package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
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
CREATE OR REPLACE VIEW pgverbs.all_extensions AS
    SELECT name, version, schema, requires, 'pgverbs'::text AS source, installed_by, installed_at
      FROM pgverbs.extensions
    UNION ALL
    SELECT e.extname::text, e.extversion, n.nspname::text,
           ARRAY(SELECT r.extname::text FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension r ON r.oid = d.refobjid
                 WHERE d.classid = 'pg_catalog.pg_extension'::regclass AND d.objid = e.oid
                   AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'n'),
           'server'::text, pg_catalog.pg_get_userbyid(e.extowner)::text, NULL::timestamptz
      FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname NOT IN (SELECT name FROM pgverbs.extensions);
CREATE TABLE IF NOT EXISTS pgverbs.extension_config (
    extension text NOT NULL REFERENCES pgverbs.extensions (name) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED,
    tab       regclass PRIMARY KEY,
    filter    text NOT NULL
);
GRANT USAGE ON SCHEMA pgverbs TO PUBLIC;
GRANT SELECT ON pgverbs.extensions, pgverbs.extension_objects, pgverbs.extension_config, pgverbs.all_extensions TO PUBLIC;
COMMENT ON TABLE pgverbs.extensions IS 'extensions installed by pgverbs INSTALL EXTENSION';
COMMENT ON TABLE pgverbs.extension_config IS 'configuration tables of pgverbs extensions, as pg_extension_config_dump marks them (pg_extension.extconfig)'`

	// configDumpDDL is what scripts' pg_extension_config_dump calls are
	// rewritten to call (extension.ConfigDumpFunction): it records the
	// table for the extension being installed, which pgverbs names in the
	// transaction-local setting pgverbs.installing. PostgreSQL's own checks
	// that the table is a member of the extension; pgverbs knows the
	// members only after the script, and checks then (checkConfigTables).
	configDumpDDL = `CREATE OR REPLACE FUNCTION pgverbs.extension_config_dump(regclass, text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $pgverbs$
DECLARE
    ext text := pg_catalog.current_setting('pgverbs.installing', true);
BEGIN
    IF ext IS NULL OR ext = '' THEN
        RAISE EXCEPTION 'pg_extension_config_dump() can only be called from an SQL script executed by INSTALL EXTENSION'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO pgverbs.extension_config (extension, tab, filter) VALUES (ext, $1, COALESCE($2, ''))
        ON CONFLICT (tab) DO UPDATE SET extension = excluded.extension, filter = excluded.filter;
END
$pgverbs$`

	// resolveObjectDDL finds an object by the address pgverbs recorded
	// (pg_identify_object_as_address), NULL when there is none: after a
	// pg_dump and restore every OID has changed, and members are found
	// again by name.
	resolveObjectDDL = `CREATE OR REPLACE FUNCTION pgverbs.resolve_object(text, text[], text[]) RETURNS oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $pgverbs$
BEGIN
    RETURN (SELECT objid FROM pg_catalog.pg_get_object_address($1, $2, $3));
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$pgverbs$`

	// lockSQL serialises every pgverbs extension change in the database,
	// from any session or proxy, until the end of the transaction. The key
	// is "pgverbs!" as a bigint.
	lockSQL = `SELECT pg_catalog.pg_advisory_xact_lock(8099861380519949089)`
)

// extContext is what both extension commands share.
type extContext struct {
	repo *extension.Repo
}

// prepareCatalog takes the lock and creates the catalog on first use.
func prepareCatalog(c Conn) error {
	if _, err := c.Exec(lockSQL); err != nil {
		return err
	}
	// Every piece is checked, so that a catalog made by an older pgverbs
	// gets what it lacks (the DDL is idempotent).
	res, err := c.Exec(`SELECT pg_catalog.to_regclass('pgverbs.extensions') IS NOT NULL AND pg_catalog.to_regclass('pgverbs.extension_objects') IS NOT NULL
  AND pg_catalog.to_regclass('pgverbs.extension_config') IS NOT NULL AND pg_catalog.to_regclass('pgverbs.all_extensions') IS NOT NULL
  AND pg_catalog.to_regprocedure('pgverbs.extension_config_dump(regclass,text)') IS NOT NULL
  AND pg_catalog.to_regprocedure('pgverbs.resolve_object(text,text[],text[])') IS NOT NULL`)
	if err != nil {
		return err
	}
	if string(res.Rows[0][0]) == "t" {
		return nil
	}
	for _, stmt := range append(strings.Split(catalogDDL, ";\n"), configDumpDDL, resolveObjectDDL) {
		if _, err := c.Exec(stmt); err != nil {
			return err
		}
	}
	return nil
}

// installedExtensions reads the catalog.
func installedExtensions(c Conn) (map[string]extension.Installed, map[string]string, error) {
	res, err := c.Exec(`SELECT name, version, schema, pg_catalog.array_to_string(requires, ',') FROM pgverbs.extensions`)
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

func strp(s string) *string { return &s }

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
func databaseSetting(c Conn, name string, value *string) error {
	if !settingName.MatchString(name) {
		return pgerr.New(pgerr.InvalidParameterValue, "invalid setting name %q in extension configuration", name)
	}
	var res *Result
	var err error
	if value == nil {
		res, err = c.Exec(`SELECT pg_catalog.format('ALTER DATABASE %I RESET %s', pg_catalog.current_database(), $1::text)`, &name)
	} else {
		res, err = c.Exec(`SELECT pg_catalog.format('ALTER DATABASE %I SET %s = %L', pg_catalog.current_database(), $1::text, $2::text)`, &name, value)
	}
	if err != nil {
		return err
	}
	_, err = c.Exec(string(res.Rows[0][0]))
	return err
}

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

// serverState is what the server itself knows of extensions.
type serverState struct {
	installed map[string]string // name -> version (pg_extension)
	available map[string]string // name -> default_version
	schemas   map[string]string // name -> schema of installed ones
	owner     string            // current_user
	superuser bool
}

func readServerState(c Conn) (*serverState, error) {
	ss := &serverState{installed: map[string]string{}, available: map[string]string{}, schemas: map[string]string{}}
	res, err := c.Exec(`SELECT e.extname, e.extversion, n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace`)
	if err != nil {
		return nil, err
	}
	for _, r := range res.Rows {
		ss.installed[string(r[0])] = string(r[1])
		ss.schemas[string(r[0])] = string(r[2])
	}
	if res, err = c.Exec(`SELECT name, coalesce(default_version, '') FROM pg_catalog.pg_available_extensions`); err != nil {
		return nil, err
	}
	for _, r := range res.Rows {
		ss.available[string(r[0])] = string(r[1])
	}
	if res, err = c.Exec(`SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user`); err != nil {
		return nil, err
	}
	if len(res.Rows) > 0 {
		ss.owner, ss.superuser = string(res.Rows[0][0]), string(res.Rows[0][1]) == "t"
	}
	return ss, nil
}

// preparedStep is a plan step with everything read and checked.
type preparedStep struct {
	extension.Step
	schema   string
	required []string // schemas of required extensions, for search_path
	files    []preparedFile
	sum      string
}

type preparedFile struct {
	name  string
	stmts []extension.Statement
}

func (r *installRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	st, repo := r.st, r.cmd.repo
	done := &Outcome{Tag: "INSTALL EXTENSION"}
	if err := prepareCatalog(c); err != nil {
		return nil, err
	}
	installed, schemas, err := installedExtensions(c)
	if err != nil {
		return nil, err
	}
	ss, err := readServerState(c)
	if err != nil {
		return nil, err
	}
	if inst, ok := installed[st.Name]; ok && st.Version != "" && extension.CompareVersions(st.Version, inst.Version) != 0 {
		return upgrade(c, repo, st.Name, inst.Version, st.Version, schemas[st.Name], ss, done)
	}
	env := extension.Env{Installed: installed, ServerInstalled: ss.installed, ServerAvailable: ss.available, PreferPackages: r.cmd.preferPackages}
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
			if err := r.prepareStep(c, &ps, ss, schemas, planned, saved.quoteAll); err != nil {
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
// over the wire by this role, and reads and prepares its scripts.
func (r *installRun) prepareStep(c Conn, ps *preparedStep, ss *serverState, schemas, planned map[string]string, quoteAll bool) error {
	pkg, repo, st := ps.Pkg, r.cmd.repo, r.st
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
	reqSchemas := map[string]string{}
	for _, req := range pkg.Requires {
		for _, m := range []map[string]string{schemas, ss.schemas, planned} {
			if sc, ok := m[req]; ok {
				reqSchemas[req] = sc
				ps.required = append(ps.required, sc)
				break
			}
		}
	}
	h := sha256.New()
	for _, f := range ps.Scripts {
		text, err := repo.ReadScript(pkg, f)
		if err != nil {
			return err
		}
		h.Write([]byte(text))
		at := pkg
		if f.To != "" && f.To != pkg.Version {
			if at, err = repo.LoadVersion(pkg.Name, f.To); err != nil {
				return err
			}
		}
		stmts, err := extension.PrepareScriptOpts(f.Name, text, scriptOptions(at, schema, ss.owner, reqSchemas, quoteAll))
		if err != nil {
			return err
		}
		ps.files = append(ps.files, preparedFile{f.Name, stmts})
	}
	ps.sum = hex.EncodeToString(h.Sum(nil))
	return nil
}

// scriptOptions are the substitutions for a script of package version at.
func scriptOptions(at *extension.Package, schema, owner string, required map[string]string, quoteAll bool) extension.ScriptOptions {
	return extension.ScriptOptions{
		Extension: at.Name, Schema: schema, Owner: owner, RequiredSchemas: required, ModulePathname: at.ModulePathname,
		Relocatable: at.Layout == extension.LayoutNative && at.Relocatable, QuoteAll: quoteAll,
	}
}

// installPackage runs one prepared package step and records it.
func installPackage(c Conn, ps preparedStep, saved *savedSettings) error {
	pkg := ps.Pkg
	if pkg.Schema != "" {
		// Created only when missing, as CREATE EXTENSION does: CREATE
		// SCHEMA IF NOT EXISTS refuses reserved names such as pg_catalog
		// even when the schema exists.
		res, err := c.Exec(`SELECT pg_catalog.format('CREATE SCHEMA %I', $1::text) WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`, &ps.schema)
		if err != nil {
			return err
		}
		if len(res.Rows) == 1 {
			if _, err := c.Exec(string(res.Rows[0][0])); err != nil {
				return err
			}
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
// provides itself, the statement built by the server's format().
func createServerExtension(c Conn, name, schema, version string, cascade bool) error {
	cas := "f"
	if cascade {
		cas = "t"
	}
	res, err := c.Exec(`SELECT pg_catalog.format('CREATE EXTENSION %I', $1::text)
	|| CASE WHEN $2::text <> '' THEN pg_catalog.format(' SCHEMA %I', $2::text) ELSE '' END
	|| CASE WHEN $3::text <> '' THEN pg_catalog.format(' VERSION %L', $3::text) ELSE '' END
	|| CASE WHEN $4::bool THEN ' CASCADE' ELSE '' END`, &name, &schema, &version, &cas)
	if err != nil {
		return err
	}
	_, err = c.Exec(string(res.Rows[0][0]))
	return err
}

// upgrade moves an installed package from one version to another along
// its update path, in the current transaction, rechecking dependencies and
// conflicts against the new version first.
func upgrade(c Conn, repo *extension.Repo, name, from, to, schema string, ss *serverState, done *Outcome) (*Outcome, error) {
	if err := refreshObjects(c); err != nil {
		return nil, err
	}
	pkg, err := repo.LoadVersion(name, to)
	if err != nil {
		return nil, err
	}
	path, err := repo.UpdatePath(pkg, from, to)
	if err != nil {
		return nil, err
	}
	installed, schemas, err := installedExtensions(c)
	if err != nil {
		return nil, err
	}
	// Check the new version's requirements and conflicts as an install of
	// it would, with the extension itself set aside.
	others := make(map[string]extension.Installed, len(installed))
	for k, v := range installed {
		if k != name {
			others[k] = v
		}
	}
	env := extension.Env{Installed: others, ServerInstalled: ss.installed}
	if _, err := extension.ResolveEnv(repo, name, pkg.Version, env, false); err != nil {
		return nil, err
	}
	for _, inst := range installed {
		for _, r := range inst.Requires {
			if r == name {
				// A dependent's constraint on name may no longer hold; its
				// control file says which versions it accepts.
				dep, err := repo.LoadVersion(inst.Name, inst.Version)
				if err != nil {
					continue
				}
				for _, d := range dep.Depends {
					if d.Name == name && !d.Satisfied(pkg.Version) {
						return nil, pgerr.New(pgerr.InvalidParameterValue, "extension %q requires %s, which version %s does not satisfy", inst.Name, d.String(), pkg.Version)
					}
				}
			}
		}
	}
	reqSchemas := map[string]string{}
	var required []string
	for _, req := range pkg.Requires {
		for _, m := range []map[string]string{schemas, ss.schemas} {
			if sc, ok := m[req]; ok {
				reqSchemas[req] = sc
				required = append(required, sc)
				break
			}
		}
	}
	saved, err := saveSettings(c)
	if err != nil {
		return nil, err
	}
	ps := preparedStep{schema: schema, required: required}
	for _, f := range path {
		text, err := repo.ReadScript(pkg, f)
		if err != nil {
			return nil, err
		}
		at, err := repo.LoadVersion(name, f.To)
		if err != nil {
			return nil, err
		}
		stmts, err := extension.PrepareScriptOpts(f.Name, text, scriptOptions(at, schema, ss.owner, reqSchemas, saved.quoteAll))
		if err != nil {
			return nil, err
		}
		ps.files = append(ps.files, preparedFile{f.Name, stmts})
	}
	created, err := runTracked(c, name, ps, saved)
	if err != nil {
		return nil, err
	}
	if _, err := c.Exec(`UPDATE pgverbs.extensions SET version = $2, requires = $3::text[] WHERE name = $1`,
		&name, &pkg.Version, strp(arrayLiteral(pkg.Requires))); err != nil {
		return nil, err
	}
	if err := created(); err != nil {
		return nil, err
	}
	if err := forgetMissingObjects(c, name); err != nil {
		return nil, err
	}
	c.Notice("NOTICE", fmt.Sprintf("extension %q updated from version %s to %s", name, from, pkg.Version), "")
	return done, nil
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
	if err := prepareCatalog(c); err != nil {
		return nil, err
	}
	if err := refreshObjects(c); err != nil {
		return nil, err
	}
	installed, schemas, err := installedExtensions(c)
	if err != nil {
		return nil, err
	}
	ss, err := readServerState(c)
	if err != nil {
		return nil, err
	}
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
	type step struct {
		name  string
		pkg   *extension.Package // nil when the package left the directory
		file  string
		stmts []extension.Statement
	}
	steps := make([]step, 0, len(order))
	for _, name := range order {
		s := step{name: name}
		pkg, err := repo.LoadVersion(name, installed[name].Version)
		switch {
		case errors.Is(err, extension.ErrNotFound):
			// The package left the directory: its recorded objects are
			// still known.
		case err != nil:
			return nil, err
		default:
			s.pkg = pkg
		}
		// Only the pgverbs layout has uninstall scripts; a native package
		// is removed by its recorded objects, as DROP EXTENSION removes its
		// members.
		if s.pkg != nil && s.pkg.Layout != extension.LayoutNative && s.pkg.HasUninstall {
			f, err := repo.UninstallScript(s.pkg)
			if err != nil {
				return nil, err
			}
			text, err := repo.ReadScript(s.pkg, f)
			if err != nil {
				return nil, err
			}
			s.file = f.Name
			if s.stmts, err = extension.PrepareScriptOpts(f.Name, text, extension.ScriptOptions{Extension: name, Schema: schemas[name], Owner: ss.owner, QuoteAll: saved.quoteAll}); err != nil {
				return nil, err
			}
		}
		steps = append(steps, s)
	}
	for _, s := range steps {
		name := s.name
		if !targets[name] {
			c.Notice("NOTICE", fmt.Sprintf("uninstall cascades to extension %q", name), "")
		}
		changed, err := saved.enter(c, scriptPath(schemas[name], nil, saved.quoteAll), "")
		if err != nil {
			return nil, err
		}
		if s.file != "" {
			if err := runScript(c, s.file, s.stmts, nil); err != nil {
				return nil, err
			}
		} else if err := dropTrackedObjects(c, name, st.Cascade); err != nil {
			return nil, err
		}
		if err := saved.leave(c, changed, nil); err != nil {
			return nil, err
		}
		if _, err := c.Exec(`DELETE FROM pgverbs.extension_config WHERE extension = $1`, &name); err != nil {
			return nil, err
		}
		if err := checkNoObjectsLeft(c, name); err != nil {
			return nil, err
		}
		if _, err := c.Exec(`DELETE FROM pgverbs.extensions WHERE name = $1`, &name); err != nil {
			return nil, err
		}
		if s.pkg != nil {
			for _, set := range s.pkg.Settings {
				if err := databaseSetting(c, set.Name, nil); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, name := range server {
		res, err := c.Exec(`SELECT pg_catalog.format('DROP EXTENSION %I', $1::text) || CASE WHEN $2::bool THEN ' CASCADE' ELSE '' END`,
			&name, strp(strconv.FormatBool(st.Cascade)))
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(string(res.Rows[0][0])); err != nil {
			return nil, err
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

// targetSchema checks the SCHEMA option, or picks the first schema of the
// search path as CREATE EXTENSION does.
func targetSchema(c Conn, schema string) (string, error) {
	if schema == "" {
		res, err := c.Exec(`SELECT pg_catalog.current_schema()`)
		if err != nil {
			return "", err
		}
		if res.Rows[0][0] == nil {
			return "", pgerr.New(pgerr.InvalidSchemaName, "no schema has been selected to create in")
		}
		return string(res.Rows[0][0]), nil
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
