package localauth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
)

// maxFileSize bounds what Load reads: a userlist is a few lines per role,
// so anything this large is the wrong file, not a big cluster.
const maxFileSize = 16 << 20

// ErrPermissions is the cause of Load's error for a file that users other
// than its owner (and, for a root-owned file, its group) may read or write.
var ErrPermissions = errors.New("auth file permissions allow group or other access")

// File is a parsed auth file. It is immutable, so safe for concurrent use;
// a reload is a new Load whose result replaces the old one.
type File struct {
	entries map[string]Entry
}

// ParseError is a line of an auth file that Load or Parse could not
// understand. It never quotes a password.
type ParseError struct {
	Path string // the file, "" for Parse
	Line int    // 1-based
	Msg  string
}

// Error returns "path:line: message", or "line N: message" from Parse.
func (e *ParseError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
}

// Load reads and parses the auth file at path.
//
// The file holds password equivalents: an md5 hash authenticates as is, and
// a SCRAM verifier allows an offline dictionary attack and lets its holder
// pose as the server. So, unlike PgBouncer, Load refuses a file with group
// or other permissions (the rule libpq applies to .pgpass), except that a
// root-owned file may be group-readable (0640), which is how packages and
// Kubernetes' fsGroup share a secret with a service: PostgreSQL allows its
// ssl_key_file the same way. The check is skipped on Windows, whose mode
// bits mean nothing here.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("auth file %s: not a regular file", path)
	}
	if runtime.GOOS != "windows" {
		if err := checkPermissions(path, fi); err != nil {
			return nil, err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("auth file %s: larger than %d MiB", path, maxFileSize>>20)
	}
	file, err := Parse(data)
	if pe, ok := errors.AsType[*ParseError](err); ok {
		pe.Path = path
	}
	return file, err
}

func checkPermissions(path string, fi os.FileInfo) error {
	perm := fi.Mode().Perm()
	allowed := os.FileMode(0o600)
	if ownedByRoot(fi) {
		allowed = 0o640
	}
	if perm&^allowed == 0 {
		return nil
	}
	return fmt.Errorf("auth file %s has permissions %04o: it must be u=rw (0600) or less, "+
		"or u=rw,g=r (0640) or less if owned by root: %w", path, perm, ErrPermissions)
}

// Parse parses the contents of an auth file; Load is Parse after reading
// the file and checking its permissions.
func Parse(data []byte) (*File, error) {
	f := &File{entries: make(map[string]Entry)}
	lines := make(map[string]int) // user → line, for duplicates
	for n := 1; len(data) > 0; n++ {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		user, password, ok, msg := parseLine(line)
		if msg != "" {
			return nil, &ParseError{Line: n, Msg: msg}
		}
		if !ok {
			continue
		}
		if prev, dup := lines[user]; dup {
			return nil, &ParseError{Line: n, Msg: fmt.Sprintf("user %q is already listed on line %d", user, prev)}
		}
		e, err := NewEntry(user, password)
		if err != nil {
			return nil, &ParseError{Line: n, Msg: err.Error()}
		}
		lines[user] = n
		f.entries[user] = e
	}
	return f, nil
}

// parseLine reads one line: ok is false for a blank or comment line, msg
// says what is wrong with a broken one.
func parseLine(line []byte) (user, password string, ok bool, msg string) {
	rest := trimSpace(line)
	if len(rest) == 0 || rest[0] == ';' || rest[0] == '#' {
		return "", "", false, ""
	}
	if bytes.IndexByte(rest, 0) >= 0 {
		return "", "", false, "NUL byte in line"
	}
	user, rest, msg = quoted(rest, "user name")
	if msg != "" {
		return "", "", false, msg
	}
	if len(rest) == 0 || !isSpace(rest[0]) {
		return "", "", false, fmt.Sprintf("expected white space and a quoted password after user %q", user)
	}
	password, rest, msg = quoted(trimSpace(rest), "password")
	if msg != "" {
		return "", "", false, fmt.Sprintf("%s for user %q", msg, user)
	}
	if rest = trimSpace(rest); len(rest) > 0 && rest[0] != ';' && rest[0] != '#' {
		return "", "", false, fmt.Sprintf("unexpected text after the password of user %q", user)
	}
	return user, password, true, ""
}

// quoted reads a double-quoted value at the start of s, where "" stands for
// one quote; what names the value in the message of a malformed one.
func quoted(s []byte, what string) (value string, rest []byte, msg string) {
	if len(s) == 0 || s[0] != '"' {
		return "", nil, "expected a quoted " + what
	}
	var v []byte
	for i := 1; i < len(s); i++ {
		if s[i] != '"' {
			v = append(v, s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '"' {
			v = append(v, '"')
			i++
			continue
		}
		return string(v), s[i+1:], ""
	}
	return "", nil, "unterminated quoted " + what
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

func trimSpace(s []byte) []byte {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// Lookup returns the entry of user. The name is matched exactly, as
// PostgreSQL matches role names.
func (f *File) Lookup(user string) (Entry, bool) {
	e, ok := f.entries[user]
	return e, ok
}

// Len returns the number of users in the file.
func (f *File) Len() int { return len(f.entries) }
