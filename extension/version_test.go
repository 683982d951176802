package extension

import "testing"

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b string
		want int
	}{
		{"numeric not lexical", "1.10", "1.9", 1},
		{"equal", "1.0", "1.0", 0},
		{"missing components are zero", "1.0", "1.0.0", 0},
		{"shorter but larger", "2", "1.99", 1},
		{"leading zeros", "1.01", "1.1", 0},
		{"huge components", "1.123456789012345678901234567890", "1.99", 1},
		{"beta before rc", "1.0-beta1", "1.0-rc1", -1},
		{"rc before release", "1.0-rc1", "1.0", -1},
		{"letter suffix before release", "1.0alpha", "1.0", -1},
		{"tilde suffix before release", "1.0~rc1", "1.0", -1},
		{"separators equivalent", "1.0-rc1", "1.0~rc1", 0},
		{"dash and bare letter equivalent", "1.0-rc1", "1.0rc1", 0},
		{"pre-release numbers by value", "1.0-beta2", "1.0-beta10", -1},
		{"pre-release prefix first", "1.0-rc", "1.0-rc1", -1},
		{"pre-release of later release", "1.1-alpha", "1.0", 1},
		{"release before next pre-release", "1.0", "1.0.1-rc1", -1},
		{"pre-release numeric before alpha", "1.0-1", "1.0-a", -1},
		{"non-numeric components lexical", "1.0.a", "1.0.b", -1},
		{"non-numeric before numeric", "1.0.a", "1.0.0", -1},
		{"empty component is zero", "1..2", "1.0.2", 0},
		{"empty versions", "", "", 0},
		{"empty is zero", "", "0", 0},
		{"empty pre-release", "1.0-", "1.0", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CompareVersions(tc.a, tc.b); got != tc.want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
			if got := CompareVersions(tc.b, tc.a); got != -tc.want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
			}
		})
	}
}

// TestVersionOrder checks a whole chain, which also exercises transitivity.
func TestVersionOrder(t *testing.T) {
	chain := []string{"0.9", "1.0-alpha", "1.0-beta1", "1.0-beta2", "1.0-beta10", "1.0-rc1", "1.0", "1.0.1", "1.2", "1.9", "1.10", "2.0-rc1", "2", "10"}
	for i := range chain {
		for j := range chain {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			if got := CompareVersions(chain[i], chain[j]); got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", chain[i], chain[j], got, want)
			}
		}
	}
}

func TestConstraintSatisfied(t *testing.T) {
	for _, tc := range []struct {
		name    string
		c       Constraint
		version string
		want    bool
	}{
		{"eq", Constraint{"=", "1.0"}, "1.0", true},
		{"eq padded", Constraint{"=", "1.0"}, "1.0.0", true},
		{"eq other", Constraint{"=", "1.0"}, "1.1", false},
		{"ne", Constraint{"!=", "1.5"}, "1.4", true},
		{"ne same", Constraint{"!=", "1.5"}, "1.5", false},
		{"lt", Constraint{"<", "0.8"}, "0.7", true},
		{"lt equal", Constraint{"<", "0.8"}, "0.8", false},
		{"lt pre-release", Constraint{"<", "1.0"}, "1.0-rc1", true},
		{"le equal", Constraint{"<=", "1.0"}, "1.0", true},
		{"gt", Constraint{">", "1.9"}, "1.10", true},
		{"gt equal", Constraint{">", "1.9"}, "1.9", false},
		{"ge", Constraint{">=", "1.1"}, "1.2", true},
		{"ge lower", Constraint{">=", "1.1"}, "1.0", false},
		{"unknown op", Constraint{"~>", "1.0"}, "1.0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Satisfied(tc.version); got != tc.want {
				t.Errorf("%v .Satisfied(%q) = %v, want %v", tc.c, tc.version, got, tc.want)
			}
		})
	}
}

func TestRequirement(t *testing.T) {
	r := Requirement{Name: "bar", Constraints: []Constraint{{">=", "1.1"}, {"<", "2.0"}}}
	if got, want := r.String(), "bar (>= 1.1, < 2.0)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (Requirement{Name: "baz"}).String(); got != "baz" {
		t.Errorf("String() = %q, want %q", got, "baz")
	}
	for v, want := range map[string]bool{"1.0": false, "1.1": true, "1.99": true, "2.0": false, "2.0-rc1": true} {
		if got := r.Satisfied(v); got != want {
			t.Errorf("Satisfied(%q) = %v, want %v", v, got, want)
		}
	}
	if !(Requirement{Name: "baz"}).Satisfied("anything") {
		t.Error("a requirement without constraints must accept any version")
	}
}

func TestParseRequirements(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		want  string // the requirements' String()s joined by "; ", or "error"
		wantE string // part of the error
	}{
		{"empty", "", "", ""},
		{"one", "bar", "bar", ""},
		{"design example", "bar (>= 1.1), baz", "bar (>= 1.1); baz", ""},
		{"two constraints", "bar (>= 1.1, < 2.0)", "bar (>= 1.1, < 2.0)", ""},
		{"no spaces", "bar(>=1.1,<2.0),baz", "bar (>= 1.1, < 2.0); baz", ""},
		{"all operators", "a (= 1, != 2, < 3, <= 4, > 5, >= 6)", "a (= 1, != 2, < 3, <= 4, > 5, >= 6)", ""},
		{"hyphenated name", "uuid-ossp", "uuid-ossp", ""},
		{"trailing comma", "bar,", "error", "expected an extension name"},
		{"missing close", "bar (>= 1.1", "error", `expected "," or ")"`},
		{"missing op", "bar (1.1)", "error", "expected one of"},
		{"double equals", "bar (== 1.1)", "error", "invalid version"},
		{"missing version", "bar (>= )", "error", "expected a version"},
		{"empty parens", "bar ()", "error", "expected one of"},
		{"bad name", "../etc", "error", "invalid extension name"},
		{"two names without comma", "bar baz", "error", `expected "," or end of list`},
		{"duplicate", "bar, bar (>= 1)", "error", "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs, msg := parseRequirements(tc.in)
			if tc.want == "error" {
				if msg == "" || !contains(msg, tc.wantE) {
					t.Fatalf("parseRequirements(%q) = %v, %q; want error containing %q", tc.in, reqs, msg, tc.wantE)
				}
				return
			}
			if msg != "" {
				t.Fatalf("parseRequirements(%q): %s", tc.in, msg)
			}
			var got []string
			for _, r := range reqs {
				got = append(got, r.String())
			}
			if g := join(got); g != tc.want {
				t.Errorf("parseRequirements(%q) = %q, want %q", tc.in, g, tc.want)
			}
		})
	}
}
