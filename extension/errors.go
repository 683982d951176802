package extension

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Sentinel errors, for errors.Is: the *pgerr.Error values that carry them
// have them as their cause, so the caller can send them as they are.
var (
	// ErrNotFound is wrapped by the SQLSTATE 42704 error for a package the
	// extensions directory does not hold.
	ErrNotFound = errors.New("extension package not found")
	// ErrOutsideRepo is wrapped by the SQLSTATE 42501 error for a package
	// directory or file that resolves, through a symbolic link, to a path
	// outside the extensions directory.
	ErrOutsideRepo = errors.New("extension package outside the extensions directory")
	// ErrAlreadyInstalled is wrapped by Resolve's SQLSTATE 42710 error for a
	// target that is installed already, which INSTALL EXTENSION IF NOT
	// EXISTS turns into a notice.
	ErrAlreadyInstalled = errors.New("extension already installed")
)

// newErr builds an ERROR with optional detail and hint in one expression.
func newErr(code pgerr.Code, detail, hint, format string, args ...any) *pgerr.Error {
	e := pgerr.New(code, format, args...)
	e.Detail = detail
	e.Hint = hint
	return e
}

// at prefixes a message with "file:line: " the way compilers do, so that a
// package author can jump to the offending line. Line 0 means the whole file.
func at(file string, line int) string {
	if line <= 0 {
		return file + ": "
	}
	return fmt.Sprintf("%s:%d: ", file, line)
}

// fileError turns a failed file access into a wire error.
func fileError(name string, err error) error {
	code, reason := fileErrorCode(err)
	return pgerr.New(code, "could not read file %s: %v", quote(name), reason)
}

// dirError is fileError for the extensions directory itself, whose path is
// the operator's business, not the client's.
func dirError(err error) error {
	code, reason := fileErrorCode(err)
	return pgerr.New(code, "could not read the extensions directory: %v", reason)
}

// fileErrorCode maps a file error to a SQLSTATE as PostgreSQL's
// errcode_for_file_access does, and keeps only the errno text: the
// *fs.PathError would show clients the server's absolute paths.
func fileErrorCode(err error) (pgerr.Code, error) {
	reason := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return pgerr.UndefinedFile, reason
	case errors.Is(err, fs.ErrPermission):
		return pgerr.InsufficientPrivilege, reason
	}
	return pgerr.IOError, reason
}

// quote renders a value for a message the way %q does. Values that come
// from files or clients go through it, because a NUL or control character
// would corrupt the ErrorResponse or the log line.
func quote(s string) string { return strconv.Quote(s) }
