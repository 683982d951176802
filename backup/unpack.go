package backup

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// tablespacesDir is where plain-format backups keep tablespace contents,
// relative to the backup directory; pg_tblspc/OID links to
// ../tablespacesDir/OID.
const tablespacesDir = "tablespaces"

// Unpack extracts the tar archive read from r into the existing directory
// dir, as it arrives (no temporary file), and returns the number of regular
// files and their total size. It is the plain-format half of a backup and
// trusts nothing in the archive:
//
//   - entry names are cleaned; absolute names, names with ".." that climb
//     out of dir, and names leading through a symbolic link are refused;
//     all access goes through an os.Root, so nothing lands outside dir;
//   - regular files are created 0600 and must not exist yet (a duplicate
//     entry is an error), directories 0700 (existing ones are kept);
//   - the only symbolic links allowed are pg_tblspc/OID, the tablespace
//     links of a base backup; whatever they point to in the archive, they
//     are written as relative links to ../tablespaces/OID, where a plain
//     backup keeps tablespace OID (or, within Run, to the directory a
//     TABLESPACE_MAP gives);
//   - hard links, devices, FIFOs and other entry types are refused.
//
// Trailing zero blocks are optional (PostgreSQL 15's stream omits them).
// Errors are *pgerr.Error values; on error, what was extracted so far
// stays in dir.
func Unpack(r io.Reader, dir string) (files int, bytes int64, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, 0, fileError("open", ".", err)
	}
	defer root.Close()
	u := &unpacker{root: root, tblspcLinks: true}
	err = u.unpack(r)
	return u.files, u.bytes, err
}

// unpacker extracts tar archives into a root.
type unpacker struct {
	root *os.Root
	// tblspcLinks allows pg_tblspc/OID symbolic links (base.tar only).
	tblspcLinks bool
	// prefix is put before names in messages (e.g. "tablespaces/16385/").
	prefix string
	// link, if set, gives the target of the link pg_tblspc/OID whose
	// target in the archive (the server's location) is location; the
	// default is ../tablespaces/OID.
	link func(oid, location string) string

	files int
	bytes int64
}

func (u *unpacker) unpack(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return protocolError("archive ends in the middle of an entry")
			}
			var pgErr *pgerr.Error
			if errors.As(err, &pgErr) {
				return err
			}
			return protocolError("invalid tar archive: %v", err)
		}
		if err := u.entry(tr, hdr); err != nil {
			return err
		}
	}
}

func (u *unpacker) badEntry(name, format string, args ...any) error {
	return protocolError("refusing tar entry %s: %s", quote(name), fmt.Sprintf(format, args...))
}

func (u *unpacker) entry(tr *tar.Reader, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return u.badEntry(hdr.Name, "sparse files are not supported")
		}
	}
	name, err := entryName(hdr.Name)
	if err != nil {
		return u.badEntry(hdr.Name, "%v", err)
	}
	shown := u.prefix + filepath.ToSlash(name)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if name == "" {
			return nil
		}
		return u.mkdirAll(name, shown, true)
	case tar.TypeReg:
		if name == "" {
			return u.badEntry(hdr.Name, "a file cannot replace the target directory")
		}
		if hdr.Size < 0 {
			return u.badEntry(hdr.Name, "negative size")
		}
		if err := u.mkdirAll(filepath.Dir(name), shown, false); err != nil {
			return err
		}
		f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return u.badEntry(hdr.Name, "duplicate entry")
		}
		if err != nil {
			return fileError("create", shown, err)
		}
		n, err := io.Copy(f, tr)
		if cerr := f.Close(); err == nil && cerr != nil {
			return fileError("write", shown, cerr)
		}
		u.bytes += n
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return protocolError("archive ends in the middle of %s", quote(shown))
			}
			var pgErr *pgerr.Error
			if errors.As(err, &pgErr) {
				return err
			}
			var pe *fs.PathError
			if errors.As(err, &pe) {
				return fileError("write", shown, err)
			}
			return protocolError("reading %s from the archive: %v", quote(shown), err)
		}
		u.files++
		return nil
	case tar.TypeSymlink:
		oid, ok := tblspcLink(name)
		if !ok || !u.tblspcLinks {
			return u.badEntry(hdr.Name, "symbolic links are only allowed for pg_tblspc/OID")
		}
		if err := u.mkdirAll(filepath.Dir(name), shown, false); err != nil {
			return err
		}
		target := "../" + tablespacesDir + "/" + oid
		if u.link != nil {
			target = u.link(oid, hdr.Linkname)
		}
		if err := u.root.Symlink(target, name); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return u.badEntry(hdr.Name, "duplicate entry")
			}
			return fileError("create symbolic link", shown, err)
		}
		return nil
	case tar.TypeLink:
		return u.badEntry(hdr.Name, "hard links are not allowed")
	default:
		return u.badEntry(hdr.Name, "unsupported entry type %q", hdr.Typeflag)
	}
}

// entryName validates and cleans a tar entry name; "" is the directory
// itself.
func entryName(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("empty name")
	}
	if strings.ContainsRune(raw, 0) {
		return "", errors.New("NUL in name")
	}
	if strings.HasPrefix(raw, "/") {
		return "", errors.New("absolute name")
	}
	n := path.Clean(raw)
	if n == "." {
		return "", nil
	}
	if !filepath.IsLocal(n) {
		return "", errors.New("name leads outside the target directory")
	}
	return filepath.FromSlash(n), nil
}

// tblspcLink reports whether name is pg_tblspc/OID and returns the OID.
func tblspcLink(name string) (string, bool) {
	dir, oid := filepath.Split(name)
	if dir != "pg_tblspc"+string(filepath.Separator) || !isOID(oid) {
		return "", false
	}
	return oid, true
}

// isOID reports whether s is a decimal number that fits an OID.
func isOID(s string) bool {
	if s == "" || len(s) > 10 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	var n uint64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + uint64(c-'0')
	}
	return n > 0 && n <= 1<<32-1
}

// mkdirAll creates dir and its missing parents (0700), refusing to pass
// through anything that is not a directory, symbolic links included.
// Without last, dir is a parent of the entry being extracted.
func (u *unpacker) mkdirAll(dir, shown string, last bool) error {
	if dir == "." || dir == "" {
		return nil
	}
	comps := strings.Split(dir, string(filepath.Separator))
	for i := range comps {
		p := filepath.Join(comps[:i+1]...)
		fi, err := u.root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			err = u.root.Mkdir(p, 0o700)
			if errors.Is(err, fs.ErrExist) {
				fi, err = u.root.Lstat(p)
			} else if err == nil {
				continue
			}
		}
		if err != nil {
			return fileError("create directory", u.prefix+filepath.ToSlash(p), err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return u.badEntry(shown, "%s is a symbolic link", quote(u.prefix+filepath.ToSlash(p)))
		}
		if !fi.IsDir() {
			if last && i == len(comps)-1 {
				return u.badEntry(shown, "duplicate entry")
			}
			return u.badEntry(shown, "%s is not a directory", quote(u.prefix+filepath.ToSlash(p)))
		}
	}
	return nil
}
