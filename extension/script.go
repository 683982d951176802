package extension

import (
	"errors"
	"sort"
	"strings"
	"unicode/utf8"
	"unsafe"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// stripEcho empties the lines PostgreSQL strips from extension scripts:
// those starting with \echo, anywhere in the script (its regexp_replace of
// '^\\echo.*$' with flags 'ng'). They are there so that feeding the script
// to psql by mistake stops with a message. Blanking, rather than deleting,
// keeps line numbers; the check for "\echo" first keeps the common case
// free of copies.
func stripEcho(s string) string {
	if !strings.Contains(s, `\echo`) {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, `\echo`) {
			// '.' does not match a newline, but it does match a carriage
			// return: the whole line goes.
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

// Statement is one SQL statement of a prepared script.
type Statement struct {
	// SQL is the statement text, without its terminating semicolon or the
	// whitespace and comments before it. Calls of pg_extension_config_dump
	// are already rewritten (see ConfigDumpFunction).
	SQL string
	// Line is the 1-based line of the original script where it starts.
	Line int
	// Membership is set for ALTER EXTENSION ADD|DROP of the extension being
	// installed: the statement is not sent to the server, which does not
	// know the extension; the caller records or forgets the object instead.
	Membership *Membership
	// Set is set for SET and RESET statements: PostgreSQL keeps a plain
	// SET of a variable that CREATE EXTENSION saved (search_path and the
	// others) after the script ends, and undoes a SET LOCAL of it.
	Set *SetStmt
}

// SetStmt is what a SET or RESET statement changes.
type SetStmt struct {
	// Name is the variable, lower case; "" for RESET ALL.
	Name string
	// Local is SET LOCAL.
	Local bool
}

// ConfigDumpFunction is the function that calls of
// pg_catalog.pg_extension_config_dump(regclass, text) in scripts are
// rewritten to call, with the same signature. PostgreSQL's own refuses to
// run outside CREATE EXTENSION; pgverbs's records the table and filter for
// the extension being installed.
const ConfigDumpFunction = "pgverbs.extension_config_dump"

// ScriptOptions are the values PrepareScriptOpts substitutes into a
// script, as PostgreSQL's CREATE EXTENSION and ALTER EXTENSION UPDATE do.
type ScriptOptions struct {
	// Extension is the extension the script belongs to, for messages and
	// for ALTER EXTENSION ADD|DROP, which may only name it.
	Extension string
	// Schema replaces @extschema@ unless Relocatable is set; a script using
	// @extschema@ needs one.
	Schema string
	// Relocatable leaves @extschema@ as written, as PostgreSQL does for
	// relocatable extensions (they cannot use it).
	Relocatable bool
	// Owner replaces @extowner@: the role installing the extension.
	Owner string
	// RequiredSchemas maps required extensions to their schemas, each
	// replacing @extschema:name@ (PostgreSQL 16). A name not in the map is
	// left as written, as PostgreSQL leaves it.
	RequiredSchemas map[string]string
	// ModulePathname, when set, replaces every MODULE_PATHNAME (the
	// package's module_pathname, from the control file of the version the
	// script installs); when empty, MODULE_PATHNAME stays as written, as in
	// PostgreSQL.
	ModulePathname string
	// QuoteAll is the session's quote_all_identifiers setting, which
	// PostgreSQL's quote_identifier honours.
	QuoteAll bool
}

// PrepareScriptOpts turns a package script into statements ready to run on the
// client's session, checking everything that can be checked before the
// first one runs. file names the script in messages ("foo/install.sql");
// o holds the values it substitutes.
//
// The script is parsed with PostgreSQL's parser (pg_query) and cut at its
// statement boundaries, so dollar-quoted bodies and comments holding
// semicolons stay whole. Refused before anything runs, with SQLSTATE 0A000
// and a message naming the statement and its line:
//
//   - transaction control (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, PREPARE
//     TRANSACTION...): the script runs inside one transaction so that a
//     failure leaves nothing behind, and the statements would break that;
//   - statements PostgreSQL refuses inside a transaction block: VACUUM,
//     CREATE/DROP DATABASE, CREATE/DROP TABLESPACE, ALTER SYSTEM, ALTER
//     DATABASE SET TABLESPACE, CREATE INDEX CONCURRENTLY, DROP INDEX
//     CONCURRENTLY, REINDEX CONCURRENTLY, REINDEX SCHEMA/SYSTEM/DATABASE,
//     CLUSTER without a table, DISCARD ALL;
//   - COPY FROM STDIN and COPY TO STDOUT, since no client is there to feed
//     or drain the copy;
//   - ALTER EXTENSION ADD|DROP naming another extension, or an object kind
//     pgverbs cannot resolve.
//
// A syntax error is SQLSTATE 42601, `file:line: message`, and bytes that
// are not UTF-8, or NUL, 22021. Errors are *pgerr.Error.
//
// It makes every substitution PostgreSQL makes in extension scripts, in
// PostgreSQL's order, each pass over the
// result of the one before (as its replace_text calls are):
//
//   - lines starting with \echo are removed;
//   - @extowner@ by o.Owner;
//   - @extschema@ by o.Schema, unless o.Relocatable;
//   - @extschema:name@ by o.RequiredSchemas[name];
//   - MODULE_PATHNAME by o.ModulePathname, as written, when it is set.
//
// Names are quoted as PostgreSQL's quote_identifier quotes them: only when
// needed ("public" stays public, "My Schema" is quoted). A substituted
// name holding any of " $ ' \ is refused with SQLSTATE 22023 and
// PostgreSQL's message, as PostgreSQL does since CVE-2023-39417, but only
// when the script uses its placeholder. Errors name lines of the original
// script whatever the substituted values hold. Calls of
// pg_extension_config_dump are rewritten to ConfigDumpFunction.
func PrepareScriptOpts(file, script string, o ScriptOptions) ([]Statement, error) {
	return prepareScript(file, script, o, true)
}

func prepareScript(file, script string, o ScriptOptions, all bool) ([]Statement, error) {
	if err := checkEncoding(file, script); err != nil {
		return nil, err
	}
	// The parser takes a C string, and no identifier can hold these anyway.
	for _, v := range []string{o.Schema, o.Owner} {
		if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			return nil, pgerr.New(pgerr.InvalidParameterValue, "invalid name %s for extension script %s", quote(v), quote(file))
		}
	}
	// Blanking, rather than deleting, keeps line numbers.
	text := stripEcho(script)
	sub, err := substituteScript(file, text, o, all)
	if err != nil {
		return nil, err
	}
	sql := sub.text

	// Splitting is what costs least: the parser runs, but no parse tree
	// crosses into Go. Only the few statements that need a look at their
	// tree (statementNeedsTree) are parsed again, alone.
	parts, err := pg_query.SplitWithParser(sql, false)
	if err != nil {
		var pe *parser.Error
		if errors.As(err, &pe) {
			line := 0
			if pe.Cursorpos > 0 {
				line = sub.line(charToByte(sql, pe.Cursorpos-1))
			}
			return nil, syntaxError(file, line, "%s", pe.Message)
		}
		return nil, pgerr.New(pgerr.InternalError, "%sparse: %v", at(file, 0), err)
	}

	stmts := make([]Statement, 0, len(parts))
	for _, part := range parts {
		// The parts are slices of sql; their offsets give the lines.
		start := int(uintptr(unsafe.Pointer(unsafe.StringData(part))) - uintptr(unsafe.Pointer(unsafe.StringData(sql))))
		end := start + len(part)
		if len(part) == 0 || start < 0 || end > len(sql) {
			continue
		}
		start = skipSpaceAndComments(sql, start, end)
		if start >= end {
			continue
		}
		line := sub.line(start)
		var node *pg_query.Node
		if statementNeedsTree(sql[start:end]) {
			tree, err := pg_query.Parse(sql[start:end])
			if err != nil || len(tree.Stmts) != 1 {
				return nil, pgerr.New(pgerr.InternalError, "%sparse statement: %v", at(file, line), err)
			}
			node = tree.Stmts[0].Stmt
		}
		if what, why := refused(node); what != "" {
			return nil, newErr(pgerr.FeatureNotSupported, why, "",
				"%s%s is not allowed in an extension script", at(file, line), what)
		}
		st := Statement{SQL: strings.TrimRight(sql[start:end], " \t\n\r\f\v"), Line: line}
		switch n := node.GetNode().(type) {
		case *pg_query.Node_AlterExtensionContentsStmt:
			m, err := membership(n.AlterExtensionContentsStmt, o.Extension)
			if err != nil {
				err.Message = at(file, line) + err.Message
				return nil, err
			}
			st.Membership = m
		case *pg_query.Node_VariableSetStmt:
			st.Set = setStmt(n.VariableSetStmt)
		}
		if all {
			_, isDo := node.GetNode().(*pg_query.Node_DoStmt)
			st.SQL = rewriteConfigDump(st.SQL, isDo)
		}
		stmts = append(stmts, st)
	}
	return stmts, nil
}

// substituteScript makes PrepareScriptOpts's substitutions (only
// @extschema@ unless all) and checks the values the script uses.
func substituteScript(file, text string, o ScriptOptions, all bool) (*substitution, error) {
	qschema := QuoteIdentifier(o.Schema, o.QuoteAll)
	if !all {
		sub, hit := substituteLines(text, []replacement{{"@extschema@", qschema}})
		return sub, checkSchema(file, o, hit[0])
	}
	passes := []replacement{{"@extowner@", QuoteIdentifier(o.Owner, o.QuoteAll)}, {}}
	if !o.Relocatable {
		passes[1] = replacement{"@extschema@", qschema}
	}
	// Sorted, so that a script's text never depends on map order.
	reqs := make([]string, 0, len(o.RequiredSchemas))
	for name := range o.RequiredSchemas {
		reqs = append(reqs, name)
	}
	sort.Strings(reqs)
	for _, name := range reqs {
		passes = append(passes, replacement{"@extschema:" + name + "@", QuoteIdentifier(o.RequiredSchemas[name], o.QuoteAll)})
	}
	passes = append(passes, replacement{"MODULE_PATHNAME", o.ModulePathname})
	if o.ModulePathname == "" {
		passes[len(passes)-1] = replacement{}
	}
	// PostgreSQL checks the owner when the original script mentions
	// @extowner@, before anything is replaced.
	if strings.Contains(text, "@extowner@") {
		if o.Owner == "" {
			return nil, pgerr.New(pgerr.InvalidParameterValue, "extension script %s uses @extowner@ but no owner was given", quote(file))
		}
		if strings.ContainsAny(o.Owner, quotingRelevantChars) {
			return nil, pgerr.New(pgerr.InvalidParameterValue, "invalid character in extension owner: must not contain any of \"%s\"", quotingRelevantChars)
		}
	}
	sub, hit := substituteLines(text, passes)
	if err := checkSchema(file, o, hit[1]); err != nil {
		return nil, err
	}
	for i, name := range reqs {
		if hit[2+i] && strings.ContainsAny(o.RequiredSchemas[name], quotingRelevantChars) {
			return nil, pgerr.New(pgerr.InvalidParameterValue, "invalid character in extension \"%s\" schema: must not contain any of \"%s\"", name, quotingRelevantChars)
		}
	}
	return sub, nil
}

// checkSchema refuses a schema the script used (hit) that is empty or
// holds quote characters, with PostgreSQL's message for the latter.
func checkSchema(file string, o ScriptOptions, hit bool) error {
	if !hit {
		return nil
	}
	if o.Schema == "" {
		return pgerr.New(pgerr.InvalidParameterValue, "extension script %s uses @extschema@ but no schema was given", quote(file))
	}
	if strings.ContainsAny(o.Schema, quotingRelevantChars) {
		name := o.Extension
		if name == "" {
			name = file
		}
		return pgerr.New(pgerr.InvalidParameterValue, "invalid character in extension \"%s\" schema: must not contain any of \"%s\"", name, quotingRelevantChars)
	}
	return nil
}

func checkEncoding(file, script string) error {
	for i := 0; i < len(script); {
		r, n := utf8.DecodeRuneInString(script[i:])
		if r == 0 || (r == utf8.RuneError && n == 1) {
			line := 1 + strings.Count(script[:i], "\n")
			return pgerr.New(pgerr.CharacterNotInRepertoire, "%sinvalid byte sequence for encoding \"UTF8\"", at(file, line))
		}
		i += n
	}
	return nil
}

// treeWords are the first words of the statements prepareScript looks at
// in their parse tree: those refused (transaction control and the
// statements that cannot run in a transaction block), SET and RESET, DO,
// and ALTER EXTENSION. A second word narrows CREATE, DROP and ALTER, which
// begin most statements of a script.
var treeWords = map[string]map[string]bool{
	"begin": nil, "start": nil, "commit": nil, "end": nil, "rollback": nil, "abort": nil,
	"savepoint": nil, "release": nil, "prepare": nil, "vacuum": nil, "reindex": nil,
	"cluster": nil, "discard": nil, "copy": nil, "set": nil, "reset": nil, "do": nil,
	"create": {"database": true, "tablespace": true, "index": true, "unique": true},
	"drop":   {"database": true, "tablespace": true, "index": true},
	"alter":  {"system": true, "database": true, "extension": true},
}

// statementNeedsTree reports whether prepareScript must parse stmt, which
// starts with a token.
func statementNeedsTree(stmt string) bool {
	first, rest := leadingWord(stmt)
	second, ok := treeWords[first]
	if !ok {
		return false
	}
	if second == nil {
		return true
	}
	w, _ := leadingWord(rest[skipSpaceAndComments(rest, 0, len(rest)):])
	return second[w]
}

// leadingWord returns the lower-cased keyword s starts with and the rest.
func leadingWord(s string) (string, string) {
	i := 0
	for i < len(s) && (s[i] >= 'a' && s[i] <= 'z' || s[i] >= 'A' && s[i] <= 'Z' || s[i] == '_') {
		i++
	}
	return strings.ToLower(s[:i]), s[i:]
}

// charToByte converts a 0-based character offset, which is what the parser
// reports positions in, to a byte offset in s.
func charToByte(s string, chars int) int {
	n := 0
	for i := range s {
		if n == chars {
			return i
		}
		n++
	}
	return len(s)
}

// skipSpaceAndComments returns the offset of the first token at or after i:
// the parser's statement locations start right after the previous
// semicolon, and Line should point at the statement, not the blank lines or
// comments before it.
func skipSpaceAndComments(s string, i, end int) int {
	for i < end {
		switch {
		case strings.ContainsRune(" \t\n\r\f\v", rune(s[i])):
			i++
		case strings.HasPrefix(s[i:end], "--"):
			j := strings.IndexByte(s[i:end], '\n')
			if j < 0 {
				return end
			}
			i += j + 1
		case strings.HasPrefix(s[i:end], "/*"):
			// Block comments nest in PostgreSQL.
			i += 2
			for depth := 1; depth > 0 && i < end; {
				switch {
				case strings.HasPrefix(s[i:end], "/*"):
					depth++
					i += 2
				case strings.HasPrefix(s[i:end], "*/"):
					depth--
					i += 2
				default:
					i++
				}
			}
		default:
			return i
		}
	}
	return i
}

// refused names a statement that cannot run in an extension script and
// says why, or returns "" for the others.
func refused(n *pg_query.Node) (what, why string) {
	const inBlock = "It cannot run inside a transaction block, and extension scripts run inside one."
	switch s := n.GetNode().(type) {
	case *pg_query.Node_TransactionStmt:
		return transactionStmtName(s.TransactionStmt.Kind),
			"Extension scripts run inside the installing transaction, so that a failure leaves nothing behind."
	case *pg_query.Node_VacuumStmt:
		if s.VacuumStmt.IsVacuumcmd {
			return "VACUUM", inBlock
		}
	case *pg_query.Node_CreatedbStmt:
		return "CREATE DATABASE", inBlock
	case *pg_query.Node_DropdbStmt:
		return "DROP DATABASE", inBlock
	case *pg_query.Node_CreateTableSpaceStmt:
		return "CREATE TABLESPACE", inBlock
	case *pg_query.Node_DropTableSpaceStmt:
		return "DROP TABLESPACE", inBlock
	case *pg_query.Node_AlterSystemStmt:
		return "ALTER SYSTEM", inBlock
	case *pg_query.Node_AlterDatabaseStmt:
		for _, o := range s.AlterDatabaseStmt.Options {
			if o.GetDefElem().GetDefname() == "tablespace" {
				return "ALTER DATABASE SET TABLESPACE", inBlock
			}
		}
	case *pg_query.Node_IndexStmt:
		if s.IndexStmt.Concurrent {
			return "CREATE INDEX CONCURRENTLY", inBlock
		}
	case *pg_query.Node_DropStmt:
		if s.DropStmt.Concurrent {
			return "DROP INDEX CONCURRENTLY", inBlock
		}
	case *pg_query.Node_ReindexStmt:
		for _, p := range s.ReindexStmt.Params {
			if p.GetDefElem().GetDefname() == "concurrently" {
				return "REINDEX CONCURRENTLY", inBlock
			}
		}
		switch s.ReindexStmt.Kind {
		case pg_query.ReindexObjectType_REINDEX_OBJECT_SCHEMA:
			return "REINDEX SCHEMA", inBlock
		case pg_query.ReindexObjectType_REINDEX_OBJECT_SYSTEM:
			return "REINDEX SYSTEM", inBlock
		case pg_query.ReindexObjectType_REINDEX_OBJECT_DATABASE:
			return "REINDEX DATABASE", inBlock
		}
	case *pg_query.Node_ClusterStmt:
		if s.ClusterStmt.Relation == nil {
			return "CLUSTER without a table", inBlock
		}
	case *pg_query.Node_DiscardStmt:
		if s.DiscardStmt.Target == pg_query.DiscardMode_DISCARD_ALL {
			return "DISCARD ALL", inBlock
		}
	case *pg_query.Node_CopyStmt:
		if s.CopyStmt.Filename == "" && !s.CopyStmt.IsProgram {
			if s.CopyStmt.IsFrom {
				return "COPY FROM STDIN", "No client is there to send the data."
			}
			return "COPY TO STDOUT", "No client is there to receive the data."
		}
	}
	return "", ""
}

func transactionStmtName(k pg_query.TransactionStmtKind) string {
	switch k {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN:
		return "BEGIN"
	case pg_query.TransactionStmtKind_TRANS_STMT_START:
		return "START TRANSACTION"
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		return "COMMIT"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		return "ROLLBACK"
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT:
		return "SAVEPOINT"
	case pg_query.TransactionStmtKind_TRANS_STMT_RELEASE:
		return "RELEASE SAVEPOINT"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		return "ROLLBACK TO SAVEPOINT"
	case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:
		return "PREPARE TRANSACTION"
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED:
		return "COMMIT PREPARED"
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
		return "ROLLBACK PREPARED"
	}
	return "transaction control"
}
