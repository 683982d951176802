package extension

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func load(t *testing.T, r *Repo, name string) *Package {
	t.Helper()
	p, err := r.Load(name)
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return p
}

func TestInstallPath(t *testing.T) {
	r := nativeRepo(t)
	multi := load(t, r, "multi")
	for _, tc := range []struct {
		name    string
		pkg     string
		version string
		want    []ScriptFile
		code    pgerr.Code
		parts   []string
	}{
		{name: "direct install script", pkg: "multi", version: "1.0", want: []ScriptFile{{Name: "multi--1.0.sql", To: "1.0"}}},
		{name: "one update", pkg: "multi", version: "1.1", want: []ScriptFile{
			{Name: "multi--1.0.sql", To: "1.0"},
			{Name: "multi--1.0--1.1.sql", From: "1.0", To: "1.1"},
		}},
		{name: "fewest steps: direct update beats 1.0 -> 1.1 -> 2.0", pkg: "multi", version: "2.0", want: []ScriptFile{
			{Name: "multi--1.0.sql", To: "1.0"},
			{Name: "multi--1.0--2.0.sql", From: "1.0", To: "2.0"},
		}},
		{name: "default version", pkg: "multi", want: []ScriptFile{
			{Name: "multi--1.0.sql", To: "1.0"},
			{Name: "multi--1.0--2.0.sql", From: "1.0", To: "2.0"},
		}},
		{name: "two updates", pkg: "multi", version: "2.1", want: []ScriptFile{
			{Name: "multi--1.0.sql", To: "1.0"},
			{Name: "multi--1.0--2.0.sql", From: "1.0", To: "2.0"},
			{Name: "multi--2.0--2.1.sql", From: "2.0", To: "2.1"},
		}},
		{name: "script directory in names", pkg: "dirpkg", version: "1.1", want: []ScriptFile{
			{Name: "dirpkg_scripts/dirpkg--1.0.sql", To: "1.0"},
			{Name: "dirpkg_scripts/dirpkg--1.0--1.1.sql", From: "1.0", To: "1.1"},
		}},
		{name: "pgverbs layout", pkg: "plain", want: []ScriptFile{{Name: "plain/install.sql", To: "0.1"}}},
		{name: "pgverbs layout, equal version", pkg: "plain", version: "0.1.0", want: []ScriptFile{{Name: "plain/install.sql", To: "0.1"}}},
		{name: "pgverbs layout, other version", pkg: "plain", version: "0.2", code: pgerr.InvalidParameterValue, parts: []string{`version "0.2" of extension "plain" is not available`}},
		{name: "unreachable", pkg: "multi", version: "0.9", code: pgerr.InvalidParameterValue, parts: []string{`version "0.9" of extension "multi" is not available`}},
		{name: "unknown", pkg: "multi", version: "9", code: pgerr.InvalidParameterValue, parts: []string{`version "9" of extension "multi" is not available`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := multi
			if tc.pkg != "multi" {
				p = load(t, r, tc.pkg)
			}
			got, err := r.InstallPath(p, tc.version)
			if tc.code != "" {
				wantError(t, err, tc.code, tc.parts...)
				return
			}
			if err != nil {
				t.Fatalf("InstallPath: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("InstallPath(%s, %q) =\n%+v\nwant\n%+v", tc.pkg, tc.version, got, tc.want)
			}
			// Every script named can be read.
			for _, f := range got {
				if _, err := r.ReadScript(p, f); err != nil {
					t.Errorf("ReadScript(%s): %v", f.Name, err)
				}
			}
		})
	}
}

// TestPathTieBreaks checks that equal-length paths are chosen as
// PostgreSQL chooses them.
func TestPathTieBreaks(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		// Install starts: 1.9 and 1.10 both reach 3.0 in one step;
		// PostgreSQL keeps the start whose name sorts last byte-wise: 1.9.
		"tie.control":        "default_version = '3.0'\n",
		"tie--1.9.sql":       "",
		"tie--1.10.sql":      "",
		"tie--1.9--3.0.sql":  "",
		"tie--1.10--3.0.sql": "",
		// Predecessors: 1.0 -> b -> 2.0 and 1.0 -> a -> 2.0; the one whose
		// name sorts first wins: a.
		"mid.control":       "default_version = '2.0'\n",
		"mid--1.0.sql":      "",
		"mid--1.0--b.sql":   "",
		"mid--1.0--a.sql":   "",
		"mid--b--2.0.sql":   "",
		"mid--a--2.0.sql":   "",
		"mid--2.0--1.0.sql": "", // a way back, for UpdatePath
		// Indirect: 1.0 -> 1.5 -> 2.0 where 1.5 is installable itself: the
		// install starts from 1.5 rather than passing through it.
		"ind.control":       "default_version = '2.0'\n",
		"ind--1.0.sql":      "",
		"ind--1.5.sql":      "",
		"ind--1.0--1.5.sql": "",
		"ind--1.5--2.0.sql": "",
		// Names with a third "--" and bad versions are ignored.
		"ind--1.0--1.1--2.0.sql": "",
		"ind---1.sql":            "",
	})
	r := OpenRepo(dir)
	names := func(fs []ScriptFile) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Name)
		}
		return out
	}
	for _, tc := range []struct {
		pkg  string
		want []string
	}{
		{"tie", []string{"tie--1.9.sql", "tie--1.9--3.0.sql"}},
		{"mid", []string{"mid--1.0.sql", "mid--1.0--a.sql", "mid--a--2.0.sql"}},
		{"ind", []string{"ind--1.5.sql", "ind--1.5--2.0.sql"}},
	} {
		got, err := r.InstallPath(load(t, r, tc.pkg), "")
		if err != nil {
			t.Fatalf("InstallPath(%s): %v", tc.pkg, err)
		}
		if !reflect.DeepEqual(names(got), tc.want) {
			t.Errorf("InstallPath(%s) = %q, want %q", tc.pkg, names(got), tc.want)
		}
	}
	if got := load(t, r, "ind").Versions; !reflect.DeepEqual(got, []string{"1.0", "1.5", "2.0"}) {
		t.Errorf("ind Versions = %q", got)
	}
	// Updating may pass through installable versions.
	ind := load(t, r, "ind")
	got, err := r.UpdatePath(ind, "1.0", "2.0")
	if err != nil || !reflect.DeepEqual(names(got), []string{"ind--1.0--1.5.sql", "ind--1.5--2.0.sql"}) {
		t.Errorf("UpdatePath(ind, 1.0, 2.0) = %q, %v", names(got), err)
	}
	mid := load(t, r, "mid")
	got, err = r.UpdatePath(mid, "2.0", "a")
	if err != nil || !reflect.DeepEqual(names(got), []string{"mid--2.0--1.0.sql", "mid--1.0--a.sql"}) {
		t.Errorf("UpdatePath(mid, 2.0, a) = %q, %v", names(got), err)
	}
}

func TestUpdatePath(t *testing.T) {
	r := nativeRepo(t)
	multi := load(t, r, "multi")
	pgtap := load(t, r, "pgtap")
	plain := load(t, r, "plain")
	for _, tc := range []struct {
		name     string
		pkg      *Package
		from, to string
		want     []ScriptFile
		wantE    string
	}{
		{name: "one step", pkg: multi, from: "1.0", to: "1.1", want: []ScriptFile{{Name: "multi--1.0--1.1.sql", From: "1.0", To: "1.1"}}},
		{name: "fewest steps", pkg: multi, from: "1.0", to: "2.1", want: []ScriptFile{
			{Name: "multi--1.0--2.0.sql", From: "1.0", To: "2.0"},
			{Name: "multi--2.0--2.1.sql", From: "2.0", To: "2.1"},
		}},
		{name: "from a version nobody installs", pkg: multi, from: "0.9", to: "1.1", want: []ScriptFile{
			{Name: "multi--0.9--1.0.sql", From: "0.9", To: "1.0"},
			{Name: "multi--1.0--1.1.sql", From: "1.0", To: "1.1"},
		}},
		{name: "pgTAP's real chain", pkg: pgtap, from: "1.0.0", to: "1.2.0", want: []ScriptFile{
			{Name: "pgtap--1.0.0--1.1.0.sql", From: "1.0.0", To: "1.1.0"},
			{Name: "pgtap--1.1.0--1.2.0.sql", From: "1.1.0", To: "1.2.0"},
		}},
		{name: "same version", pkg: multi, from: "2.0", to: "2.0"},
		{name: "no way down", pkg: multi, from: "2.0", to: "1.0", wantE: `extension "multi" has no update path from version "2.0" to version "1.0"`},
		{name: "unknown version", pkg: multi, from: "2.0", to: "7", wantE: `extension "multi" has no update path from version "2.0" to version "7"`},
		{name: "pgverbs layout, same", pkg: plain, from: "0.1", to: "0.1.0"},
		{name: "pgverbs layout, other", pkg: plain, from: "0.1", to: "0.2", wantE: `extension "plain" has no update path from version "0.1" to version "0.2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.UpdatePath(tc.pkg, tc.from, tc.to)
			if tc.wantE != "" {
				wantError(t, err, pgerr.InvalidParameterValue, tc.wantE)
				return
			}
			if err != nil {
				t.Fatalf("UpdatePath: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("UpdatePath =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestUpdatePaths(t *testing.T) {
	r := nativeRepo(t)
	got, err := r.UpdatePaths(load(t, r, "multi"))
	if err != nil {
		t.Fatal(err)
	}
	p := func(v ...string) []string { return v }
	want := []VersionPath{
		{"0.9", "1.0", p("0.9", "1.0")},
		{"0.9", "1.1", p("0.9", "1.0", "1.1")},
		{"0.9", "2.0", p("0.9", "1.0", "2.0")},
		{"0.9", "2.1", p("0.9", "1.0", "2.0", "2.1")},
		{"1.0", "0.9", nil},
		{"1.0", "1.1", p("1.0", "1.1")},
		{"1.0", "2.0", p("1.0", "2.0")},
		{"1.0", "2.1", p("1.0", "2.0", "2.1")},
		{"1.1", "0.9", nil},
		{"1.1", "1.0", nil},
		{"1.1", "2.0", p("1.1", "2.0")},
		{"1.1", "2.1", p("1.1", "2.0", "2.1")},
		{"2.0", "0.9", nil},
		{"2.0", "1.0", nil},
		{"2.0", "1.1", nil},
		{"2.0", "2.1", p("2.0", "2.1")},
		{"2.1", "0.9", nil},
		{"2.1", "1.0", nil},
		{"2.1", "1.1", nil},
		{"2.1", "2.0", nil},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("UpdatePaths(multi) =\n%v\nwant\n%v", got, want)
	}
	if got, err := r.UpdatePaths(load(t, r, "plain")); err != nil || len(got) != 0 {
		t.Errorf("UpdatePaths(plain) = %v, %v; one version has no pairs", got, err)
	}
}

func TestReadScript(t *testing.T) {
	r := nativeRepo(t)
	dirpkg := load(t, r, "dirpkg")
	got, err := r.ReadScript(dirpkg, ScriptFile{Name: "dirpkg_scripts/dirpkg--1.0.sql", To: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "CREATE TABLE @extschema@.dirpkg_t (name text DEFAULT 'café');\n"; got != want {
		t.Errorf("LATIN1 script read as %q, want %q", got, want)
	}
	if got, err := r.Script(dirpkg, "uninstall"); err != nil || got != "DROP TABLE @extschema@.dirpkg_t;\n" {
		t.Errorf("Script(dirpkg, uninstall) = %q, %v", got, err)
	}
	if got, err := r.Script(load(t, r, "multi"), "install"); err == nil {
		t.Errorf("Script(multi 2.0, install) = %q: 2.0 has no install script of its own", got)
	}
	m10, err := r.LoadVersion("multi", "1.0")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Script(m10, "install"); err != nil || !contains(got, "CREATE TABLE multi_t") {
		t.Errorf("Script(multi 1.0, install) = %q, %v", got, err)
	}

	for _, tc := range []struct {
		name string
		pkg  string
		file string
		code pgerr.Code
	}{
		{"another package's script", "multi", "cext--1.0.sql", pgerr.InternalError},
		{"the control file", "multi", "multi.control", pgerr.InternalError},
		{"wrong directory", "dirpkg", "dirpkg--1.0.sql", pgerr.InternalError},
		{"climbing out", "multi", "../outside/evil/install.sql", pgerr.InternalError},
		{"pgverbs: other file", "plain", "plain/control", pgerr.InternalError},
		{"pgverbs: other package", "plain", "foo/install.sql", pgerr.InternalError},
		{"missing script", "multi", "multi--9.sql", pgerr.UndefinedFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.ReadScript(load(t, r, tc.pkg), ScriptFile{Name: tc.file})
			wantError(t, err, tc.code)
		})
	}

	t.Run("forged directory", func(t *testing.T) {
		outside, _ := filepath.Abs(filepath.Join("testdata", "outside", "evil"))
		_, err := r.ReadScript(&Package{Name: "install", Layout: LayoutNative, Dir: outside}, ScriptFile{Name: "install--1.sql"})
		wantError(t, err, pgerr.InsufficientPrivilege)
		if !errors.Is(err, ErrOutsideRepo) {
			t.Errorf("error %v does not wrap ErrOutsideRepo", err)
		}
	})

	t.Run("script linked outside", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"lnk.control": "default_version = 1\n"})
		outside, _ := filepath.Abs(filepath.Join("testdata", "outside", "evil", "install.sql"))
		if err := os.Symlink(outside, filepath.Join(dir, "lnk--1.sql")); err != nil {
			t.Skip(err)
		}
		r := OpenRepo(dir)
		p := load(t, r, "lnk")
		files, err := r.InstallPath(p, "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.ReadScript(p, files[0])
		wantError(t, err, pgerr.InsufficientPrivilege, `"lnk--1.sql" is outside the extensions directory`)
	})

	t.Run("encodings", func(t *testing.T) {
		for _, tc := range []struct {
			enc, data, want string
			ok              bool
		}{
			{"", "é", "é", true},
			{"UTF8", "é", "é", true},
			{"LATIN1", "\xe9", "é", true},
			{"WIN1252", "plain ASCII", "plain ASCII", true},
			{"WIN1252", "\x80", "", false},
		} {
			got, err := decodeScript(tc.enc, "f.sql", []byte(tc.data))
			if tc.ok != (err == nil) || got != tc.want {
				t.Errorf("decodeScript(%s, %q) = %q, %v", tc.enc, tc.data, got, err)
			}
			if err != nil {
				wantError(t, err, pgerr.FeatureNotSupported, `"f.sql" in encoding WIN1252`)
			}
		}
	})
}

func TestUninstallScript(t *testing.T) {
	r := nativeRepo(t)
	f, err := r.UninstallScript(load(t, r, "dirpkg"))
	if err != nil || f != (ScriptFile{Name: "dirpkg_scripts/uninstall_dirpkg.sql", From: "1.0"}) {
		t.Fatalf("UninstallScript(dirpkg) = %+v, %v", f, err)
	}
	if text, err := r.ReadScript(load(t, r, "dirpkg"), f); err != nil || !contains(text, "DROP TABLE") {
		t.Errorf("ReadScript(%s) = %q, %v", f.Name, text, err)
	}
	_, err = r.UninstallScript(load(t, r, "multi"))
	wantError(t, err, pgerr.UndefinedFile, `extension "multi" has no uninstall script "uninstall_multi.sql"`)

	foo := load(t, testRepo(t), "foo")
	f, err = testRepo(t).UninstallScript(foo)
	if err != nil || f.Name != "foo/uninstall.sql" {
		t.Fatalf("UninstallScript(foo) = %+v, %v", f, err)
	}
	if text, err := testRepo(t).ReadScript(foo, f); err != nil || !contains(text, "DROP TABLE") {
		t.Errorf("ReadScript(%s) = %q, %v", f.Name, text, err)
	}
}
