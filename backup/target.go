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
	"syscall"
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
// directories inside one another. It refuses early and with certainty
// inside one process; across processes the marker protocol in
// createTarget is what holds.
var (
	targetsMu sync.Mutex
	targets   = map[string]bool{}
)

// testHooks let a test emulate two processes in one: noProcessLock skips
// the process-wide map, so that only the marker protocol excludes, and
// afterMarker (when set) runs between planting the marker and the
// re-check, where another process's steps may interleave.
var testHooks struct {
	noProcessLock bool
	afterMarker   func(rel string)
}

func lockTarget(r *resolved) (unlock func(), err error) {
	if testHooks.noProcessLock {
		return func() {}, nil
	}
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
	r    *resolved
	root *os.Root // the backup root
	dir  *os.Root // the target
	// created are the directories Run made, relative to the root, the
	// topmost first; empty if the target existed.
	created []string
}

// createTarget makes the target and its missing parents (0700) inside the
// root, checks it is empty and plants the marker file, then checks again
// that no other backup overlaps. Directories are created through an
// os.Root, so a symbolic link swapped in after resolve cannot lead the
// writes out of the root.
//
// Across processes (several pgverbs sharing a backup root) there is no
// lock but the file system's, so the exclusion is a protocol: each
// backup first makes its target's path exist, then creates its marker
// with O_EXCL, then re-checks (a) that the target holds nothing but its
// marker and (b) that no directory between the root and the target holds
// a marker; a backup that finds either withdraws (removes its marker and
// the now empty directories it made) and reports 55006. Why two backups
// P and Q never both proceed:
//
//   - The same target: O_EXCL lets only one marker be created.
//   - Q's target inside P's, through P's child d (d is Q's target or one
//     of its parents). If P's listing (a) shows d, P withdraws. If not, d
//     came to exist after P listed, so after P's marker was created; Q's
//     look (b) at P's target comes after d exists, so it finds P's
//     marker and Q withdraws. Either way at most one goes on (both may
//     withdraw, in a narrow race; the client retries).
//   - Disjoint targets do not conflict; each removes only what it made,
//     and a shared parent one of them made is removed with rmdir, which
//     leaves it to the other when the other is inside.
//
// This needs what the README says a shared file system must give: an
// atomic O_EXCL create, and directory listings and lookups that show
// another client's create as soon as it returned.
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
			t.created = append(t.created, p)
		case errors.Is(err, fs.ErrExist):
			fi, serr := root.Stat(p)
			if escapes(serr) {
				return nil, outsideRoot(r.typed)
			}
			if errors.Is(serr, fs.ErrNotExist) {
				// Removed just now by another backup withdrawing.
				t.withdraw(false)
				return nil, inUse(r.typed)
			}
			if serr != nil {
				return nil, fileError("examine", r.typed, serr)
			}
			if !fi.IsDir() {
				return nil, pgerr.New(pgerr.DuplicateDatabase, "backup target %s already exists and is not a directory", quote(r.typed)).WithCause(ErrTargetExists)
			}
		case errors.Is(err, fs.ErrNotExist):
			// A parent vanished under us: another backup withdrew.
			t.withdraw(false)
			return nil, inUse(r.typed)
		default:
			if escapes(err) {
				return nil, outsideRoot(r.typed)
			}
			return nil, fileError("create directory", r.typed, err)
		}
	}
	if t.dir, err = root.OpenRoot(r.rel); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			t.withdraw(false)
			return nil, inUse(r.typed)
		}
		return nil, fileError("open", r.typed, err)
	}
	if len(t.created) == 0 {
		if err := checkEmpty(r); err != nil {
			return nil, err
		}
	}
	f, err := t.dir.OpenFile(markerName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Someone else got here first: what was created is theirs now.
		t.created = nil
		return nil, inUse(r.typed)
	}
	if err != nil {
		t.withdraw(false)
		return nil, fileError("create", markerName, err)
	}
	fmt.Fprintf(f, "pid %d\nstarted %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Close(); err != nil {
		t.withdraw(true)
		return nil, fileError("write", markerName, err)
	}
	if h := testHooks.afterMarker; h != nil {
		h(r.rel)
	}
	if err := t.recheck(comps); err != nil {
		t.withdraw(true)
		return nil, err
	}
	return t, nil
}

// recheck is the second half of createTarget's protocol, run with the
// marker in place: the target holds only the marker (no other backup
// made a directory inside it), and no directory above it holds one (no
// other backup writes around it).
func (t *targetDir) recheck(comps []string) error {
	f, err := t.dir.Open(".")
	if err != nil {
		return fileError("open", t.r.typed, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fileError("read", t.r.typed, err)
	}
	for _, n := range names {
		if n != markerName {
			return inUse(t.r.typed)
		}
	}
	for i := len(comps) - 1; i >= 1; i-- {
		p := filepath.Join(append(comps[:i:i], markerName)...)
		_, err := t.root.Lstat(p)
		if err == nil {
			return inUse(t.r.typed)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fileError("examine", t.r.typed, err)
		}
	}
	return nil
}

// withdraw undoes createTarget after a conflict: the marker (when
// planted) and the directories it made, deepest first, each only while
// empty, since another backup may already be using one.
func (t *targetDir) withdraw(marker bool) {
	if marker && t.dir != nil {
		_ = t.dir.Remove(markerName)
	}
	for i := len(t.created) - 1; i >= 0; i-- {
		if t.root.Remove(t.created[i]) != nil {
			break
		}
	}
	t.created = nil
}

// finish removes the marker of a complete backup.
func (t *targetDir) finish() error {
	if err := t.dir.Remove(markerName); err != nil {
		return fileError("remove", markerName, err)
	}
	return nil
}

// discard removes what Run created: the target with what it holds when
// Run made it, then the parents it made as long as they are empty (a
// sibling target another backup made meanwhile stays); or the contents
// of a target that existed (and was empty) before.
func (t *targetDir) discard() error {
	if n := len(t.created); n > 0 {
		if err := t.root.RemoveAll(t.created[n-1]); err != nil {
			return err
		}
		for i := n - 2; i >= 0; i-- {
			err := t.root.Remove(t.created[i])
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
					break // someone else's now
				}
				return err
			}
		}
		return nil
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
