package backup

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// source is the cluster every backup test copies, created once.
type source struct {
	c       *pgtest.Cluster
	spcDir  string // location of tablespace spc
	spcOID  string
	dbOID   string
	unlog   string // relation path of the unlogged table's main fork
	tblData string // count and checksum of table t, as text
	spcData string // the same for table ts (in the tablespace)
}

var (
	srcOnce sync.Once
	src     *source
	srcErr  error
	srcSkip bool
)

func TestMain(m *testing.M) {
	code := m.Run()
	if src != nil {
		src.c.Stop()
		os.RemoveAll(src.spcDir)
	}
	os.Exit(code)
}

// getSource starts the shared cluster: data checksums, a table, an
// unlogged table, a tablespace with a table, and planted files that a
// backup must leave out.
func getSource(t *testing.T) *source {
	t.Helper()
	srcOnce.Do(func() {
		if _, err := pgtest.BinDir(); err != nil {
			if os.Getenv("PGTEST_REQUIRE") == "1" {
				srcErr = err
			} else {
				srcSkip, srcErr = true, err
			}
			return
		}
		src, srcErr = newSource()
	})
	if srcSkip {
		t.Skipf("PostgreSQL not available: %v", srcErr)
	}
	if srcErr != nil {
		t.Fatal(srcErr)
	}
	return src
}

func newSource() (*source, error) {
	c, err := pgtest.New(pgtest.Options{InitDBArgs: []string{"--data-checksums"}})
	if err != nil {
		return nil, err
	}
	s := &source{c: c}
	fail := func(err error) (*source, error) {
		c.Stop()
		return nil, err
	}
	// The tablespace directory must be reachable by the server's user.
	s.spcDir, err = pgtest.ServerDir()
	if err != nil {
		return fail(err)
	}
	fail = func(err error) (*source, error) {
		c.Stop()
		os.RemoveAll(s.spcDir)
		return nil, err
	}
	ctx := context.Background()
	for _, sql := range []string{
		`CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g`,
		`CREATE UNLOGGED TABLE u AS SELECT g AS id FROM generate_series(1, 1000) g`,
		`CREATE TABLESPACE spc LOCATION '` + s.spcDir + `'`,
		`CREATE TABLE ts TABLESPACE spc AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g`,
		`CHECKPOINT`,
	} {
		if err := c.Exec(ctx, sql); err != nil {
			return fail(err)
		}
	}
	q := func(sql string) string {
		v, err := queryOne(ctx, c.SuperURL(), sql)
		if err != nil && srcErr == nil {
			srcErr = err
		}
		return v
	}
	s.spcOID = q(`SELECT oid FROM pg_tablespace WHERE spcname = 'spc'`)
	s.dbOID = q(`SELECT oid FROM pg_database WHERE datname = 'postgres'`)
	s.unlog = q(`SELECT pg_relation_filepath('u')`)
	s.tblData = q(tableSum("t"))
	s.spcData = q(tableSum("ts"))
	if srcErr != nil {
		return fail(srcErr)
	}
	// Files a backup must leave out.
	for _, p := range []string{
		"base/pgsql_tmp/pgsql_tmp123.0",
		"pg_replslot/planted",
		"pg_stat_tmp/planted.tmp",
		"postgresql.auto.conf.tmp",
		"base/" + s.dbOID + "/t3_999999",
		"base/" + s.dbOID + "/pgsql_tmp_planted",
	} {
		if err := writeOwned(filepath.Join(c.DataDir, p), c.DataDir); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

// excludedPaths are the files newSource planted, relative to the data
// directory, plus other excluded files the server has.
func (s *source) excludedPaths() []string {
	return []string{
		"base/pgsql_tmp", "pg_replslot/planted", "pg_stat_tmp/planted.tmp", "postgresql.auto.conf.tmp",
		"base/" + s.dbOID + "/t3_999999", "base/" + s.dbOID + "/pgsql_tmp_planted",
		"postmaster.pid", "postmaster.opts", s.unlog, "base/" + s.dbOID + "/pg_internal.init",
	}
}

func tableSum(table string) string {
	return "SELECT count(*)::text || ' ' || coalesce(sum(hashtext(v)), 0)::text FROM " + table
}

func queryOne(ctx context.Context, url, sql string) (string, error) {
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return "", err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return "", fmt.Errorf("%s: no single row", sql)
	}
	return string(res[0].Rows[0][0]), nil
}

// ownerOf returns the uid and gid of path.
func ownerOf(path string) (int, int, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return os.Getuid(), os.Getgid(), nil
	}
	return int(st.Uid), int(st.Gid), nil
}

func writeOwned(path, like string) error {
	uid, gid, err := ownerOf(like)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	_ = os.Lchown(filepath.Dir(path), uid, gid)
	if err := os.WriteFile(path, []byte("planted"), 0o600); err != nil {
		return err
	}
	return os.Lchown(path, uid, gid)
}

// connector is the Connect function for the cluster.
func connector(c *pgtest.Cluster) func(context.Context, bool) (*pgconn.PgConn, error) {
	return func(ctx context.Context, replication bool) (*pgconn.PgConn, error) {
		cfg, err := pgconn.ParseConfig(c.SuperURL())
		if err != nil {
			return nil, err
		}
		if replication {
			cfg.RuntimeParams["replication"] = "database"
		}
		return pgconn.ConnectConfig(ctx, cfg)
	}
}

// progressLog records the progress reports of a Run.
type progressLog struct {
	mu      sync.Mutex
	reports []Progress
}

func (p *progressLog) add(r Progress) {
	p.mu.Lock()
	p.reports = append(p.reports, r)
	p.mu.Unlock()
}

func (p *progressLog) last() Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reports) == 0 {
		return Progress{}
	}
	return p.reports[len(p.reports)-1]
}

func baseOptions(s *source, root, target string) Options {
	return Options{
		Root:            root,
		Target:          target,
		Checkpoint:      FastCheckpoint,
		Manifest:        true,
		VerifyChecksums: true,
		Label:           "pgverbs test",
		Connect:         connector(s.c),
	}
}

func runBackup(t *testing.T, o Options) *Result {
	t.Helper()
	var log progressLog
	o.Progress = log.add
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if last := log.last(); last.Phase != "done" {
		t.Errorf("last progress report %+v, want phase done", last)
	}
	if _, err := os.Stat(filepath.Join(res.Path, markerName)); !os.IsNotExist(err) {
		t.Errorf("marker left behind: %v", err)
	}
	if res.StartLSN == 0 || res.EndLSN < res.StartLSN || res.Timeline != 1 || res.Files == 0 || res.Bytes == 0 || res.Duration <= 0 {
		t.Errorf("result %+v", res)
	}
	t.Logf("%s %s backup: %d files, %d bytes, %s..%s in %v, warnings %q", res.Method, res.Format, res.Files, res.Bytes, res.StartLSN, res.EndLSN, res.Duration, res.Warnings)
	return res
}

// verify runs pg_verifybackup on a plain backup directory.
func verify(t *testing.T, s *source, dir string, args ...string) {
	t.Helper()
	args = append(args, dir)
	out, err := exec.Command(s.c.Bin("pg_verifybackup"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_verifybackup %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// checkExcluded checks that the files a backup must leave out are absent
// from the data directory dir and that the unlogged table kept only its
// init fork.
func checkExcluded(t *testing.T, s *source, dir string) {
	t.Helper()
	for _, p := range s.excludedPaths() {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is in the backup (%v)", p, err)
		}
	}
	for _, p := range []string{"backup_label", "global/pg_control", "PG_VERSION", s.unlog + "_init", "pg_wal/archive_status", "pg_replslot", "pg_stat_tmp", "base/" + s.dbOID + "/PG_VERSION"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("%s is missing from the backup: %v", p, err)
		}
	}
	for _, d := range []string{"pg_replslot", "pg_stat_tmp"} {
		if entries, _ := os.ReadDir(filepath.Join(dir, d)); len(entries) != 0 {
			t.Errorf("%s is not empty", d)
		}
	}
}

// startOn copies a data directory where the server's user owns it, starts
// a postmaster on it and checks that it reaches consistency and serves the
// same data as the source.
func startOn(t *testing.T, s *source, dataDir string, fixup func(dir string)) {
	t.Helper()
	r := pgtest.StartCopy(t, dataDir, pgtest.Options{BinDir: s.c.BinDir, Password: s.c.Password,
		Settings: map[string]string{"max_wal_senders": "0", "wal_level": "minimal"}}, fixup)
	defer func() {
		if err := r.Stop(); err != nil {
			t.Errorf("stop the restored server: %v", err)
		}
	}()
	url := r.SuperURL()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct{ sql, want string }{
		{tableSum("t"), s.tblData},
		{tableSum("ts"), s.spcData},
		{"SELECT count(*)::text FROM u", "0"},
		{"SELECT pg_is_in_recovery()::text", "false"},
	} {
		got, err := queryOne(ctx, url, c.sql)
		if err != nil {
			t.Fatalf("%s on the restored server: %v\n%s", c.sql, err, r.ServerLog())
		}
		if got != c.want {
			t.Errorf("%s on the restored server = %q, want %q", c.sql, got, c.want)
		}
	}
	if log := r.ServerLog(); !strings.Contains(log, "consistent recovery state reached") {
		t.Errorf("the restored server did not report reaching consistency:\n%s", log)
	}
}

func TestPlainStream(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	res := runBackup(t, baseOptions(s, root, "nightly/plain"))
	if res.Path != filepath.Join(root, "nightly/plain") || res.Format != Plain || res.Method != Replication || !res.Manifest {
		t.Errorf("result %+v", res)
	}
	checkExcluded(t, s, res.Path)
	// Tablespace: a relative link to the copy inside the backup.
	link := filepath.Join(res.Path, "pg_tblspc", s.spcOID)
	if dest, err := os.Readlink(link); err != nil || dest != "../tablespaces/"+s.spcOID {
		t.Errorf("tablespace link -> %q, %v", dest, err)
	}
	if _, err := os.Stat(filepath.Join(res.Path, "tablespace_map")); !os.IsNotExist(err) {
		t.Errorf("plain backup has a tablespace_map: %v", err)
	}
	// Full, zero-padded segments, the complete ones marked done.
	segs, _ := filepath.Glob(filepath.Join(res.Path, "pg_wal", "0000000*"))
	if len(segs) == 0 {
		t.Fatal("no WAL in the backup")
	}
	for _, seg := range segs {
		if fi, err := os.Stat(seg); err != nil || fi.Size() != 16<<20 || fi.Mode().Perm() != 0o600 {
			t.Errorf("segment %s: %v %v", seg, fi, err)
		}
	}
	checkModes(t, res.Path)
	verify(t, s, res.Path, "-i", "tablespaces")
	startOn(t, s, res.Path, nil)
}

// TestTablespaceMap relocates the tablespace of plain backups, with both
// methods: pg_tblspc/OID links to the mapped directory by its absolute path,
// the target holds no tablespaces/ directory, pg_verifybackup passes without
// -i, and a server started on the backup reads the table in the tablespace.
func TestTablespaceMap(t *testing.T) {
	s := getSource(t)
	for _, m := range []Method{Replication, SQL} {
		root := t.TempDir()
		o := baseOptions(s, root, "data")
		o.Method = m
		o.TablespaceMap = map[string]string{s.spcDir + "/": "spc/moved"}
		res := runBackup(t, o)
		mapped := filepath.Join(root, "spc/moved")
		if dest, err := os.Readlink(filepath.Join(res.Path, "pg_tblspc", s.spcOID)); err != nil || dest != mapped {
			t.Errorf("method %v: tablespace link -> %q, %v; want %q", m, dest, err, mapped)
		}
		if _, err := os.Stat(filepath.Join(res.Path, "tablespaces")); !os.IsNotExist(err) {
			t.Errorf("method %v: tablespaces/ exists in the target: %v", m, err)
		}
		if _, err := os.Stat(filepath.Join(mapped, markerName)); !os.IsNotExist(err) {
			t.Errorf("method %v: marker left in the mapped directory: %v", m, err)
		}
		vdirs, _ := filepath.Glob(filepath.Join(mapped, "PG_*"))
		if len(vdirs) != 1 {
			t.Fatalf("method %v: mapped directory holds %v, want one version directory", m, vdirs)
		}
		checkModes(t, mapped)
		verify(t, s, res.Path)
		startOn(t, s, res.Path, func(dir string) {
			// The copy of the data directory still links to the mapped
			// directory, which the server's user cannot reach inside
			// the test's temporary root: give the copy its own.
			spc := filepath.Join(filepath.Dir(dir), "spc")
			if out, err := exec.Command("cp", "-a", mapped, spc).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			link := filepath.Join(dir, "pg_tblspc", s.spcOID)
			must(t, os.Remove(link))
			must(t, os.Symlink(spc, link))
		})
	}
}

// TestTablespaceMapRefused checks the mappings Run refuses, each before
// or during the backup, and that nothing is left behind.
func TestTablespaceMapRefused(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "full"), 0o700))
	must(t, os.WriteFile(filepath.Join(root, "full", "f"), nil, 0o600))
	for _, c := range []struct {
		name   string
		mod    func(o *Options)
		code   string
		substr string
	}{
		{"tar format", func(o *Options) { o.Format = Tar }, "22023", "only supported with the plain format"},
		{"relative old directory", func(o *Options) { o.TablespaceMap = map[string]string{"spc": "x"} }, "22023", "not an absolute path"},
		{"no such tablespace", func(o *Options) { o.TablespaceMap = map[string]string{"/nowhere": "x"} }, "22023", "not the location of any tablespace"},
		{"no such tablespace, sql", func(o *Options) { o.Method = SQL; o.TablespaceMap = map[string]string{"/nowhere": "x"} }, "22023", "not the location of any tablespace"},
		{"inside the target", func(o *Options) { o.TablespaceMap = map[string]string{s.spcDir: "t/spc"} }, "22023", "overlaps the backup target"},
		{"outside the root", func(o *Options) { o.TablespaceMap = map[string]string{s.spcDir: "../x"} }, "42501", ""},
		{"not empty", func(o *Options) { o.TablespaceMap = map[string]string{s.spcDir: "full"} }, "42P04", "already exists"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := baseOptions(s, root, "t")
			if o.TablespaceMap == nil {
				o.TablespaceMap = map[string]string{s.spcDir: "x"}
			}
			c.mod(&o)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := Run(ctx, o)
			var pe *pgerr.Error
			if !errors.As(err, &pe) || string(pe.Code) != c.code || !strings.Contains(pe.Message, c.substr) {
				t.Fatalf("Run = %v, want SQLSTATE %s with %q", err, c.code, c.substr)
			}
			for _, left := range []string{"t", "x"} {
				if _, err := os.Stat(filepath.Join(root, left)); !os.IsNotExist(err) {
					t.Errorf("%s left behind: %v", left, err)
				}
			}
			if _, err := os.Stat(filepath.Join(root, "full", "f")); err != nil {
				t.Errorf("the non-empty directory was touched: %v", err)
			}
		})
	}
}

// checkModes checks that the backup holds files 0600 and directories 0700.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
		case fi.IsDir() && fi.Mode().Perm() != 0o700, !fi.IsDir() && fi.Mode().Perm() != 0o600:
			t.Errorf("%s: mode %v", p, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTarZstdStream(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	o := baseOptions(s, root, "tar")
	o.Format, o.Compression, o.Level = Tar, Zstd, 3
	res := runBackup(t, o)
	var names []string
	entries, _ := os.ReadDir(res.Path)
	for _, e := range entries {
		names = append(names, e.Name())
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", e.Name(), fi.Mode())
		}
	}
	want := []string{s.spcOID + ".tar.zst", "backup_manifest", "base.tar.zst", "pg_wal.tar.zst"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("backup holds %v, want %v", names, want)
	}

	// Extract as a user would: base.tar into the data directory, pg_wal.tar
	// into its pg_wal, the tablespace anywhere (linked from pg_tblspc).
	ex := t.TempDir()
	data := filepath.Join(ex, "data")
	spc := filepath.Join(ex, "spc")
	must(t, os.Mkdir(data, 0o700))
	must(t, os.Mkdir(spc, 0o700))
	files := extractArchive(t, filepath.Join(res.Path, "base.tar.zst"), data)
	files += extractArchive(t, filepath.Join(res.Path, "pg_wal.tar.zst"), filepath.Join(data, "pg_wal"))
	files += extractArchive(t, filepath.Join(res.Path, s.spcOID+".tar.zst"), spc)
	if files != res.Files {
		t.Errorf("archives hold %d files, Result.Files = %d", files, res.Files)
	}
	must(t, os.Symlink(spc, filepath.Join(data, "pg_tblspc", s.spcOID)))
	copyFile(t, filepath.Join(res.Path, "backup_manifest"), filepath.Join(data, "backup_manifest"))
	tsMap, err := os.ReadFile(filepath.Join(data, "tablespace_map"))
	if err != nil || string(tsMap) != s.spcOID+" "+s.spcDir+"\n" {
		t.Errorf("tablespace_map = %q, %v", tsMap, err)
	}
	checkExcluded(t, s, data)
	verify(t, s, data)
	// Restore: point tablespace_map at the extracted tablespace.
	startOn(t, s, data, func(dir string) {
		must(t, os.Remove(filepath.Join(dir, "pg_tblspc", s.spcOID)))
		must(t, os.WriteFile(filepath.Join(dir, "tablespace_map"), []byte(s.spcOID+" "+filepath.Join(filepath.Dir(dir), "spc")+"\n"), 0o600))
		if out, err := exec.Command("cp", "-a", spc, filepath.Join(filepath.Dir(dir), "spc")).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
	})
}

// extractArchive extracts a tar file, compressed as its suffix says, into
// dir and returns the number of regular files.
func extractArchive(t *testing.T, archive, dir string) int {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var zr io.Reader
	switch filepath.Ext(archive) {
	case ".zst":
		d, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		zr = d
	case ".gz":
		d, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		zr = d
	case ".lz4":
		zr = lz4.NewReader(f)
	case ".tar":
		zr = f
	default:
		t.Fatalf("unknown archive type %s", archive)
	}
	tr := tar.NewReader(zr)
	files := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", archive, err)
		}
		p := filepath.Join(dir, hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			must(t, os.MkdirAll(p, 0o700))
		case tar.TypeReg:
			must(t, os.MkdirAll(filepath.Dir(p), 0o700))
			out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			must(t, out.Close())
			files++
		default:
			t.Fatalf("%s: unexpected entry %q type %q", archive, hdr.Name, hdr.Typeflag)
		}
	}
	// The two zero blocks pg_basebackup writes: nothing may follow them.
	if rest, _ := io.ReadAll(zr); len(rest) != 0 {
		for _, b := range rest {
			if b != 0 {
				t.Fatalf("%s: data after the end of the archive", archive)
			}
		}
	}
	return files
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(to, b, 0o600))
}

func TestSQLMethod(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	o := baseOptions(s, root, "sql")
	o.Method = SQL
	res := runBackup(t, o)
	if res.Method != SQL || !res.Manifest {
		t.Errorf("result %+v", res)
	}
	checkExcluded(t, s, res.Path)
	label, err := os.ReadFile(filepath.Join(res.Path, "backup_label"))
	if err != nil || !strings.Contains(string(label), "LABEL: pgverbs test\n") || !strings.Contains(string(label), "START WAL LOCATION: "+res.StartLSN.String()) {
		t.Errorf("backup_label %q, %v", label, err)
	}
	checkModes(t, res.Path)
	verify(t, s, res.Path, "-i", "tablespaces")
	startOn(t, s, res.Path, nil)
}

func TestSQLTarGzip(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	o := baseOptions(s, root, "sqltar")
	o.Method, o.Format, o.Compression = SQL, Tar, Gzip
	o.ManifestChecksums = "SHA256"
	res := runBackup(t, o)
	checkTar(t, s, res, ".tar.gz", true)
}

func TestReplicationTarFetch(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	o := baseOptions(s, root, "fetch")
	o.Format, o.WAL, o.Compression = Tar, WALFetch, LZ4
	o.ManifestChecksums = "SHA512"
	res := runBackup(t, o)
	checkTar(t, s, res, ".tar.lz4", false)
}

// checkTar extracts a tar-format backup and runs pg_verifybackup on it.
func checkTar(t *testing.T, s *source, res *Result, suffix string, walTar bool) {
	t.Helper()
	want := []string{s.spcOID + suffix, "backup_manifest", "base" + suffix}
	if walTar {
		want = append(want, "pg_wal"+suffix)
	}
	var names []string
	entries, _ := os.ReadDir(res.Path)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("backup holds %v, want %v", names, want)
	}
	data := filepath.Join(t.TempDir(), "data")
	spc := filepath.Join(filepath.Dir(data), "spc")
	must(t, os.Mkdir(data, 0o700))
	must(t, os.Mkdir(spc, 0o700))
	files := extractArchive(t, filepath.Join(res.Path, "base"+suffix), data)
	if walTar {
		files += extractArchive(t, filepath.Join(res.Path, "pg_wal"+suffix), filepath.Join(data, "pg_wal"))
	}
	files += extractArchive(t, filepath.Join(res.Path, s.spcOID+suffix), spc)
	if files != res.Files {
		t.Errorf("archives hold %d files, Result.Files = %d", files, res.Files)
	}
	must(t, os.Symlink(spc, filepath.Join(data, "pg_tblspc", s.spcOID)))
	copyFile(t, filepath.Join(res.Path, "backup_manifest"), filepath.Join(data, "backup_manifest"))
	checkExcluded(t, s, data)
	verify(t, s, data)
}

// TestCancel cancels slow backups midway and checks that nothing is left:
// no directory, no replication slot, no backup running on the server.
func TestCancel(t *testing.T) {
	s := getSource(t)
	for _, c := range []struct {
		name   string
		method Method
		format Format
	}{{"replication", Replication, Plain}, {"sql", SQL, Plain}, {"replication tar zstd", Replication, Tar}} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			o := baseOptions(s, root, "slow/backup")
			o.Method, o.Format = c.method, c.format
			if c.format == Tar {
				// The archive goes through its writer goroutine and
				// libzstd, which the cancel must stop and free.
				o.Compression = Zstd
			}
			o.MaxRate = 32 * 1024
			copying := make(chan struct{})
			var once sync.Once
			o.Progress = func(p Progress) {
				if p.Phase == "copying" && p.Bytes > 0 {
					once.Do(func() { close(copying) })
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := Run(ctx, o)
				done <- err
			}()
			select {
			case <-copying:
			case err := <-done:
				t.Fatalf("Run ended before it was canceled: %v", err)
			case <-time.After(30 * time.Second):
				t.Fatal("no progress within 30s")
			}
			if _, err := os.Stat(filepath.Join(root, "slow/backup", markerName)); err != nil {
				t.Errorf("marker while running: %v", err)
			}
			began := time.Now()
			cancel()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10s of the cancellation")
			}
			t.Logf("Run returned %v after %v", err, time.Since(began))
			wantCode(t, err, pgerr.QueryCanceled)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%v is not context.Canceled", err)
			}
			if entries, err := os.ReadDir(root); err != nil || len(entries) != 0 {
				t.Errorf("backup root after cancel: %v %v", entries, err)
			}
			checkServerClean(t, s)
		})
	}
}

// checkServerClean waits until the server has no replication slot, no
// WAL sender and no backup in progress, then runs a backup start/stop.
func checkServerClean(t *testing.T, s *source) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const q = `SELECT (SELECT count(*) FROM pg_replication_slots) || ' ' ||
		(SELECT count(*) FROM pg_stat_progress_basebackup) || ' ' ||
		(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' OR query LIKE '%pg_read_binary_file%' AND pid <> pg_backend_pid())`
	var got string
	for {
		var err error
		if got, err = queryOne(ctx, s.c.SuperURL(), q); err != nil {
			t.Fatal(err)
		}
		if got == "0 0 0" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("server still busy after cancel (slots, basebackups, senders): %s", got)
		case <-time.After(100 * time.Millisecond):
		}
	}
	conn, err := pgconn.Connect(ctx, s.c.SuperURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_backup_start('after cancel', true); SELECT pg_backup_stop(false)").ReadAll(); err != nil {
		t.Errorf("pg_backup_start/stop after cancel: %v", err)
	}
}

// TestConcurrentSameTarget runs two real backups to one directory.
func TestConcurrentSameTarget(t *testing.T) {
	s := getSource(t)
	root := t.TempDir()
	o := baseOptions(s, root, "same")
	o.MaxRate = 1 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	started := make(chan struct{})
	var once sync.Once
	o.Progress = func(Progress) { once.Do(func() { close(started) }) }
	go func() {
		_, err := Run(ctx, o)
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("first Run ended early: %v", err)
	}
	o2 := baseOptions(s, root, filepath.Join(root, "same"))
	_, err := Run(context.Background(), o2)
	wantCode(t, err, pgerr.ObjectInUse)
	cancel()
	<-done
}

// TestChecksumFailure corrupts a data page on disk of a cluster with data
// checksums: the replication method fails with the server's XX001, a
// DETAIL that the backup was removed and a HINT, and leaves nothing; with
// VERIFY_CHECKSUMS off the backup is taken.
func TestChecksumFailure(t *testing.T) {
	if _, err := pgtest.BinDir(); err != nil && os.Getenv("PGTEST_REQUIRE") != "1" {
		t.Skipf("PostgreSQL not available: %v", err)
	}
	c, err := pgtest.New(pgtest.Options{InitDBArgs: []string{"--data-checksums"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, sql := range []string{
		`CREATE TABLE bad AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 10000) g`,
		`CHECKPOINT`,
	} {
		if err := c.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	rel, err := queryOne(ctx, c.SuperURL(), `SELECT pg_relation_filepath('bad')`)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(c.DataDir, rel), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Inside the second page's tuples: the page header (and its LSN) stay
	// intact, so the server cannot skip the page as newer than the backup.
	if _, err := f.WriteAt([]byte("corrupt!"), 8192+4000); err != nil {
		t.Fatal(err)
	}
	must(t, f.Close())

	root := t.TempDir()
	o := Options{Root: root, Target: "bad", Checkpoint: FastCheckpoint, Manifest: true, VerifyChecksums: true, WAL: WALNone, Connect: connector(c)}
	_, err = Run(ctx, o)
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Code != pgerr.DataCorrupted || !strings.Contains(pe.Detail, "removed") || !strings.Contains(pe.Hint, "VERIFY_CHECKSUMS off") {
		t.Fatalf("Run = %#v, want XX001 with the detail and hint", err)
	}
	if _, err := os.Stat(filepath.Join(root, "bad")); !os.IsNotExist(err) {
		t.Fatalf("failed backup left its directory: %v", err)
	}
	o.VerifyChecksums = false
	if _, err := Run(ctx, o); err != nil {
		t.Fatalf("Run with VERIFY_CHECKSUMS off: %v", err)
	}
}
