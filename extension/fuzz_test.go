package extension

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// FuzzParseControl feeds arbitrary bytes to the control parser, which reads
// files an operator may have got from anywhere. Beyond not panicking, a
// successful parse must hold only values the rest of the package relies on,
// and every failure must be a wire error whose text is safe to send.
func FuzzParseControl(f *testing.F) {
	for _, seed := range []string{
		"name = foo\nversion = 1.0\n",
		"# comment\nname = foo\nversion = 1.0\ncomment = 'what it does'\ndepends  = bar (>= 1.1), baz\nconflicts = bla (< 0.8)\ncustom_variable_classes = 'foo'\n",
		"name 'foo'\nversion '1.0-rc1'\ncomment = 'it''s \\'x\\' \\101\\n'\n",
		"name = foo\nversion = 1\ndepends = a (>= 1, < 2.0, != 1.5), b(=1),c\n",
		"name = foo\nversion = 1\nunknown = x\n",
		"name = ../x\nversion = 1\n",
		"comment = 'unterminated\n",
		"name = foo\x00\n",
		"\xef\xbb\xbfname = foo\r\nversion = 1\r\n",
	} {
		f.Add([]byte(seed))
	}
	if matches, _ := filepath.Glob(filepath.Join("testdata", "repo", "*", "control")); len(matches) > 0 {
		for _, m := range matches {
			if data, err := os.ReadFile(m); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseControl("control", data)
		if err != nil {
			var pe *pgerr.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T) is not a *pgerr.Error", err, err)
			}
			if strings.IndexByte(pe.Message+pe.Detail+pe.Hint, 0) >= 0 || !utf8.ValidString(pe.Message+pe.Detail) {
				t.Fatalf("error text %q is not safe for an ErrorResponse", pe.Message)
			}
			return
		}
		if !nameOK(p.Name) || !validVersion(p.Version) {
			t.Fatalf("accepted name %q, version %q", p.Name, p.Version)
		}
		if !utf8.ValidString(p.Comment) || strings.IndexByte(p.Comment, 0) >= 0 {
			t.Fatalf("accepted comment %q", p.Comment)
		}
		// A requirement's String is what a control file would say: it must
		// parse back to the same requirement.
		for _, list := range [][]Requirement{p.Depends, p.Conflicts} {
			for _, r := range list {
				back, msg := parseRequirements(r.String())
				if msg != "" || len(back) != 1 || !reflect.DeepEqual(back[0], r) {
					t.Fatalf("%q parsed back as %+v, %q", r.String(), back, msg)
				}
			}
		}
	})
}

// FuzzCompareVersions checks that CompareVersions is an order on any pair
// of strings: reflexive and antisymmetric, and consistent with itself
// through Constraint.
func FuzzCompareVersions(f *testing.F) {
	for _, seed := range [][2]string{
		{"1.10", "1.9"}, {"1.0", "1.0.0"}, {"2", "1.99"},
		{"1.0-beta1", "1.0-rc1"}, {"1.0-rc1", "1.0"}, {"1.0alpha", "1.0"},
		{"1.0~rc1", "1.0-rc1"}, {"1.0.a", "1.0.0"}, {"", "0"}, {"1..2", "1.0.2"},
		{"1.0-", "1.0"}, {"v1.2", "v1.10"}, {"1.0+b1", "1.0"}, {"00001", "1"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := CompareVersions(a, b), CompareVersions(b, a)
		if ab < -1 || ab > 1 {
			t.Fatalf("CompareVersions(%q, %q) = %d, not -1, 0 or 1", a, b, ab)
		}
		if ab != -ba {
			t.Fatalf("CompareVersions(%q, %q) = %d but CompareVersions(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if CompareVersions(a, a) != 0 {
			t.Fatalf("CompareVersions(%q, %q) != 0", a, a)
		}
		eq := Constraint{"=", b}.Satisfied(a)
		if eq != (ab == 0) {
			t.Fatalf("= %q satisfied by %q: %v, but CompareVersions = %d", b, a, eq, ab)
		}
	})
}
