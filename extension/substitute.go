package extension

import (
	"sort"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// quotingRelevantChars are the characters PostgreSQL refuses in a
// substituted schema or owner name since CVE-2023-39417: inside a string
// literal or dollar quote of a script, a name holding one of them could end
// the literal and inject SQL.
const quotingRelevantChars = `"$'\`

// QuoteIdentifier quotes name as PostgreSQL's quote_identifier does: not at
// all when it is a lower-case identifier that is not a keyword (unreserved
// keywords excepted), else in double quotes with inner quotes doubled. all
// is the quote_all_identifiers setting, which quotes every name.
//
// The difference from always quoting matters in extension scripts, which
// use @extschema@ inside string literals ('@extschema@,pg_temp' as a
// search_path, NOT IN ('pg_catalog', '@extschema@')): there the quoted
// form is a different string.
func QuoteIdentifier(name string, all bool) string {
	if !all && safeIdentifier(name) {
		return name
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// safeIdentifier is quote_identifier's test: [a-z_][a-z0-9_]* and not a
// keyword other than an unreserved one. The keyword list and categories are
// the parser's own, through pg_query's scanner.
func safeIdentifier(name string) bool {
	if name == "" || !(name[0] == '_' || 'a' <= name[0] && name[0] <= 'z') {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	res, err := pg_query.Scan(name)
	if err != nil || len(res.GetTokens()) != 1 {
		return false
	}
	k := res.GetTokens()[0].KeywordKind
	return k == pg_query.KeywordKind_NO_KEYWORD || k == pg_query.KeywordKind_UNRESERVED_KEYWORD
}

// substitution is a script with its placeholders replaced, able to map
// offsets in the new text back to lines of the old one: a replacement may
// hold newlines (a schema name can), and error lines must point into the
// file the author wrote.
type substitution struct {
	text string
	// starts holds, for each line of the original text, the offset in
	// text where what became of it starts.
	starts []int
}

// substituteLines applies the replacement passes in order, each over the
// whole text as PostgreSQL's replace_text calls do, and reports for each
// pass whether it replaced anything. Placeholders never span a newline, so
// running every pass line by line gives the same text as running each over
// the whole, and keeps the line map exact.
func substituteLines(text string, passes []replacement) (*substitution, []bool) {
	lines := strings.Split(text, "\n")
	hit := make([]bool, len(passes))
	for i, p := range passes {
		if p.from == "" {
			continue
		}
		for j, l := range lines {
			if strings.Contains(l, p.from) {
				lines[j] = strings.ReplaceAll(l, p.from, p.to)
				hit[i] = true
			}
		}
	}
	sub := &substitution{starts: make([]int, len(lines))}
	var b strings.Builder
	for j, l := range lines {
		if j > 0 {
			b.WriteByte('\n')
		}
		sub.starts[j] = b.Len()
		b.WriteString(l)
	}
	sub.text = b.String()
	return sub, hit
}

// replacement is one substitution pass: every from becomes to.
type replacement struct{ from, to string }

// line returns the 1-based line of the original text that offset off of the
// substituted text comes from.
func (s *substitution) line(off int) int {
	return sort.Search(len(s.starts), func(i int) bool { return s.starts[i] > off })
}
