package pgerr_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// body builds an ErrorResponse body from field type and value pairs.
func body(fields ...string) []byte {
	var b []byte
	for i := 0; i+1 < len(fields); i += 2 {
		b = append(b, fields[i][0])
		b = append(b, fields[i+1]...)
		b = append(b, 0)
	}
	return append(b, 0)
}

func TestIsFatalResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		want bool
	}{
		{"S then V FATAL", body("S", "FATAL", "V", "FATAL", "C", "57P01", "M", "bye"), true},
		{"V then S FATAL", body("V", "FATAL", "S", "FATAL", "C", "57P01"), true},
		{"V FATAL after other fields", body("C", "57P01", "M", "bye", "S", "FATAL", "V", "FATAL"), true},
		{"PANIC", body("S", "PANIC", "V", "PANIC", "C", "XX000"), true},
		{"ERROR", body("S", "ERROR", "V", "ERROR", "C", "42601", "M", "syntax error"), false},
		{"only S FATAL (before 9.6)", body("S", "FATAL", "C", "28P01"), true},
		{"only S ERROR (before 9.6)", body("S", "ERROR", "C", "42601"), false},
		{"localized S, V FATAL", body("S", "ВАЖНО", "V", "FATAL", "C", "57P01"), true},
		{"localized S, V FATAL first", body("V", "FATAL", "S", "ВАЖНО"), true},
		{"localized S looks fatal, V ERROR", body("S", "FATAL", "V", "ERROR"), false},
		{"V ERROR, S FATAL after", body("V", "ERROR", "S", "FATAL"), false},
		{"message says FATAL", body("S", "ERROR", "V", "ERROR", "M", "FATAL"), false},
		{"lower case", body("S", "fatal", "V", "fatal"), false},
		{"prefix", body("V", "FATALITY"), false},
		{"no fields", body(), false},
		{"empty", nil, false},
		{"fields after terminator ignored", append(body("S", "ERROR"), body("V", "FATAL")...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pgerr.IsFatalResponse(tc.body); got != tc.want {
				t.Fatalf("IsFatalResponse(%q) = %v, want %v", tc.body, got, tc.want)
			}
		})
	}
}

// TestIsFatalResponseMalformed covers bodies pgproto3 would refuse. The
// server never sends them, but the relay reads whatever arrives, so the
// answer must be defined: a field that lacks its terminator runs to the end
// of the body (the message length bounds it), so a FATAL cut short of its
// NUL still counts, the safe side for a proxy that then expects the server
// to close; a field with no value is an empty severity, not fatal; and the
// first NUL where a field type is due ends the body.
func TestIsFatalResponseMalformed(t *testing.T) {
	for _, tc := range []struct {
		body []byte
		want bool
	}{
		{[]byte{'S'}, false},
		{[]byte{'V'}, false},
		{[]byte("SFATAL"), true},
		{[]byte("VFATAL"), true},
		{[]byte("VPANIC"), true},
		{[]byte("VFAT"), false},
		{[]byte("SFATAL\x00VERR"), false},
		{[]byte("S\x00"), false},
		{[]byte("V\x00VFATAL\x00\x00"), false}, // the first V decides, even empty
		{[]byte("SERROR\x00V"), false},
		{[]byte("SFATAL\x00V"), false},
		{[]byte("SFATAL\x00C57P01"), true},
		{[]byte("\x00VFATAL\x00\x00"), false},
		{[]byte("\x00\x00\x00"), false},
		{bytes.Repeat([]byte{'S'}, 100), false},
		{append([]byte("S"), bytes.Repeat([]byte{0xff}, 7)...), false},
		{bytes.Repeat([]byte{0xff}, 7), false},
	} {
		if got := pgerr.IsFatalResponse(tc.body); got != tc.want {
			t.Errorf("IsFatalResponse(%q) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

// FuzzIsFatalResponse checks that IsFatalResponse never panics and agrees
// with pgproto3's decoding on well-formed bodies.
func FuzzIsFatalResponse(f *testing.F) {
	f.Add(body("S", "FATAL", "V", "FATAL", "C", "57P01"))
	f.Add(body("S", "ERROR", "V", "ERROR", "C", "42601"))
	f.Add(body("S", "PANIC"))
	f.Add([]byte("VFATAL"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got := pgerr.IsFatalResponse(b)
		// Compare on bodies pgproto3 decodes where each severity field
		// appears at most once (for repeats the two pick differently).
		var e pgproto3.ErrorResponse
		if e.Decode(b) != nil {
			return
		}
		seen := map[byte]int{}
		for i := 0; i < len(b) && b[i] != 0; {
			seen[b[i]]++
			j := bytes.IndexByte(b[i+1:], 0)
			i += j + 2
		}
		if seen['S'] > 1 || seen['V'] > 1 {
			return
		}
		sev := e.Severity
		if seen['V'] == 1 {
			sev = e.SeverityUnlocalized
		}
		if want := sev == "FATAL" || sev == "PANIC"; got != want {
			t.Fatalf("IsFatalResponse(%q) = %v, pgproto3 decodes severity %q", b, got, sev)
		}
	})
}

func TestAppendWireRoundTrip(t *testing.T) {
	for _, e := range []*pgerr.Error{
		pgerr.NewFatal(pgerr.AdminShutdown, "terminating connection due to administrator command"),
		pgerr.NewFatal(pgerr.TooManyConnections, "sorry, too many clients already"),
		pgerr.New(pgerr.SyntaxError, "syntax error at or near %q", "INSTAL"),
		{Severity: pgerr.SeverityFatal, Code: pgerr.ConnectionFailure, Message: "server closed the connection unexpectedly", Detail: "detail", Hint: "hint"},
		{Severity: pgerr.SeverityError, Code: pgerr.FeatureNotSupported, Message: "ünïcödé", Position: 42},
		{Severity: pgerr.SeverityError, Code: pgerr.InternalError},
	} {
		prefix := []byte("prefix")
		wire := e.AppendWire(bytes.Clone(prefix))
		if !bytes.HasPrefix(wire, prefix) {
			t.Fatalf("%v: AppendWire lost dst", e)
		}
		msg := wire[len(prefix):]
		if len(msg) < 6 || msg[0] != 'E' {
			t.Fatalf("%v: not an ErrorResponse: %q", e, msg)
		}
		if n := binary.BigEndian.Uint32(msg[1:]); int(n) != len(msg)-1 {
			t.Fatalf("%v: length word %d for %d bytes", e, n, len(msg)-1)
		}
		if msg[len(msg)-1] != 0 {
			t.Fatalf("%v: body not terminated", e)
		}
		var got pgproto3.ErrorResponse
		if err := got.Decode(msg[5:]); err != nil {
			t.Fatalf("%v: decode: %v", e, err)
		}
		if got.Severity != string(e.Severity) || got.SeverityUnlocalized != string(e.Severity) ||
			got.Code != string(e.Code) || got.Message != e.Message || got.Detail != e.Detail ||
			got.Hint != e.Hint || got.Position != e.Position {
			t.Fatalf("round trip of %+v gave %+v", e, got)
		}
		if fatal := pgerr.IsFatalResponse(msg[5:]); fatal != (e.Severity == pgerr.SeverityFatal) {
			t.Fatalf("%v: IsFatalResponse = %v", e, fatal)
		}
		// A pgproto3 client reads it too.
		fe := pgproto3.NewFrontend(bytes.NewReader(msg), nil)
		m, err := fe.Receive()
		if r, ok := m.(*pgproto3.ErrorResponse); err != nil || !ok || r.Code != string(e.Code) {
			t.Fatalf("%v: frontend got %T %v", e, m, err)
		}
	}
}

func TestErrorAndConstructors(t *testing.T) {
	e := pgerr.New(pgerr.SyntaxError, "bad %s at %d", "token", 3)
	if e.Severity != pgerr.SeverityError || e.Code != pgerr.SyntaxError || e.Message != "bad token at 3" {
		t.Fatalf("New gave %+v", e)
	}
	f := pgerr.NewFatal(pgerr.ProtocolViolation, "invalid length %d", 7)
	if f.Severity != pgerr.SeverityFatal || f.Code != pgerr.ProtocolViolation || f.Message != "invalid length 7" {
		t.Fatalf("NewFatal gave %+v", f)
	}
	if got, want := f.Error(), "FATAL: invalid length 7 (SQLSTATE 08P01)"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	for _, c := range []pgerr.Code{
		pgerr.ProtocolViolation, pgerr.ConnectionFailure, pgerr.CannotConnectNow,
		pgerr.AdminShutdown, pgerr.TooManyConnections, pgerr.FeatureNotSupported,
		pgerr.InvalidPassword, pgerr.InvalidAuthorizationSpecification, pgerr.QueryCanceled,
		pgerr.SyntaxError, pgerr.InternalError, pgerr.InvalidTransactionState,
	} {
		if len(c) != 5 {
			t.Errorf("SQLSTATE %q is not 5 characters", c)
		}
	}
}

// TestCause checks that an error's cause is reachable through errors.Is
// and errors.As, and that the error itself still is an *Error.
func TestCause(t *testing.T) {
	sentinel := errors.New("sentinel")
	var err error = pgerr.New(pgerr.UndefinedObject, "no such thing").WithCause(sentinel).WithDetail("d %d", 1).WithHint("h %s", "x")
	if !errors.Is(err, sentinel) {
		t.Fatal("errors.Is does not find the cause")
	}
	var pe *pgerr.Error
	if !errors.As(err, &pe) || pe.Code != pgerr.UndefinedObject || pe.Detail != "d 1" || pe.Hint != "h x" {
		t.Fatalf("errors.As: %+v", pe)
	}
	if wire := pe.AppendWire(nil); bytes.Contains(wire, []byte("sentinel")) {
		t.Fatal("the cause reached the wire")
	}
}

// TestFromServer checks the conversion of a server's error on one of the
// proxy's own connections.
func TestFromServer(t *testing.T) {
	src := &pgconn.PgError{Severity: "FATAL", Code: "28P01", Message: "password authentication failed", Detail: "d", Hint: "h", Position: 7}
	e := pgerr.FromServer(src)
	if e.Severity != pgerr.SeverityError || e.Code != pgerr.InvalidPassword || e.Message != src.Message || e.Detail != "d" || e.Hint != "h" || e.Position != 0 {
		t.Fatalf("FromServer = %+v", e)
	}
	var back *pgconn.PgError
	if !errors.As(e, &back) || back != src {
		t.Fatal("the server's error is not the cause")
	}
	if e := pgerr.FromServer(&pgconn.PgError{Message: "no code"}); e.Code != pgerr.InternalError {
		t.Fatalf("code %q for an error without one, want XX000", e.Code)
	}
}
