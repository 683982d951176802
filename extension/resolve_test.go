package extension

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// pkgRepo writes one package per control text into a temporary repository.
func pkgRepo(t *testing.T, controls map[string]string) *Repo {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{}
	for name, control := range controls {
		files[name+"/control"] = "name = " + name + "\n" + control
		files[name+"/install.sql"] = "SELECT 1;\n"
	}
	writeFiles(t, dir, files)
	return OpenRepo(dir)
}

// stepNames names the packages a plan installs, in order.
func stepNames(p *Plan) []string {
	var out []string
	for _, s := range p.Actions {
		if s.Pkg != nil {
			out = append(out, s.Pkg.Name+" "+s.Pkg.Version)
		}
	}
	return out
}

func TestResolve(t *testing.T) {
	repo := pkgRepo(t, map[string]string{
		// The design example and its dependencies.
		"foo": "version = 1.0\ndepends = bar (>= 1.1), baz\nconflicts = bla (< 0.8)\n",
		"bar": "version = 1.2\n",
		"baz": "version = 0.9\n",
		"bla": "version = 0.7\n",
		// A diamond: a -> b, c; b, c -> d.
		"a": "version = 1\ndepends = b, c\n",
		"b": "version = 1\ndepends = d (>= 1)\n",
		"c": "version = 1\ndepends = d (< 3)\n",
		"d": "version = 2\n",
		// A chain.
		"top": "version = 1\ndepends = mid\n",
		"mid": "version = 1\ndepends = low\n",
		"low": "version = 1\n",
		// Cycles.
		"cy1":  "version = 1\ndepends = cy2\n",
		"cy2":  "version = 1\ndepends = cy3\n",
		"cy3":  "version = 1\ndepends = cy1\n",
		"self": "version = 1\ndepends = self\n",
		// Version constraints.
		"needsnew":   "version = 1\ndepends = bar (>= 2.0)\n",
		"diamondbad": "version = 1\ndepends = b, dold\n",
		"dold":       "version = 1\ndepends = d (< 2)\n",
		// Missing from the repository.
		"orphan": "version = 1\ndepends = ghost\n",
		// Conflicts.
		"hatesbar":    "version = 1\nconflicts = bar\n",
		"hatesold":    "version = 1\nconflicts = bar (< 1.0)\n",
		"peace":       "version = 1\ndepends = bar, hatesbar\n",
		"victim":      "version = 1\n",
		"hatesvictim": "version = 1\nconflicts = victim (>= 1)\n",
		"pullsvictim": "version = 1\ndepends = victim\n",
		"hatesself":   "version = 1\nconflicts = hatesself\n",
	})
	inst := func(pairs ...string) map[string]Installed {
		m := map[string]Installed{}
		for _, p := range pairs {
			n, v, _ := strings.Cut(p, " ")
			m[n] = Installed{Name: n, Version: v}
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		target    string
		version   string
		installed map[string]Installed
		cascade   bool
		want      []string // steps, "name version"
		code      pgerr.Code
		parts     []string // parts of the message
		detail    string   // part of the DETAIL
		hint      string   // part of the HINT
		sentinel  error
	}{
		{name: "simple", target: "bar", want: []string{"bar 1.2"}},
		{name: "version given", target: "bar", version: "1.2", want: []string{"bar 1.2"}},
		{name: "version given padded", target: "bar", version: "1.2.0", want: []string{"bar 1.2"}},
		{name: "dependencies installed", target: "foo", installed: inst("bar 1.1", "baz 0.1"), want: []string{"foo 1.0"}},
		{
			name: "dependency missing without cascade", target: "foo", installed: inst("baz 0.1"),
			code: pgerr.UndefinedObject, parts: []string{`required extension "bar" is not installed`},
			detail: `Extension "foo" requires bar (>= 1.1).`,
			hint:   "Use INSTALL EXTENSION ... CASCADE to install required extensions too.",
		},
		{name: "cascade installs dependencies first", target: "foo", cascade: true, want: []string{"bar 1.2", "baz 0.9", "foo 1.0"}},
		{name: "cascade skips installed", target: "foo", installed: inst("baz 0.1"), cascade: true, want: []string{"bar 1.2", "foo 1.0"}},
		{name: "cascade chain", target: "top", cascade: true, want: []string{"low 1", "mid 1", "top 1"}},
		{name: "diamond plans shared dependency once, first", target: "a", cascade: true, want: []string{"d 2", "b 1", "c 1", "a 1"}},
		{name: "diamond with installed apex", target: "a", installed: inst("d 2"), cascade: true, want: []string{"b 1", "c 1", "a 1"}},
		{
			name: "diamond with incompatible constraints", target: "diamondbad", cascade: true,
			code: pgerr.InvalidParameterValue, parts: []string{`required extension "d" version 2 does not satisfy < 2`},
			detail: `Extension "dold" requires d (< 2); version 2 is available.`,
		},
		{
			name: "cycle", target: "cy1", cascade: true,
			code: pgerr.InvalidObjectDefinition, parts: []string{"cyclic dependency between extensions: cy1 -> cy2 -> cy3 -> cy1"},
		},
		{
			name: "self dependency", target: "self", cascade: true,
			code: pgerr.InvalidObjectDefinition, parts: []string{"self -> self"},
		},
		{
			name: "installed dependency too old", target: "foo", installed: inst("bar 1.0", "baz 1"),
			code: pgerr.InvalidParameterValue, parts: []string{`required extension "bar" version 1.0 does not satisfy >= 1.1`},
			detail: "version 1.0 is installed",
		},
		{
			name: "available dependency too old", target: "needsnew", cascade: true,
			code: pgerr.InvalidParameterValue, parts: []string{`required extension "bar" version 1.2 does not satisfy >= 2.0`},
			detail: "version 1.2 is available",
		},
		{
			name: "dependency missing from repository", target: "orphan", cascade: true,
			code: pgerr.UndefinedObject, parts: []string{`extension "ghost" is not available`},
			detail: `Extension "orphan" requires ghost.`, sentinel: ErrNotFound,
		},
		{
			name: "target missing", target: "fooo",
			code: pgerr.UndefinedObject, parts: []string{`extension "fooo" is not available`},
			hint: `"foo"`, sentinel: ErrNotFound,
		},
		{
			name: "already installed", target: "bar", installed: inst("bar 1.2"),
			code: pgerr.DuplicateObject, parts: []string{`extension "bar" already exists`}, sentinel: ErrAlreadyInstalled,
		},
		{
			name: "version not available", target: "bar", version: "2.0",
			code: pgerr.InvalidParameterValue, parts: []string{`version "2.0" of extension "bar" is not available`},
			detail: "Available version: 1.2.",
		},
		{name: "invalid name", target: "../bar", code: pgerr.InvalidParameterValue, parts: []string{"invalid extension name"}},
		{
			name: "conflict with installed", target: "foo", installed: inst("bar 1.2", "baz 1", "bla 0.7"),
			code: pgerr.ObjectNotInPrerequisiteState, parts: []string{`extension "foo" conflicts with installed extension "bla" version 0.7`},
			detail: `The control file "foo/control" declares: conflicts = bla (< 0.8).`,
		},
		{name: "conflict constraint not met", target: "foo", installed: inst("bar 1.2", "baz 1", "bla 0.8"), want: []string{"foo 1.0"}},
		{
			name: "conflict without constraint", target: "hatesbar", installed: inst("bar 0.1"),
			code: pgerr.ObjectNotInPrerequisiteState, parts: []string{`extension "hatesbar" conflicts with installed extension "bar" version 0.1`},
		},
		{
			name: "conflict declared by installed package", target: "bar", installed: inst("hatesbar 1"),
			code: pgerr.ObjectNotInPrerequisiteState, parts: []string{`extension "bar" conflicts with installed extension "hatesbar" version 1`},
			detail: `The control file "hatesbar/control" declares: conflicts = bar.`,
		},
		{name: "installed package's rule not matching", target: "bar", installed: inst("hatesold 1"), want: []string{"bar 1.2"}},
		{name: "installed package at another version: rules unknown", target: "bar", installed: inst("hatesbar 0.5"), want: []string{"bar 1.2"}},
		{name: "installed package gone from repository", target: "bar", installed: inst("vanished 1"), want: []string{"bar 1.2"}},
		{
			name: "conflict between planned packages", target: "peace", cascade: true,
			code: pgerr.ObjectNotInPrerequisiteState, parts: []string{`extension "hatesbar" conflicts with extension "bar" version 1.2, which this command would also install`},
		},
		{
			name: "installed package's rule against a planned dependency", target: "pullsvictim", installed: inst("hatesvictim 1"), cascade: true,
			code: pgerr.ObjectNotInPrerequisiteState, parts: []string{`extension "victim" conflicts with installed extension "hatesvictim" version 1`},
		},
		{name: "conflict with itself ignored", target: "hatesself", want: []string{"hatesself 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Resolve(repo, tc.target, tc.version, tc.installed, tc.cascade)
			if tc.code != "" {
				pe := wantError(t, err, tc.code, tc.parts...)
				if !strings.Contains(pe.Detail, tc.detail) {
					t.Errorf("detail %q, want one containing %q", pe.Detail, tc.detail)
				}
				if !strings.Contains(pe.Hint, tc.hint) {
					t.Errorf("hint %q, want one containing %q", pe.Hint, tc.hint)
				}
				if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
					t.Errorf("error %v does not wrap %v", err, tc.sentinel)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if got := stepNames(plan); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("steps %q, want %q", got, tc.want)
			}
		})
	}
}
