package conf

import (
	"cmp"
	"errors"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/conninfo"
)

// mask replaces every secret; it matches pgconn's own redaction so logs
// from both read the same.
const mask = "xxxxx"

// redactConnString masks the passwords in a libpq conninfo and also returns
// the raw text of every span it masked, so that error messages derived from
// the same string can be scrubbed of those secrets too.
//
// The URL/keyword split is pgconn's: only the two postgres schemes are URLs.
func redactConnString(s string) (string, []string) {
	for _, scheme := range []string{"postgresql://", "postgres://"} {
		if strings.HasPrefix(s, scheme) {
			return redactURL(s, scheme)
		}
	}
	return redactKeywordValue(s)
}

// isSecretKey reports whether a conninfo keyword holds a secret. Case is
// ignored although libpq's keywords are case-sensitive: PASSWORD= would be
// passed to the server as a runtime parameter, and is just as surely a
// secret the user did not mean to log.
func isSecretKey(key string) bool {
	switch strings.ToLower(key) {
	case "password", "sslpassword":
		return true
	}
	return false
}

// redactURL follows libpq's URI grammar (which pgconn copies) rather than
// net/url's: userinfo ends at the first '@' met before any '/', and a '@'
// after that is data.
func redactURL(s, scheme string) (string, []string) {
	var b strings.Builder
	var secrets []string
	b.WriteString(scheme)
	p := s[len(scheme):]

	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		user, password, hasPassword := strings.Cut(p[:i], ":")
		b.WriteString(user)
		if hasPassword {
			b.WriteString(":" + mask)
			secrets = append(secrets, password)
		}
		b.WriteByte('@')
		p = p[i+1:]
	} else if at := strings.LastIndexByte(p, '@'); at >= 0 && strandedUserinfo(p) {
		// An unencoded '/' in the password hid the userinfo from the parser
		// (postgres://u:pa/ss@host). Mask from the first ':' to the last
		// '@': it may swallow a host or database name, which is the price of
		// never printing part of a password.
		if colon := strings.IndexByte(p[:at], ':'); colon >= 0 {
			b.WriteString(p[:colon+1])
			b.WriteString(mask)
			b.WriteByte('@')
			secrets = append(secrets, p[colon+1:at])
			p = p[at+1:]
		}
	}

	qi := strings.IndexByte(p, '?')
	if qi < 0 {
		b.WriteString(p)
		return b.String(), secrets
	}
	b.WriteString(p[:qi+1])
	for i, pair := range strings.Split(p[qi+1:], "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		key, value, ok := strings.Cut(pair, "=")
		if ok && isSecretKey(decodeLenient(key)) {
			b.WriteString(key + "=" + mask)
			secrets = append(secrets, value)
			continue
		}
		b.WriteString(pair)
	}
	return b.String(), secrets
}

// strandedUserinfo guesses whether a URI without libpq-visible userinfo
// (p is the text after the scheme, and holds a '@' after a '/') actually
// has one that an unencoded '/' cut off. A '@' in the database name, a
// non-numeric port or a query that is not key=value pairs all mean the
// parser saw password text as something else. A well-formed query with a
// '@' in a value (user=me@corp) does not.
func strandedUserinfo(p string) bool {
	end := strings.IndexAny(p, "/?")
	if end < 0 {
		return false
	}
	for hostport := range strings.SplitSeq(p[:end], ",") {
		if strings.HasPrefix(hostport, "[") {
			if j := strings.IndexByte(hostport, ']'); j >= 0 {
				hostport = hostport[j+1:]
			}
		}
		if _, port, ok := strings.Cut(hostport, ":"); ok && strings.Trim(port, "0123456789") != "" {
			return true
		}
	}
	rest := p[end:]
	path, query, _ := strings.Cut(rest, "?")
	if strings.Contains(path, "@") {
		return true
	}
	if strings.Contains(query, "@") {
		for pair := range strings.SplitSeq(query, "&") {
			if strings.Count(pair, "=") != 1 {
				return true
			}
		}
	}
	return false
}

// decodeLenient percent-decodes what it can and keeps the rest, so that an
// encoded key such as pass%77ord is still recognised as a password.
func decodeLenient(s string) string {
	s = strings.Trim(s, " ")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// redactKeywordValue masks the values conninfo.Scan, which tokenizes as
// libpq's conninfo_parse does, finds for secret keywords: exactly the value
// the parser would take as the password, including one that follows
// "password=" after whitespace.
func redactKeywordValue(s string) (string, []string) {
	var b strings.Builder
	var secrets []string
	pairs, bad := conninfo.Scan(s)
	i := 0
	for _, p := range pairs {
		switch {
		case p.Unterminated && isSecretKey(p.Key):
			// The rest of the string is the value.
			b.WriteString(s[i:p.ValueStart])
			b.WriteString(mask)
			return b.String(), append(secrets, s[p.ValueStart:])
		case p.Unterminated:
			return redactMalformedRest(&b, s, i, p.Start, secrets)
		case isSecretKey(p.Key):
			b.WriteString(s[i:p.ValueStart])
			b.WriteString(mask)
			secrets = append(secrets, s[p.ValueStart:p.End])
		default:
			b.WriteString(s[i:p.End])
		}
		i = p.End
	}
	if bad >= 0 {
		return redactMalformedRest(&b, s, i, bad, secrets)
	}
	b.WriteString(s[i:])
	return b.String(), secrets
}

// redactMalformedRest handles text the tokenizer cannot split into
// keyword=value pairs. Where a password may be involved, the boundaries
// cannot be trusted (password=se cret leaves "cret" stranded), so the whole
// rest is masked; otherwise it is kept for the reader's benefit.
func redactMalformedRest(b *strings.Builder, s string, i, j int, secrets []string) (string, []string) {
	rest := s[j:]
	if len(secrets) == 0 && !strings.Contains(strings.ToLower(rest), "password") {
		b.WriteString(s[i:])
		return b.String(), secrets
	}
	b.WriteString(s[i:j])
	b.WriteString(mask)
	return b.String(), append(secrets, rest)
}

// mayHoldSecret reports whether a conninfo could carry a password anywhere
// the redactor might have missed. Any '@' in a URL qualifies, as does the
// word password (possibly percent-encoded) anywhere.
func mayHoldSecret(conninfo string, secrets []string) bool {
	if len(secrets) > 0 || strings.Contains(strings.ToLower(decodeLenient(conninfo)), "password") {
		return true
	}
	isURL := strings.HasPrefix(conninfo, "postgres://") || strings.HasPrefix(conninfo, "postgresql://")
	return isURL && strings.Contains(conninfo, "@")
}

// parseFailureReason turns a pgconn.ParseConfig error into text without the
// connection string. pgconn redacts on a best-effort basis only, and its
// wrapped detail can quote raw components of a malformed string (a port
// that is really half a password), so when a secret may be present only
// pgconn's own summary is kept, and withheld says so. The exception is a
// detail that quotes nothing and holds no known secret fragment, such as
// "sslmode is invalid": it cannot be echoing the input's bytes, and hiding
// it would leave the operator guessing.
func parseFailureReason(err error, secret bool, secrets []string) (reason string, withheld bool) {
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		if secret {
			return "cannot be parsed", true
		}
		return err.Error(), false
	}
	// Error() formats "cannot parse `<conninfo>`: <summary> (<detail>)";
	// formatting a copy without the conninfo leaves summary and detail.
	stripped := *pce
	stripped.ConnString = ""
	reason = strings.TrimPrefix(stripped.Error(), "cannot parse ``: ")
	inner := errors.Unwrap(pce)
	if !secret || inner == nil {
		return reason, false
	}
	detail := inner.Error()
	if !strings.ContainsAny(detail, "\"'`") && scrub(detail, secrets) == detail {
		return reason, false
	}
	reason = strings.TrimSuffix(reason, " ("+detail+")")
	if strings.Contains(reason, detail) {
		// pgconn changed its format; fail closed.
		return "cannot be parsed", true
	}
	return reason, true
}

// minSecretLen is the shortest secret fragment scrub removes. Shorter ones
// occur by chance in any text, so removing them would garble messages
// without hiding anything.
const minSecretLen = 3

var passwordAssignment = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]*)`)

// scrub is the last line of defence for messages derived from a conninfo:
// it removes each known secret, its decoded forms and its fragments (a
// malformed string can be split at '/', ':' or a space, and a parser may
// quote just one piece), then masks anything still shaped like password=.
func scrub(msg string, secrets []string) string {
	var candidates []string
	for _, s := range secrets {
		candidates = append(candidates, s, decodeLenient(s), strings.Trim(s, "'"))
		candidates = append(candidates, strings.FieldsFunc(s, func(r rune) bool {
			return strings.ContainsRune(" \t\n\r\v\f'\"\\/?&=:@,#%", r)
		})...)
	}
	// Longest first, so a fragment never breaks up a longer match.
	slices.SortFunc(candidates, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, c := range candidates {
		if len(c) >= minSecretLen {
			msg = strings.ReplaceAll(msg, c, mask)
		}
	}
	return passwordAssignment.ReplaceAllString(msg, "${1}"+mask)
}
