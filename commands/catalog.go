package commands

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// What INSTALL, UNINSTALL and ALTER EXTENSION share: the catalog (its DDL,
// the lock, reading the installed state and the server's), the database
// settings of packages, and preparing scripts. The commands themselves are
// in install.go, upgrade.go and uninstall.go.

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

// extContext is what the extension commands share.
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
	r, err := queryRow(c, 1, `SELECT pg_catalog.to_regclass('pgverbs.extensions') IS NOT NULL AND pg_catalog.to_regclass('pgverbs.extension_objects') IS NOT NULL
  AND pg_catalog.to_regclass('pgverbs.extension_config') IS NOT NULL AND pg_catalog.to_regclass('pgverbs.all_extensions') IS NOT NULL
  AND pg_catalog.to_regprocedure('pgverbs.extension_config_dump(regclass,text)') IS NOT NULL
  AND pg_catalog.to_regprocedure('pgverbs.resolve_object(text,text[],text[])') IS NOT NULL`)
	if err != nil {
		return err
	}
	if string(r[0]) == "t" {
		return nil
	}
	for _, stmt := range append(strings.Split(catalogDDL, ";\n"), configDumpDDL, resolveObjectDDL) {
		if _, err := c.Exec(stmt); err != nil {
			return err
		}
	}
	return nil
}

// extState is what an extension command reads before it decides anything.
type extState struct {
	// installed are the packages pgverbs installed, by name.
	installed map[string]extension.Installed
	// schemas are the schemas of installed, by name.
	schemas map[string]string
	server  *serverState
}

// loadState takes the lock, creates the catalog on first use and reads the
// installed state, pgverbs's and the server's. With refresh it first finds
// recorded members again by name (refreshObjects), for commands that use
// the members: after a dump and restore their OIDs have changed.
func loadState(c Conn, refresh bool) (*extState, error) {
	if err := prepareCatalog(c); err != nil {
		return nil, err
	}
	if refresh {
		if err := refreshObjects(c); err != nil {
			return nil, err
		}
	}
	installed, schemas, err := installedExtensions(c)
	if err != nil {
		return nil, err
	}
	ss, err := readServerState(c)
	if err != nil {
		return nil, err
	}
	return &extState{installed: installed, schemas: schemas, server: ss}, nil
}

// installedExtensions reads the catalog.
func installedExtensions(c Conn) (map[string]extension.Installed, map[string]string, error) {
	rows, err := queryRows(c, 4, `SELECT name, version, schema, pg_catalog.array_to_string(requires, ',') FROM pgverbs.extensions`)
	if err != nil {
		return nil, nil, err
	}
	inst := make(map[string]extension.Installed, len(rows))
	schemas := make(map[string]string, len(rows))
	for _, r := range rows {
		var req []string
		if len(r[3]) > 0 {
			req = strings.Split(string(r[3]), ",")
		}
		inst[string(r[0])] = extension.Installed{Name: string(r[0]), Version: string(r[1]), Requires: req}
		schemas[string(r[0])] = string(r[2])
	}
	return inst, schemas, nil
}

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
	rows, err := queryRows(c, 3, `SELECT e.extname, e.extversion, n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace`)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		ss.installed[string(r[0])] = string(r[1])
		ss.schemas[string(r[0])] = string(r[2])
	}
	if rows, err = queryRows(c, 2, `SELECT name, coalesce(default_version, '') FROM pg_catalog.pg_available_extensions`); err != nil {
		return nil, err
	}
	for _, r := range rows {
		ss.available[string(r[0])] = string(r[1])
	}
	if rows, err = queryRows(c, 2, `SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user`); err != nil {
		return nil, err
	}
	if len(rows) > 0 {
		ss.owner, ss.superuser = string(rows[0][0]), string(rows[0][1]) == "t"
	}
	return ss, nil
}

// queryRows runs sql and returns its rows, checking each has n columns.
func queryRows(c Conn, n int, sql string, args ...*string) ([][][]byte, error) {
	res, err := c.Exec(sql, args...)
	if err != nil {
		return nil, err
	}
	for _, r := range res.Rows {
		if len(r) != n {
			return nil, pgerr.New(pgerr.InternalError, "unexpected result: a row of %d columns, want %d", len(r), n)
		}
	}
	return res.Rows, nil
}

// queryRow runs sql and returns its row, checking there is one, of n
// columns.
func queryRow(c Conn, n int, sql string, args ...*string) ([][]byte, error) {
	res, err := c.Exec(sql, args...)
	if err != nil {
		return nil, err
	}
	return oneRow(res, n)
}

// catalogExists reports whether pgverbs.extensions exists, which it does
// not before the first INSTALL EXTENSION in the database.
func catalogExists(c Conn) (bool, error) {
	r, err := queryRow(c, 1, `SELECT pg_catalog.to_regclass('pgverbs.extensions') IS NOT NULL`)
	if err != nil {
		return false, err
	}
	return string(r[0]) == "t", nil
}

// execFormatted runs the statement that query builds with the server's
// format(), so that quoting is the server's own. A query that returns no
// row has decided there is nothing to run.
func execFormatted(c Conn, query string, args ...*string) error {
	rows, err := queryRows(c, 1, query, args...)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if _, err := c.Exec(string(r[0])); err != nil {
			return err
		}
	}
	return nil
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

// databaseSetting runs ALTER DATABASE <current> SET, or with value nil
// RESET, for one setting of a package's foo.conf.
func databaseSetting(c Conn, name string, value *string) error {
	if !settingName.MatchString(name) {
		return pgerr.New(pgerr.InvalidParameterValue, "invalid setting name %q in extension configuration", name)
	}
	if value == nil {
		return execFormatted(c, `SELECT pg_catalog.format('ALTER DATABASE %I RESET %s', pg_catalog.current_database(), $1::text)`, &name)
	}
	return execFormatted(c, `SELECT pg_catalog.format('ALTER DATABASE %I SET %s = %L', pg_catalog.current_database(), $1::text, $2::text)`, &name, value)
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

// prepareScripts reads and prepares files, scripts of pkg, in order, each
// with the options opts gives for the package version the script leads to
// (a native package's secondary control file may change them). sum is the
// SHA-256 of the texts, as pgverbs.extensions records it.
func prepareScripts(repo *extension.Repo, pkg *extension.Package, files []extension.ScriptFile, opts func(at *extension.Package) extension.ScriptOptions) (prepared []preparedFile, sum string, err error) {
	h := sha256.New()
	for _, f := range files {
		text, err := repo.ReadScript(pkg, f)
		if err != nil {
			return nil, "", err
		}
		h.Write([]byte(text))
		at := pkg
		if f.To != "" && f.To != pkg.Version {
			if at, err = repo.LoadVersion(pkg.Name, f.To); err != nil {
				return nil, "", err
			}
		}
		stmts, err := extension.PrepareScriptOpts(f.Name, text, opts(at))
		if err != nil {
			return nil, "", err
		}
		prepared = append(prepared, preparedFile{f.Name, stmts})
	}
	return prepared, hex.EncodeToString(h.Sum(nil)), nil
}

// scriptOptions are the substitutions for an install or update script of
// package version at.
func scriptOptions(at *extension.Package, schema, owner string, required map[string]string, quoteAll bool) extension.ScriptOptions {
	return extension.ScriptOptions{
		Extension: at.Name, Schema: schema, Owner: owner, RequiredSchemas: required, ModulePathname: at.ModulePathname,
		Relocatable: at.Layout == extension.LayoutNative && at.Relocatable, QuoteAll: quoteAll,
	}
}

// requiredSchemas finds the schema of each of requires in the first of
// schemas that has it: by name, and in requires' order for search_path.
func requiredSchemas(requires []string, schemas ...map[string]string) (byName map[string]string, path []string) {
	byName = map[string]string{}
	for _, req := range requires {
		for _, m := range schemas {
			if sc, ok := m[req]; ok {
				byName[req] = sc
				path = append(path, sc)
				break
			}
		}
	}
	return byName, path
}
