package walarchive

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/DataDog/zstd"
	"go.uber.org/zap"
)

// WALPath is the URL path under which NewHandler serves the archive's
// files: WALPath + name.
const WALPath = "/wal/"

// minSegmentSize is the smallest segment size PostgreSQL accepts; the
// names valid for it include those of every other size (more segments
// per "log"), so it checks a name's syntax when no archive is there to
// say its real size.
const minSegmentSize = 1 << 20

// ArchiveFunc returns the archive being served: its directory and its
// segment size, ok false when there is none.
type ArchiveFunc func() (dir string, segSize uint64, ok bool)

// StatusArchive is the ArchiveFunc of an Archiver: the directory its
// Status names (also once stopped: the WAL stays, and a restore may need
// it) and the segment size its StateFile records, read at each request
// (the file is small and the archive's own record).
func StatusArchive(a interface{ Status() (Status, bool) }) ArchiveFunc {
	if l, ok := a.(interface {
		Location() (string, uint64, bool)
	}); ok {
		// A Manager knows without scanning its directory.
		return l.Location
	}
	return func() (string, uint64, bool) {
		st, ok := a.Status()
		if !ok || st.Dir == "" {
			return "", 0, false
		}
		b, err := os.ReadFile(filepath.Join(st.Dir, StateFile))
		if err != nil {
			return "", 0, false
		}
		var rec struct {
			SegmentSize uint64 `json:"segment_size"`
		}
		if json.Unmarshal(b, &rec) != nil || !ValidSegmentSize(rec.SegmentSize) {
			return "", 0, false
		}
		return st.Dir, rec.SegmentSize, true
	}
}

// NewHandler serves GET and HEAD WALPath+name from the archive archive
// returns, for restore_command (pgverbs wal-get): a complete segment NAME
// (decompressed from NAME.zst when it is compressed), a NAME.partial
// asked for by that name, or a timeline's XXXXXXXX.history. For an
// archive that uploads to object storage, a segment or history file no
// longer in the directory is streamed from the store (as NAME, else
// NAME.zst decompressed).
//
// token, when not empty, must come as "Authorization: Bearer token" (401
// otherwise); conf refuses an empty one on anything but a loopback
// address. A name ParseName refuses is 400 (nothing but the archive's own
// file names is ever opened, and only through an os.Root of the archive
// directory), a file that is not there 404, and so is every name while no
// archive runs: recovery probes history files that do not exist, and
// that answer must be quick.
//
// log, which may be nil, gets the failures that are the server's (500);
// the token and the requests are never logged.
func NewHandler(archive ArchiveFunc, token string, log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	h := &handler{archive: archive, log: log}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		h.token = sum[:]
	}
	return h
}

type handler struct {
	archive ArchiveFunc
	// token is the SHA-256 of the bearer token, nil when none is
	// required. Comparing digests keeps the comparison's time from
	// telling the token's length too.
	token []byte
	log   *zap.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The token first: a client without it learns nothing, not even
	// which names would be refused.
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pgverbs WAL archive"`)
		httpError(w, http.StatusUnauthorized, "a bearer token is required (Authorization: Bearer TOKEN; pgverbs wal-get --token-file)")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed, "only GET and HEAD")
		return
	}
	// URL.Path is decoded: "..%2F" arrives as "../" and is refused with
	// the rest. The path is taken as sent, not cleaned (the listener
	// routes /wal/ here before its mux would redirect /wal/../x).
	name, ok := strings.CutPrefix(r.URL.Path, WALPath)
	if !ok {
		httpError(w, http.StatusNotFound, "not found")
		return
	}
	dir, segSize, running := h.archive()
	size := segSize
	if !running {
		size = minSegmentSize
	}
	if _, err := ParseName(name, size); err != nil {
		httpError(w, http.StatusBadRequest, "not a WAL file name: a segment (24 upper-case hex digits, optionally .partial) or a timeline history file (XXXXXXXX.history)")
		return
	}
	if !running {
		httpError(w, http.StatusNotFound, "no WAL archive runs")
		return
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		h.fail(w, "open the archive directory", err)
		return
	}
	defer root.Close()
	f, n, err := OpenFile(root, name, segSize)
	if rem := remoteOf(dir); errors.Is(err, fs.ErrNotExist) && rem != nil {
		// Uploaded, and removed here by retention since: streamed from
		// the store, never stored locally again.
		f, n, err = rem.open(r.Context(), name, segSize)
	}
	if errors.Is(err, fs.ErrNotExist) {
		httpError(w, http.StatusNotFound, "not in the archive")
		return
	}
	if err != nil {
		h.fail(w, "open "+name, err)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	// A .partial grows, and a file may be compressed or removed by
	// retention: nothing between here and the client should keep a copy.
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, f); err != nil {
		// The status is sent; the short body (less than Content-Length)
		// is what the client sees, and wal-get then writes nothing.
		h.log.Warn("WAL file not served whole", zap.String("file", name), zap.Error(err))
	}
}

// authorized reports whether r carries the bearer token, when one is
// required.
func (h *handler) authorized(r *http.Request) bool {
	if h.token == nil {
		return true
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], h.token) == 1
}

func (h *handler) fail(w http.ResponseWriter, what string, err error) {
	h.log.Error("cannot serve a WAL file", zap.String("op", what), zap.Error(err))
	httpError(w, http.StatusInternalServerError, "the archive cannot be read; see pgverbs's log")
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

// OpenFile opens the WAL file name of the archive dir, whose segments are
// segSize bytes, and returns its content and length: a complete segment
// NAME as it is or decompressed from NAME.zst, a NAME.partial, or a
// history file. The name must be one ParseName accepts (NAME.zst is not:
// it is opened under NAME). An absent file is an error matching
// fs.ErrNotExist. A segment whose length is not segSize, or a NAME.zst
// that does not decompress to exactly segSize bytes, is an error (for the
// compressed one, from Read at its end): a short segment must never
// reach a recovery as if whole.
func OpenFile(dir *os.Root, name string, segSize uint64) (io.ReadCloser, int64, error) {
	n, err := ParseName(name, segSize)
	if err != nil {
		return nil, 0, err
	}
	f, size, err := openRegular(dir, name)
	if errors.Is(err, fs.ErrNotExist) && n.Kind == Segment {
		// The compressor writes NAME.zst and removes NAME only once it
		// is durable, so NAME, then NAME.zst, misses neither.
		f, _, err = openRegular(dir, name+compressedSuffix)
		if err != nil {
			return nil, 0, err
		}
		return newZstdSegment(f, name, segSize), int64(segSize), nil
	}
	if err != nil {
		return nil, 0, err
	}
	if n.Kind != History && size != int64(segSize) {
		f.Close()
		return nil, 0, fmt.Errorf("walarchive: %s is %d bytes, not the segment size %d", name, size, segSize)
	}
	return f, size, nil
}

// openRegular opens name in dir if it is a regular file, and returns its
// size.
func openRegular(dir *os.Root, name string) (*os.File, int64, error) {
	f, err := dir.Open(name)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("walarchive: %s is not a regular file", name)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// zstdSegment decompresses NAME.zst and fails the read that would end it
// at a length other than the segment size.
type zstdSegment struct {
	f    io.Closer
	zr   io.ReadCloser
	name string
	want uint64
	got  uint64
}

func newZstdSegment(f io.ReadCloser, name string, segSize uint64) *zstdSegment {
	return &zstdSegment{f: f, zr: zstd.NewReader(f), name: name, want: segSize}
}

func (z *zstdSegment) Read(p []byte) (int, error) {
	n, err := z.zr.Read(p)
	z.got += uint64(n)
	switch {
	case z.got > z.want:
		return n, fmt.Errorf("walarchive: %s%s decompresses to more than the segment size %d", z.name, compressedSuffix, z.want)
	case err == io.EOF && z.got != z.want:
		return n, fmt.Errorf("walarchive: %s%s decompresses to %d bytes, not the segment size %d", z.name, compressedSuffix, z.got, z.want)
	case err != nil && err != io.EOF:
		return n, fmt.Errorf("walarchive: decompress %s%s: %w", z.name, compressedSuffix, err)
	}
	return n, err
}

func (z *zstdSegment) Close() error {
	zerr := z.zr.Close()
	return errors.Join(zerr, z.f.Close())
}
