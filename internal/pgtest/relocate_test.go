package pgtest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeExtension writes the files of a tiny SQL-only extension into a new
// directory. It is deliberately a private t.TempDir: Relocate copies the
// added files, so the server user need not be able to read the original.
func writeExtension(t *testing.T, control string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"pgtest_reloc.control":      control,
		"pgtest_reloc--1.0.sql":     "CREATE FUNCTION pgtest_reloc() RETURNS text LANGUAGE sql AS $$ SELECT 'relocated' $$;\n",
		"subdir/pgtest_sub.control": "default_version = '1.0'\n",
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const relocControl = "comment = 'pgtest relocation probe'\ndefault_version = '1.0'\nrelocatable = true\n"

func TestRelocate(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	ext := writeExtension(t, relocControl)
	// The same file twice with the same content is not a conflict.
	binDir := RelocateTemp(t, ext, ext)

	for _, name := range []string{"postgres", "initdb", "pg_ctl"} {
		fi, err := os.Lstat(filepath.Join(binDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			t.Errorf("%s is %v, want a regular file (a symlink leads the server back to the original share dir)", name, fi.Mode())
		}
	}

	c := Start(t, Options{BinDir: binDir})
	if c.BinDir != binDir {
		t.Fatalf("Cluster.BinDir = %s, want %s", c.BinDir, binDir)
	}
	avail := "SELECT string_agg(name, ',' ORDER BY name) FROM pg_available_extensions WHERE name IN ('pgtest_reloc', 'pgtest_sub', 'plpgsql')"
	if got := mustQueryOne(t, ctx, c.SuperURL(), avail); got != "pgtest_reloc,plpgsql" {
		t.Fatalf("available extensions = %q, want the added one and the original ones, not the subdirectory's", got)
	}
	if err := c.Exec(ctx, "CREATE EXTENSION pgtest_reloc"); err != nil {
		t.Fatal(err)
	}
	if got := mustQueryOne(t, ctx, c.SuperURL(), "SELECT pgtest_reloc()"); got != "relocated" {
		t.Fatalf("pgtest_reloc() = %q", got)
	}
	// A contrib module needs both its script (linked share) and its library
	// (pkglibdir, a symlink resolved relative to the copied binary).
	if mustQueryOne(t, ctx, c.SuperURL(), "SELECT count(*) FROM pg_available_extensions WHERE name = 'hstore'") == "1" {
		if err := c.Exec(ctx, "CREATE EXTENSION hstore; SELECT 'a=>1'::hstore"); err != nil {
			t.Fatalf("contrib extension in the relocated installation: %v", err)
		}
	}

	plain := Start(t, Options{})
	if got := mustQueryOne(t, ctx, plain.SuperURL(), "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgtest_reloc'"); got != "0" {
		t.Fatalf("the system installation lists pgtest_reloc (%s): relocation leaked outside its directory", got)
	}
}

func TestRelocateErrors(t *testing.T) {
	t.Parallel()
	if _, err := BinDir(); err != nil {
		t.Skip(err)
	}
	own, err := currentOwner()
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.MkdirTemp(tempBase(own), "pgtest-reloc-test-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dst) })

	a := writeExtension(t, relocControl)
	b := writeExtension(t, relocControl+"superuser = false\n")
	_, err = Relocate(dst, a, b)
	if err == nil || !strings.Contains(err.Error(), "conflicts") {
		t.Fatalf("differing files of the same name: got %v, want a conflict", err)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Fatalf("failed Relocate left %d entries in %s", len(entries), dst)
	}

	if err := os.WriteFile(filepath.Join(dst, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Relocate(dst); err == nil {
		t.Fatal("Relocate into a non-empty directory succeeded")
	}
	if _, err := New(Options{BinDir: dst}); err == nil || errors.Is(err, errNoBinaries) {
		t.Fatalf("New with a BinDir lacking binaries: got %v, want a plain error", err)
	}
}

func TestRelativeLayout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in, want  installLayout
		wantError bool
	}{
		{
			name: "debian",
			in:   installLayout{"/usr/lib/postgresql/15/bin", "/usr/share/postgresql/15", "/usr/lib/postgresql/15/lib"},
			want: installLayout{"lib/postgresql/15/bin", "share/postgresql/15", "lib/postgresql/15/lib"},
		},
		{
			name: "source build",
			in:   installLayout{"/usr/local/pgsql/bin", "/usr/local/pgsql/share", "/usr/local/pgsql/lib"},
			want: installLayout{"bin", "share", "lib"},
		},
		{
			name: "only the root in common",
			in:   installLayout{"/opt/pg/bin", "/usr/share/pg", "/opt/pg/lib"},
			want: installLayout{"opt/pg/bin", "usr/share/pg", "opt/pg/lib"},
		},
		{
			name:      "nested",
			in:        installLayout{"/pg/bin", "/pg/bin/share", "/pg/lib"},
			wantError: true,
		},
	} {
		got, err := relativeLayout(tc.in)
		if tc.wantError {
			if err == nil {
				t.Errorf("%s: got %+v, want an error", tc.name, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v, want %+v", tc.name, got, err, tc.want)
		}
	}
}
