package extension

import (
	"strings"
)

// CompareVersions compares two version strings and returns -1, 0 or +1 as a
// sorts before, equal to, or after b. It is a total preorder on all
// strings, so it never fails; "equal" versions may be spelled differently
// (1.0 and 1.0.0, 1.01 and 1.1).
//
// A version splits into a release part and an optional pre-release part.
// The pre-release part starts at the first "-" or "~", or at the first
// ASCII letter that directly follows an ASCII digit ("1.0-beta1",
// "1.0~rc1", "1.0alpha"); one leading "-" or "~" is dropped from it, so
// "1.0-rc1", "1.0~rc1" and "1.0rc1" are equal.
//
// Versions compare by, in order:
//
//  1. The release parts, split at ".", component by component, the shorter
//     one padded with "0" components (1.0 == 1.0.0, 2 > 1.99). Components
//     made only of digits (or empty) are numeric and compare by value, of
//     any length (1.10 > 1.9, 01 == 1). Other components compare byte-wise
//     with each other and sort before every numeric component (1.0.a <
//     1.0.0).
//  2. A version without a pre-release part sorts after the same release
//     with one: 1.0-beta1 < 1.0 and 1.0alpha < 1.0.
//  3. Pre-release parts split into maximal runs of digits and of non-digits,
//     compared run by run: digit runs by value, other runs byte-wise, a
//     digit run before a non-digit run; when one runs out first it sorts
//     first. So 1.0-beta1 < 1.0-beta2 < 1.0-beta10 < 1.0-rc1 < 1.0, and
//     1.0-rc < 1.0-rc1.
func CompareVersions(a, b string) int {
	ar, ap, aPre := splitVersion(a)
	br, bp, bPre := splitVersion(b)
	if c := compareRelease(ar, br); c != 0 {
		return c
	}
	switch {
	case aPre && bPre:
		return comparePreRelease(ap, bp)
	case aPre:
		return -1
	case bPre:
		return 1
	}
	return 0
}

// splitVersion returns the release part, the pre-release part without its
// leading separator, and whether there was a pre-release part at all
// ("1.0-" has an empty one).
func splitVersion(v string) (release, pre string, hasPre bool) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '-' || c == '~':
			return v[:i], v[i+1:], true
		case isASCIILetter(c) && i > 0 && isDigit(v[i-1]):
			return v[:i], v[i:], true
		}
	}
	return v, "", false
}

func compareRelease(a, b string) int {
	ac := strings.Split(a, ".")
	bc := strings.Split(b, ".")
	for i := 0; i < len(ac) || i < len(bc); i++ {
		x, y := "0", "0"
		if i < len(ac) {
			x = ac[i]
		}
		if i < len(bc) {
			y = bc[i]
		}
		xn, yn := allDigits(x), allDigits(y)
		var c int
		switch {
		case xn && yn:
			c = compareNumeric(x, y)
		case xn:
			c = 1
		case yn:
			c = -1
		default:
			c = strings.Compare(x, y)
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

func comparePreRelease(a, b string) int {
	for a != "" && b != "" {
		var x, y string
		x, a = nextRun(a)
		y, b = nextRun(b)
		xn, yn := isDigit(x[0]), isDigit(y[0])
		var c int
		switch {
		case xn && yn:
			c = compareNumeric(x, y)
		case xn:
			c = -1
		case yn:
			c = 1
		default:
			c = strings.Compare(x, y)
		}
		if c != 0 {
			return c
		}
	}
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return -1
	}
	return 1
}

// nextRun splits off the leading maximal run of digits or of non-digits of
// a non-empty s.
func nextRun(s string) (run, rest string) {
	d := isDigit(s[0])
	i := 1
	for i < len(s) && isDigit(s[i]) == d {
		i++
	}
	return s[:i], s[i:]
}

// compareNumeric compares digit strings by value without converting them,
// so that no component is too long to compare.
func compareNumeric(x, y string) int {
	x = strings.TrimLeft(x, "0")
	y = strings.TrimLeft(y, "0")
	if len(x) != len(y) {
		if len(x) < len(y) {
			return -1
		}
		return 1
	}
	return strings.Compare(x, y)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool       { return '0' <= c && c <= '9' }
func isASCIILetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// validVersion reports whether v may appear as a version in a control file.
// Versions end up in messages and in constraint lists, so they are kept to
// characters that need no quoting there.
func validVersion(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isDigit(c) && !isASCIILetter(c) && !strings.ContainsRune("._-~+", rune(c)) {
			return false
		}
	}
	return true
}

// Constraint is one version condition of a depends or conflicts entry, such
// as ">= 1.1".
type Constraint struct {
	// Op is one of "=", "!=", "<", "<=", ">", ">=".
	Op string
	// Version is compared with CompareVersions.
	Version string
}

// Satisfied reports whether version v meets the constraint, comparing with
// CompareVersions, so "= 1.0" accepts "1.0.0". An unknown Op is never
// satisfied.
func (c Constraint) Satisfied(v string) bool {
	r := CompareVersions(v, c.Version)
	switch c.Op {
	case "=":
		return r == 0
	case "!=":
		return r != 0
	case "<":
		return r < 0
	case "<=":
		return r <= 0
	case ">":
		return r > 0
	case ">=":
		return r >= 0
	}
	return false
}

// String returns the constraint as written in a control file, ">= 1.1".
func (c Constraint) String() string { return c.Op + " " + c.Version }

// Requirement is one entry of a depends or conflicts list: a package name
// and the constraints, all of which a version must meet to match.
type Requirement struct {
	Name        string
	Constraints []Constraint
}

// Satisfied reports whether version v meets every constraint; a
// requirement without constraints accepts any version.
func (r Requirement) Satisfied(v string) bool {
	_, ok := r.unsatisfied(v)
	return ok
}

// unsatisfied returns the first constraint v fails, for messages.
func (r Requirement) unsatisfied(v string) (Constraint, bool) {
	for _, c := range r.Constraints {
		if !c.Satisfied(v) {
			return c, false
		}
	}
	return Constraint{}, true
}

// String returns the requirement as written in a control file:
// "bar (>= 1.1, < 2.0)", or "bar" without constraints.
func (r Requirement) String() string {
	if len(r.Constraints) == 0 {
		return r.Name
	}
	var b strings.Builder
	b.WriteString(r.Name)
	b.WriteString(" (")
	for i, c := range r.Constraints {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.String())
	}
	b.WriteString(")")
	return b.String()
}

// parseRequirements parses a depends or conflicts value:
//
//	list       = [ entry { "," entry } ]
//	entry      = name [ "(" constraint { "," constraint } ")" ]
//	constraint = op version
//
// with optional whitespace between tokens. The returned string describes
// what is wrong, for the caller to place at its file and line.
func parseRequirements(s string) ([]Requirement, string) {
	var reqs []Requirement
	p := reqParser{s: s}
	p.space()
	if p.eof() {
		return nil, ""
	}
	seen := map[string]bool{}
	for {
		r, msg := p.entry()
		if msg != "" {
			return nil, msg
		}
		if seen[r.Name] {
			return nil, "extension " + quote(r.Name) + " is listed twice"
		}
		seen[r.Name] = true
		reqs = append(reqs, r)
		p.space()
		if p.eof() {
			return reqs, ""
		}
		if !p.accept(',') {
			return nil, "expected \",\" or end of list at " + p.rest()
		}
		p.space()
	}
}

type reqParser struct {
	s string
	i int
}

func (p *reqParser) eof() bool { return p.i >= len(p.s) }

func (p *reqParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *reqParser) accept(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// rest quotes what remains, for messages.
func (p *reqParser) rest() string {
	if p.eof() {
		return "end of list"
	}
	return quote(p.s[p.i:])
}

// word returns the next run of characters that are not whitespace,
// separators or parentheses.
func (p *reqParser) word() string {
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune(" \t,()", rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *reqParser) entry() (Requirement, string) {
	name := p.word()
	if name == "" {
		return Requirement{}, "expected an extension name at " + p.rest()
	}
	if ValidName(name) != nil {
		return Requirement{}, "invalid extension name " + quote(name)
	}
	r := Requirement{Name: name}
	p.space()
	if !p.accept('(') {
		return r, ""
	}
	for {
		p.space()
		c, msg := p.constraint()
		if msg != "" {
			return Requirement{}, msg
		}
		r.Constraints = append(r.Constraints, c)
		p.space()
		if p.accept(')') {
			return r, ""
		}
		if !p.accept(',') {
			return Requirement{}, "expected \",\" or \")\" at " + p.rest()
		}
	}
}

func (p *reqParser) constraint() (Constraint, string) {
	var op string
	for _, o := range []string{">=", "<=", "!=", "=", "<", ">"} {
		if strings.HasPrefix(p.s[p.i:], o) {
			op = o
			break
		}
	}
	if op == "" {
		return Constraint{}, "expected one of =, !=, <, <=, >, >= at " + p.rest()
	}
	p.i += len(op)
	p.space()
	v := p.word()
	if !validVersion(v) {
		if v == "" {
			return Constraint{}, "expected a version after " + quote(op) + " at " + p.rest()
		}
		return Constraint{}, "invalid version " + quote(v)
	}
	return Constraint{Op: op, Version: v}, ""
}
