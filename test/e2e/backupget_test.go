package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/internal/s3test"
)

// backupEnv is a cluster behind pgverbs with a WAL archive ('wal', local),
// an object-storage target "offsite" (bucket "pgbackups", prefix db1) and
// the HTTP listener serving /wal/.
type backupEnv struct {
	*archiveEnv
	s3     *s3test.Server
	bucket string
	cfg    string // the config file naming the targets
	// fault is a proxy to the store; the target "faulty" reaches the
	// same bucket and prefix through it.
	fault *s3test.FaultProxy
}

func newBackupEnv(t *testing.T) *backupEnv {
	t.Helper()
	srv := s3test.Start(t)
	const bucket = "pgbackups"
	srv.Bucket(t, bucket)
	fault := s3test.NewFaultProxy(t, srv.Addr())
	cfg := writeStorageConfig(t, srv, storageTarget{name: "offsite", bucket: bucket, prefix: "db1"},
		storageTarget{name: "faulty", bucket: bucket, prefix: "db1", endpoint: fault.Endpoint})
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(walToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	base, args := httpArgs(t, root, tokenFile)
	c := cluster(t, pgtest.Options{
		Settings:   map[string]string{"synchronous_commit": "on"},
		InitDBArgs: []string{"--wal-segsize=1", "--data-checksums"},
	})
	p := startProxy(t, c.URL("", "", "postgres"), append(args, "--config", cfg)...)
	e := &archiveEnv{c: c, p: p, root: root, base: base, tokenFile: tokenFile, top: t}
	e.srv = connect(t, c.SuperURL())
	// archiveEnv.switchWAL writes into walfill.
	if _, err := e.srv.Exec(testCtx(t), "CREATE TABLE walfill(id int, pad text)"); err != nil {
		t.Fatal(err)
	}
	return &backupEnv{archiveEnv: e, s3: srv, bucket: bucket, cfg: cfg, fault: fault}
}

// insert adds rows from to to (inclusive) to the table kept.
func (e *backupEnv) insert(t *testing.T, from, to int) {
	t.Helper()
	if _, err := e.srv.Exec(testCtx(t), "CREATE TABLE IF NOT EXISTS kept (id int PRIMARY KEY, v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.srv.Exec(testCtx(t), "INSERT INTO kept SELECT g, md5(g::text) FROM generate_series($1::int, $2::int) g", from, to); err != nil {
		t.Fatal(err)
	}
}

// serverBinDir holds a copy of pgverbs and the token that the server's
// OS user can read, for restore_command.
func serverBinDir(t *testing.T, tokenFile string) (bin, token string) {
	t.Helper()
	dir, err := pgtest.ServerDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, token = filepath.Join(dir, "pgverbs"), filepath.Join(dir, "token")
	copyFileMode(t, pgverbsBin, bin, 0o755)
	copyFileMode(t, tokenFile, token, 0o644)
	return bin, token
}

// backupGet runs bin backup-get args and returns its exit status and
// output.
func backupGet(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"backup-get"}, args...)...)
	cmd.Env = append(os.Environ(), "PGVERBS_CONFIG=")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("backup-get: %v", err)
	}
	return 0, string(out)
}

// TestBackupGet: BASE BACKUPs of a cluster with a tablespace to a local
// tar+zstd directory and to object storage (WAL none: recovery needs the
// archive), each restored by backup-get with --restore-command (the
// tablespace an in-place directory), pass pg_verifybackup and start:
// recovery fetches WAL through pgverbs wal-get and ends with every row
// written before the backup and after it (the archive has all of them).
// A byte changed in a stored object makes backup-get exit 1 and leave no
// DATADIR.
func TestBackupGet(t *testing.T) {
	e := newBackupEnv(t)
	e.insert(t, 1, 1000)
	loc, err := pgtest.ServerDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(loc) })
	for _, sql := range []string{
		"CREATE TABLESPACE spc LOCATION '" + loc + "'",
		"CREATE TABLE moved TABLESPACE spc AS SELECT g FROM generate_series(1, 500) g",
	} {
		if _, err := e.srv.Exec(testCtx(t), sql); err != nil {
			t.Fatal(err)
		}
	}
	e.run(t, "START WAL ARCHIVE TO 'wal'")
	e.waitCaughtUp(t)
	e.run(t, "BASE BACKUP TO 'local' WITH (FORMAT tar, COMPRESSION zstd)")
	e.run(t, "BASE BACKUP TO 'storage://offsite/nightly/b1' WITH (FORMAT tar, COMPRESSION zstd, WAL none)")
	e.insert(t, 1001, 2000)
	e.switchWAL(t)
	e.waitCaughtUp(t)

	bin, token := serverBinDir(t, e.tokenFile)
	for _, tc := range []struct {
		name, source string
		verifyArgs   []string
	}{
		// backup-get checks tablespace_map and leaves it out: the
		// tablespace is an in-place directory.
		{"local", filepath.Join(e.root, "local"), []string{"--ignore", "tablespace_map"}},
		// No WAL in the backup: pg_verifybackup parses it from the archive.
		{"storage", "storage://offsite/nightly/b1", []string{"--ignore", "tablespace_map", "--wal-directory", filepath.Join(e.root, "wal")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "restored")
			code, out := backupGet(t, bin, "--config", e.cfg, "--restore-command", e.base, "--token-file", token, tc.source, dest)
			if code != 0 {
				t.Fatalf("backup-get %s: exit %d\n%s", tc.source, code, out)
			}
			if !strings.Contains(out, "done") {
				t.Errorf("backup-get printed no end line:\n%s", out)
			}
			args := append(append([]string{}, tc.verifyArgs...), dest)
			if vout, err := exec.Command(e.c.Bin("pg_verifybackup"), args...).CombinedOutput(); err != nil {
				t.Fatalf("pg_verifybackup: %v\n%s", err, vout)
			}
			auto, err := os.ReadFile(filepath.Join(dest, "postgresql.auto.conf"))
			if err != nil || !strings.Contains(string(auto), "restore_command = '"+bin+" wal-get --url "+e.base+" --token-file "+token+" --partial %f %p'") {
				t.Fatalf("postgresql.auto.conf: %v\n%s", err, auto)
			}
			r := pgtest.StartCopy(t, dest, pgtest.Options{BinDir: e.c.BinDir, Password: e.c.Password}, nil)
			if _, err := pollActivity(r, "SELECT 1 WHERE NOT pg_is_in_recovery() AND $1", true); err != nil {
				t.Fatalf("the restored server did not end recovery: %v\n%s", err, r.ServerLog())
			}
			var n, maxID int
			if err := connect(t, r.SuperURL()).QueryRow(testCtx(t), "SELECT count(*), max(id) FROM kept").Scan(&n, &maxID); err != nil {
				t.Fatalf("the restored server: %v\n%s", err, r.ServerLog())
			}
			if n != 2000 || maxID != 2000 {
				t.Errorf("restored %d rows up to id %d, want 2000", n, maxID)
			}
			if err := connect(t, r.SuperURL()).QueryRow(testCtx(t), "SELECT count(*) FROM moved").Scan(&n); err != nil || n != 500 {
				t.Errorf("the table in the tablespace: %d rows, %v", n, err)
			}
			if fi, err := os.Lstat(filepath.Join(dest, "pg_tblspc")); err != nil || !fi.IsDir() {
				t.Errorf("pg_tblspc: %v", err)
			}
			if log := r.ServerLog(); !strings.Contains(log, "restored log file") {
				t.Errorf("recovery fetched no WAL through restore_command:\n%s", log)
			}
		})
	}

	t.Run("tampered", func(t *testing.T) {
		admin := e.s3.AdminClient()
		ctx := context.Background()
		key := "db1/nightly/b1/base.tar.zst"
		obj, err := admin.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(obj.Body); err != nil {
			t.Fatal(err)
		}
		obj.Body.Close()
		data := b.Bytes()
		data[len(data)/2] ^= 0x55 // the same size: the summary cannot tell
		if _, err := admin.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "restored")
		code, out := backupGet(t, bin, "--config", e.cfg, "storage://offsite/nightly/b1", dest)
		if code != 1 {
			t.Errorf("backup-get of a tampered backup: exit %d, want 1\n%s", code, out)
		}
		t.Logf("backup-get of the tampered backup: %s", out)
		if _, err := os.Stat(dest); err == nil {
			t.Errorf("backup-get left DATADIR behind after failing")
		}
		// An incomplete prefix: no summary.
		code, out = backupGet(t, bin, "--config", e.cfg, "storage://offsite/nightly", dest)
		if code != 3 || !strings.Contains(out, "not a complete backup") {
			t.Errorf("backup-get of a prefix without a summary: exit %d, want 3\n%s", code, out)
		}
	})
}

// TestBackupGetInterrupted: backup-get of a storage backup whose store
// goes away mid-download exits 3, one interrupted by SIGINT exits 130,
// and neither leaves DATADIR behind.
func TestBackupGetInterrupted(t *testing.T) {
	e := newBackupEnv(t)
	// About 40 MB of table, so that the download takes a while.
	if _, err := e.srv.Exec(testCtx(t), "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g+1)::text) AS v FROM generate_series(1, 400000) g"); err != nil {
		t.Fatal(err)
	}
	e.run(t, "BASE BACKUP TO 'storage://offsite/big' WITH (FORMAT tar, COMPRESSION gzip)")
	for _, tc := range []struct {
		name string
		act  func(cmd *exec.Cmd)
		want int
	}{
		{"store cut", func(*exec.Cmd) { e.fault.Cut() }, 3},
		{"SIGINT", func(cmd *exec.Cmd) { cmd.Process.Signal(syscall.SIGINT) }, 130},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.fault.Resume()
			dest := filepath.Join(t.TempDir(), "restored")
			cmd := exec.Command(pgverbsBin, "backup-get", "--config", e.cfg, "storage://faulty/big", dest)
			cmd.Env = append(os.Environ(), "PGVERBS_CONFIG=")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// At the first progress line (10 %), act.
			var out bytes.Buffer
			sc := bufio.NewScanner(stderr)
			acted := false
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
				if !acted && strings.Contains(sc.Text(), "%") {
					tc.act(cmd)
					acted = true
				}
			}
			err = cmd.Wait()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.want {
				t.Errorf("exit %d, want %d\n%s", code, tc.want, out.String())
			}
			if _, err := os.Stat(dest); err == nil {
				t.Errorf("DATADIR left behind\n%s", out.String())
			}
			t.Logf("backup-get: %s", out.String())
		})
	}
}
