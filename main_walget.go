package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/walarchive"
)

// walGetCommand is the subcommand main dispatches to runWalGet, before
// the proxy's own configuration is read.
const walGetCommand = "wal-get"

// defaultWALURL is the HTTP listener's usual address on the database
// host itself.
const defaultWALURL = "http://127.0.0.1:9187"

// errNotFound is a file the archive does not have: for PostgreSQL the
// ordinary end of what there is to restore.
var errNotFound = errors.New("not in the archive")

const walGetUsage = `Usage: pgverbs wal-get [--url URL] [--token-file FILE] [--ca-file FILE] [--partial] FILE DEST

Fetches the WAL file FILE from pgverbs's archive (GET URL/wal/FILE) and
writes it to DEST atomically, for restore_command:

  restore_command = 'pgverbs wal-get --url http://10.0.0.5:9187 --token-file /etc/pgverbs/token %%f %%p'

Exit status 0 when DEST was written, 1 otherwise (not in the archive,
pgverbs unreachable, any error): never a status PostgreSQL takes as fatal.

  --url URL          pgverbs's HTTP listener (default $PGVERBS_WAL_URL, else %s);
                     https:// for TLS
  --token-file FILE  the bearer token (default $PGVERBS_HTTP_TOKEN)
  --ca-file FILE     PEM CA that signs pgverbs's certificate (a self-signed one),
                     instead of the system's
  --partial          when the segment FILE is not in the archive, fetch
                     FILE.partial and write it as DEST (the end of the last
                     timeline, for the end of a recovery)
`

// runWalGet is pgverbs wal-get: exit status 0 when DEST was written, 1
// for everything else, usage included (a restore_command that prints its
// usage restored nothing).
func runWalGet(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet(walGetCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "", "")
	tokenFile := fs.String("token-file", "", "")
	caFile := fs.String("ca-file", "", "")
	partial := fs.Bool("partial", false, "")
	fs.Usage = func() { fmt.Fprintf(stderr, walGetUsage, defaultWALURL) }
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 1
	}
	file, dest := fs.Arg(0), fs.Arg(1)
	if *base == "" {
		*base = getenv("PGVERBS_WAL_URL")
	}
	if *base == "" {
		*base = defaultWALURL
	}
	err := walGet(walGetOptions{
		base: *base, tokenFile: *tokenFile, token: getenv("PGVERBS_HTTP_TOKEN"), caFile: *caFile,
		partial: *partial, file: file, dest: dest,
	})
	if err != nil {
		fmt.Fprintf(stderr, "pgverbs wal-get: %s: %v\n", file, err)
		return 1
	}
	return 0
}

type walGetOptions struct {
	base, tokenFile, token, caFile string
	partial                        bool
	file, dest                     string
}

func walGet(o walGetOptions) error {
	u, err := url.Parse(o.base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url %q is not an http:// or https:// URL", o.base)
	}
	if o.tokenFile != "" {
		// The server's own rules for the file (one line, visible ASCII),
		// and errors that never show the token.
		if o.token, err = (&conf.Config{HTTPTokenFile: o.tokenFile}).Token(); err != nil {
			return fmt.Errorf("--token-file: %v", err)
		}
	}
	client, err := walGetClient(u.Scheme, o.caFile)
	if err != nil {
		return err
	}
	get := func(name string) (*http.Response, error) {
		return fetch(client, strings.TrimRight(o.base, "/")+walarchive.WALPath+url.PathEscape(name), o.token)
	}
	resp, err := get(o.file)
	if errors.Is(err, errNotFound) && o.partial && isSegmentName(o.file) {
		resp, err = get(o.file + ".partial")
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return writeAtomically(o.dest, resp.Body, resp.ContentLength)
}

// isSegmentName reports whether name is a complete segment's: only such
// a name has a .partial. The smallest segment size accepts every
// segment name of the others.
func isSegmentName(name string) bool {
	n, err := walarchive.ParseName(name, 1<<20)
	return err == nil && n.Kind == walarchive.Segment
}

// walGetClient bounds the waits a restore_command can make recovery
// wait for (connecting, the TLS handshake, the answer's first line), but
// not the body: a 1 GB segment over a slow link takes what it takes. It
// follows no redirect.
func walGetClient(scheme, caFile string) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	if scheme == "https" {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, fmt.Errorf("--ca-file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca-file %q holds no PEM certificate", caFile)
			}
			tr.TLSClientConfig.RootCAs = pool
		}
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// fetch GETs u and returns the response when it is 200; errNotFound for
// a 404.
func fetch(client *http.Client, u, token string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error names the URL, which holds no secret: the token is
		// in a header.
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, errNotFound
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
}

// writeAtomically writes r to dest through a temporary file in its
// directory, fsynced and renamed, the directory fsynced after: dest is
// there whole or not at all. want, when not negative, is the length r
// must have.
func writeAtomically(dest string, r io.Reader, want int64) (err error) {
	dir := filepath.Dir(dest)
	f, err := os.CreateTemp(dir, "."+filepath.Base(dest)+".wal-get-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	n, err := io.Copy(f, r)
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", n, err)
	}
	if want >= 0 && n != want {
		return fmt.Errorf("got %d bytes of %d", n, want)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), dest); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
