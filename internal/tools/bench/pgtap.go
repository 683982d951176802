package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// maxPgtapRatio is the project's goal for INSTALL EXTENSION of a real
// package: at most this many times the wall time of the server's own
// CREATE EXTENSION of the same files.
const maxPgtapRatio = 1.5

// errUnavailable marks a pgTAP package that could not be obtained, which
// skips the measurement as a missing PgBouncer skips its columns.
var errUnavailable = errors.New("unavailable")

// pgtapFiles is pgTAP's share/extension directory unpacked from Debian's
// package, never installed.
type pgtapFiles struct {
	deb, dir, version string
	// scriptLines counts the lines of the default version's install script,
	// to relate the numbers to the synthetic 10,000-line package.
	scriptLines int
	cleanup     func()
}

// fetchPgtap unpacks postgresql-<major>-pgtap. The .deb is taken, like the
// e2e tests do, from PGVERBS_PGTAP_DEB or the directory PGVERBS_EXTENSION_DEBS,
// and only then fetched with apt-get download, so that a machine without
// network access can still run the benchmark.
func fetchPgtap(ctx context.Context, major string) (_ *pgtapFiles, err error) {
	pkg := "postgresql-" + major + "-pgtap"
	work, err := os.MkdirTemp("", "pgverbs-bench-pgtap-")
	if err != nil {
		return nil, err
	}
	f := &pgtapFiles{cleanup: func() { os.RemoveAll(work) }}
	defer func() {
		if err != nil {
			f.cleanup()
		}
	}()
	f.deb = os.Getenv("PGVERBS_PGTAP_DEB")
	if f.deb == "" && os.Getenv("PGVERBS_EXTENSION_DEBS") != "" {
		if f.deb, err = findDeb(os.Getenv("PGVERBS_EXTENSION_DEBS"), pkg); err != nil {
			return nil, err
		}
	}
	if f.deb == "" {
		fmt.Fprintf(os.Stderr, "apt-get download %s...\n", pkg)
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%w: apt-get download %s: %v\n%s", errUnavailable, pkg, err, bytes.TrimSpace(out))
		}
		if f.deb, err = findDeb(work, pkg); err == nil && f.deb == "" {
			err = fmt.Errorf("apt-get download %s left no .deb in %s", pkg, work)
		}
		if err != nil {
			return nil, err
		}
	}
	root := filepath.Join(work, "x")
	if out, err := exec.CommandContext(ctx, "dpkg", "-x", f.deb, root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg -x %s: %v\n%s", f.deb, err, out)
	}
	f.dir = filepath.Join(root, "usr/share/postgresql", major, "extension")
	control, err := os.ReadFile(filepath.Join(f.dir, "pgtap.control"))
	if err != nil {
		return nil, fmt.Errorf("%s is not pgTAP for PostgreSQL %s: %w", filepath.Base(f.deb), major, err)
	}
	for _, line := range strings.Split(string(control), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "default_version" {
			f.version = strings.Trim(strings.TrimSpace(v), "'")
		}
	}
	script, err := os.ReadFile(filepath.Join(f.dir, "pgtap--"+f.version+".sql"))
	if err != nil {
		return nil, fmt.Errorf("pgTAP's install script for default_version %q: %w", f.version, err)
	}
	f.scriptLines = bytes.Count(script, []byte("\n"))
	return f, nil
}

// findDeb finds pkg's .deb in dir by Debian's file naming,
// <name>_<version>_<arch>.deb, which no other package name can match.
func findDeb(dir, pkg string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if err != nil {
		return "", err
	}
	if len(matches) > 1 {
		return "", fmt.Errorf("several .debs of %s in %s: %v", pkg, dir, matches)
	}
	if len(matches) == 0 {
		return "", nil
	}
	return matches[0], nil
}

// pgtapRound is one native pair and one pgverbs pair. Each CPU figure is
// that of the client's server backend, or of the proxy process, during the
// step: wall time alone cannot tell extra work from extra waiting.
type pgtapRound struct {
	create, drop, install, uninstall     time.Duration
	createServerCPU, dropServerCPU       time.Duration
	installServerCPU, uninstallServerCPU time.Duration
	installProxyCPU, uninstallProxyCPU   time.Duration
}

// runPgtapBench compares INSTALL EXTENSION pgtap through pgverbs, on the
// benchmark's cluster, which has no pgTAP files and so makes pgverbs run the
// scripts itself, with CREATE EXTENSION pgtap on a second cluster started
// from a relocated copy of the same installation whose share/extension holds
// the same files.
func runPgtapBench(ctx context.Context, proxyPath string, cluster *pgtest.Cluster, rounds int) error {
	major, err := serverMajor(ctx, cluster.SuperURL())
	if err != nil {
		return err
	}
	files, err := fetchPgtap(ctx, major)
	if errors.Is(err, errUnavailable) {
		fmt.Printf("\npgtap: skipped, Debian's package is not available (%v); set PGVERBS_EXTENSION_DEBS to a directory holding postgresql-%s-pgtap_*.deb\n", err, major)
		return nil
	}
	if err != nil {
		return err
	}
	defer files.cleanup()

	reloc, err := os.MkdirTemp(tempBase(), "pgverbs-bench-reloc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(reloc)
	binDir, err := pgtest.Relocate(reloc, files.dir)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "pgtap: starting a cluster that has pgTAP's files...")
	native, err := pgtest.New(pgtest.Options{BinDir: binDir, Settings: clusterSettings()})
	if err != nil {
		return err
	}
	defer native.Stop()

	proxy, err := startPgverbs(ctx, proxyPath, backendURL(cluster.Port, "disable"), files.dir, "pgverbs (pgtap)", proxyMaxClients)
	if err != nil {
		return err
	}
	defer proxy.stop()
	proxyURL := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", proxy.port)

	// A server that offered pgTAP itself would let pgverbs hand INSTALL to
	// CREATE EXTENSION, and a relocation gone wrong would measure a failure.
	for _, c := range []struct {
		url  string
		want string
	}{{cluster.SuperURL(), "0"}, {native.SuperURL(), "1"}} {
		got, err := queryOne(ctx, c.url, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgtap'")
		if err != nil {
			return err
		}
		if got != c.want {
			return fmt.Errorf("pgtap: %s offers pgtap %s time(s), want %s", c.url, got, c.want)
		}
	}

	fmt.Fprintf(os.Stderr, "pgtap: 1 warm-up and %d measured rounds...\n", rounds)
	var rs []pgtapRound
	for i := 0; i <= rounds; i++ {
		r, err := pgtapPair(ctx, native.SuperURL(), proxyURL, proxy)
		if err != nil {
			return err
		}
		label := fmt.Sprintf("round %d", i)
		if i == 0 {
			label = "warm-up"
		} else {
			rs = append(rs, r)
		}
		fmt.Fprintf(os.Stderr, "[pgtap %s] CREATE %s DROP %s | INSTALL %s UNINSTALL %s\n", label,
			ms(r.create), ms(r.drop), ms(r.install), ms(r.uninstall))
	}
	printPgtap(files, rs)
	if msg := strings.TrimSpace(proxy.out.String()); msg != "" {
		fmt.Printf("\npgverbs (pgtap) logged (level warn and above):\n%s\n", msg)
	}
	return nil
}

// pgtapPair times one native CREATE + DROP EXTENSION and then one INSTALL +
// UNINSTALL EXTENSION through the proxy, each pair on a connection of its
// own, opened before its timer starts, as a client installing an extension
// once would have.
func pgtapPair(ctx context.Context, nativeURL, proxyURL string, proxy *daemon) (pgtapRound, error) {
	var r pgtapRound
	native := []struct {
		sql       string
		wall, cpu *time.Duration
	}{
		{"CREATE EXTENSION pgtap", &r.create, &r.createServerCPU},
		{"DROP EXTENSION pgtap", &r.drop, &r.dropServerCPU},
	}
	proxied := []struct {
		sql            string
		wall, cpu, pcp *time.Duration
	}{
		{"INSTALL EXTENSION pgtap", &r.install, &r.installServerCPU, &r.installProxyCPU},
		{"UNINSTALL EXTENSION pgtap", &r.uninstall, &r.uninstallServerCPU, &r.uninstallProxyCPU},
	}
	if err := withSession(ctx, nativeURL, func(conn *pgconn.PgConn, backend int) error {
		for _, s := range native {
			if err := timeStep(ctx, conn, s.sql, backend, 0, s.wall, s.cpu, nil); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return r, err
	}
	err := withSession(ctx, proxyURL, func(conn *pgconn.PgConn, backend int) error {
		for _, s := range proxied {
			if err := timeStep(ctx, conn, s.sql, backend, proxy.cmd.Process.Pid, s.wall, s.cpu, s.pcp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("%w\npgverbs output (tail):\n%s", err, proxy.out.String())
	}
	return r, err
}

func withSession(ctx context.Context, url string, f func(conn *pgconn.PgConn, backend int) error) error {
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SELECT pg_backend_pid()", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return res.Err
	}
	backend, err := strconv.Atoi(string(res.Rows[0][0]))
	if err != nil {
		return err
	}
	return f(conn, backend)
}

// timeStep runs sql as one simple query and stores its wall time and the
// CPU the backend (and, with proxyPID, the proxy) spent meanwhile.
func timeStep(ctx context.Context, conn *pgconn.PgConn, sql string, backend, proxyPID int, wall, serverCPU, proxyCPU *time.Duration) error {
	serverBefore, err := procCPU(backend, false)
	if err != nil {
		return err
	}
	var proxyBefore time.Duration
	if proxyPID != 0 {
		if proxyBefore, err = procCPU(proxyPID, false); err != nil {
			return err
		}
	}
	start := time.Now()
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	*wall = time.Since(start)
	serverAfter, err := procCPU(backend, false)
	if err != nil {
		return err
	}
	*serverCPU = serverAfter - serverBefore
	if proxyPID != 0 {
		proxyAfter, err := procCPU(proxyPID, false)
		if err != nil {
			return err
		}
		*proxyCPU = proxyAfter - proxyBefore
	}
	return nil
}

func serverMajor(ctx context.Context, url string) (string, error) {
	num, err := queryOne(ctx, url, "SELECT current_setting('server_version_num')")
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return "", fmt.Errorf("server_version_num %q: %w", num, err)
	}
	return strconv.Itoa(n / 10000), nil
}

func queryOne(ctx context.Context, url, sql string) (string, error) {
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return "", res.Err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return "", fmt.Errorf("%s: want one value, got %d rows", sql, len(res.Rows))
	}
	return string(res.Rows[0][0]), nil
}

func printPgtap(files *pgtapFiles, rs []pgtapRound) {
	col := func(f func(pgtapRound) time.Duration) time.Duration {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = float64(f(r))
		}
		return time.Duration(median(xs))
	}
	// The ratio of each pair, not the ratio of the medians, because the
	// two sides of a pair ran seconds apart and so under the same machine
	// load.
	ratio := func(num, den func(pgtapRound) time.Duration) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = float64(num(r)) / float64(den(r))
		}
		return median(xs)
	}
	create := func(r pgtapRound) time.Duration { return r.create }
	drop := func(r pgtapRound) time.Duration { return r.drop }
	install := func(r pgtapRound) time.Duration { return r.install }
	uninstall := func(r pgtapRound) time.Duration { return r.uninstall }
	installRatio := ratio(install, create)

	fmt.Printf("\nINSTALL EXTENSION pgtap through pgverbs against native CREATE EXTENSION pgtap (pgTAP %s from %s,\n"+
		"pgtap--%s.sql %d lines), median of %d alternating pairs after one warm-up pair, each side on a fresh connection:\n\n",
		files.version, filepath.Base(files.deb), files.version, files.scriptLines, len(rs))
	printMarkdown([][]string{
		{"step", "median", "pgverbs/native (median of pairs)", "proxy CPU", "server backend CPU"},
		{"CREATE EXTENSION pgtap, native", ms(col(create)), "", "", ms(col(func(r pgtapRound) time.Duration { return r.createServerCPU }))},
		{"INSTALL EXTENSION pgtap, pgverbs", ms(col(install)), fmt.Sprintf("%.2f", installRatio),
			ms(col(func(r pgtapRound) time.Duration { return r.installProxyCPU })),
			ms(col(func(r pgtapRound) time.Duration { return r.installServerCPU }))},
		{"DROP EXTENSION pgtap, native", ms(col(drop)), "", "", ms(col(func(r pgtapRound) time.Duration { return r.dropServerCPU }))},
		{"UNINSTALL EXTENSION pgtap, pgverbs", ms(col(uninstall)), fmt.Sprintf("%.2f", ratio(uninstall, drop)),
			ms(col(func(r pgtapRound) time.Duration { return r.uninstallProxyCPU })),
			ms(col(func(r pgtapRound) time.Duration { return r.uninstallServerCPU }))},
	})
	verdict := "met"
	if installRatio > maxPgtapRatio {
		verdict = "MISSED"
	}
	fmt.Printf("\ntarget: INSTALL/CREATE EXTENSION <= %.2f: %s (%.2f)\n", maxPgtapRatio, verdict, installRatio)
	raw := func(f func(pgtapRound) time.Duration) string {
		var xs []string
		for _, r := range rs {
			xs = append(xs, strconv.FormatInt(f(r).Round(time.Millisecond).Milliseconds(), 10))
		}
		return strings.Join(xs, " ")
	}
	fmt.Printf("raw rounds (ms): CREATE %s | INSTALL %s | DROP %s | UNINSTALL %s\n",
		raw(create), raw(install), raw(drop), raw(uninstall))
}

func ms(d time.Duration) string {
	return d.Round(time.Millisecond).String()
}
