package extension

import (
	"reflect"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgtest"
)

func TestNeedsLibrary(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		want   bool
	}{
		{"pure SQL", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';", false},
		{"PL/pgSQL", "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql;", false},
		{"internal language", "CREATE FUNCTION f(int) RETURNS int AS 'int4abs' LANGUAGE internal;", false},
		{"MODULE_PATHNAME", "CREATE FUNCTION f() RETURNS int AS 'MODULE_PATHNAME', 'f' LANGUAGE C;", true},
		{"MODULE_PATHNAME alone", "LOAD 'MODULE_PATHNAME';", true},
		{"$libdir", "CREATE FUNCTION f() RETURNS int AS '$libdir/foo', 'f' LANGUAGE c STRICT;", true},
		{"LOAD $libdir", "LOAD '$libdir/plugins/foo';", true},
		{"LANGUAGE C with a plain path", "CREATE FUNCTION f() RETURNS int AS '/opt/lib/foo.so', 'f' LANGUAGE C;", true},
		{"LANGUAGE 'c' quoted", "CREATE OR REPLACE FUNCTION f() RETURNS int AS 'foo', 'f' LANGUAGE 'c';", true},
		{"procedure in C", "CREATE PROCEDURE p() AS 'foo', 'p' LANGUAGE C;", true},
		{"C after placeholders", "CREATE TABLE @extschema@.t ();\nCREATE FUNCTION @extschema@.f() RETURNS int AS 'foo', 'f' LANGUAGE C;", true},
		{"only in a comment", "-- AS 'MODULE_PATHNAME' and $libdir\n/* LANGUAGE C */\nSELECT 1;", false},
		{"word C elsewhere", "CREATE TABLE c (language text);\nSELECT language c FROM c;", false},
		{"string mentioning language c", "SELECT 'LANGUAGE plpgsql';", false},
		{"echo lines ignored", "\\echo MODULE_PATHNAME\nSELECT 1;", false},
		{"unparsable: regex fallback finds C", "CREATE FUNCTION f() RETURNS int AS 'foo', 'f' LANGUAGE C;\nSELEC oops;", true},
		{"unparsable: no C", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\nSELEC oops;", false},
		{"unscannable: text fallback", "SELECT '$libdir/x", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeedsLibrary(tc.script); got != tc.want {
				t.Errorf("NeedsLibrary(%q) = %v, want %v", tc.script, got, tc.want)
			}
		})
	}
}

func TestRepoNeedsLibrary(t *testing.T) {
	r := nativeRepo(t)
	for _, tc := range []struct {
		pkg  string
		want bool
	}{
		// module_pathname = '$libdir/pgtap' in the control file, but the
		// scripts never use it.
		{"pgtap", false},
		{"cext", true},
		{"multi", false},
		{"plain", false},
	} {
		got, err := r.NeedsLibrary(load(t, r, tc.pkg), "")
		if err != nil || got != tc.want {
			t.Errorf("NeedsLibrary(%s) = %v, %v; want %v", tc.pkg, got, err, tc.want)
		}
	}
}

// TestNativeFixtureScripts prepares every script of the fixtures as the
// proxy would, each with the control file of the version it installs.
func TestNativeFixtureScripts(t *testing.T) {
	r := nativeRepo(t)
	opts := func(p *Package) ScriptOptions {
		return ScriptOptions{Schema: "s", Owner: "alice", ModulePathname: p.ModulePathname, RequiredSchemas: map[string]string{"multi": "m", "plpgsql": "pg_catalog"}}
	}
	for _, name := range []string{"pgtap", "multi", "cext", "dirpkg", "usesreq", "plain"} {
		p := load(t, r, name)
		for _, v := range p.Versions {
			files, err := r.InstallPath(p, v)
			if err != nil {
				t.Fatalf("InstallPath(%s, %s): %v", name, v, err)
			}
			for _, f := range files {
				at, err := r.LoadVersion(name, f.To)
				if err != nil {
					t.Fatal(err)
				}
				text, err := r.ReadScript(p, f)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := PrepareScriptOpts(f.Name, text, opts(at)); err != nil {
					t.Errorf("PrepareScriptOpts(%s): %v", f.Name, err)
				}
			}
		}
	}
	// pgTAP's real update scripts, which no fixture version installs.
	pgtap := load(t, r, "pgtap")
	files, err := r.UpdatePath(pgtap, "1.0.0", "1.2.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		text, err := r.ReadScript(pgtap, f)
		if err != nil {
			t.Fatal(err)
		}
		if NeedsLibrary(text) {
			t.Errorf("NeedsLibrary(%s) = true", f.Name)
		}
		if _, err := PrepareScriptOpts(f.Name, text, opts(pgtap)); err != nil {
			t.Errorf("PrepareScriptOpts(%s): %v", f.Name, err)
		}
	}

	// cext's C function gets its library path.
	cext := load(t, r, "cext")
	text, err := r.Script(cext, "install")
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := PrepareScriptOpts("cext--1.0.sql", text, opts(cext))
	if err != nil {
		t.Fatal(err)
	}
	want := []Statement{{SQL: "CREATE FUNCTION cext_f(int) RETURNS int\nAS '$libdir/cext', 'cext_f'\nLANGUAGE C IMMUTABLE STRICT", Line: 2}}
	if !reflect.DeepEqual(stmts, want) {
		t.Errorf("cext statements =\n%#v\nwant\n%#v", stmts, want)
	}
}

// TestRealPgTAP runs on the whole of Debian's pgTAP package, unpacked from
// the .deb CI fetches (PGVERBS_PGTAP_DEB; see internal/pgtest.PgTAPDir):
// its 11356-line install script prepares, and needs no library. Without
// the package it is skipped, and fails under PGTEST_REQUIRE=1.
func TestRealPgTAP(t *testing.T) {
	dir := pgtest.PgTAPDir(t)
	r := OpenRepo(dir)
	p := load(t, r, "pgtap")
	if !reflect.DeepEqual(p.Versions, []string{"1.2.0"}) || !p.Relocatable || p.Superuser {
		t.Errorf("Load(pgtap) = %+v", p)
	}
	names, err := r.Names()
	if err != nil || !reflect.DeepEqual(names, []string{"pgtap"}) {
		t.Errorf("Names() = %q, %v (pgtap-core.sql and friends are no packages)", names, err)
	}
	if needs, err := r.NeedsLibrary(p, ""); err != nil || needs {
		t.Errorf("NeedsLibrary(pgtap) = %v, %v", needs, err)
	}
	files, err := r.InstallPath(p, "")
	if err != nil || len(files) != 1 || files[0].Name != "pgtap--1.2.0.sql" {
		t.Fatalf("InstallPath = %+v, %v", files, err)
	}
	text, err := r.ReadScript(p, files[0])
	if err != nil {
		t.Fatal(err)
	}
	stmts, err := PrepareScriptOpts(files[0].Name, text, ScriptOptions{Schema: "tap", Owner: "alice", ModulePathname: p.ModulePathname})
	if err != nil || len(stmts) < 1000 {
		t.Errorf("PrepareScriptOpts(pgtap--1.2.0.sql) = %d statements, %v", len(stmts), err)
	}
	// unpackaged -> 0.91.0 -> ... -> 1.2.0, 12 steps: named by scripts, so
	// in the matrix, but not installable.
	paths, err := r.UpdatePaths(p)
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, vp := range paths {
		if vp.Source == "unpackaged" && vp.Target == "1.2.0" {
			path = vp.Path
		}
	}
	if len(path) != 13 || path[1] != "0.91.0" {
		t.Errorf("path from unpackaged to 1.2.0: %q, want 12 steps through 0.91.0", path)
	}
	_, err = r.LoadVersion("pgtap", "unpackaged")
	wantError(t, err, pgerr.InvalidParameterValue, `version "unpackaged" of extension "pgtap" is not available`)
}
