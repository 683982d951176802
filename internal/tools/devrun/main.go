// Command devrun is `make run`: it runs pgverbs for a newcomer. When
// PGVERBS_BACKEND is not set it first starts a throwaway PostgreSQL cluster
// with internal/pgtest (trust authentication, user postgres), points pgverbs
// at it, and removes it when pgverbs exits. Unless the flags or the
// environment say otherwise it also gives pgverbs a backup root (./backups,
// kept across runs so that the tour's backups can be looked at) and an HTTP
// listener on loopback, and prints how to reach each.
//
// Usage: go run ./internal/tools/devrun -- bin/pgverbs [pgverbs flags]
package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// defaultHTTPListen is the HTTP listener's address when nothing else names
// one: the address README's tour shows. postgres_exporter's default port is
// the same, so on a machine running one it is taken and a free port is used
// instead.
const defaultHTTPListen = "127.0.0.1:9187"

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
	// Defaults go before the caller's flags, so that any flag the caller
	// gives wins. They are flags, which would also beat the environment and
	// a config file: so a setting either names gets no default, and with a
	// config file devrun adds none (the file may set them).
	var defaults []string
	_, configured := setting(flags, "config")
	backupRoot, set := setting(flags, "backup-root")
	if !set && !configured {
		backupRoot = "backups"
		defaults = append(defaults, "--backup-root", backupRoot)
	}
	if backupRoot != "" {
		// BASE BACKUP refuses a root that does not exist; 0700 as the
		// backups inside it are.
		if err := os.MkdirAll(backupRoot, 0o700); err != nil {
			fmt.Fprintf(os.Stderr, "devrun: cannot create the backup root: %v\n", err)
			return 1
		}
	}
	httpListen, set := setting(flags, "http-listen")
	if !set && !configured {
		var err error
		if httpListen, err = loopbackListen(); err != nil {
			fmt.Fprintf(os.Stderr, "devrun: %v\n", err)
			return 1
		}
		defaults = append(defaults, "--http-listen", httpListen)
	}
	flags = append(defaults, flags...)

	host, port := "127.0.0.1", "6432"
	if l, _ := setting(flags, "listen"); l != "" {
		if h, p, err := net.SplitHostPort(l); err == nil {
			host, port = h, p
		}
	}
	fmt.Fprintf(os.Stderr, "devrun: connect with:  psql -h %s -p %s -U postgres\n", host, port)
	if httpListen != "" {
		curl := "curl -s http"
		if cert, _ := setting(flags, "tls-cert"); cert != "" {
			// The listener serves HTTPS with the proxy's certificate, which
			// in a demo is self-signed.
			curl = "curl -sk https"
		}
		fmt.Fprintf(os.Stderr, "devrun: metrics:       %s://%s/metrics   (/healthz, /readyz)\n", curl, httpListen)
	}
	if backupRoot != "" {
		abs, _ := filepath.Abs(backupRoot)
		fmt.Fprintf(os.Stderr, "devrun: backup root:   %s   (BASE BACKUP TO 'name')\n", abs)
	}

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

// loopbackListen returns defaultHTTPListen if nothing listens there, else a
// free loopback port. pgverbs binds it a moment later; in a demo losing that
// race is an error message, not a wrong result.
func loopbackListen() (string, error) {
	if l, err := net.Listen("tcp", defaultHTTPListen); err == nil {
		l.Close()
		return defaultHTTPListen, nil
	}
	p, err := pgtest.FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// setting finds pgverbs's flag name in flags (the last one wins, as in
// package flag) or else its PGVERBS_ variable, and says whether either set
// it: an explicit empty value (--http-listen "") turns a feature off.
func setting(flags []string, name string) (value string, set bool) {
	for i := 0; i < len(flags); i++ {
		f := strings.TrimPrefix(strings.TrimPrefix(flags[i], "-"), "-")
		switch {
		case f == name && i+1 < len(flags):
			value, set = flags[i+1], true
			i++
		case strings.HasPrefix(f, name+"="):
			value, set = f[len(name)+1:], true
		}
	}
	if set {
		return value, true
	}
	return os.LookupEnv("PGVERBS_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
}
