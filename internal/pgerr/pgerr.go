// Package pgerr builds the ErrorResponse messages pgverbs sends itself, with
// SQLSTATE codes as a named type so that a bare string cannot slip in.
package pgerr

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Code is a SQLSTATE code as defined in PostgreSQL's errcodes.txt. Every
// condition has a constant (codes.go, generated from that file).
type Code string

//go:generate go run ../tools/gencodes -o codes.go /usr/share/postgresql/15/errcodes.txt

// Severity is the severity of an ErrorResponse.
type Severity string

// Severities pgverbs sends. FATAL means the connection is closed after the
// message, with no ReadyForQuery.
const (
	SeverityError Severity = "ERROR"
	SeverityFatal Severity = "FATAL"
)

// Error is an error destined for a client as an ErrorResponse.
type Error struct {
	Severity Severity
	Code     Code
	Message  string
	Detail   string
	Hint     string
	Position int32 // 1-based character position in the query, 0 when none

	// cause is what went wrong underneath, for errors.Is and errors.As; it
	// never reaches the wire.
	cause error
}

// Unwrap returns the error's cause, if it has one.
func (e *Error) Unwrap() error { return e.cause }

// WithCause records what went wrong underneath (a sentinel, an I/O error)
// and returns e. Like WithDetail and WithHint it is for building an error
// before it is returned, never for changing one already shared.
func (e *Error) WithCause(err error) *Error {
	e.cause = err
	return e
}

// WithDetail sets the DETAIL field and returns e.
func (e *Error) WithDetail(format string, args ...any) *Error {
	e.Detail = fmt.Sprintf(format, args...)
	return e
}

// WithHint sets the HINT field and returns e.
func (e *Error) WithHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// FromServer turns an error the server reported on one of pgverbs's own
// connections into one for the client, keeping code, message, detail and
// hint, and pe as the cause. The severity is ERROR whatever the server's:
// the connection that failed was the proxy's, not the client's session.
// The position is dropped, since it points into a statement the client
// never wrote.
func FromServer(pe *pgconn.PgError) *Error {
	code := Code(pe.Code)
	if code == "" {
		code = InternalError
	}
	return &Error{Severity: SeverityError, Code: code, Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint, cause: pe}
}

// Error implements the error interface in the form psql prints.
func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
}

// New returns an ERROR-severity error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Severity: SeverityError, Code: code, Message: fmt.Sprintf(format, args...)}
}

// NewFatal returns a FATAL-severity error with a formatted message.
func NewFatal(code Code, format string, args ...any) *Error {
	return &Error{Severity: SeverityFatal, Code: code, Message: fmt.Sprintf(format, args...)}
}

// AppendWire appends the ErrorResponse for e to dst.
func (e *Error) AppendWire(dst []byte) []byte {
	msg := pgproto3.ErrorResponse{
		Severity:            string(e.Severity),
		SeverityUnlocalized: string(e.Severity),
		Code:                string(e.Code),
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
		Position:            e.Position,
	}
	out, err := msg.Encode(dst)
	if err != nil {
		// Encode only fails for messages over 1 GiB, which our own errors never are.
		panic(fmt.Sprintf("pgerr: encode ErrorResponse: %v", err))
	}
	return out
}

// IsFatalResponse reports whether the body of a backend ErrorResponse ('E')
// message has severity FATAL or PANIC, after which the server closes the
// connection. The unlocalized 'V' field wins over the localized 'S' one.
func IsFatalResponse(body []byte) bool {
	fatal := false
	for i := 0; i < len(body) && body[i] != 0; {
		field := body[i]
		j := i + 1
		for j < len(body) && body[j] != 0 {
			j++
		}
		v := string(body[i+1 : j])
		switch field {
		case 'V':
			return v == "FATAL" || v == "PANIC"
		case 'S':
			fatal = v == "FATAL" || v == "PANIC"
		}
		i = j + 1
	}
	return fatal
}
