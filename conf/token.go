package conf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// Token returns the bearer token /wal/ requires: http_token, or the
// content of http_token_file read now (so that a rotated file is read at
// the next start), "" when neither is set.
func (c *Config) Token() (string, error) {
	if c.HTTPTokenFile == "" {
		return c.HTTPToken, nil
	}
	return readTokenFile(c.HTTPTokenFile)
}

// readTokenFile reads a token file: one line, its line end dropped. Its
// errors name the file, never its content.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the token: %v", err)
	}
	tok := strings.TrimRight(string(b), "\r\n")
	if tok == "" {
		return "", fmt.Errorf("%q is empty", path)
	}
	if err := validateToken(tok); err != nil {
		return "", fmt.Errorf("%q: %v", path, err)
	}
	return tok, nil
}

// validateToken accepts what an Authorization header carries unchanged:
// visible ASCII, no spaces. Its errors do not show the token.
func validateToken(tok string) error {
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return errors.New("the token may hold only visible ASCII characters (no spaces or line breaks inside)")
		}
	}
	return nil
}

// loopback reports whether addr (host:port, already validated) listens
// only on the loopback interface: 127.0.0.0/8, ::1 or localhost. An empty
// host is every interface; any other name may resolve anywhere.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
