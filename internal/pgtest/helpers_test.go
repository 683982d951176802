package pgtest

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestSelfSigned checks that the certificate verifies for each address a
// test dials, against its own pool, and that the written files load as a
// key pair.
func TestSelfSigned(t *testing.T) {
	c := SelfSigned(t, "proxy-one")
	if c.TLS.Leaf.Subject.CommonName != "proxy-one" {
		t.Errorf("common name %q", c.TLS.Leaf.Subject.CommonName)
	}
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := c.TLS.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: c.Pool}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	dir := t.TempDir()
	certFile, keyFile := WriteSelfSigned(t, dir, "proxy-two")
	if certFile != filepath.Join(dir, "proxy-two.crt") || keyFile != filepath.Join(dir, "proxy-two.key") {
		t.Errorf("files %s, %s", certFile, keyFile)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, %v; want 0600", st.Mode(), err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || leaf.Subject.CommonName != "proxy-two" {
		t.Fatalf("written certificate: %v, %v", leaf, err)
	}
}

// TestStartCopy starts a server on a base backup of a cluster, with a
// prepare hook and a setting of its own, while the source runs on.
func TestStartCopy(t *testing.T) {
	src := Start(t, Options{})
	ctx := testContext(t)
	if err := src.Exec(ctx, "CREATE TABLE kept AS SELECT 42 AS answer"); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	if out, err := exec.Command(src.Bin("pg_basebackup"), "-d", src.SuperURL(), "-D", backup, "-X", "stream", "-c", "fast").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	var prepared string
	c := StartCopy(t, backup, Options{BinDir: src.BinDir, Settings: map[string]string{"application_name": "restored"}}, func(dir string) {
		prepared = dir
		if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "beside"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	if prepared != c.DataDir || c.Port == src.Port {
		t.Fatalf("prepare saw %s, DataDir %s; port %d, source's %d", prepared, c.DataDir, c.Port, src.Port)
	}
	for sql, want := range map[string]string{
		"SELECT answer::text FROM kept":                                 "42",
		"SHOW application_name":                                         "restored",
		"SELECT pg_is_in_recovery()::text":                              "false",
		"SELECT current_setting('port')":                                strconv.Itoa(c.Port),
		"SHOW unix_socket_directories":                                  c.SocketDir,
		"SELECT setting FROM pg_settings WHERE name = 'data_directory'": c.DataDir,
	} {
		if got, err := queryOne(ctx, c.SuperURL(), sql); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", sql, got, err, want)
		}
	}
	if log := c.ServerLog(); !strings.Contains(log, "consistent recovery state reached") {
		t.Errorf("ServerLog lacks the consistency line:\n%s", log)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.DataDir); !os.IsNotExist(err) {
		t.Errorf("the copy is left after Stop: %v", err)
	}
}

// TestServerDir checks that the server's user owns the directory, alone.
func TestServerDir(t *testing.T) {
	dir, err := ServerDir()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	own, err := currentOwner()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("mode %v, want 0700", st.Mode().Perm())
	}
	if own.switchUser && int(st.Sys().(*syscall.Stat_t).Uid) != own.uid {
		t.Errorf("owner uid %d, want the server user's %d", st.Sys().(*syscall.Stat_t).Uid, own.uid)
	}
}
