package extension

import (
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Statement is one SQL statement of a prepared script.
type Statement struct {
	// SQL is the statement text, without its terminating semicolon or the
	// whitespace and comments before it.
	SQL string
	// Line is the 1-based line of the original script where it starts.
	Line int
}

// schemaQuoteChars are the characters refused in the schema substituted for
// @extschema@, as PostgreSQL does since CVE-2023-39417: inside a string
// literal or dollar quote of a script, a schema name holding one of them
// could end the literal and inject SQL.
const schemaQuoteChars = `"$'\`

// echoLine matches the lines PostgreSQL strips from extension scripts: they
// are there so that feeding the script to psql by mistake stops with a
// message.
var echoLine = regexp.MustCompile(`(?m)^\\echo.*$`)

// ScriptOptions are the values PrepareScriptOpts substitutes into a
// script, as PostgreSQL's CREATE EXTENSION and ALTER EXTENSION UPDATE do.
type ScriptOptions struct {
	// Schema replaces @extschema@, double-quoted. It may not contain any of
	// " $ ' \ (CVE-2023-39417), used or not; a script using @extschema@
	// needs one.
	Schema string
	// Owner replaces @extowner@, double-quoted: the role installing the
	// extension. A script using @extowner@ needs one without quote
	// characters.
	Owner string
	// RequiredSchemas maps required extensions to their schemas, each
	// replacing @extschema:name@ (PostgreSQL 16), double-quoted. A script
	// referring to an extension not in the map is refused, as is a schema
	// with quote characters that a script uses.
	RequiredSchemas map[string]string
	// ModulePathname, when set, replaces every MODULE_PATHNAME (the
	// package's module_pathname, from the control file of the version the
	// script installs); when empty, MODULE_PATHNAME stays as written, as in
	// PostgreSQL.
	ModulePathname string
}

// PrepareScript turns a package script into statements ready to run on the
// client's session, checking everything that can be checked before the
// first one runs. file names the script in messages ("foo/install.sql");
// schema is the schema the extension goes into.
//
// As PostgreSQL's CREATE EXTENSION does, lines starting with \echo are
// removed and every @extschema@ is replaced by schema, double-quoted (always,
// which is correct for any name and needs no keyword list). A schema name
// with any of " $ ' \ is refused (22023), as is a script that uses
// @extschema@ when schema is empty. @extowner@, @extschema:name@ and
// MODULE_PATHNAME are not substituted: PrepareScriptOpts does that.
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
//     or drain the copy.
//
// A syntax error is SQLSTATE 42601, `file:line: message`, and bytes that
// are not UTF-8, or NUL, 22021. Errors are *pgerr.Error.
func PrepareScript(file, script, schema string) ([]Statement, error) {
	return prepareScript(file, script, ScriptOptions{Schema: schema}, false)
}

// PrepareScriptOpts is PrepareScript with every substitution PostgreSQL
// makes in extension scripts, in a single pass over the text (a substituted
// value is never scanned again):
//
//   - @extschema@ by o.Schema, @extowner@ by o.Owner and @extschema:name@
//     by o.RequiredSchemas[name], each double-quoted; a value holding any
//     of " $ ' \ is refused with SQLSTATE 22023, as PostgreSQL does since
//     CVE-2023-39417 (the schema always, the others when the script uses
//     them), and so is a placeholder without a value;
//   - MODULE_PATHNAME by o.ModulePathname, as written, when it is set.
//
// Everything else is as in PrepareScript; errors name lines of the
// original script whatever the substituted values hold. PostgreSQL
// substitutes @extschema@ only for extensions that are not relocatable;
// here it is always substituted, which makes no difference to a
// relocatable script, since it cannot use @extschema@.
func PrepareScriptOpts(file, script string, o ScriptOptions) ([]Statement, error) {
	return prepareScript(file, script, o, true)
}

// placeholders matches what PrepareScriptOpts substitutes.
var placeholders = regexp.MustCompile(`@extschema@|@extowner@|@extschema:([^@\s]+)@|MODULE_PATHNAME`)

func prepareScript(file, script string, o ScriptOptions, all bool) ([]Statement, error) {
	if err := checkEncoding(file, script); err != nil {
		return nil, err
	}
	schema := o.Schema
	if strings.ContainsAny(schema, schemaQuoteChars) {
		return nil, pgerr.New(pgerr.InvalidParameterValue,
			"invalid character in schema %s for extension script %s: must not contain any of %s",
			quote(schema), quote(file), quote(schemaQuoteChars))
	}
	// The parser takes a C string, and no identifier can hold these anyway.
	if strings.IndexByte(schema, 0) >= 0 || !utf8.ValidString(schema) {
		return nil, pgerr.New(pgerr.InvalidParameterValue, "invalid schema name %s for extension script %s", quote(schema), quote(file))
	}
	// Blanking, rather than deleting, keeps line numbers.
	text := echoLine.ReplaceAllString(script, "")
	var sub *substitution
	if all {
		var err error
		if sub, err = substituteAll(file, text, o); err != nil {
			return nil, err
		}
	} else {
		sub = newSubstitution(text, "@extschema@", `"`+schema+`"`)
		if sub.count() > 0 && schema == "" {
			return nil, pgerr.New(pgerr.InvalidParameterValue, "extension script %s uses @extschema@ but no schema was given", quote(file))
		}
	}
	sql := sub.text

	tree, err := pg_query.Parse(sql)
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

	stmts := make([]Statement, 0, len(tree.Stmts))
	for _, raw := range tree.Stmts {
		start := int(raw.StmtLocation)
		end := len(sql)
		if raw.StmtLen > 0 {
			end = start + int(raw.StmtLen)
		}
		if start < 0 || end > len(sql) || start > end {
			return nil, pgerr.New(pgerr.InternalError, "%sparser returned a statement outside the script", at(file, 0))
		}
		start = skipSpaceAndComments(sql, start, end)
		line := sub.line(start)
		if what, why := refused(raw.Stmt); what != "" {
			return nil, newErr(pgerr.FeatureNotSupported, why, "",
				"%s%s is not allowed in an extension script", at(file, line), what)
		}
		stmts = append(stmts, Statement{
			SQL:  strings.TrimRight(sql[start:end], " \t\n\r\f\v"),
			Line: line,
		})
	}
	return stmts, nil
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

// substituteAll makes PrepareScriptOpts's substitutions.
func substituteAll(file, text string, o ScriptOptions) (*substitution, error) {
	// checkValue refuses what cannot go between double quotes safely.
	checkValue := func(what, v string) error {
		if strings.ContainsAny(v, schemaQuoteChars) || strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
			return pgerr.New(pgerr.InvalidParameterValue,
				"invalid character in %s %s for extension script %s: must not contain any of %s",
				what, quote(v), quote(file), quote(schemaQuoteChars))
		}
		return nil
	}
	matches := placeholders.FindAllStringSubmatchIndex(text, -1)
	repl := make([]string, 0, len(matches))
	spans := make([][2]int, 0, len(matches))
	for _, m := range matches {
		var value string
		switch ph := text[m[0]:m[1]]; {
		case ph == "@extschema@":
			if o.Schema == "" {
				return nil, pgerr.New(pgerr.InvalidParameterValue, "extension script %s uses @extschema@ but no schema was given", quote(file))
			}
			value = `"` + o.Schema + `"`
		case ph == "@extowner@":
			if o.Owner == "" {
				return nil, pgerr.New(pgerr.InvalidParameterValue, "extension script %s uses @extowner@ but no owner was given", quote(file))
			}
			if err := checkValue("owner", o.Owner); err != nil {
				return nil, err
			}
			value = `"` + o.Owner + `"`
		case ph == "MODULE_PATHNAME":
			if o.ModulePathname == "" {
				continue
			}
			value = o.ModulePathname
		default: // @extschema:name@
			name := text[m[2]:m[3]]
			s, ok := o.RequiredSchemas[name]
			if !ok || s == "" {
				return nil, newErr(pgerr.InvalidParameterValue,
					"PostgreSQL substitutes @extschema:name@ only for extensions listed in requires.", "",
					"extension script %s uses %s but extension %s is not a required extension with a known schema", quote(file), ph, quote(name))
			}
			if err := checkValue("schema", s); err != nil {
				return nil, err
			}
			value = `"` + s + `"`
		}
		spans = append(spans, [2]int{m[0], m[1]})
		repl = append(repl, value)
	}
	return substitute(text, spans, repl), nil
}

// substitution is a text with placeholders replaced, able to map offsets
// in the new text back to lines of the old one: a replacement may hold
// newlines (a schema name can), and error lines must point into the file
// the author wrote.
type substitution struct {
	text string
	// starts and ends delimit each replacement in text.
	starts, ends []int
	// deltas is how many more newlines each replacement has than its
	// placeholder.
	deltas []int
}

// newSubstitution replaces every placeholder in s by replacement.
func newSubstitution(s, placeholder, replacement string) *substitution {
	var spans [][2]int
	var repl []string
	for off := 0; ; {
		i := strings.Index(s[off:], placeholder)
		if i < 0 {
			break
		}
		spans = append(spans, [2]int{off + i, off + i + len(placeholder)})
		repl = append(repl, replacement)
		off += i + len(placeholder)
	}
	return substitute(s, spans, repl)
}

// substitute replaces the spans of s, in order and not overlapping, by
// repl.
func substitute(s string, spans [][2]int, repl []string) *substitution {
	sub := &substitution{}
	var b strings.Builder
	prev := 0
	for i, sp := range spans {
		b.WriteString(s[prev:sp[0]])
		sub.starts = append(sub.starts, b.Len())
		b.WriteString(repl[i])
		sub.ends = append(sub.ends, b.Len())
		sub.deltas = append(sub.deltas, strings.Count(repl[i], "\n")-strings.Count(s[sp[0]:sp[1]], "\n"))
		prev = sp[1]
	}
	b.WriteString(s[prev:])
	sub.text = b.String()
	return sub
}

// count is the number of placeholders replaced.
func (s *substitution) count() int { return len(s.starts) }

// line returns the 1-based line of the original text that offset off of the
// substituted text comes from; an offset inside a replacement maps to the
// line of its placeholder.
func (s *substitution) line(off int) int {
	off = min(max(off, 0), len(s.text))
	extra := 0 // newlines added by replacements wholly before off
	for i := range s.starts {
		if s.starts[i] <= off && off < s.ends[i] {
			off = s.starts[i]
			break
		}
		if s.ends[i] > off {
			break
		}
		extra += s.deltas[i]
	}
	return 1 + strings.Count(s.text[:off], "\n") - extra
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
