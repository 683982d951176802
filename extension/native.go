package extension

import (
	"path"
	"strings"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// nativeKeys are the keys of a native control file, PostgreSQL 16's set.
var nativeKeys = map[string]bool{
	"default_version": true, "comment": true, "requires": true, "schema": true,
	"relocatable": true, "superuser": true, "trusted": true, "encoding": true,
	"directory": true, "module_pathname": true, "no_relocate": true,
}

// primaryOnlyKeys may not appear in a secondary control file: they decide
// where the secondary files are and which version they are for.
var primaryOnlyKeys = map[string]bool{"directory": true, "default_version": true}

// parseNativeControl parses the primary control file of a package in
// PostgreSQL's own layout, <name>.control, whose name is not in the file
// but in its file name. file names it in messages ("foo.control:3: ...").
//
// The syntax is the same as parseControl's (postgresql.conf's). The keys are
// PostgreSQL 16's: default_version, comment, requires, schema, relocatable,
// superuser, trusted, encoding, directory, module_pathname and no_relocate;
// any other key, or a key given twice, is an error naming file and line.
// requires and no_relocate are lists of extension names as PostgreSQL
// reads them (SplitIdentifierString: comma-separated, unquoted names
// downcased, "double-quoted" ones kept as written), without version
// constraints; Depends gets the requires names so that the resolver handles
// both layouts alike. Booleans take PostgreSQL's spellings (on, off, true,
// false, yes, no, 1, 0 and unique prefixes). directory must be relative: it
// is resolved against the extensions directory by Repo.Load, which also
// keeps it inside. schema together with relocatable = true is an error, as
// in PostgreSQL.
//
// Errors are *pgerr.Error: 42601 for syntax errors and unknown or duplicate
// keys, 22023 for bad values or an invalid name, 22021 for bytes that are
// not UTF-8.
// It also returns the line of each key.
func parseNativeControl(name, file string, data []byte) (*Package, map[string]int, error) {
	if err := validNativeName(name); err != nil {
		return nil, nil, err
	}
	p := &Package{Name: name, Layout: LayoutNative, Superuser: true}
	lines, err := applyNativeControl(p, file, data, false)
	if err != nil {
		return nil, nil, err
	}
	p.Version = p.DefaultVersion
	return p, lines, nil
}

// applyNativeControl sets p's fields from a native control file: the
// primary one, or with secondary a per-version one, which may override any
// key but directory and default_version. It returns the line of each key.
func applyNativeControl(p *Package, file string, data []byte, secondary bool) (map[string]int, error) {
	entries, err := lexConf(file, data)
	if err != nil {
		return nil, err
	}
	lines := map[string]int{}
	for _, e := range entries {
		if !nativeKeys[e.key] {
			return nil, syntaxError(file, e.line, "unknown key %s", quote(e.key))
		}
		if first, dup := lines[e.key]; dup {
			return nil, syntaxError(file, e.line, "duplicate key %s (first set at line %d)", quote(e.key), first)
		}
		if secondary && primaryOnlyKeys[e.key] {
			return nil, syntaxError(file, e.line, "parameter %s cannot be set in a secondary extension control file", quote(e.key))
		}
		lines[e.key] = e.line
		bad := func(detail string) error {
			return newErr(pgerr.InvalidParameterValue, detail, "", "%sinvalid value for %s: %s", at(file, e.line), quote(e.key), quote(e.value))
		}
		switch e.key {
		case "default_version":
			if !validNativeVersion(e.value) {
				return nil, bad(`Versions may contain only ASCII letters, digits, ".", "_", "-", "~" and "+", and neither "--" nor a leading or trailing "-".`)
			}
			p.DefaultVersion = e.value
		case "comment":
			p.Comment = e.value
		case "requires", "no_relocate":
			names, ok := splitIdentifiers(e.value)
			if !ok {
				return nil, bad("Expected a comma-separated list of extension names.")
			}
			seen := map[string]bool{}
			for _, n := range names {
				if ValidName(n) != nil {
					return nil, bad("Invalid extension name " + quote(n) + ".")
				}
				if seen[n] {
					return nil, bad("Extension " + quote(n) + " is listed twice.")
				}
				seen[n] = true
			}
			if e.key == "requires" {
				p.Requires = names
				p.Depends = nil
				for _, n := range names {
					p.Depends = append(p.Depends, Requirement{Name: n})
				}
			} else {
				p.NoRelocate = names
			}
		case "schema":
			if e.value == "" {
				return nil, bad("The schema name must not be empty.")
			}
			p.Schema = e.value
		case "relocatable", "superuser", "trusted":
			b, ok := parseBool(e.value)
			if !ok {
				return nil, bad("Expected a Boolean value.")
			}
			switch e.key {
			case "relocatable":
				p.Relocatable = b
			case "superuser":
				p.Superuser = b
			default:
				p.Trusted = b
			}
		case "encoding":
			enc, ok := serverEncoding(e.value)
			if !ok {
				return nil, bad("Not a valid server encoding name.")
			}
			p.Encoding = enc
		case "directory":
			d := strings.ReplaceAll(e.value, `\`, "/")
			if d == "" || path.IsAbs(d) || (len(d) > 1 && d[1] == ':') {
				return nil, bad("The directory must be relative to the extensions directory.")
			}
			p.Directory = e.value
		case "module_pathname":
			p.ModulePathname = e.value
		}
	}
	if p.Relocatable && p.Schema != "" {
		line := lines["schema"]
		if lines["relocatable"] > line {
			line = lines["relocatable"]
		}
		return nil, pgerr.New(pgerr.InvalidParameterValue, `%sparameter "schema" cannot be specified when "relocatable" is true`, at(file, line))
	}
	return lines, nil
}

// validNativeName reports whether name can name a native package: ValidName,
// and PostgreSQL's rules for extension names, which keep the script file
// names unambiguous: no "--", no leading or trailing "-".
func validNativeName(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	var detail string
	switch {
	case strings.Contains(name, "--"):
		detail = `Extension names must not contain "--".`
	case strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-"):
		detail = `Extension names must not begin or end with "-".`
	default:
		return nil
	}
	return newErr(pgerr.InvalidParameterValue, detail, "", "invalid extension name: %q", name)
}

// validNativeVersion reports whether v can be a version of a native package:
// validVersion, and PostgreSQL's rules, which keep script file names
// unambiguous: no "--", no leading or trailing "-".
func validNativeVersion(v string) bool {
	return validVersion(v) && !strings.Contains(v, "--") && !strings.HasPrefix(v, "-") && !strings.HasSuffix(v, "-")
}

// splitIdentifiers splits a list of names as PostgreSQL's
// SplitIdentifierString does with a comma separator: names are unquoted,
// ending at a comma or whitespace and downcased (ASCII letters only), or
// double-quoted with "" standing for one quote and no downcasing. An empty
// string is an empty list; an empty name is an error.
func splitIdentifiers(s string) ([]string, bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	skip()
	if i == len(s) {
		return nil, true
	}
	var names []string
	for {
		var name string
		if s[i] == '"' {
			var b strings.Builder
			i++
			for {
				j := strings.IndexByte(s[i:], '"')
				if j < 0 {
					return nil, false
				}
				b.WriteString(s[i : i+j])
				i += j + 1
				if i < len(s) && s[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			name = b.String()
		} else {
			start := i
			for i < len(s) && s[i] != ',' && !isSpace(s[i]) {
				i++
			}
			if i == start {
				return nil, false
			}
			name = asciiLower(s[start:i])
		}
		if name == "" {
			return nil, false
		}
		names = append(names, name)
		skip()
		if i == len(s) {
			return names, true
		}
		if s[i] != ',' {
			return nil, false
		}
		i++
		skip()
		if i == len(s) {
			return nil, false // a trailing comma promises another name
		}
	}
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// parseBool parses a Boolean as PostgreSQL's parse_bool does: true, false,
// yes, no and unique prefixes of them, on, off (at least "of"), 1, 0, in any
// letter case.
func parseBool(s string) (bool, bool) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "" {
		return false, false
	}
	prefix := func(word string, minLen int) bool {
		return len(v) >= minLen && len(v) <= len(word) && word[:len(v)] == v
	}
	switch {
	case prefix("true", 1), prefix("yes", 1), prefix("on", 2), v == "1":
		return true, true
	case prefix("false", 1), prefix("no", 1), prefix("off", 2), v == "0":
		return false, true
	}
	return false, false
}

// serverEncodings maps PostgreSQL's encoding names and aliases, cleaned as
// clean_encoding_name does (lower case, letters and digits only), to the
// canonical names of the encodings a server can use. Client-only encodings
// such as SJIS or BIG5 are not server encodings, and PostgreSQL refuses
// them in a control file too.
var serverEncodings = map[string]string{
	"sqlascii": "SQL_ASCII", "utf8": "UTF8", "unicode": "UTF8",
	"eucjp": "EUC_JP", "euccn": "EUC_CN", "euckr": "EUC_KR", "euctw": "EUC_TW",
	"eucjis2004": "EUC_JIS_2004", "muleinternal": "MULE_INTERNAL",
	"latin1": "LATIN1", "latin2": "LATIN2", "latin3": "LATIN3", "latin4": "LATIN4",
	"latin5": "LATIN5", "latin6": "LATIN6", "latin7": "LATIN7", "latin8": "LATIN8",
	"latin9": "LATIN9", "latin10": "LATIN10",
	"iso88591": "LATIN1", "iso88592": "LATIN2", "iso88593": "LATIN3", "iso88594": "LATIN4",
	"iso88599": "LATIN5", "iso885910": "LATIN6", "iso885913": "LATIN7", "iso885914": "LATIN8",
	"iso885915": "LATIN9", "iso885916": "LATIN10",
	"iso88595": "ISO_8859_5", "iso88596": "ISO_8859_6", "iso88597": "ISO_8859_7", "iso88598": "ISO_8859_8",
	"win1250": "WIN1250", "win1251": "WIN1251", "win1252": "WIN1252", "win1253": "WIN1253",
	"win1254": "WIN1254", "win1255": "WIN1255", "win1256": "WIN1256", "win1257": "WIN1257",
	"win1258": "WIN1258", "win866": "WIN866", "win874": "WIN874",
	"win": "WIN1251", "alt": "WIN866", "abc": "WIN1258", "tcvn": "WIN1258", "tcvn5712": "WIN1258", "vscii": "WIN1258",
	"koi8": "KOI8R", "koi8r": "KOI8R", "koi8u": "KOI8U",
}

// serverEncoding returns the canonical name of a server encoding.
func serverEncoding(name string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if c := name[i]; isASCIILetter(c) || isDigit(c) {
			b.WriteByte(c)
		}
	}
	enc, ok := serverEncodings[asciiLower(b.String())]
	return enc, ok
}

// InstallSchema returns the schema an install of p goes into, as CREATE
// EXTENSION decides it before looking at the database. When the control
// file fixes one (p.Schema), that is it, and an explicit SCHEMA naming
// another is SQLSTATE 0A000 `extension "foo" must be installed in schema
// "bar"`, unless cascade: PostgreSQL passes the command's SCHEMA down to
// the extensions it cascades to, and lets a fixed schema win there. Else it
// is requested, which may be "": then the first schema of the search path,
// which only the database knows. PostgreSQL creates a fixed schema that does
// not exist yet (CREATE SCHEMA, owned by the installing role); the caller
// must do the same when p.Schema is set.
func (p *Package) InstallSchema(requested string, cascade bool) (string, error) {
	if p.Schema == "" {
		return requested, nil
	}
	if requested != "" && requested != p.Schema && !cascade {
		return "", pgerr.New(pgerr.FeatureNotSupported, "extension %s must be installed in schema %s", quote(p.Name), quote(p.Schema))
	}
	return p.Schema, nil
}
