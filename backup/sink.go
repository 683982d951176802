package backup

import (
	"archive/tar"
	"hash"
	"io"
	"os"
	"path"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// sink is where a backup writes the files it makes itself, rather than
// unpacks from the server's archives: a directory of the backup (dirSink)
// or a tar file in it (tarSink). The SQL method writes every file through
// one, the WAL streamer its segments (pg_wal/ or pg_wal.tar), so that
// both formats take the same path through the code that copies.
//
// A sink's files are written one at a time, each closed (or aborted)
// before the next is created; after a failure, abort, not close, and Run
// removes what was written. Durability is not the sink's business: Run
// fsyncs the whole backup once it is complete (syncTarget).
type sink interface {
	// mkdir creates directory name (with its parents, in a directory).
	mkdir(name string, mtime time.Time) error
	// create starts file name that is to hold size bytes; createFile
	// wraps it with the size rules.
	create(name string, size int64, mtime time.Time) (sinkFile, error)
	// symlink creates a symbolic link; only a directory can (a tar
	// backup records tablespaces in tablespace_map instead).
	symlink(name, target string) error
	// exact reports whether every file must end up exactly the size given
	// to create (a tar header carries it), so shorter ones are padded.
	exact() bool
	// close completes the sink once its last file is closed.
	close() error
	// abort lets go of the sink after a failure.
	abort()
}

// sinkFile is one file being written to a sink.
type sinkFile interface {
	io.Writer
	// Close completes the file.
	Close() error
	// abort lets go of the file after a failure, without completing it.
	abort()
}

// dirSink writes below prefix in a directory of the backup.
type dirSink struct {
	dir    *os.Root
	prefix string
}

func (d dirSink) mkdir(name string, _ time.Time) error {
	name = path.Join(d.prefix, name)
	if err := d.dir.MkdirAll(name, 0o700); err != nil {
		return fileError("create directory", name, err)
	}
	return nil
}

func (d dirSink) create(name string, _ int64, _ time.Time) (sinkFile, error) {
	name = path.Join(d.prefix, name)
	f, err := d.dir.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fileError("create", name, err)
	}
	return &dirFile{f: f, name: name}, nil
}

func (d dirSink) symlink(name, target string) error {
	name = path.Join(d.prefix, name)
	if err := d.dir.Symlink(target, name); err != nil {
		return fileError("create symbolic link", name, err)
	}
	return nil
}

func (d dirSink) exact() bool  { return false }
func (d dirSink) close() error { return nil }
func (d dirSink) abort()       {}

// dirFile is a file of a dirSink, written in writePieces and named in
// errors relative to the backup.
type dirFile struct {
	f    *os.File
	name string
}

func (d *dirFile) Write(p []byte) (int, error) {
	k, err := writePieces(d.f, p)
	if err != nil {
		return k, fileError("write", d.name, err)
	}
	return k, nil
}

func (d *dirFile) Close() error {
	if err := d.f.Close(); err != nil {
		return fileError("write", d.name, err)
	}
	return nil
}

func (d *dirFile) abort() { d.f.Close() }

// tarSink writes entries of known size to a (compressed) tar file.
type tarSink struct {
	out *outFile
	tw  *tar.Writer
}

func newTarSink(d dest, name string, alg Compression, level int) (*tarSink, error) {
	out, err := createOut(d, name, alg, level)
	if err != nil {
		return nil, err
	}
	return &tarSink{out: out, tw: tar.NewWriter(out)}, nil
}

func (s *tarSink) mkdir(name string, mtime time.Time) error {
	err := s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o700, ModTime: mtime})
	if err != nil {
		return s.err(err)
	}
	return nil
}

func (s *tarSink) create(name string, size int64, mtime time.Time) (sinkFile, error) {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o600, ModTime: mtime}
	if err := s.tw.WriteHeader(hdr); err != nil {
		return nil, s.err(err)
	}
	return tarEntry{s}, nil
}

func (s *tarSink) symlink(name, _ string) error {
	return pgerr.New(pgerr.InternalError, "symbolic link %s in a tar backup", quote(name))
}

func (s *tarSink) exact() bool { return true }

// err names the archive in a write error; fileError passes errors that are
// already for the client on as they are.
func (s *tarSink) err(err error) error {
	return fileError("write", s.out.name, err)
}

func (s *tarSink) close() error {
	if err := s.tw.Close(); err != nil {
		s.out.abort()
		return s.err(err)
	}
	return s.out.Close()
}

func (s *tarSink) abort() { s.out.abort() }

// tarEntry is the file a tarSink writes now. tar.Writer refuses more
// bytes than the header gave and, at the next header, fewer: sizedFile
// keeps to the size.
type tarEntry struct{ s *tarSink }

func (e tarEntry) Write(p []byte) (int, error) {
	n, err := e.s.tw.Write(p)
	if err != nil {
		return n, e.s.err(err)
	}
	return n, nil
}

func (e tarEntry) Close() error { return nil }
func (e tarEntry) abort()       {}

// sizedFile is a file of a sink as the backup writes it. It never takes
// more than size bytes: the rest is dropped, as the server does for a
// file that grew while it was sent (WAL replay has the rest). With pad,
// Close fills a file that turned out shorter with zeros: WAL segments are
// always full, and a tar entry must have the size its header gives (WAL
// replay repairs a data file that shrank). With m set, Close adds the
// file to the manifest with its checksum, the padding included.
type sizedFile struct {
	w     sinkFile
	size  int64
	n     int64
	pad   bool
	mtime time.Time

	m    *manifestBuilder // nil: not in the manifest (WAL)
	h    hash.Hash        // m's checksum of the bytes so far, nil for NONE
	path string           // path in the manifest
}

// createFile starts file name of size bytes in s, padded when pad is set
// or s is exact.
func createFile(s sink, name string, size int64, mtime time.Time, pad bool) (*sizedFile, error) {
	w, err := s.create(name, size, mtime)
	if err != nil {
		return nil, err
	}
	return &sizedFile{w: w, size: size, pad: pad || s.exact(), mtime: mtime}, nil
}

// record puts the file in manifest m as manPath; it must come before the
// first Write.
func (f *sizedFile) record(m *manifestBuilder, manPath string) {
	f.m, f.h, f.path = m, newHash(m.algo), manPath
}

func (f *sizedFile) Write(p []byte) (int, error) {
	orig := len(p)
	if left := f.size - f.n; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := f.w.Write(p)
	if f.h != nil {
		f.h.Write(p[:n])
	}
	f.n += int64(n)
	if err != nil {
		return n, err
	}
	return orig, nil
}

// Close pads the file if it must, completes it and records it in the
// manifest.
func (f *sizedFile) Close() error {
	if f.pad {
		zeros := make([]byte, 32*1024)
		for f.n < f.size {
			if _, err := f.Write(zeros[:min(int64(len(zeros)), f.size-f.n)]); err != nil {
				f.w.abort()
				return err
			}
		}
	}
	if err := f.w.Close(); err != nil {
		return err
	}
	if f.m != nil {
		sum := ""
		if f.h != nil {
			sum = checksumHex(f.m.algo, f.h)
		}
		f.m.addFile(f.path, f.n, f.mtime, sum)
	}
	return nil
}

// abort lets go of the file after a failure: no padding, no manifest.
func (f *sizedFile) abort() { f.w.abort() }

// writeAll writes the whole content of f and completes it, or lets go of
// it after a failed write.
func writeAll(f sinkFile, content []byte) error {
	if _, err := f.Write(content); err != nil {
		f.abort()
		return err
	}
	return f.Close()
}
