package extension

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func nativeRepo(t *testing.T) *Repo {
	t.Helper()
	return OpenRepo(filepath.Join("testdata", "native"))
}

func absDir(t *testing.T, parts ...string) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(filepath.Join(parts...))
	if err != nil {
		t.Fatal(err)
	}
	d, err = filepath.Abs(d)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseNativeControl(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ext   string // extension name, "foo" when empty
		data  string
		want  *Package
		code  pgerr.Code
		wantE string
	}{
		{
			name: "pgTAP's control file",
			ext:  "pgtap",
			data: "# pgTAP extension\ncomment = 'Unit testing for PostgreSQL'\ndefault_version = '1.2.0'\nmodule_pathname = '$libdir/pgtap'\nrequires = 'plpgsql'\nrelocatable = true\nsuperuser = false\n",
			want: &Package{
				Name: "pgtap", Layout: LayoutNative, Version: "1.2.0", DefaultVersion: "1.2.0",
				Comment: "Unit testing for PostgreSQL", ModulePathname: "$libdir/pgtap",
				Requires: []string{"plpgsql"}, Depends: []Requirement{{Name: "plpgsql"}},
				Relocatable: true,
			},
		},
		{
			name: "defaults: superuser true, the rest off",
			data: "default_version = 1.0\n",
			want: &Package{Name: "foo", Layout: LayoutNative, Version: "1.0", DefaultVersion: "1.0", Superuser: true},
		},
		{
			name: "every key",
			data: "default_version = '2.0'\ncomment = 'c'\nrequires = 'a, \"B_c\" ,D'\nschema = s\nrelocatable = off\nsuperuser = of\ntrusted = YES\nencoding = 'UTF-8'\ndirectory = 'sub/dir'\nmodule_pathname = '$libdir/foo'\nno_relocate = 'a'\n",
			want: &Package{
				Name: "foo", Layout: LayoutNative, Version: "2.0", DefaultVersion: "2.0", Comment: "c",
				Requires: []string{"a", "B_c", "d"},
				Depends:  []Requirement{{Name: "a"}, {Name: "B_c"}, {Name: "d"}},
				Schema:   "s", Trusted: true, Encoding: "UTF8", Directory: "sub/dir",
				ModulePathname: "$libdir/foo", NoRelocate: []string{"a"},
			},
		},
		{
			name: "no default_version",
			data: "comment = 'no version'\n",
			want: &Package{Name: "foo", Layout: LayoutNative, Comment: "no version", Superuser: true},
		},
		{
			name: "hyphenated names need no quotes",
			data: "requires = 'uuid-ossp, hstore'\n",
			want: &Package{Name: "foo", Layout: LayoutNative, Superuser: true, Requires: []string{"uuid-ossp", "hstore"}, Depends: []Requirement{{Name: "uuid-ossp"}, {Name: "hstore"}}},
		},
		{name: "unknown key", data: "default_version = 1\nversion = 1\n", code: pgerr.SyntaxError, wantE: `foo.control:2: unknown key "version"`},
		{name: "pgverbs key", data: "depends = bar\n", code: pgerr.SyntaxError, wantE: `foo.control:1: unknown key "depends"`},
		{name: "duplicate key", data: "comment = a\ncomment = b\n", code: pgerr.SyntaxError, wantE: `foo.control:2: duplicate key "comment" (first set at line 1)`},
		{name: "bad boolean", data: "relocatable = maybe\n", code: pgerr.InvalidParameterValue, wantE: `foo.control:1: invalid value for "relocatable"`},
		{name: "ambiguous boolean", data: "trusted = o\n", code: pgerr.InvalidParameterValue, wantE: `invalid value for "trusted"`},
		{name: "bad version", data: "default_version = '1--2'\n", code: pgerr.InvalidParameterValue, wantE: `foo.control:1: invalid value for "default_version"`},
		{name: "version ending in -", data: "default_version = '1-'\n", code: pgerr.InvalidParameterValue, wantE: `invalid value for "default_version"`},
		{name: "constraints are not native", data: "requires = 'bar (>= 1)'\n", code: pgerr.InvalidParameterValue, wantE: `foo.control:1: invalid value for "requires"`},
		{name: "trailing comma", data: "requires = 'a,'\n", code: pgerr.InvalidParameterValue, wantE: `invalid value for "requires"`},
		{name: "unterminated quoted name", data: "requires = '\"a'\n", code: pgerr.InvalidParameterValue, wantE: `invalid value for "requires"`},
		{name: "listed twice", data: "requires = 'a, A'\n", code: pgerr.InvalidParameterValue, wantE: `invalid value for "requires"`},
		{name: "bad encoding", data: "encoding = klingon\n", code: pgerr.InvalidParameterValue, wantE: `invalid value for "encoding"`},
		{name: "client-only encoding", data: "encoding = SJIS\n", code: pgerr.InvalidParameterValue, wantE: `invalid value for "encoding"`},
		{name: "absolute directory", data: "directory = '/usr/share'\n", code: pgerr.InvalidParameterValue, wantE: `invalid value for "directory"`},
		{name: "schema and relocatable", data: "schema = s\nrelocatable = true\n", code: pgerr.InvalidParameterValue, wantE: `foo.control:2: parameter "schema" cannot be specified when "relocatable" is true`},
		{name: "invalid extension name", ext: "a--b", data: "", code: pgerr.InvalidParameterValue, wantE: "invalid extension name"},
		{name: "syntax as for pgverbs", data: "comment = 'abc\n", code: pgerr.SyntaxError, wantE: "foo.control:1: unterminated quoted string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ext := tc.ext
			if ext == "" {
				ext = "foo"
			}
			p, err := ParseNativeControl(ext, ext+".control", []byte(tc.data))
			if tc.want == nil {
				wantError(t, err, tc.code, tc.wantE)
				return
			}
			if err != nil {
				t.Fatalf("ParseNativeControl: %v", err)
			}
			if !reflect.DeepEqual(p, tc.want) {
				t.Errorf("ParseNativeControl =\n%+v\nwant\n%+v", p, tc.want)
			}
		})
	}
}

func TestParseBool(t *testing.T) {
	for in, want := range map[string]int{ // 1 true, 0 false, -1 invalid
		"true": 1, "T": 1, "tr": 1, "yes": 1, "y": 1, "on": 1, "1": 1, "ON": 1,
		"false": 0, "f": 0, "no": 0, "n": 0, "off": 0, "of": 0, "0": 0,
		"o": -1, "": -1, "truee": -1, "2": -1, "onn": -1, "yess": -1,
	} {
		b, ok := parseBool(in)
		got := -1
		if ok {
			got = 0
			if b {
				got = 1
			}
		}
		if got != want {
			t.Errorf("parseBool(%q) = %v, %v", in, b, ok)
		}
	}
}

func TestSecondaryControl(t *testing.T) {
	base := "default_version = '1.0'\ncomment = 'base'\nrequires = 'a'\nrelocatable = true\n"
	for _, tc := range []struct {
		name      string
		secondary string
		check     func(t *testing.T, p *Package)
		code      pgerr.Code
		wantE     string
	}{
		{
			name:      "overrides",
			secondary: "comment = 'v2'\nrequires = 'b, c'\nsuperuser = false\nmodule_pathname = '$libdir/foo2'\nencoding = latin1\ntrusted = true\nno_relocate = 'b'\n",
			check: func(t *testing.T, p *Package) {
				want := &Package{
					Name: "foo", Layout: LayoutNative, Version: "2.0", DefaultVersion: "1.0", Comment: "v2",
					Requires: []string{"b", "c"}, Depends: []Requirement{{Name: "b"}, {Name: "c"}},
					Relocatable: true, Trusted: true, ModulePathname: "$libdir/foo2", Encoding: "LATIN1", NoRelocate: []string{"b"},
				}
				p.Dir, p.Versions = "", nil
				if !reflect.DeepEqual(p, want) {
					t.Errorf("LoadVersion =\n%+v\nwant\n%+v", p, want)
				}
			},
		},
		{
			name:      "schema needs relocatable off again",
			secondary: "schema = fixed\n",
			code:      pgerr.InvalidParameterValue, wantE: `foo--2.0.control:1: parameter "schema" cannot be specified when "relocatable" is true`,
		},
		{
			name:      "schema with relocatable off",
			secondary: "relocatable = false\nschema = fixed\n",
			check: func(t *testing.T, p *Package) {
				if p.Schema != "fixed" || p.Relocatable || p.Comment != "base" {
					t.Errorf("got schema %q, relocatable %v, comment %q", p.Schema, p.Relocatable, p.Comment)
				}
			},
		},
		{name: "directory forbidden", secondary: "comment = x\ndirectory = elsewhere\n", code: pgerr.SyntaxError, wantE: `foo--2.0.control:2: parameter "directory" cannot be set in a secondary extension control file`},
		{name: "default_version forbidden", secondary: "default_version = '3.0'\n", code: pgerr.SyntaxError, wantE: `foo--2.0.control:1: parameter "default_version" cannot be set in a secondary extension control file`},
		{name: "unknown key", secondary: "name = foo\n", code: pgerr.SyntaxError, wantE: `foo--2.0.control:1: unknown key "name"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{
				"foo.control":       base,
				"foo--1.0.sql":      "SELECT 1;\n",
				"foo--1.0--2.0.sql": "SELECT 2;\n",
				"foo--2.0.control":  tc.secondary,
			})
			r := OpenRepo(dir)
			// The default version has no secondary file: unaffected.
			if p, err := r.Load("foo"); err != nil || p.Comment != "base" || p.Version != "1.0" {
				t.Fatalf("Load = %+v, %v", p, err)
			}
			p, err := r.LoadVersion("foo", "2.0")
			if tc.code != "" {
				wantError(t, err, tc.code, tc.wantE)
				return
			}
			if err != nil {
				t.Fatalf("LoadVersion: %v", err)
			}
			tc.check(t, p)
		})
	}
}

func TestLoadNativeFixtures(t *testing.T) {
	r := nativeRepo(t)
	root := absDir(t, "testdata", "native")

	pgtap, err := r.Load("pgtap")
	if err != nil {
		t.Fatalf("Load(pgtap): %v", err)
	}
	want := &Package{
		Name: "pgtap", Layout: LayoutNative, Version: "1.2.0", DefaultVersion: "1.2.0",
		Versions: []string{"1.2.0"}, Comment: "Unit testing for PostgreSQL",
		Requires: []string{"plpgsql"}, Depends: []Requirement{{Name: "plpgsql"}},
		Relocatable: true, ModulePathname: "$libdir/pgtap", Dir: root,
	}
	if !reflect.DeepEqual(pgtap, want) {
		t.Errorf("Load(pgtap) =\n%+v\nwant\n%+v", pgtap, want)
	}

	multi, err := r.Load("multi")
	if err != nil {
		t.Fatalf("Load(multi): %v", err)
	}
	if got, want := multi.Versions, []string{"1.0", "1.1", "2.0", "2.1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("multi Versions = %q, want %q (0.9 is neither installable nor reachable)", got, want)
	}
	if multi.Version != "2.0" || multi.Comment != "several versions" || multi.Requires != nil || !multi.Relocatable || !multi.Trusted || multi.Superuser {
		t.Errorf("Load(multi) = %+v", multi)
	}
	m11, err := r.LoadVersion("multi", "1.1")
	if err != nil {
		t.Fatalf("LoadVersion(multi, 1.1): %v", err)
	}
	if m11.Version != "1.1" || m11.DefaultVersion != "2.0" || m11.Comment != "several versions, at 1.1" ||
		!reflect.DeepEqual(m11.Requires, []string{"plpgsql"}) || m11.Relocatable || m11.Schema != "multi" || !m11.Trusted {
		t.Errorf("LoadVersion(multi, 1.1) = %+v", m11)
	}
	if p, err := r.LoadVersion("multi", "2.1"); err != nil || p.Version != "2.1" || p.Comment != "several versions" {
		t.Errorf("LoadVersion(multi, 2.1) = %+v, %v", p, err)
	}
	if p, err := r.LoadVersion("multi", "2.0.0"); err != nil || p.Version != "2.0" {
		t.Errorf("LoadVersion(multi, 2.0.0) = %+v, %v; want 2.0 as CompareVersions equal", p, err)
	}

	dirpkg, err := r.Load("dirpkg")
	if err != nil {
		t.Fatalf("Load(dirpkg): %v", err)
	}
	if dirpkg.Dir != filepath.Join(root, "dirpkg_scripts") || !dirpkg.HasUninstall || dirpkg.Encoding != "LATIN1" ||
		dirpkg.Schema != "dirpkg" || !reflect.DeepEqual(dirpkg.Versions, []string{"1.0", "1.1"}) {
		t.Errorf("Load(dirpkg) = %+v", dirpkg)
	}
	if p, err := r.LoadVersion("dirpkg", "1.1"); err != nil || p.Comment != "scripts in a directory of their own, 1.1" {
		t.Errorf("LoadVersion(dirpkg, 1.1) = %+v, %v: secondary control files live in the script directory", p, err)
	}

	usesreq, err := r.Load("usesreq")
	if err != nil {
		t.Fatalf("Load(usesreq): %v", err)
	}
	if !reflect.DeepEqual(usesreq.Requires, []string{"multi", "plpgsql"}) || !reflect.DeepEqual(usesreq.NoRelocate, []string{"multi"}) {
		t.Errorf("Load(usesreq) = %+v", usesreq)
	}

	// The pgverbs layout, beside them, depending on a native package.
	plain, err := r.Load("plain")
	if err != nil {
		t.Fatalf("Load(plain): %v", err)
	}
	if plain.Layout != LayoutPgverbs || plain.DefaultVersion != "0.1" || !reflect.DeepEqual(plain.Versions, []string{"0.1"}) {
		t.Errorf("Load(plain) = %+v", plain)
	}
}

func TestLoadNativeErrors(t *testing.T) {
	r := nativeRepo(t)
	for _, tc := range []struct {
		name, pkg, version string
		code               pgerr.Code
		parts              []string
		detail             string
		sentinel           error
	}{
		{name: "version not available", pkg: "multi", version: "3.0", code: pgerr.InvalidParameterValue,
			parts: []string{`version "3.0" of extension "multi" is not available`}, detail: "Available versions: 1.0, 1.1, 2.0, 2.1."},
		{name: "unreachable version", pkg: "multi", version: "0.9", code: pgerr.InvalidParameterValue,
			parts: []string{`version "0.9" of extension "multi" is not available`}},
		{name: "one version", pkg: "pgtap", version: "1.1.0", code: pgerr.InvalidParameterValue,
			parts: []string{`version "1.1.0" of extension "pgtap" is not available`}, detail: "Available version: 1.2.0."},
		{name: "pgverbs layout", pkg: "plain", version: "0.2", code: pgerr.InvalidParameterValue,
			parts: []string{`version "0.2" of extension "plain" is not available`}, detail: "Available version: 0.1."},
		{name: "secondary control file is no package", pkg: "multi--1.1", code: pgerr.UndefinedObject, sentinel: ErrNotFound},
		{name: "unknown, with a hint", pkg: "mutli", code: pgerr.UndefinedObject, sentinel: ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.LoadVersion(tc.pkg, tc.version)
			pe := wantError(t, err, tc.code, tc.parts...)
			if !strings.Contains(pe.Detail, tc.detail) {
				t.Errorf("detail %q, want %q", pe.Detail, tc.detail)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tc.sentinel)
			}
		})
	}
	_, err := r.Load("mutli")
	if pe := pgError(t, err); !strings.Contains(pe.Hint, `"multi"`) {
		t.Errorf("hint %q does not suggest multi", pe.Hint)
	}
}

func TestLoadNativeBroken(t *testing.T) {
	outside, err := filepath.Abs(filepath.Join("testdata", "outside"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		// Both layouts.
		"both.control":     "default_version = 1\n",
		"both--1.sql":      "SELECT 1;\n",
		"both/control":     "name = both\nversion = 1\n",
		"both/install.sql": "SELECT 1;\n",
		// Default version without a way to install it.
		"nodefault.control":       "default_version = '2.0'\n",
		"nodefault--1.0.sql":      "SELECT 1;\n",
		"nodefault--1.5--2.0.sql": "SELECT 1;\n",
		// No default_version at all: loads, Version "".
		"noversion.control":  "comment = 'x'\n",
		"noversion--1.0.sql": "SELECT 1;\n",
		// A directory that does not exist, and one leading out.
		"nodir.control":  "default_version = 1\ndirectory = 'missing'\n",
		"escape.control": "default_version = 1\ndirectory = '../outside'\n",
		"linked.control": "default_version = 1\ndirectory = 'link'\n",
		// A broken secondary control file of the default version.
		"badsec.control":      "default_version = 1\n",
		"badsec--1.sql":       "SELECT 1;\n",
		"badsec--1.control":   "directory = x\n",
		"unknownkey.control":  "default_version = 1\nname = unknownkey\n",
		"hyphen-.control":     "default_version = 1\n", // not a native name
		"sub/placeholder.txt": "",
	})
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Skipf("symbolic links unavailable: %v", err)
	}
	if err := os.Symlink(filepath.Join(outside, "evil", "control"), filepath.Join(dir, "leaky.control")); err != nil {
		t.Fatal(err)
	}
	r := OpenRepo(dir)
	for _, tc := range []struct {
		name, pkg string
		code      pgerr.Code
		parts     []string
		sentinel  error
	}{
		{"both layouts", "both", pgerr.InvalidObjectDefinition, []string{`extension "both" is defined twice: by "both/control" and by "both.control"`}, nil},
		{"default version not installable", "nodefault", pgerr.InvalidParameterValue, []string{`extension "nodefault" has no installation script nor update path for version "2.0"`}, nil},
		{"directory missing", "nodir", pgerr.UndefinedFile, []string{`nodir.control:2: directory "missing" does not exist`}, nil},
		{"directory outside", "escape", pgerr.InsufficientPrivilege, []string{"outside the extensions directory"}, ErrOutsideRepo},
		{"directory linked outside", "linked", pgerr.InsufficientPrivilege, []string{"outside the extensions directory"}, ErrOutsideRepo},
		{"control file linked outside", "leaky", pgerr.InsufficientPrivilege, []string{`"leaky.control"`}, ErrOutsideRepo},
		{"secondary of the default version", "badsec", pgerr.SyntaxError, []string{`badsec--1.control:1: parameter "directory" cannot be set`}, nil},
		{"unknown key", "unknownkey", pgerr.SyntaxError, []string{`unknownkey.control:2: unknown key "name"`}, nil},
		{"not a native name", "hyphen-", pgerr.UndefinedObject, []string{`extension "hyphen-" is not available`}, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Load(tc.pkg)
			pe := wantError(t, err, tc.code, tc.parts...)
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tc.sentinel)
			}
			if strings.Contains(pe.Message+pe.Detail, dir) {
				t.Errorf("error %q shows an absolute path", pe.Message)
			}
		})
	}

	p, err := r.Load("noversion")
	if err != nil || p.Version != "" || p.DefaultVersion != "" || !reflect.DeepEqual(p.Versions, []string{"1.0"}) {
		t.Fatalf("Load(noversion) = %+v, %v", p, err)
	}
	_, err = r.InstallPath(p, "")
	wantError(t, err, pgerr.InvalidParameterValue, "version to install must be specified")
	_, err = Resolve(r, "noversion", "", nil, false)
	wantError(t, err, pgerr.InvalidParameterValue, "version to install must be specified")
	if plan, err := Resolve(r, "noversion", "1.0", nil, false); err != nil || len(stepNames(plan)) != 1 {
		t.Errorf("Resolve(noversion, 1.0) = %+v, %v", plan, err)
	}
	if p, err := r.LoadVersion("nodefault", "1.0"); err != nil || p.Version != "1.0" {
		t.Errorf("LoadVersion(nodefault, 1.0) = %+v, %v: other versions stay installable", p, err)
	}

	names, err := r.Names()
	if err != nil {
		t.Fatal(err)
	}
	// leaky.control leads outside: not listed, as for the pgverbs layout.
	want := []string{"badsec", "both", "escape", "linked", "nodefault", "nodir", "noversion", "unknownkey"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Names() = %q, want %q", names, want)
	}
}

func TestNamesBothLayouts(t *testing.T) {
	got, err := nativeRepo(t).Names()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cext", "dirpkg", "multi", "pgtap", "plain", "usesreq"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
}

func TestSplitIdentifiers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"", nil, true},
		{"   ", nil, true},
		{"a", []string{"a"}, true},
		{" A ,b\t, c ", []string{"a", "b", "c"}, true},
		{`"Mixed Case","x""y"`, []string{"Mixed Case", `x"y`}, true},
		{"uuid-ossp", []string{"uuid-ossp"}, true},
		{"a b", nil, false},
		{"a,,b", nil, false},
		{",a", nil, false},
		{`""`, nil, false},
		{`"abc`, nil, false},
		{`"a"b`, nil, false},
	} {
		got, ok := splitIdentifiers(tc.in)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitIdentifiers(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestInstallSchema(t *testing.T) {
	fixed := &Package{Name: "foo", Schema: "fixed"}
	free := &Package{Name: "bar"}
	for _, tc := range []struct {
		p         *Package
		requested string
		cascade   bool
		want      string
		fail      bool
	}{
		{free, "", false, "", false},
		{free, "s", false, "s", false},
		{fixed, "", false, "fixed", false},
		{fixed, "fixed", false, "fixed", false},
		{fixed, "other", false, "", true},
		{fixed, "other", true, "fixed", false},
	} {
		got, err := tc.p.InstallSchema(tc.requested, tc.cascade)
		if tc.fail {
			wantError(t, err, pgerr.FeatureNotSupported, `extension "foo" must be installed in schema "fixed"`)
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s.InstallSchema(%q, %v) = %q, %v; want %q", tc.p.Name, tc.requested, tc.cascade, got, err, tc.want)
		}
	}
}
