package localauth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Method is how Authenticate checks an entry's password.
type Method int

// The methods, after PostgreSQL's pg_hba ones.
const (
	// MethodSCRAM is SCRAM-SHA-256, for a verifier or a plain password.
	MethodSCRAM Method = iota + 1
	// MethodMD5 is the md5 challenge, for an md5 hash.
	MethodMD5
)

// String returns the method's pg_hba.conf name.
func (m Method) String() string {
	switch m {
	case MethodSCRAM:
		return "scram-sha-256"
	case MethodMD5:
		return "md5"
	}
	return "Method(" + strconv.Itoa(int(m)) + ")"
}

// keyLen is the length of SHA-256 digests, hence of StoredKey, ServerKey
// and the client proof.
const keyLen = 32

// scramPrefix starts every SCRAM-SHA-256 verifier in pg_authid.
const scramPrefix = "SCRAM-SHA-256$"

// scramSecret is a parsed verifier. The salt stays in its base64 form: it is
// sent as is in the server-first message, as PostgreSQL does.
type scramSecret struct {
	iterations int
	salt       string
	storedKey  [keyLen]byte
	serverKey  [keyLen]byte
}

// Entry is one user of an auth file and how to check their password. Its
// String and GoString never show the secret, so that an Entry that reaches
// a log by mistake leaks nothing.
type Entry struct {
	// User is the role name, as listed.
	User string

	method Method
	scram  scramSecret // a verifier
	plain  string      // a plain password, SCRAM keys derived per exchange
	md5    string      // the 32 hex digits after "md5"
}

// NewEntry makes the entry of user from an auth file's password field: a
// SCRAM-SHA-256 verifier, an md5 hash ("md5" and 32 lowercase hex digits,
// PostgreSQL's test) or else a plain password. A value that starts like a
// verifier but does not parse is an error rather than, as in PostgreSQL and
// PgBouncer, a plain password: it is a verifier damaged in copying, and
// taking it for a password would lock the role out when it is needed. A
// plain password must be ASCII (see the error for why).
func NewEntry(user, password string) (Entry, error) {
	switch {
	case user == "":
		return Entry{}, errors.New("empty user name")
	case password == "":
		// PostgreSQL never stores an empty password and libpq never sends one.
		return Entry{}, fmt.Errorf("empty password for user %q", user)
	case strings.HasPrefix(password, scramPrefix):
		s, err := parseSCRAMSecret(password)
		if err != nil {
			return Entry{}, fmt.Errorf("malformed SCRAM-SHA-256 verifier for user %q: %w", user, err)
		}
		return Entry{User: user, method: MethodSCRAM, scram: s}, nil
	case isMD5Hash(password):
		return Entry{User: user, method: MethodMD5, md5: password[len("md5"):]}, nil
	case !isASCII(password):
		// libpq and PostgreSQL normalize a non-ASCII password with SASLprep
		// (RFC 4013) before deriving SCRAM keys; without its tables we would
		// derive other keys, and the right password would fail.
		return Entry{}, fmt.Errorf("the plain password of user %q has non-ASCII characters, "+
			"which pgverbs cannot normalize as clients do: list its SCRAM verifier (pg_authid.rolpassword) instead", user)
	}
	return Entry{User: user, method: MethodSCRAM, plain: password}, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// Method returns how Authenticate checks the entry's password; 0 for the
// zero Entry, which stands for a user not in the file.
func (e Entry) Method() Method { return e.method }

// String describes the entry without its secret.
func (e Entry) String() string {
	return fmt.Sprintf("%s (%s)", e.User, e.method)
}

// GoString describes the entry for %#v without its secret.
func (e Entry) GoString() string {
	return fmt.Sprintf("localauth.Entry{User: %q, Method: %s}", e.User, e.method)
}

func isMD5Hash(s string) bool {
	if len(s) != len("md5")+32 || !strings.HasPrefix(s, "md5") {
		return false
	}
	for _, c := range s[len("md5"):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseSCRAMSecret parses SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
// as PostgreSQL's parse_scram_secret does. Its errors never quote the value.
func parseSCRAMSecret(s string) (scramSecret, error) {
	var sec scramSecret
	rest := strings.TrimPrefix(s, scramPrefix)
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return sec, errors.New(`want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`)
	}
	iter, salt, ok1 := strings.Cut(params, ":")
	stored, server, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return sec, errors.New(`want SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`)
	}
	n, err := strconv.Atoi(iter)
	if err != nil || n <= 0 {
		return sec, errors.New("the iteration count is not a positive integer")
	}
	if raw, err := base64.StdEncoding.DecodeString(salt); err != nil || len(raw) == 0 {
		return sec, errors.New("the salt is not base64")
	}
	if err := decodeKey(sec.storedKey[:], stored); err != nil {
		return sec, fmt.Errorf("StoredKey %w", err)
	}
	if err := decodeKey(sec.serverKey[:], server); err != nil {
		return sec, fmt.Errorf("ServerKey %w", err)
	}
	sec.iterations, sec.salt = n, salt
	return sec, nil
}

func decodeKey(dst []byte, s string) error {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != keyLen {
		return fmt.Errorf("is not %d bytes of base64", keyLen)
	}
	copy(dst, raw)
	return nil
}
