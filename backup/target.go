package backup

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// markerName is the file Run keeps in the target while it writes, so that
// other processes see the directory is taken.
const markerName = ".pgverbs-backup-in-progress"

// resolved is a target path checked against the root.
type resolved struct {
	typed    string // what the user typed, for messages
	realRoot string // the root with symbolic links resolved
	rel      string // the target relative to realRoot, links resolved
	path     string // realRoot joined with rel
}

// ResolveTarget returns the absolute directory a backup to target (the
// user's path) writes to below root, the configured backup root. It refuses
// an empty root (SQLSTATE 55000, backups are disabled), ".." escapes and
// absolute paths outside root, symbolic links that lead outside root (any
// link on the way is resolved and must stay inside; 42501), the root
// itself, and an existing target that is not an empty directory (42P04).
// Errors are *pgerr.Error values and quote only what the user typed.
// ResolveTarget creates nothing.
func ResolveTarget(root, target string) (string, error) {
	r, err := resolve(root, target)
	if err != nil {
		return "", err
	}
	if err := checkEmpty(r); err != nil {
		return "", err
	}
	return r.path, nil
}

// ResolveDir is ResolveTarget for a directory that is reused and so may
// already hold files (a WAL archive): the same refusals, of escapes above
// all, except that an existing directory need not be empty; only one that
// a BASE BACKUP is writing is refused. The path returned starts with root
// as configured, even when root is a symbolic link, so that it stays
// lexically inside root for whoever checks that later; links below root
// are resolved. ResolveDir creates nothing.
func ResolveDir(root, target string) (string, error) {
	r, err := resolve(root, target)
	if err != nil {
		return "", err
	}
	if _, err := os.Lstat(filepath.Join(r.path, markerName)); err == nil {
		return "", inUse(target)
	}
	return filepath.Join(filepath.Clean(root), r.rel), nil
}

func resolve(root, target string) (*resolved, error) {
	if root == "" {
		return nil, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "BASE BACKUP is disabled: no backup_root configured").WithCause(ErrDisabled)
	}
	if !filepath.IsAbs(root) {
		return nil, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "BASE BACKUP is disabled: backup_root is not an absolute path")
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(realRoot); err == nil && !fi.IsDir() {
			err = errors.New("not a directory")
		}
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "BASE BACKUP is unavailable: the backup root is not accessible: %v", err)
	}
	r := &resolved{typed: target, realRoot: realRoot}

	if strings.TrimSpace(target) == "" {
		return nil, invalid("BASE BACKUP needs a target directory")
	}
	if strings.ContainsRune(target, 0) {
		return nil, invalid("backup target must not contain NUL characters")
	}
	outside := func() error {
		return outsideRoot(target)
	}

	rel := filepath.Clean(target)
	if filepath.IsAbs(rel) {
		// Accept the root as configured and as resolved.
		var ok bool
		if rel, ok = within(filepath.Clean(root), rel); !ok {
			if rel, ok = within(realRoot, filepath.Clean(target)); !ok {
				return nil, outside()
			}
		}
	}
	if rel == "." {
		return nil, withHint(invalid("backup target %s is the backup root itself", quote(target)), "Name a directory below the backup root.")
	}
	if !filepath.IsLocal(rel) {
		return nil, outside()
	}

	// Walk the existing part component by component: every symbolic link
	// on the way must resolve to a place inside the root.
	cur := realRoot
	comps := strings.Split(rel, string(filepath.Separator))
	for i, c := range comps {
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			cur = filepath.Join(append([]string{cur}, comps[i:]...)...)
			break
		}
		if err != nil {
			return nil, fileError("examine", target, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			dest, err := filepath.EvalSymlinks(next)
			if err != nil {
				// A dangling link: where it points is nobody's business.
				return nil, pgerr.New(pgerr.InsufficientPrivilege, "backup target %s leads through a symbolic link that cannot be followed", quote(target)).WithCause(ErrOutsideRoot)
			}
			if _, ok := within(realRoot, dest); !ok {
				return nil, outside()
			}
			if fi, err = os.Stat(dest); err != nil {
				return nil, fileError("examine", target, err)
			}
			next = dest
		}
		if !fi.IsDir() {
			if i == len(comps)-1 {
				return nil, pgerr.New(pgerr.DuplicateDatabase, "backup target %s already exists and is not a directory", quote(target)).WithCause(ErrTargetExists)
			}
			return nil, pgerr.New(pgerr.DuplicateDatabase, "backup target %s: %s is not a directory", quote(target), quote(strings.Join(comps[:i+1], "/"))).WithCause(ErrTargetExists)
		}
		if i < len(comps)-1 {
			// Not inside a backup that is still being written.
			if _, err := os.Lstat(filepath.Join(next, markerName)); err == nil {
				return nil, inUse(target)
			}
		}
		cur = next
	}
	r.path = cur
	r.rel, _ = within(realRoot, cur)
	if r.rel == "." {
		return nil, withHint(invalid("backup target %s is the backup root itself", quote(target)), "Name a directory below the backup root.")
	}
	return r, nil
}

// within returns p relative to root when p is root or lies below it.
func within(root, p string) (string, bool) {
	rel, err := filepath.Rel(root, p)
	if err != nil || !(rel == "." || filepath.IsLocal(rel)) {
		return "", false
	}
	return rel, true
}

// checkEmpty refuses a target that exists and is not an empty directory.
func checkEmpty(r *resolved) error {
	f, err := os.Open(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fileError("open", r.typed, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(2)
	if err != nil && err != io.EOF {
		return fileError("read", r.typed, err)
	}
	for _, n := range names {
		if n == markerName {
			return inUse(r.typed)
		}
	}
	if len(names) > 0 {
		return pgerr.New(pgerr.DuplicateDatabase, "backup target %s already exists and is not empty", quote(r.typed)).WithCause(ErrTargetExists)
	}
	return nil
}

func inUse(typed string) error {
	return pgerr.New(pgerr.ObjectInUse, "backup target %s is in use by another BASE BACKUP", quote(typed)).WithCause(ErrTargetInUse)
}

// Process-wide exclusion of Runs writing to the same directory, or to
// directories inside one another.
var (
	targetsMu sync.Mutex
	targets   = map[string]bool{}
)

func lockTarget(r *resolved) (unlock func(), err error) {
	targetsMu.Lock()
	defer targetsMu.Unlock()
	for p := range targets {
		// The same directory, or one inside the other.
		_, inside := within(p, r.path)
		_, outside := within(r.path, p)
		if inside || outside {
			return nil, inUse(r.typed)
		}
	}
	targets[r.path] = true
	return func() {
		targetsMu.Lock()
		delete(targets, r.path)
		targetsMu.Unlock()
	}, nil
}

// targetDir is the backup directory while Run writes it.
type targetDir struct {
	r          *resolved
	root       *os.Root // the backup root
	dir        *os.Root // the target
	createdTop string   // topmost directory Run created, relative to the root; "" if the target existed
}

// createTarget makes the target and its missing parents (0700) inside the
// root, checks it is empty and plants the marker file. Directories are
// created through an os.Root, so a symbolic link swapped in after resolve
// cannot lead the writes out of the root.
func createTarget(r *resolved) (_ *targetDir, err error) {
	root, err := os.OpenRoot(r.realRoot)
	if err != nil {
		return nil, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "BASE BACKUP is unavailable: the backup root is not accessible: %v", pathErrno(err))
	}
	t := &targetDir{r: r, root: root}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	comps := strings.Split(r.rel, string(filepath.Separator))
	for i := range comps {
		p := filepath.Join(comps[:i+1]...)
		err := root.Mkdir(p, 0o700)
		switch {
		case err == nil:
			if t.createdTop == "" {
				t.createdTop = p
			}
		case errors.Is(err, fs.ErrExist):
			fi, serr := root.Stat(p)
			if escapes(serr) {
				return nil, outsideRoot(r.typed)
			}
			if serr != nil {
				return nil, fileError("examine", r.typed, serr)
			}
			if !fi.IsDir() {
				return nil, pgerr.New(pgerr.DuplicateDatabase, "backup target %s already exists and is not a directory", quote(r.typed)).WithCause(ErrTargetExists)
			}
		default:
			if escapes(err) {
				return nil, outsideRoot(r.typed)
			}
			return nil, fileError("create directory", r.typed, err)
		}
	}
	if t.dir, err = root.OpenRoot(r.rel); err != nil {
		return nil, fileError("open", r.typed, err)
	}
	if t.createdTop == "" {
		if err := checkEmpty(r); err != nil {
			return nil, err
		}
	}
	f, err := t.dir.OpenFile(markerName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Someone else got here first: what was created is theirs now.
		t.createdTop = ""
		return nil, inUse(r.typed)
	}
	if err != nil {
		return nil, fileError("create", markerName, err)
	}
	fmt.Fprintf(f, "pid %d\nstarted %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Close(); err != nil {
		return nil, fileError("write", markerName, err)
	}
	return t, nil
}

// finish removes the marker of a complete backup.
func (t *targetDir) finish() error {
	if err := t.dir.Remove(markerName); err != nil {
		return fileError("remove", markerName, err)
	}
	return nil
}

// discard removes what Run created: the topmost directory it made, or the
// contents of a target that existed (and was empty) before.
func (t *targetDir) discard() error {
	if t.createdTop != "" {
		return t.root.RemoveAll(t.createdTop)
	}
	if t.dir == nil {
		return nil
	}
	f, err := t.dir.Open(".")
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	var errs []error
	// The marker goes last, so that nobody else takes the directory while
	// it is being emptied.
	for _, n := range names {
		if n != markerName {
			errs = append(errs, t.dir.RemoveAll(n))
		}
	}
	errs = append(errs, t.dir.RemoveAll(markerName))
	return errors.Join(errs...)
}

func (t *targetDir) close() {
	if t.dir != nil {
		t.dir.Close()
	}
	t.root.Close()
}

// outsideRoot is the error for a target outside the backup root.
func outsideRoot(typed string) error {
	return pgerr.New(pgerr.InsufficientPrivilege, "backup target %s is outside the backup root", quote(typed)).WithCause(ErrOutsideRoot)
}

// escapes reports whether an os.Root operation failed because the path
// leads out of the root. os.Root reports that with an unexported error
// (os.errPathEscapes, Go 1.24 to 1.26), so its text is all there is to
// match; TestCreateTargetSymlinkSwap fails if it changes.
func escapes(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// pathErrno strips the path from a *fs.PathError.
func pathErrno(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
