package conf

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestREADMEListsEverySetting keeps README's configuration table in step
// with the settings table, the source every layer is built from: a setting
// added here without a row there fails.
func TestREADMEListsEverySetting(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "| `--") {
			rows = append(rows, l)
		}
	}
	for _, s := range settings {
		found := false
		for _, r := range rows {
			cells := strings.Split(r, "|")
			if len(cells) > 4 && strings.Contains(cells[1], "`--"+s.flag+"`") &&
				strings.Contains(cells[2], "`"+s.key+"`") && strings.Contains(cells[3], "`"+s.env()+"`") {
				found = true
			}
		}
		if !found {
			t.Errorf("README.md has no configuration row with `--%s`, `%s` and `%s`", s.flag, s.key, s.env())
		}
	}
}

// TestREADMEListsEveryStorageKey keeps README's table of storage target
// keys in step with targetFields.
func TestREADMEListsEveryStorageKey(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "### Object-storage targets\n")
	if !ok {
		t.Fatal("README.md has no Object-storage targets section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var firstCells []string
	for _, l := range strings.Split(section, "\n") {
		if cells := strings.Split(l, "|"); len(cells) > 2 && strings.HasPrefix(l, "| `") {
			firstCells = append(firstCells, cells[1])
		}
	}
	for _, f := range targetFields {
		if !slices.ContainsFunc(firstCells, func(c string) bool { return strings.Contains(c, "`"+f.key+"`") }) {
			t.Errorf("README.md's storage table has no row for `%s`", f.key)
		}
		if !strings.Contains(section, "    "+f.key+":") {
			t.Errorf("README.md's storage example does not show %s", f.key)
		}
	}
}
