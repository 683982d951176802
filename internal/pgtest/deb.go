package pgtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// LocalDeb returns the pre-fetched .deb of the Debian package pkg, or ""
// when there is none: PGVERBS_PGTAP_DEB for postgresql-<major>-pgtap (the
// older, more specific variable wins), else the one in the directory named
// by PGVERBS_EXTENSION_DEBS. CI's .ci/run sets both.
func LocalDeb(pkg string) (string, error) {
	if deb := os.Getenv("PGVERBS_PGTAP_DEB"); deb != "" && strings.HasPrefix(pkg, "postgresql-") && strings.HasSuffix(pkg, "-pgtap") {
		return deb, nil
	}
	if dir := os.Getenv("PGVERBS_EXTENSION_DEBS"); dir != "" {
		return FindDeb(dir, pkg)
	}
	return "", nil
}

// FindDeb finds pkg's .deb in dir by Debian's file naming,
// <name>_<version>_<arch>.deb, which no other package name can match; ""
// when dir holds none.
func FindDeb(dir, pkg string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if err != nil {
		return "", err
	}
	switch len(matches) {
	case 0:
		return "", nil
	case 1:
		return matches[0], nil
	}
	return "", fmt.Errorf("several .debs of %s in %s: %v", pkg, dir, matches)
}

// PgTAPDir returns a directory holding the extension files (pgtap.control
// and its scripts) of Debian's pgTAP package for the installed PostgreSQL's
// major version, for tests that read the real thing rather than a fixture.
// PGVERBS_PGTAP_DIR names an unpacked one; otherwise the .deb LocalDeb
// finds, or else one fetched with apt-get download, is unpacked with dpkg -x
// into a directory removed by t.Cleanup. When PostgreSQL or the .deb cannot
// be had the test is skipped, unless PGTEST_REQUIRE=1, where it fails so CI
// can never pass by skipping.
func PgTAPDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv("PGVERBS_PGTAP_DIR"); dir != "" {
		return dir
	}
	major, err := Major()
	if err != nil {
		skipUnavailable(t, err)
		t.Fatal(err)
	}
	pkg := "postgresql-" + major + "-pgtap"
	deb, err := LocalDeb(pkg)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if deb == "" {
		cmd := exec.Command("apt-get", "download", "-q", pkg)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			unavailable(t, fmt.Sprintf("cannot download %s (set PGVERBS_PGTAP_DEB): %v\n%s", pkg, err, bytes.TrimSpace(out)))
		}
		if deb, err = FindDeb(work, pkg); err != nil || deb == "" {
			t.Fatalf("apt-get download %s left no .deb in %s: %v", pkg, work, err)
		}
	}
	x := filepath.Join(work, "x")
	if out, err := exec.Command("dpkg", "-x", deb, x).CombinedOutput(); err != nil {
		unavailable(t, fmt.Sprintf("dpkg -x %s: %v\n%s", deb, err, bytes.TrimSpace(out)))
	}
	dir := filepath.Join(x, "usr/share/postgresql", major, "extension")
	if _, err := os.Stat(filepath.Join(dir, "pgtap.control")); err != nil {
		t.Fatalf("%s holds no pgtap.control for PostgreSQL %s: %v", filepath.Base(deb), major, err)
	}
	return dir
}

// unavailable skips t for a missing prerequisite, or fails it under
// PGTEST_REQUIRE=1.
func unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("PGTEST_REQUIRE") == "1" {
		t.Fatalf("PGTEST_REQUIRE=1 but %s", msg)
	}
	t.Skipf("skipping: %s (PGTEST_REQUIRE=1 turns this into a failure)", msg)
}

// Major returns the major version of the PostgreSQL installation BinDir
// finds, e.g. "15": the one Debian's package names and share/postgresql
// paths carry.
func Major() (string, error) {
	bin, err := BinDir()
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("pgtest: postgres --version: %w", err)
	}
	// "postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
	fields := strings.Fields(string(out))
	if len(fields) < 3 {
		return "", fmt.Errorf("pgtest: unexpected postgres --version output %q", out)
	}
	major, _, _ := strings.Cut(fields[2], ".")
	return major, nil
}
