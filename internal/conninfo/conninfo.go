// Package conninfo tokenizes libpq keyword/value connection strings
// ("host=db user='a b'") exactly as libpq's conninfo_parse, and pgconn's
// copy of it, split them, so that code that must find one keyword (the
// password to redact, whether a user is named) finds the value the parser
// will take, not something that merely looks like it.
package conninfo

import "strings"

// Pair is one keyword=value of a connection string, by byte offsets into
// it: s[Start:ValueStart] is the keyword, '=' and the blanks around it,
// s[ValueStart:End] the raw value, quotes and backslashes included.
type Pair struct {
	Key               string
	Start, ValueStart int
	End               int
	// Unterminated is set for a quoted value without its closing quote:
	// the value runs to the end of the string, and libpq refuses it.
	Unterminated bool
}

// Value returns the pair's value as libpq reads it: unquoted, with
// backslash escapes resolved.
func (p Pair) Value(s string) string {
	raw := s[p.ValueStart:p.End]
	if strings.HasPrefix(raw, "'") {
		raw = strings.TrimPrefix(raw, "'")
		if !p.Unterminated {
			raw = strings.TrimSuffix(raw, "'")
		}
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

// IsSpace is libpq's isspace set for keyword/value strings.
func IsSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

const spaces = " \t\n\r\v\f"

// Scan splits s into its pairs. bad is the offset of the first text that
// is not a keyword=value pair (a missing '=', a keyword with a blank in
// it), where libpq would stop with an error; -1 when there is none. An
// unterminated quoted value ends the scan as the last pair.
func Scan(s string) (pairs []Pair, bad int) {
	i := 0
	for {
		for i < len(s) && IsSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return pairs, -1
		}
		eq := strings.IndexByte(s[i:], '=')
		key := ""
		if eq >= 0 {
			key = strings.TrimRight(s[i:i+eq], spaces)
		}
		if key == "" || strings.ContainsAny(key, spaces) {
			return pairs, i
		}
		p := Pair{Key: key, Start: i}
		v := i + eq + 1
		for v < len(s) && IsSpace(s[v]) {
			v++
		}
		p.ValueStart = v
		end := v
		if end < len(s) && s[end] == '\'' {
			end++
			for end < len(s) && s[end] != '\'' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				p.End, p.Unterminated = len(s), true
				return append(pairs, p), -1
			}
			end++ // the closing quote
		} else {
			for end < len(s) && !IsSpace(s[end]) {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			end = min(end, len(s))
		}
		p.End = end
		pairs = append(pairs, p)
		i = end
	}
}
