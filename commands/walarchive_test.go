package commands_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/walarchive"
)

// fakeArchiver records what the commands ask of it.
type fakeArchiver struct {
	started  []walarchive.Options
	opts     walarchive.Options // of the running archive
	running  bool
	stopped  []bool // dropSlot of each Stop
	paused   []bool
	status   *walarchive.Status
	segments []walarchive.SegmentInfo
	check    walarchive.CheckResult
	err      error // returned by every call
}

func (f *fakeArchiver) Start(_ context.Context, o walarchive.Options) error {
	f.started = append(f.started, o)
	if f.err != nil {
		return f.err
	}
	f.opts, f.running = o, true
	return nil
}

func (f *fakeArchiver) Stop(_ context.Context, dropSlot bool) error {
	f.stopped = append(f.stopped, dropSlot)
	return f.err
}

func (f *fakeArchiver) Alter(_ context.Context, change func(*walarchive.Options) error) error {
	if f.err != nil {
		return f.err
	}
	o := f.opts
	if err := change(&o); err != nil {
		return err
	}
	f.opts = o
	return nil
}

func (f *fakeArchiver) SetPaused(paused bool) error {
	f.paused = append(f.paused, paused)
	return f.err
}

func (f *fakeArchiver) Status() (walarchive.Status, bool) {
	if f.status == nil {
		return walarchive.Status{State: walarchive.Stopped}, false
	}
	return *f.status, true
}

func (f *fakeArchiver) Segments() ([]walarchive.SegmentInfo, error) { return f.segments, f.err }

func (f *fakeArchiver) Check(context.Context) (walarchive.CheckResult, error) { return f.check, f.err }

// walConn is a commands.Conn whose server knows the current role's
// attributes and reads intervals and sizes from a table.
type walConn struct {
	t           *testing.T
	replication bool // superuser or REPLICATION
	monitor     bool // member of pg_monitor
	values      map[string]string
	serverErr   *commands.ServerError
	notices     []string
	queries     []string
}

func (f *walConn) Exec(sql string, args ...*string) (*commands.Result, error) {
	f.queries = append(f.queries, sql)
	row := func(v string) *commands.Result {
		return &commands.Result{Tag: "SELECT 1", Rows: [][][]byte{{[]byte(v)}}}
	}
	switch {
	case strings.Contains(sql, "rolsuper OR rolreplication"):
		ok := f.replication || f.monitor && strings.Contains(sql, "'pg_monitor', 'MEMBER'")
		return row(map[bool]string{true: "t", false: "f"}[ok]), nil
	case strings.Contains(sql, "::pg_catalog.interval"), strings.Contains(sql, "pg_size_bytes($1)"):
		if len(args) != 1 || args[0] == nil {
			f.t.Fatalf("%q: args %v", sql, args)
		}
		if f.serverErr != nil {
			return nil, f.serverErr
		}
		v, ok := f.values[*args[0]]
		if !ok {
			f.t.Fatalf("%q: no value for %q", sql, *args[0])
		}
		return row(v), nil
	}
	f.t.Errorf("unexpected query %q", sql)
	return nil, errors.New("unexpected query")
}

func (f *walConn) ExecBatch([]string) (int, error) { return 0, errors.New("unexpected batch") }
func (f *walConn) Notice(severity, message, _ string) {
	f.notices = append(f.notices, severity+": "+message)
}
func (f *walConn) User() string     { return "alice" }
func (f *walConn) Database() string { return "app" }

type walFixture struct {
	root string
	a    *fakeArchiver
	reg  *commands.Registry
}

func newWALFixture(t *testing.T) *walFixture {
	f := &walFixture{root: t.TempDir(), a: &fakeArchiver{}, reg: commands.NewRegistry()}
	for _, c := range commands.WALArchiveCommands(f.root, f.a) {
		f.reg.Register(c)
	}
	return f
}

// prepare finds sql's command as the proxy does and parses it.
func (f *walFixture) prepare(t *testing.T, sql string) commands.Prepared {
	t.Helper()
	stmts, found := f.reg.Match(sql)
	if !found || len(stmts) != 1 {
		t.Fatalf("Match(%q): %v %+v", sql, found, stmts)
	}
	prep, err := stmts[0].Command.Parse(stmts[0].SQL)
	if err != nil {
		t.Fatalf("Parse(%q): %v", sql, err)
	}
	return prep
}

func (f *walFixture) run(t *testing.T, c commands.Conn, sql string) (*commands.Outcome, error) {
	t.Helper()
	return f.prepare(t, sql).Execute(context.Background(), c)
}

func wantPgCode(t *testing.T, err error, code pgerr.Code) *pgerr.Error {
	t.Helper()
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("error %v, want SQLSTATE %s", err, code)
	}
	return pe
}

// TestWALArchiveRecognised: the registry finds each WAL ARCHIVE command
// beside the commands sharing its first word, and leaves the server's
// own SHOW, ALTER and START statements to the server.
func TestWALArchiveRecognised(t *testing.T) {
	f := newWALFixture(t)
	f.reg.Register(commands.NewAlterExtension(nil))
	for _, s := range commands.ShowCommands(nil) {
		f.reg.Register(s)
	}
	for sql, want := range map[string]string{
		"START WAL ARCHIVE TO 'w'":                  "START WAL ARCHIVE",
		"stop wal archive drop slot":                "STOP WAL ARCHIVE",
		"Alter Wal Archive PAUSE":                   "ALTER WAL ARCHIVE",
		"ALTER WAL ARCHIVE SET (synchronous on)":    "ALTER WAL ARCHIVE",
		"SHOW WAL ARCHIVE":                          "SHOW WAL ARCHIVE",
		"SHOW WAL ARCHIVE SEGMENTS":                 "SHOW WAL ARCHIVE",
		"CHECK /* now */ WAL ARCHIVE":               "CHECK WAL ARCHIVE",
		"ALTER EXTENSION hstore UPDATE":             "ALTER EXTENSION",
		"SHOW AVAILABLE EXTENSIONS":                 "SHOW AVAILABLE EXTENSIONS",
		"SHOW wal_level":                            "",
		"SHOW wal_segment_size":                     "",
		"SHOW wal":                                  "",
		"SHOW ALL":                                  "",
		"ALTER SYSTEM SET wal_level = 'logical'":    "",
		"ALTER SYSTEM RESET archive_command":        "",
		"ALTER TABLE wal ADD COLUMN archive int":    "",
		"START TRANSACTION":                         "",
		`START "wal" ARCHIVE TO 'w'`:                "",
		"SELECT 'START WAL ARCHIVE TO ''w'''":       "",
		"CREATE TABLE t (a int CHECK (a > 0))":      "",
		"EXPLAIN SHOW WAL ARCHIVE":                  "",
		"SELECT * FROM wal_archive WHERE start > 1": "",
	} {
		stmts, found := f.reg.Match(sql)
		got := ""
		if found && stmts[0].Command != nil {
			got = stmts[0].Command.Name()
		}
		if got != want {
			t.Errorf("Match(%q): %q, want %q", sql, got, want)
		}
	}
}

// TestWALArchiveStandalone: what acts on the archive is standalone (the
// proxy refuses it with 25001 in a transaction block or a multi-statement
// query), what only reads it is not.
func TestWALArchiveStandalone(t *testing.T) {
	f := newWALFixture(t)
	for sql, standalone := range map[string]bool{
		"START WAL ARCHIVE TO 'w'":                 true,
		"STOP WAL ARCHIVE":                         true,
		"ALTER WAL ARCHIVE SET (slot 'x')":         true,
		"ALTER WAL ARCHIVE PAUSE":                  true,
		"CHECK WAL ARCHIVE":                        true,
		"SHOW WAL ARCHIVE":                         false,
		"SHOW WAL ARCHIVE SEGMENTS":                false,
		"ALTER WAL ARCHIVE RESUME":                 true,
		"STOP WAL ARCHIVE DROP SLOT":               true,
		"START WAL ARCHIVE TO 'w' WITH (slot 'a')": true,
	} {
		prep := f.prepare(t, sql)
		if _, ok := prep.(commands.Standalone); ok != standalone {
			t.Errorf("%s: standalone %v, want %v", sql, ok, standalone)
		}
		if standalone {
			n, ok := prep.(interface{ CommandName() string })
			if !ok || !strings.HasSuffix(n.CommandName(), "WAL ARCHIVE") {
				t.Errorf("%s: no command name for the 25001 message", sql)
			}
		}
	}
}

func TestStartWALArchive(t *testing.T) {
	f := newWALFixture(t)
	c := &walConn{t: t, replication: true, values: map[string]string{"7 days": "604800.000000", "10GB": "10737418240"}}
	out, err := f.run(t, c, "START WAL ARCHIVE TO 'archive/main'")
	if err != nil {
		t.Fatal(err)
	}
	if out.Tag != "START WAL ARCHIVE" || out.Rows != nil {
		t.Fatalf("outcome %+v", out)
	}
	want := walarchive.Options{Dir: filepath.Join(f.root, "archive/main"), Slot: "pgverbs", CreateSlot: true,
		ApplicationName: "pgverbs", Synchronous: true, User: "alice"}
	if !reflect.DeepEqual(f.a.started, []walarchive.Options{want}) {
		t.Fatalf("Start got %+v, want %+v", f.a.started, want)
	}

	f.a.started = nil
	if _, err := f.run(t, c, `START WAL ARCHIVE TO 'w' WITH (slot 'arch', create_slot off, application_name 'Arch 1',
		synchronous off, compression zstd level 5, retention '7 days', max_size '10GB')`); err != nil {
		t.Fatal(err)
	}
	want = walarchive.Options{Dir: filepath.Join(f.root, "w"), Slot: "arch", ApplicationName: "Arch 1",
		Compression: walarchive.Zstd, Level: 5, Retention: 7 * 24 * time.Hour, MaxSize: 10 << 30, User: "alice"}
	if !reflect.DeepEqual(f.a.started, []walarchive.Options{want}) {
		t.Fatalf("Start got %+v, want %+v", f.a.started, want)
	}

	// A storage URL: the local staging directory below the root, the URL
	// for the archiver to resolve and upload to.
	f.a.started = nil
	if _, err := f.run(t, c, "START WAL ARCHIVE TO 'storage://offsite/db1/wal/'"); err != nil {
		t.Fatal(err)
	}
	want = walarchive.Options{Dir: filepath.Join(f.root, ".pgverbs-wal/offsite/db1/wal"), Slot: "pgverbs", CreateSlot: true,
		ApplicationName: "pgverbs", Synchronous: true, User: "alice", Storage: "storage://offsite/db1/wal/"}
	if !reflect.DeepEqual(f.a.started, []walarchive.Options{want}) {
		t.Fatalf("Start got %+v, want %+v", f.a.started, want)
	}
	f.a.started = nil
	for url, code := range map[string]pgerr.Code{
		"storage://offsite":        pgerr.InvalidParameterValue,
		"storage://offsite/":       pgerr.InvalidParameterValue,
		"storage:///wal":           pgerr.InvalidParameterValue,
		"storage://offsite/a/../b": pgerr.InsufficientPrivilege,
		"storage://offsite/a//b":   pgerr.InsufficientPrivilege,
		"storage://offsite/./wal":  pgerr.InsufficientPrivilege,
		"storage://offsite/a\\b":   pgerr.InsufficientPrivilege,
	} {
		_, err := f.run(t, c, "START WAL ARCHIVE TO '"+url+"'")
		wantPgCode(t, err, code)
	}
	if len(f.a.started) != 0 {
		t.Fatalf("refused storage URLs reached the archiver: %+v", f.a.started)
	}

	// The archiver's own refusal (a second START) reaches the client.
	f.a.err = pgerr.New(pgerr.ObjectInUse, "a WAL archive is already running")
	_, err = f.run(t, c, "START WAL ARCHIVE TO 'w'")
	wantPgCode(t, err, pgerr.ObjectInUse)
}

// TestStartWALArchiveDirectory: the directory is resolved inside the
// backup root as BASE BACKUP's target is, except that it may exist and
// hold files; escapes never reach the archiver.
func TestStartWALArchiveDirectory(t *testing.T) {
	f := newWALFixture(t)
	c := &walConn{t: t, replication: true}
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(f.root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.root, "used"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, "used", "000000010000000000000001"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.root, "backup"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, "backup", ".pgverbs-backup-in-progress"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		code pgerr.Code
	}{
		{"../escape", pgerr.InsufficientPrivilege},
		{"a/../../escape", pgerr.InsufficientPrivilege},
		{outside, pgerr.InsufficientPrivilege},
		{"link/wal", pgerr.InsufficientPrivilege},
		{".", pgerr.InvalidParameterValue},
		{f.root, pgerr.InvalidParameterValue},
		{"", pgerr.InvalidParameterValue},
		{"backup", pgerr.ObjectInUse},
		{"backup/wal", pgerr.ObjectInUse},
	} {
		_, err := f.run(t, c, "START WAL ARCHIVE TO '"+tc.dir+"'")
		e := wantPgCode(t, err, tc.code)
		if tc.code == pgerr.InsufficientPrivilege && !strings.Contains(e.Message, "outside the backup root") &&
			!strings.Contains(e.Message, "symbolic link") {
			t.Errorf("%q: %v", tc.dir, e)
		}
	}
	if len(f.a.started) != 0 {
		t.Fatalf("refused directories reached the archiver: %+v", f.a.started)
	}
	if err := os.MkdirAll(filepath.Join(f.root, "real"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(f.root, "inside")); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]string{"used": "used", filepath.Join(f.root, "abs"): "abs", "x/./y/": "x/y", "inside/wal": "real/wal"} {
		f.a.started = nil
		if _, err := f.run(t, c, "START WAL ARCHIVE TO '"+dir+"'"); err != nil {
			t.Fatalf("%q: %v", dir, err)
		}
		if got := f.a.started[0].Dir; got != filepath.Join(f.root, want) {
			t.Errorf("%q: Dir %q", dir, got)
		}
	}
}

// TestStartWALArchiveLinkedRoot: a backup root that is a symbolic link
// (/var/backups on another disk, say) names the directory as configured,
// so that it is inside the root for the archiver's own check too.
func TestStartWALArchiveLinkedRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Symlink(t.TempDir(), root); err != nil {
		t.Fatal(err)
	}
	a := &fakeArchiver{}
	f := &walFixture{root: root, a: a, reg: commands.NewRegistry()}
	for _, c := range commands.WALArchiveCommands(root, a) {
		f.reg.Register(c)
	}
	if _, err := f.run(t, &walConn{t: t, replication: true}, "START WAL ARCHIVE TO 'w'"); err != nil {
		t.Fatal(err)
	}
	if got := a.started[0].Dir; got != filepath.Join(root, "w") {
		t.Fatalf("Dir %q, want %q", got, filepath.Join(root, "w"))
	}
	_, err := f.run(t, &walConn{t: t, replication: true}, "START WAL ARCHIVE TO '../w'")
	wantPgCode(t, err, pgerr.InsufficientPrivilege)
}

// TestWALArchiveRefusals: without an archiver or a root every command
// fails with 55000 and a hint; a role without REPLICATION gets 42501
// before anything happens.
func TestWALArchiveRefusals(t *testing.T) {
	all := []string{"START WAL ARCHIVE TO 'w'", "STOP WAL ARCHIVE", "ALTER WAL ARCHIVE SET (synchronous on)",
		"ALTER WAL ARCHIVE PAUSE", "ALTER WAL ARCHIVE RESUME", "CHECK WAL ARCHIVE", "SHOW WAL ARCHIVE", "SHOW WAL ARCHIVE SEGMENTS"}
	for _, setup := range []struct {
		name string
		root string
		a    walarchive.Archiver
	}{{"no archiver", t.TempDir(), nil}, {"no root", "", &fakeArchiver{}}} {
		reg := commands.NewRegistry()
		for _, c := range commands.WALArchiveCommands(setup.root, setup.a) {
			reg.Register(c)
		}
		f := &walFixture{reg: reg}
		for _, sql := range all {
			_, err := f.run(t, &walConn{t: t, replication: true}, sql)
			if e := wantPgCode(t, err, pgerr.ObjectNotInPrerequisiteState); !strings.Contains(e.Hint, "backup-root") {
				t.Errorf("%s, %s: hint %q", setup.name, sql, e.Hint)
			}
		}
	}

	f := newWALFixture(t)
	f.a.status = &walarchive.Status{State: walarchive.Streaming}
	plain := &walConn{t: t}
	for _, sql := range all {
		_, err := f.run(t, plain, sql)
		if e := wantPgCode(t, err, pgerr.InsufficientPrivilege); !strings.Contains(e.Message, "permission denied to run") {
			t.Errorf("%s: %v", sql, e)
		}
	}
	if f.a.started != nil || f.a.stopped != nil || f.a.paused != nil {
		t.Fatalf("refused commands reached the archiver: %+v", f.a)
	}
	// pg_monitor may look, not act.
	monitor := &walConn{t: t, monitor: true}
	for _, sql := range all {
		_, err := f.run(t, monitor, sql)
		if strings.HasPrefix(sql, "SHOW") {
			if err != nil {
				t.Errorf("%s as pg_monitor: %v", sql, err)
			}
		} else {
			wantPgCode(t, err, pgerr.InsufficientPrivilege)
		}
	}
}

// TestWALArchiveServerParses: RETENTION and MAX_SIZE are the server's to
// read; its error reaches the client unchanged, and values the archive
// cannot use are refused.
func TestWALArchiveServerParses(t *testing.T) {
	f := newWALFixture(t)
	c := &walConn{t: t, replication: true, values: map[string]string{"-1 day": "-86400.000000", "1000 years": "31557600000.000000", "-1": "-1"}}
	for _, sql := range []string{
		"START WAL ARCHIVE TO 'w' WITH (RETENTION '-1 day')",
		"START WAL ARCHIVE TO 'w' WITH (RETENTION '1000 years')",
		"ALTER WAL ARCHIVE SET (MAX_SIZE '-1')",
	} {
		_, err := f.run(t, c, sql)
		wantPgCode(t, err, pgerr.InvalidParameterValue)
	}
	se := &commands.ServerError{Code: pgerr.InvalidDatetimeFormat, Message: `invalid input syntax for type interval: "soon"`}
	c.serverErr = se
	_, err := f.run(t, c, "START WAL ARCHIVE TO 'w' WITH (RETENTION 'soon')")
	if !errors.Is(err, se) {
		t.Fatalf("error %v, want the server's", err)
	}
	if len(f.a.started) != 0 {
		t.Fatalf("bad values reached the archiver: %+v", f.a.started)
	}
}

func TestAlterStopWALArchive(t *testing.T) {
	f := newWALFixture(t)
	c := &walConn{t: t, replication: true, values: map[string]string{"1 day": "86400", "1 GB": "1073741824"}}
	f.a.opts = walarchive.Options{Dir: "/d", Slot: "s", CreateSlot: true, ApplicationName: "a", Synchronous: true,
		Compression: walarchive.Zstd, Level: 3, MaxSize: 5}
	out, err := f.run(t, c, "ALTER WAL ARCHIVE SET (synchronous off, retention '1 day', max_size '1 GB', compression none)")
	if err != nil || out.Tag != "ALTER WAL ARCHIVE" {
		t.Fatalf("%+v, %v", out, err)
	}
	want := walarchive.Options{Dir: "/d", Slot: "s", CreateSlot: true, ApplicationName: "a",
		Compression: walarchive.NoCompression, Retention: 24 * time.Hour, MaxSize: 1 << 30}
	if f.a.opts != want {
		t.Fatalf("options %+v, want %+v", f.a.opts, want)
	}
	for _, sql := range []string{"ALTER WAL ARCHIVE PAUSE", "alter wal archive resume"} {
		if out, err := f.run(t, c, sql); err != nil || out.Tag != "ALTER WAL ARCHIVE" {
			t.Fatalf("%s: %+v, %v", sql, out, err)
		}
	}
	if !reflect.DeepEqual(f.a.paused, []bool{true, false}) {
		t.Fatalf("SetPaused calls %v", f.a.paused)
	}
	for _, sql := range []string{"STOP WAL ARCHIVE", "STOP WAL ARCHIVE DROP SLOT"} {
		if out, err := f.run(t, c, sql); err != nil || out.Tag != "STOP WAL ARCHIVE" {
			t.Fatalf("%s: %+v, %v", sql, out, err)
		}
	}
	if !reflect.DeepEqual(f.a.stopped, []bool{false, true}) {
		t.Fatalf("Stop calls %v", f.a.stopped)
	}
	f.a.err = pgerr.New(pgerr.ObjectNotInPrerequisiteState, "no WAL archive is running")
	_, err = f.run(t, c, "STOP WAL ARCHIVE")
	wantPgCode(t, err, pgerr.ObjectNotInPrerequisiteState)
}

// rowText renders a row as a|b|NULL.
func rowText(r []*string) string {
	vals := make([]string, len(r))
	for i, v := range r {
		vals[i] = "NULL"
		if v != nil {
			vals[i] = *v
		}
	}
	return strings.Join(vals, "|")
}

func columnNames(p commands.Prepared) string {
	var names []string
	for _, c := range p.Columns() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}

func TestShowWALArchive(t *testing.T) {
	f := newWALFixture(t)
	c := &walConn{t: t, replication: true}
	prep := f.prepare(t, "SHOW WAL ARCHIVE")
	if got := columnNames(prep); got != "state,upstream,slot,application_name,timeline,received_lsn,flushed_lsn,upstream_flush_lsn,"+
		"lag_bytes,lag_seconds,segments,bytes,oldest_segment,newest_segment,synchronous,last_error,last_error_sqlstate,"+
		"storage,upload_pending_files,upload_pending_bytes,upload_oldest_pending,upload_oldest_pending_seconds,upload_last_error" {
		t.Fatalf("columns %s", got)
	}
	out, err := prep.Execute(context.Background(), c)
	if err != nil || out.Tag != "SHOW" || len(out.Rows) != 1 {
		t.Fatalf("%+v, %v", out, err)
	}
	if got := rowText(out.Rows[0]); got != "stopped"+strings.Repeat("|NULL", 22) {
		t.Fatalf("never started: %s", got)
	}

	f.a.status = &walarchive.Status{State: walarchive.Reconnecting, Upstream: "db:5432", Slot: "pgverbs", ApplicationName: "pgverbs",
		Timeline: 2, Received: 0x1_0300_0060, Flushed: 0x1_0300_0000, UpstreamFlush: 0x1_0400_0000, LagBytes: 0xffff00, LagSeconds: 1.25,
		Segments: 3, Bytes: 3 << 24, Oldest: "000000020000000100000001", Newest: "000000020000000100000003.partial",
		Synchronous: true, LastError: "could not write: no space left on device", LastErrorCode: "53100"}
	out, err = prep.Execute(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	want := "reconnecting|db:5432|pgverbs|pgverbs|2|1/3000060|1/3000000|1/4000000|16776960|1.250|3|50331648|" +
		"000000020000000100000001|000000020000000100000003.partial|t|could not write: no space left on device|53100" +
		"|NULL|NULL|NULL|NULL|NULL|NULL"
	if got := rowText(out.Rows[0]); got != want {
		t.Fatalf("row\n  %s\nwant\n  %s", got, want)
	}
	// Nothing received yet: NULL positions, not 0/0.
	f.a.status = &walarchive.Status{State: walarchive.Streaming}
	out, _ = prep.Execute(context.Background(), c)
	if got := rowText(out.Rows[0]); got != "streaming|NULL|NULL|NULL|NULL|NULL|NULL|NULL|0|0.000|0|0|NULL|NULL|f|NULL|NULL"+strings.Repeat("|NULL", 6) {
		t.Fatalf("fresh archive: %s", got)
	}
	// An archive uploading to object storage: its lag, and the last
	// upload error.
	f.a.status = &walarchive.Status{State: walarchive.Streaming, Upload: walarchive.UploadStatus{
		Storage: "storage://offsite/wal", Known: true, PendingFiles: 2, PendingBytes: 32 << 20,
		OldestPending: "000000010000000000000005", OldestPendingSeconds: 12.5, LastError: "could not write to object storage"}}
	out, _ = prep.Execute(context.Background(), c)
	if got := rowText(out.Rows[0]); !strings.HasSuffix(got, "|storage://offsite/wal|2|33554432|000000010000000000000005|12.500|could not write to object storage") {
		t.Fatalf("storage archive: %s", got)
	}
	f.a.status.Upload = walarchive.UploadStatus{Storage: "storage://offsite/wal"}
	out, _ = prep.Execute(context.Background(), c)
	if got := rowText(out.Rows[0]); !strings.HasSuffix(got, "|storage://offsite/wal|0|0|NULL|NULL|NULL") {
		t.Fatalf("storage archive caught up: %s", got)
	}
}

func TestShowWALArchiveSegments(t *testing.T) {
	f := newWALFixture(t)
	c := &walConn{t: t, replication: true}
	done := time.Date(2026, 12, 3, 15, 4, 5, 0, time.FixedZone("CET", 3600))
	f.a.segments = []walarchive.SegmentInfo{
		{Name: "00000002.history", Timeline: 2, State: walarchive.SegHistory, Bytes: 42, CompletedAt: done},
		{Name: "000000010000000000000001.zst", Timeline: 1, Start: 0x1000000, End: 0x2000000, State: walarchive.SegCompressed, Bytes: 1234, CompletedAt: done},
		{Name: "000000020000000000000002.partial", Timeline: 2, Start: 0x2000000, End: 0x3000000, State: walarchive.SegPartial, Bytes: 16 << 20},
	}
	prep := f.prepare(t, "SHOW WAL ARCHIVE SEGMENTS")
	if got := columnNames(prep); got != "name,timeline,start_lsn,end_lsn,state,bytes,completed_at" {
		t.Fatalf("columns %s", got)
	}
	out, err := prep.Execute(context.Background(), c)
	if err != nil || out.Tag != "SHOW" {
		t.Fatalf("%+v, %v", out, err)
	}
	var got []string
	for _, r := range out.Rows {
		got = append(got, rowText(r))
	}
	want := []string{
		"00000002.history|2|NULL|NULL|history|42|2026-12-03 14:04:05+00",
		"000000010000000000000001.zst|1|0/1000000|0/2000000|compressed|1234|2026-12-03 14:04:05+00",
		"000000020000000000000002.partial|2|0/2000000|0/3000000|partial|16777216|NULL",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rows\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	f.a.err = pgerr.New(pgerr.ObjectNotInPrerequisiteState, "no WAL archive is running")
	_, err = prep.Execute(context.Background(), c)
	wantPgCode(t, err, pgerr.ObjectNotInPrerequisiteState)
}

// TestCheckWALArchive: a failed check is a row with ok false and a
// WARNING, so that scripts read the result and people see it.
func TestCheckWALArchive(t *testing.T) {
	f := newWALFixture(t)
	c := &walConn{t: t, replication: true}
	prep := f.prepare(t, "CHECK WAL ARCHIVE")
	if got := columnNames(prep); got != "ok,checked,problem,segments,pages,from_lsn,to_lsn" {
		t.Fatalf("columns %s", got)
	}
	f.a.check = walarchive.CheckResult{OK: true, Checked: "2 segments", Segments: 2, Pages: 4096, From: 0x1000000, To: 0x3000000}
	out, err := prep.Execute(context.Background(), c)
	if err != nil || out.Tag != "CHECK WAL ARCHIVE" || len(out.Rows) != 1 {
		t.Fatalf("%+v, %v", out, err)
	}
	if got := rowText(out.Rows[0]); got != "t|2 segments|NULL|2|4096|0/1000000|0/3000000" || len(c.notices) != 0 {
		t.Fatalf("row %s, notices %v", got, c.notices)
	}
	f.a.check = walarchive.CheckResult{Problem: "gap before 000000010000000000000003", Segments: 1, Pages: 2048, From: 0x1000000, To: 0x2000000}
	out, err = prep.Execute(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if got := rowText(out.Rows[0]); got != "f|NULL|gap before 000000010000000000000003|1|2048|0/1000000|0/2000000" {
		t.Fatalf("row %s", got)
	}
	if !reflect.DeepEqual(c.notices, []string{"WARNING: WAL archive check failed: gap before 000000010000000000000003"}) {
		t.Fatalf("notices %v", c.notices)
	}
	f.a.check = walarchive.CheckResult{OK: true, Checked: "an empty archive"}
	out, _ = prep.Execute(context.Background(), c)
	if got := rowText(out.Rows[0]); got != "t|an empty archive|NULL|0|0|NULL|NULL" {
		t.Fatalf("empty archive: %s", got)
	}
}
