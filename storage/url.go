package storage

import (
	"context"
	"sort"
	"strings"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Scheme starts every URL that names a storage target in SQL.
const Scheme = "storage://"

// IsURL reports whether s names object storage rather than a directory.
func IsURL(s string) bool { return strings.HasPrefix(s, Scheme) }

// ParseURL splits storage://target/path into the target's name and the
// path below its prefix, without the trailing slash one may type. The
// path must stay below the prefix: an empty segment (a//b), "." and ".."
// are refused (42501, as a local path outside the backup root is), as is
// a NUL or backslash; the path may be empty (the target's whole prefix).
func ParseURL(s string) (target, p string, err error) {
	if !IsURL(s) {
		return "", "", pgerr.New(pgerr.InvalidParameterValue, "%s is not a storage URL", quote(s)).
			WithHint("Name object storage as 'storage://target/path'.")
	}
	rest := strings.TrimPrefix(s, Scheme)
	target, p, _ = strings.Cut(rest, "/")
	if target == "" {
		return "", "", pgerr.New(pgerr.InvalidParameterValue, "storage URL %s names no target", quote(s)).
			WithHint("Name object storage as 'storage://target/path', with a target of the configuration's storage map.")
	}
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return target, "", nil
	}
	if strings.ContainsAny(p, "\x00\\") {
		return "", "", escape(s)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", "", escape(s)
		}
	}
	return target, p, nil
}

func escape(s string) error {
	return pgerr.New(pgerr.InsufficientPrivilege, "storage path %s is outside its target's prefix", quote(s)).
		WithDetail("A storage path may not hold empty segments, \".\", \"..\", NUL or backslash.")
}

// Stores are the configured targets by name. The zero value and nil hold
// none.
type Stores struct {
	byName map[string]*Store
}

// NewStores builds a Store for every target of cs.
func NewStores(ctx context.Context, cs []Config) (*Stores, error) {
	s := &Stores{byName: map[string]*Store{}}
	for _, c := range cs {
		st, err := New(ctx, c)
		if err != nil {
			return nil, err
		}
		s.byName[c.Name] = st
	}
	return s, nil
}

// Names lists the targets, sorted.
func (s *Stores) Names() []string {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All returns the stores, sorted by name.
func (s *Stores) All() []*Store {
	var out []*Store
	for _, n := range s.Names() {
		out = append(out, s.byName[n])
	}
	return out
}

// Lookup returns the target called name: an unknown name is 42704 with a
// HINT listing the configured ones.
func (s *Stores) Lookup(name string) (*Store, error) {
	if s != nil {
		if st, ok := s.byName[name]; ok {
			return st, nil
		}
	}
	e := pgerr.New(pgerr.UndefinedObject, "storage target %s does not exist", quote(name))
	if names := s.Names(); len(names) > 0 {
		return nil, e.WithHint("The configured storage targets are: %s.", strings.Join(names, ", "))
	}
	return nil, e.WithHint("No storage targets are configured: add them to the storage map of pgverbs's configuration file.")
}

// Resolve parses a storage URL and looks its target up.
func (s *Stores) Resolve(url string) (*Store, string, error) {
	target, p, err := ParseURL(url)
	if err != nil {
		return nil, "", err
	}
	st, err := s.Lookup(target)
	if err != nil {
		return nil, "", err
	}
	return st, p, nil
}
