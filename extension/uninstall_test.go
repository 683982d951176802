package extension

import (
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

func TestPlanUninstall(t *testing.T) {
	installed := map[string]Installed{
		"base":    {Name: "base", Version: "1"},
		"geo":     {Name: "geo", Version: "1", Requires: []string{"base"}},
		"geo_ext": {Name: "geo_ext", Version: "1", Requires: []string{"geo", "base"}},
		"topo":    {Name: "topo", Version: "1", Requires: []string{"geo_ext"}},
		"alpha":   {Name: "alpha", Version: "1", Requires: []string{"base"}},
		"lone":    {Name: "lone", Version: "1"},
		"solo":    {Name: "solo", Version: "1"},
		"cyc1":    {Name: "cyc1", Version: "1", Requires: []string{"cyc2", "lone"}},
		"cyc2":    {Name: "cyc2", Version: "1", Requires: []string{"cyc1"}},
		"tap":     {Name: "tap", Version: "1", Requires: []string{"plpgsql"}},
		"hsuser":  {Name: "hsuser", Version: "1", Requires: []string{"hstore"}},
		"citext":  {Name: "citext", Version: "0.1"},
	}
	server := map[string]string{"plpgsql": "1.0", "hstore": "1.8", "citext": "1.6", "pg_trgm": "1.6"}
	for _, tc := range []struct {
		name     string
		names    []string
		ifExists bool
		cascade  bool
		want     []string // Packages
		cascaded []string
		server   []string
		notes    []string
		code     pgerr.Code
		msg      string
		detail   string
	}{
		{name: "one package, nothing depends on it", names: []string{"solo"}, want: []string{"solo"}},
		{name: "several named, dependents first", names: []string{"geo", "topo", "geo_ext"}, want: []string{"topo", "geo_ext", "geo"}},
		{name: "named twice, removed once", names: []string{"solo", "solo"}, want: []string{"solo"}},
		{
			name: "not installed", names: []string{"solo", "nothing"},
			code: pgerr.UndefinedObject, msg: `extension "nothing" does not exist`,
		},
		{
			name: "not installed, IF EXISTS", names: []string{"nothing", "solo", "nada"}, ifExists: true,
			want:  []string{"solo"},
			notes: []string{`extension "nothing" does not exist, skipping`, `extension "nada" does not exist, skipping`},
		},
		{
			name: "nothing installed, IF EXISTS", names: []string{"nothing"}, ifExists: true,
			notes: []string{`extension "nothing" does not exist, skipping`},
		},
		{
			name: "blocked by a dependent not named", names: []string{"geo"},
			code: pgerr.DependentObjectsStillExist, msg: `cannot uninstall extension "geo" because other objects depend on it`,
			detail: "extension \"geo_ext\" depends on extension \"geo\"\nextension \"topo\" depends on extension \"geo\"",
		},
		{
			name: "blocked: every dependency listed, sorted; the first name in the message", names: []string{"lone", "base"},
			code: pgerr.DependentObjectsStillExist, msg: `cannot uninstall extension "lone" because`,
			detail: "extension \"alpha\" depends on extension \"base\"\nextension \"cyc1\" depends on extension \"lone\"\n" +
				"extension \"cyc2\" depends on extension \"lone\"\nextension \"geo\" depends on extension \"base\"\n" +
				"extension \"geo_ext\" depends on extension \"base\"\nextension \"topo\" depends on extension \"base\"",
		},
		{
			name: "blocked with IF EXISTS: the notes come back with the error", names: []string{"nothing", "geo_ext"}, ifExists: true,
			notes: []string{`extension "nothing" does not exist, skipping`},
			code:  pgerr.DependentObjectsStillExist, detail: `extension "topo" depends on extension "geo_ext"`,
		},
		{
			name: "CASCADE: transitive dependents first, rounds by name", names: []string{"base"}, cascade: true,
			want: []string{"alpha", "topo", "geo_ext", "geo", "base"}, cascaded: []string{"alpha", "geo", "geo_ext", "topo"},
		},
		{
			name: "CASCADE from the middle of a chain", names: []string{"geo"}, cascade: true,
			want: []string{"topo", "geo_ext", "geo"}, cascaded: []string{"geo_ext", "topo"},
		},
		{
			name: "CASCADE with a dependent named too", names: []string{"geo", "topo"}, cascade: true,
			want: []string{"topo", "geo_ext", "geo"}, cascaded: []string{"geo_ext"},
		},
		{
			name: "CASCADE through a cycle terminates", names: []string{"lone"}, cascade: true,
			want: []string{"cyc1", "cyc2", "lone"}, cascaded: []string{"cyc1", "cyc2"},
		},
		{name: "server extension", names: []string{"pg_trgm"}, server: []string{"pg_trgm"}},
		{name: "server extension and package", names: []string{"pg_trgm", "solo"}, want: []string{"solo"}, server: []string{"pg_trgm"}},
		{
			name: "server extension required by a package", names: []string{"plpgsql"},
			code: pgerr.DependentObjectsStillExist, msg: `cannot uninstall extension "plpgsql"`,
			detail: `extension "tap" depends on extension "plpgsql"`,
		},
		{
			name: "server extension required by a package, CASCADE", names: []string{"hstore", "plpgsql"}, cascade: true,
			want: []string{"hsuser", "tap"}, cascaded: []string{"hsuser", "tap"}, server: []string{"hstore", "plpgsql"},
		},
		{name: "a name of both is pgverbs's", names: []string{"citext"}, want: []string{"citext"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rm, err := PlanUninstall(tc.names, installed, server, tc.ifExists, tc.cascade)
			if rm != nil && !reflect.DeepEqual(rm.Notes, tc.notes) {
				t.Errorf("notes %q, want %q", rm.Notes, tc.notes)
			}
			if tc.code != "" {
				pe := wantError(t, err, tc.code, tc.msg)
				if pe.Detail != tc.detail && tc.detail != "" {
					t.Errorf("detail %q, want %q", pe.Detail, tc.detail)
				}
				if tc.code == pgerr.DependentObjectsStillExist && !contains(pe.Hint, "CASCADE") {
					t.Errorf("hint %q does not suggest CASCADE", pe.Hint)
				}
				if tc.notes != nil && rm == nil {
					t.Errorf("no Removal with the error, want notes %q", tc.notes)
				}
				return
			}
			if err != nil {
				t.Fatalf("PlanUninstall: %v", err)
			}
			if !reflect.DeepEqual(rm.Packages, nonNil(tc.want)) {
				t.Errorf("packages %q, want %q", rm.Packages, tc.want)
			}
			if !reflect.DeepEqual(rm.Server, tc.server) {
				t.Errorf("server %q, want %q", rm.Server, tc.server)
			}
			var cascaded []string
			for _, n := range rm.Packages {
				if rm.Cascaded[n] {
					cascaded = append(cascaded, n)
				}
			}
			sort.Strings(cascaded)
			if !reflect.DeepEqual(cascaded, tc.cascaded) {
				t.Errorf("cascaded %q, want %q", cascaded, tc.cascaded)
			}
			if rm.Empty() != (len(tc.want) == 0 && len(tc.server) == 0) {
				t.Errorf("Empty() = %v", rm.Empty())
			}
			// Nothing may come after an extension it requires (outside a
			// cycle, which has no such order).
			pos := map[string]int{}
			for i, n := range rm.Packages {
				pos[n] = i
			}
			for i, n := range rm.Packages {
				for _, r := range installed[n].Requires {
					if j, ok := pos[r]; ok && j < i && !strings.HasPrefix(r, "cyc") {
						t.Errorf("%s comes after %s, which it requires", n, r)
					}
				}
			}
		})
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
