package pgtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// StartCopy starts a postmaster on a copy of the data directory dataDir,
// such as a restored base backup, and waits until it accepts connections;
// t.Cleanup stops it and removes the copy. The copy is the cluster's
// DataDir, "data" in a temporary directory of its own; prepare, when not
// nil, may change it, or place files beside it in its parent (a
// tablespace a link or tablespace_map points to), before everything is
// handed to the server's OS user. The server listens on a free port,
// retried as New does, with the harness's settings and opts.Settings over
// the copy's own postgresql.conf; of the other options BinDir, Password
// (the copy's superuser password, for SuperURL) and Logf apply, and the
// copy keeps its pg_hba.conf and certificates.
func StartCopy(t testing.TB, dataDir string, opts Options, prepare func(dataDir string)) *Cluster {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	if opts.Password == "" {
		opts.Password = "postgres"
	}
	settings, fixedPort, err := buildSettings(opts.Settings, false)
	if err != nil {
		t.Fatal(err)
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = BinDir(); err != nil {
			err = fmt.Errorf("pgtest: %w", err)
			skipUnavailable(t, err)
			t.Fatal(err)
		}
	}
	own, err := currentOwner()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	root, err := os.MkdirTemp(tempBase(own), "pgtest-copy-*")
	if err != nil {
		t.Fatalf("pgtest: create temp dir: %v", err)
	}
	c := newCluster(root, binDir, opts.Password, own, opts.Logf)
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("pgtest: stop cluster: %v", err)
		}
	})
	// cp -a keeps what a data directory holds besides files: the links of
	// pg_tblspc and the modes the server checks.
	if out, err := exec.Command("cp", "-a", dataDir, c.DataDir).CombinedOutput(); err != nil {
		t.Fatalf("pgtest: copy %s: %v\n%s", dataDir, err, out)
	}
	if prepare != nil {
		prepare(c.DataDir)
	}
	if err := c.adoptCopy(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := c.start(settings, fixedPort); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if err := c.waitReady(); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	c.logf("pgtest: copy of %s ready on port %d (data %s)", dataDir, c.Port, c.DataDir)
	return c
}

// adoptCopy makes a copied data directory startable by the harness: the
// mode the server demands, everything in the cluster's directory owned by
// the server's user, and postgresql.conf including the pgtest.conf that
// start writes (a copy of a pgtest cluster includes it already).
func (c *Cluster) adoptCopy() error {
	if err := os.Chmod(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", c.DataDir, err)
	}
	conf, err := os.ReadFile(filepath.Join(c.DataDir, "postgresql.conf"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read postgresql.conf: %w", err)
	}
	if !includesSettings(conf) {
		if err := c.includeSettings(); err != nil {
			return err
		}
	}
	if err := os.Mkdir(c.SocketDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", c.SocketDir, err)
	}
	return filepath.WalkDir(c.root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return c.owner.chown(path)
	})
}
