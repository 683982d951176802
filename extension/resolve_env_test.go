package extension

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// actionNames renders a plan's actions: "name version" for packages,
// "server name version [CASCADE]" for server steps.
func actionNames(p *Plan) []string {
	var out []string
	for _, s := range p.Actions {
		if s.Pkg != nil {
			out = append(out, s.Pkg.Name+" "+s.Version)
			continue
		}
		a := "server " + s.Server + " " + s.Version
		if s.Cascade {
			a += " CASCADE"
		}
		out = append(out, a)
	}
	return out
}

func TestResolveEnv(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		// pgTAP-like: requires a server extension.
		"tap.control":    "default_version = '1.2.0'\nrequires = 'plpgsql'\nrelocatable = true\nmodule_pathname = '$libdir/tap'\n",
		"tap--1.2.0.sql": "SELECT 1;\n",
		// Requires a contrib extension the server offers.
		"needshstore.control":  "default_version = 1.0\nrequires = 'hstore'\n",
		"needshstore--1.0.sql": "SELECT 1;\n",
		// Requires citext, which both the server and the repository offer.
		"needscitext.control":  "default_version = 1.0\nrequires = 'citext'\n",
		"needscitext--1.0.sql": "SELECT 1;\n",
		"citext.control":       "default_version = 0.1\n",
		"citext--0.1.sql":      "SELECT 1;\n",
		// A chain whose first version requires more than the last.
		"chain.control":       "default_version = '2.0'\n",
		"chain--1.0.sql":      "SELECT 1;\n",
		"chain--1.0--2.0.sql": "SELECT 2;\n",
		"chain--1.0.control":  "requires = 'base'\n",
		"base.control":        "default_version = 1\n",
		"base--1.sql":         "SELECT 1;\n",
		// pgverbs layout with constraints on server extensions.
		"newpl/control":      "name = newpl\nversion = 1\ndepends = plpgsql (>= 2.0)\n",
		"newpl/install.sql":  "SELECT 1;\n",
		"newhs/control":      "name = newhs\nversion = 1\ndepends = hstore (>= 2.0)\n",
		"newhs/install.sql":  "SELECT 1;\n",
		"hatehs/control":     "name = hatehs\nversion = 1\nconflicts = hstore\n",
		"hatehs/install.sql": "SELECT 1;\n",
		"pulls/control":      "name = pulls\nversion = 1\ndepends = hstore, hatehs\n",
		"pulls/install.sql":  "SELECT 1;\n",
		"lo/control":         "name = lo\nversion = 1\ndepends = hstore (>= 1.0)\n",
		"lo/install.sql":     "SELECT 1;\n",
		"hi/control":         "name = hi\nversion = 1\ndepends = hstore (< 1.5)\n",
		"hi/install.sql":     "SELECT 1;\n",
		"top/control":        "name = top\nversion = 1\ndepends = lo, hi\n",
		"top/install.sql":    "SELECT 1;\n",
		"mixed/control":      "name = mixed\nversion = 1\ndepends = tap, base (>= 1)\n",
		"mixed/install.sql":  "SELECT 1;\n",
	})
	r := OpenRepo(dir)
	server := map[string]string{"plpgsql": "1.0", "hstore": "1.8", "citext": "1.6", "pg_trgm": "1.6"}
	for _, tc := range []struct {
		name    string
		target  string
		version string
		env     Env
		cascade bool
		want    []string // actions
		notes   []string // parts of the notes, in order
		code    pgerr.Code
		parts   []string
		detail  string
		hint    string
		sent    error
	}{
		{
			name: "server-installed plpgsql satisfies requires", target: "tap",
			env:  Env{ServerInstalled: map[string]string{"plpgsql": "1.0"}, ServerAvailable: server},
			want: []string{"tap 1.2.0"},
		},
		{
			name: "requires missing without cascade", target: "tap",
			env:  Env{ServerAvailable: server},
			code: pgerr.UndefinedObject, parts: []string{`required extension "plpgsql" is not installed`},
			hint: "CASCADE",
		},
		{
			name: "server-available requirement becomes a server step", target: "needshstore", cascade: true,
			env:  Env{ServerAvailable: server},
			want: []string{"server hstore 1.8 CASCADE", "needshstore 1.0"},
		},
		{
			name: "not on the server, not in the repository", target: "needshstore", cascade: true,
			env:  Env{ServerAvailable: map[string]string{"plpgsql": "1.0"}},
			code: pgerr.UndefinedObject, parts: []string{`extension "hstore" is not available`},
			detail: `Extension "needshstore" requires hstore.`, sent: ErrNotFound,
		},
		{
			name: "collision: the server's wins by default", target: "needscitext", cascade: true,
			env:   Env{ServerAvailable: server},
			want:  []string{"server citext 1.6 CASCADE", "needscitext 1.0"},
			notes: []string{`extension "citext" is both a package in the extensions directory and available on the server; installing the server's`},
		},
		{
			name: "collision: PreferPackages", target: "needscitext", cascade: true,
			env:   Env{ServerAvailable: server, PreferPackages: true},
			want:  []string{"citext 0.1", "needscitext 1.0"},
			notes: []string{`extension "citext" is both a package in the extensions directory and available on the server; installing the package`},
		},
		{
			name: "target only on the server", target: "pg_trgm",
			env:  Env{ServerAvailable: server},
			want: []string{"server pg_trgm 1.6"},
		},
		{
			name: "target only on the server, with version and cascade", target: "pg_trgm", version: "1.3", cascade: true,
			env:  Env{ServerAvailable: server},
			want: []string{"server pg_trgm 1.3 CASCADE"},
		},
		{
			name: "target in both: server", target: "citext",
			env:   Env{ServerAvailable: server},
			want:  []string{"server citext 1.6"},
			notes: []string{`"citext" is both`},
		},
		{
			name: "target in both: package", target: "citext",
			env:   Env{ServerAvailable: server, PreferPackages: true},
			want:  []string{"citext 0.1"},
			notes: []string{"installing the package"},
		},
		{
			name: "target installed on the server", target: "citext",
			env:  Env{ServerInstalled: map[string]string{"citext": "1.6"}},
			code: pgerr.DuplicateObject, parts: []string{`extension "citext" already exists`}, sent: ErrAlreadyInstalled,
		},
		{
			name: "constraint against the server-installed version", target: "newpl",
			env:  Env{ServerInstalled: map[string]string{"plpgsql": "1.0"}},
			code: pgerr.InvalidParameterValue, parts: []string{`required extension "plpgsql" version 1.0 does not satisfy >= 2.0`},
			detail: "version 1.0 is installed on the server",
		},
		{
			name: "constraint against the server's default version", target: "newhs", cascade: true,
			env:  Env{ServerAvailable: server},
			code: pgerr.InvalidParameterValue, parts: []string{`required extension "hstore" version 1.8 does not satisfy >= 2.0`},
			detail: "version 1.8 is available on the server",
		},
		{
			name: "diamond over a server step", target: "top", cascade: true,
			env:  Env{ServerAvailable: server},
			code: pgerr.InvalidParameterValue, parts: []string{`required extension "hstore" version 1.8 does not satisfy < 1.5`},
			detail: `Extension "hi" requires hstore (< 1.5); version 1.8 is available on the server.`,
		},
		{
			name: "conflict with a server-installed extension", target: "hatehs",
			env:  Env{ServerInstalled: map[string]string{"hstore": "1.8"}},
			code: pgerr.ObjectNotInPrerequisiteState, parts: []string{`extension "hatehs" conflicts with installed extension "hstore" version 1.8`},
		},
		{
			name: "conflict with a planned server step", target: "pulls", cascade: true,
			env:  Env{ServerAvailable: server},
			code: pgerr.ObjectNotInPrerequisiteState, parts: []string{`extension "hatehs" conflicts with extension "hstore" version 1.8, which this command would also install`},
		},
		{
			name: "requires of every version on the install path", target: "chain", cascade: true,
			want: []string{"base 1", "chain 2.0"},
		},
		{
			name: "requires of the path without cascade", target: "chain",
			code: pgerr.UndefinedObject, parts: []string{`required extension "base" is not installed`},
			detail: `Extension "chain" requires base.`,
		},
		{
			name: "native version chosen", target: "chain", version: "1.0", env: Env{Installed: map[string]Installed{"base": {Name: "base", Version: "1"}}},
			want: []string{"chain 1.0"},
		},
		{
			name: "native version not available", target: "chain", version: "3.0",
			code: pgerr.InvalidParameterValue, parts: []string{`version "3.0" of extension "chain" is not available`},
			detail: "Available versions: 1.0, 2.0.",
		},
		{
			name: "both layouts and the server together", target: "mixed", cascade: true,
			env:  Env{ServerAvailable: server},
			want: []string{"server plpgsql 1.0 CASCADE", "tap 1.2.0", "base 1", "mixed 1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := ResolveEnv(r, tc.target, tc.version, tc.env, tc.cascade)
			if tc.code != "" {
				pe := wantError(t, err, tc.code, tc.parts...)
				if !strings.Contains(pe.Detail, tc.detail) {
					t.Errorf("detail %q, want one containing %q", pe.Detail, tc.detail)
				}
				if !strings.Contains(pe.Hint, tc.hint) {
					t.Errorf("hint %q, want one containing %q", pe.Hint, tc.hint)
				}
				if tc.sent != nil && !errors.Is(err, tc.sent) {
					t.Errorf("error %v does not wrap %v", err, tc.sent)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveEnv: %v", err)
			}
			if got := actionNames(plan); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("actions %q, want %q", got, tc.want)
			}
			if len(plan.Notes) != len(tc.notes) {
				t.Fatalf("notes %q, want %d", plan.Notes, len(tc.notes))
			}
			for i, n := range tc.notes {
				if !strings.Contains(plan.Notes[i], n) {
					t.Errorf("note %q, want one containing %q", plan.Notes[i], n)
				}
			}
			for _, s := range plan.Actions {
				if s.Name() == "" || (s.Pkg == nil) == (s.Server == "") {
					t.Errorf("step %+v is neither a package nor a server step", s)
				}
				if s.Pkg != nil && (len(s.Scripts) == 0 || s.Scripts[len(s.Scripts)-1].To != s.Pkg.Version) {
					t.Errorf("step %s: scripts %+v do not end at %s", s.Pkg.Name, s.Scripts, s.Pkg.Version)
				}
			}
		})
	}
}

// TestResolveFixtures resolves across the layouts of testdata/native.
func TestResolveFixtures(t *testing.T) {
	r := nativeRepo(t)
	plan, err := ResolveEnv(r, "plain", "", Env{ServerInstalled: map[string]string{"plpgsql": "1.0"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := actionNames(plan), []string{"multi 2.0", "plain 0.1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("actions %q, want %q", got, want)
	}
	want := []ScriptFile{{Name: "multi--1.0.sql", To: "1.0"}, {Name: "multi--1.0--2.0.sql", From: "1.0", To: "2.0"}}
	if !reflect.DeepEqual(plan.Actions[0].Scripts, want) {
		t.Errorf("multi scripts %+v, want %+v", plan.Actions[0].Scripts, want)
	}
	// multi 1.1 requires plpgsql through its secondary control file.
	_, err = ResolveEnv(r, "multi", "1.1", Env{}, false)
	wantError(t, err, pgerr.UndefinedObject, `required extension "plpgsql" is not installed`)
	plan, err = ResolveEnv(r, "usesreq", "", Env{ServerInstalled: map[string]string{"plpgsql": "1.0"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := actionNames(plan), []string{"multi 2.0", "usesreq 1.0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("actions %q, want %q", got, want)
	}
}

// TestResolveInstalledNative checks that an installed native package, which
// has no conflicts rules, is not read for them: even a broken one does not
// block installs.
func TestResolveInstalledNative(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"broken.control":  "default_version = '9.9'\n", // no script for it
		"ok/control":      "name = ok\nversion = 1\n",
		"ok/install.sql":  "SELECT 1;\n",
		"bad/control":     "name = bad\nversion = 1\nnonsense = 1\n",
		"bad/install.sql": "SELECT 1;\n",
	})
	r := OpenRepo(dir)
	inst := map[string]Installed{"broken": {Name: "broken", Version: "1.0"}}
	if _, err := Resolve(r, "ok", "", inst, false); err != nil {
		t.Errorf("Resolve with a broken installed native package: %v", err)
	}
	// A broken installed pgverbs package still blocks, as before.
	inst["bad"] = Installed{Name: "bad", Version: "1"}
	_, err := Resolve(r, "ok", "", inst, false)
	wantError(t, err, pgerr.SyntaxError, `bad/control:3: unknown key "nonsense"`)
}
