// Package pgerr builds the ErrorResponse messages pgverbs sends itself, with
// SQLSTATE codes as a named type so that a bare string cannot slip in.
package pgerr

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Code is a SQLSTATE code as defined in PostgreSQL's errcodes.txt.
type Code string

// SQLSTATE codes used by pgverbs. Names follow PostgreSQL's condition names.
const (
	ProtocolViolation       Code = "08P01"
	ConnectionFailure       Code = "08006"
	CannotConnectNow        Code = "57P03"
	AdminShutdown           Code = "57P01"
	TooManyConnections      Code = "53300"
	FeatureNotSupported     Code = "0A000"
	InvalidPassword         Code = "28P01"
	InvalidAuthSpec         Code = "28000"
	QueryCanceled           Code = "57014"
	SyntaxError             Code = "42601"
	InternalError           Code = "XX000"
	InvalidTransactionState Code = "25000"
	InFailedTransaction     Code = "25P02"
	ActiveSQLTransaction    Code = "25001"
	// Extension commands.
	InvalidSchemaName          Code = "3F000"
	DependentObjectsStillExist Code = "2BP01"

	// Extension packages (package extension).
	UndefinedObject              Code = "42704"
	DuplicateObject              Code = "42710"
	InvalidParameterValue        Code = "22023"
	InvalidObjectDefinition      Code = "42P17"
	ObjectNotInPrerequisiteState Code = "55000"
	InsufficientPrivilege        Code = "42501"
	UndefinedFile                Code = "58P01"
	IOError                      Code = "58030"
	CharacterNotInRepertoire     Code = "22021"
	ProgramLimitExceeded         Code = "54000"
)

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
