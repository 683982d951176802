package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// catEntry is one object of a catalog snapshot: Key names it (kind and
// identity), Desc is its description, one field or sub-object per line.
type catEntry struct {
	Key, Desc string
}

// catalog is a snapshot of a database's user objects, sorted by Key.
type catalog []catEntry

// catSettings are fixed for the snapshot so that the text of values (row
// dumps, defaults) and the qualification of names do not depend on either
// session's or server's configuration. With only pg_catalog on the path every
// user object is printed schema-qualified.
var catSettings = map[string]string{
	"search_path":        "pg_catalog",
	"DateStyle":          "ISO, YMD",
	"IntervalStyle":      "postgres",
	"TimeZone":           "UTC",
	"extra_float_digits": "1",
	"bytea_output":       "hex",
	"lc_monetary":        "C",
	"lc_numeric":         "C",
	"row_security":       "off", // an error rather than a silently filtered row dump
	"jit":                "off", // the queries are short; JIT compilation only costs time
}

// SQL building blocks for the snapshot queries. Every reference to another
// object goes through a name (reg* output, format_type, a join), never an
// OID, and every list is ordered by its text under the C collation, so that
// two clusters with different OIDs and default collations print the same.

// catScope is the predicate for a schema name being in scope: user schemas
// cannot start with pg_ (the server rejects them), which covers pg_catalog,
// pg_toast and the temporary schemas; pgverbs is the proxy's own catalog.
func catScope(nsp string) string {
	return "(" + nsp + " NOT IN ('information_schema', 'pgverbs') AND " + nsp + " !~ '^pg_')"
}

// catQN is the quoted schema-qualified name.
func catQN(nsp, name string) string {
	return "quote_ident(" + nsp + ") || '.' || quote_ident(" + name + ")"
}

// catF is one "label: value" line; NULL is spelled out so that it differs
// from an empty value.
func catF(label, expr string) string {
	return "'" + label + ": ' || coalesce((" + expr + ")::text, '<null>')"
}

// catOpt is a "label: value" line that is left out when the value is NULL,
// for fields that only some objects of a kind have.
func catOpt(label, expr string) string {
	return "'" + label + ": ' || (" + expr + ")::text"
}

// catDesc joins lines; NULL lines (catOpt, absent sub-objects) drop out.
func catDesc(lines ...string) string {
	return "concat_ws(E'\\n',\n\t" + strings.Join(lines, ",\n\t") + ")"
}

// catSorted renders an array whose order carries no meaning (options, SET
// clauses, ACLs) sorted.
func catSorted(arr string) string {
	return "(SELECT string_agg(x::text, ', ' ORDER BY x::text COLLATE \"C\") FROM unnest(" + arr + ") x)"
}

// catACL renders the effective privileges: a NULL ACL means the kind's
// default, so it is replaced by that default and an explicit ACL equal to
// it (as left by a GRANT then REVOKE) compares equal.
func catACL(acl, kind, owner string) string {
	return catSorted("coalesce(" + acl + ", acldefault(" + kind + ", " + owner + "))")
}

// catComment is the comment on an object (objsubid 0) of a catalog.
func catComment(class, oid string) string {
	return "(SELECT description FROM pg_description WHERE classoid = '" + class + "'::regclass AND objoid = " + oid + " AND objsubid = 0)"
}

// catWithComment appends the comment of a sub-object to its line.
func catWithComment(line, class, oid string) string {
	return "(" + line + ") || coalesce(' comment ' || quote_literal(" + catComment(class, oid) + "), '')"
}

// catLines renders the sub-objects selected by from (text after FROM) as one
// line each, sorted.
func catLines(line, from string) string {
	return "(SELECT string_agg(l, E'\\n' ORDER BY l COLLATE \"C\") FROM (SELECT " + line + " AS l FROM " + from + ") s)"
}

// catUserOID selects objects created after initdb, for kinds that live in no
// schema (casts, event triggers, languages, ...).
const catUserOID = "16384"

// catQueries each return (key, description) rows. Keys carry a kind word
// shared by all objects of a catalog (a relation stays "relation" whether
// table or view) so that a changed kind shows as a changed field.
var catQueries = []struct{ name, sql string }{
	{"schemas", `SELECT 'schema ' || quote_ident(n.nspname), ` + catDesc(
		catF("owner", "n.nspowner::regrole"),
		catF("acl", catACL("n.nspacl", "'n'", "n.nspowner")),
		catF("comment", catComment("pg_namespace", "n.oid")),
	) + ` FROM pg_namespace n WHERE ` + catScope("n.nspname")},

	{"routines", `SELECT 'routine ' || ` + catQN("n.nspname", "p.proname") + ` || '(' || pg_get_function_identity_arguments(p.oid) || ')', ` + catDesc(
		catF("kind", "p.prokind"),
		catF("arguments", "pg_get_function_arguments(p.oid)"),
		catF("result", "pg_get_function_result(p.oid)"),
		catF("language", "l.lanname"),
		catF("volatility", "p.provolatile"),
		catF("strict", "p.proisstrict"),
		catF("security definer", "p.prosecdef"),
		catF("leakproof", "p.proleakproof"),
		catF("parallel", "p.proparallel"),
		catF("cost", "p.procost"),
		catF("rows", "p.prorows"),
		catF("support", "p.prosupport::regprocedure"),
		catF("config", catSorted("p.proconfig")),
		catOpt("transforms", "(SELECT string_agg(format_type(t, NULL), ', ' ORDER BY ord) FROM unnest(p.protrftypes) WITH ORDINALITY u(t, ord))"),
		catF("owner", "p.proowner::regrole"),
		catF("acl", catACL("p.proacl", "'f'", "p.proowner")),
		catF("comment", catComment("pg_proc", "p.oid")),
		`(SELECT `+catDesc(
			catF("aggregate kind", "a.aggkind"),
			catF("direct args", "a.aggnumdirectargs"),
			catF("transfn", "a.aggtransfn::regprocedure"),
			catF("finalfn", "a.aggfinalfn::regprocedure"),
			catF("combinefn", "a.aggcombinefn::regprocedure"),
			catF("serialfn", "a.aggserialfn::regprocedure"),
			catF("deserialfn", "a.aggdeserialfn::regprocedure"),
			catF("mtransfn", "a.aggmtransfn::regprocedure"),
			catF("minvtransfn", "a.aggminvtransfn::regprocedure"),
			catF("mfinalfn", "a.aggmfinalfn::regprocedure"),
			catF("finalextra", "a.aggfinalextra"),
			catF("mfinalextra", "a.aggmfinalextra"),
			catF("finalmodify", "a.aggfinalmodify"),
			catF("mfinalmodify", "a.aggmfinalmodify"),
			catF("sortop", "CASE WHEN a.aggsortop <> 0 THEN a.aggsortop::regoperator::text END"),
			catF("transtype", "format_type(a.aggtranstype, NULL)"),
			catF("transspace", "a.aggtransspace"),
			catF("mtranstype", "format_type(a.aggmtranstype, NULL)"),
			catF("mtransspace", "a.aggmtransspace"),
			catF("initval", "a.agginitval"),
			catF("minitval", "a.aggminitval"),
		)+` FROM pg_aggregate a WHERE a.aggfnoid = p.oid)`,
		catF("binary", "p.probin"),
		// A SQL-standard body is stored as a parse tree (with OIDs) and
		// prosrc is empty; its deparsed text is what can be compared.
		"CASE WHEN p.prosqlbody IS NOT NULL THEN 'sql body: ' || pg_get_function_sqlbody(p.oid) ELSE 'source: ' || p.prosrc END",
	) + `
	FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
	WHERE ` + catScope("n.nspname")},

	{"relations", `SELECT 'relation ' || ` + catQN("n.nspname", "c.relname") + `, ` + catDesc(
		catF("kind", "c.relkind"),
		catF("persistence", "c.relpersistence"),
		catF("owner", "c.relowner::regrole"),
		catF("acl", catACL("c.relacl", "CASE c.relkind WHEN 'S' THEN 's'::\"char\" ELSE 'r'::\"char\" END", "c.relowner")),
		catF("comment", catComment("pg_class", "c.oid")),
		catF("access method", "(SELECT amname FROM pg_am WHERE oid = c.relam)"),
		catF("tablespace", "(SELECT spcname FROM pg_tablespace WHERE oid = c.reltablespace)"),
		catF("options", catSorted("c.reloptions")),
		catF("row security", "c.relrowsecurity"),
		catF("force row security", "c.relforcerowsecurity"),
		catF("replica identity", "c.relreplident"),
		catOpt("of type", "CASE WHEN c.reloftype <> 0 THEN format_type(c.reloftype, NULL) END"),
		// Inheritance order decides column order, so it is kept.
		catOpt("inherits", "(SELECT string_agg(i.inhparent::regclass::text, ', ' ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid)"),
		catOpt("partition key", "CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END"),
		catOpt("partition bound", "pg_get_expr(c.relpartbound, c.oid)"),
		catOpt("populated", "CASE WHEN c.relkind = 'm' THEN c.relispopulated END"),
		catOpt("definition", "CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END"),
		`(SELECT `+catDesc(
			catF("sequence type", "format_type(s.seqtypid, NULL)"),
			catF("start", "s.seqstart"),
			catF("increment", "s.seqincrement"),
			catF("min", "s.seqmin"),
			catF("max", "s.seqmax"),
			catF("cache", "s.seqcache"),
			catF("cycle", "s.seqcycle"),
		)+` FROM pg_sequence s WHERE s.seqrelid = c.oid)`,
		// OWNED BY and identity columns are dependencies, not columns of
		// pg_sequence.
		catOpt("owned by", catLines(
			"d.refobjid::regclass::text || '.' || quote_ident(att.attname) || ' (' || d.deptype::text || ')'",
			`pg_depend d JOIN pg_attribute att ON att.attrelid = d.refobjid AND att.attnum = d.refobjsubid
			WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid
			AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')`)),
		catOpt("foreign table", `(SELECT 'server ' || quote_ident(fs.srvname) || ' options ' || coalesce(`+catSorted("ft.ftoptions")+`, '')
			FROM pg_foreign_table ft JOIN pg_foreign_server fs ON fs.oid = ft.ftserver WHERE ft.ftrelid = c.oid)`),
		// Columns in their order; only what differs from the default is
		// spelled out, to keep the lines readable.
		`(SELECT string_agg('column ' || quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
			|| CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
			|| CASE a.attidentity WHEN 'a' THEN ' generated always as identity' WHEN 'd' THEN ' generated by default as identity' ELSE '' END
			|| CASE WHEN a.attgenerated = 's' THEN coalesce(' generated always as (' || pg_get_expr(ad.adbin, ad.adrelid) || ') stored', '')
				ELSE coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '') END
			|| CASE WHEN a.attcollation <> ty.typcollation THEN ' collate ' || a.attcollation::regcollation::text ELSE '' END
			|| CASE WHEN a.attstorage <> ty.typstorage THEN ' storage ' || a.attstorage::text ELSE '' END
			|| CASE WHEN a.attcompression::text <> '' THEN ' compression ' || a.attcompression::text ELSE '' END
			|| CASE WHEN coalesce(a.attstattarget, -1) >= 0 THEN ' statistics ' || a.attstattarget ELSE '' END
			|| coalesce(' options ' || `+catSorted("a.attoptions")+`, '')
			|| coalesce(' fdw options ' || `+catSorted("a.attfdwoptions")+`, '')
			|| coalesce(' acl ' || `+catSorted("a.attacl")+`, '')
			|| CASE WHEN NOT a.attislocal THEN ' not local' ELSE '' END
			|| CASE WHEN a.attinhcount > 0 THEN ' inherited ' || a.attinhcount ELSE '' END
			|| coalesce(' comment ' || quote_literal((SELECT description FROM pg_description WHERE classoid = 'pg_class'::regclass AND objoid = c.oid AND objsubid = a.attnum)), ''),
			E'\n' ORDER BY a.attnum)
		FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
		LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
		WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)`,
		catLines(catWithComment(`'constraint ' || quote_ident(co.conname) || ': ' || pg_get_constraintdef(co.oid)
			|| CASE WHEN NOT co.conislocal THEN ' not local' ELSE '' END
			|| CASE WHEN co.coninhcount > 0 THEN ' inherited ' || co.coninhcount ELSE '' END`, "pg_constraint", "co.oid"),
			"pg_constraint co WHERE co.conrelid = c.oid"),
		catLines(catWithComment(`'index ' || quote_ident(ic.relname) || ': ' || pg_get_indexdef(i.indexrelid)
			|| CASE WHEN i.indisclustered THEN ' clustered' ELSE '' END
			|| CASE WHEN i.indisreplident THEN ' replica identity' ELSE '' END
			|| CASE WHEN NOT i.indisvalid THEN ' invalid' ELSE '' END`, "pg_class", "ic.oid"),
			"pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid"),
		// Internal triggers implement foreign keys, which the constraints
		// already describe.
		catLines(catWithComment(`'trigger ' || quote_ident(tg.tgname) || ': ' || pg_get_triggerdef(tg.oid) || ' enabled ' || tg.tgenabled::text`, "pg_trigger", "tg.oid"),
			"pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal"),
		// A view's _RETURN rule is its definition, printed above.
		catLines(catWithComment(`'rule ' || quote_ident(r.rulename) || ': ' || pg_get_ruledef(r.oid) || ' enabled ' || r.ev_enabled::text`, "pg_rewrite", "r.oid"),
			"pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename <> '_RETURN'"),
		catLines(catWithComment(`'policy ' || quote_ident(po.polname) || ': '
			|| CASE WHEN po.polpermissive THEN 'permissive' ELSE 'restrictive' END
			|| ' for ' || po.polcmd::text
			|| ' to ' || (SELECT string_agg(x, ', ' ORDER BY x COLLATE "C") FROM (SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END AS x FROM unnest(po.polroles) r) rs)
			|| coalesce(' using (' || pg_get_expr(po.polqual, po.polrelid) || ')', '')
			|| coalesce(' with check (' || pg_get_expr(po.polwithcheck, po.polrelid) || ')', '')`, "pg_policy", "po.oid"),
			"pg_policy po WHERE po.polrelid = c.oid"),
		catLines(catWithComment(`'statistics ' || `+catQN("sn.nspname", "st.stxname")+` || ': ' || pg_get_statisticsobjdef(st.oid)
			|| ' owner ' || st.stxowner::regrole::text`, "pg_statistic_ext", "st.oid"),
			"pg_statistic_ext st JOIN pg_namespace sn ON sn.oid = st.stxnamespace WHERE st.stxrelid = c.oid"),
	) + `
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND ` + catScope("n.nspname")},

	// Row types of relations other than composite types, implicit array
	// types and the multirange types of ranges come with another object and
	// are described by it.
	{"types", `SELECT 'type ' || ` + catQN("n.nspname", "t.typname") + `, ` + catDesc(
		catF("type", "t.typtype"),
		catF("defined", "t.typisdefined"),
		catF("owner", "t.typowner::regrole"),
		catF("acl", catACL("t.typacl", "'T'", "t.typowner")),
		catF("comment", catComment("pg_type", "t.oid")),
		catF("array type", "CASE WHEN t.typarray <> 0 THEN format_type(t.typarray, NULL) END"),
		`CASE WHEN t.typtype = 'b' THEN `+catDesc(
			catF("input", "t.typinput::regprocedure"),
			catF("output", "t.typoutput::regprocedure"),
			catF("receive", "t.typreceive::regprocedure"),
			catF("send", "t.typsend::regprocedure"),
			catF("typmod in", "t.typmodin::regprocedure"),
			catF("typmod out", "t.typmodout::regprocedure"),
			catF("analyze", "t.typanalyze::regprocedure"),
			catF("subscript", "t.typsubscript::regprocedure"),
			catF("length", "t.typlen"),
			catF("by value", "t.typbyval"),
			catF("alignment", "t.typalign"),
			catF("storage", "t.typstorage"),
			catF("category", "t.typcategory"),
			catF("preferred", "t.typispreferred"),
			catF("delimiter", "t.typdelim"),
			catF("element", "CASE WHEN t.typelem <> 0 THEN format_type(t.typelem, NULL) END"),
			catF("collatable", "t.typcollation <> 0"),
			catF("default", "t.typdefault"),
		)+` END`,
		`CASE WHEN t.typtype = 'c' THEN (SELECT string_agg('attribute ' || quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
			|| CASE WHEN a.attcollation <> ty.typcollation THEN ' collate ' || a.attcollation::regcollation::text ELSE '' END
			|| coalesce(' comment ' || quote_literal((SELECT description FROM pg_description WHERE classoid = 'pg_class'::regclass AND objoid = a.attrelid AND objsubid = a.attnum)), ''),
			E'\n' ORDER BY a.attnum)
			FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
			WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END`,
		catOpt("labels", "CASE WHEN t.typtype = 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) END"),
		`CASE WHEN t.typtype = 'd' THEN `+catDesc(
			catF("base type", "format_type(t.typbasetype, t.typtypmod)"),
			catF("not null", "t.typnotnull"),
			catF("default", "t.typdefault"),
			catF("collation", "CASE WHEN t.typcollation <> 0 THEN t.typcollation::regcollation::text END"),
			catLines(catWithComment("'constraint ' || quote_ident(co.conname) || ': ' || pg_get_constraintdef(co.oid)", "pg_constraint", "co.oid"),
				"pg_constraint co WHERE co.contypid = t.oid"),
		)+` END`,
		`(SELECT `+catDesc(
			catF("subtype", "format_type(r.rngsubtype, NULL)"),
			catF("collation", "CASE WHEN r.rngcollation <> 0 THEN r.rngcollation::regcollation::text END"),
			catF("subtype opclass", "(SELECT "+catQN("ocn.nspname", "oc.opcname")+" FROM pg_opclass oc JOIN pg_namespace ocn ON ocn.oid = oc.opcnamespace WHERE oc.oid = r.rngsubopc)"),
			catF("canonical", "r.rngcanonical::regprocedure"),
			catF("subdiff", "r.rngsubdiff::regprocedure"),
			catF("multirange", "format_type(r.rngmultitypid, NULL)"),
		)+` FROM pg_range r WHERE r.rngtypid = t.oid)`,
	) + `
	FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
	WHERE ` + catScope("n.nspname") + ` AND t.typtype <> 'm'
	AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
	AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)`},

	// Operator names are not identifiers; quote_ident would quote them all.
	{"operators", `SELECT 'operator ' || quote_ident(n.nspname) || '.' || o.oprname || '(' || CASE WHEN o.oprleft = 0 THEN 'NONE' ELSE format_type(o.oprleft, NULL) END || ', ' || format_type(o.oprright, NULL) || ')', ` + catDesc(
		catF("kind", "o.oprkind"),
		catF("result", "format_type(o.oprresult, NULL)"),
		catF("function", "o.oprcode::regprocedure"),
		catF("commutator", "CASE WHEN o.oprcom <> 0 THEN o.oprcom::regoperator::text END"),
		catF("negator", "CASE WHEN o.oprnegate <> 0 THEN o.oprnegate::regoperator::text END"),
		catF("restrict", "o.oprrest::regprocedure"),
		catF("join", "o.oprjoin::regprocedure"),
		catF("merges", "o.oprcanmerge"),
		catF("hashes", "o.oprcanhash"),
		catF("owner", "o.oprowner::regrole"),
		catF("comment", catComment("pg_operator", "o.oid")),
	) + ` FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace WHERE ` + catScope("n.nspname")},

	{"operator classes", `SELECT 'operator class ' || ` + catQN("n.nspname", "oc.opcname") + ` || ' using ' || quote_ident(am.amname), ` + catDesc(
		catF("family", "(SELECT "+catQN("fn.nspname", "f.opfname")+" FROM pg_opfamily f JOIN pg_namespace fn ON fn.oid = f.opfnamespace WHERE f.oid = oc.opcfamily)"),
		catF("input type", "format_type(oc.opcintype, NULL)"),
		catF("default", "oc.opcdefault"),
		catF("storage", "CASE WHEN oc.opckeytype <> 0 THEN format_type(oc.opckeytype, NULL) END"),
		catF("owner", "oc.opcowner::regrole"),
		catF("comment", catComment("pg_opclass", "oc.oid")),
	) + ` FROM pg_opclass oc JOIN pg_namespace n ON n.oid = oc.opcnamespace JOIN pg_am am ON am.oid = oc.opcmethod WHERE ` + catScope("n.nspname")},

	// Members are listed for the families in scope and, for built-in
	// families, the members a script added (ALTER OPERATOR FAMILY ... ADD).
	{"operator families", `SELECT 'operator family ' || ` + catQN("n.nspname", "f.opfname") + ` || ' using ' || quote_ident(am.amname)
		|| CASE WHEN ` + catScope("n.nspname") + ` THEN '' ELSE ' (members added)' END, ` + catDesc(
		`CASE WHEN `+catScope("n.nspname")+` THEN `+catDesc(
			catF("owner", "f.opfowner::regrole"),
			catF("comment", catComment("pg_opfamily", "f.oid")),
		)+` END`,
		catLines(`'operator ' || ao.amopstrategy || ' ' || ao.amopopr::regoperator::text
			|| ' (' || format_type(ao.amoplefttype, NULL) || ', ' || format_type(ao.amoprighttype, NULL) || ')'
			|| CASE WHEN ao.amoppurpose = 'o' THEN ' for order by ' || (SELECT `+catQN("sfn.nspname", "sf.opfname")+` FROM pg_opfamily sf JOIN pg_namespace sfn ON sfn.oid = sf.opfnamespace WHERE sf.oid = ao.amopsortfamily) ELSE '' END`,
			"pg_amop ao WHERE ao.amopfamily = f.oid AND ("+catScope("n.nspname")+" OR ao.oid >= "+catUserOID+")"),
		catLines(`'function ' || ap.amprocnum || ' (' || format_type(ap.amproclefttype, NULL) || ', ' || format_type(ap.amprocrighttype, NULL) || ') ' || ap.amproc::regprocedure::text`,
			"pg_amproc ap WHERE ap.amprocfamily = f.oid AND ("+catScope("n.nspname")+" OR ap.oid >= "+catUserOID+")"),
	) + `
	FROM pg_opfamily f JOIN pg_namespace n ON n.oid = f.opfnamespace JOIN pg_am am ON am.oid = f.opfmethod
	WHERE ` + catScope("n.nspname") + `
	OR EXISTS (SELECT FROM pg_amop ao WHERE ao.amopfamily = f.oid AND ao.oid >= ` + catUserOID + `)
	OR EXISTS (SELECT FROM pg_amproc ap WHERE ap.amprocfamily = f.oid AND ap.oid >= ` + catUserOID + `)`},

	{"casts", `SELECT 'cast (' || format_type(ca.castsource, NULL) || ' AS ' || format_type(ca.casttarget, NULL) || ')', ` + catDesc(
		catF("function", "ca.castfunc::regprocedure"),
		catF("context", "ca.castcontext"),
		catF("method", "ca.castmethod"),
		catF("comment", catComment("pg_cast", "ca.oid")),
	) + ` FROM pg_cast ca WHERE ca.oid >= ` + catUserOID},

	// collversion is left out: it is the version of the operating system's
	// collation library, a property of the host rather than of the install.
	{"collations", `SELECT 'collation ' || ` + catQN("n.nspname", "co.collname") + `, ` + catDesc(
		catF("provider", "co.collprovider"),
		catF("deterministic", "co.collisdeterministic"),
		catF("encoding", "pg_encoding_to_char(co.collencoding)"),
		catF("collate", "co.collcollate"),
		catF("ctype", "co.collctype"),
		// The ICU locale column was renamed in PostgreSQL 17; through
		// jsonb the query works with either name.
		catF("locale", "coalesce(to_jsonb(co) ->> 'colliculocale', to_jsonb(co) ->> 'colllocale')"),
		catF("icu rules", "to_jsonb(co) ->> 'collicurules'"),
		catF("owner", "co.collowner::regrole"),
		catF("comment", catComment("pg_collation", "co.oid")),
	) + ` FROM pg_collation co JOIN pg_namespace n ON n.oid = co.collnamespace WHERE ` + catScope("n.nspname")},

	{"conversions", `SELECT 'conversion ' || ` + catQN("n.nspname", "cv.conname") + `, ` + catDesc(
		catF("from", "pg_encoding_to_char(cv.conforencoding)"),
		catF("to", "pg_encoding_to_char(cv.contoencoding)"),
		catF("function", "cv.conproc::regprocedure"),
		catF("default", "cv.condefault"),
		catF("owner", "cv.conowner::regrole"),
		catF("comment", catComment("pg_conversion", "cv.oid")),
	) + ` FROM pg_conversion cv JOIN pg_namespace n ON n.oid = cv.connamespace WHERE ` + catScope("n.nspname")},

	{"text search parsers", `SELECT 'text search parser ' || ` + catQN("n.nspname", "p.prsname") + `, ` + catDesc(
		catF("start", "p.prsstart::regprocedure"),
		catF("gettoken", "p.prstoken::regprocedure"),
		catF("end", "p.prsend::regprocedure"),
		catF("headline", "p.prsheadline::regprocedure"),
		catF("lextypes", "p.prslextype::regprocedure"),
		catF("comment", catComment("pg_ts_parser", "p.oid")),
	) + ` FROM pg_ts_parser p JOIN pg_namespace n ON n.oid = p.prsnamespace WHERE ` + catScope("n.nspname")},

	{"text search templates", `SELECT 'text search template ' || ` + catQN("n.nspname", "tt.tmplname") + `, ` + catDesc(
		catF("init", "tt.tmplinit::regprocedure"),
		catF("lexize", "tt.tmpllexize::regprocedure"),
		catF("comment", catComment("pg_ts_template", "tt.oid")),
	) + ` FROM pg_ts_template tt JOIN pg_namespace n ON n.oid = tt.tmplnamespace WHERE ` + catScope("n.nspname")},

	{"text search dictionaries", `SELECT 'text search dictionary ' || ` + catQN("n.nspname", "d.dictname") + `, ` + catDesc(
		catF("template", "(SELECT "+catQN("tn.nspname", "tt.tmplname")+" FROM pg_ts_template tt JOIN pg_namespace tn ON tn.oid = tt.tmplnamespace WHERE tt.oid = d.dicttemplate)"),
		catF("options", "d.dictinitoption"),
		catF("owner", "d.dictowner::regrole"),
		catF("comment", catComment("pg_ts_dict", "d.oid")),
	) + ` FROM pg_ts_dict d JOIN pg_namespace n ON n.oid = d.dictnamespace WHERE ` + catScope("n.nspname")},

	// Token types are numbers defined by the parser, not OIDs.
	{"text search configurations", `SELECT 'text search configuration ' || ` + catQN("n.nspname", "cf.cfgname") + `, ` + catDesc(
		catF("parser", "(SELECT "+catQN("pn.nspname", "p.prsname")+" FROM pg_ts_parser p JOIN pg_namespace pn ON pn.oid = p.prsnamespace WHERE p.oid = cf.cfgparser)"),
		catF("owner", "cf.cfgowner::regrole"),
		catF("comment", catComment("pg_ts_config", "cf.oid")),
		`(SELECT string_agg('mapping ' || m.maptokentype || ' ' || m.mapseqno || ' ' || m.mapdict::regdictionary::text, E'\n' ORDER BY m.maptokentype, m.mapseqno)
			FROM pg_ts_config_map m WHERE m.mapcfg = cf.oid)`,
	) + ` FROM pg_ts_config cf JOIN pg_namespace n ON n.oid = cf.cfgnamespace WHERE ` + catScope("n.nspname")},

	{"event triggers", `SELECT 'event trigger ' || quote_ident(e.evtname), ` + catDesc(
		catF("event", "e.evtevent"),
		catF("function", "e.evtfoid::regprocedure"),
		catF("enabled", "e.evtenabled"),
		catF("tags", catSorted("e.evttags")),
		catF("owner", "e.evtowner::regrole"),
		catF("comment", catComment("pg_event_trigger", "e.oid")),
	) + ` FROM pg_event_trigger e WHERE e.oid >= ` + catUserOID},

	{"languages", `SELECT 'language ' || quote_ident(l.lanname), ` + catDesc(
		catF("handler", "l.lanplcallfoid::regprocedure"),
		catF("inline", "l.laninline::regprocedure"),
		catF("validator", "l.lanvalidator::regprocedure"),
		catF("trusted", "l.lanpltrusted"),
		catF("procedural", "l.lanispl"),
		catF("owner", "l.lanowner::regrole"),
		catF("acl", catACL("l.lanacl", "'l'", "l.lanowner")),
		catF("comment", catComment("pg_language", "l.oid")),
	) + ` FROM pg_language l WHERE l.oid >= ` + catUserOID},

	{"access methods", `SELECT 'access method ' || quote_ident(am.amname), ` + catDesc(
		catF("type", "am.amtype"),
		catF("handler", "am.amhandler::regprocedure"),
		catF("comment", catComment("pg_am", "am.oid")),
	) + ` FROM pg_am am WHERE am.oid >= ` + catUserOID},

	{"transforms", `SELECT 'transform for ' || format_type(tr.trftype, NULL) || ' language ' || quote_ident(l.lanname), ` + catDesc(
		catF("from sql", "tr.trffromsql::regprocedure"),
		catF("to sql", "tr.trftosql::regprocedure"),
		catF("comment", catComment("pg_transform", "tr.oid")),
	) + ` FROM pg_transform tr JOIN pg_language l ON l.oid = tr.trflang WHERE tr.oid >= ` + catUserOID},

	{"foreign-data wrappers", `SELECT 'foreign-data wrapper ' || quote_ident(w.fdwname), ` + catDesc(
		catF("handler", "w.fdwhandler::regprocedure"),
		catF("validator", "w.fdwvalidator::regprocedure"),
		catF("options", catSorted("w.fdwoptions")),
		catF("owner", "w.fdwowner::regrole"),
		catF("acl", catACL("w.fdwacl", "'F'", "w.fdwowner")),
		catF("comment", catComment("pg_foreign_data_wrapper", "w.oid")),
	) + ` FROM pg_foreign_data_wrapper w WHERE w.oid >= ` + catUserOID},

	{"foreign servers", `SELECT 'server ' || quote_ident(s.srvname), ` + catDesc(
		catF("wrapper", "(SELECT quote_ident(fdwname) FROM pg_foreign_data_wrapper WHERE oid = s.srvfdw)"),
		catF("type", "s.srvtype"),
		catF("version", "s.srvversion"),
		catF("options", catSorted("s.srvoptions")),
		catF("owner", "s.srvowner::regrole"),
		catF("acl", catACL("s.srvacl", "'S'", "s.srvowner")),
		catF("comment", catComment("pg_foreign_server", "s.oid")),
	) + ` FROM pg_foreign_server s WHERE s.oid >= ` + catUserOID},

	// The view rather than pg_user_mapping, which only superusers may read.
	{"user mappings", `SELECT 'user mapping for ' || quote_ident(um.usename) || ' server ' || quote_ident(um.srvname), ` + catDesc(
		catF("options", catSorted("um.umoptions")),
	) + ` FROM pg_user_mappings um`},

	{"default privileges", `SELECT 'default privileges for role ' || d.defaclrole::regrole::text
		|| coalesce(' in schema ' || quote_ident(n.nspname), '') || ' on ' || d.defaclobjtype::text, ` + catDesc(
		catF("acl", catSorted("d.defaclacl")),
	) + ` FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
	WHERE d.defaclnamespace = 0 OR ` + catScope("n.nspname")},

	{"database settings", `SELECT 'database settings for ' || CASE WHEN s.setrole = 0 THEN 'all roles' ELSE 'role ' || s.setrole::regrole::text END, ` + catDesc(
		catF("settings", catSorted("s.setconfig")),
	) + ` FROM pg_db_role_setting s WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())`},
}

// catDataSQL lists the tables whose rows and the sequences whose state the
// snapshot dumps. Partitioned tables hold no rows of their own: their rows
// are dumped with the partitions, through ONLY, so that a row in the wrong
// partition shows.
const catDataSQL = `SELECT c.relkind = 'S', ` + "quote_ident(n.nspname) || '.' || quote_ident(c.relname)" + `
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE c.relkind IN ('r', 'S') AND n.nspname NOT IN ('information_schema', 'pgverbs') AND n.nspname !~ '^pg_'`

// catalogSnapshot describes every user object of the database conn is
// connected to: the objects of every schema but the system ones and pgverbs,
// the rows of their tables, and the schema-less objects created after initdb.
// Extension membership (pg_extension, deptype 'e' dependencies) and
// pg_init_privs are left out: they differ by design between CREATE
// EXTENSION and pgverbs. It reads in one read-only repeatable-read
// transaction, so the snapshot is consistent, and leaves the session's
// settings as they were. conn must not be inside a transaction.
func catalogSnapshot(ctx context.Context, conn *pgx.Conn) (catalog, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	// A read-only transaction has nothing to commit.
	defer tx.Rollback(context.Background())

	names := make([]string, 0, len(catSettings))
	for name := range catSettings {
		names = append(names, name)
	}
	slices.Sort(names)
	var set strings.Builder
	args := make([]any, 0, 2*len(names))
	for i, name := range names {
		if i > 0 {
			set.WriteString(", ")
		}
		fmt.Fprintf(&set, "set_config($%d, $%d, true)", 2*i+1, 2*i+2)
		args = append(args, name, catSettings[name])
	}
	if _, err := tx.Exec(ctx, "SELECT "+set.String(), args...); err != nil {
		return nil, fmt.Errorf("snapshot settings: %w", err)
	}

	// All queries in one round trip each way: the snapshot is dominated by
	// latency otherwise.
	var cat catalog
	batch := &pgx.Batch{}
	for _, q := range catQueries {
		batch.Queue(q.sql).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var e catEntry
				if err := rows.Scan(&e.Key, &e.Desc); err != nil {
					return fmt.Errorf("%s: %w", q.name, err)
				}
				cat = append(cat, e)
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
			return nil
		})
	}
	var tables, sequences []string
	batch.Queue(catDataSQL).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var isSeq bool
			var name string
			if err := rows.Scan(&isSeq, &name); err != nil {
				return err
			}
			if isSeq {
				sequences = append(sequences, name)
			} else {
				tables = append(tables, name)
			}
		}
		return rows.Err()
	})
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, err
	}

	// Sorted in the server under the C collation: a row's text is
	// compared byte-wise whatever the database's collation. Newlines inside
	// values are escaped so that one line is one row. The alias is unlikely
	// to be a column name, which would win over the whole-row reference.
	batch = &pgx.Batch{}
	for _, name := range tables {
		batch.Queue(`SELECT count(*), coalesce(string_agg(replace(x, E'\n', '\n'), E'\n' ORDER BY x COLLATE "C"), '')
			FROM (SELECT catalog_snapshot_row::text AS x FROM ONLY ` + name + ` catalog_snapshot_row) s`).QueryRow(func(row pgx.Row) error {
			var n int64
			var rows string
			if err := row.Scan(&n, &rows); err != nil {
				return fmt.Errorf("rows of %s: %w", name, err)
			}
			desc := fmt.Sprintf("%d rows", n)
			if n > 0 {
				desc += "\n" + rows
			}
			cat = append(cat, catEntry{"rows of " + name, desc})
			return nil
		})
	}
	// log_cnt is left out: it counts values WAL-logged ahead and depends on
	// checkpoints, not on what the scripts did.
	for _, name := range sequences {
		batch.Queue(`SELECT 'last value: ' || last_value || E'\nis called: ' || is_called FROM ` + name).QueryRow(func(row pgx.Row) error {
			var desc string
			if err := row.Scan(&desc); err != nil {
				return fmt.Errorf("state of %s: %w", name, err)
			}
			cat = append(cat, catEntry{"sequence state " + name, desc})
			return nil
		})
	}
	if err := tx.SendBatch(ctx, batch).Close(); err != nil {
		return nil, err
	}

	slices.SortFunc(cat, func(a, b catEntry) int { return strings.Compare(a.Key, b.Key) })
	for i := 1; i < len(cat); i++ {
		if cat[i].Key == cat[i-1].Key {
			// Two objects under one key would hide each other's
			// differences.
			return nil, fmt.Errorf("snapshot: two objects named %q", cat[i].Key)
		}
	}
	return cat, nil
}

// catDiffContext is how many lines around the first differing line a
// description is shown with; the rows of a table can run to thousands.
const catDiffContext = 8

// diffCatalogs returns "" when a and b describe the same objects, else the
// first differing object (in key order) with both descriptions and the first
// line where they differ, followed by the number and keys of the further
// differences. aName and bName label the two sides.
func diffCatalogs(a, b catalog, aName, bName string) string {
	type difference struct {
		key        string
		aDesc      *string // nil: the object is missing on that side
		bDesc      *string
		onlyInName string
	}
	var diffs []difference
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Key < b[j].Key):
			diffs = append(diffs, difference{key: a[i].Key, aDesc: &a[i].Desc, onlyInName: aName})
			i++
		case i == len(a) || b[j].Key < a[i].Key:
			diffs = append(diffs, difference{key: b[j].Key, bDesc: &b[j].Desc, onlyInName: bName})
			j++
		default:
			if a[i].Desc != b[j].Desc {
				diffs = append(diffs, difference{key: a[i].Key, aDesc: &a[i].Desc, bDesc: &b[j].Desc})
			}
			i++
			j++
		}
	}
	if len(diffs) == 0 {
		return ""
	}

	var out strings.Builder
	d := diffs[0]
	if d.onlyInName != "" {
		desc := d.aDesc
		if desc == nil {
			desc = d.bDesc
		}
		fmt.Fprintf(&out, "%s: only in %s:\n", d.key, d.onlyInName)
		writeCatLines(&out, strings.Split(*desc, "\n"), 0)
	} else {
		al, bl := strings.Split(*d.aDesc, "\n"), strings.Split(*d.bDesc, "\n")
		n := 0
		for n < len(al) && n < len(bl) && al[n] == bl[n] {
			n++
		}
		fmt.Fprintf(&out, "%s: differs at line %d:\n", d.key, n+1)
		fmt.Fprintf(&out, "  %s: %s\n  %s: %s\n", aName, catLineAt(al, n), bName, catLineAt(bl, n))
		fmt.Fprintf(&out, "%s:\n", aName)
		writeCatLines(&out, al, n)
		fmt.Fprintf(&out, "%s:\n", bName)
		writeCatLines(&out, bl, n)
	}
	if rest := diffs[1:]; len(rest) > 0 {
		fmt.Fprintf(&out, "and %d further differences:", len(rest))
		const listed = 20
		for k, r := range rest {
			if k == listed {
				fmt.Fprintf(&out, "\n  ...")
				break
			}
			what := "differs"
			if r.onlyInName != "" {
				what = "only in " + r.onlyInName
			}
			fmt.Fprintf(&out, "\n  %s (%s)", r.key, what)
		}
		out.WriteString("\n")
	}
	return out.String()
}

// catLineAt is line n, or a marker past the end of a description.
func catLineAt(lines []string, n int) string {
	if n < len(lines) {
		return lines[n]
	}
	return "(no more lines)"
}

// writeCatLines writes the lines of a description indented, only those
// within catDiffContext of line at when there are many.
func writeCatLines(out *strings.Builder, lines []string, at int) {
	from, to := max(0, at-catDiffContext), min(len(lines), at+catDiffContext+1)
	if len(lines) <= 3*catDiffContext {
		from, to = 0, len(lines)
	}
	if from > 0 {
		fmt.Fprintf(out, "    ... %d lines\n", from)
	}
	for _, l := range lines[from:to] {
		fmt.Fprintf(out, "    %s\n", l)
	}
	if to < len(lines) {
		fmt.Fprintf(out, "    ... %d lines\n", len(lines)-to)
	}
}

// catSetupBlocks create one object kind each (on top of schema app and role
// cat_user) and do not depend on each other, so that they can run in any
// order. catSetupLast depends on being last: default privileges apply to the
// objects created after them.
var catSetupBlocks = []string{
	`GRANT USAGE ON SCHEMA app TO cat_user;
	COMMENT ON SCHEMA app IS 'application';`,

	`CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END$$;
	CREATE TABLE app.items (
		id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		name varchar(20) NOT NULL CHECK (name <> ''),
		note text DEFAULT 'none',
		price numeric(8,2) DEFAULT 0,
		owner_name text DEFAULT current_user,
		doubled numeric GENERATED ALWAYS AS (price * 2) STORED
	) WITH (fillfactor = 90);
	CREATE INDEX items_name_idx ON app.items (lower(name));
	CREATE TRIGGER items_touch BEFORE INSERT ON app.items FOR EACH ROW EXECUTE FUNCTION app.touch();
	ALTER TABLE app.items ENABLE ROW LEVEL SECURITY;
	CREATE POLICY items_own ON app.items FOR SELECT TO cat_user USING (owner_name = current_user);
	CREATE RULE items_log AS ON DELETE TO app.items DO ALSO NOTIFY items_deleted;
	GRANT SELECT, INSERT ON app.items TO cat_user;
	GRANT UPDATE (note) ON app.items TO cat_user;
	COMMENT ON TABLE app.items IS 'things';
	COMMENT ON COLUMN app.items.note IS 'free text';
	INSERT INTO app.items (name, price) VALUES ('apple', 1.5), ('pear', 2);`,

	`CREATE TABLE app.settings (key text PRIMARY KEY, value text NOT NULL);
	CREATE STATISTICS app.settings_stats ON key, value FROM app.settings;
	INSERT INTO app.settings VALUES ('mode', 'fast'), ('level', '3'), ('multi', E'line one\nline two');`,

	`CREATE UNLOGGED TABLE app.scratch (id int, payload jsonb);
	INSERT INTO app.scratch VALUES (1, '{"a": 1}');`,

	`CREATE TABLE app.events (id int, at date) PARTITION BY RANGE (at);
	CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
	INSERT INTO app.events VALUES (1, '2024-05-01');`,

	`CREATE TABLE app.base (id int, label text);
	CREATE TABLE app.child (extra int) INHERITS (app.base);
	INSERT INTO app.child VALUES (1, 'c', 2);`,

	`CREATE VIEW app.modes AS SELECT v.k, v.n FROM (VALUES ('a', 1), ('b', 2)) v(k, n) WHERE v.n > 0;
	CREATE MATERIALIZED VIEW app.mv AS SELECT generate_series(1, 3) AS n;`,

	`CREATE SEQUENCE app.counter START 10 INCREMENT 5 CACHE 1;
	SELECT nextval('app.counter');
	SELECT nextval('app.counter');`,

	`CREATE FUNCTION app.add1(i int) RETURNS int LANGUAGE sql IMMUTABLE STRICT SET search_path = app, pg_catalog AS 'SELECT i + 1';
	REVOKE EXECUTE ON FUNCTION app.add1(int) FROM PUBLIC;
	GRANT EXECUTE ON FUNCTION app.add1(int) TO cat_user;
	COMMENT ON FUNCTION app.add1(int) IS 'adds one';
	CREATE PROCEDURE app.noop() LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
	CREATE FUNCTION app.std(i int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT i * 2; END;`,

	`CREATE FUNCTION app.sum_step(acc int, v int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT acc + v';
	CREATE AGGREGATE app.total(int) (SFUNC = app.sum_step, STYPE = int, INITCOND = '0');`,

	`CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
	ALTER TYPE app.mood ADD VALUE 'meh' BEFORE 'ok';`,

	`CREATE DOMAIN app.posint AS int NOT NULL DEFAULT 1 CONSTRAINT posint_positive CHECK (VALUE > 0);`,

	`CREATE TYPE app.pair AS (a int, b text);
	CREATE TYPE app.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi);`,

	`CREATE FUNCTION app.approx_eq(a float8, b float8) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT abs(a - b) < 0.001';
	CREATE OPERATOR app.=~= (LEFTARG = float8, RIGHTARG = float8, FUNCTION = app.approx_eq, COMMUTATOR = OPERATOR(app.=~=));`,

	`CREATE TYPE app.celsius AS (deg float8);
	CREATE FUNCTION app.celsius_to_float(c app.celsius) RETURNS float8 LANGUAGE sql IMMUTABLE AS 'SELECT c.deg';
	CREATE CAST (app.celsius AS float8) WITH FUNCTION app.celsius_to_float(app.celsius) AS ASSIGNMENT;`,

	`CREATE FUNCTION app.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN NULL; END$$;
	CREATE EVENT TRIGGER app_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'DROP TABLE') EXECUTE FUNCTION app.on_ddl();
	COMMENT ON EVENT TRIGGER app_ddl IS 'watches';`,

	`CREATE OPERATOR CLASS app.int4_hash_ops FOR TYPE int4 USING hash AS OPERATOR 1 =, FUNCTION 1 hashint4(int4);`,

	`CREATE COLLATION app.bytes (provider = libc, locale = 'C');`,

	`CREATE CONVERSION app.latin1_utf8 FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8;`,

	`CREATE TEXT SEARCH DICTIONARY app.simple_dict (TEMPLATE = simple, STOPWORDS = english);
	CREATE TEXT SEARCH CONFIGURATION app.ts (COPY = simple);
	ALTER TEXT SEARCH CONFIGURATION app.ts ALTER MAPPING FOR word WITH app.simple_dict;`,

	`CREATE FOREIGN DATA WRAPPER cat_fdw;
	CREATE SERVER cat_srv FOREIGN DATA WRAPPER cat_fdw OPTIONS (host 'a', port '1');
	CREATE USER MAPPING FOR cat_user SERVER cat_srv OPTIONS (user 'u');
	CREATE FOREIGN TABLE app.remote (a int OPTIONS (column_name 'x')) SERVER cat_srv OPTIONS (table_name 't');`,
}

const catSetupLast = `ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO cat_user;`

// catDBSetting is set on every test database; CREATE DATABASE ... TEMPLATE
// does not copy per-database settings.
const catDBSetting = `DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET app.flag = on', current_database()); END$$`

// catExec runs sql, possibly several statements, in database db.
func catExec(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.PgConn().Exec(ctx, sql).ReadAll()
	return err
}

// catSnap connects to url and takes a snapshot.
func catSnap(t *testing.T, ctx context.Context, url string) (catalog, time.Duration) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	start := time.Now()
	cat, err := catalogSnapshot(ctx, conn)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	return cat, time.Since(start)
}

func TestCatalogDiff(t *testing.T) {
	c := cluster(t, pgtest.Options{})
	ctx := testCtx(t)
	url := func(db string) string { return c.URL(c.User, c.Password, db) }
	createDB := func(t *testing.T, name, template string, scripts ...string) {
		t.Helper()
		sql := "CREATE DATABASE " + name
		if template != "" {
			sql += " TEMPLATE " + template
		}
		if err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
		for _, s := range append([]string{catDBSetting}, scripts...) {
			if err := catExec(ctx, url(name), s); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, s)
			}
		}
	}
	if err := c.Exec(ctx, "CREATE ROLE cat_user"); err != nil {
		t.Fatal(err)
	}

	inOrder := append([]string{"CREATE SCHEMA app"}, catSetupBlocks...)
	inOrder = append(inOrder, catSetupLast)
	// The reversed database gets every OID different: objects made and
	// dropped first, then the blocks in the opposite order.
	reversed := []string{`CREATE TABLE pad AS SELECT 1 AS a; CREATE TYPE padtype AS ENUM ('x');
		CREATE FUNCTION padf() RETURNS int LANGUAGE sql AS 'SELECT 1';
		DROP TABLE pad; DROP TYPE padtype; DROP FUNCTION padf();`, "CREATE SCHEMA app"}
	for i := len(catSetupBlocks) - 1; i >= 0; i-- {
		reversed = append(reversed, catSetupBlocks[i])
	}
	reversed = append(reversed, catSetupLast)
	createDB(t, "cat_a", "", inOrder...)
	createDB(t, "cat_b", "", inOrder...)
	createDB(t, "cat_c", "", reversed...)

	a, took := catSnap(t, ctx, url("cat_a"))
	t.Logf("snapshot of cat_a: %d objects in %v", len(a), took)
	// Each kind the snapshot covers shows up, so that an equal diff below
	// means something.
	keys := make(map[string]bool, len(a))
	for _, e := range a {
		keys[e.Key] = true
	}
	for _, k := range []string{
		"schema app",
		"relation app.items", "relation app.items_id_seq", "relation app.scratch", "relation app.events_2024",
		"relation app.modes", "relation app.mv", "relation app.counter", "relation app.remote",
		"rows of app.items", "rows of app.settings", "rows of app.events_2024", "rows of app.child",
		"sequence state app.counter", "sequence state app.items_id_seq",
		"routine app.add1(i integer)", "routine app.noop()", "routine app.total(integer)",
		"type app.mood", "type app.posint", "type app.pair", "type app.floatrange",
		"operator app.=~=(double precision, double precision)",
		"operator class app.int4_hash_ops using hash", "operator family app.int4_hash_ops using hash",
		"cast (app.celsius AS double precision)",
		"collation app.bytes", "conversion app.latin1_utf8",
		"text search dictionary app.simple_dict", "text search configuration app.ts",
		"event trigger app_ddl",
		"foreign-data wrapper cat_fdw", "server cat_srv", "user mapping for cat_user server cat_srv",
		"default privileges for role " + c.User + " in schema app on r",
		"database settings for all roles",
	} {
		if !keys[k] {
			t.Errorf("snapshot of cat_a has no %q", k)
		}
	}
	if t.Failed() {
		for _, e := range a {
			t.Logf("%s", e.Key)
		}
		t.FailNow()
	}
	for _, e := range a {
		if strings.Contains(e.Key, "pgverbs") || strings.Contains(e.Key, "pg_catalog.") {
			t.Errorf("snapshot has a system object: %s", e.Key)
		}
	}

	b, _ := catSnap(t, ctx, url("cat_b"))
	if d := diffCatalogs(a, b, "cat_a", "cat_b"); d != "" {
		t.Fatalf("same scripts, different snapshots:\n%s", d)
	}
	reversedCat, _ := catSnap(t, ctx, url("cat_c"))
	if d := diffCatalogs(a, reversedCat, "cat_a", "cat_c"); d != "" {
		t.Fatalf("same objects created in another order, different snapshots:\n%s", d)
	}

	// Real extension scripts, in two orders: what they create (shell
	// operators, array types, operator families filled by several classes)
	// must compare equal too, and the timing is that of a database of
	// realistic size.
	t.Run("contrib extensions in two orders", func(t *testing.T) {
		exts := []string{"hstore", "pg_trgm", "btree_gist", "btree_gin", "citext", "ltree", "intarray", "isn", "seg", "cube", "earthdistance", "pgcrypto", "fuzzystrmatch", "postgres_fdw"}
		var n int
		conn, err := pgx.Connect(ctx, url("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_available_extensions WHERE name = ANY($1)", exts).Scan(&n)
		conn.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n != len(exts) {
			t.Skipf("only %d of the contrib extensions %v are installed", n, exts)
		}
		var forward, backward strings.Builder
		for i := range exts {
			fmt.Fprintf(&forward, "CREATE EXTENSION IF NOT EXISTS %q CASCADE;\n", exts[i])
			fmt.Fprintf(&backward, "CREATE EXTENSION IF NOT EXISTS %q CASCADE;\n", exts[len(exts)-1-i])
		}
		createDB(t, "cat_ext_a", "", forward.String())
		createDB(t, "cat_ext_b", "", reversed[0], backward.String())
		x, took := catSnap(t, ctx, url("cat_ext_a"))
		t.Logf("snapshot of %d extensions: %d objects in %v", len(exts), len(x), took)
		y, _ := catSnap(t, ctx, url("cat_ext_b"))
		if d := diffCatalogs(x, y, "forward", "backward"); d != "" {
			t.Fatalf("same extensions created in another order, different snapshots:\n%s", d)
		}
	})

	// Each case changes one thing in a copy of cat_b. key is the object the
	// diff must name, field a text the diff must show; an empty key means
	// the change must not show at all.
	cases := []struct {
		name, sql, key, field string
	}{
		{"no change", ``, "", ""},
		{"pgverbs schema ignored", `CREATE SCHEMA pgverbs; CREATE TABLE pgverbs.extensions (name text); INSERT INTO pgverbs.extensions VALUES ('x')`, "", ""},
		{"explicit default acl", `GRANT EXECUTE ON FUNCTION app.std(int) TO PUBLIC`, "", ""},
		{"function body", `CREATE OR REPLACE FUNCTION app.add1(i int) RETURNS int LANGUAGE sql IMMUTABLE STRICT SET search_path = app, pg_catalog AS 'SELECT i + 2'`, "routine app.add1(i integer)", "SELECT i + 2"},
		{"sql-standard body", `CREATE OR REPLACE FUNCTION app.std(i int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT i * 3; END`, "routine app.std(i integer)", "sql body"},
		{"missing grant", `REVOKE EXECUTE ON FUNCTION app.add1(int) FROM cat_user`, "routine app.add1(i integer)", "acl: "},
		{"function config", `ALTER FUNCTION app.add1(int) SET search_path = public`, "routine app.add1(i integer)", "config: "},
		{"procedure config", `ALTER PROCEDURE app.noop() SET work_mem = '1MB'`, "routine app.noop()", "work_mem=1MB"},
		{"volatility", `ALTER FUNCTION app.add1(int) STABLE`, "routine app.add1(i integer)", "volatility: "},
		{"security definer", `ALTER FUNCTION app.add1(int) SECURITY DEFINER`, "routine app.add1(i integer)", "security definer: "},
		{"leakproof", `ALTER FUNCTION app.add1(int) LEAKPROOF`, "routine app.add1(i integer)", "leakproof: "},
		{"parallel", `ALTER FUNCTION app.add1(int) PARALLEL SAFE`, "routine app.add1(i integer)", "parallel: "},
		{"cost", `ALTER FUNCTION app.add1(int) COST 7`, "routine app.add1(i integer)", "cost: "},
		{"function owner", `ALTER FUNCTION app.add1(int) OWNER TO cat_user`, "routine app.add1(i integer)", "owner: cat_user"},
		{"function comment", `COMMENT ON FUNCTION app.add1(int) IS 'adds 1'`, "routine app.add1(i integer)", "adds 1"},
		{"missing function", `DROP FUNCTION app.add1(int)`, "routine app.add1(i integer)", "only in cat_a"},
		{"aggregate", `DROP AGGREGATE app.total(int); CREATE AGGREGATE app.total(int) (SFUNC = app.sum_step, STYPE = int, INITCOND = '1')`, "routine app.total(integer)", "initval: "},
		{"different row", `UPDATE app.settings SET value = 'slow' WHERE key = 'mode'`, "rows of app.settings", "(mode,slow)"},
		{"missing row", `DELETE FROM app.child`, "rows of app.child", "0 rows"},
		{"unlogged row", `INSERT INTO app.scratch VALUES (2, NULL)`, "rows of app.scratch", "(2,)"},
		{"sequence value", `SELECT setval('app.counter', 100)`, "sequence state app.counter", "last value: 100"},
		{"sequence is_called", `SELECT setval('app.counter', 15, false)`, "sequence state app.counter", "is called: false"},
		{"identity sequence value", `INSERT INTO app.items (name) VALUES ('fig')`, "rows of app.items", "fig"},
		{"sequence increment", `ALTER SEQUENCE app.counter INCREMENT 2`, "relation app.counter", "increment: 2"},
		{"default", `ALTER TABLE app.items ALTER COLUMN note SET DEFAULT 'nothing'`, "relation app.items", "column note text default 'nothing'"},
		{"type modifier", `ALTER TABLE app.items ALTER COLUMN name TYPE varchar(30)`, "relation app.items", "character varying(30)"},
		{"not null", `ALTER TABLE app.settings ALTER COLUMN value DROP NOT NULL`, "relation app.settings", "column value text"},
		{"identity", `ALTER TABLE app.items ALTER COLUMN id SET GENERATED BY DEFAULT`, "relation app.items", "generated by default as identity"},
		{"generated column", `ALTER TABLE app.items DROP COLUMN doubled`, "relation app.items", "doubled"},
		{"column collation", `ALTER TABLE app.settings ALTER COLUMN value TYPE text COLLATE app.bytes`, "relation app.settings", "collate app.bytes"},
		{"column storage", `ALTER TABLE app.settings ALTER COLUMN value SET STORAGE external`, "relation app.settings", "storage e"},
		{"column statistics", `ALTER TABLE app.settings ALTER COLUMN value SET STATISTICS 500`, "relation app.settings", "statistics 500"},
		{"column options", `ALTER TABLE app.settings ALTER COLUMN value SET (n_distinct = 5)`, "relation app.settings", "n_distinct=5"},
		{"persistence", `ALTER TABLE app.scratch SET LOGGED`, "relation app.scratch", "persistence: "},
		{"reloptions", `ALTER TABLE app.items SET (fillfactor = 70)`, "relation app.items", "fillfactor=70"},
		{"dropped trigger", `DROP TRIGGER items_touch ON app.items`, "relation app.items", "trigger items_touch"},
		{"disabled trigger", `ALTER TABLE app.items DISABLE TRIGGER items_touch`, "relation app.items", "enabled D"},
		{"table comment", `COMMENT ON TABLE app.items IS 'stuff'`, "relation app.items", "stuff"},
		{"column comment", `COMMENT ON COLUMN app.items.note IS NULL`, "relation app.items", "free text"},
		{"constraint", `ALTER TABLE app.items DROP CONSTRAINT items_name_check`, "relation app.items", "constraint items_name_check"},
		{"constraint comment", `COMMENT ON CONSTRAINT items_name_check ON app.items IS 'nonempty'`, "relation app.items", "nonempty"},
		{"index", `DROP INDEX app.items_name_idx`, "relation app.items", "index items_name_idx"},
		{"clustered", `CLUSTER app.items USING items_pkey`, "relation app.items", "clustered"},
		{"policy", `ALTER POLICY items_own ON app.items USING (true)`, "relation app.items", "policy items_own"},
		{"policy roles", `ALTER POLICY items_own ON app.items TO public`, "relation app.items", "policy items_own"},
		{"row security", `ALTER TABLE app.items DISABLE ROW LEVEL SECURITY`, "relation app.items", "row security: "},
		{"force row security", `ALTER TABLE app.items FORCE ROW LEVEL SECURITY`, "relation app.items", "force row security: "},
		{"rule", `DROP RULE items_log ON app.items`, "relation app.items", "rule items_log"},
		{"table grant", `REVOKE INSERT ON app.items FROM cat_user`, "relation app.items", "acl: "},
		{"column grant", `REVOKE UPDATE (note) ON app.items FROM cat_user`, "relation app.items", "column note"},
		{"replica identity", `ALTER TABLE app.items REPLICA IDENTITY FULL`, "relation app.items", "replica identity: "},
		{"table owner", `ALTER TABLE app.settings OWNER TO cat_user`, "relation app.settings", "owner: cat_user"},
		{"statistics object", `DROP STATISTICS app.settings_stats`, "relation app.settings", "statistics app.settings_stats"},
		{"view", `CREATE OR REPLACE VIEW app.modes AS SELECT v.k, v.n FROM (VALUES ('a', 1), ('b', 2)) v(k, n) WHERE v.n > 1`, "relation app.modes", "definition: "},
		{"view becomes table", `DROP VIEW app.modes; CREATE TABLE app.modes (k text, n int)`, "relation app.modes", "kind: "},
		{"materialized view not populated", `REFRESH MATERIALIZED VIEW app.mv WITH NO DATA`, "relation app.mv", "populated: "},
		{"partition detached", `ALTER TABLE app.events DETACH PARTITION app.events_2024`, "relation app.events_2024", "partition bound: "},
		{"inheritance", `ALTER TABLE app.child NO INHERIT app.base`, "relation app.child", "inherits: "},
		{"extra table", `CREATE TABLE app.extra (a int)`, "relation app.extra", "only in case"},
		{"enum label", `ALTER TYPE app.mood ADD VALUE 'ecstatic'`, "type app.mood", "labels: "},
		{"enum label order", `DROP TYPE app.mood; CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'meh', 'happy')`, "type app.mood", "labels: "},
		{"domain constraint", `ALTER DOMAIN app.posint DROP CONSTRAINT posint_positive`, "type app.posint", "constraint posint_positive"},
		{"domain default", `ALTER DOMAIN app.posint SET DEFAULT 2`, "type app.posint", "default: 2"},
		{"composite attribute", `ALTER TYPE app.pair ADD ATTRIBUTE c int`, "type app.pair", "attribute c integer"},
		{"range subdiff", `DROP TYPE app.floatrange; CREATE TYPE app.floatrange AS RANGE (subtype = float8)`, "type app.floatrange", "subdiff: "},
		{"type comment", `COMMENT ON TYPE app.mood IS 'feelings'`, "type app.mood", "feelings"},
		{"type grant", `REVOKE USAGE ON TYPE app.mood FROM PUBLIC`, "type app.mood", "acl: "},
		{"operator", `ALTER OPERATOR app.=~= (float8, float8) SET (RESTRICT = eqsel)`, "operator app.=~=(double precision, double precision)", "restrict: "},
		{"operator family member", `ALTER OPERATOR FAMILY app.int4_hash_ops USING hash ADD FUNCTION 2 hashint4extended(int4, int8)`, "operator family app.int4_hash_ops using hash", "hashint4extended"},
		{"operator added to built-in family", `CREATE FUNCTION app.int_float_lt(a int4, b float8) RETURNS bool LANGUAGE sql AS 'SELECT a < b';
			CREATE OPERATOR app.<<< (LEFTARG = int4, RIGHTARG = float8, FUNCTION = app.int_float_lt);
			ALTER OPERATOR FAMILY integer_ops USING btree ADD OPERATOR 1 app.<<< (int4, float8)`, "operator family pg_catalog.integer_ops using btree (members added)", "app.<<<"},
		{"cast context", `DROP CAST (app.celsius AS float8); CREATE CAST (app.celsius AS float8) WITH FUNCTION app.celsius_to_float(app.celsius) AS IMPLICIT`, "cast (app.celsius AS double precision)", "context: "},
		{"collation owner", `ALTER COLLATION app.bytes OWNER TO cat_user`, "collation app.bytes", "owner: "},
		{"conversion comment", `COMMENT ON CONVERSION app.latin1_utf8 IS 'latin'`, "conversion app.latin1_utf8", "latin"},
		{"text search mapping", `ALTER TEXT SEARCH CONFIGURATION app.ts DROP MAPPING FOR word`, "text search configuration app.ts", "mapping "},
		{"text search dictionary", `ALTER TEXT SEARCH DICTIONARY app.simple_dict (Accept = false)`, "text search dictionary app.simple_dict", "options: "},
		{"event trigger disabled", `ALTER EVENT TRIGGER app_ddl DISABLE`, "event trigger app_ddl", "enabled: "},
		{"event trigger comment", `COMMENT ON EVENT TRIGGER app_ddl IS 'looks'`, "event trigger app_ddl", "looks"},
		{"wrapper options", `ALTER FOREIGN DATA WRAPPER cat_fdw OPTIONS (ADD debug 'on')`, "foreign-data wrapper cat_fdw", "debug=on"},
		{"server options", `ALTER SERVER cat_srv OPTIONS (SET host 'b')`, "server cat_srv", "host=b"},
		{"user mapping options", `ALTER USER MAPPING FOR cat_user SERVER cat_srv OPTIONS (SET user 'v')`, "user mapping for cat_user server cat_srv", "user=v"},
		{"foreign table options", `ALTER FOREIGN TABLE app.remote OPTIONS (SET table_name 'u')`, "relation app.remote", "table_name=u"},
		{"foreign column options", `ALTER FOREIGN TABLE app.remote ALTER COLUMN a OPTIONS (SET column_name 'y')`, "relation app.remote", "column_name=y"},
		{"schema grant", `REVOKE USAGE ON SCHEMA app FROM cat_user`, "schema app", "acl: "},
		{"schema comment", `COMMENT ON SCHEMA app IS 'apps'`, "schema app", "apps"},
		{"default privileges", `ALTER DEFAULT PRIVILEGES IN SCHEMA app REVOKE SELECT ON TABLES FROM cat_user`, "default privileges for role " + c.User + " in schema app on r", "only in cat_a"},
		{"database setting", `DO $$BEGIN EXECUTE format('ALTER DATABASE %I SET app.flag = off', current_database()); END$$`, "database settings for all roles", "app.flag=off"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := fmt.Sprintf("cat_case_%d", i)
			var scripts []string
			if tc.sql != "" {
				scripts = append(scripts, tc.sql)
			}
			createDB(t, db, "cat_b", scripts...)
			t.Cleanup(func() {
				if err := c.Exec(context.Background(), "DROP DATABASE "+db); err != nil {
					t.Errorf("drop %s: %v", db, err)
				}
			})
			got, _ := catSnap(t, ctx, url(db))
			d := diffCatalogs(a, got, "cat_a", "case")
			switch {
			case tc.key == "" && d != "":
				t.Fatalf("diff should be empty:\n%s", d)
			case tc.key == "":
			case d == "":
				t.Fatalf("diff is empty")
			case !strings.Contains(d, tc.key) || !strings.Contains(d, tc.field):
				t.Fatalf("diff should name %q and show %q:\n%s", tc.key, tc.field, d)
			}
			if testing.Verbose() && d != "" {
				t.Logf("diff:\n%s", d)
			}
		})
	}
}
