package extension

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// FuzzParseNativeControl feeds arbitrary bytes to the native control
// parser, primary and secondary. Failures must be wire errors safe to send;
// successes must hold only names and versions the rest of the package
// relies on.
func FuzzParseNativeControl(f *testing.F) {
	for _, seed := range []string{
		"default_version = '1.0'\nrequires = 'a, \"B\"'\nrelocatable = on\n",
		"schema = s\nrelocatable = true\n",
		"directory = '../x'\nencoding = latin1\n",
		"requires = '\"unterminated\n",
	} {
		f.Add([]byte(seed), false)
	}
	matches, _ := filepath.Glob(filepath.Join("testdata", "native", "*.control"))
	for _, m := range matches {
		if data, err := os.ReadFile(m); err == nil {
			f.Add(data, strings.Contains(filepath.Base(m), "--"))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, secondary bool) {
		var p *Package
		var err error
		if secondary {
			p = &Package{Name: "foo", Layout: LayoutNative}
			_, err = applyNativeControl(p, "foo--1.control", data, true)
		} else {
			p, err = ParseNativeControl("foo", "foo.control", data)
		}
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
		if p.DefaultVersion != "" && !validNativeVersion(p.DefaultVersion) {
			t.Fatalf("accepted default_version %q", p.DefaultVersion)
		}
		if len(p.Requires) != len(p.Depends) {
			t.Fatalf("requires %q but depends %v", p.Requires, p.Depends)
		}
		for i, n := range p.Requires {
			if !nameOK(n) || p.Depends[i].Name != n || len(p.Depends[i].Constraints) != 0 {
				t.Fatalf("accepted requires %q as %v", n, p.Depends[i])
			}
		}
		if p.Relocatable && p.Schema != "" {
			t.Fatal("accepted schema with relocatable")
		}
	})
}
