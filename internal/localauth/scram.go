package localauth

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// The SCRAM exchange of PostgreSQL's auth-sasl.c and auth-scram.c, with
// their checks in their order and their error texts, so that a client sees
// from pgverbs what it would see from the server. Hand-written rather than
// built on a SCRAM library: those texts need our own parsing of both client
// messages, and what is left is four HMACs.

const (
	scramMechanism = "SCRAM-SHA-256"
	// rawNonceLen and saltLen are PostgreSQL's SCRAM_RAW_NONCE_LEN and
	// SCRAM_DEFAULT_SALT_LEN; defaultIterations its SCRAM_DEFAULT_ITERATIONS.
	rawNonceLen       = 18
	saltLen           = 16
	defaultIterations = 4096
)

// scram runs the exchange against sec.
func (x *exchange) scram(sec *scramSecret) error {
	if err := x.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{scramMechanism}}); err != nil {
		return err
	}
	body, err := x.receive("SASL")
	if err != nil {
		return err
	}
	first, present, perr := parseInitialResponse(body)
	if perr != nil {
		return perr
	}
	if !present {
		// No initial response: an empty challenge asks for it, as in
		// PostgreSQL, and the client-first message comes in a SASLResponse.
		if err := x.send(&pgproto3.AuthenticationSASLContinue{}); err != nil {
			return err
		}
		if first, err = x.receive("SASL"); err != nil {
			return err
		}
	}
	if perr := checkInput(first); perr != nil {
		return perr
	}
	cf, perr := parseClientFirst(string(first))
	if perr != nil {
		return perr
	}

	var raw [rawNonceLen]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return pgerr.NewFatal(pgerr.InternalError, "could not generate random nonce").WithCause(err)
	}
	serverNonce := base64.StdEncoding.EncodeToString(raw[:])
	serverFirst := "r=" + cf.nonce + serverNonce + ",s=" + sec.salt + ",i=" + strconv.Itoa(sec.iterations)
	if err := x.send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)}); err != nil {
		return err
	}

	final, err := x.receive("SASL")
	if err != nil {
		return err
	}
	if perr := checkInput(final); perr != nil {
		return perr
	}
	cl, perr := parseClientFinal(string(final), cf.flag)
	if perr != nil {
		return perr
	}
	if cl.nonce != cf.nonce+serverNonce {
		return pgerr.Protocol("invalid SCRAM response").WithDetail("Nonce does not match.")
	}

	authMessage := []byte(cf.bare + "," + serverFirst + "," + cl.withoutProof)
	clientKey := hmacSHA256(sec.storedKey[:], authMessage)
	subtle.XORBytes(clientKey, clientKey, cl.proof[:]) // ClientSignature XOR proof
	storedKey := sha256.Sum256(clientKey)
	// The proof is checked even when doomed, as in PostgreSQL, so that the
	// work done does not tell a missing user from a wrong password.
	match := subtle.ConstantTimeCompare(storedKey[:], sec.storedKey[:]) == 1
	if x.doomed {
		return authFailed(x.user).WithCause(ErrNoSuchUser)
	}
	if !match {
		return authFailed(x.user).WithCause(ErrPasswordMismatch)
	}
	serverSignature := hmacSHA256(sec.serverKey[:], authMessage)
	v := "v=" + base64.StdEncoding.EncodeToString(serverSignature)
	return x.send(&pgproto3.AuthenticationSASLFinal{Data: []byte(v)})
}

// deriveSecret makes a verifier for a plain password with a fresh salt,
// as PostgreSQL's scram_build_secret does at CREATE ROLE.
func deriveSecret(password string) (scramSecret, error) {
	var sec scramSecret
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return sec, err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, defaultIterations, keyLen)
	if err != nil {
		return sec, err
	}
	sec.iterations = defaultIterations
	sec.salt = base64.StdEncoding.EncodeToString(salt)
	sec.storedKey = sha256.Sum256(hmacSHA256(salted, []byte("Client Key")))
	copy(sec.serverKey[:], hmacSHA256(salted, []byte("Server Key")))
	return sec, nil
}

// mockKey makes mock salts unpredictable from outside and stable within
// a process, like PostgreSQL's per-cluster mock authentication nonce.
var mockKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}()

// mockSecret is the made-up verifier of a user not in the file: its salt
// is the same on every attempt, as a real verifier's would be, so that
// asking twice does not reveal that the user is missing.
func mockSecret(user string) scramSecret {
	salt := hmacSHA256(mockKey, []byte(user))[:saltLen]
	return scramSecret{iterations: defaultIterations, salt: base64.StdEncoding.EncodeToString(salt)}
}

func hmacSHA256(key, msg []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg)
	return h.Sum(nil)
}

// parseInitialResponse splits a SASLInitialResponse body into the client's
// data and whether it sent any (length -1 means none), checking the fields
// in CheckSASLAuth's order.
func parseInitialResponse(body []byte) (data []byte, present bool, _ *pgerr.Error) {
	mech, rest, ok := bytes.Cut(body, []byte{0})
	if !ok {
		return nil, false, pgerr.Protocol("invalid string in message")
	}
	if string(mech) != scramMechanism {
		return nil, false, pgerr.Protocol("client selected an invalid SASL authentication mechanism")
	}
	if len(rest) < 4 {
		return nil, false, pgerr.Protocol("insufficient data left in message")
	}
	n := int32(binary.BigEndian.Uint32(rest))
	rest = rest[4:]
	if n == -1 {
		if len(rest) != 0 {
			return nil, false, pgerr.Protocol("invalid message format")
		}
		return nil, false, nil
	}
	if n < 0 || int(n) > len(rest) {
		return nil, false, pgerr.Protocol("insufficient data left in message")
	}
	if int(n) != len(rest) {
		return nil, false, pgerr.Protocol("invalid message format")
	}
	return rest, true, nil
}

// checkInput is scram_exchange's check of a message before parsing: the
// C code reads it as a string, so a NUL would cut it short.
func checkInput(in []byte) *pgerr.Error {
	if len(in) == 0 {
		return malformed("The message is empty.")
	}
	if bytes.IndexByte(in, 0) >= 0 {
		return malformed("Message length does not match input length.")
	}
	return nil
}

func malformed(detail string, args ...any) *pgerr.Error {
	return pgerr.Protocol("malformed SCRAM message").WithDetail(detail, args...)
}

// clientFirst is what the exchange keeps of the client-first message.
type clientFirst struct {
	flag  byte   // gs2 channel-binding flag: 'n' or 'y'
	bare  string // client-first-message-bare, part of AuthMessage
	nonce string
}

// parseClientFirst is read_client_first_message for a server that offers
// no channel binding.
func parseClientFirst(s string) (clientFirst, *pgerr.Error) {
	var cf clientFirst
	c := cursor{s: s}
	cf.flag = c.cur()
	switch cf.flag {
	case 'n', 'y':
		// 'y': the client can bind but saw no -PLUS offered; true, we offer none.
		c.i++
		if c.cur() != ',' {
			return cf, malformed("Comma expected, but found character \"%s\".", sanitizeChar(c.cur()))
		}
		c.i++
	case 'p':
		return cf, malformed("The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.")
	default:
		return cf, malformed("Unexpected channel-binding flag \"%s\".", sanitizeChar(cf.flag))
	}
	if c.cur() == 'a' {
		return cf, pgerr.NewFatal(pgerr.FeatureNotSupported, "client uses authorization identity, but it is not supported")
	}
	if c.cur() != ',' {
		return cf, malformed("Unexpected attribute \"%s\" in client-first-message.", sanitizeChar(c.cur()))
	}
	c.i++
	cf.bare = s[c.i:]
	if c.cur() == 'm' {
		return cf, pgerr.NewFatal(pgerr.FeatureNotSupported, "client requires an unsupported SCRAM extension")
	}
	// The user name is ignored: the StartupMessage's counts, as in PostgreSQL.
	if _, perr := c.attrValue('n'); perr != nil {
		return cf, perr
	}
	var perr *pgerr.Error
	if cf.nonce, perr = c.attrValue('r'); perr != nil {
		return cf, perr
	}
	for i := 0; i < len(cf.nonce); i++ {
		if b := cf.nonce[i]; b < 0x21 || b > 0x7e || b == ',' {
			return cf, pgerr.Protocol("non-printable characters in SCRAM nonce")
		}
	}
	for c.i < len(c.s) { // optional extensions, ignored
		if _, _, perr := c.anyAttr(); perr != nil {
			return cf, perr
		}
	}
	return cf, nil
}

// clientFinal is what the exchange needs of the client-final message.
type clientFinal struct {
	nonce        string
	withoutProof string // client-final-message-without-proof, part of AuthMessage
	proof        [keyLen]byte
}

// parseClientFinal is read_client_final_message without channel binding;
// flag is the client-first message's, which the c= attribute must repeat.
func parseClientFinal(s string, flag byte) (clientFinal, *pgerr.Error) {
	var cl clientFinal
	c := cursor{s: s}
	cb, perr := c.attrValue('c')
	if perr != nil {
		return cl, perr
	}
	// "biws" and "eSws" are base64 of the gs2 headers "n,," and "y,,".
	if !(cb == "biws" && flag == 'n') && !(cb == "eSws" && flag == 'y') {
		return cl, pgerr.Protocol("unexpected SCRAM channel-binding attribute in client-final-message")
	}
	if cl.nonce, perr = c.attrValue('r'); perr != nil {
		return cl, perr
	}
	var proofStart int
	var value string
	for { // extensions, ignored, up to the proof
		proofStart = c.i - 1 // the comma before the attribute
		var attr byte
		if attr, value, perr = c.anyAttr(); perr != nil {
			return cl, perr
		}
		if attr == 'p' {
			break
		}
	}
	proof, err := base64.StdEncoding.DecodeString(value)
	if err != nil || len(proof) != keyLen {
		return cl, malformed("Malformed proof in client-final-message.")
	}
	copy(cl.proof[:], proof)
	if c.i < len(c.s) {
		return cl, malformed("Garbage found at the end of client-final-message.")
	}
	cl.withoutProof = s[:proofStart]
	return cl, nil
}

// cursor reads SCRAM attributes as auth-scram.c's read_attr_value and
// read_any_attr do: a value runs to the next comma, which is consumed.
type cursor struct {
	s string
	i int
}

// cur returns the byte at the cursor, 0 at the end as C's terminator.
func (c *cursor) cur() byte {
	if c.i < len(c.s) {
		return c.s[c.i]
	}
	return 0
}

func (c *cursor) attrValue(attr byte) (string, *pgerr.Error) {
	if c.cur() != attr {
		return "", malformed("Expected attribute \"%c\" but found \"%s\".", attr, sanitizeChar(c.cur()))
	}
	c.i++
	if c.cur() != '=' {
		return "", malformed("Expected character \"=\" for attribute \"%c\".", attr)
	}
	c.i++
	return c.value(), nil
}

func (c *cursor) anyAttr() (byte, string, *pgerr.Error) {
	attr := c.cur()
	if attr == 0 {
		return 0, "", malformed("Attribute expected, but found end of string.")
	}
	if (attr < 'A' || attr > 'Z') && (attr < 'a' || attr > 'z') {
		return 0, "", malformed("Attribute expected, but found invalid character \"%s\".", sanitizeChar(attr))
	}
	c.i++
	if c.cur() != '=' {
		return 0, "", malformed("Expected character \"=\" for attribute \"%c\".", attr)
	}
	c.i++
	return attr, c.value(), nil
}

func (c *cursor) value() string {
	start := c.i
	for c.i < len(c.s) && c.s[c.i] != ',' {
		c.i++
	}
	v := c.s[start:c.i]
	if c.i < len(c.s) {
		c.i++
	}
	return v
}

// sanitizeChar is auth-scram.c's rendering of a byte in an error message.
func sanitizeChar(b byte) string {
	if b >= 0x21 && b <= 0x7e {
		return fmt.Sprintf("'%c'", b)
	}
	return fmt.Sprintf("0x%02x", b)
}
