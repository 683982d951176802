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

func testRepo(t *testing.T) *Repo {
	t.Helper()
	return OpenRepo(filepath.Join("testdata", "repo"))
}

func TestRepoLoad(t *testing.T) {
	r := testRepo(t)
	p, err := r.Load("foo")
	if err != nil {
		t.Fatalf("Load(foo): %v", err)
	}
	wantDir, err := filepath.EvalSymlinks(filepath.Join("testdata", "repo", "foo"))
	if err != nil {
		t.Fatal(err)
	}
	wantDir, _ = filepath.Abs(wantDir)
	want := &Package{
		Name: "foo", Version: "1.0", Comment: "what it does, isn't it",
		Depends:               []Requirement{{Name: "bar", Constraints: []Constraint{{">=", "1.1"}}}, {Name: "baz"}},
		Conflicts:             []Requirement{{Name: "bla", Constraints: []Constraint{{"<", "0.8"}}}},
		CustomVariableClasses: []string{"foo"},
		Dir:                   wantDir,
		HasUninstall:          true,
		Settings:              []Setting{{"foo.enabled", "on"}, {"foo.greeting", "it's me"}},
		// Filled by Load since the native layout came along.
		Layout: LayoutPgverbs, DefaultVersion: "1.0", Versions: []string{"1.0"}, Requires: []string{"bar", "baz"},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Load(foo) =\n%+v\nwant\n%+v", p, want)
	}
	if !filepath.IsAbs(p.Dir) {
		t.Errorf("Dir %q is not absolute", p.Dir)
	}

	baz, err := r.Load("baz")
	if err != nil {
		t.Fatalf("Load(baz): %v", err)
	}
	if baz.HasUninstall || baz.Settings != nil {
		t.Errorf("Load(baz) = %+v, want no uninstall script and no settings", baz)
	}
}

func TestRepoLoadErrors(t *testing.T) {
	r := testRepo(t)
	for _, tc := range []struct {
		name     string
		pkg      string
		code     pgerr.Code
		parts    []string
		sentinel error
		hint     string
	}{
		{name: "unknown with close name", pkg: "fo", code: pgerr.UndefinedObject, parts: []string{`extension "fo" is not available`}, sentinel: ErrNotFound, hint: `"foo"`},
		{name: "unknown, two close names", pkg: "bax", code: pgerr.UndefinedObject, sentinel: ErrNotFound, hint: `"bar", "baz"`},
		{name: "unknown with prefix", pkg: "brok", code: pgerr.UndefinedObject, sentinel: ErrNotFound, hint: `"broken"`},
		{name: "unknown, nothing close", pkg: "postgis", code: pgerr.UndefinedObject, sentinel: ErrNotFound},
		{name: "directory without control", pkg: "notapackage", code: pgerr.UndefinedObject, sentinel: ErrNotFound},
		{name: "invalid name", pkg: "../repo/foo", code: pgerr.InvalidParameterValue, parts: []string{"invalid extension name"}},
		{name: "unknown key names file and line", pkg: "broken", code: pgerr.SyntaxError, parts: []string{`broken/control:3: unknown key "requires"`}},
		{name: "name mismatch", pkg: "mismatch", code: pgerr.InvalidParameterValue, parts: []string{"mismatch/control:1:", `name "other" does not match the package directory "mismatch"`}},
		{name: "no install script", pkg: "noinstall", code: pgerr.UndefinedFile, parts: []string{`"noinstall/install.sql"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Load(tc.pkg)
			pe := wantError(t, err, tc.code, tc.parts...)
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v does not wrap %v", err, tc.sentinel)
			}
			if err.Error() != pe.Error() {
				t.Errorf("Error() = %q, want the wire error's %q", err.Error(), pe.Error())
			}
			if !strings.Contains(pe.Hint, tc.hint) || (tc.hint == "" && pe.Hint != "") {
				t.Errorf("hint %q, want one containing %q", pe.Hint, tc.hint)
			}
			if strings.Contains(pe.Message+pe.Detail, string(filepath.Separator)+"testdata") {
				t.Errorf("error %q shows an absolute path", pe.Message)
			}
		})
	}
}

func TestRepoNames(t *testing.T) {
	got, err := testRepo(t).Names()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bar", "baz", "broken", "foo", "mismatch", "noinstall"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}

	missing := filepath.Join(t.TempDir(), "missing")
	_, err = OpenRepo(missing).Names()
	pe := wantError(t, err, pgerr.UndefinedFile, "could not read the extensions directory")
	if strings.Contains(pe.Message, missing) {
		t.Errorf("message %q shows the server's path", pe.Message)
	}
}

func TestRepoScript(t *testing.T) {
	r := testRepo(t)
	p, err := r.Load("foo")
	if err != nil {
		t.Fatal(err)
	}
	for _, which := range []string{"install", "uninstall"} {
		got, err := r.Script(p, which)
		if err != nil {
			t.Fatalf("Script(%s): %v", which, err)
		}
		want, _ := os.ReadFile(filepath.Join("testdata", "repo", "foo", which+".sql"))
		if got != string(want) {
			t.Errorf("Script(%s) = %q, want %q", which, got, want)
		}
	}
	if _, err := r.Script(p, "../control"); err == nil {
		t.Error(`Script(p, "../control") succeeded`)
	}
	baz, err := r.Load("baz")
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Script(baz, "uninstall")
	wantError(t, err, pgerr.UndefinedFile, `"baz/uninstall.sql"`)
}

// TestRepoContainment builds a repository whose symbolic links lead outside
// it, and one whose links stay inside.
func TestRepoContainment(t *testing.T) {
	outside, err := filepath.Abs(filepath.Join("testdata", "outside"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"good/control":      "name = good\nversion = 1\n",
		"good/install.sql":  "SELECT 1;\n",
		"shared/un.sql":     "SELECT 2;\n",
		"sneaky/control":    "name = sneaky\nversion = 1\n",
		"leaky/control":     "name = leaky\nversion = 1\n",
		"leaky/install.sql": "SELECT 1;\n",
	})
	symlink := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Skipf("symbolic links unavailable: %v", err)
		}
	}
	symlink(filepath.Join(outside, "evil"), "evil")                              // package dir outside
	symlink(filepath.Join(outside, "evil", "install.sql"), "sneaky/install.sql") // script outside
	symlink(filepath.Join(outside, "evil", "control"), "leaky/leaky.conf")       // settings file outside
	symlink(filepath.Join("..", "shared", "un.sql"), "good/uninstall.sql")       // inside: allowed
	symlink(filepath.Join("..", filepath.Base(dir), "good"), "alias")            // inside via parent: allowed
	rel, err := filepath.Rel(dir, filepath.Join(outside, "evil"))
	if err != nil {
		t.Fatal(err)
	}
	symlink(rel, "relative") // outside, through ".." components

	r := OpenRepo(dir)
	for _, tc := range []struct {
		name, pkg string
	}{
		{"package directory outside", "evil"},
		{"install script outside", "sneaky"},
		{"settings file outside", "leaky"},
		{"relative link outside", "relative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Load(tc.pkg)
			wantError(t, err, pgerr.InsufficientPrivilege, "outside the extensions directory")
			if !errors.Is(err, ErrOutsideRepo) {
				t.Errorf("error %v does not wrap ErrOutsideRepo", err)
			}
		})
	}

	t.Run("links inside are followed", func(t *testing.T) {
		p, err := r.Load("good")
		if err != nil {
			t.Fatalf("Load(good): %v", err)
		}
		if !p.HasUninstall {
			t.Error("uninstall.sql linked inside the repository not seen")
		}
		if s, err := r.Script(p, "uninstall"); err != nil || s != "SELECT 2;\n" {
			t.Errorf("Script(uninstall) = %q, %v", s, err)
		}
		// The alias resolves inside, but its control file names "good".
		_, err = r.Load("alias")
		wantError(t, err, pgerr.InvalidParameterValue, `does not match the package directory "alias"`)
	})

	t.Run("forged package directory", func(t *testing.T) {
		_, err := r.Script(&Package{Name: "evil", Dir: filepath.Join(outside, "evil")}, "install")
		wantError(t, err, pgerr.InsufficientPrivilege)
		if !errors.Is(err, ErrOutsideRepo) {
			t.Errorf("error %v does not wrap ErrOutsideRepo", err)
		}
	})

	t.Run("outside packages are not listed", func(t *testing.T) {
		names, err := r.Names()
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"alias", "good", "leaky", "sneaky"}
		if !reflect.DeepEqual(names, want) {
			t.Errorf("Names() = %q, want %q", names, want)
		}
	})

	t.Run("repository reached through a link", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "repo")
		if err := os.Symlink(dir, link); err != nil {
			t.Skip(err)
		}
		if _, err := OpenRepo(link).Load("good"); err != nil {
			t.Errorf("Load through a linked repository: %v", err)
		}
	})
}
