package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// The example alert rules (contrib/pgverbs-alerts.yml), their promtool unit
// tests and docs/OPERATIONS.md's metrics table all name pgverbs's metrics,
// and none of them is compiled: a renamed metric or label would leave
// alerts that never fire. TestAlertRulesMatchMetrics holds them to what a
// running pgverbs exports, in every make test; TestAlertRules runs
// promtool on the rules and their unit tests. Debian has promtool only in
// the prometheus package, whose postinst starts a server where systemd
// runs, so .ci/run unpacks the binary from the .deb instead of installing
// it.

const (
	alertRules     = "../../contrib/pgverbs-alerts.yml"
	alertRuleTests = "../../contrib/pgverbs-alerts_test.yml"
	operationsDoc  = "../../docs/OPERATIONS.md"
)

// TestAlertRules checks the rules' syntax and runs their unit tests, which
// prove each alert fires on a synthetic series, with promtool when it is
// installed (Debian: the prometheus package); under PGTEST_REQUIRE=1, as
// in CI, its absence fails the test.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not in PATH (Debian: the prometheus package; .ci/run unpacks it)"
		if os.Getenv("PGTEST_REQUIRE") == "1" {
			t.Fatalf("PGTEST_REQUIRE=1 but %s", msg)
		}
		t.Skipf("skipping: %s (PGTEST_REQUIRE=1 turns this into a failure)", msg)
	}
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(alertRules)},
		{"test", "rules", filepath.Base(alertRuleTests)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(alertRules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestAlertRulesMatchMetrics scrapes a pgverbs that has taken a base
// backup and requires that every metric the rules select exists, with
// every label value they require; that the unit tests' synthetic series
// use real metric and label names; and that OPERATIONS.md's table lists
// exactly the metrics pgverbs exports.
func TestAlertRulesMatchMetrics(t *testing.T) {
	httpAddr := "127.0.0.1:" + itoa(freePort(t))
	c, p := trustSetup(t, pgtest.Options{}, "--http-listen", httpAddr, "--backup-root", t.TempDir())
	// commands_total has a series per command run: the rules select
	// BASE BACKUP's.
	if out, err := psql(t, c, p.URL("postgres", "", "postgres"), "-c", "BASE BACKUP TO 'b'"); err != nil {
		t.Fatalf("BASE BACKUP: %v\n%s", err, out)
	}
	exported := exportedFamilies(t, "http://"+httpAddr)

	rules := readText(t, alertRules)
	for _, sel := range selectors(rules) {
		f, ok := exported.family(sel.name)
		if !ok {
			t.Errorf("%s selects %s, which pgverbs does not export", alertRules, sel.name)
			continue
		}
		for label, value := range sel.equal {
			if !f.hasValue(label, value) {
				t.Errorf("%s selects %s{%s=%q}; pgverbs exports %s with %s in %q", alertRules, sel.name, label, value, sel.name, label, f.values[label])
			}
		}
	}
	for _, sel := range selectors(readText(t, alertRuleTests)) {
		f, ok := exported.family(sel.name)
		if !ok {
			t.Errorf("%s has a series %s, which pgverbs does not export", alertRuleTests, sel.name)
			continue
		}
		for label := range sel.equal {
			if _, ok := f.values[label]; !ok && label != "job" && label != "instance" {
				t.Errorf("%s gives %s a label %s, which pgverbs's metric has not", alertRuleTests, sel.name, label)
			}
		}
	}

	documented := documentedMetrics(t)
	for name := range exported {
		if strings.HasPrefix(name, "pgverbs_") && !slices.Contains(documented, name) {
			t.Errorf("pgverbs exports %s, which %s's metrics table does not list", name, operationsDoc)
		}
	}
	for _, name := range documented {
		if _, ok := exported[name]; !ok {
			t.Errorf("%s lists %s, which pgverbs does not export", operationsDoc, name)
		}
	}
}

// family is one exported metric family: its type and the values each
// label took in the scrape.
type family struct {
	typ    string
	values map[string][]string
}

func (f *family) hasValue(label, value string) bool { return slices.Contains(f.values[label], value) }

type families map[string]*family

// family finds the family of a series name, which for a histogram or a
// summary may carry a _bucket, _sum or _count suffix.
func (fs families) family(series string) (*family, bool) {
	if f, ok := fs[series]; ok {
		return f, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f, ok := fs[strings.TrimSuffix(series, suffix)]; ok && (f.typ == "histogram" || f.typ == "summary") && strings.HasSuffix(series, suffix) {
			return f, true
		}
	}
	return nil, false
}

var (
	// A series selector of one of pgverbs's metrics, with its matchers.
	selectorRE = regexp.MustCompile(`\b(pgverbs_[a-z0-9_]+)(\{[^}]*\})?`)
	// A matcher in a selector: label, operator, value.
	matcherRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"`)
)

// exportedFamilies scrapes /metrics and notes, of each family, its type
// and the values each label takes.
func exportedFamilies(t *testing.T, base string) families {
	t.Helper()
	fs := families{}
	for name, mf := range scrape(t, base) {
		f := &family{typ: strings.ToLower(mf.GetType().String()), values: map[string][]string{}}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !f.hasValue(lp.GetName(), lp.GetValue()) {
					f.values[lp.GetName()] = append(f.values[lp.GetName()], lp.GetValue())
				}
			}
		}
		fs[name] = f
	}
	return fs
}

// selector is a series selector of one of pgverbs's metrics.
type selector struct {
	name  string
	equal map[string]string // its equality matchers
}

// selectors finds every selector of a pgverbs_ metric in text (PromQL
// expressions and promtool's series strings alike).
func selectors(text string) []selector {
	var out []selector
	for _, m := range selectorRE.FindAllStringSubmatch(text, -1) {
		sel := selector{name: m[1], equal: map[string]string{}}
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			if mm[2] == "=" {
				sel.equal[mm[1]] = mm[3]
			}
		}
		out = append(out, sel)
	}
	return out
}

// documentedMetrics returns the metrics OPERATIONS.md's table lists, one
// row each, the name first.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(readText(t, operationsDoc), "\n") {
		if rest, ok := strings.CutPrefix(line, "| `pgverbs_"); ok {
			name, _, _ := strings.Cut(rest, "`")
			out = append(out, "pgverbs_"+name)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no metrics table rows (| `pgverbs_...`)", operationsDoc)
	}
	return out
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
