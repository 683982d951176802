package commands

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Command is a SQL command implemented by pgverbs rather than PostgreSQL.
type Command interface {
	// Name is the command's tag, e.g. "INSTALL EXTENSION".
	Name() string
	// Keywords are the leading words that identify a statement as this
	// command, upper case, e.g. {"INSTALL", "EXTENSION"}.
	Keywords() []string
	Parser
}

// Registry maps leading keywords to commands. It is built at start-up and
// read-only afterwards, so it needs no locking.
type Registry struct {
	commands []Command
	// firsts holds the distinct first keywords, upper case, for MayContain.
	firsts []string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Register adds c. It panics on a command without keywords or one whose
// keywords are already taken: both are programming errors.
func (r *Registry) Register(c Command) {
	kw := c.Keywords()
	if len(kw) == 0 {
		panic(fmt.Sprintf("commands: %s has no keywords", c.Name()))
	}
	for _, other := range r.commands {
		if equalWords(other.Keywords(), kw) {
			panic(fmt.Sprintf("commands: %s and %s share keywords", c.Name(), other.Name()))
		}
	}
	r.commands = append(r.commands, c)
	first := strings.ToUpper(kw[0])
	for _, f := range r.firsts {
		if f == first {
			return
		}
	}
	r.firsts = append(r.firsts, first)
}

// Empty reports whether no command is registered.
func (r *Registry) Empty() bool { return len(r.commands) == 0 }

// MayContain reports whether sql contains, anywhere and in any case, the
// first keyword of a registered command. False means sql certainly holds no
// command; true means Match must look closer. It does not allocate.
func (r *Registry) MayContain(sql []byte) bool {
	for _, kw := range r.firsts {
		if containsFold(sql, kw) {
			return true
		}
	}
	return false
}

// containsFold reports whether s contains the ASCII upper-case word kw in any
// letter case, as a whole word: not inside a longer identifier, so that
// "pg_database" does not send a query through the scanner for BASE.
func containsFold(s []byte, kw string) bool {
	n := len(kw)
	if n == 0 || len(s) < n {
		return false
	}
	c0 := kw[0]
	for i := 0; i+n <= len(s); i++ {
		if s[i]&^0x20 != c0 {
			continue
		}
		j := 1
		for ; j < n; j++ {
			if s[i+j]&^0x20 != kw[j] {
				break
			}
		}
		if j == n && (i == 0 || !identByte(s[i-1])) && (i+n == len(s) || !identByte(s[i+n])) {
			return true
		}
	}
	return false
}

// identByte reports whether b can continue an identifier (PostgreSQL:
// letters, digits, _, $ and any non-ASCII byte).
func identByte(b byte) bool {
	return b >= 0x80 || b == '_' || b == '$' || '0' <= b && b <= '9' || 'a' <= b|0x20 && b|0x20 <= 'z'
}

// Statement is one statement of a query string and the command it invokes,
// if any.
type Statement struct {
	// SQL is the statement text, without the separating semicolon.
	SQL string
	// Offset is the byte offset of SQL in the original query string, so
	// that error positions can be reported against what the client sent.
	Offset int
	// Command is nil for a statement PostgreSQL executes.
	Command Command
}

// Match splits sql into statements and reports which invoke a registered
// command. found is false when none does; the statements are then of no use
// and the caller forwards sql untouched. A scanner error also yields found
// false: such text is not ours, and PostgreSQL reports the error itself.
func (r *Registry) Match(sql string) (stmts []Statement, found bool) {
	if r.Empty() {
		return nil, false
	}
	scan, err := pg_query.Scan(sql)
	if err != nil {
		return nil, false
	}
	toks := scan.GetTokens()
	start := 0 // index of the first token of the current statement
	emit := func(end int) {
		// Statement tokens are toks[start:end], comments included.
		words := make([]string, 0, 4)
		first, last := -1, -1
		for _, t := range toks[start:end] {
			if t.Token == pg_query.Token_SQL_COMMENT || t.Token == pg_query.Token_C_COMMENT {
				continue
			}
			if first < 0 {
				first = int(t.Start)
			}
			last = int(t.End)
			if len(words) < 4 {
				words = append(words, sql[t.Start:t.End])
			}
		}
		if first < 0 {
			return
		}
		st := Statement{SQL: sql[first:last], Offset: first, Command: r.lookup(words)}
		if st.Command != nil {
			found = true
		}
		stmts = append(stmts, st)
	}
	for i, t := range toks {
		if t.Token == pg_query.Token_ASCII_59 { // ';'
			emit(i)
			start = i + 1
		}
	}
	emit(len(toks))
	return stmts, found
}

// lookup finds the command whose keywords start words. words hold the
// tokens' source text, so a quoted "install" (an identifier PostgreSQL must
// see) never equals the keyword INSTALL.
func (r *Registry) lookup(words []string) Command {
	for _, c := range r.commands {
		kw := c.Keywords()
		if len(words) >= len(kw) && equalWords(words[:len(kw)], kw) {
			return c
		}
	}
	return nil
}

// equalWords compares word lists folding ASCII letters only, as
// PostgreSQL's keyword lookup does: "inſtall" is not INSTALL.
func equalWords(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equalFoldASCII(a[i], b[i]) {
			return false
		}
	}
	return true
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
