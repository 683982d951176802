// Command devrun is `make run`: it runs pgverbs for a newcomer. When
// PGVERBS_BACKEND is not set it first starts a throwaway PostgreSQL cluster
// with internal/pgtest (trust authentication, user postgres), points pgverbs
// at it, and removes it when pgverbs exits.
//
// Usage: go run ./internal/tools/devrun -- bin/pgverbs [pgverbs flags]
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: devrun -- PGVERBS_BINARY [FLAGS]")
		os.Exit(2)
	}
	os.Exit(run(args[0], args[1:]))
}

func run(bin string, flags []string) int {
	// Signals go to the whole process group from a terminal; pgverbs handles
	// them, devrun only waits for it to finish.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	env := os.Environ()
	if os.Getenv("PGVERBS_BACKEND") == "" {
		c, err := pgtest.New(pgtest.Options{Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
		if err != nil {
			fmt.Fprintf(os.Stderr, "devrun: cannot start a throwaway cluster: %v\n", err)
			return 1
		}
		defer c.Stop()
		env = append(env, "PGVERBS_BACKEND="+c.URL(c.User, "", "postgres"))
		fmt.Fprintf(os.Stderr, "devrun: throwaway cluster in %s (removed on exit)\n", c.DataDir)
	}
	host, port := "127.0.0.1", "6432"
	if l := listenAddr(flags); l != "" {
		if h, p, err := net.SplitHostPort(l); err == nil {
			host, port = h, p
		}
	}
	fmt.Fprintf(os.Stderr, "devrun: connect with:  psql -h %s -p %s -U postgres\n", host, port)

	cmd := exec.Command(bin, flags...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "devrun: %v\n", err)
		return 1
	}
	return 0
}

// listenAddr finds --listen in flags or PGVERBS_LISTEN, for the hint line.
func listenAddr(flags []string) string {
	for i, f := range flags {
		switch {
		case (f == "--listen" || f == "-listen") && i+1 < len(flags):
			return flags[i+1]
		case len(f) > 9 && f[:9] == "--listen=":
			return f[9:]
		}
	}
	return os.Getenv("PGVERBS_LISTEN")
}
