package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// corpusPackages names the Debian packages whose real, unmodified SQL-only
// extensions make up the test corpus for PostgreSQL major version major.
// .ci/run pre-fetches the same list; keep the two in step.
func corpusPackages(major string) []string {
	return []string{
		"postgresql-" + major + "-pgtap",
		"postgresql-" + major + "-partman",
		"postgresql-" + major + "-pg-track-settings",
		// Not versioned by major: Debian builds it for its default
		// PostgreSQL only, so on another major it ships no files for it.
		"pgagent",
		"postgresql-" + major + "-mimeo",
	}
}

// corpusDir returns a directory holding the union of the share/extension
// files of corpusPackages for major; see extensionDebs.
func corpusDir(t *testing.T, major string) string {
	t.Helper()
	return extensionDebs(t, major, corpusPackages(major)...)
}

// extensionCache holds what extensionDebs produced, per major and package
// list, for the whole test binary run: the packages are fetched and
// unpacked once however many tests use them.
var extensionCache = struct {
	sync.Mutex
	m map[string]extensionResult
}{m: map[string]extensionResult{}}

type extensionResult struct {
	dir string
	err error
	// unavailable marks a download failure, which skips the test unless
	// PGTEST_REQUIRE=1; any other error is a bug that fails it.
	unavailable bool
}

// extensionDebs returns a directory holding the union of the
// usr/share/postgresql/<major>/extension files of the Debian packages (no
// libraries: the corpus is SQL-only), unpacked with dpkg -x and never
// installed. The .deb files come from the directory named by
// PGVERBS_EXTENSION_DEBS (CI pre-fetches them), pgTAP's also from
// PGVERBS_PGTAP_DEB; whatever is not found there is fetched with apt-get
// download. A failed download skips the test, or fails it under
// PGTEST_REQUIRE=1.
//
// The directory must not be modified. It outlives the test binary (TestMain
// has no hook for it): when every .deb came from PGVERBS_EXTENSION_DEBS it
// sits in that directory under a name derived from the .debs and is reused
// by later runs, otherwise it is a temp dir left to the OS's tmp cleanup.
func extensionDebs(t *testing.T, major string, packages ...string) string {
	t.Helper()
	key := major + "\x00" + strings.Join(packages, "\x00")
	extensionCache.Lock()
	r, ok := extensionCache.m[key]
	if !ok {
		r = fetchExtensions(major, packages)
		extensionCache.m[key] = r
	}
	extensionCache.Unlock()
	switch {
	case r.unavailable && os.Getenv("PGTEST_REQUIRE") == "1":
		t.Fatalf("PGTEST_REQUIRE=1 but %v", r.err)
	case r.unavailable:
		t.Skipf("skipping: %v (PGTEST_REQUIRE=1 turns this into a failure)", r.err)
	case r.err != nil:
		t.Fatal(r.err)
	}
	return r.dir
}

func fetchExtensions(major string, packages []string) extensionResult {
	debs := map[string]string{} // package -> .deb file
	var missing []string
	for _, pkg := range packages {
		deb, err := pgtest.LocalDeb(pkg)
		if err != nil {
			return extensionResult{err: err}
		}
		if deb == "" {
			missing = append(missing, pkg)
			continue
		}
		debs[pkg] = deb
	}

	if local := os.Getenv("PGVERBS_EXTENSION_DEBS"); local != "" && len(missing) == 0 {
		key, err := debsKey(major, packages, debs)
		if err != nil {
			return extensionResult{err: err}
		}
		final := filepath.Join(local, ".unpacked-"+key)
		if _, err := os.Stat(filepath.Join(final, "extension")); err == nil {
			return extensionResult{dir: filepath.Join(final, "extension")}
		}
		dir, err := unpackInto(local, major, packages, debs)
		if err != nil {
			return extensionResult{err: err}
		}
		// Renaming a complete tree into place lets concurrent runs share
		// the cache without ever seeing half of it; a run that loses the
		// race finds the winner's tree there and drops its own.
		if err := os.Rename(dir, final); err != nil {
			os.RemoveAll(dir)
			if _, statErr := os.Stat(filepath.Join(final, "extension")); statErr != nil {
				return extensionResult{err: err}
			}
		}
		return extensionResult{dir: filepath.Join(final, "extension")}
	}

	work, err := os.MkdirTemp("", "pgverbs-extension-debs-")
	if err != nil {
		return extensionResult{err: err}
	}
	if len(missing) > 0 {
		cmd := exec.Command("apt-get", append([]string{"download", "-q"}, missing...)...)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(work)
			return extensionResult{unavailable: true, err: fmt.Errorf("cannot download %s: %v\n%s", strings.Join(missing, " "), err, bytes.TrimSpace(out))}
		}
		for _, pkg := range missing {
			deb, err := pgtest.FindDeb(work, pkg)
			if err == nil && deb == "" {
				err = fmt.Errorf("apt-get download %s left no .deb in %s", pkg, work)
			}
			if err != nil {
				return extensionResult{err: err}
			}
			debs[pkg] = deb
		}
	}
	dir, err := unpackInto(work, major, packages, debs)
	if err != nil {
		return extensionResult{err: err}
	}
	// Only the unpacked files are used from here on; the temp dir is
	// never removed, so leave as little in it as possible.
	for _, pkg := range missing {
		os.Remove(debs[pkg])
	}
	return extensionResult{dir: filepath.Join(dir, "extension")}
}

// debsKey names the unpacked tree after what went into it, so a changed
// .deb never reuses a stale tree.
func debsKey(major string, packages []string, debs map[string]string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", major)
	for _, pkg := range packages {
		fi, err := os.Stat(debs[pkg])
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %s %d %d\n", pkg, filepath.Base(debs[pkg]), fi.Size(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// unpackInto extracts the packages' extension files into <new temp dir
// under parent>/extension and returns the temp dir.
func unpackInto(parent, major string, packages []string, debs map[string]string) (_ string, err error) {
	dir, err := os.MkdirTemp(parent, ".unpacking-")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	union := filepath.Join(dir, "extension")
	if err := os.Mkdir(union, 0o755); err != nil {
		return "", err
	}
	from := map[string]string{} // file name -> package, to report clashes
	for i, pkg := range packages {
		x := filepath.Join(dir, fmt.Sprintf("x%d", i))
		if out, err := exec.Command("dpkg", "-x", debs[pkg], x).CombinedOutput(); err != nil {
			return "", fmt.Errorf("dpkg -x %s: %v\n%s", debs[pkg], err, out)
		}
		ext := filepath.Join(x, "usr/share/postgresql", major, "extension")
		entries, err := os.ReadDir(ext)
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s has no usr/share/postgresql/%s/extension: not built for PostgreSQL %s", filepath.Base(debs[pkg]), major, major)
		}
		if err != nil {
			return "", err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() {
				return "", fmt.Errorf("%s: %s in share/extension is not a regular file", filepath.Base(debs[pkg]), e.Name())
			}
			if other, ok := from[e.Name()]; ok {
				return "", fmt.Errorf("%s is in both %s and %s", e.Name(), other, pkg)
			}
			from[e.Name()] = pkg
			if err := os.Rename(filepath.Join(ext, e.Name()), filepath.Join(union, e.Name())); err != nil {
				return "", err
			}
		}
		if err := os.RemoveAll(x); err != nil {
			return "", err
		}
	}
	if len(from) == 0 {
		return "", fmt.Errorf("packages %v hold no extension files", packages)
	}
	return dir, nil
}

// TestExtensionCorpus checks the corpus the way the differential tests use
// it: a relocated installation holding it offers every package's extension
// natively, and the server creates each of them from Debian's files.
func TestExtensionCorpus(t *testing.T) {
	binDir, err := pgtest.BinDir()
	if err != nil && os.Getenv("PGTEST_REQUIRE") != "1" {
		t.Skipf("PostgreSQL not available: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(out))
	major := strings.Split(fields[len(fields)-1], ".")[0]

	dir := corpusDir(t, major)
	c := cluster(t, pgtest.Options{BinDir: pgtest.RelocateTemp(t, dir)})
	ctx := testCtx(t)
	conn := connect(t, c.SuperURL())
	names := []string{"mimeo", "pg_partman", "pg_track_settings", "pgagent", "pgtap"}
	var got []string
	rows, err := conn.Query(ctx, "SELECT name FROM pg_available_extensions WHERE name = ANY($1) ORDER BY name", names)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, names) {
		t.Fatalf("relocated server offers %v, want %v", got, names)
	}
	// One database each: pg_partman and mimeo both create
	// public.check_name_length and cannot share a schema.
	for _, name := range names {
		if _, err := conn.Exec(ctx, "CREATE DATABASE corpus_"+name); err != nil {
			t.Fatal(err)
		}
		db := connect(t, c.URL(c.User, c.Password, "corpus_"+name))
		if _, err := db.Exec(ctx, "CREATE EXTENSION "+name+" CASCADE"); err != nil {
			t.Errorf("native CREATE EXTENSION %s: %v", name, err)
		}
	}
}
