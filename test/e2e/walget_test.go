package e2e

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// The WAL archive's HTTP side, end to end: /wal/ of the real pgverbs
// binary and pgverbs wal-get, the restore_command, run as PostgreSQL runs
// it. Until main wires an archive, /wal/ has none and answers 404 to
// every WAL file name; the refusals are the same with one.

const walToken = "e2e-WAL-t0ken"

// walHTTP is a pgverbs serving /wal/ with a token, and the token's file
// for wal-get.
type walHTTP struct {
	cluster   *pgtest.Cluster
	proxy     *proxyProc
	base      string // http://host:port of the HTTP listener
	tokenFile string
}

// startWALHTTP starts a cluster and a pgverbs with its HTTP listener on
// loopback and a token file; args are more flags (--backup-root for an
// archive).
func startWALHTTP(t *testing.T, args ...string) walHTTP {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(walToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := "127.0.0.1:" + itoa(freePort(t))
	c, p := trustSetup(t, pgtest.Options{}, append([]string{"--http-listen", httpAddr, "--http-token-file", tokenFile}, args...)...)
	return walHTTP{cluster: c, proxy: p, base: "http://" + httpAddr, tokenFile: tokenFile}
}

// walRequest sends GET path (as written: Go's client does not clean it)
// with the bearer token tok ("" sends none).
func walRequest(t *testing.T, base, path, tok string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body
}

// runWalGet runs pgverbs wal-get with args and returns its exit status
// and stderr; a status other than 0 or 1, or a signal, fails the test:
// PostgreSQL would take it as fatal.
func runWalGet(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(pgverbsBin, append([]string{"wal-get"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run wal-get: %v", err)
	}
	if code != 0 && code != 1 {
		t.Fatalf("wal-get %s: exit status %d (%v), which PostgreSQL treats as fatal; stderr: %s", strings.Join(args, " "), code, err, stderr.String())
	}
	return code, stderr.String()
}

func TestWALHTTPRefusals(t *testing.T) {
	w := startWALHTTP(t)
	const segment = "000000010000000000000001"
	tests := []struct {
		name, path, token string
		want              int
	}{
		{"no token", "/wal/" + segment, "", 401},
		{"wrong token", "/wal/" + segment, walToken + "x", 401},
		{"no token, bad name", "/wal/../x", "", 401},
		{"dot dot", "/wal/../x", walToken, 400},
		{"encoded slashes", "/wal/..%2F..%2Fetc%2Fpasswd", walToken, 400},
		{"encoded dot dot", "/wal/..%2Fpgverbs_wal_archive.json", walToken, 400},
		{"lower case", "/wal/00000001000000000000000a", walToken, 400},
		{"compressed name", "/wal/" + segment + ".zst", walToken, 400},
		{"not in the archive", "/wal/" + segment, walToken, 404},
		{"history not in the archive", "/wal/00000002.history", walToken, 404},
		// Prometheus and probes need no token.
		{"metrics", "/metrics", "", 200},
		{"healthz", "/healthz", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := walRequest(t, w.base, tt.path, tt.token)
			if code != tt.want {
				t.Fatalf("GET %s: %d, want %d: %s", tt.path, code, tt.want, body)
			}
			if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer: %q", hdr.Get("WWW-Authenticate"))
			}
		})
	}
	if strings.Contains(w.proxy.Log.String(), walToken) {
		t.Errorf("pgverbs's log (at debug) shows the token")
	}
}

func TestWalGetMissing(t *testing.T) {
	w := startWALHTTP(t)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	closed := "http://127.0.0.1:" + itoa(freePort(t))
	tests := []struct {
		name string
		env  []string
		args []string
	}{
		{"not in the archive", nil, []string{"--url", w.base, "--token-file", w.tokenFile, "000000010000000000000001", dest}},
		{"with --partial", nil, []string{"--url", w.base, "--token-file", w.tokenFile, "--partial", "000000010000000000000001", dest}},
		{"history, url and token from the environment", []string{"PGVERBS_WAL_URL=" + w.base, "PGVERBS_HTTP_TOKEN=" + walToken}, []string{"00000002.history", dest}},
		{"no token", nil, []string{"--url", w.base, "000000010000000000000001", dest}},
		{"a path for a name", nil, []string{"--url", w.base, "--token-file", w.tokenFile, "../../etc/passwd", dest}},
		{"unreachable", nil, []string{"--url", closed, "--token-file", w.tokenFile, "000000010000000000000001", dest}},
		{"no DEST", nil, []string{"--url", w.base, "000000010000000000000001"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := runWalGet(t, tt.env, tt.args...)
			if code != 1 || !strings.Contains(stderr, "pgverbs wal-get") && !strings.Contains(stderr, "Usage") {
				t.Errorf("exit %d, stderr %q; want exit 1 and a message", code, stderr)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Errorf("DEST exists after a failed wal-get: %v", err)
			}
			if strings.Contains(stderr, walToken) {
				t.Errorf("stderr shows the token: %s", stderr)
			}
		})
	}
}

// TestHTTPTokenOffLoopback: the listener on every interface needs a
// token, and then shows it nowhere.
func TestHTTPTokenOffLoopback(t *testing.T) {
	c := cluster(t, pgtest.Options{})
	port := itoa(freePort(t))

	// Without a token pgverbs refuses to start, and says what to set.
	cmd := exec.Command(pgverbsBin, "--listen", "127.0.0.1:"+itoa(freePort(t)), "--backend", c.URL("", "", "postgres"),
		"--http-listen", "0.0.0.0:"+port)
	cmd.Env = append(os.Environ(), "PGVERBS_CONFIG=", "PGVERBS_HTTP_TOKEN=", "PGVERBS_HTTP_TOKEN_FILE=")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("pgverbs started with http_listen 0.0.0.0 and no token:\n%s", out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("exit %v, want status 2", err)
	}
	for _, want := range []string{"http_token: must be set", `http_listen "0.0.0.0:` + port + `" is not a loopback address`, "http_token_file"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error does not say %q:\n%s", want, out)
		}
	}

	// With one it serves, and SHOW PGVERBS CONFIG and the log hide it.
	p := startProxy(t, c.URL("", "", "postgres"), "--http-listen", "0.0.0.0:"+port, "--http-token", walToken)
	base := "http://" + net.JoinHostPort("127.0.0.1", port)
	if code, _, _ := walRequest(t, base, "/wal/000000010000000000000001", ""); code != 401 {
		t.Errorf("GET /wal/ without the token: %d, want 401", code)
	}
	if code, _, _ := walRequest(t, base, "/wal/000000010000000000000001", walToken); code != 404 {
		t.Errorf("GET /wal/ with the token, no archive: %d, want 404", code)
	}
	ls := showLines(t, func(args ...string) (string, error) { return psql(t, c, p.URL("postgres", "", "postgres"), args...) }, "SHOW PGVERBS CONFIG")
	if !linesHave(ls, "http_token|xxxxx|flag|") {
		t.Errorf("SHOW PGVERBS CONFIG has no http_token|xxxxx|flag:\n%s", strings.Join(ls, "\n"))
	}
	if strings.Contains(strings.Join(ls, "\n"), walToken) {
		t.Errorf("SHOW PGVERBS CONFIG shows the token")
	}
	if strings.Contains(p.Log.String(), walToken) {
		t.Errorf("pgverbs's log (at debug) shows the token")
	}
}

// TestWalGetTLS: with tls_cert set the listener is HTTPS, and wal-get
// reaches it with --ca-file (the answer is the archive's 404, not a
// handshake error) and refuses the self-signed certificate without it.
func TestWalGetTLS(t *testing.T) {
	certFile, keyFile := pgtest.WriteSelfSigned(t, t.TempDir(), "pgverbs-wal")
	w := startWALHTTP(t, "--tls-cert", certFile, "--tls-key", keyFile)
	https := "https://" + strings.TrimPrefix(w.base, "http://")
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	code, stderr := runWalGet(t, nil, "--url", https, "--ca-file", certFile, "--token-file", w.tokenFile, "00000002.history", dest)
	if code != 1 || !strings.Contains(stderr, "not in the archive") {
		t.Errorf("over HTTPS with the CA: exit %d, %q; want 1 and the archive's 404", code, stderr)
	}
	code, stderr = runWalGet(t, nil, "--url", https, "--token-file", w.tokenFile, "00000002.history", dest)
	if code != 1 || !strings.Contains(stderr, "certificate") {
		t.Errorf("over HTTPS without the CA: exit %d, %q; want 1 and a certificate error", code, stderr)
	}
}
