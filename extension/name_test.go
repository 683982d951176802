package extension

import (
	"strings"
	"testing"

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
	} {
		t.Run(tc.name, func(t *testing.T) {
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
