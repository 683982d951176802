package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// Relocation works because PostgreSQL does not use its compiled-in
// directories as they are: find_my_exec resolves the running binary's real
// path (symlinks included) and make_relative_path re-roots the compiled-in
// share and pkglib directories at the part of that path in front of the
// compiled-in bindir's tail. A server binary copied to dst/<tail of bindir>
// therefore reads dst/<tail of sharedir> and loads from dst/<tail of
// pkglibdir>, where the tails are taken after the prefix the directories
// share (Debian: /usr/ for lib/postgresql/M/bin and share/postgresql/M).

// debianBinDir recognises Debian's layout when no pg_config is at hand.
var debianBinDir = regexp.MustCompile(`^/usr/lib/postgresql/([^/]+)/bin$`)

// installLayout holds the compiled-in directories of an installation.
type installLayout struct {
	bin, share, pkglib string
}

// Relocate builds under dst a copy of the PostgreSQL installation BinDir
// finds whose share/extension directory additionally holds every regular
// file of each of extensionDirs, and returns the bin directory to pass as
// Options.BinDir. Nothing outside dst is modified.
//
// The binaries are copied (symlinks would lead the server back to the
// original share directory), pkglibdir is a symlink, share entries other
// than extension are symlinks, and extension/ holds symlinks to the original
// files plus copies of the added ones. Copies make the result independent of
// whether the postgres OS user may read extensionDirs (e.g. a 0700
// t.TempDir). Subdirectories of extensionDirs are ignored, as `make install`
// puts only files into share/extension; the same file name twice is an
// error unless the contents are identical.
//
// dst must be empty or not exist. When the servers will run as the postgres
// OS user, every ancestor of dst must be traversable by it, which rules out
// t.TempDir (its parent is 0700); RelocateTemp picks a suitable place. On
// failure Relocate removes what it created.
func Relocate(dst string, extensionDirs ...string) (binDir string, err error) {
	src, err := BinDir()
	if err != nil {
		return "", fmt.Errorf("pgtest: relocate: %w", err)
	}
	own, err := currentOwner()
	if err != nil {
		return "", fmt.Errorf("pgtest: relocate: %w", err)
	}
	binDir, err = relocate(src, dst, own, extensionDirs)
	if err != nil {
		return "", fmt.Errorf("pgtest: relocate %s to %s: %w", src, dst, err)
	}
	return binDir, nil
}

// RelocateTemp is Relocate into a temporary directory that the postgres OS
// user can reach, removed by t.Cleanup. When PostgreSQL is not installed it
// skips the test as Start does (failing it under PGTEST_REQUIRE=1); any
// other error fails the test.
func RelocateTemp(t testing.TB, extensionDirs ...string) string {
	t.Helper()
	own, err := currentOwner()
	if err != nil {
		t.Fatalf("pgtest: relocate: %v", err)
	}
	dst, err := os.MkdirTemp(tempBase(own), "pgtest-reloc-*")
	if err != nil {
		t.Fatalf("pgtest: relocate: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dst); err != nil {
			t.Errorf("pgtest: remove relocated installation: %v", err)
		}
	})
	binDir, err := Relocate(dst, extensionDirs...)
	if err != nil {
		skipUnavailable(t, err)
		t.Fatal(err)
	}
	return binDir
}

// skipUnavailable skips (or, under PGTEST_REQUIRE=1, fails) t when err says
// that PostgreSQL is not installed, and returns otherwise.
func skipUnavailable(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, errNoBinaries) {
		return
	}
	if os.Getenv("PGTEST_REQUIRE") == "1" {
		t.Fatalf("PGTEST_REQUIRE=1 but PostgreSQL is unavailable: %v", err)
	}
	t.Skipf("skipping: PostgreSQL is unavailable (set PG_BINDIR; PGTEST_REQUIRE=1 turns this into a failure): %v", err)
}

func relocate(src, dst string, own owner, extensionDirs []string) (_ string, err error) {
	layout, err := readLayout(src)
	if err != nil {
		return "", err
	}
	rel, err := relativeLayout(layout)
	if err != nil {
		return "", err
	}
	if dst, err = filepath.Abs(dst); err != nil {
		return "", err
	}

	created := false
	switch entries, err := os.ReadDir(dst); {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return "", err
		}
		created = true
	case err != nil:
		return "", err
	case len(entries) > 0:
		return "", errors.New("destination is not empty")
	}
	defer func() {
		if err == nil {
			return
		}
		if created {
			err = errors.Join(err, os.RemoveAll(dst))
			return
		}
		entries, _ := os.ReadDir(dst)
		for _, e := range entries {
			err = errors.Join(err, os.RemoveAll(filepath.Join(dst, e.Name())))
		}
	}()
	// The directory is empty and about to be filled by us alone, so its
	// mode is ours to choose; os.MkdirTemp and t.TempDir make it 0700.
	if err := os.Chmod(dst, 0o755); err != nil {
		return "", err
	}
	if err := checkTraversable(own, dst); err != nil {
		return "", err
	}
	// find_my_exec works on the real path, so the self-check below must too.
	realDst, err := filepath.EvalSymlinks(dst)
	if err != nil {
		return "", err
	}

	binDir := filepath.Join(dst, rel.bin)
	if err := mkdirs(dst, rel.bin); err != nil {
		return "", err
	}
	if err := copyBinaries(src, binDir); err != nil {
		return "", err
	}

	if err := mkdirs(dst, filepath.Dir(rel.pkglib)); err != nil {
		return "", err
	}
	if err := os.Symlink(layout.pkglib, filepath.Join(dst, rel.pkglib)); err != nil {
		return "", err
	}

	shareDir := filepath.Join(dst, rel.share)
	if err := mkdirs(dst, rel.share); err != nil {
		return "", err
	}
	if err := linkShare(layout.share, shareDir, extensionDirs); err != nil {
		return "", err
	}

	// pg_config re-roots its answers exactly as the server does, so asking
	// the copy catches a layout this code got wrong before any cluster is
	// started from it.
	if pgConfig := filepath.Join(binDir, "pg_config"); isExecutable(pgConfig) {
		out, err := exec.Command(pgConfig, "--sharedir").Output()
		if err != nil {
			return "", fmt.Errorf("%s --sharedir: %w", pgConfig, err)
		}
		want := filepath.Join(realDst, rel.share)
		if got := strings.TrimSpace(string(out)); got != want {
			return "", fmt.Errorf("relocated pg_config reports sharedir %s, want %s", got, want)
		}
	}
	return binDir, nil
}

// readLayout asks the installation's own pg_config for its compiled-in
// directories; /usr/bin/pg_config may belong to another major version.
// Without one, only Debian's fixed layout is known.
func readLayout(binDir string) (installLayout, error) {
	pgConfig := filepath.Join(binDir, "pg_config")
	if isExecutable(pgConfig) {
		cmd := exec.Command(pgConfig, "--bindir", "--sharedir", "--pkglibdir")
		cmd.Env = childEnv()
		out, err := cmd.Output()
		if err != nil {
			return installLayout{}, fmt.Errorf("%s: %w", pgConfig, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 3 {
			return installLayout{}, fmt.Errorf("%s printed %q, want three directories", pgConfig, out)
		}
		return installLayout{
			bin:    filepath.Clean(strings.TrimSpace(lines[0])),
			share:  filepath.Clean(strings.TrimSpace(lines[1])),
			pkglib: filepath.Clean(strings.TrimSpace(lines[2])),
		}, nil
	}
	if m := debianBinDir.FindStringSubmatch(filepath.Clean(binDir)); m != nil {
		return installLayout{
			bin:    filepath.Clean(binDir),
			share:  "/usr/share/postgresql/" + m[1],
			pkglib: "/usr/lib/postgresql/" + m[1] + "/lib",
		}, nil
	}
	return installLayout{}, fmt.Errorf("no pg_config in %s and not Debian's layout: cannot tell where the share directory is", binDir)
}

// relativeLayout returns the directories relative to the prefix all three
// share, which is where they must sit relative to each other in the copy
// for make_relative_path to find them.
func relativeLayout(l installLayout) (installLayout, error) {
	dirs := []string{l.bin, l.share, l.pkglib}
	for _, d := range dirs {
		if !filepath.IsAbs(d) {
			return installLayout{}, fmt.Errorf("compiled-in directory %q is not absolute", d)
		}
	}
	// A directory's own last component is never part of the prefix: it
	// cannot be re-rooted relative to itself.
	prefix := strings.Split(l.bin, string(filepath.Separator))
	prefix = prefix[:len(prefix)-1]
	for _, d := range dirs[1:] {
		parts := strings.Split(d, string(filepath.Separator))
		n := 0
		for n < len(prefix) && n < len(parts)-1 && prefix[n] == parts[n] {
			n++
		}
		prefix = prefix[:n]
	}
	root := strings.Join(prefix, string(filepath.Separator)) + string(filepath.Separator)
	var rel []string
	for _, d := range dirs {
		rel = append(rel, strings.TrimPrefix(d, root))
	}
	for i, a := range rel {
		for j, b := range rel {
			if i != j && (a == b || strings.HasPrefix(b, a+string(filepath.Separator))) {
				return installLayout{}, fmt.Errorf("compiled-in directories %s and %s overlap", dirs[i], dirs[j])
			}
		}
	}
	return installLayout{bin: rel[0], share: rel[1], pkglib: rel[2]}, nil
}

// checkTraversable reports a dst the server could not reach. Only the
// primary group counts: owner.apply starts the server without
// supplementary groups.
func checkTraversable(own owner, dst string) error {
	if !own.switchUser {
		return nil
	}
	for dir := dst; ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		perm := fi.Mode().Perm()
		ok := perm&0o001 != 0
		if st, isUnix := fi.Sys().(*syscall.Stat_t); isUnix {
			switch {
			case int(st.Uid) == own.uid:
				ok = perm&0o100 != 0
			case int(st.Gid) == own.gid:
				ok = perm&0o010 != 0
			}
		}
		if !ok {
			return fmt.Errorf("%s is not traversable by the %s OS user the server runs as (use a directory under /tmp, e.g. through RelocateTemp)", dir, serverUser)
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// mkdirs creates rel below root component by component with mode 0755
// regardless of the umask, so the server user can traverse each of them.
func mkdirs(root, rel string) error {
	dir := root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue
			}
			return err
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// copyBinaries copies every file of src (following symlinks such as
// postmaster -> postgres) into dst as a real file.
func copyBinaries(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		from := filepath.Join(src, e.Name())
		fi, err := os.Stat(from)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if err := copyFile(from, filepath.Join(dst, e.Name()), fi.Mode().Perm()|0o444); err != nil {
			return err
		}
	}
	return nil
}

// linkShare fills dst with links to every entry of the original share
// directory except extension/, which becomes a real directory merging the
// original files (linked) with those of extensionDirs (copied).
func linkShare(share, dst string, extensionDirs []string) error {
	entries, err := os.ReadDir(share)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "extension" {
			continue
		}
		if err := os.Symlink(filepath.Join(share, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}

	extDst := filepath.Join(dst, "extension")
	if err := mkdirs(dst, "extension"); err != nil {
		return err
	}
	origin := map[string]string{} // file name -> file it came from
	origExt := filepath.Join(share, "extension")
	orig, err := os.ReadDir(origExt)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range orig {
		from := filepath.Join(origExt, e.Name())
		if err := os.Symlink(from, filepath.Join(extDst, e.Name())); err != nil {
			return err
		}
		origin[e.Name()] = from
	}
	for _, dir := range extensionDirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			from := filepath.Join(dir, e.Name())
			fi, err := os.Stat(from)
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				continue
			}
			if prev, ok := origin[e.Name()]; ok {
				same, err := sameContent(prev, from)
				if err != nil {
					return err
				}
				if !same {
					return fmt.Errorf("%s conflicts with %s", from, prev)
				}
				continue
			}
			if err := copyFile(from, filepath.Join(extDst, e.Name()), 0o644); err != nil {
				return err
			}
			origin[e.Name()] = from
		}
	}
	return nil
}

func copyFile(from, to string, perm os.FileMode) (err error) {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if closeErr := out.Close(); err == nil {
			err = closeErr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", from, err)
	}
	// OpenFile's mode is subject to the umask, and the server user must be
	// able to read (and for binaries execute) the copy.
	return out.Chmod(perm)
}

func sameContent(a, b string) (bool, error) {
	x, err := os.ReadFile(a)
	if err != nil {
		return false, err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
