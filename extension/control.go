package extension

import (
	"bytes"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Layouts of a package in the extensions directory, the values of
// Package.Layout.
const (
	// LayoutPgverbs is a directory per package: foo/control, foo/install.sql,
	// one version.
	LayoutPgverbs = "pgverbs"
	// LayoutNative is PostgreSQL's own layout: foo.control, foo--1.0.sql,
	// update scripts foo--1.0--1.1.sql, secondary control files
	// foo--1.1.control.
	LayoutNative = "native"
)

// Package is one package of the extensions directory, in either layout: its
// control file, optional settings file, and where its scripts are.
//
// parseControl and parseNativeControl fill only what a control file says;
// Repo.Load and Repo.LoadVersion fill the rest.
type Package struct {
	// Name equals the package's directory name (pgverbs layout) or its
	// control file's name without ".control" (native layout).
	Name string
	// Version is the version this Package value describes: the default
	// version, unless loaded for another one with Repo.LoadVersion. For the
	// pgverbs layout it is the only version the directory provides. It is ""
	// for a native package whose control file has no default_version,
	// loaded without a version.
	Version string
	// Comment is free text, for listings.
	Comment string
	// Depends lists the packages that must be installed first. For a native
	// package it holds the requires names, without constraints, so that the
	// resolver treats both layouts alike.
	Depends []Requirement
	// Conflicts lists the packages (and versions) that must not be
	// installed alongside this one. Native packages have none.
	Conflicts []Requirement
	// CustomVariableClasses is informative only: PostgreSQL 9.2 removed the
	// setting, since dotted custom settings need no declaration.
	CustomVariableClasses []string
	// Dir is the package directory (pgverbs layout) or the directory holding
	// its scripts (native layout: the control file's directory key, else the
	// extensions directory), absolute and with symbolic links resolved; set
	// by Repo.Load.
	Dir string
	// HasUninstall reports whether the package ships an uninstall script:
	// uninstall.sql (pgverbs layout), or uninstall_<name>.sql beside the
	// scripts (native layout, the convention of contrib modules before
	// PostgreSQL 9.1, which pgTAP still follows); set by Repo.Load.
	HasUninstall bool
	// Settings come from <name>.conf, in file order; set by Repo.Load. Only
	// the pgverbs layout has them.
	Settings []Setting

	// Layout is LayoutPgverbs or LayoutNative; set by Repo.Load.
	Layout string
	// DefaultVersion is the version installed when none is asked for: the
	// default_version key (native layout, "" when absent), or Version
	// (pgverbs layout).
	DefaultVersion string
	// Versions lists every version that can be installed, sorted with
	// CompareVersions: for the native layout the versions with an install
	// script or reachable from one through update scripts, as
	// pg_available_extension_versions lists them; for the pgverbs layout
	// just Version. Set by Repo.Load.
	Versions []string
	// Requires names the extensions that must be installed first: the
	// requires key (native layout), the names of Depends (pgverbs layout).
	Requires []string
	// Schema is the schema the extension must be installed in (native
	// control key schema), "" when the installer chooses.
	Schema string
	// Relocatable, Superuser and Trusted are the native control keys of
	// the same names (defaults false, true, false). The pgverbs layout runs
	// its scripts as the client's own role and leaves all three false.
	Relocatable, Superuser, Trusted bool
	// ModulePathname is substituted for MODULE_PATHNAME in scripts (native
	// control key module_pathname). Setting it does not mean that the
	// package needs a shared library: see NeedsLibrary.
	ModulePathname string
	// Encoding is the encoding of the scripts (native control key encoding),
	// as PostgreSQL's canonical name ("UTF8", "LATIN1"); "" means UTF-8.
	Encoding string
	// Directory is the directory key of a native control file as written,
	// relative to the extensions directory; Dir is where it leads.
	Directory string
	// NoRelocate lists required extensions whose schema this one
	// references with @extschema:name@, so they must not be relocated
	// (native control key no_relocate, PostgreSQL 16).
	NoRelocate []string
}

// Setting is one "name = value" line of a package's <name>.conf.
type Setting struct {
	Name, Value string
}

// confEntry is one "key = value" line.
type confEntry struct {
	line       int
	key, value string
}

// lexConf splits a file in postgresql.conf syntax into entries:
//
//   - "#" starts a comment that runs to the end of the line, outside quotes;
//   - each non-blank line is "key [=] value";
//   - a key is a letter or "_" followed by letters, digits, "_", "$" and ".";
//   - a value is either quoted, '...', where a doubled quote character or \'
//     stands for one and \b \f \n \r \t and \ooo (octal) are escapes as in
//     postgresql.conf, or bare: the rest of the line up to a comment,
//     trimmed. Bare values may hold spaces, unlike in postgresql.conf, so
//     that "depends = bar (>= 1.1)" needs no quotes, but no quote
//     characters, which would mean a quoting mistake.
//
// Files must be UTF-8 without NUL bytes, since every value ends up in SQL
// text or in an ErrorResponse.
func lexConf(file string, data []byte) ([]confEntry, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var out []confEntry
	for n, raw := range strings.Split(string(data), "\n") {
		line := n + 1
		raw = strings.TrimSuffix(raw, "\r")
		if !utf8.ValidString(raw) || strings.IndexByte(raw, 0) >= 0 {
			return nil, pgerr.New(pgerr.CharacterNotInRepertoire, "%sinvalid byte sequence for encoding \"UTF8\"", at(file, line))
		}
		s := strings.TrimLeft(raw, " \t\f\v")
		if s == "" || s[0] == '#' {
			continue
		}
		i := 0
		for i < len(s) && keyByte(s[i], i == 0) {
			i++
		}
		key := s[:i]
		if key == "" || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
			return nil, syntaxError(file, line, "syntax error near %s", quote(firstWord(s)))
		}
		if rest := s[i:]; rest != "" && !isSpace(rest[0]) && rest[0] != '=' && rest[0] != '#' {
			return nil, syntaxError(file, line, "syntax error near %s", quote(firstWord(s)))
		}
		s = strings.TrimLeft(s[i:], " \t\f\v")
		if s != "" && s[0] == '=' {
			s = strings.TrimLeft(s[1:], " \t\f\v")
		}
		if s == "" || s[0] == '#' {
			return nil, syntaxError(file, line, "missing value for %s", quote(key))
		}
		var value string
		if s[0] == '\'' {
			v, rest, ok := unquoteConf(s)
			if !ok {
				return nil, syntaxError(file, line, "unterminated quoted string")
			}
			rest = strings.TrimLeft(rest, " \t\f\v")
			if rest != "" && rest[0] != '#' {
				return nil, syntaxError(file, line, "syntax error near %s after quoted value", quote(firstWord(rest)))
			}
			if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
				return nil, pgerr.New(pgerr.CharacterNotInRepertoire, "%sinvalid byte sequence for encoding \"UTF8\" in value of %s", at(file, line), quote(key))
			}
			value = v
		} else {
			if j := strings.IndexByte(s, '#'); j >= 0 {
				s = s[:j]
			}
			value = strings.TrimRight(s, " \t\f\v")
			if strings.ContainsRune(value, '\'') {
				return nil, syntaxError(file, line, "quote character inside unquoted value of %s", quote(key))
			}
		}
		out = append(out, confEntry{line: line, key: key, value: value})
	}
	return out, nil
}

func syntaxError(file string, line int, format string, args ...any) *pgerr.Error {
	return pgerr.New(pgerr.SyntaxError, at(file, line)+format, args...)
}

func keyByte(c byte, first bool) bool {
	if isASCIILetter(c) || c == '_' || c >= 0x80 {
		return true
	}
	return !first && (isDigit(c) || c == '$' || c == '.')
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\f' || c == '\v' }

func firstWord(s string) string {
	if i := strings.IndexAny(s, " \t\f\v"); i >= 0 {
		return s[:i]
	}
	return s
}

// unquoteConf decodes the quoted string at the start of s, as GUC_scanstr
// does for postgresql.conf, and returns what follows it.
func unquoteConf(s string) (value, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' && i+1 < len(s) && s[i+1] == '\'':
			b.WriteByte('\'')
			i++
		case c == '\'':
			return b.String(), s[i+1:], true
		case c == '\\':
			if i+1 >= len(s) {
				return "", "", false
			}
			i++
			switch e := s[i]; e {
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '0', '1', '2', '3', '4', '5', '6', '7':
				v := int(e - '0')
				for k := 0; k < 2 && i+1 < len(s) && '0' <= s[i+1] && s[i+1] <= '7'; k++ {
					i++
					v = v*8 + int(s[i]-'0')
				}
				b.WriteByte(byte(v))
			default:
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// controlKeys are the keys a control file may set.
var controlKeys = map[string]bool{
	"name": true, "version": true, "comment": true, "depends": true,
	"conflicts": true, "custom_variable_classes": true,
}

// parseControl parses a package's control file. file names it in messages
// ("foo/control:3: unknown key \"bar\"").
//
// The syntax is postgresql.conf's (see the package documentation). Keys are
// name and version, both required, and comment, depends, conflicts and
// custom_variable_classes; any other key, or a key given twice, is an
// error, because a misspelt "depends" silently ignored would install a
// package without its dependencies. Values are checked: name with
// ValidName, version as letters, digits and "._-~+", depends and conflicts
// as requirement lists such as "bar (>= 1.1, < 2.0), baz".
//
// Errors are *pgerr.Error: SQLSTATE 42601 for syntax errors and unknown
// keys, as PostgreSQL reports them in its own control files, 22023 for bad
// or missing values, 22021 for bytes that are not UTF-8. parseControl
// cannot check that name matches the directory; Repo.Load does.
// It also returns the line of each key, for Repo.Load's messages.
func parseControl(file string, data []byte) (*Package, map[string]int, error) {
	entries, err := lexConf(file, data)
	if err != nil {
		return nil, nil, err
	}
	p := &Package{}
	lines := map[string]int{}
	for _, e := range entries {
		if !controlKeys[e.key] {
			return nil, nil, syntaxError(file, e.line, "unknown key %s", quote(e.key))
		}
		if first, dup := lines[e.key]; dup {
			return nil, nil, syntaxError(file, e.line, "duplicate key %s (first set at line %d)", quote(e.key), first)
		}
		lines[e.key] = e.line
		bad := func(detail string) error {
			return newErr(pgerr.InvalidParameterValue, detail, "", "%sinvalid value for %s: %s", at(file, e.line), quote(e.key), quote(e.value))
		}
		switch e.key {
		case "name":
			if err := ValidName(e.value); err != nil {
				var detail string
				var pe *pgerr.Error
				if errors.As(err, &pe) {
					detail = pe.Detail
				}
				return nil, nil, bad(detail)
			}
			p.Name = e.value
		case "version":
			if !validVersion(e.value) {
				return nil, nil, bad(`Versions may contain only ASCII letters, digits, ".", "_", "-", "~" and "+".`)
			}
			p.Version = e.value
		case "comment":
			p.Comment = e.value
		case "depends", "conflicts":
			reqs, msg := parseRequirements(e.value)
			if msg != "" {
				return nil, nil, bad(upperFirst(msg) + ".")
			}
			if e.key == "depends" {
				p.Depends = reqs
			} else {
				p.Conflicts = reqs
			}
		case "custom_variable_classes":
			for _, c := range strings.Split(e.value, ",") {
				c = strings.TrimSpace(c)
				if c == "" || !validClass(c) {
					return nil, nil, bad("Expected a comma-separated list of identifiers.")
				}
				p.CustomVariableClasses = append(p.CustomVariableClasses, c)
			}
		}
	}
	for _, k := range []string{"name", "version"} {
		if _, ok := lines[k]; !ok {
			return nil, nil, pgerr.New(pgerr.InvalidParameterValue, "%smissing required key %s", at(file, 0), quote(k))
		}
	}
	return p, lines, nil
}

func validClass(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isASCIILetter(c) || c == '_' || c >= 0x80 || (i > 0 && (isDigit(c) || c == '$'))) {
			return false
		}
	}
	return true
}

func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// ParseSettings parses a package's <name>.conf, "name = value" lines in
// postgresql.conf syntax (see the package documentation), into settings in
// file order. A setting given twice, in any letter case (PostgreSQL's
// setting names are case-insensitive), is an error rather than "last one
// wins", because in a file this short it is a mistake. The include
// directives of postgresql.conf are refused: they would read files outside
// the package. Errors are *pgerr.Error (42601, 22021) naming file and line.
func ParseSettings(file string, data []byte) ([]Setting, error) {
	entries, err := lexConf(file, data)
	if err != nil {
		return nil, err
	}
	var out []Setting
	lines := map[string]int{}
	for _, e := range entries {
		k := strings.ToLower(e.key)
		switch k {
		case "include", "include_if_exists", "include_dir":
			return nil, syntaxError(file, e.line, "%s is not allowed in a package settings file", quote(e.key))
		}
		if first, dup := lines[k]; dup {
			return nil, syntaxError(file, e.line, "duplicate setting %s (first set at line %d)", quote(e.key), first)
		}
		lines[k] = e.line
		out = append(out, Setting{Name: e.key, Value: e.value})
	}
	return out, nil
}
