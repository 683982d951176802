package extension

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Membership is an ALTER EXTENSION name ADD|DROP object statement of a
// script, with the object in the form pg_get_object_address takes, so that
// the server itself resolves it exactly as ALTER EXTENSION would.
type Membership struct {
	// Add is ADD (else DROP).
	Add bool
	// Type, Names and Args are pg_get_object_address's arguments.
	Type  string
	Names []string
	Args  []string
	// ByName is set for a routine named without an argument list, which
	// PostgreSQL resolves by name alone (it must be unique); Names then
	// holds the qualified name and Args is unused.
	ByName bool
	// Description is the object as the statement names it, for messages:
	// "function f(integer)".
	Description string
}

// objectTypeNames maps the object kinds of ALTER EXTENSION ADD|DROP to
// pg_get_object_address's type names.
var objectTypeNames = map[pg_query.ObjectType]string{
	pg_query.ObjectType_OBJECT_TABLE:           "table",
	pg_query.ObjectType_OBJECT_VIEW:            "view",
	pg_query.ObjectType_OBJECT_MATVIEW:         "materialized view",
	pg_query.ObjectType_OBJECT_SEQUENCE:        "sequence",
	pg_query.ObjectType_OBJECT_FOREIGN_TABLE:   "foreign table",
	pg_query.ObjectType_OBJECT_FUNCTION:        "function",
	pg_query.ObjectType_OBJECT_PROCEDURE:       "procedure",
	pg_query.ObjectType_OBJECT_AGGREGATE:       "aggregate",
	pg_query.ObjectType_OBJECT_ROUTINE:         "routine",
	pg_query.ObjectType_OBJECT_OPERATOR:        "operator",
	pg_query.ObjectType_OBJECT_TYPE:            "type",
	pg_query.ObjectType_OBJECT_DOMAIN:          "domain",
	pg_query.ObjectType_OBJECT_SCHEMA:          "schema",
	pg_query.ObjectType_OBJECT_LANGUAGE:        "language",
	pg_query.ObjectType_OBJECT_EVENT_TRIGGER:   "event trigger",
	pg_query.ObjectType_OBJECT_FDW:             "foreign-data wrapper",
	pg_query.ObjectType_OBJECT_FOREIGN_SERVER:  "server",
	pg_query.ObjectType_OBJECT_ACCESS_METHOD:   "access method",
	pg_query.ObjectType_OBJECT_CAST:            "cast",
	pg_query.ObjectType_OBJECT_OPCLASS:         "operator class",
	pg_query.ObjectType_OBJECT_OPFAMILY:        "operator family",
	pg_query.ObjectType_OBJECT_COLLATION:       "collation",
	pg_query.ObjectType_OBJECT_CONVERSION:      "conversion",
	pg_query.ObjectType_OBJECT_TSCONFIGURATION: "text search configuration",
	pg_query.ObjectType_OBJECT_TSDICTIONARY:    "text search dictionary",
	pg_query.ObjectType_OBJECT_TSPARSER:        "text search parser",
	pg_query.ObjectType_OBJECT_TSTEMPLATE:      "text search template",
	pg_query.ObjectType_OBJECT_STATISTIC_EXT:   "statistics object",
	pg_query.ObjectType_OBJECT_TRANSFORM:       "transform",
}

// membership converts an ALTER EXTENSION ADD|DROP statement of the script
// of extension ext.
func membership(s *pg_query.AlterExtensionContentsStmt, ext string) (*Membership, *pgerr.Error) {
	if ext != "" && s.Extname != ext {
		return nil, newErr(pgerr.FeatureNotSupported,
			"A script may add objects to or drop them from its own extension only.", "",
			"ALTER EXTENSION %s ADD|DROP is not allowed in the script of extension %s", quote(s.Extname), quote(ext))
	}
	typ, ok := objectTypeNames[s.Objtype]
	if !ok {
		return nil, pgerr.New(pgerr.FeatureNotSupported, "ALTER EXTENSION ADD|DROP of this kind of object (%s) is not supported by INSTALL EXTENSION", strings.TrimPrefix(s.Objtype.String(), "OBJECT_"))
	}
	m := &Membership{Add: s.Action > 0, Type: typ}
	bad := func() (*Membership, *pgerr.Error) {
		return nil, pgerr.New(pgerr.FeatureNotSupported, "ALTER EXTENSION ADD|DROP %s: cannot read the object name", strings.ToUpper(typ))
	}
	obj := s.Object
	switch s.Objtype {
	case pg_query.ObjectType_OBJECT_FUNCTION, pg_query.ObjectType_OBJECT_PROCEDURE,
		pg_query.ObjectType_OBJECT_AGGREGATE, pg_query.ObjectType_OBJECT_ROUTINE,
		pg_query.ObjectType_OBJECT_OPERATOR:
		owa := obj.GetObjectWithArgs()
		if owa == nil {
			return bad()
		}
		m.Names = stringList(owa.Objname)
		if owa.ArgsUnspecified {
			m.ByName = true
			break
		}
		for _, a := range owa.Objargs {
			if a.GetTypeName() == nil {
				// NONE, the missing operand of a prefix operator.
				m.Args = append(m.Args, "")
				continue
			}
			t, err := typeNameText(a.GetTypeName())
			if err != nil {
				return bad()
			}
			m.Args = append(m.Args, t)
		}
	case pg_query.ObjectType_OBJECT_TYPE, pg_query.ObjectType_OBJECT_DOMAIN:
		t, err := typeNameText(obj.GetTypeName())
		if err != nil {
			return bad()
		}
		m.Names = []string{t}
	case pg_query.ObjectType_OBJECT_CAST:
		l := obj.GetList().GetItems()
		if len(l) != 2 {
			return bad()
		}
		src, err1 := typeNameText(l[0].GetTypeName())
		dst, err2 := typeNameText(l[1].GetTypeName())
		if err1 != nil || err2 != nil {
			return bad()
		}
		m.Names, m.Args = []string{src}, []string{dst}
	case pg_query.ObjectType_OBJECT_TRANSFORM:
		l := obj.GetList().GetItems()
		if len(l) != 2 {
			return bad()
		}
		t, err := typeNameText(l[0].GetTypeName())
		if err != nil {
			return bad()
		}
		m.Names, m.Args = []string{t}, []string{l[1].GetString_().GetSval()}
	case pg_query.ObjectType_OBJECT_OPCLASS, pg_query.ObjectType_OBJECT_OPFAMILY:
		// The parser puts the access method first.
		l := stringList(obj.GetList().GetItems())
		if len(l) < 2 {
			return bad()
		}
		m.Names, m.Args = l[1:], l[:1]
	case pg_query.ObjectType_OBJECT_SCHEMA, pg_query.ObjectType_OBJECT_LANGUAGE,
		pg_query.ObjectType_OBJECT_EVENT_TRIGGER, pg_query.ObjectType_OBJECT_FDW,
		pg_query.ObjectType_OBJECT_FOREIGN_SERVER, pg_query.ObjectType_OBJECT_ACCESS_METHOD:
		m.Names = []string{obj.GetString_().GetSval()}
	default: // relations and other qualified names
		m.Names = stringList(obj.GetList().GetItems())
	}
	if len(m.Names) == 0 || m.Names[0] == "" && len(m.Names) == 1 {
		return bad()
	}
	m.Description = typ + " " + strings.Join(m.Names, ".")
	if len(m.Args) > 0 || s.Objtype == pg_query.ObjectType_OBJECT_FUNCTION && !m.ByName {
		m.Description += "(" + strings.Join(m.Args, ", ") + ")"
	}
	return m, nil
}

// stringList returns the String nodes of a name list.
func stringList(nodes []*pg_query.Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.GetString_().GetSval())
	}
	return out
}

// typeNameText renders a parsed type name as SQL text, the form
// pg_get_object_address takes for types, by deparsing a cast to it.
func typeNameText(tn *pg_query.TypeName) (string, error) {
	if tn == nil {
		return "", errNoType
	}
	// A parsed template carries the parse tree version Deparse checks.
	tree, err := pg_query.Parse("SELECT NULL::int")
	if err != nil {
		return "", err
	}
	tree.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val.GetTypeCast().TypeName = tn
	out, err := pg_query.Deparse(tree)
	if err != nil {
		return "", err
	}
	const prefix = "SELECT NULL::"
	if !strings.HasPrefix(out, prefix) {
		return "", errNoType
	}
	return strings.TrimSuffix(strings.TrimPrefix(out, prefix), ";"), nil
}

var errNoType = pgerr.New(pgerr.InternalError, "no type name")

// setStmt describes a SET or RESET statement; nil for the forms that set
// no variable (SET TRANSACTION, SET SESSION CHARACTERISTICS).
func setStmt(s *pg_query.VariableSetStmt) *SetStmt {
	switch s.Kind {
	case pg_query.VariableSetKind_VAR_SET_VALUE, pg_query.VariableSetKind_VAR_SET_DEFAULT,
		pg_query.VariableSetKind_VAR_SET_CURRENT, pg_query.VariableSetKind_VAR_RESET:
		return &SetStmt{Name: strings.ToLower(s.Name), Local: s.IsLocal}
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		return &SetStmt{}
	}
	return nil
}

// configDumpName is the function rewriteConfigDump looks for.
const configDumpName = "pg_extension_config_dump"

// rewriteConfigDump replaces every call of pg_extension_config_dump,
// qualified with pg_catalog or not, by ConfigDumpFunction. It works on the
// scanner's tokens, so that names inside comments and string literals stay
// as written; inside a DO statement it also rewrites the body (dollar- or
// single-quoted), whose code runs during the install and is not stored.
// Bodies of functions the script creates are left alone: they are stored,
// and must be what CREATE EXTENSION would store.
func rewriteConfigDump(sql string, isDo bool) string {
	if !strings.Contains(strings.ToLower(sql), configDumpName) {
		return sql
	}
	res, err := pg_query.Scan(sql)
	if err != nil {
		return sql
	}
	toks := res.GetTokens()
	var b strings.Builder
	prev := 0
	for i, tok := range toks {
		start, end := int(tok.Start), int(tok.End)
		if start < prev || end > len(sql) || start > end {
			return sql
		}
		text := sql[start:end]
		switch {
		case tok.Token == pg_query.Token_IDENT && identEquals(text, configDumpName) &&
			i+1 < len(toks) && toks[i+1].Token == pg_query.Token_ASCII_40:
			if i >= 2 && toks[i-1].Token == pg_query.Token_ASCII_46 && identEquals(sql[toks[i-2].Start:toks[i-2].End], "pg_catalog") {
				start = int(toks[i-2].Start)
				if start < prev {
					return sql
				}
			} else if i >= 1 && toks[i-1].Token == pg_query.Token_ASCII_46 {
				continue // another schema's function of that name
			}
			b.WriteString(sql[prev:start])
			b.WriteString(ConfigDumpFunction)
			prev = end
		case isDo && tok.Token == pg_query.Token_SCONST:
			open, close := quoteDelimiters(text)
			if open == "" {
				continue
			}
			body := text[len(open) : len(text)-len(close)]
			if nb := rewriteConfigDump(body, false); nb != body {
				b.WriteString(sql[prev:start])
				b.WriteString(open + nb + close)
				prev = end
			}
		}
	}
	b.WriteString(sql[prev:])
	return b.String()
}

// identEquals compares an identifier token with a lower-case name, quoted
// or not.
func identEquals(tok, name string) bool {
	if strings.HasPrefix(tok, `"`) {
		return tok == `"`+name+`"`
	}
	return strings.ToLower(tok) == name
}

// quoteDelimiters returns the opening and closing delimiters of a string
// constant whose body can be rewritten in place: $tag$...$tag$ or '...'.
// Escape strings and others return "".
func quoteDelimiters(s string) (open, close string) {
	switch {
	case strings.HasPrefix(s, "$"):
		i := strings.IndexByte(s[1:], '$')
		if i < 0 {
			return "", ""
		}
		tag := s[:i+2]
		if len(s) < 2*len(tag) || !strings.HasSuffix(s, tag) {
			return "", ""
		}
		return tag, tag
	case strings.HasPrefix(s, "'") && strings.HasSuffix(s, "'") && len(s) >= 2:
		return "'", "'"
	}
	return "", ""
}
