package main

import (
	"bytes"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/DataDog/zstd"
	"go.uber.org/zap/zaptest"

	"github.com/pgverbs/pgverbs/walarchive"
)

const (
	walGetSegSize = 1 << 20
	walGetToken   = "wal-get-T0ken"
)

// walGetArchive is an archive directory with a complete segment, a
// compressed one, a partial one and a history file, served by the real
// handler.
func walGetArchive(t *testing.T, tlsServer bool) (*httptest.Server, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	files := map[string][]byte{
		"000000010000000000000001":         bytes.Repeat([]byte{1}, walGetSegSize),
		"000000010000000000000002":         bytes.Repeat([]byte{2}, walGetSegSize),
		"000000010000000000000003.partial": bytes.Repeat([]byte{3}, walGetSegSize),
		"00000002.history":                 []byte("1\t0/3000000\tno recovery target specified\n"),
	}
	for name, b := range files {
		onDisk := name
		if name == "000000010000000000000002" {
			z, err := zstd.Compress(nil, b)
			if err != nil {
				t.Fatal(err)
			}
			b, onDisk = z, name+".zst"
		}
		if err := os.WriteFile(filepath.Join(dir, onDisk), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := walarchive.NewHandler(func() (string, uint64, bool) { return dir, walGetSegSize, true }, walGetToken, zaptest.NewLogger(t))
	srv := httptest.NewUnstartedServer(h)
	if tlsServer {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, files
}

func TestWalGet(t *testing.T) {
	srv, files := walGetArchive(t, false)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(walGetToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string // the file DEST must hold; "" means exit 1 and no DEST
	}{
		{"complete", []string{"--url", srv.URL, "--token-file", tokenFile, "000000010000000000000001"}, nil, "000000010000000000000001"},
		{"compressed", []string{"--url", srv.URL, "--token-file", tokenFile, "000000010000000000000002"}, nil, "000000010000000000000002"},
		{"history", []string{"--url", srv.URL, "--token-file", tokenFile, "00000002.history"}, nil, "00000002.history"},
		{"url and token from env", []string{"000000010000000000000001"},
			map[string]string{"PGVERBS_WAL_URL": srv.URL + "/", "PGVERBS_HTTP_TOKEN": walGetToken}, "000000010000000000000001"},
		{"partial under the full name", []string{"--url", srv.URL, "--token-file", tokenFile, "--partial", "000000010000000000000003"}, nil, "000000010000000000000003.partial"},
		{"the complete one before a partial", []string{"--url", srv.URL, "--token-file", tokenFile, "--partial", "000000010000000000000001"}, nil, "000000010000000000000001"},
		{"partial only with --partial", []string{"--url", srv.URL, "--token-file", tokenFile, "000000010000000000000003"}, nil, ""},
		{"missing", []string{"--url", srv.URL, "--token-file", tokenFile, "000000010000000000000009"}, nil, ""},
		{"missing with --partial", []string{"--url", srv.URL, "--token-file", tokenFile, "--partial", "000000010000000000000009"}, nil, ""},
		{"missing history with --partial", []string{"--url", srv.URL, "--token-file", tokenFile, "--partial", "00000003.history"}, nil, ""},
		{"no token", []string{"--url", srv.URL, "000000010000000000000001"}, nil, ""},
		{"wrong token", []string{"--url", srv.URL, "000000010000000000000001"}, map[string]string{"PGVERBS_HTTP_TOKEN": "wrong"}, ""},
		{"missing token file", []string{"--url", srv.URL, "--token-file", tokenFile + ".none", "000000010000000000000001"}, nil, ""},
		{"a path", []string{"--url", srv.URL, "--token-file", tokenFile, "../000000010000000000000001"}, nil, ""},
		{"unreachable", []string{"--url", closed, "--token-file", tokenFile, "000000010000000000000001"}, nil, ""},
		{"not a URL", []string{"--url", "ftp://x", "000000010000000000000001"}, nil, ""},
		{"one argument", []string{"--url", srv.URL, "000000010000000000000001"}, nil, "-"},
		{"unknown flag", []string{"--bogus", "000000010000000000000001"}, nil, "-"},
		{"help", []string{"-h"}, nil, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dest := filepath.Join(dir, "RECOVERYXLOG")
			args := tt.args
			if tt.want != "-" {
				args = append(args, dest)
			}
			// A DEST from an earlier call is replaced.
			if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			code := runWalGet(args, func(k string) string { return tt.env[k] }, &stderr)
			got, _ := os.ReadFile(dest)
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("the directory holds %d files, want only DEST: a temporary file was left", len(entries))
			}
			if tt.want == "" || tt.want == "-" {
				if code != 1 || string(got) != "old" || stderr.Len() == 0 {
					t.Errorf("exit %d, DEST %d bytes, stderr %q; want exit 1, DEST untouched, a message", code, len(got), stderr.String())
				}
				if strings.Contains(stderr.String(), walGetToken) {
					t.Errorf("stderr shows the token: %s", stderr.String())
				}
				return
			}
			if code != 0 || !bytes.Equal(got, files[tt.want]) {
				t.Errorf("exit %d (%s), DEST %d bytes; want exit 0 and %s's %d", code, stderr.String(), len(got), tt.want, len(files[tt.want]))
			}
		})
	}
}

func TestWalGetTLS(t *testing.T) {
	srv, files := walGetArchive(t, true)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string { return map[string]string{"PGVERBS_HTTP_TOKEN": walGetToken}[k] }
	dest := filepath.Join(t.TempDir(), "f")
	var stderr bytes.Buffer
	if code := runWalGet([]string{"--url", srv.URL, "--ca-file", ca, "00000002.history", dest}, env, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, files["00000002.history"]) {
		t.Errorf("DEST holds %q", got)
	}
	// Without the CA the self-signed certificate is refused.
	if code := runWalGet([]string{"--url", srv.URL, "00000002.history", dest + "2"}, env, &stderr); code != 1 {
		t.Errorf("without --ca-file: exit %d, want 1", code)
	}
}

// TestWalGetShortBody: a body shorter than its Content-Length (the
// server's segment was cut off) writes nothing.
func TestWalGetShortBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "1048576")
		_, _ = w.Write(make([]byte, 1000))
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "f")
	var stderr bytes.Buffer
	if code := runWalGet([]string{"--url", srv.URL, "000000010000000000000001", dest}, func(string) string { return "" }, &stderr); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Errorf("DEST written from a short body: %v", err)
	}
}
