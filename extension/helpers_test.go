package extension

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// pgError returns err as a *pgerr.Error, failing the test when it is not
// one: every error this package returns must be sendable to a client.
func pgError(t *testing.T, err error) *pgerr.Error {
	t.Helper()
	var pe *pgerr.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *pgerr.Error", err, err)
	}
	return pe
}

// wantError checks that err is a *pgerr.Error with code whose message
// contains every one of parts.
func wantError(t *testing.T, err error, code pgerr.Code, parts ...string) *pgerr.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want SQLSTATE %s %q", code, parts)
	}
	pe := pgError(t, err)
	if pe.Code != code {
		t.Errorf("SQLSTATE %s (%s), want %s", pe.Code, pe.Message, code)
	}
	for _, p := range parts {
		if !strings.Contains(pe.Message, p) {
			t.Errorf("message %q does not contain %q", pe.Message, p)
		}
	}
	return pe
}

// writeFiles creates files (path relative to dir → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func join(s []string) string { return strings.Join(s, "; ") }
