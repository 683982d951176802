package commands

import (
	"context"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Conn is what a command sees of the client's session while it runs: SQL
// executed on the client's own backend connection, inside whatever
// transaction the client is in, as the client's own role.
//
// Exec and ExecBatch take no context: a statement on the client's session
// is cancelled the way any of the client's statements is. The client's
// CancelRequest reaches the server, which cancels the running statement,
// and Exec returns the server's 57014 as a *ServerError, which ends the
// command; a client that goes away closes the session, and the server
// rolls the transaction back. Only standalone commands, which work on
// connections of their own, get a context that a cancel request ends
// (see Prepared.Execute).
type Conn interface {
	// Exec runs one statement with optional text parameters (nil means
	// NULL) and returns its result. An error from the server is a *ServerError;
	// after one the transaction is failed and Exec must not be called again.
	Exec(sql string, args ...*string) (*Result, error)
	// ExecBatch runs statements pipelined (one round trip), discarding
	// their results, and stops at the first error, returning it and the
	// index of the failing statement.
	ExecBatch(sqls []string) (failed int, err error)
	// Notice sends a NoticeResponse to the client at once.
	Notice(severity, message, detail string)
	// User and Database are the startup parameters of the session.
	User() string
	Database() string
}

// Result is the outcome of one statement run by Conn.Exec.
type Result struct {
	Tag    string
	Fields []string
	// Rows hold text-format values; a nil value is NULL.
	Rows [][][]byte
}

// Column describes one column of the rows a command returns.
type Column struct {
	Name string
	// TypeOID is the PostgreSQL type of the column, e.g. 25 for text.
	TypeOID uint32
}

// Outcome is what a successful command returns to the client.
type Outcome struct {
	// Tag is the CommandComplete tag, e.g. "INSTALL EXTENSION".
	Tag string
	// Rows are text values matching Prepared.Columns; nil values are NULL.
	Rows [][]*string
}

// Prepared is a parsed command statement, ready to run (possibly many
// times, as a prepared statement).
type Prepared interface {
	// Columns describes the rows Execute returns; nil when none.
	Columns() []Column
	// Execute runs the command over c. Errors are *pgerr.Error for problems
	// the command detects and *ServerError for ones the server reported.
	Execute(ctx context.Context, c Conn) (*Outcome, error)
}

// Standalone is implemented by prepared commands that do not run on the
// client's session (BASE BACKUP runs on the proxy's own connections): like
// VACUUM they refuse to run inside a transaction block or a multi-statement
// query, and a cancel request or the client leaving cancels the context
// Execute gets.
type Standalone interface {
	Standalone()
}

// Parser is implemented by commands: it parses a statement whose leading
// keywords matched. Syntax errors are *pgerr.Error with SQLSTATE 42601 and
// a position relative to sql.
type Parser interface {
	Parse(sql string) (Prepared, error)
}

// ServerError is an ErrorResponse the server sent while a command ran. Raw
// is the whole message, relayed to the client unchanged.
type ServerError struct {
	Raw     []byte
	Code    pgerr.Code
	Message string
}

// Error implements error.
func (e *ServerError) Error() string { return e.Message + " (SQLSTATE " + string(e.Code) + ")" }

// WithContext returns a copy of e whose CONTEXT (the Where field) ends with
// line, as PostgreSQL adds a line for each level a statement ran in.
func (e *ServerError) WithContext(line string) *ServerError {
	var er pgproto3.ErrorResponse
	if err := er.Decode(e.Raw[5:]); err != nil {
		return e
	}
	if er.Where != "" {
		er.Where += "\n"
	}
	er.Where += line
	raw, err := er.Encode(nil)
	if err != nil {
		return e
	}
	return &ServerError{Raw: raw, Code: e.Code, Message: e.Message}
}
