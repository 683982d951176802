package extension

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// MaxNameLen is the longest package name in bytes: PostgreSQL's
// NAMEDATALEN-1, since the name ends up in name-typed catalog columns.
const MaxNameLen = 63

// ValidName reports whether name can name a package, returning a
// *pgerr.Error (SQLSTATE 22023, `invalid extension name: "x"`) when it
// cannot.
//
// A name becomes a directory name under the extensions directory, and the
// proxy receives it from SQL where quoting lets a client write anything. So
// the check is an allow-list rather than a list of dangerous characters:
// letters, digits, "_", "-" and ".", at most MaxNameLen bytes of valid
// UTF-8, no leading "." and no "..". That rules out "/", "\", NUL,
// whitespace and control characters whatever the quoting, and keeps names
// writable unquoted in a control file's depends and conflicts lists.
func ValidName(name string) error {
	var detail string
	switch {
	case name == "":
		detail = "Extension names must not be empty."
	case len(name) > MaxNameLen:
		detail = "Extension names must be at most 63 bytes long."
	case !utf8.ValidString(name):
		detail = "Extension names must be valid UTF-8."
	case strings.ContainsAny(name, "/\\"):
		detail = "Extension names must not contain directory separator characters."
	case strings.HasPrefix(name, "."):
		detail = `Extension names must not begin with ".".`
	case strings.Contains(name, ".."):
		detail = `Extension names must not contain "..".`
	default:
		for _, r := range name {
			if !nameRune(r) {
				detail = `Extension names may contain only letters, digits, "_", "-" and ".".`
				break
			}
		}
	}
	if detail == "" {
		return nil
	}
	// %q, not "%s": the name may hold a NUL, which would cut the
	// ErrorResponse field short on the wire.
	return newErr(pgerr.InvalidParameterValue, detail, "", "invalid extension name: %q", name)
}

func nameRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '.'
}
