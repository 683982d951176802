package commands

import (
	"errors"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	pgscan "github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// The grammar mirrors PostgreSQL's CREATE EXTENSION and DROP EXTENSION
// (gram.y) so that users meet the rules they already know: the same words
// may serve as names, options come in any order, and errors carry the
// messages and positions PostgreSQL would give. Tokens come from
// PostgreSQL's own scanner via pg_query.Scan; this file only decodes the
// values of the tokens it accepts.

// InstallStmt is a parsed INSTALL EXTENSION statement:
//
//	INSTALL EXTENSION [IF NOT EXISTS] name [WITH] [SCHEMA schema] [VERSION version] [CASCADE]
//
// The options after name may come in any order, each at most once.
type InstallStmt struct {
	Name        string
	IfNotExists bool
	Schema      string // "" when not given
	Version     string // "" when not given
	Cascade     bool
}

// UninstallStmt is a parsed UNINSTALL EXTENSION statement:
//
//	UNINSTALL EXTENSION [IF EXISTS] name [, ...] [CASCADE | RESTRICT]
type UninstallStmt struct {
	Names    []string // in statement order, duplicates kept
	IfExists bool
	Cascade  bool // false means RESTRICT, the default
}

// ParseInstall parses one INSTALL EXTENSION statement, such as
// Statement.SQL from Registry.Match. Comments, whitespace and trailing
// semicolons are allowed around and between the tokens.
//
// Unquoted names are folded to lower case as PostgreSQL folds identifiers
// (ASCII letters only); quoted names are kept exactly, and neither is
// truncated to NAMEDATALEN. The version is a string literal (plain or
// dollar-quoted), an identifier, a keyword other than a reserved one, or a
// number such as 1.0 or 1.2.3, which is kept as written.
//
// Errors are *pgerr.Error with Code pgerr.SyntaxError. Position is the
// 1-based character position in sql of the offending token, or one past
// the last character when the statement ends too early; see PositionAt
// for statements taken from a longer query string.
func ParseInstall(sql string) (*InstallStmt, error) {
	return parse(sql, (*parser).install)
}

// ParseUninstall parses one UNINSTALL EXTENSION statement. Lexical rules,
// name folding and errors are as for ParseInstall.
func ParseUninstall(sql string) (*UninstallStmt, error) {
	return parse(sql, (*parser).uninstall)
}

// PositionAt converts a byte offset in sql into the 1-based character
// position that ErrorResponse carries, since PostgreSQL counts characters,
// not bytes. An offset outside sql is clamped to it.
//
// Positions from ParseInstall and ParseUninstall are relative to the
// statement text they were given. For a statement taken from a longer
// query string, re-base them by adding the characters that precede it:
//
//	e.Position += PositionAt(query, st.Offset) - 1
func PositionAt(sql string, byteOffset int) int32 {
	byteOffset = max(0, min(byteOffset, len(sql)))
	return int32(utf8.RuneCountInString(sql[:byteOffset]) + 1)
}

// parse runs grammar over the tokens of sql.
func parse[T any](sql string, grammar func(*parser) (T, error)) (T, error) {
	p, scanErr, at := newParser(sql)
	if scanErr == nil {
		return grammar(p)
	}
	// PostgreSQL scans as it parses, so a syntax error in the text before
	// the unscannable part is the one it reports. Parsing that prefix
	// finds such an error, except when the prefix merely ends too early.
	var zero T
	if pp, err, _ := newParser(sql[:at]); err == nil {
		if _, err := grammar(pp); err != nil && pp.failedAt != nil && !pp.peeksPast(pp.failedAt) {
			return zero, err
		}
	}
	return zero, scanErr
}

func (p *parser) install() (*InstallStmt, error) {
	if err := p.leading("install"); err != nil {
		return nil, err
	}
	st := &InstallStmt{}
	// IF is an unreserved keyword and so also a valid name; like
	// PostgreSQL's grammar, only IF followed by NOT starts the clause.
	if p.peekIs(0, pg_query.Token_IF_P) && p.peekIs(1, pg_query.Token_NOT) {
		p.pos += 2
		if err := p.expect(pg_query.Token_EXISTS); err != nil {
			return nil, err
		}
		st.IfNotExists = true
	}
	var err error
	if st.Name, err = p.colID(); err != nil {
		return nil, err
	}
	if p.peekIs(0, pg_query.Token_WITH) {
		p.pos++
	}
	var seenSchema, seenVersion, seenCascade bool
options:
	for t := p.peek(0); t != nil; t = p.peek(0) {
		switch t.Token {
		case pg_query.Token_SCHEMA:
			p.once(t, &seenSchema)
			if st.Schema, err = p.colID(); err != nil {
				return nil, err
			}
		case pg_query.Token_VERSION_P:
			p.once(t, &seenVersion)
			if st.Version, err = p.version(); err != nil {
				return nil, err
			}
		case pg_query.Token_CASCADE:
			p.once(t, &seenCascade)
			st.Cascade = true
		default:
			break options
		}
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	return st, nil
}

func (p *parser) uninstall() (*UninstallStmt, error) {
	if err := p.leading("uninstall"); err != nil {
		return nil, err
	}
	st := &UninstallStmt{}
	// As in ParseInstall, IF is a name unless EXISTS follows it.
	if p.peekIs(0, pg_query.Token_IF_P) && p.peekIs(1, pg_query.Token_EXISTS) {
		p.pos += 2
		st.IfExists = true
	}
	for {
		name, err := p.colID()
		if err != nil {
			return nil, err
		}
		st.Names = append(st.Names, name)
		if !p.peekIs(0, pg_query.Token_ASCII_44) { // ','
			break
		}
		p.pos++
	}
	switch {
	case p.peekIs(0, pg_query.Token_CASCADE):
		st.Cascade = true
		p.pos++
	case p.peekIs(0, pg_query.Token_RESTRICT):
		p.pos++
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	return st, nil
}

// show parses the statement of one of the SHOW commands (show.go), l,
// returning the extension named, "" when none was: SHOW, l's words
// unquoted in any letter case, then the name when l takes one.
func (p *parser) show(l listing) (string, error) {
	if err := p.expect(pg_query.Token_SHOW); err != nil {
		return "", err
	}
	for _, w := range l.words() {
		if err := p.expectWord(w); err != nil {
			return "", err
		}
	}
	var name string
	allowed, required := l.takesName()
	if t := p.peek(0); required || allowed && t != nil && t.Token != pg_query.Token_ASCII_59 { // ';'
		var err error
		if name, err = p.colID(); err != nil {
			return "", err
		}
	}
	return name, p.finish()
}

// parser walks the significant tokens of one statement.
type parser struct {
	sql  string
	toks []*pg_query.ScanToken // comments removed
	pos  int
	// failedAt is the token a syntax error was reported at, nil when none
	// was or the error was at the end of input.
	failedAt *pg_query.ScanToken
	// Duplicate options and an empty version are not syntax errors in
	// PostgreSQL but are found later, when the statement executes, so a
	// syntax error anywhere in the statement takes precedence over them.
	// Of the two, duplicates are checked first there too.
	conflict *pgerr.Error
	badValue *pgerr.Error
}

// newParser scans sql. On failure it returns the error and the byte offset
// at which scanning failed.
func newParser(sql string) (*parser, *pgerr.Error, int) {
	// pg_query hands the text to C as a NUL-terminated string, so the
	// scanner would silently ignore everything after a NUL byte.
	if i := strings.IndexByte(sql, 0); i >= 0 {
		e := pgerr.New(pgerr.SyntaxError, "statement contains a null byte")
		e.Position = PositionAt(sql, i)
		return nil, e, i
	}
	res, err := pg_query.Scan(sql)
	if err != nil {
		// The scanner's message is PostgreSQL's own, e.g. "unterminated
		// quoted string at or near ...", with its own cursor.
		e := pgerr.New(pgerr.SyntaxError, "%s", err.Error())
		at := len(sql)
		var perr *pgscan.Error
		if errors.As(err, &perr) && perr.Cursorpos > 0 {
			at = byteOffset(sql, perr.Cursorpos-1)
		}
		e.Position = PositionAt(sql, at)
		return nil, e, at
	}
	p := &parser{sql: sql}
	for _, t := range res.GetTokens() {
		if t.Token != pg_query.Token_SQL_COMMENT && t.Token != pg_query.Token_C_COMMENT {
			p.toks = append(p.toks, t)
		}
	}
	return p, nil, -1
}

// byteOffset returns the byte offset of the character after the first n
// in sql, counting as PostgreSQL does: in UTF-8 it takes the length of a
// character from its first byte alone, even in invalid text, where Go's
// decoder would count differently.
func byteOffset(sql string, n int) int {
	i := 0
	for ; n > 0 && i < len(sql); n-- {
		switch c := sql[i]; {
		case c&0xe0 == 0xc0:
			i += 2
		case c&0xf0 == 0xe0:
			i += 3
		case c&0xf8 == 0xf0:
			i += 4
		default:
			i++
		}
	}
	return min(i, len(sql))
}

// peeksPast reports whether PostgreSQL would have read the token after t
// before finding the syntax error at t. Its parser.c looks one token
// ahead after these to pick between grammar symbols (WITH against
// WITH_LA, say), so a scan error just after them is reported instead.
func (p *parser) peeksPast(t *pg_query.ScanToken) bool {
	if t != p.toks[len(p.toks)-1] {
		return false
	}
	switch t.Token {
	case pg_query.Token_FORMAT, pg_query.Token_NOT, pg_query.Token_NULLS_P,
		pg_query.Token_WITH, pg_query.Token_WITHOUT, pg_query.Token_UIDENT, pg_query.Token_USCONST:
		return true
	}
	return false
}

// peek returns the token i places ahead, or nil past the end.
func (p *parser) peek(i int) *pg_query.ScanToken {
	if p.pos+i < len(p.toks) {
		return p.toks[p.pos+i]
	}
	return nil
}

func (p *parser) peekIs(i int, tok pg_query.Token) bool {
	t := p.peek(i)
	return t != nil && t.Token == tok
}

func (p *parser) text(t *pg_query.ScanToken) string { return p.sql[t.Start:t.End] }

// syntaxError reports t, or the end of input when t is nil, in
// PostgreSQL's words. As there, the token is quoted as written.
func (p *parser) syntaxError(t *pg_query.ScanToken) *pgerr.Error {
	if t == nil {
		e := pgerr.New(pgerr.SyntaxError, "syntax error at end of input")
		e.Position = PositionAt(p.sql, len(p.sql))
		return e
	}
	p.failedAt = t
	e := pgerr.New(pgerr.SyntaxError, "syntax error at or near \"%s\"", p.text(t))
	e.Position = PositionAt(p.sql, int(t.Start))
	return e
}

// leading consumes the command's two keywords. Registry.Match has already
// checked them, but the parsers are exported and must not trust that.
func (p *parser) leading(word string) error {
	t := p.peek(0)
	// INSTALL and UNINSTALL are not PostgreSQL keywords; a quoted
	// "install" is an identifier, never the command.
	if t == nil || t.Token != pg_query.Token_IDENT || asciiLower(p.text(t)) != word {
		return p.syntaxError(t)
	}
	p.pos++
	return p.expect(pg_query.Token_EXTENSION)
}

// isWord reports whether the token i places ahead is word, written
// unquoted (a bare identifier or a keyword) in any letter case: the words
// of pgverbs's own commands, which PostgreSQL's grammar does not know.
func (p *parser) isWord(i int, word string) bool {
	t := p.peek(i)
	return t != nil && (t.Token == pg_query.Token_IDENT || t.KeywordKind != pg_query.KeywordKind_NO_KEYWORD) &&
		asciiLower(p.text(t)) == asciiLower(word)
}

// expectWord consumes word, written unquoted.
func (p *parser) expectWord(word string) error {
	if !p.isWord(0, word) {
		return p.syntaxError(p.peek(0))
	}
	p.pos++
	return nil
}

func (p *parser) expect(tok pg_query.Token) error {
	t := p.peek(0)
	if t == nil || t.Token != tok {
		return p.syntaxError(t)
	}
	p.pos++
	return nil
}

// once consumes the option keyword t and notes a repeat of it, as
// PostgreSQL's errorConflictingDefElem does, at the repeat's position.
func (p *parser) once(t *pg_query.ScanToken, seen *bool) {
	if *seen && p.conflict == nil {
		p.conflict = pgerr.New(pgerr.SyntaxError, "conflicting or redundant options")
		p.conflict.Position = PositionAt(p.sql, int(t.Start))
	}
	*seen = true
	p.pos++
}

// finish accepts the end of the statement, allowing trailing semicolons,
// and then reports any error deferred while parsing.
func (p *parser) finish() error {
	for p.peekIs(0, pg_query.Token_ASCII_59) { // ';'
		p.pos++
	}
	if t := p.peek(0); t != nil {
		return p.syntaxError(t)
	}
	if p.conflict != nil {
		return p.conflict
	}
	if p.badValue != nil {
		return p.badValue
	}
	return nil
}

// colID parses PostgreSQL's ColId, the production for extension and schema
// names: an identifier or a keyword that is neither reserved nor usable
// only as a type or function name.
func (p *parser) colID() (string, error) {
	t := p.peek(0)
	if t != nil && (t.KeywordKind == pg_query.KeywordKind_UNRESERVED_KEYWORD ||
		t.KeywordKind == pg_query.KeywordKind_COL_NAME_KEYWORD) {
		p.pos++
		return asciiLower(p.text(t)), nil
	}
	return p.ident()
}

// ident parses an identifier token.
func (p *parser) ident() (string, error) {
	t := p.peek(0)
	if t == nil {
		return "", p.syntaxError(nil)
	}
	switch t.Token {
	case pg_query.Token_IDENT:
		p.pos++
		raw := p.text(t)
		if raw[0] == '"' {
			// The scanner has already refused "" as a zero-length
			// delimited identifier.
			return strings.ReplaceAll(raw[1:len(raw)-1], `""`, `"`), nil
		}
		return asciiLower(raw), nil
	case pg_query.Token_UIDENT:
		e := p.syntaxError(t)
		e.Hint = `Unicode escapes are not supported here; write the identifier in plain double quotes.`
		return "", e
	}
	return "", p.syntaxError(t)
}

// version parses the argument of VERSION: PostgreSQL's
// NonReservedWord_or_Sconst, widened to bare numbers because people write
// VERSION 1.0, which PostgreSQL itself refuses.
func (p *parser) version() (string, error) {
	t := p.peek(0)
	if t == nil {
		return "", p.syntaxError(nil)
	}
	var v string
	switch {
	case t.Token == pg_query.Token_SCONST:
		raw := p.text(t)
		switch raw[0] {
		case '\'':
			v = unquoteString(raw)
		case '$':
			v = unquoteDollar(raw)
		default:
			// E'...': backslash escapes can yield any byte, which is more
			// than a version name needs.
			e := p.syntaxError(t)
			e.Hint = `Escape strings are not supported here; write the version as '1.0'.`
			return "", e
		}
		p.pos++
	case t.Token == pg_query.Token_USCONST:
		e := p.syntaxError(t)
		e.Hint = `Unicode escapes are not supported here; write the version as '1.0'.`
		return "", e
	case t.Token == pg_query.Token_ICONST || t.Token == pg_query.Token_FCONST:
		// The scanner reads 1.2.3 as 1.2 followed by .3; rejoin the
		// pieces while nothing separates them.
		end := t.End
		p.pos++
		for n := p.peek(0); n != nil && n.Start == end &&
			(n.Token == pg_query.Token_ICONST || n.Token == pg_query.Token_FCONST); n = p.peek(0) {
			end = n.End
			p.pos++
		}
		v = p.sql[t.Start:end]
	case t.KeywordKind == pg_query.KeywordKind_TYPE_FUNC_NAME_KEYWORD:
		p.pos++
		v = asciiLower(p.text(t))
	default:
		var err error
		if v, err = p.colID(); err != nil {
			return "", err
		}
	}
	// Version "" would be indistinguishable from no VERSION clause.
	if v == "" && p.badValue == nil {
		p.badValue = pgerr.New(pgerr.SyntaxError, `invalid extension version name: ""`)
		p.badValue.Detail = "Version names must not be empty."
		p.badValue.Position = PositionAt(p.sql, int(t.Start))
	}
	return v, nil
}

// unquoteString decodes a standard-conforming string literal token. The
// scanner merges 'a' and 'b' separated by whitespace containing a newline
// into one token, meaning 'ab', so the token can hold several quoted
// segments.
func unquoteString(raw string) string {
	var b strings.Builder
	for i := 0; i < len(raw); {
		switch {
		case raw[i] == '\'':
			i++
			for {
				j := strings.IndexByte(raw[i:], '\'')
				if j < 0 { // cannot happen: the scanner checked the token
					b.WriteString(raw[i:])
					return b.String()
				}
				b.WriteString(raw[i : i+j])
				i += j + 1
				if i < len(raw) && raw[i] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				break
			}
		case strings.HasPrefix(raw[i:], "--"):
			// PostgreSQL allows -- comments among the whitespace. The
			// scanner pg_query builds ends the token before one instead,
			// but should that change, a quote in the comment must not be
			// taken for a segment.
			if j := strings.IndexAny(raw[i:], "\r\n"); j >= 0 {
				i += j
			} else {
				i = len(raw)
			}
		default:
			i++
		}
	}
	return b.String()
}

// unquoteDollar decodes $tag$body$tag$, whose body is taken literally.
func unquoteDollar(raw string) string {
	n := strings.IndexByte(raw[1:], '$') + 2 // length of $tag$
	if 2*n > len(raw) {                      // cannot happen: the scanner checked the token
		return ""
	}
	return raw[n : len(raw)-n]
}

// asciiLower folds like PostgreSQL's downcase_identifier in a UTF-8
// database: ASCII letters only, so that for instance "É" stays as it is.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
