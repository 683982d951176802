package localauth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
)

// maxAuthMessage is PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH, the largest
// length (header's count, itself included) it reads for a password or SASL
// message.
const maxAuthMessage = 65535

// Causes of the 28P01 errors, for the caller's log: PostgreSQL tells the
// client only "password authentication failed" and says why in its own log.
var (
	// ErrPasswordMismatch: the client's proof or hash does not match the entry.
	ErrPasswordMismatch = errors.New("password does not match")
	// ErrNoSuchUser: the user is not in the auth file.
	ErrNoSuchUser = errors.New("user is not in the auth file")
)

// Authenticate runs the authentication exchange for e with a client whose
// StartupMessage, naming user, the caller has read. rw is the client
// connection, buffered by the caller: Authenticate flushes it (when it has
// a Flush method) each time it waits for the client, and reads exactly the
// client's authentication messages, nothing beyond.
//
// It returns nil once the password is proven, having sent
// AuthenticationSASLFinal for SCRAM; the caller then sends AuthenticationOk
// and the rest of its startup reply. A failure the client caused is a FATAL
// *pgerr.Error for the caller to send before closing: 28P01 for a wrong
// password (cause ErrPasswordMismatch), 08P01 or 0A000 for a message that
// breaks the protocol, all in PostgreSQL's words. A failed read or write
// is returned wrapped as is: the connection is gone, there is no one to tell.
//
// For a user absent from the file the caller may send NoSuchUser at once,
// or pass the zero Entry: Authenticate then runs a SCRAM exchange with a
// made-up verifier that fails like a wrong password (cause ErrNoSuchUser),
// as PostgreSQL does so that a client cannot tell from the exchange which
// roles exist.
func Authenticate(rw io.ReadWriter, user string, e Entry) error {
	x := &exchange{rw: rw, user: user}
	if e.method == 0 {
		sec := mockSecret(user)
		x.doomed = true
		return x.scram(&sec)
	}
	switch e.method {
	case MethodMD5:
		return x.md5(e.md5)
	case MethodSCRAM:
		secret := e.scram
		if e.plain != "" {
			var err error
			if secret, err = deriveSecret(e.plain); err != nil {
				return pgerr.NewFatal(pgerr.InternalError, "could not derive SCRAM keys").WithCause(err)
			}
		}
		return x.scram(&secret)
	}
	return authFailed(user).WithCause(fmt.Errorf("localauth: entry of unknown method %v", e.method))
}

// NoSuchUser is FATAL 28P01 for a user absent from the auth file, with the
// text of a wrong password: PostgreSQL does not reveal whether a role
// exists. Its cause is ErrNoSuchUser.
func NoSuchUser(user string) *pgerr.Error {
	return authFailed(user).WithCause(ErrNoSuchUser)
}

// authFailed is PostgreSQL's auth_failed() for the password methods.
func authFailed(user string) *pgerr.Error {
	return pgerr.NewFatal(pgerr.InvalidPassword, `password authentication failed for user "%s"`, user)
}

// exchange is one client's authentication conversation.
type exchange struct {
	rw     io.ReadWriter
	user   string
	doomed bool // a mock exchange for a user not in the file: it must fail
	buf    []byte
}

// send writes msg and flushes, since the client answers only what it has
// received.
func (x *exchange) send(msg pgproto3.BackendMessage) error {
	out, err := msg.Encode(x.buf[:0])
	if err != nil {
		return fmt.Errorf("localauth: encode %T: %w", msg, err)
	}
	x.buf = out
	if _, err := x.rw.Write(out); err != nil {
		return fmt.Errorf("localauth: send %T: %w", msg, err)
	}
	if f, ok := x.rw.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return fmt.Errorf("localauth: send %T: %w", msg, err)
		}
	}
	return nil
}

// receive reads the client's next message, which must be a 'p' message
// (PasswordMessage, SASLInitialResponse or SASLResponse: the same type
// byte), and returns its body. what names the expected response in the
// error, as PostgreSQL words it.
func (x *exchange) receive(what string) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(x.rw, hdr[:]); err != nil {
		return nil, fmt.Errorf("localauth: read %s response: %w", what, err)
	}
	if pgwire.Frontend(hdr[0]) != pgwire.Password {
		return nil, pgerr.Protocol(fmt.Sprintf("expected %s response, got message type %d", what, hdr[0]))
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n > maxAuthMessage {
		return nil, pgerr.Protocol("invalid message length")
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(x.rw, body); err != nil {
		return nil, fmt.Errorf("localauth: read %s response: %w", what, err)
	}
	return body, nil
}
