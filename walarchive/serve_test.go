package walarchive

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/DataDog/zstd"
	"go.uber.org/zap/zaptest"
)

const (
	testToken = "s3cret-T0ken"
)

// segmentBytes is a segment's fabricated content, different for every
// segment number so that a file served under the wrong name shows.
func segmentBytes(segno byte, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i) ^ segno
	}
	return b
}

func writeTestFile(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func compress(t *testing.T, b []byte) []byte {
	t.Helper()
	z, err := zstd.Compress(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// fabricatedArchive writes an archive directory by hand, in the layout
// the receiver writes, with one file of every kind and a few broken ones.
func fabricatedArchive(t *testing.T) string {
	dir := t.TempDir()
	writeTestFile(t, dir, "000000010000000000000001", segmentBytes(1, testSegSize))
	writeTestFile(t, dir, "000000010000000000000002.zst", compress(t, segmentBytes(2, testSegSize)))
	writeTestFile(t, dir, "000000010000000000000003.partial", segmentBytes(3, testSegSize))
	writeTestFile(t, dir, "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"))
	writeTestFile(t, dir, StateFile, []byte(`{"segment_size": 1048576, "system_id": "1"}`))
	// Broken: a short complete segment, and one compressed short.
	writeTestFile(t, dir, "000000010000000000000004", segmentBytes(4, 1000))
	writeTestFile(t, dir, "000000010000000000000005.zst", compress(t, segmentBytes(5, testSegSize-1)))
	// A name of the archive that leads outside it.
	outside := filepath.Join(t.TempDir(), "secret")
	writeTestFile(t, filepath.Dir(outside), "secret", segmentBytes(6, testSegSize))
	if err := os.Symlink(outside, filepath.Join(dir, "000000010000000000000006")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// serveArchive serves dir as the running archive (dir "" serves none)
// through the handler, behind a real HTTP server.
func serveArchive(t *testing.T, dir string, segSize uint64, token string) *httptest.Server {
	t.Helper()
	archive := func() (string, uint64, bool) { return dir, segSize, dir != "" }
	srv := httptest.NewServer(NewHandler(archive, token, zaptest.NewLogger(t)))
	t.Cleanup(srv.Close)
	return srv
}

type reply struct {
	code   int
	header http.Header
	body   []byte
	err    error // reading the body
}

// request sends method to srv's path (sent as written: no cleaning) with
// the authorization header auth ("" sends none).
func request(t *testing.T, srv *httptest.Server, method, path, auth string) reply {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, body, err}
}

func TestServeFiles(t *testing.T) {
	srv := serveArchive(t, fabricatedArchive(t), testSegSize, testToken)
	bearer := "Bearer " + testToken
	history := []byte("1\t0/3000000\tno recovery target specified\n")
	tests := []struct {
		name string
		file string
		want []byte
	}{
		{"complete", "000000010000000000000001", segmentBytes(1, testSegSize)},
		{"compressed, decompressed", "000000010000000000000002", segmentBytes(2, testSegSize)},
		{"partial by its name", "000000010000000000000003.partial", segmentBytes(3, testSegSize)},
		{"history", "00000002.history", history},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(t, srv, http.MethodGet, WALPath+tt.file, bearer)
			if r.code != http.StatusOK || r.err != nil {
				t.Fatalf("GET %s: %d, %v: %s", tt.file, r.code, r.err, r.body)
			}
			if !bytes.Equal(r.body, tt.want) {
				t.Errorf("GET %s: %d bytes, not the file's %d", tt.file, len(r.body), len(tt.want))
			}
			if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(tt.want)) {
				t.Errorf("GET %s: Content-Length %s, want %d", tt.file, got, len(tt.want))
			}
			h := request(t, srv, http.MethodHead, WALPath+tt.file, bearer)
			if h.code != http.StatusOK || len(h.body) != 0 || h.header.Get("Content-Length") != strconv.Itoa(len(tt.want)) {
				t.Errorf("HEAD %s: %d, Content-Length %q, %d bytes of body; want 200, %d, none",
					tt.file, h.code, h.header.Get("Content-Length"), len(h.body), len(tt.want))
			}
		})
	}
}

func TestServeRefusals(t *testing.T) {
	srv := serveArchive(t, fabricatedArchive(t), testSegSize, testToken)
	bearer := "Bearer " + testToken
	tests := []struct {
		name   string
		method string
		path   string
		auth   string
		code   int
	}{
		{"no token", "GET", "/wal/000000010000000000000001", "", 401},
		{"wrong token", "GET", "/wal/000000010000000000000001", "Bearer " + testToken + "x", 401},
		{"token prefix", "GET", "/wal/000000010000000000000001", "Bearer " + testToken[:4], 401},
		{"basic auth", "GET", "/wal/000000010000000000000001", "Basic " + testToken, 401},
		{"no token, bad name", "GET", "/wal/../secret", "", 401},
		{"HEAD without token", "HEAD", "/wal/000000010000000000000001", "", 401},
		{"scheme in any case", "GET", "/wal/00000002.history", "bearer " + testToken, 200},
		{"dot dot", "GET", "/wal/../secret", bearer, 400},
		{"encoded slash", "GET", "/wal/..%2F..%2Fetc%2Fpasswd", bearer, 400},
		{"encoded dot dot segment", "GET", "/wal/%2e%2e/x", bearer, 400},
		{"subdirectory", "GET", "/wal/000000010000000000000001/x", bearer, 400},
		{"lower case", "GET", "/wal/00000001000000000000000a", bearer, 400},
		{"zst by name", "GET", "/wal/000000010000000000000002.zst", bearer, 400},
		{"other suffix", "GET", "/wal/000000010000000000000001.backup", bearer, 400},
		{"state file", "GET", "/wal/" + StateFile, bearer, 400},
		{"empty name", "GET", "/wal/", bearer, 400},
		{"timeline 0", "GET", "/wal/00000000.history", bearer, 400},
		{"absent segment", "GET", "/wal/000000010000000000000009", bearer, 404},
		{"absent history", "GET", "/wal/00000003.history", bearer, 404},
		{"only partial: not under the full name", "GET", "/wal/000000010000000000000003", bearer, 404},
		{"no partial of a complete one", "GET", "/wal/000000010000000000000001.partial", bearer, 404},
		{"short segment", "GET", "/wal/000000010000000000000004", bearer, 500},
		{"symlink out of the archive", "GET", "/wal/000000010000000000000006", bearer, 500},
		{"POST", "POST", "/wal/000000010000000000000001", bearer, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(t, srv, tt.method, tt.path, tt.auth)
			if r.code != tt.code {
				t.Fatalf("%s %s: %d, want %d: %s", tt.method, tt.path, r.code, tt.code, r.body)
			}
			if tt.code == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("401 without a Bearer WWW-Authenticate: %q", r.header.Get("WWW-Authenticate"))
			}
			if bytes.Contains(r.body, segmentBytes(6, 64)) || bytes.Contains(r.body, segmentBytes(4, 64)) {
				t.Errorf("%s %s served a file's bytes with %d", tt.method, tt.path, r.code)
			}
		})
	}
}

// TestServeShortCompressed: a NAME.zst that decompresses short is cut
// off, so that the client sees less than Content-Length, never a
// segment that looks whole.
func TestServeShortCompressed(t *testing.T) {
	srv := serveArchive(t, fabricatedArchive(t), testSegSize, testToken)
	r := request(t, srv, http.MethodGet, "/wal/000000010000000000000005", "Bearer "+testToken)
	if r.err == nil {
		t.Fatalf("read %d bytes with no error (status %d); want a body cut short", len(r.body), r.code)
	}
}

func TestServeNoArchive(t *testing.T) {
	srv := serveArchive(t, "", 0, testToken)
	bearer := "Bearer " + testToken
	for path, code := range map[string]int{
		"/wal/000000010000000000000001": 404,
		"/wal/00000002.history":         404,
		// A name valid only for 1 MB segments is a name still.
		"/wal/000000010000000000000FFF": 404,
		"/wal/..%2Fx":                   400,
		"/wal/../x":                     400,
	} {
		if r := request(t, srv, "GET", path, bearer); r.code != code {
			t.Errorf("GET %s with no archive: %d, want %d", path, r.code, code)
		}
	}
	if r := request(t, srv, "GET", "/wal/000000010000000000000001", ""); r.code != 401 {
		t.Errorf("GET without token with no archive: %d, want 401", r.code)
	}
}

// TestServeWithoutToken: with no token configured (conf allows it only on
// a loopback address) every request is authorized, and the names are
// checked all the same.
func TestServeWithoutToken(t *testing.T) {
	srv := serveArchive(t, fabricatedArchive(t), testSegSize, "")
	if r := request(t, srv, "GET", "/wal/00000002.history", ""); r.code != 200 {
		t.Errorf("GET without a token configured: %d, want 200", r.code)
	}
	if r := request(t, srv, "GET", "/wal/../secret", ""); r.code != 400 {
		t.Errorf("GET ../secret without a token configured: %d, want 400", r.code)
	}
}

func TestOpenFile(t *testing.T) {
	root, err := os.OpenRoot(fabricatedArchive(t))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	f, n, err := OpenFile(root, "000000010000000000000002", testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil || n != testSegSize || !bytes.Equal(b, segmentBytes(2, testSegSize)) {
		t.Errorf("compressed segment: %d bytes, length %d, %v", len(b), n, err)
	}
	// The length promised must hold: a short NAME.zst fails the read.
	if f, _, err := OpenFile(root, "000000010000000000000005", testSegSize); err != nil {
		t.Error(err)
	} else {
		_, err := io.ReadAll(f)
		f.Close()
		if err == nil {
			t.Error("a NAME.zst that decompresses short read with no error")
		}
	}
	if _, _, err := OpenFile(root, "000000010000000000000009", testSegSize); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("absent segment: %v, want fs.ErrNotExist", err)
	}
	if _, _, err := OpenFile(root, "../000000010000000000000001", testSegSize); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a path: %v, want a name error", err)
	}
}

type fakeStatus struct {
	st Status
	ok bool
}

func (f fakeStatus) Status() (Status, bool) { return f.st, f.ok }

// TestStatusArchive: an Archiver's archive is its Status's directory with
// the segment size of its StateFile, and none without one.
func TestStatusArchive(t *testing.T) {
	dir := fabricatedArchive(t)
	if d, size, ok := StatusArchive(fakeStatus{Status{State: Stopped, Dir: dir}, true})(); !ok || d != dir || size != testSegSize {
		t.Errorf("stopped archive: %q, %d, %v; want %q, %d, true", d, size, ok, dir, testSegSize)
	}
	if _, _, ok := StatusArchive(fakeStatus{})(); ok {
		t.Error("no archive started: ok")
	}
	if _, _, ok := StatusArchive(fakeStatus{Status{Dir: t.TempDir()}, true})(); ok {
		t.Error("a directory without a state file: ok")
	}
}
