package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walstream"
)

// wantCode checks that err is a *pgerr.Error with the given SQLSTATE and
// returns it.
func wantCode(t *testing.T, err error, code pgerr.Code) *pgerr.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want SQLSTATE %s", code)
	}
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *pgerr.Error", err, err)
	}
	if pe.Code != code {
		t.Fatalf("got %v, want SQLSTATE %s", err, code)
	}
	return pe
}

func TestResolveTarget(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "real"), filepath.Join(root, "full"), filepath.Join(root, "empty")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "full", "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink(outside, filepath.Join(root, "escape")))
	must(t, os.Symlink("real", filepath.Join(root, "inside")))
	must(t, os.Symlink("../outside", filepath.Join(root, "real", "up")))
	must(t, os.Symlink(filepath.Join(base, "nowhere"), filepath.Join(root, "dangling")))
	// A root reached through a symbolic link.
	rootLink := filepath.Join(base, "rootlink")
	must(t, os.Symlink(root, rootLink))

	ok := []struct{ root, target, want string }{
		{root, "nightly/2026-11-23", filepath.Join(root, "nightly/2026-11-23")},
		{root, "./a//b/", filepath.Join(root, "a/b")},
		{root, "a/../b", filepath.Join(root, "b")},
		{root, filepath.Join(root, "abs"), filepath.Join(root, "abs")},
		{root, "inside/new", filepath.Join(root, "real/new")},
		{root, "empty", filepath.Join(root, "empty")},
		{rootLink, "x", filepath.Join(root, "x")},
		{rootLink, filepath.Join(rootLink, "y"), filepath.Join(root, "y")},
		{rootLink, filepath.Join(root, "z"), filepath.Join(root, "z")},
	}
	for _, c := range ok {
		got, err := ResolveTarget(c.root, c.target)
		if err != nil {
			t.Errorf("ResolveTarget(%q): %v", c.target, err)
			continue
		}
		if got != c.want {
			t.Errorf("ResolveTarget(%q) = %q, want %q", c.target, got, c.want)
		}
	}

	bad := []struct {
		target string
		code   pgerr.Code
		is     error
	}{
		{"..", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{"../outside/x", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{"a/../../x", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{outside, pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{"/etc/backup", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{root + "x/y", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{"escape", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{"escape/sub", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{"real/up/x", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{"inside/up/x", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{"dangling/x", pgerr.InsufficientPrivilege, ErrOutsideRoot},
		{"full", pgerr.DuplicateDatabase, ErrTargetExists},
		{"file", pgerr.DuplicateDatabase, ErrTargetExists},
		{"file/sub", pgerr.DuplicateDatabase, ErrTargetExists},
		{".", pgerr.InvalidParameterValue, nil},
		{root, pgerr.InvalidParameterValue, nil},
		{"", pgerr.InvalidParameterValue, nil},
		{"a\x00b", pgerr.InvalidParameterValue, nil},
	}
	for _, c := range bad {
		_, err := ResolveTarget(root, c.target)
		pe := wantCode(t, err, c.code)
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("ResolveTarget(%q): %v is not %v", c.target, err, c.is)
		}
		// Nothing beyond what the user typed: no root, no link targets.
		msg := pe.Message + pe.Detail + pe.Hint
		if !strings.Contains(c.target, base) && strings.Contains(msg, base) {
			t.Errorf("ResolveTarget(%q): message reveals a path: %s", c.target, msg)
		}
	}
	pe := wantCode(t, func() error { _, err := ResolveTarget(root, "full"); return err }(), pgerr.DuplicateDatabase)
	if pe.Message != `backup target "full" already exists and is not empty` {
		t.Errorf("message = %q", pe.Message)
	}

	_, err := ResolveTarget("", "x")
	pe = wantCode(t, err, pgerr.ObjectNotInPrerequisiteState)
	if pe.Message != "BASE BACKUP is disabled: no backup_root configured" || !errors.Is(err, ErrDisabled) {
		t.Errorf("empty root: %v", err)
	}
	_, err = ResolveTarget("relative/root", "x")
	wantCode(t, err, pgerr.ObjectNotInPrerequisiteState)
	_, err = ResolveTarget(filepath.Join(base, "missing"), "x")
	wantCode(t, err, pgerr.ObjectNotInPrerequisiteState)

	// A directory another process is writing to.
	busy := filepath.Join(root, "busy")
	must(t, os.Mkdir(busy, 0o700))
	must(t, os.WriteFile(filepath.Join(busy, markerName), nil, 0o600))
	_, err = ResolveTarget(root, "busy")
	wantCode(t, err, pgerr.ObjectInUse)
	_, err = ResolveTarget(root, "busy/inner")
	wantCode(t, err, pgerr.ObjectInUse)
	if !errors.Is(err, ErrTargetInUse) {
		t.Errorf("busy: %v is not ErrTargetInUse", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunTargetLifecycle covers what Run does with the directory when the
// backup fails: a second Run to the same target is refused while the
// first runs, and the first removes exactly what it created.
func TestRunTargetLifecycle(t *testing.T) {
	root := t.TempDir()
	must(t, os.Mkdir(filepath.Join(root, "existing"), 0o755))

	entered := make(chan struct{})
	release := make(chan struct{})
	blocking := func(ctx context.Context, _ bool) (*pgconn.PgConn, error) {
		close(entered)
		<-release
		return nil, errors.New("no server here")
	}
	opts := Options{Root: root, Target: "a/b/c", Connect: blocking}
	done := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), opts)
		done <- err
	}()
	<-entered
	if fi, err := os.Stat(filepath.Join(root, "a/b/c", markerName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("marker: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "a")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created parent: %v %v", fi, err)
	}
	// Same target, spelled differently.
	_, err := Run(context.Background(), Options{Root: root, Target: filepath.Join(root, "a/./b/c/"), Connect: blocking})
	wantCode(t, err, pgerr.ObjectInUse)
	if !errors.Is(err, ErrTargetInUse) {
		t.Fatalf("second Run: %v", err)
	}
	// Inside it, or around it.
	for _, target := range []string{"a/b/c/d", "a/b"} {
		_, err = Run(context.Background(), Options{Root: root, Target: target, Connect: blocking})
		if !errors.Is(err, ErrTargetInUse) && !errors.Is(err, ErrTargetExists) {
			t.Errorf("Run to %s during a backup to a/b/c: %v", target, err)
		}
	}
	close(release)
	err = <-done
	wantCode(t, err, pgerr.ConnectionFailure)
	if _, err := os.Stat(filepath.Join(root, "a")); !os.IsNotExist(err) {
		t.Fatalf("the directories Run created were not removed: %v", err)
	}

	// A target that existed empty stays, empty.
	failing := func(ctx context.Context, _ bool) (*pgconn.PgConn, error) { return nil, errors.New("no server here") }
	_, err = Run(context.Background(), Options{Root: root, Target: "existing", Connect: failing})
	wantCode(t, err, pgerr.ConnectionFailure)
	entries, err := os.ReadDir(filepath.Join(root, "existing"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("existing target after failure: %v %v", entries, err)
	}

	// Canceled before anything happened.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Run(ctx, Options{Root: root, Target: "x", Connect: failing})
	wantCode(t, err, pgerr.QueryCanceled)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Run: %v is not context.Canceled", err)
	}
	// Canceled while connecting.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = Run(ctx, Options{Root: root, Target: "y", Connect: func(ctx context.Context, _ bool) (*pgconn.PgConn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	wantCode(t, err, pgerr.QueryCanceled)
	if _, err := os.Stat(filepath.Join(root, "y")); !os.IsNotExist(err) {
		t.Fatalf("canceled Run left its directory: %v", err)
	}
}

func TestValidate(t *testing.T) {
	connect := func(context.Context, bool) (*pgconn.PgConn, error) { return nil, errors.New("unused") }
	bad := []Options{
		{Compression: Gzip}, // plain
		{Format: Tar, Compression: 9},
		{Format: Tar, Compression: -1},
		{Format: Tar, Compression: Gzip, Level: 10},
		{Format: Tar, Compression: NoCompression, Level: 1},
		{WAL: 3},
		{Checkpoint: 2},
		{ManifestChecksums: "md5"},
		{MaxRate: 1000},
		{MaxRate: 2 << 30},
		{Format: 7},
		{Method: 9},
		{Label: "a\x00b"},
	}
	for _, o := range bad {
		o.Connect = connect
		if _, err := validate(o); err == nil {
			t.Errorf("validate(%+v) accepted", o)
		}
	}
	s, err := validate(Options{Connect: connect, Format: Tar, Compression: Zstd, Level: 19, MaxRate: 100000})
	if err != nil {
		t.Fatal(err)
	}
	if s.Compression != Zstd || s.WAL != WALStream || s.Checkpoint != SpreadCheckpoint || s.checksums != "CRC32C" || s.maxRateKB != 98 || s.Label != "pgverbs" {
		t.Errorf("defaults: %+v", s)
	}
}

// TestParseOptions checks the names of the typed options both ways, in
// any case, and that an unknown name is 22023 quoting what was given.
func TestParseOptions(t *testing.T) {
	compression := func(s string) (fmt.Stringer, error) { return ParseCompression(s) }
	wal := func(s string) (fmt.Stringer, error) { return ParseWAL(s) }
	checkpoint := func(s string) (fmt.Stringer, error) { return ParseCheckpoint(s) }
	for _, c := range []struct {
		parse   func(string) (fmt.Stringer, error)
		in      string
		want    fmt.Stringer // nil: an error
		wantMsg string
	}{
		{compression, "none", NoCompression, ""},
		{compression, "GZIP", Gzip, ""},
		{compression, "lz4", LZ4, ""},
		{compression, "Zstd", Zstd, ""},
		{compression, "brotli", nil, `unrecognized compression algorithm "brotli"`},
		{compression, "", nil, `unrecognized compression algorithm ""`},
		{wal, "stream", WALStream, ""},
		{wal, "FETCH", WALFetch, ""},
		{wal, "none", WALNone, ""},
		{wal, "archive", nil, `invalid WAL method "archive" (stream, fetch or none)`},
		{checkpoint, "spread", SpreadCheckpoint, ""},
		{checkpoint, "Fast", FastCheckpoint, ""},
		{checkpoint, "slow", nil, `invalid checkpoint argument "slow" (fast or spread)`},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := c.parse(c.in)
			if c.want == nil {
				if pe := wantCode(t, err, pgerr.InvalidParameterValue); pe.Message != c.wantMsg {
					t.Errorf("message %q, want %q", pe.Message, c.wantMsg)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %v, %v; want %v", got, err, c.want)
			}
			if s := got.String(); s != strings.ToLower(c.in) {
				t.Errorf("String() = %q, want %q", s, strings.ToLower(c.in))
			}
		})
	}
	if got := Compression(7).String(); got != "Compression(7)" {
		t.Errorf("Compression(7).String() = %q", got)
	}
}

func TestBaseBackupCommand(t *testing.T) {
	s, err := validate(Options{
		Connect:           func(context.Context, bool) (*pgconn.PgConn, error) { return nil, nil },
		Format:            Tar,
		Label:             "it's",
		Checkpoint:        FastCheckpoint,
		WAL:               WALFetch,
		Manifest:          true,
		ManifestChecksums: "sha256",
		VerifyChecksums:   true,
		MaxRate:           64 * 1024,
	})
	if err != nil {
		t.Fatal(err)
	}
	b := &run{s: s}
	want15 := `BASE_BACKUP (LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', WAL, WAIT false, MAX_RATE 64, TABLESPACE_MAP, VERIFY_CHECKSUMS true, MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256')`
	if got := b.baseBackupCommand(15); got != want15 {
		t.Errorf("15:\n got %s\nwant %s", got, want15)
	}
	want14 := `BASE_BACKUP LABEL 'it''s' PROGRESS FAST WAL NOWAIT MAX_RATE 64 TABLESPACE_MAP MANIFEST 'yes' MANIFEST_CHECKSUMS 'SHA256'`
	if got := b.baseBackupCommand(14); got != want14 {
		t.Errorf("14:\n got %s\nwant %s", got, want14)
	}
	s.VerifyChecksums, s.WAL, s.Manifest, s.maxRateKB, s.Checkpoint, s.Format = false, WALNone, false, 0, SpreadCheckpoint, Plain
	if got, want := b.baseBackupCommand(15), `BASE_BACKUP (LABEL 'it''s', PROGRESS, VERIFY_CHECKSUMS false)`; got != want {
		t.Errorf("15 minimal:\n got %s\nwant %s", got, want)
	}
}

func TestWALSegmentName(t *testing.T) {
	cases := []struct {
		tli     uint32
		lsn     uint64
		segSize uint64
		want    string
	}{
		{1, 0x2000028, 16 << 20, "000000010000000000000002"},
		{1, 0x1_FF000000, 16 << 20, "0000000100000001000000FF"},
		{3, 0x5_40000000, 1 << 30, "000000030000000500000001"},
		{1, 0x5_40000000, 64 << 20, "000000010000000500000010"},
	}
	for _, c := range cases {
		if got := walSegmentName(c.tli, c.lsn, c.segSize); got != c.want {
			t.Errorf("walSegmentName(%d, %X, %d) = %s, want %s", c.tli, c.lsn, c.segSize, got, c.want)
		}
	}
	if l, err := parseLSN("16/B374D848"); err != nil || l != 0x16_B374D848 || l.String() != "16/B374D848" {
		t.Errorf("parseLSN: %v %v", l, err)
	}
	if n, err := walstream.ParseSize("16MB"); err != nil || n != 16<<20 {
		t.Errorf("walstream.ParseSize: %d %v", n, err)
	}
}

func TestExcluded(t *testing.T) {
	sib := map[string]bool{"16384": true, "16384_init": true, "16384_fsm": true, "16390": true}
	for _, c := range []struct {
		name  string
		dbDir bool
		want  bool
	}{
		{"pgsql_tmp", false, true},
		{"pgsql_tmp123.0", true, true},
		{"postmaster.pid", false, true},
		{"postmaster.opts", false, true},
		{"backup_label", false, true},
		{"tablespace_map", false, true},
		{"backup_manifest", false, true},
		{"postgresql.auto.conf.tmp", false, true},
		{"postgresql.auto.conf", false, false},
		{"pg_internal.init", true, true},
		{"pg_internal.init.1234", true, true},
		{"16384", true, true},
		{"16384.1", true, true},
		{"16384_fsm", true, true},
		{"16384_init", true, false},
		{"16384", false, false},
		{"16390", true, false},
		{"t3_16400", true, true},
		{"t3_16400_fsm", true, true},
		{"t3_16400.2", true, true},
		{"t3_16400", false, false},
		{"PG_VERSION", true, false},
	} {
		if got := excluded(c.name, c.dbDir, sib); got != c.want {
			t.Errorf("excluded(%q, %v) = %v, want %v", c.name, c.dbDir, got, c.want)
		}
	}
	for _, c := range []struct {
		dir  string
		want bool
	}{
		{"base/5", true}, {"base", false}, {"global", false}, {"base/5/x", false},
		{"pg_tblspc/16385/PG_15_202209061/5", true}, {"PG_15_202209061/16384", true}, {"pg_tblspc/16385", false},
	} {
		if got := isDBDir(c.dir, "PG_15_202209061"); got != c.want {
			t.Errorf("isDBDir(%q) = %v", c.dir, got)
		}
	}
}

// TestCreateTargetSymlinkSwap swaps a symbolic link to outside the root in
// for a parent directory after the target was resolved: creating the
// target must refuse with 42501 and write nothing outside.
func TestCreateTargetSymlinkSwap(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	must(t, os.MkdirAll(root, 0o700))
	must(t, os.MkdirAll(outside, 0o700))
	r, err := resolve(root, "a/b")
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.Symlink(outside, filepath.Join(root, "a")))
	td, err := createTarget(r)
	if err == nil {
		td.close()
	}
	wantCode(t, err, pgerr.InsufficientPrivilege)
	if !errors.Is(err, ErrOutsideRoot) {
		t.Fatalf("error %v does not wrap ErrOutsideRoot", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("created %v outside the root", entries)
	}
}
