package commands

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Running scripts as CREATE EXTENSION runs them: in the installing
// transaction, with the settings PostgreSQL's execute_extension_script
// gives them, and with the two things only CREATE EXTENSION knows about
// (pg_extension_config_dump and ALTER EXTENSION ADD|DROP) done by pgverbs.

// savedSettings are the session settings before a command's scripts ran.
type savedSettings struct {
	searchPath, checkBodies, minMessages string
	// quoteAll is quote_all_identifiers, which quote_identifier honours
	// when PostgreSQL builds the script's search_path and substitutes
	// @extschema@.
	quoteAll bool
}

// saveSettings reads the settings the script environment changes.
func saveSettings(c Conn) (*savedSettings, error) {
	res, err := c.Exec(`SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_setting('check_function_bodies'),
  pg_catalog.current_setting('client_min_messages'), pg_catalog.current_setting('quote_all_identifiers')`)
	if err != nil {
		return nil, err
	}
	r, err := oneRow(res, 4)
	if err != nil {
		return nil, err
	}
	return &savedSettings{searchPath: string(r[0]), checkBodies: string(r[1]), minMessages: string(r[2]), quoteAll: string(r[3]) == "on"}, nil
}

// oneRow returns the single row of res, checking it has n columns.
func oneRow(res *Result, n int) ([][]byte, error) {
	if len(res.Rows) != 1 || len(res.Rows[0]) != n {
		return nil, pgerr.New(pgerr.InternalError, "unexpected result: %d rows, want 1 row of %d columns", len(res.Rows), n)
	}
	return res.Rows[0], nil
}

// belowWarning is the client_min_messages levels below WARNING.
var belowWarning = map[string]bool{"debug5": true, "debug4": true, "debug3": true, "debug2": true, "debug1": true, "debug": true, "log": true, "notice": true}

// setting is one transaction-local set_config.
type setting struct{ name, value string }

// enter sets the script environment as PostgreSQL does, transaction-locally
// so that it vanishes with the transaction whatever happens, and names the
// extension being installed for pgverbs.extension_config_dump (ext "" for
// none). PostgreSQL changes (and later restores) a setting only when it
// must: client_min_messages only when below WARNING, check_function_bodies
// only when on. The returned settings are the ones changed.
func (s *savedSettings) enter(c Conn, searchPath, ext string) ([]string, error) {
	set := []setting{{"search_path", searchPath}}
	if s.checkBodies == "on" {
		set = append(set, setting{"check_function_bodies", "off"})
	}
	if belowWarning[strings.ToLower(s.minMessages)] {
		set = append(set, setting{"client_min_messages", "warning"})
	}
	changed := make([]string, len(set))
	for i, st := range set {
		changed[i] = st.name
	}
	return changed, setConfig(c, append(set, setting{"pgverbs.installing", ext}))
}

// leave restores the settings enter changed, except those a script SET
// plainly (not SET LOCAL): PostgreSQL restores a saved setting at the end
// of the script unless the script overrode it with SET, which then lasts
// for the session as any SET does.
func (s *savedSettings) leave(c Conn, changed []string, kept map[string]bool) error {
	old := map[string]string{"search_path": s.searchPath, "check_function_bodies": s.checkBodies, "client_min_messages": s.minMessages}
	set := []setting{{"pgverbs.installing", ""}}
	for _, name := range changed {
		if !kept[name] && !kept[""] {
			set = append(set, setting{name, old[name]})
		}
	}
	return setConfig(c, set)
}

// setConfig runs set_config(name, value, true) for each setting, in one
// statement.
func setConfig(c Conn, set []setting) error {
	calls := make([]string, len(set))
	args := make([]*string, len(set))
	for i, st := range set {
		calls[i] = fmt.Sprintf("pg_catalog.set_config(%s, $%d, true)", quoteLiteral(st.name), i+1)
		args[i] = strp(st.value)
	}
	_, err := c.Exec("SELECT "+strings.Join(calls, ", "), args...)
	return err
}

// quoteLiteral quotes a string constant of pgverbs's own (setting names).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// scriptPath is the search_path scripts run with, as PostgreSQL builds it:
// the target schema, the required extensions' schemas except pg_catalog
// (searched first anyway), then pg_temp, each quoted only when needed.
// Scripts see it: a function with SET search_path FROM CURRENT stores it.
func scriptPath(schema string, required []string, quoteAll bool) string {
	parts := []string{extension.QuoteIdentifier(schema, quoteAll)}
	for _, r := range required {
		if r != "pg_catalog" {
			parts = append(parts, extension.QuoteIdentifier(r, quoteAll))
		}
	}
	return strings.Join(parts, ", ") + ", pg_temp"
}

// keptSettings returns the script settings that statements SET plainly;
// "" stands for all (RESET ALL).
func keptSettings(kept map[string]bool, stmts []extension.Statement) {
	for _, st := range stmts {
		if st.Set != nil && !st.Set.Local {
			kept[st.Set.Name] = true
		}
	}
}

// runScript runs a package script's statements, pipelined, except ALTER
// EXTENSION ADD|DROP, which mc carries out (nil refuses them). A failing
// statement's error names the script and line in its CONTEXT.
func runScript(c Conn, file string, stmts []extension.Statement, mc *memberChanges) error {
	inFile := func(err error, st extension.Statement) error {
		var se *ServerError
		if errors.As(err, &se) {
			return se.WithContext(fmt.Sprintf("extension script %s, line %d", file, st.Line))
		}
		var pe *pgerr.Error
		if errors.As(err, &pe) {
			e := *pe
			e.Message = fmt.Sprintf("%s:%d: %s", file, st.Line, e.Message)
			return &e
		}
		return err
	}
	run := func(batch []extension.Statement) error {
		if len(batch) == 0 {
			return nil
		}
		sqls := make([]string, len(batch))
		for i, st := range batch {
			sqls[i] = st.SQL
		}
		failed, err := c.ExecBatch(sqls)
		if err != nil && failed >= 0 && failed < len(batch) {
			return inFile(err, batch[failed])
		}
		return err
	}
	start := 0
	for i, st := range stmts {
		if st.Membership == nil {
			continue
		}
		if err := run(stmts[start:i]); err != nil {
			return err
		}
		start = i + 1
		if mc == nil {
			return inFile(pgerr.New(pgerr.FeatureNotSupported, "ALTER EXTENSION ADD|DROP is not allowed in an uninstall script"), st)
		}
		if err := mc.apply(c, st.Membership); err != nil {
			return inFile(err, st)
		}
	}
	return run(stmts[start:])
}

// memberChanges are the ALTER EXTENSION ADD|DROP statements of one step's
// scripts, applied to the members the catalog diff finds.
type memberChanges struct {
	ext            string
	before         map[objectKey]bool
	added, dropped map[objectKey]bool
}

// apply resolves the object as ALTER EXTENSION would (the server's
// pg_get_object_address, so an object that does not exist gets the
// server's own error) and checks membership as PostgreSQL does.
func (mc *memberChanges) apply(c Conn, m *extension.Membership) error {
	var res *Result
	var err error
	if m.ByName {
		parts := make([]string, len(m.Names))
		for i, n := range m.Names {
			parts[i] = extension.QuoteIdentifier(n, true)
		}
		res, err = c.Exec(`SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass::oid, p.oid, pg_catalog.pg_describe_object('pg_catalog.pg_proc'::pg_catalog.regclass, p.oid, 0)
FROM (SELECT $1::pg_catalog.regproc::oid AS oid) p`, strp(strings.Join(parts, ".")))
	} else {
		res, err = c.Exec(`SELECT a.classid, a.objid, pg_catalog.pg_describe_object(a.classid, a.objid, a.objsubid)
FROM pg_catalog.pg_get_object_address($1, $2::text[], $3::text[]) a`, &m.Type, strp(arrayLiteral(m.Names)), strp(arrayLiteral(m.Args)))
	}
	if err != nil {
		return err
	}
	r, err := oneRow(res, 3)
	if err != nil {
		return err
	}
	key, desc := parseKey(r[0], r[1]), string(r[2])
	owner, err := memberOf(c, key)
	if err != nil {
		return err
	}
	// Objects the scripts created are members already, as PostgreSQL makes
	// every object a script creates a member.
	member := !mc.dropped[key] && (mc.added[key] || owner == mc.ext || !mc.before[key] && owner == "")
	switch {
	case m.Add && member:
		return pgerr.New(pgerr.ObjectNotInPrerequisiteState, "%s is already a member of extension \"%s\"", desc, mc.ext)
	case m.Add && owner != "" && owner != mc.ext:
		return pgerr.New(pgerr.ObjectNotInPrerequisiteState, "%s is already a member of extension \"%s\"", desc, owner)
	case m.Add:
		mc.added[key] = true
		delete(mc.dropped, key)
	case !member:
		return pgerr.New(pgerr.ObjectNotInPrerequisiteState, "%s is not a member of extension \"%s\"", desc, mc.ext)
	default:
		mc.dropped[key] = true
		delete(mc.added, key)
	}
	return nil
}

// memberOf names the extension, pgverbs's or the server's, that the object
// belongs to; "" for none.
func memberOf(c Conn, key objectKey) (string, error) {
	cl, ob := strconv.FormatUint(uint64(key.classid), 10), strconv.FormatUint(uint64(key.objid), 10)
	res, err := c.Exec(`SELECT extension FROM pgverbs.extension_objects WHERE classid::pg_catalog.regclass = $1::oid AND objid = $2::oid
UNION ALL
SELECT e.extname::text FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
WHERE d.classid = $1::oid AND d.objid = $2::oid AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'`, &cl, &ob)
	if err != nil || len(res.Rows) == 0 {
		return "", err
	}
	return string(res.Rows[0][0]), nil
}

// runTracked runs a step's scripts for extension ext in the script
// environment between two listings of the catalogs. The returned record
// stores the members (the objects the scripts created, plus those they
// added with ALTER EXTENSION ADD, minus those they dropped with ALTER
// EXTENSION DROP) and checks the configuration tables the scripts marked;
// call it once the extension's catalog row exists.
func runTracked(c Conn, ext string, ps preparedStep, saved *savedSettings) (record func() error, err error) {
	before, err := snapshotObjects(c)
	if err != nil {
		return nil, err
	}
	changed, err := saved.enter(c, scriptPath(ps.schema, ps.required, saved.quoteAll), ext)
	if err != nil {
		return nil, err
	}
	mc := &memberChanges{ext: ext, before: before, added: map[objectKey]bool{}, dropped: map[objectKey]bool{}}
	kept := map[string]bool{}
	for _, f := range ps.files {
		if err := runScript(c, f.name, f.stmts, mc); err != nil {
			return nil, err
		}
		keptSettings(kept, f.stmts)
	}
	if err := saved.leave(c, changed, kept); err != nil {
		return nil, err
	}
	after, err := snapshotObjects(c)
	if err != nil {
		return nil, err
	}
	return func() error {
		if err := recordMembers(c, mc, after); err != nil {
			return err
		}
		return checkConfigTables(c, ext)
	}, nil
}

// checkConfigTables refuses configuration tables that are not members of
// ext, with PostgreSQL's error, and forgets those that no longer exist (an
// update script dropped them; PostgreSQL removes a dropped table from
// extconfig too).
func checkConfigTables(c Conn, ext string) error {
	if _, err := c.Exec(`DELETE FROM pgverbs.extension_config WHERE extension = $1 AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid = tab)`, &ext); err != nil {
		return err
	}
	res, err := c.Exec(`SELECT COALESCE((SELECT relname::text FROM pg_catalog.pg_class WHERE oid = k.tab), k.tab::oid::text)
FROM pgverbs.extension_config k WHERE k.extension = $1
  AND NOT EXISTS (SELECT 1 FROM pgverbs.extension_objects o WHERE o.extension = $1 AND o.classid::pg_catalog.regclass = 'pg_catalog.pg_class'::pg_catalog.regclass AND o.objid = k.tab)
ORDER BY 1 LIMIT 1`, &ext)
	if err != nil {
		return err
	}
	if len(res.Rows) > 0 {
		return pgerr.New(pgerr.ObjectNotInPrerequisiteState, "table \"%s\" is not a member of the extension being created", string(res.Rows[0][0]))
	}
	return nil
}
