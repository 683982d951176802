package localauth

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// quote writes s as an auth file value.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// FuzzLoad: Load never panics; an error is a ParseError naming a line of
// the input; a file it accepts says the same once written back.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`"alice" "` + aliceVerifier + `"` + "\n; c\n# c\n\r\n" + `"b""ob" "` + bobMD5 + `" ; c`))
	f.Add([]byte(`"carol" "pen""cil"`))
	f.Add([]byte(`"x" "SCRAM-SHA-256$1:AA==$` + strings.Repeat("A", 43) + `=:` + strings.Repeat("A", 43) + `="`))
	f.Add([]byte("\"a\" \"b\"\n\"a\" \"c\""))
	f.Add([]byte(`"a`))
	dir, err := os.MkdirTemp("", "localauth-fuzz")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "userlist.txt")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		file, err := Load(path)
		if err != nil {
			pe, ok := errors.AsType[*ParseError](err)
			if !ok {
				t.Fatalf("not a ParseError: %v", err)
			}
			if lines := bytes.Count(data, []byte{'\n'}) + 1; pe.Line < 1 || pe.Line > lines {
				t.Fatalf("line %d of %d: %v", pe.Line, lines, err)
			}
			return
		}
		var out strings.Builder
		for user, e := range file.entries {
			secret := e.plain
			switch {
			case e.method == MethodMD5:
				secret = "md5" + e.md5
			case secret == "":
				// A verifier is not kept as text: any valid one will do.
				secret = aliceVerifier
			}
			out.WriteString(quote(user) + " " + quote(secret) + "\n")
		}
		if e := file.entries; len(e) > 0 {
			again, err := Parse([]byte(out.String()))
			if err != nil {
				t.Fatalf("written back: %v\n%s", err, out.String())
			}
			if again.Len() != file.Len() {
				t.Fatalf("written back: %d users, want %d", again.Len(), file.Len())
			}
			for user, want := range e {
				if got, ok := again.Lookup(user); !ok || got.Method() != want.Method() || got.plain != want.plain || got.md5 != want.md5 {
					t.Fatalf("written back: %v, want %v", got, want)
				}
			}
		}
	})
}

func frame(typ byte, body []byte) []byte {
	return append([]byte{typ, byte((len(body) + 4) >> 24), byte((len(body) + 4) >> 16), byte((len(body) + 4) >> 8), byte(len(body) + 4)}, body...)
}

// FuzzAuthenticate feeds Authenticate arbitrary client bytes: it never
// panics and fails either with a FATAL for the client or with an I/O error.
func FuzzAuthenticate(f *testing.F) {
	f.Add(false, frame('p', initialResponse(scramMechanism, "n,,n=,r=abcdefgh")))
	f.Add(false, append(frame('p', initialResponse(scramMechanism, "n,,n=,r=abc")), frame('p', []byte("c=biws,r=abc,p=AAAA"))...))
	f.Add(false, []byte("p\x00\x00\x00\x15SCRAM-SHA-256\x00\xff\xff\xff\xffp\x00\x00\x00\x08n,,x"))
	f.Add(true, []byte("p\x00\x00\x00\x28md5"+strings.Repeat("a", 32)+"\x00"))
	f.Add(true, []byte("Q\x00\x00\x00\x05\x00"))
	f.Fuzz(func(t *testing.T, md5 bool, data []byte) {
		pw := aliceVerifier
		if md5 {
			pw = bobMD5
		}
		e, err := NewEntry("alice", pw)
		if err != nil {
			t.Fatal(err)
		}
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(data), io.Discard}
		err = Authenticate(rw, "alice", e)
		if err == nil {
			t.Fatal("authenticated without the secret")
		}
		if pe, ok := errors.AsType[*pgerr.Error](err); ok {
			if pe.Severity != pgerr.SeverityFatal {
				t.Fatalf("severity %s: %v", pe.Severity, err)
			}
		} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("neither FATAL nor EOF: %v", err)
		}
	})
}
