package extension

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"plain", "foo", true},
		{"underscore and digits", "pg_stat_2", true},
		{"hyphen", "uuid-ossp", true},
		{"inner dot", "foo.bar", true},
		{"unicode letters", "extensión", true},
		{"63 bytes", strings.Repeat("a", 63), true},
		{"64 bytes", strings.Repeat("a", 64), false},
		{"empty", "", false},
		{"parent", "..", false},
		{"parent path", "../x", false},
		{"inner dotdot", "a..b", false},
		{"slash", "a/b", false},
		{"backslash", `a\b`, false},
		{"NUL", "a\x00", false},
		{"hidden", ".hidden", false},
		{"dot", ".", false},
		{"space", "a b", false},
		{"newline", "a\nb", false},
		{"quote", `a"b`, false},
		{"invalid UTF-8", "a\xffb", false},
		{"absolute", "/etc", false},
		{"trailing dot", "a.", true},
		{"other digits", "a٣", true},
		{"letter number", "aⅫ", false},
		{"63 bytes of two-byte letters and one more", strings.Repeat("é", 31) + "a", true},
		{"64 bytes of two-byte letters", strings.Repeat("é", 32), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if nameOK(tc.in) != tc.ok {
				t.Fatalf("the oracle says valid = %v for %q; the table or the oracle is wrong", !tc.ok, tc.in)
			}
			err := ValidName(tc.in)
			if tc.ok {
				if err != nil {
					t.Fatalf("ValidName(%q) = %v, want nil", tc.in, err)
				}
				return
			}
			pe := wantError(t, err, pgerr.InvalidParameterValue, "invalid extension name")
			if pe.Detail == "" {
				t.Error("no DETAIL saying why")
			}
			if strings.ContainsRune(pe.Message, 0) {
				t.Errorf("message %q holds a NUL, which would truncate the wire field", pe.Message)
			}
		})
	}
}

// wellFormedName is an oracle for ValidName written independently of it,
// from the rule ValidName documents: one or more letters, digits, "_" or
// "-", each optionally preceded by one ".", and optionally one "." at the
// end (so no leading "." and never ".."), at most MaxNameLen bytes of valid
// UTF-8. Go's regexp reads invalid UTF-8 as U+FFFD, which no class here
// holds, so the pattern alone rejects it.
var wellFormedName = regexp.MustCompile(`^[\pL\p{Nd}_-](?:\.?[\pL\p{Nd}_-])*\.?$`)

func nameOK(name string) bool {
	return len(name) <= MaxNameLen && utf8.ValidString(name) && wellFormedName.MatchString(name)
}

// FuzzValidName checks ValidName against the independent oracle nameOK, and
// that every refusal is a 22023 whose message is safe on the wire.
func FuzzValidName(f *testing.F) {
	for _, seed := range []string{"foo", "uuid-ossp", "foo.bar", "a.", ".a", "a..b", "..", "a/b", `a\b`,
		"a\x00", "extensión", "a b", "a\xffb", strings.Repeat("é", 32), strings.Repeat("a", 64), "٣", "Ⅻ"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidName(name)
		if want := nameOK(name); (err == nil) != want {
			t.Fatalf("ValidName(%q) = %v; the rule says valid = %v", name, err, want)
		}
		if err == nil {
			return
		}
		var pe *pgerr.Error
		if !errors.As(err, &pe) || pe.Code != pgerr.InvalidParameterValue {
			t.Fatalf("ValidName(%q) = %v (%T), want a 22023 *pgerr.Error", name, err, err)
		}
		if strings.IndexByte(pe.Message+pe.Detail, 0) >= 0 || !utf8.ValidString(pe.Message) {
			t.Fatalf("ValidName(%q): message %q is not safe for an ErrorResponse", name, pe.Message)
		}
	})
}
