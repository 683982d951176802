package extension

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Removal is what UNINSTALL EXTENSION must do, decided before anything
// runs.
type Removal struct {
	// Packages are the extensions pgverbs installed that go, in order:
	// each before every one it requires. They are the named ones and,
	// with CASCADE, everything pgverbs installed that requires a named
	// extension, directly or not.
	Packages []string
	// Cascaded tells which of Packages the command did not name.
	Cascaded map[string]bool
	// Server are the named extensions the server manages (DROP EXTENSION
	// after the packages), in statement order.
	Server []string
	// Notes are messages for the client (NOTICE): the names IF EXISTS
	// skipped.
	Notes []string
}

// Empty reports whether nothing is to be removed.
func (r *Removal) Empty() bool { return len(r.Packages) == 0 && len(r.Server) == 0 }

// PlanUninstall plans UNINSTALL EXTENSION [IF EXISTS] names [CASCADE]:
// installed are the extensions pgverbs installed (pgverbs.extensions),
// server those created on the server, name -> version (pg_extension). A
// name of both is pgverbs's.
//
// Errors are *pgerr.Error values, in PostgreSQL's DROP EXTENSION style:
//
//   - 42704 `extension "foo" does not exist` for a name of neither,
//     unless ifExists, which makes it a note instead.
//   - 2BP01 `cannot uninstall extension "foo" because other objects depend
//     on it` (foo the first name of the statement, as PostgreSQL names the
//     first object) when, without cascade, an extension pgverbs installed
//     requires a named one and is not named itself; DETAIL lists every
//     such dependency, HINT suggests CASCADE. The Removal comes back too,
//     so that its Notes can precede the error as they would have.
//
// The order is deterministic: repeatedly, every extension that no
// remaining one requires, by name. A dependency cycle among installed
// extensions (which cannot be installed) is broken rather than looped on.
func PlanUninstall(names []string, installed map[string]Installed, server map[string]string, ifExists, cascade bool) (*Removal, error) {
	rm := &Removal{Cascaded: map[string]bool{}}
	targets := map[string]bool{}
	for _, name := range names {
		if _, ok := installed[name]; ok {
			targets[name] = true
			continue
		}
		if _, ok := server[name]; ok {
			targets[name] = true
			rm.Server = append(rm.Server, name)
			continue
		}
		if !ifExists {
			return nil, pgerr.New(pgerr.UndefinedObject, "extension %s does not exist", quote(name))
		}
		rm.Notes = append(rm.Notes, fmt.Sprintf("extension %s does not exist, skipping", quote(name)))
	}
	remove := map[string]bool{}
	var blocked []string
	for name := range targets {
		if _, ok := installed[name]; ok {
			remove[name] = true
		}
		for dep := range dependents(name, installed) {
			if !targets[dep] {
				blocked = append(blocked, fmt.Sprintf("extension %s depends on extension %s", quote(dep), quote(name)))
				rm.Cascaded[dep] = true
			}
			remove[dep] = true
		}
	}
	if len(blocked) > 0 && !cascade {
		sort.Strings(blocked)
		return rm, newErr(pgerr.DependentObjectsStillExist, strings.Join(blocked, "\n"),
			"Use UNINSTALL EXTENSION ... CASCADE to uninstall the dependent extensions too.",
			"cannot uninstall extension %s because other objects depend on it", quote(names[0]))
	}
	rm.Packages = removalOrder(remove, installed)
	return rm, nil
}

// dependents returns the installed extensions that require name, directly
// or through others; name itself is not among them.
func dependents(name string, installed map[string]Installed) map[string]bool {
	requiredBy := map[string][]string{}
	for n, inst := range installed {
		for _, req := range inst.Requires {
			requiredBy[req] = append(requiredBy[req], n)
		}
	}
	found := map[string]bool{}
	queue := []string{name}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, d := range requiredBy[n] {
			if d != name && !found[d] {
				found[d] = true
				queue = append(queue, d)
			}
		}
	}
	return found
}

// removalOrder orders names so that each extension comes before those it
// requires: in rounds, each round every remaining extension no other
// remaining one requires, by name. When none is free (a cycle), the round
// takes all that remain.
func removalOrder(names map[string]bool, installed map[string]Installed) []string {
	order := make([]string, 0, len(names))
	left := make(map[string]bool, len(names))
	for n := range names {
		left[n] = true
	}
	for len(left) > 0 {
		needed := map[string]bool{}
		for m := range left {
			for _, r := range installed[m].Requires {
				if r != m {
					needed[r] = true
				}
			}
		}
		var ready []string
		for n := range left {
			if !needed[n] {
				ready = append(ready, n)
			}
		}
		if len(ready) == 0 {
			for n := range left {
				ready = append(ready, n)
			}
		}
		sort.Strings(ready)
		for _, n := range ready {
			order = append(order, n)
			delete(left, n)
		}
	}
	return order
}
