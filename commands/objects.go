package commands

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Tracked objects: PostgreSQL records an extension's member objects in
// pg_depend and drops exactly those on DROP EXTENSION. pgverbs cannot write
// pg_depend, so it finds the members itself: it lists the catalogs' objects
// before and after the scripts run, in the same transaction, and records the
// new top-level ones in pgverbs.extension_objects. Temporary objects are
// left out: they go with the session. Top-level means what
// PostgreSQL would make a member: objects without an internal or automatic
// dependency on another object (a table's row type, indexes, owned
// sequences, array types and toast tables go with their owner).

// objectsSQL lists user objects (OID >= FirstNormalObjectId) of every
// catalog whose objects can belong to an extension.
const objectsSQL = `SELECT o.classid::oid, o.objid FROM (
      SELECT 'pg_class'::regclass AS classid, oid AS objid FROM pg_catalog.pg_class WHERE relpersistence <> 't'
UNION ALL SELECT 'pg_proc'::regclass, oid FROM pg_catalog.pg_proc WHERE pronamespace <> pg_catalog.pg_my_temp_schema()
UNION ALL SELECT 'pg_type'::regclass, oid FROM pg_catalog.pg_type WHERE typnamespace <> pg_catalog.pg_my_temp_schema()
UNION ALL SELECT 'pg_namespace'::regclass, oid FROM pg_catalog.pg_namespace WHERE nspname !~ '^pg_(toast_)?temp_'
UNION ALL SELECT 'pg_operator'::regclass, oid FROM pg_catalog.pg_operator
UNION ALL SELECT 'pg_opclass'::regclass, oid FROM pg_catalog.pg_opclass
UNION ALL SELECT 'pg_opfamily'::regclass, oid FROM pg_catalog.pg_opfamily
UNION ALL SELECT 'pg_cast'::regclass, oid FROM pg_catalog.pg_cast
UNION ALL SELECT 'pg_collation'::regclass, oid FROM pg_catalog.pg_collation
UNION ALL SELECT 'pg_conversion'::regclass, oid FROM pg_catalog.pg_conversion
UNION ALL SELECT 'pg_ts_config'::regclass, oid FROM pg_catalog.pg_ts_config
UNION ALL SELECT 'pg_ts_dict'::regclass, oid FROM pg_catalog.pg_ts_dict
UNION ALL SELECT 'pg_ts_parser'::regclass, oid FROM pg_catalog.pg_ts_parser
UNION ALL SELECT 'pg_ts_template'::regclass, oid FROM pg_catalog.pg_ts_template
UNION ALL SELECT 'pg_foreign_data_wrapper'::regclass, oid FROM pg_catalog.pg_foreign_data_wrapper
UNION ALL SELECT 'pg_foreign_server'::regclass, oid FROM pg_catalog.pg_foreign_server
UNION ALL SELECT 'pg_event_trigger'::regclass, oid FROM pg_catalog.pg_event_trigger
UNION ALL SELECT 'pg_language'::regclass, oid FROM pg_catalog.pg_language
UNION ALL SELECT 'pg_am'::regclass, oid FROM pg_catalog.pg_am
UNION ALL SELECT 'pg_statistic_ext'::regclass, oid FROM pg_catalog.pg_statistic_ext
) o
WHERE o.objid >= 16384
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = o.classid AND d.objid = o.objid AND d.objsubid = 0
                    AND d.deptype IN ('i', 'a', 'e'))`

// objectKey identifies a catalog object.
type objectKey struct{ classid, objid uint32 }

// snapshotObjects returns the current set of candidate member objects.
func snapshotObjects(c Conn) (map[objectKey]bool, error) {
	res, err := c.Exec(objectsSQL)
	if err != nil {
		return nil, err
	}
	set := make(map[objectKey]bool, len(res.Rows))
	for _, r := range res.Rows {
		cl, _ := strconv.ParseUint(string(r[0]), 10, 32)
		ob, _ := strconv.ParseUint(string(r[1]), 10, 32)
		set[objectKey{uint32(cl), uint32(ob)}] = true
	}
	return set, nil
}

// The classid column holds the catalog's bare name ("pg_proc"), never
// regclass output, which quote_all_identifiers would quote.

// recordMembers stores the members a step's scripts made: the objects in
// after but not in mc.before, and those added with ALTER EXTENSION ADD,
// minus those dropped with ALTER EXTENSION DROP (which an update script
// may do to members recorded earlier: they are forgotten).
func recordMembers(c Conn, mc *memberChanges, after map[objectKey]bool) error {
	var add []objectKey
	for k := range after {
		if !mc.before[k] && !mc.dropped[k] && !mc.added[k] {
			add = append(add, k)
		}
	}
	for k := range mc.added {
		add = append(add, k)
	}
	if len(add) > 0 {
		cl, ob := keyArrays(add)
		_, err := c.Exec(`INSERT INTO pgverbs.extension_objects (extension, classid, objid, type, identity, object_names, object_args)
SELECT $1, (SELECT relname::text FROM pg_catalog.pg_class WHERE oid = u.classid), u.objid, i.type, i.identity, a.object_names, a.object_args
FROM unnest($2::oid[], $3::oid[]) AS u(classid, objid),
     LATERAL pg_catalog.pg_identify_object(u.classid, u.objid, 0) AS i,
     LATERAL pg_catalog.pg_identify_object_as_address(u.classid, u.objid, 0) AS a`, &mc.ext, &cl, &ob)
		if err != nil {
			return err
		}
	}
	if len(mc.dropped) == 0 {
		return nil
	}
	var drop []objectKey
	for k := range mc.dropped {
		drop = append(drop, k)
	}
	cl, ob := keyArrays(drop)
	_, err := c.Exec(`DELETE FROM pgverbs.extension_objects o USING unnest($2::oid[], $3::oid[]) AS u(classid, objid)
WHERE o.extension = $1 AND o.classid::pg_catalog.regclass = u.classid AND o.objid = u.objid`, &mc.ext, &cl, &ob)
	return err
}

// keyArrays renders keys as two oid[] literals, class ids and object ids.
func keyArrays(keys []objectKey) (classids, objids string) {
	cl := make([]string, len(keys))
	ob := make([]string, len(keys))
	for i, k := range keys {
		cl[i] = strconv.FormatUint(uint64(k.classid), 10)
		ob[i] = strconv.FormatUint(uint64(k.objid), 10)
	}
	return "{" + strings.Join(cl, ",") + "}", "{" + strings.Join(ob, ",") + "}"
}

// refreshObjects finds recorded members whose OID no longer names them
// (the database was dumped and restored, so every OID changed) and looks
// them up again by their recorded address. Members that cannot be found
// keep their row, so that nothing is silently forgotten. The rows are
// deleted and inserted again in one statement, which keeps the primary key
// valid whatever order the OIDs moved in.
func refreshObjects(c Conn) error {
	_, err := c.Exec(`WITH stale AS (
    DELETE FROM pgverbs.extension_objects o
    WHERE (pg_catalog.pg_identify_object(o.classid::regclass, o.objid, 0)).identity IS DISTINCT FROM o.identity
      AND pgverbs.resolve_object(o.type, o.object_names, o.object_args) IS DISTINCT FROM o.objid
      AND pgverbs.resolve_object(o.type, o.object_names, o.object_args) IS NOT NULL
    RETURNING *)
INSERT INTO pgverbs.extension_objects (extension, classid, objid, type, identity, object_names, object_args)
SELECT extension, classid, pgverbs.resolve_object(type, object_names, object_args), type, identity, object_names, object_args FROM stale`)
	return err
}

// forgetMissingObjects deletes rows of objects that no longer exist (an
// update script dropped them).
func forgetMissingObjects(c Conn, ext string) error {
	_, err := c.Exec(`DELETE FROM pgverbs.extension_objects o WHERE o.extension = $1
AND (pg_catalog.pg_identify_object(o.classid::regclass, o.objid, 0)).identity IS NULL`, &ext)
	return err
}

// trackedObject is a recorded member object.
type trackedObject struct {
	key           objectKey
	typ, identity string
}

// memberEdgesSQL lists the dependencies between ext's members: member
// (classid, objid) must go before member (refclassid, refobjid) because it,
// or something it owns (a table's triggers, constraints, defaults, rules:
// its internal and automatic dependents, recursively), depends on the
// other. DROP EXTENSION deletes all members at once and needs no order;
// pgverbs drops them one by one and does.
const memberEdgesSQL = `WITH RECURSIVE m AS (
    SELECT classid::pg_catalog.regclass::oid AS classid, objid FROM pgverbs.extension_objects WHERE extension = $1
), owned (oc, oo, classid, objid) AS (
    SELECT classid, objid, classid, objid FROM m
    UNION
    SELECT o.oc, o.oo, d.classid, d.objid FROM owned o JOIN pg_catalog.pg_depend d
        ON d.refclassid = o.classid AND d.refobjid = o.objid AND d.deptype IN ('a', 'i')
)
SELECT DISTINCT a.oc, a.oo, r.classid, r.objid
FROM owned a
JOIN pg_catalog.pg_depend d ON d.classid = a.classid AND d.objid = a.objid AND d.deptype IN ('n', 'a')
JOIN m r ON r.classid = d.refclassid AND r.objid = d.refobjid
WHERE (a.oc, a.oo) <> (r.classid, r.objid)`

// dropTrackedObjects drops ext's recorded objects, each after the members
// that depend on it (newest first among the rest). Without cascade a
// dependent object outside the extension makes PostgreSQL refuse with
// 2BP01 and its own DETAIL.
func dropTrackedObjects(c Conn, ext string, cascade bool) error {
	// The current identity, not the recorded one: the object may have been
	// renamed since.
	res, err := c.Exec(`SELECT o.classid::pg_catalog.regclass::oid, o.objid, o.type, i.identity
FROM pgverbs.extension_objects o, LATERAL pg_catalog.pg_identify_object(o.classid::regclass, o.objid, 0) i
WHERE o.extension = $1 AND i.identity IS NOT NULL
ORDER BY o.objid DESC`, &ext)
	if err != nil {
		return err
	}
	objs := make([]trackedObject, 0, len(res.Rows))
	for _, r := range res.Rows {
		objs = append(objs, trackedObject{parseKey(r[0], r[1]), string(r[2]), string(r[3])})
	}
	if res, err = c.Exec(memberEdgesSQL, &ext); err != nil {
		return err
	}
	// before[k] are the members that must be dropped before k.
	before := map[objectKey][]objectKey{}
	for _, r := range res.Rows {
		dep, ref := parseKey(r[0], r[1]), parseKey(r[2], r[3])
		before[ref] = append(before[ref], dep)
	}
	stmts := make([]string, 0, len(objs))
	for _, o := range dropOrder(objs, before) {
		kw, ok := dropKeyword(o.typ)
		if !ok {
			return pgerr.New(pgerr.FeatureNotSupported, "cannot uninstall extension %q: do not know how to drop %s %s", ext, o.typ, o.identity)
		}
		// IF EXISTS: dropping an earlier object may have taken a later one
		// with it (a schema and its contents).
		stmt := "DROP " + kw + " IF EXISTS " + o.identity
		if cascade {
			stmt += " CASCADE"
		}
		stmts = append(stmts, stmt)
	}
	_, err = c.ExecBatch(stmts)
	return err
}

// dropOrder orders objs (given newest first) so that each comes after
// every object listed in before for it, keeping the given order where the
// dependencies allow. Objects in a dependency cycle, which only a
// simultaneous drop could remove, keep the given order.
func dropOrder(objs []trackedObject, before map[objectKey][]objectKey) []trackedObject {
	present := make(map[objectKey]bool, len(objs))
	for _, o := range objs {
		present[o.key] = true
	}
	done := make(map[objectKey]bool, len(objs))
	visiting := map[objectKey]bool{}
	byKey := make(map[objectKey]trackedObject, len(objs))
	for _, o := range objs {
		byKey[o.key] = o
	}
	out := make([]trackedObject, 0, len(objs))
	var visit func(k objectKey)
	visit = func(k objectKey) {
		if done[k] || visiting[k] {
			return
		}
		visiting[k] = true
		for _, d := range before[k] {
			if present[d] {
				visit(d)
			}
		}
		visiting[k] = false
		done[k] = true
		out = append(out, byKey[k])
	}
	for _, o := range objs {
		visit(o.key)
	}
	return out
}

// parseKey reads an object key from two text-format oid columns.
func parseKey(classid, objid []byte) objectKey {
	cl, _ := strconv.ParseUint(string(classid), 10, 32)
	ob, _ := strconv.ParseUint(string(objid), 10, 32)
	return objectKey{uint32(cl), uint32(ob)}
}

// dropKeyword maps pg_identify_object's type to the DROP statement's object
// keyword.
func dropKeyword(typ string) (string, bool) {
	switch typ {
	case "table", "view", "materialized view", "sequence", "foreign table", "function", "procedure",
		"aggregate", "type", "domain", "schema", "operator", "operator class", "operator family",
		"cast", "collation", "conversion", "text search configuration", "text search dictionary",
		"text search parser", "text search template", "server", "event trigger", "language",
		"access method":
		return strings.ToUpper(typ), true
	case "composite type":
		return "TYPE", true
	case "foreign-data wrapper":
		return "FOREIGN DATA WRAPPER", true
	case "statistics object":
		return "STATISTICS", true
	}
	return "", false
}

// checkNoObjectsLeft confirms after an uninstall that none of ext's recorded
// objects exists any more, then forgets them.
func checkNoObjectsLeft(c Conn, ext string) error {
	res, err := c.Exec(`SELECT type || ' ' || identity FROM pgverbs.extension_objects
WHERE extension = $1 AND (pg_catalog.pg_identify_object(classid::regclass, objid, 0)).identity IS NOT NULL`, &ext)
	if err != nil {
		return err
	}
	if len(res.Rows) > 0 {
		var left []string
		for _, r := range res.Rows {
			left = append(left, string(r[0]))
		}
		sort.Strings(left)
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "uninstall of extension %q left %d of its objects behind", ext, len(left))
		e.Detail = strings.Join(left, "\n")
		e.Hint = fmt.Sprintf("The package's uninstall script does not drop everything its install script created; drop them in the script, or remove %s/uninstall.sql to let pgverbs drop the recorded objects.", ext)
		return e
	}
	_, err = c.Exec(`DELETE FROM pgverbs.extension_objects WHERE extension = $1`, &ext)
	return err
}
