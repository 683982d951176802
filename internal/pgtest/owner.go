package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// serverUser is the OS account PostgreSQL runs as when we are root, matching
// what distribution packages create.
const serverUser = "postgres"

// owner describes who the server processes run as. The zero value means
// "the current user", which needs no chown and no credential switch.
type owner struct {
	switchUser bool
	uid, gid   int
}

func currentOwner() (owner, error) {
	if os.Geteuid() != 0 {
		return owner{}, nil
	}
	u, err := user.Lookup(serverUser)
	if err != nil {
		return owner{}, fmt.Errorf("running as root, PostgreSQL needs an unprivileged %q OS user: %w", serverUser, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return owner{}, fmt.Errorf("parse uid %q of user %s: %w", u.Uid, serverUser, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return owner{}, fmt.Errorf("parse gid %q of user %s: %w", u.Gid, serverUser, err)
	}
	return owner{switchUser: true, uid: uid, gid: gid}, nil
}

func (o owner) apply(cmd *exec.Cmd) {
	if !o.switchUser {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Groups is left empty on purpose: root's supplementary groups must not
	// leak into the server process.
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.gid)}
}

func (o owner) chown(path string) error {
	if !o.switchUser {
		return nil
	}
	if err := os.Lchown(path, o.uid, o.gid); err != nil {
		return fmt.Errorf("chown %s to %s: %w", path, serverUser, err)
	}
	return nil
}

func (o owner) mkdir(path string, perm os.FileMode) error {
	if err := os.Mkdir(path, perm); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	// Mkdir is subject to the umask; the server insists on exact modes for
	// its data directory.
	if err := os.Chmod(path, perm); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return o.chown(path)
}

func (o owner) writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(path, perm); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return o.chown(path)
}

// RunAsPostgres prepares cmd to run as the "postgres" OS user when the
// current process is root, because initdb, postgres and pg_ctl refuse to run
// as root. It is a no-op for any other user. Files the command must access
// (for example a data directory restored from a backup) have to be owned by
// that user as well. The error reports a missing "postgres" account; the
// command is left untouched in that case.
func RunAsPostgres(cmd *exec.Cmd) error {
	o, err := currentOwner()
	if err != nil {
		return err
	}
	o.apply(cmd)
	return nil
}

// ServerDir creates a new empty directory that the server's OS user owns
// (mode 0700, as CREATE TABLESPACE wants its LOCATION), below a parent
// every user can traverse: os.TempDir, or /tmp when that is private to
// root. The caller removes it.
func ServerDir() (string, error) {
	own, err := currentOwner()
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	dir, err := os.MkdirTemp(tempBase(own), "pgtest-dir-*")
	if err != nil {
		return "", fmt.Errorf("pgtest: create temp dir: %w", err)
	}
	if err := own.chown(dir); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("pgtest: %w", err)
	}
	return dir, nil
}

// TempBase returns the parent for temporary directories the server's OS
// user must reach: "" (os.TempDir) when pgtest runs the server as the
// current user, else a directory every user can traverse (/tmp when
// $TMPDIR is private to root).
func TempBase() (string, error) {
	own, err := currentOwner()
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	return tempBase(own), nil
}
