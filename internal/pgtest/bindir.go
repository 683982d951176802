package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// errNoBinaries marks the "PostgreSQL is not installed" case so Start can
// skip instead of failing; a misconfigured PG_BINDIR is deliberately not
// wrapped with it, because an explicit setting that is wrong is a bug.
var errNoBinaries = errors.New("no PostgreSQL server binaries found")

// debianBinGlob is where Debian/Ubuntu packages install one directory per
// major version; pg_config on PATH may belong to only one of them.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// BinDir locates the directory holding the PostgreSQL server binaries
// (initdb, postgres, pg_ctl, ...). It honours $PG_BINDIR, then
// `pg_config --bindir`, then the newest /usr/lib/postgresql/<version>/bin.
func BinDir() (string, error) {
	if dir := os.Getenv("PG_BINDIR"); dir != "" {
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("PG_BINDIR=%s: %w", dir, err)
		}
		return dir, nil
	}

	// On Debian /usr/bin/pg_config comes from libpq-dev/postgresql-common and
	// may report a bindir for a version whose server package is not
	// installed, hence the check rather than trusting it.
	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		out, err := exec.Command(pgConfig, "--bindir").Output()
		if err == nil {
			dir := strings.TrimSpace(string(out))
			if dir != "" && checkBinDir(dir) == nil {
				return dir, nil
			}
		}
	}

	dirs, err := filepath.Glob(debianBinGlob)
	if err != nil {
		return "", fmt.Errorf("glob %s: %w", debianBinGlob, err)
	}
	type candidate struct {
		dir     string
		version []int
	}
	var cands []candidate
	for _, dir := range dirs {
		v, ok := parseVersion(filepath.Base(filepath.Dir(dir)))
		if !ok {
			continue
		}
		cands = append(cands, candidate{dir, v})
	}
	// Newest first: "10" must beat "9.6", which a string sort gets wrong.
	slices.SortFunc(cands, func(a, b candidate) int { return slices.Compare(b.version, a.version) })
	for _, c := range cands {
		if checkBinDir(c.dir) == nil {
			return c.dir, nil
		}
	}
	return "", fmt.Errorf("%w (set PG_BINDIR, put pg_config on PATH or install the server under %s)", errNoBinaries, debianBinGlob)
}

func parseVersion(s string) ([]int, bool) {
	parts := strings.Split(s, ".")
	v := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

func checkBinDir(dir string) error {
	for _, name := range []string{"initdb", "postgres", "pg_ctl"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", filepath.Join(dir, name))
		}
	}
	return nil
}
