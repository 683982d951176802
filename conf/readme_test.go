package conf

import (
	"os"
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
