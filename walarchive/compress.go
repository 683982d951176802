package walarchive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/DataDog/zstd"
)

// tempSuffix ends the file a compression writes before it is durable:
// NAME.zst.tmp. Nothing serves or checks it; cleanTemp removes leftovers.
const tempSuffix = compressedSuffix + ".tmp"

// defaultLevel is zstd's own default level, for COMPRESSION zstd without
// LEVEL.
const defaultLevel = 3

// compressHook is called between the steps of compressSegment (tests stop
// there, as a crash would); it does nothing otherwise.
var compressHook = func(step string) {}

// The steps compressSegment passes through, in order.
const (
	stepWritten = "written" // NAME.zst.tmp written and checked, not synced
	stepSynced  = "synced"  // NAME.zst.tmp fsynced, not renamed
	stepRenamed = "renamed" // NAME.zst durable, NAME still there
	stepRemoved = "removed" // NAME removed, the directory not yet synced
)

// compressSegment replaces the complete segment name in dir by name.zst,
// compressed with zstd at level (0: the default, 3). At every moment a
// crash leaves name or name.zst whole, with the same bytes:
//
//  1. name.zst.tmp is written, then decompressed again and compared with
//     name (name is about to become the only copy's source, so a bad
//     compression must not replace it), and fsynced;
//  2. it is renamed to name.zst and the directory fsynced: name.zst is
//     durable, name is still there (OpenFile serves name first);
//  3. name is removed and the directory fsynced.
//
// A crash before 2 leaves name.zst.tmp, which cleanTemp removes; on an
// error compressSegment removes it itself.
func compressSegment(dir *os.Root, name string, level int) error {
	// The smallest segment size accepts every segment name any size does.
	if n, err := ParseName(name, 1<<20); err != nil || n.Kind != Segment {
		return fmt.Errorf("walarchive: compress %q: not a complete segment's name", name)
	}
	if level == 0 {
		level = defaultLevel
	}
	tmp := name + tempSuffix
	if err := writeCompressed(dir, name, tmp, level); err != nil {
		_ = dir.Remove(tmp)
		return err
	}
	if err := dir.Rename(tmp, name+compressedSuffix); err != nil {
		_ = dir.Remove(tmp)
		return fileError("rename", tmp, err)
	}
	if err := syncDir(dir); err != nil {
		// name.zst may not be durable: name stays.
		return err
	}
	compressHook(stepRenamed)
	if err := dir.Remove(name); err != nil {
		return fileError("remove", name, err)
	}
	compressHook(stepRemoved)
	return syncDir(dir)
}

// writeCompressed writes tmp, the compression of name, checks that it
// decompresses to name's bytes, and fsyncs it.
func writeCompressed(dir *os.Root, name, tmp string, level int) error {
	src, err := dir.Open(name)
	if err != nil {
		return fileError("open", name, err)
	}
	defer src.Close()
	// 0600 as the segments: WAL is the whole database.
	out, err := dir.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fileError("create", tmp, err)
	}
	defer out.Close()
	zw := zstd.NewWriterLevel(out, level)
	if _, err := io.Copy(zw, src); err != nil {
		zw.Close()
		return fmt.Errorf("walarchive: compress %s: %w", name, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("walarchive: compress %s: %w", name, err)
	}
	if err := sameContent(src, out, name); err != nil {
		return err
	}
	compressHook(stepWritten)
	if err := out.Sync(); err != nil {
		return fileError("sync", tmp, err)
	}
	compressHook(stepSynced)
	if err := out.Close(); err != nil {
		return fileError("close", tmp, err)
	}
	return nil
}

// sameContent checks that compressed, read from its start, decompresses to
// exactly the bytes of src, also read from its start; both are streamed.
func sameContent(src, compressed *os.File, name string) error {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return fileError("seek", name, err)
	}
	if _, err := compressed.Seek(0, io.SeekStart); err != nil {
		return fileError("seek", name+tempSuffix, err)
	}
	zr := zstd.NewReader(compressed)
	defer zr.Close()
	a, b := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(src, a)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return fileError("read", name, err)
		}
		m, zerr := io.ReadFull(zr, b[:n])
		if zerr != nil && !(n == 0 && errors.Is(zerr, io.EOF)) {
			return fmt.Errorf("walarchive: %s%s does not decompress to %s: %w", name, tempSuffix, name, zerr)
		}
		if !bytes.Equal(a[:n], b[:m]) {
			return fmt.Errorf("walarchive: %s%s does not decompress to %s's bytes", name, tempSuffix, name)
		}
		if n < len(a) {
			break
		}
	}
	// Nothing may follow.
	if n, err := zr.Read(b[:1]); n > 0 || (err != nil && err != io.EOF) {
		return fmt.Errorf("walarchive: %s%s decompresses to more than %s", name, tempSuffix, name)
	}
	return nil
}

// cleanTemp removes what compressions a crash interrupted left in dir
// (NAME.zst.tmp; NAME is still there), and fsyncs the directory when it
// removed any.
func cleanTemp(dir *os.Root) error {
	entries, err := readDir(dir)
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		base, ok := strings.CutSuffix(e.Name(), tempSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if n, err := ParseName(base, 1<<20); err != nil || n.Kind != Segment {
			continue
		}
		if err := dir.Remove(e.Name()); err != nil {
			return fileError("remove", e.Name(), err)
		}
		removed = true
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}

// readDir lists the archive directory.
func readDir(dir *os.Root) ([]fs.DirEntry, error) {
	d, err := dir.Open(".")
	if err != nil {
		return nil, fileError("open", "the archive directory", err)
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil, fileError("read", "the archive directory", err)
	}
	return entries, nil
}
