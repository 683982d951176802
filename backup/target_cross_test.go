package backup

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// crossCases are pairs of targets two processes back up to at once;
// overlap says whether at most one may proceed.
var crossCases = []struct {
	p, q    string
	overlap bool
}{
	{"x", "x", true},
	{"x", "x/y", true},
	{"x/y", "x", true},
	{"x", "x/y/z", true},
	{"x/y/z", "x", true},
	{"a/b", "a/c", false},
}

// emulateProcesses makes the package behave as if each createTarget ran in
// a process of its own: no process-wide map, only the marker protocol.
func emulateProcesses(t *testing.T) {
	testHooks.noProcessLock = true
	t.Cleanup(func() { testHooks.noProcessLock, testHooks.afterMarker = false, nil })
}

// checkRefusal fails unless err is what a losing backup may report.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrTargetInUse) && !errors.Is(err, ErrTargetExists) {
		t.Fatalf("refusal %v is neither 55006 nor 42P04", err)
	}
}

// leftovers lists the files (not directories) left below root.
func leftovers(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestTargetMarkerProtocol forces the interleavings that matter: the
// other process's whole createTarget between this one's marker and its
// re-check, in both orders, and sequentially.
func TestTargetMarkerProtocol(t *testing.T) {
	emulateProcesses(t)
	for _, c := range crossCases {
		for _, mode := range []string{"sequential", "inside-p", "inside-q"} {
			t.Run(c.p+"+"+c.q+"/"+mode, func(t *testing.T) {
				root := t.TempDir()
				rp, err := resolve(root, c.p)
				must(t, err)
				rq, err := resolve(root, c.q)
				must(t, err)
				first, second := rp, rq
				if mode == "inside-q" {
					first, second = rq, rp
				}
				var inner *targetDir
				var innerErr error
				fired := false
				if mode != "sequential" {
					testHooks.afterMarker = func(rel string) {
						if fired || rel != first.rel {
							return
						}
						fired = true
						inner, innerErr = createTarget(second)
					}
				}
				outer, outerErr := createTarget(first)
				testHooks.afterMarker = nil
				if mode == "sequential" {
					inner, innerErr = createTarget(second)
				}
				won := 0
				for _, r := range []struct {
					d   *targetDir
					err error
				}{{outer, outerErr}, {inner, innerErr}} {
					if r.err == nil {
						won++
						continue
					}
					checkRefusal(t, r.err)
				}
				if c.overlap && won > 1 {
					t.Fatalf("both backups to %s and %s proceeded", c.p, c.q)
				}
				if !c.overlap && won != 2 {
					t.Fatalf("disjoint targets: %v, %v", outerErr, innerErr)
				}
				if c.overlap && won == 0 {
					t.Fatalf("neither proceeded: %v, %v", outerErr, innerErr)
				}
				for _, d := range []*targetDir{outer, inner} {
					if d != nil {
						must(t, d.discard())
						d.close()
					}
				}
				if files := leftovers(t, root); len(files) > 0 {
					t.Fatalf("left behind: %v", files)
				}
				if entries, _ := os.ReadDir(root); c.overlap && len(entries) != 0 {
					// (Disjoint targets may leave the parent one made
					// and the other still used when it was discarded.)
					t.Fatalf("discard left %v in the root", entries)
				}
			})
		}
	}
}

// TestTargetRunsAcrossProcesses starts two Runs at once, many times, with
// the process-wide map bypassed: for overlapping targets at most one
// reaches its connection, the other is refused with 55006 or 42P04, and
// once both ended no file is left.
func TestTargetRunsAcrossProcesses(t *testing.T) {
	emulateProcesses(t)
	for _, c := range crossCases {
		t.Run(c.p+"+"+c.q, func(t *testing.T) {
			for range 100 {
				root := t.TempDir()
				var connected atomic.Int32
				release := make(chan struct{})
				// One event per Run: it reached its connection, or it
				// ended without.
				events := make(chan struct{}, 2)
				connect := func(ctx context.Context, _ bool) (*pgconn.PgConn, error) {
					connected.Add(1)
					events <- struct{}{}
					<-release
					return nil, errors.New("no server here")
				}
				var wg sync.WaitGroup
				start := make(chan struct{})
				errs := make([]error, 2)
				for i, target := range []string{c.p, c.q} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						_, errs[i] = Run(context.Background(), Options{Root: root, Target: target, Connect: connect})
						if errors.Is(errs[i], ErrTargetInUse) || errors.Is(errs[i], ErrTargetExists) {
							events <- struct{}{}
						}
					}()
				}
				close(start)
				// Both hold their targets (or were refused) before either
				// lets go, so that the two really overlap.
				<-events
				<-events
				close(release)
				wg.Wait()
				refused := 0
				for _, err := range errs {
					if errors.Is(err, ErrTargetInUse) || errors.Is(err, ErrTargetExists) {
						refused++
					}
				}
				n := int(connected.Load())
				if c.overlap && (n > 1 || n+refused != 2) {
					t.Fatalf("%d connected, %d refused: %v", n, refused, errs)
				}
				if !c.overlap && n != 2 {
					t.Fatalf("disjoint targets: %v", errs)
				}
				if files := leftovers(t, root); len(files) > 0 {
					t.Fatalf("left behind: %v", files)
				}
			}
		})
	}
}

// TestDiscardKeepsSiblings: a failed backup removes the parents it made
// only while they are empty, so another process's backup to a sibling
// below such a parent survives.
func TestDiscardKeepsSiblings(t *testing.T) {
	emulateProcesses(t)
	root := t.TempDir()
	ra, err := resolve(root, "a/b")
	must(t, err)
	rc, err := resolve(root, "a/c")
	must(t, err)
	da, err := createTarget(ra)
	must(t, err)
	defer da.close()
	dc, err := createTarget(rc)
	must(t, err)
	defer dc.close()
	must(t, os.WriteFile(filepath.Join(root, "a/c/PG_VERSION"), []byte("15\n"), 0o600))
	must(t, da.discard())
	if _, err := os.Stat(filepath.Join(root, "a/b")); !os.IsNotExist(err) {
		t.Fatalf("a/b not removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "a/c/PG_VERSION")); err != nil {
		t.Fatalf("the sibling backup lost its files: %v", err)
	}
}
