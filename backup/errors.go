package backup

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"strconv"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Sentinel errors, for errors.Is: the *pgerr.Error values Run and
// ResolveTarget return have them as their cause.
var (
	// ErrDisabled is wrapped by the SQLSTATE 55000 error Run and
	// ResolveTarget return when no backup root is configured.
	ErrDisabled = errors.New("base backups are disabled")
	// ErrOutsideRoot is wrapped by the SQLSTATE 42501 error for a target
	// that lies, or leads through a symbolic link, outside the backup root.
	ErrOutsideRoot = errors.New("backup target outside the backup root")
	// ErrTargetExists is wrapped by the SQLSTATE 42P04 error for a target
	// that exists and is not an empty directory.
	ErrTargetExists = errors.New("backup target exists")
	// ErrTargetInUse is wrapped by the SQLSTATE 55006 error for a target
	// another BASE BACKUP is writing to.
	ErrTargetInUse = errors.New("backup target in use")
)

// canceledError is what Run returns when its context ends.
func canceledError(ctx context.Context) error {
	cause := context.Cause(ctx)
	if cause == nil {
		cause = context.Canceled
	}
	msg := "canceling statement due to user request"
	if errors.Is(cause, context.DeadlineExceeded) {
		msg = "canceling statement due to statement timeout"
	}
	return pgerr.New(pgerr.QueryCanceled, "%s", msg).WithCause(cause)
}

// quote renders a user-supplied value the way %q does, so that control
// characters cannot corrupt a message or a log line.
func quote(s string) string { return strconv.Quote(s) }

// fileError turns a failed file operation into a wire error. Only the
// errno text of a *fs.PathError is kept: its path would show clients where
// the backup root is. name is relative to the target, as the user sees it.
func fileError(op, name string, err error) error {
	var pgErr *pgerr.Error
	if errors.As(err, &pgErr) {
		return err
	}
	reason := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err
	}
	code := pgerr.IOError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		code = pgerr.UndefinedFile
	case errors.Is(err, fs.ErrPermission):
		code = pgerr.InsufficientPrivilege
	case errors.Is(err, syscall.ENOSPC):
		code = pgerr.DiskFull
	}
	return pgerr.New(code, "could not %s %s in the backup: %v", op, quote(name), reason).WithCause(err)
}

// serverError turns an error from a server connection into a wire error:
// the server's own ErrorResponse is passed on as it is, anything else is a
// lost connection.
func serverError(what string, err error) error {
	var pgErr *pgerr.Error
	if errors.As(err, &pgErr) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		e := pgerr.FromServer(pe)
		if e.Code == pgerr.DataCorrupted && what == "BASE_BACKUP" {
			// Unlike pg_basebackup, which keeps such a backup, Run removes
			// it like any failed one; say so, and how to get one anyway.
			if e.Detail == "" {
				e.Detail = "Data pages of the cluster failed checksum verification (the server log names them); the backup was removed."
			}
			if e.Hint == "" {
				e.Hint = "Check the cluster for corruption (pg_checksums, pg_amcheck); VERIFY_CHECKSUMS off takes the backup with the pages as they are."
			}
		}
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || pgconn.Timeout(err) {
		return pgerr.New(pgerr.ConnectionFailure, "lost connection to the server during %s: %v", what, err).WithCause(err)
	}
	return pgerr.New(pgerr.ConnectionFailure, "%s failed: %v", what, err).WithCause(err)
}

// protocolError reports a server answer the backup cannot make sense of.
func protocolError(format string, args ...any) error {
	return pgerr.New(pgerr.ProtocolViolation, format, args...)
}
