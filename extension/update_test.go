package extension

import (
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func TestCheckUpdate(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		// Packages moving to version 2.0.
		"base/control":         "name = base\nversion = 2.0\n",
		"base/install.sql":     "SELECT 1;\n",
		"needsrv/control":      "name = needsrv\nversion = 2.0\ndepends = plpgsql (>= 2.0)\n",
		"needsrv/install.sql":  "SELECT 1;\n",
		"needsnew/control":     "name = needsnew\nversion = 2.0\ndepends = absent\n",
		"needsnew/install.sql": "SELECT 1;\n",
		"hater/control":        "name = hater\nversion = 2.0\nconflicts = solo\n",
		"hater/install.sql":    "SELECT 1;\n",
		// Dependents of base, each at version 1.
		"atleast/control":     "name = atleast\nversion = 1\ndepends = base (>= 1.0)\n",
		"atleast/install.sql": "SELECT 1;\n",
		"below2/control":      "name = below2\nversion = 1\ndepends = base (< 2.0)\n",
		"below2/install.sql":  "SELECT 1;\n",
		"above3/control":      "name = above3\nversion = 1\ndepends = base (>= 3.0)\n",
		"above3/install.sql":  "SELECT 1;\n",
		"guard/control":       "name = guard\nversion = 1\nconflicts = base (>= 2.0)\n",
		"guard/install.sql":   "SELECT 1;\n",
		"solo/control":        "name = solo\nversion = 1\n",
		"solo/install.sql":    "SELECT 1;\n",
		// A native package: its update keeps a dependent's constraint.
		"nat.control":       "default_version = '2.0'\n",
		"nat--1.0.sql":      "SELECT 1;\n",
		"nat--1.0--2.0.sql": "SELECT 2;\n",
		"natuser.control":   "default_version = '1'\nrequires = 'nat'\n",
		"natuser--1.sql":    "SELECT 1;\n",
	})
	r := OpenRepo(dir)
	inst := func(name, version string, requires ...string) Installed {
		return Installed{Name: name, Version: version, Requires: requires}
	}
	installed := func(list ...Installed) map[string]Installed {
		m := map[string]Installed{}
		for _, i := range list {
			m[i.Name] = i
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		pkg       string
		installed map[string]Installed
		server    map[string]string
		code      pgerr.Code
		parts     []string
	}{
		{name: "no dependents", pkg: "base", installed: installed(inst("base", "1.0"))},
		{
			name: "the extension itself is set aside", pkg: "base",
			installed: installed(inst("base", "1.0"), inst("solo", "1")),
		},
		{
			name: "constraint satisfied", pkg: "base",
			installed: installed(inst("base", "1.0"), inst("atleast", "1", "base")),
		},
		{
			name: "constraint violated by the upgrade", pkg: "base",
			installed: installed(inst("base", "1.0"), inst("below2", "1", "base")),
			code:      pgerr.InvalidParameterValue, parts: []string{`extension "below2" requires base (< 2.0), which version 2.0 does not satisfy`},
		},
		{
			name: "several dependents, one violated", pkg: "base",
			installed: installed(inst("base", "1.0"), inst("atleast", "1", "base"), inst("above3", "1", "base")),
			code:      pgerr.InvalidParameterValue, parts: []string{`extension "above3" requires base (>= 3.0)`},
		},
		{
			name: "several dependents violated: the first by name", pkg: "base",
			installed: installed(inst("base", "1.0"), inst("below2", "1", "base"), inst("above3", "1", "base"), inst("atleast", "1", "base")),
			code:      pgerr.InvalidParameterValue, parts: []string{`extension "above3" requires`},
		},
		{
			name: "a dependent that does not require it is not checked", pkg: "base",
			installed: installed(inst("base", "1.0"), inst("below2", "1")),
		},
		{
			name: "a dependent whose installed version the repository lacks is not checked", pkg: "base",
			installed: installed(inst("base", "1.0"), inst("below2", "0.5", "base")),
		},
		{
			name: "a dependent gone from the repository is not checked", pkg: "base",
			installed: installed(inst("base", "1.0"), inst("vanished", "1", "base")),
		},
		{
			name: "native dependent without constraints", pkg: "nat",
			installed: installed(inst("nat", "1.0"), inst("natuser", "1", "nat")),
		},
		{
			name: "new requirement on the server, satisfied", pkg: "needsrv",
			installed: installed(inst("needsrv", "1.0")), server: map[string]string{"plpgsql": "2.1"},
		},
		{
			name: "new requirement on the server, too old", pkg: "needsrv",
			installed: installed(inst("needsrv", "1.0")), server: map[string]string{"plpgsql": "1.0"},
			code: pgerr.InvalidParameterValue, parts: []string{`required extension "plpgsql" version 1.0 does not satisfy >= 2.0`},
		},
		{
			name: "new requirement not installed", pkg: "needsnew",
			installed: installed(inst("needsnew", "1.0")),
			code:      pgerr.UndefinedObject, parts: []string{`required extension "absent" is not installed`},
		},
		{
			name: "new version conflicts with an installed extension", pkg: "hater",
			installed: installed(inst("hater", "1.0"), inst("solo", "1")),
			code:      pgerr.ObjectNotInPrerequisiteState, parts: []string{`extension "hater" conflicts with installed extension "solo" version 1`},
		},
		{
			name: "an installed extension conflicts with the new version", pkg: "base",
			installed: installed(inst("base", "1.0"), inst("guard", "1")),
			code:      pgerr.ObjectNotInPrerequisiteState, parts: []string{`extension "base" conflicts with installed extension "guard" version 1`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkg, err := r.Load(tc.pkg)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckUpdate(r, pkg, tc.installed, tc.server)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("CheckUpdate: %v", err)
				}
				return
			}
			wantError(t, err, tc.code, tc.parts...)
		})
	}
}
