package localauth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	f, err := Parse([]byte("\n  ; comment\r\n# comment\n\t\"a\"\t\"x\"  ; trailing comment\r\n" +
		`"b""q" "md5` + strings.Repeat("a", 32) + `"` + "\n" +
		`"c" "MD5` + strings.Repeat("a", 32) + `" # uppercase: a plain password, as in PostgreSQL`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user   string
		method Method
	}{{"a", MethodSCRAM}, {`b"q`, MethodMD5}, {"c", MethodSCRAM}} {
		e, ok := f.Lookup(tc.user)
		if !ok || e.User != tc.user || e.Method() != tc.method {
			t.Errorf("Lookup(%q) = %v, %v; want method %v", tc.user, e, ok, tc.method)
		}
	}
	if f.Len() != 3 {
		t.Errorf("Len = %d, want 3", f.Len())
	}
	if _, ok := f.Lookup("A"); ok {
		t.Error("Lookup is case-insensitive; PostgreSQL role names are not")
	}
	if e, _ := f.Lookup("a"); e.plain != "x" {
		t.Errorf("a's password = %q, want x", e.plain)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		line       int
	}{
		{"unquoted user", "alice \"x\"", 1},
		{"unterminated user", "\n\"alice x", 2},
		{"no password", `"alice"`, 1},
		{"no space", `"alice""x"`, 1}, // reads as user alice"x, then no password
		{"unquoted password", `"alice" x`, 1},
		{"unterminated password", `"alice" "x`, 1},
		{"text after", `"alice" "x" y`, 1},
		{"empty user", `"" "x"`, 1},
		{"empty password", `"alice" ""`, 1},
		{"duplicate", "\"alice\" \"x\"\n;\n\"alice\" \"y\"", 3},
		{"NUL", "\"al\x00ice\" \"x\"", 1},
		{"non-ASCII plain password", `"alice" "café"`, 1},
		{"verifier without keys", `"alice" "SCRAM-SHA-256$4096:UcrFXgxfK9RMT3GYTlIU2Q=="`, 1},
		{"verifier bad iterations", `"alice" "` + strings.Replace(aliceVerifier, "4096", "0", 1) + `"`, 1},
		{"verifier bad salt", `"alice" "` + strings.Replace(aliceVerifier, "UcrF", "!crF", 1) + `"`, 1},
		{"verifier short key", `"alice" "` + strings.Replace(aliceVerifier, "KL2no6OeXJ6wRTocaeo9hAnMBTEq8PPq6pmCD8qKx6k=", "KL2n", 1) + `"`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.data))
			pe, ok := errors.AsType[*ParseError](err)
			if !ok {
				t.Fatalf("got %v, want a *ParseError", err)
			}
			if pe.Line != tc.line {
				t.Fatalf("line %d (%v), want %d", pe.Line, err, tc.line)
			}
			if strings.Contains(pe.Msg, "KL2n") || strings.Contains(pe.Msg, "café") {
				t.Fatalf("the error quotes the secret: %v", err)
			}
		})
	}
}

// TestEntryHidesSecret: an Entry printed by mistake shows no secret.
func TestEntryHidesSecret(t *testing.T) {
	for _, pw := range []string{"hunter2", bobMD5, aliceVerifier} {
		e, err := NewEntry("alice", pw)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{fmt.Sprint(e), fmt.Sprintf("%v %+v %#v %s", e, e, e, e)} {
			if strings.Contains(s, "hunter2") || strings.Contains(s, "e4f70fb0") || strings.Contains(s, "KL2no6") {
				t.Fatalf("%q shows the secret", s)
			}
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "userlist.txt")
	write := func(data string, perm os.FileMode) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, perm); err != nil {
			t.Fatal(err)
		}
	}

	write(`"alice" "`+aliceVerifier+`"`, 0o600)
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := f.Lookup("alice"); !ok || e.Method() != MethodSCRAM {
		t.Fatalf("Lookup(alice) = %v, %v", e, ok)
	}

	write("\"alice\" \"x\"\n\"bob\"", 0o600)
	_, err = Load(path)
	if pe, ok := errors.AsType[*ParseError](err); !ok || pe.Path != path || pe.Line != 2 {
		t.Fatalf("got %v, want a ParseError for %s line 2", err, path)
	}

	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: got %v", err)
	}
	if _, err := Load(dir); err == nil {
		t.Fatal("a directory loaded")
	}

	for _, perm := range []os.FileMode{0o644, 0o604, 0o660, 0o620} {
		write(`"alice" "x"`, perm)
		if _, err := Load(path); !errors.Is(err, ErrPermissions) {
			t.Errorf("permissions %04o: got %v, want ErrPermissions", perm, err)
		}
	}

	// Group-readable is allowed for a root-owned file only.
	write(`"alice" "x"`, 0o640)
	_, err = Load(path)
	if os.Geteuid() == 0 {
		if err != nil {
			t.Fatalf("root-owned 0640: %v", err)
		}
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err = Load(path)
	}
	if !errors.Is(err, ErrPermissions) {
		t.Fatalf("0640 not owned by root: got %v, want ErrPermissions", err)
	}
}
