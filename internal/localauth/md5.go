package localauth

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// md5 runs the md5 challenge against hash, the hex digits of
// md5(password + user): the client proves it knows hash by sending
// "md5" + md5(hash + salt), as PostgreSQL's CheckMD5Auth expects.
func (x *exchange) md5(hash string) error {
	var salt [4]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return pgerr.NewFatal(pgerr.InternalError, "could not generate random MD5 salt").WithCause(err)
	}
	if err := x.send(&pgproto3.AuthenticationMD5Password{Salt: salt}); err != nil {
		return err
	}
	body, err := x.receive("password")
	if err != nil {
		return err
	}
	// The body is one NUL-terminated string, as recv_password_packet checks
	// (an empty body has no terminator, though IndexByte's -1 is len-1).
	if len(body) == 0 || bytes.IndexByte(body, 0) != len(body)-1 {
		return pgerr.Protocol("invalid password packet size")
	}
	if len(body) == 1 {
		return pgerr.NewFatal(pgerr.InvalidPassword, "empty password returned by client")
	}
	sum := md5.Sum(append([]byte(hash), salt[:]...))
	want := append([]byte("md5"), hex.EncodeToString(sum[:])...)
	if subtle.ConstantTimeCompare(body[:len(body)-1], want) != 1 {
		return authFailed(x.user).WithCause(ErrPasswordMismatch)
	}
	return nil
}
