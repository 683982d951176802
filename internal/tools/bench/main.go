// Command bench (make bench) measures what pgverbs costs compared with
// talking to PostgreSQL directly and with going through PgBouncer.
//
// It starts a throwaway cluster (internal/pgtest), loads it with
// `pgbench -i -s 10`, starts bin/pgverbs in front of it once per relay mode
// (-relay-modes) and, when a pgbouncer binary is installed, PgBouncer in
// session mode, the mode that keeps session semantics as pgverbs does.
//
// Relay cost. The primary figure is the CPU time the proxy process spends
// per transaction: utime+stime of all its threads (/proc/PID/stat) over a
// read-only pgbench run (`pgbench -S`, one primary-key SELECT per
// transaction) of a fixed number of transactions (-transactions, split over
// the clients as pgbench -t). Unlike tps it hardly moves when something else
// runs on the machine, and a fixed count gives every run the same work, so
// that neither proxy's figure includes a different share of connection
// set-up. For each query protocol mode (-M simple, extended, prepared) and
// client count (1, 16, 100) the targets run in pairs: a pair runs direct,
// every pgverbs relay mode and PgBouncer once each, in the opposite order
// from the pair before, so that drift of the machine (thermal, noisy
// neighbours, caches) hits both sides of a comparison alike. The ratios are
// medians over the pairs of the per-pair ratios: a pgverbs relay mode's CPU
// per transaction over PgBouncer's in the same pair, and each proxy's tps
// over direct tps in the same pair. Next to the CPU, the context switches of
// the proxy per transaction (voluntary and involuntary, summed over the
// threads in /proc/PID/task/*/status) tell working from waiting: every
// switch is a sleep and a wake-up, which costs CPU and, at one client,
// latency.
//
// Reading the output: the header records the machine, the versions and the
// exact command, so that a result can be reproduced and compared. The
// "tps targets" column checks the goals of the project: at least 0.90 of
// direct throughput with one client (where per-message latency dominates),
// at least 0.80 with more (where the proxy competes for CPU with pgbench and
// the server), and a better ratio than PgBouncer. The raw pairs below the
// table show the spread; where it is of the size of a difference, the
// difference means nothing.
//
// Counting cost. Unless -nocount is off, one more target runs a pgverbs
// built with the tag pgverbs_nocount (built from the source tree when
// -nocount is auto), which compiles the relay's per-session counting for
// the metrics away, in the first of -relay-modes; a table gives the CPU
// per transaction of the normal build over it, median of the per-pair
// ratios (nocount.go).
//
// Idle memory. For every count in -idle (1,000 and 10,000), a fresh process
// of each proxy is started in front of a second cluster made for this
// measurement, the clients connect through it and stay idle, and its VmRSS
// growth per client is reported. The second cluster has max_connections
// above the largest count and small shared_buffers: pgverbs relays every
// session to a server backend of its own, so N idle clients hold N
// backends (about 1.5 MB each), whereas PgBouncer assigns one only when a
// client sends something. The benchmark raises its RLIMIT_NOFILE, which the
// proxies and the servers inherit, as far as it is allowed to; pgverbs needs
// two descriptors per client and PgBouncer one, so where the limit cannot
// hold a count the largest one it can hold is measured instead, and the
// output says so.
//
// TLS. With -tls-rounds pairs, a cluster of its own with ssl=on measures
// what TLS adds to the relay cost, at 16 clients in -M prepared and simple:
// plaintext, TLS between pgbench and the proxy (pgverbs with --tls-cert,
// PgBouncer with client_tls_sslmode=require; the server side plaintext)
// and TLS between the proxy and the server (sslmode=require in pgverbs'
// backend URL, PgBouncer's server_tls_sslmode=require; pgbench plaintext),
// each a proxy process of its own, every target once per pair as above.
// pgverbs serves TLS sessions on the goroutine relay whatever its relay
// mode, and its plaintext target runs in the first of -relay-modes: what
// TLS adds is what a user pays for TLS, leaving the loop included.
// Throughput is compared with pgbench straight to the server with the same
// client sslmode: TLS for the client-side case, plaintext for the others.
//
// INSTALL EXTENSION is measured twice: on a generated 10,000-line script
// against the same script sent to the server directly, and on Debian's
// pgTAP against the server's own CREATE EXTENSION of the same files, on a
// second cluster from a relocated copy of the installation (pgtest.Relocate)
// whose share/extension holds them. The pgTAP sides alternate pair by pair,
// each on a fresh connection, and the ratio reported is the median of the
// per-pair ratios; the proxy's and the session backend's CPU time show
// whether the difference is work or waiting. The pgTAP .deb comes from
// PGVERBS_PGTAP_DEB or PGVERBS_EXTENSION_DEBS as in the e2e tests, else from
// apt-get download; without it that section is skipped. The 10,000-line
// script goes through the first of -relay-modes; the pgTAP and base-backup
// benchmarks start pgverbs of their own, in its default relay mode.
//
// WAL archive. With -wal-rounds rounds per mode, a cluster of its own with
// fsync and synchronous_commit on runs pgbench -N -c 8 for -wal-duration
// behind pg_receivewal and behind pgverbs' START WAL ARCHIVE, alternating,
// first asynchronous, then synchronous (named in
// synchronous_standby_names); then a 16 MB segment is preallocated with
// fallocate and by zeros (walarchive.go).
//
// WAL relay. With -relay-rounds rounds, a cluster of its own, as the WAL
// archive's, runs pgbench -N -c 8 for -relay-duration with two standbys
// streaming from it directly (pg_basebackup -R) and with two fed through
// pgverbs (START WAL ARCHIVE, BASE BACKUP ... WITH (STANDBY on)),
// alternating: the primary's tps, its walsenders' CPU and the standbys'
// replay lag (walrelay.go).
//
// Everything runs on this machine: on a small one the proxy, pgbench and
// PostgreSQL share the same cores, which is what the rows with many clients
// measure. Anything else running skews the result, so every run also
// reports the "other load": the share of the machine's CPU capacity (from
// /proc/stat) not used by the benchmark's own processes (pgbench, the
// proxies, the postmaster and its backends). Runs above 10% are flagged;
// trust a throughput comparison only where the other load is near 0 for all
// the targets. On virtual machines, mind that an idle machine can be slower
// at one client than a busy one, because waking an idle virtual CPU is
// expensive.
//
// Usage:
//
//	go run ./internal/tools/bench [-proxy bin/pgverbs] [-relay-modes goroutines]
//	                              [-transactions 100000] [-pairs 5] [-quick]
//	                              [-clients 1,16,100] [-modes simple,extended,prepared]
//	                              [-pgbouncer auto|off|PATH] [-idle 1000,10000]
//	                              [-install-rounds 5] [-pgtap-rounds 7]
//	                              [-backup-scale 70] [-backup-rounds 5] [-storage-scale 70] [-storage-rounds 5] [-tls-rounds 5]
//	                              [-nocount auto|off|PATH] [-wal-rounds 5] [-wal-duration 30s]
//	                              [-relay-rounds 3] [-relay-duration 30s]
package main

import (
	"cmp"
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

const (
	scale = 10
	// maxClients bounds -clients so that maxConnections always suffices.
	maxClients = 200
	// maxConnections is that of the relay cluster: a direct run's clients,
	// the pgverbs sessions of the run before still winding down and the
	// server connections PgBouncer keeps in its pool after a run
	// (server_idle_timeout is 10 minutes) may all be there at once, plus
	// our own probes. The idle measurement has a cluster of its own.
	maxConnections = 1100
	// proxyMaxClients lifts pgverbs' default of 1000 for the relay runs,
	// so that a run never races with the sessions of the one before.
	proxyMaxClients = 2000
	dialParallelism = 16
	// defaultRelayMode is pgverbs' relay mode on Linux when it gets no --relay-mode
	// flag, which binaries before that flag cannot parse.
	defaultRelayMode = "loop"
	// minPairs is the fewest pairs worth calling a measurement; fewer is
	// a try-out, and the output says so.
	minPairs = 5
)

// Target names, as printed in the tables; pgverbs targets are named by
// pgverbsName.
const (
	direct    = "direct"
	pgbouncer = "pgbouncer"
)

var relayModeName = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

type options struct {
	proxy string
	// relayModes lists the pgverbs relay modes, one target each.
	relayModes []string
	// transactions is the count of one pgbench run, all clients together.
	transactions int
	// pairs is the number of rounds per configuration, each running every
	// target once; 0 skips the relay benchmark.
	pairs     int
	quick     bool
	clients   []int
	modes     []string
	pgbouncer string
	// idle lists the idle client counts of the memory measurement.
	idle []int
	// installRounds is the number of INSTALL + UNINSTALL round trips timed.
	installRounds int
	// pgtapRounds is the number of native/pgverbs pairs of pgTAP installs.
	pgtapRounds int
	// backupScale sizes the base-backup benchmark's cluster (pgbench
	// scale; 0 skips it); backupRounds is its number of rounds.
	backupScale, backupRounds int
	// storageScale and storageRounds are the object-storage backup
	// benchmark's (BASE BACKUP to SeaweedFS vs local disk vs
	// pg_basebackup + upload).
	storageScale, storageRounds int
	// tlsRounds is the number of pairs of the TLS measurement; 0 skips it.
	tlsRounds int
	// walRounds is the number of rounds of the WAL archive benchmark (0
	// skips it), each pgbench run walDuration long (walarchive.go).
	walRounds   int
	walDuration time.Duration
	// relayRounds is the number of rounds of the WAL relay benchmark (0
	// skips it), each pgbench run relayDuration long (walrelay.go).
	relayRounds   int
	relayDuration time.Duration
	// nocount is the no-counting build: auto, off or a path.
	nocount string
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, opts)
	interrupted := ctx.Err() != nil
	stop()
	if interrupted {
		// Whatever failed after the signal failed because of it.
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.proxy, "proxy", "bin/pgverbs", "pgverbs binary to measure (make build)")
	relayModes := fs.String("relay-modes", defaultRelayMode, "comma-separated pgverbs relay modes, one pgverbs target each, started with --relay-mode=MODE (the default alone passes no flag)")
	fs.IntVar(&o.transactions, "transactions", 100000, "transactions per pgbench run, all clients together (each client runs pgbench -t transactions/clients)")
	fs.IntVar(&o.pairs, "pairs", minPairs, "pairs per configuration, each running every target once, in alternating order; ratios are medians over the pairs (0 skips the relay benchmark)")
	fs.BoolVar(&o.quick, "quick", false, "try-out in a few minutes: -transactions 10000 -pairs 2 -idle 1000 unless given explicitly")
	clients := fs.String("clients", "1,16,100", "comma-separated pgbench client counts")
	modes := fs.String("modes", "simple,extended,prepared", "comma-separated pgbench -M modes")
	fs.StringVar(&o.pgbouncer, "pgbouncer", "auto", "pgbouncer binary: auto (PATH, then /usr/sbin/pgbouncer), off, or a path")
	fs.StringVar(&o.nocount, "nocount", "auto", "pgverbs built with -tags pgverbs_nocount, a target of its own in the first relay mode to measure what counting costs: auto (built from this source tree), off, or a path")
	idle := fs.String("idle", "1000,10000", "comma-separated idle client counts for the memory measurement (0 skips it)")
	fs.IntVar(&o.installRounds, "install-rounds", 5, "INSTALL + UNINSTALL EXTENSION round trips of a 10,000-line script (0 skips them)")
	fs.IntVar(&o.pgtapRounds, "pgtap-rounds", 7, "pairs of native CREATE EXTENSION pgtap and INSTALL EXTENSION pgtap through pgverbs (0 skips them)")
	fs.IntVar(&o.backupScale, "backup-scale", 70, "pgbench scale of the base-backup benchmark's cluster, about 15 MB each (0 skips it)")
	fs.IntVar(&o.backupRounds, "backup-rounds", 5, "rounds of the base-backup benchmark (odd, for a true median)")
	fs.IntVar(&o.storageScale, "storage-scale", 70, "pgbench scale of the object-storage backup benchmark's cluster (0 skips it)")
	fs.IntVar(&o.storageRounds, "storage-rounds", 5, "rounds of the object-storage backup benchmark")
	fs.IntVar(&o.tlsRounds, "tls-rounds", minPairs, "pairs of the TLS relay-cost measurement, each running every TLS target once, at 16 clients in -M prepared and simple (0 skips it)")
	fs.IntVar(&o.walRounds, "wal-rounds", 5, "rounds of the WAL archive benchmark per mode (asynchronous, synchronous), each running pg_receivewal and pgverbs' archive once, alternating (0 skips it)")
	fs.DurationVar(&o.walDuration, "wal-duration", 30*time.Second, "duration of each pgbench -N -c 8 run of the WAL archive benchmark")
	fs.IntVar(&o.relayRounds, "relay-rounds", 3, "rounds of the WAL relay benchmark, each running two direct standbys and two fed through pgverbs once, alternating (0 skips it)")
	fs.DurationVar(&o.relayDuration, "relay-duration", 30*time.Second, "duration of each pgbench -N -c 8 run of the WAL relay benchmark")
	// The timed runs these flags set up gave every target a different
	// amount of work; say what replaced them rather than "flag provided
	// but not defined".
	fs.Func("duration", "removed: runs have a fixed count, see -transactions", func(string) error {
		return errors.New("removed: runs have a fixed transaction count, see -transactions")
	})
	fs.Func("rounds", "removed: see -pairs", func(string) error { return errors.New("removed: see -pairs") })
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["transactions"] {
			o.transactions = 10000
		}
		if !set["pairs"] {
			o.pairs = 2
		}
		if !set["idle"] {
			*idle = "1000"
		}
		if !set["tls-rounds"] {
			o.tlsRounds = 2
		}
	}
	if o.transactions < 1 {
		return o, fmt.Errorf("-transactions %d: want at least 1", o.transactions)
	}
	if o.pairs < 0 {
		return o, fmt.Errorf("-pairs %d: want 0 or more", o.pairs)
	}
	if o.pgtapRounds < 0 {
		return o, fmt.Errorf("-pgtap-rounds %d: want 0 or more", o.pgtapRounds)
	}
	if o.tlsRounds < 0 {
		return o, fmt.Errorf("-tls-rounds %d: want 0 or more", o.tlsRounds)
	}
	for _, m := range strings.Split(*relayModes, ",") {
		m = strings.TrimSpace(m)
		if !relayModeName.MatchString(m) {
			return o, fmt.Errorf("-relay-modes: %q is not a relay mode name", m)
		}
		if slices.Contains(o.relayModes, m) {
			return o, fmt.Errorf("-relay-modes: %q is listed twice", m)
		}
		o.relayModes = append(o.relayModes, m)
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > maxClients {
			return o, fmt.Errorf("-clients: %q is not a client count in 1..%d", s, maxClients)
		}
		o.clients = append(o.clients, n)
	}
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains([]string{"simple", "extended", "prepared"}, m) {
			return o, fmt.Errorf("-modes: %q is not a pgbench -M mode", m)
		}
		o.modes = append(o.modes, m)
	}
	for _, s := range strings.Split(*idle, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 || n > maxIdle {
			return o, fmt.Errorf("-idle: %q is not a client count in 0..%d", s, maxIdle)
		}
		if n > 0 {
			o.idle = append(o.idle, n)
		}
	}
	return o, nil
}

// pgverbsName names the target of one relay mode.
func pgverbsName(mode string) string {
	return "pgverbs (" + mode + ")"
}

// relayModeArgs returns the pgverbs arguments that select mode. The default
// alone gets none, so that binaries from before --relay-mode can still be
// measured.
func relayModeArgs(o options, mode string) []string {
	if len(o.relayModes) == 1 && mode == defaultRelayMode {
		return nil
	}
	return []string{"--relay-mode=" + mode}
}

func run(ctx context.Context, o options) (err error) {
	proxyPath, err := filepath.Abs(o.proxy)
	if err != nil {
		return err
	}
	if _, err := os.Stat(proxyPath); err != nil {
		return fmt.Errorf("%w (run make build first, or pass -proxy)", err)
	}
	bouncerPath, err := findPgbouncer(o.pgbouncer)
	if err != nil {
		return err
	}
	// Before any child starts: they inherit the limit.
	files := raiseFileLimit(filesWanted(o.idle))

	fmt.Printf("command: %s\n", strings.TrimSpace("go run ./internal/tools/bench "+shellJoin(os.Args[1:])))
	fmt.Printf("settings: -relay-modes %s -transactions %d -pairs %d -clients %s -modes %s -idle %s -tls-rounds %d\n",
		strings.Join(o.relayModes, ","), o.transactions, o.pairs, joinInts(o.clients), strings.Join(o.modes, ","), cmp.Or(joinInts(o.idle), "0"), o.tlsRounds)
	fmt.Printf("open files: %s\n", files)

	fmt.Fprintf(os.Stderr, "starting PostgreSQL (max_connections=%d)...\n", maxConnections)
	cluster, err := pgtest.New(pgtest.Options{Settings: clusterSettings()})
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := cluster.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop cluster: %w", stopErr))
		}
	}()
	if err := printMachine(ctx, cluster, proxyPath, bouncerPath); err != nil {
		return err
	}

	extDir, script, err := writeBenchPackage()
	if err != nil {
		return err
	}
	defer os.RemoveAll(extDir)
	// The pgverbs processes of the relay benchmark; the first also serves
	// the INSTALL measurement.
	var proxies []*daemon
	defer func() { stopPgverbs(proxies) }()
	modes := o.relayModes
	if o.pairs == 0 {
		modes = modes[:1]
	}
	for _, mode := range modes {
		p, err := startPgverbs(ctx, proxyPath, backendURL(cluster.Port, "disable"), extDir, pgverbsName(mode), proxyMaxClients, relayModeArgs(o, mode)...)
		if err != nil {
			return err
		}
		proxies = append(proxies, p)
	}

	if o.pairs > 0 {
		fmt.Fprintf(os.Stderr, "pgbench -i -s %d...\n", scale)
		start := time.Now()
		if _, _, err := pgbench(ctx, cluster.Bin("pgbench"), cluster.Port, "", "-i", "-s", strconv.Itoa(scale), "-q"); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "initialised in %s\n", time.Since(start).Round(100*time.Millisecond))

		targets := []*target{{name: direct, port: cluster.Port}}
		for _, p := range proxies {
			targets = append(targets, &target{name: p.name, port: p.port, daemon: p, pgverbs: true})
		}
		nocountPath, cleanup, err := nocountBinary(ctx, o.nocount)
		defer cleanup()
		if err != nil {
			return err
		}
		if nocountPath != "" {
			name := pgverbsName(modes[0] + nocountSuffix)
			p, err := startPgverbs(ctx, nocountPath, backendURL(cluster.Port, "disable"), extDir, name, proxyMaxClients, relayModeArgs(o, modes[0])...)
			if err != nil {
				return err
			}
			proxies = append(proxies, p)
			targets = append(targets, &target{name: name, port: p.port, daemon: p, countingOf: proxies[0].name})
		}
		if bouncerPath != "" {
			// Session mode gives every client a server connection of its
			// own, so the pool must hold the largest run's clients.
			bouncer, cleanup, err := startPgbouncer(ctx, bouncerPath, pgbouncer, cluster.Port, slices.Max(o.clients), proxyMaxClients)
			defer cleanup()
			if err != nil {
				return err
			}
			defer bouncer.stop()
			targets = append(targets, &target{name: pgbouncer, port: bouncer.port, daemon: bouncer})
		}
		runner, err := newRunner(cluster, targets)
		if err != nil {
			return err
		}
		results, err := runner.benchmark(ctx, o, targets)
		if err != nil {
			return err
		}
		printRelay(o, targets, results)
		fmt.Printf("\nload average after the runs: %s\n", loadAvg())
	}

	if o.tlsRounds > 0 {
		if err := runTLSBench(ctx, o, proxyPath, bouncerPath, extDir); err != nil {
			return err
		}
	}
	if len(o.idle) > 0 {
		if err := runIdleBench(ctx, o, proxyPath, bouncerPath, extDir, files.limit); err != nil {
			return err
		}
	}
	if o.installRounds > 0 {
		fmt.Fprintln(os.Stderr, "INSTALL/UNINSTALL latency...")
		rs, err := measureInstall(ctx, o.installRounds,
			fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", cluster.Port),
			fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", proxies[0].port), script)
		if err != nil {
			return err
		}
		if len(o.relayModes) > 1 {
			fmt.Printf("\nINSTALL below ran through %s, the first of -relay-modes\n", proxies[0].name)
		}
		printInstall(rs)
	}
	if o.pgtapRounds > 0 {
		if err := runPgtapBench(ctx, proxyPath, cluster, o.pgtapRounds); err != nil {
			return err
		}
	}
	if o.backupScale > 0 {
		if err := runBackupBench(ctx, proxyPath, o.backupScale, o.backupRounds); err != nil {
			return err
		}
	}
	if o.storageScale > 0 {
		if err := runStorageBench(ctx, proxyPath, o.storageScale, o.storageRounds); err != nil {
			return err
		}
	}
	if o.walRounds > 0 {
		if err := runWALArchiveBench(ctx, proxyPath, o.walRounds, o.walDuration); err != nil {
			return err
		}
	}
	if o.relayRounds > 0 {
		if err := runWALRelayBench(ctx, proxyPath, o.relayRounds, o.relayDuration); err != nil {
			return err
		}
	}
	return nil
}

// clusterSettings are those of the benchmark's cluster, and also of the
// pgTAP benchmark's second one, so that its native side differs only in
// having pgTAP's files.
func clusterSettings() map[string]string {
	return map[string]string{
		"max_connections": strconv.Itoa(maxConnections),
		// The pgbench -S working set (scale 10, ~150 MB) stays in shared
		// buffers, so the runs measure protocol cost, not I/O.
		"shared_buffers": "256MB",
	}
}

// findPgbouncer resolves -pgbouncer; "" means PgBouncer is skipped.
func findPgbouncer(flagValue string) (string, error) {
	switch flagValue {
	case "off":
		return "", nil
	case "auto":
		if p, err := exec.LookPath("pgbouncer"); err == nil {
			return p, nil
		}
		// Debian installs it outside a normal user's PATH.
		if fi, err := os.Stat("/usr/sbin/pgbouncer"); err == nil && !fi.IsDir() {
			return "/usr/sbin/pgbouncer", nil
		}
		fmt.Println("pgbouncer: not found; its columns are skipped (apt-get install pgbouncer to include them)")
		return "", nil
	default:
		if _, err := os.Stat(flagValue); err != nil {
			return "", fmt.Errorf("-pgbouncer: %w", err)
		}
		return flagValue, nil
	}
}

// printMachine records what the numbers depend on, so that results from
// different machines or versions are never compared unknowingly.
func printMachine(ctx context.Context, cluster *pgtest.Cluster, proxyPath, bouncerPath string) error {
	conn, err := pgconn.Connect(ctx, cluster.SuperURL())
	if err != nil {
		return err
	}
	res := conn.ExecParams(ctx, "SELECT version()", nil, nil, nil, nil).Read()
	conn.Close(context.Background())
	if res.Err != nil {
		return res.Err
	}
	pgVersion := string(res.Rows[0][0])

	fmt.Printf("machine: %d CPUs (%s), %s RAM, Linux %s\n", runtime.NumCPU(), cpuModel(), memTotal(), firstLine(readFile("/proc/sys/kernel/osrelease")))
	proxyGo := "unknown"
	if bi, err := buildinfo.ReadFile(proxyPath); err == nil {
		proxyGo = bi.GoVersion
	}
	fmt.Printf("go: bench %s, %s built with %s\n", runtime.Version(), proxyPath, proxyGo)
	fmt.Printf("load average: %s\n", loadAvg())
	fmt.Printf("postgresql: %s\n", pgVersion)
	fmt.Printf("pgbench: %s\n", commandVersion(cluster.Bin("pgbench")))
	if bouncerPath != "" {
		fmt.Printf("pgbouncer: %s (%s)\n", commandVersion(bouncerPath), bouncerPath)
	}
	return nil
}

// loadAvg reports /proc/loadavg's 1, 5 and 15 minute figures: on a small
// machine, anything else running moves the numbers more than the proxies do.
func loadAvg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func commandVersion(bin string) string {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return firstLine(string(out))
}

func cpuModel() string {
	for _, line := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown model"
}

func memTotal() string {
	for _, line := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err == nil {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return "unknown"
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// target is one row group of the tables.
type target struct {
	name    string
	port    int
	daemon  *daemon // nil for the server itself
	pgverbs bool
	// countingOf names the target this one is the no-counting build of.
	countingOf string
	// sslmode is pgbench's against the target; "" leaves libpq's default.
	sslmode string
}

type config struct {
	mode    string
	clients int
}

// round is one pgbench run against one target.
type round struct {
	tps float64
	// cpuPerTx is the CPU time (user+system) the proxy process spent per
	// transaction, in microseconds; 0 for the server itself. It tells
	// whether a proxy is slow because it burns CPU or because it waits.
	cpuPerTx float64
	// switchesPerTx is the proxy's context switches per transaction,
	// voluntary (it blocked) and involuntary (it was preempted) together.
	switchesPerTx float64
	// other is the share of the machine's CPU capacity used by processes
	// that are not part of the benchmark, steal the share the hypervisor
	// gave to other guests: both should be near 0 for a clean run.
	other, steal float64
}

// results holds every round, per configuration and target; index i of
// every target's rounds belongs to pair i.
type results map[config]map[string][]round

// ratios returns, pair by pair, f(a's round) / f(b's round).
func (r results) ratios(cfg config, a, b string, f func(round) float64) []float64 {
	return r.pairwise(cfg, a, b, f, func(x, y float64) float64 { return x / y })
}

// differences returns, pair by pair, f(a's round) - f(b's round).
func (r results) differences(cfg config, a, b string, f func(round) float64) []float64 {
	return r.pairwise(cfg, a, b, f, func(x, y float64) float64 { return x - y })
}

// pairwise returns, pair by pair, op(f(a's round), f(b's round)): a
// comparison within a pair, whose targets ran back to back, is not moved
// by the machine's drift between pairs.
func (r results) pairwise(cfg config, a, b string, f func(round) float64, op func(x, y float64) float64) []float64 {
	var xs []float64
	for i, x := range r[cfg][a] {
		xs = append(xs, op(f(x), f(r[cfg][b][i])))
	}
	return xs
}

func (r results) values(cfg config, target string, f func(round) float64) []float64 {
	var xs []float64
	for _, x := range r[cfg][target] {
		xs = append(xs, f(x))
	}
	return xs
}

func roundTPS(r round) float64      { return r.tps }
func roundCPU(r round) float64      { return r.cpuPerTx }
func roundSwitches(r round) float64 { return r.switchesPerTx }

// runner runs pgbench and accounts for the CPU used during each run.
type runner struct {
	pgbench    string
	postmaster int // pid, for the CPU of the server and its backends
	daemons    []*daemon
}

func newRunner(cluster *pgtest.Cluster, targets []*target) (*runner, error) {
	pid, err := readPID(filepath.Join(cluster.DataDir, "postmaster.pid"))
	if err != nil {
		return nil, err
	}
	r := &runner{pgbench: cluster.Bin("pgbench"), postmaster: pid}
	for _, t := range targets {
		if t.daemon != nil {
			r.daemons = append(r.daemons, t.daemon)
		}
	}
	return r, nil
}

func readPID(pidFile string) (int, error) {
	first, _, _ := strings.Cut(readFile(pidFile), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("read postmaster pid from %s: %w", pidFile, err)
	}
	return pid, nil
}

// perClient is pgbench's -t for a run of about o.transactions in all.
func perClient(o options, clients int) int {
	return max(1, (o.transactions+clients-1)/clients)
}

// pairOrder returns the order of the targets in pair i: reversed every
// other pair, so that each side of every comparison runs first as often as
// second, and a machine getting faster or slower during a configuration
// does not favour either.
func pairOrder(targets []*target, i int) []*target {
	order := slices.Clone(targets)
	if i%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

func (b *runner) benchmark(ctx context.Context, o options, targets []*target) (results, error) {
	res := results{}
	total := len(o.modes) * len(o.clients) * o.pairs * len(targets)
	fmt.Fprintf(os.Stderr, "%d pgbench runs of %d transactions each, in pairs of %d, plus a warm-up per configuration and target\n",
		total, o.transactions, len(targets))
	n := 0
	for _, mode := range o.modes {
		for _, clients := range o.clients {
			cfg := config{mode, clients}
			res[cfg] = map[string][]round{}
			// A warm-up of a tenth of a run per target: the first run of a
			// configuration would otherwise pay alone for cold caches,
			// the proxies' first sessions of this size and, after pgbench
			// -i, the vacuum's aftermath.
			warm := max(1, perClient(o, clients)/10)
			for _, t := range targets {
				if _, err := b.runSelectOnly(ctx, t, mode, clients, warm); err != nil {
					return nil, err
				}
			}
			for i := range o.pairs {
				for _, t := range pairOrder(targets, i) {
					n++
					r, err := b.runSelectOnly(ctx, t, mode, clients, perClient(o, clients))
					if err != nil {
						return nil, err
					}
					res[cfg][t.name] = append(res[cfg][t.name], r)
					cpu := ""
					if t.daemon != nil {
						cpu = fmt.Sprintf(", CPU %.1f µs/tx, %.2f switches/tx", r.cpuPerTx, r.switchesPerTx)
					}
					fmt.Fprintf(os.Stderr, "[%d/%d] -M %s -c %d pair %d %s: %.0f tps%s, other load %.0f%%, steal %.0f%%\n",
						n, total, mode, clients, i+1, t.name, r.tps, cpu, 100*r.other, 100*r.steal)
				}
			}
		}
	}
	return res, nil
}

var (
	tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	txLine  = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
)

// teardown is how long a proxy gets after pgbench exits to close the run's
// sessions, work that belongs to the run.
const teardown = 100 * time.Millisecond

func (b *runner) runSelectOnly(ctx context.Context, t *target, mode string, clients, txPerClient int) (round, error) {
	before, err := b.sample()
	if err != nil {
		return round{}, err
	}
	var proxyBefore time.Duration
	var switchesBefore map[int]int64
	if t.daemon != nil {
		pid := t.daemon.cmd.Process.Pid
		if proxyBefore, err = procCPU(pid, false); err != nil {
			return round{}, err
		}
		if switchesBefore, err = threadSwitches(pid); err != nil {
			return round{}, err
		}
	}
	out, pgbenchCPU, err := pgbench(ctx, b.pgbench, t.port, t.sslmode,
		"-S", "-n",
		"-t", strconv.Itoa(txPerClient),
		"-c", strconv.Itoa(clients),
		"-j", strconv.Itoa(min(clients, 2)),
		"-M", mode)
	if ctx.Err() != nil {
		return round{}, ctx.Err()
	}
	if err != nil {
		if t.daemon != nil {
			err = fmt.Errorf("%w\n%s output (tail):\n%s", err, t.name, t.daemon.out.String())
		}
		return round{}, fmt.Errorf("%s: %w", t.name, err)
	}
	if t.daemon != nil {
		if err := sleep(ctx, teardown); err != nil {
			return round{}, err
		}
	}
	after, err := b.sample()
	if err != nil {
		return round{}, err
	}
	m := tpsLine.FindStringSubmatch(out)
	txs := txLine.FindStringSubmatch(out)
	if m == nil || txs == nil {
		return round{}, fmt.Errorf("%s: no tps or transaction count in pgbench output:\n%s", t.name, out)
	}
	var r round
	if r.tps, err = strconv.ParseFloat(m[1], 64); err != nil {
		return round{}, err
	}
	capacity := float64(after.at.Sub(before.at)) * float64(runtime.NumCPU())
	foreign := (after.busy - before.busy) - (after.ours - before.ours) - pgbenchCPU
	r.other = max(0, float64(foreign)/capacity)
	r.steal = float64(after.steal-before.steal) / capacity
	if t.daemon != nil {
		pid := t.daemon.cmd.Process.Pid
		proxyAfter, err := procCPU(pid, false)
		if err != nil {
			return round{}, err
		}
		switchesAfter, err := threadSwitches(pid)
		if err != nil {
			return round{}, err
		}
		n, err := strconv.ParseFloat(txs[1], 64)
		if err != nil || n == 0 {
			return round{}, fmt.Errorf("%s: bad transaction count %q", t.name, txs[1])
		}
		r.cpuPerTx = float64((proxyAfter - proxyBefore).Microseconds()) / n
		r.switchesPerTx = float64(switchesSince(switchesBefore, switchesAfter)) / n
	}
	return r, nil
}

// threadSwitches returns the context switches of every live thread of pid
// by thread id. /proc/PID/status counts only the thread group leader, which
// in a Go program is one of many threads doing the work.
func threadSwitches(pid int) (map[int]int64, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	counts := make(map[int]int64, len(entries))
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			// The thread exited since the listing.
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s/%s/status: %w", dir, e.Name(), err)
				}
				counts[tid] += n
			}
		}
	}
	return counts, nil
}

// switchesSince sums the switches of the threads alive at the end since the
// start; a thread started in between counts from 0. A thread that exited
// in between is lost with its count, which for a Go program (whose threads
// hardly ever exit) and single-threaded PgBouncer does not happen in
// practice.
func switchesSince(before, after map[int]int64) int64 {
	var sum int64
	for tid, n := range after {
		sum += n - before[tid]
	}
	return sum
}

// cpuSample is a snapshot for telling the CPU the benchmark uses from what
// everything else on the machine uses, which on a shared machine is the
// main source of noise.
type cpuSample struct {
	at          time.Time
	busy, steal time.Duration // machine-wide, from /proc/stat
	// ours covers the postmaster and its live and reaped children, the
	// proxies and this process; pgbench is accounted for from its exit
	// status.
	ours time.Duration
}

func (b *runner) sample() (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	var err error
	if s.busy, s.steal, err = machineCPU(); err != nil {
		return s, err
	}
	server, err := b.serverCPU()
	if err != nil {
		return s, err
	}
	s.ours += server
	self, err := procCPU(os.Getpid(), false)
	if err != nil {
		return s, err
	}
	s.ours += self
	for _, d := range b.daemons {
		c, err := procCPU(d.cmd.Process.Pid, false)
		if err != nil {
			return s, err
		}
		s.ours += c
	}
	return s, nil
}

// serverCPU returns the CPU time of the postmaster and of all its children,
// exited or not.
func (b *runner) serverCPU() (time.Duration, error) {
	// The backends of the previous run are typically still exiting when a
	// sample is taken. One reaped between reading the postmaster's children
	// time and finding it alive would be counted nowhere, so the snapshot is
	// retaken until the children time held still.
	for attempt := 0; ; attempt++ {
		reaped, err := procCPU(b.postmaster, true)
		if err != nil {
			return 0, err
		}
		live := time.Duration(0)
		procs, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, path := range procs {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path)))
			if ppid, err := procPPID(pid); err == nil && ppid == b.postmaster {
				if c, err := procCPU(pid, true); err == nil {
					live += c
				}
			}
		}
		again, err := procCPU(b.postmaster, true)
		if err != nil {
			return 0, err
		}
		if again == reaped || attempt == 10 {
			return again + live, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// machineCPU returns the busy and steal time of all CPUs together.
func machineCPU() (busy, steal time.Duration, err error) {
	line := firstLine(readFile("/proc/stat"))
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
	}
	// user nice system idle iowait irq softirq steal; guest time is already
	// part of user.
	busy = ticks(v[0] + v[1] + v[2] + v[5] + v[6])
	return busy, ticks(v[7]), nil
}

// statFields returns the fields of /proc/PID/stat after the command name,
// which is in parentheses and may contain spaces: index 0 is field 3 of
// proc_pid_stat(5), the state.
func statFields(pid int) ([]string, error) {
	stat := readFile(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("cannot read /proc/%d/stat", pid)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 15 {
		return nil, fmt.Errorf("short /proc/%d/stat", pid)
	}
	return f, nil
}

func procPPID(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// procCPU returns the user+system CPU time of pid, all threads included,
// and with children also that of its children that it has waited for.
func procCPU(pid int, children bool) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// utime, stime, cutime, cstime: fields 14 to 17.
	last := 12
	if children {
		last = 14
	}
	var sum int64
	for i := 11; i <= last; i++ {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		sum += n
	}
	return ticks(sum), nil
}

// ticks converts clock ticks; USER_HZ is 100 on every Linux architecture Go
// supports.
func ticks(n int64) time.Duration {
	return time.Duration(n) * 10 * time.Millisecond
}

// pgbench runs pgbench against 127.0.0.1:port as the superuser and returns
// its combined output and the CPU time it used. sslmode is libpq's; ""
// leaves its default (prefer).
func pgbench(ctx context.Context, bin string, port int, sslmode string, args ...string) (string, time.Duration, error) {
	args = append(args, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "postgres")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv()
	if sslmode != "" {
		cmd.Env = append(cmd.Env, "PGSSLMODE="+sslmode)
	}
	// SIGINT lets pgbench disconnect cleanly; the kill is the fallback.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return "", 0, ctx.Err()
	}
	if err != nil {
		return "", 0, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// cleanEnv drops PG* variables: a developer's PGHOST, PGOPTIONS or PGSSLMODE
// would silently change what is measured.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "LC_ALL=") {
			env = append(env, kv)
		}
	}
	return append(env, "LC_ALL=C")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// minRatio is the share of direct throughput pgverbs must keep. The goal is
// stated for 1 and 16 clients; other counts are held to the concurrent one.
func minRatio(clients int) float64 {
	if clients == 1 {
		return 0.90
	}
	return 0.80
}

// disturbedAbove is the share of the machine used by other processes above
// which a run is flagged: on two cores, 10% is a fifth of one.
const disturbedAbove = 0.10

// printRelay prints the relay benchmark: one table row per configuration
// and target, a summary of the primary figure, and the raw pairs.
func printRelay(o options, targets []*target, res results) {
	hasBouncer := slices.ContainsFunc(targets, func(t *target) bool { return t.name == pgbouncer })
	rows := [][]string{{"mode", "clients", "target", "CPU µs/tx", "CPU/tx vs pgbouncer", "switches/tx",
		"tps", "tps vs direct", "max other load", "tps targets"}}
	missed, checked, disturbed := 0, 0, 0
	for _, mode := range o.modes {
		for _, clients := range o.clients {
			cfg := config{mode, clients}
			bouncerRatio := 0.0
			if hasBouncer {
				bouncerRatio = median(res.ratios(cfg, pgbouncer, direct, roundTPS))
			}
			for _, t := range targets {
				row := []string{mode, strconv.Itoa(clients), t.name, "", "", "",
					fmt.Sprintf("%.0f", median(res.values(cfg, t.name, roundTPS))), "", "", ""}
				if t.daemon != nil {
					row[3] = fmt.Sprintf("%.1f", median(res.values(cfg, t.name, roundCPU)))
					row[5] = fmt.Sprintf("%.2f", median(res.values(cfg, t.name, roundSwitches)))
					tr := median(res.ratios(cfg, t.name, direct, roundTPS))
					row[7] = fmt.Sprintf("%.3f", tr)
					if t.pgverbs {
						if hasBouncer {
							row[4] = fmt.Sprintf("%.2f", median(res.ratios(cfg, t.name, pgbouncer, roundCPU)))
						}
						var misses []string
						if tr < minRatio(clients) {
							misses = append(misses, fmt.Sprintf("< %.2f", minRatio(clients)))
						}
						if hasBouncer && tr <= bouncerRatio {
							misses = append(misses, "<= pgbouncer")
						}
						checked++
						row[9] = "met"
						if len(misses) > 0 {
							row[9] = "MISSED: " + strings.Join(misses, ", ")
							missed++
						}
					}
				}
				other, n := res.otherLoad(cfg, t.name)
				disturbed += n
				row[8] = fmt.Sprintf("%.0f%%", 100*other)
				rows = append(rows, row)
			}
		}
	}

	fmt.Printf("\nrelay cost: pgbench -S -n -t %d/clients -c clients -j min(clients,2) -M mode, scale %d, %d pair(s) per configuration (%s)\n",
		o.transactions, scale, o.pairs, pairWord(o.pairs))
	fmt.Printf("CPU and switches: the proxy process, all threads (/proc/PID/stat utime+stime; /proc/PID/task/*/status\n" +
		"voluntary+nonvoluntary_ctxt_switches), per transaction pgbench processed; ratios \"vs\" are medians of the\n" +
		"per-pair ratios, the other columns medians of the pairs\n\n")
	printMarkdown(rows)
	goal := fmt.Sprintf("tps targets: pgverbs/direct >= %.2f at 1 client, >= %.2f at more", minRatio(1), minRatio(16))
	if hasBouncer {
		goal += ", and pgverbs/direct > pgbouncer/direct"
	}
	fmt.Printf("\n%s: %d of %d met\n", goal, checked-missed, checked)
	warnDisturbed(disturbed)

	if hasBouncer {
		fmt.Printf("\nCPU per transaction, pgverbs : PgBouncer (median of %d per-pair ratios):\n\n", o.pairs)
		header := []string{"relay mode", "mode"}
		for _, c := range o.clients {
			header = append(header, fmt.Sprintf("%d client(s)", c))
		}
		summary := [][]string{header}
		for _, t := range targets {
			if !t.pgverbs {
				continue
			}
			for _, mode := range o.modes {
				row := []string{t.name, mode}
				for _, c := range o.clients {
					row = append(row, fmt.Sprintf("%.2f", median(res.ratios(config{mode, c}, t.name, pgbouncer, roundCPU))))
				}
				summary = append(summary, row)
			}
		}
		printMarkdown(summary)
	}
	printCountingCost(o, targets, res)
	printPairs(o, targets, res)
}

// otherLoad returns the largest share of the machine that other processes
// used during a run of target, and how many of its runs were disturbed.
func (r results) otherLoad(cfg config, target string) (largest float64, disturbed int) {
	for _, x := range r[cfg][target] {
		largest = max(largest, x.other)
		if x.other > disturbedAbove {
			disturbed++
		}
	}
	return largest, disturbed
}

// warnDisturbed says how many runs of a table were disturbed.
func warnDisturbed(runs int) {
	if runs > 0 {
		fmt.Printf("warning: in %d run(s) other processes used more than %.0f%% of the machine; see \"other\" below\n", runs, 100*disturbedAbove)
	}
}

// printPairs prints every run, pair by pair in the order they ran, to show
// the spread behind a table's medians.
func printPairs(o options, targets []*target, res results) {
	fmt.Printf("\nraw pairs: tps, and for the proxies CPU µs/tx and switches/tx; other = the share of the machine's CPU\n" +
		"used by processes outside the benchmark during each run:\n")
	for _, mode := range o.modes {
		for _, clients := range o.clients {
			cfg := config{mode, clients}
			fmt.Printf("  -M %s -c %d\n", mode, clients)
			for i := range o.pairs {
				var parts, others []string
				for _, t := range pairOrder(targets, i) {
					r := res[cfg][t.name][i]
					part := fmt.Sprintf("%s %.0f", t.name, r.tps)
					if t.daemon != nil {
						part += fmt.Sprintf(" %.1f µs %.2f sw", r.cpuPerTx, r.switchesPerTx)
					}
					parts = append(parts, part)
					others = append(others, fmt.Sprintf("%.0f%%", 100*r.other))
				}
				fmt.Printf("    pair %d: %s | other %s\n", i+1, strings.Join(parts, " | "), strings.Join(others, " "))
			}
		}
	}
}

func pairWord(pairs int) string {
	if pairs < minPairs {
		return fmt.Sprintf("fewer than %d: a try-out, not a measurement", minPairs)
	}
	return "order reversed every other pair"
}

// printMarkdown prints rows as an aligned Markdown table, readable in a
// terminal and pasteable into docs/BENCHMARKS.md as is.
func printMarkdown(rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, cell := range cells {
			// Numbers right-aligned, text left-aligned.
			if _, err := strconv.ParseFloat(cell, 64); err == nil {
				fmt.Fprintf(&b, " %*s |", widths[i], cell)
			} else {
				fmt.Fprintf(&b, " %-*s |", widths[i], cell)
			}
		}
		fmt.Println(b.String())
	}
	line(rows[0])
	sep := make([]string, len(widths))
	for i, w := range widths {
		sep[i] = strings.Repeat("-", w)
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
}

// idleResult is the memory of one proxy holding idle client connections,
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// daemon is a proxy process started for the whole benchmark.
type daemon struct {
	name    string
	port    int
	cmd     *exec.Cmd
	out     *tailBuffer
	stopSig os.Signal
	exited  chan struct{}
}

func startDaemon(ctx context.Context, name string, port int, cmd *exec.Cmd, stopSig os.Signal) (*daemon, error) {
	d := &daemon{name: name, port: port, cmd: cmd, out: &tailBuffer{max: 16 << 10}, stopSig: stopSig, exited: make(chan struct{})}
	cmd.Stdout = d.out
	cmd.Stderr = d.out
	cmd.Env = cleanEnv()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(d.exited)
	}()
	if err := d.waitListening(ctx); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

func (d *daemon) waitListening(ctx context.Context) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept connections on %s: %w\n%s", d.name, addr, err, d.out.String())
		}
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited before listening on %s: %s\n%s", d.name, addr, d.cmd.ProcessState, d.out.String())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop asks the process to exit and kills it if it does not within a few
// seconds; it is safe to call more than once.
func (d *daemon) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(d.stopSig)
	select {
	case <-d.exited:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// backendURL is pgverbs' --backend for the server on 127.0.0.1:port.
func backendURL(port int, sslmode string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=%s", port, sslmode)
}

// startPgverbs starts a pgverbs process named name (as the tables call it)
// in front of backend that accepts up to maxClients clients; extra selects
// a relay mode or TLS.
func startPgverbs(ctx context.Context, bin, backend, extDir, name string, maxClients int, extra ...string) (*daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--backend", backend,
		"--log-level", "warn",
		"--max-client-conns", strconv.Itoa(maxClients),
		"--extensions", extDir,
	}, extra...)
	fmt.Printf("%s: %s %s\n", name, bin, shellJoin(args))
	// SIGINT ends every session at once; SIGTERM would wait for them.
	return startDaemon(ctx, name, port, exec.Command(bin, args...), os.Interrupt)
}

// stopPgverbs stops pgverbs processes, printing what each logged: a
// warning during a run may explain its figure.
func stopPgverbs(ds []*daemon) {
	for _, d := range ds {
		if msg := strings.TrimSpace(d.out.String()); msg != "" {
			fmt.Printf("\n%s logged (level warn and above):\n%s\n", d.name, msg)
		}
		d.stop()
	}
}

// startPgbouncer runs PgBouncer in session mode, the mode that keeps
// session semantics as pgverbs does, so the comparison is like for like;
// name is its target's, and extra are further "key = value" lines of its
// [pgbouncer] section. The returned cleanup removes its temporary directory
// and must be called even on error.
func startPgbouncer(ctx context.Context, bin, name string, pgPort, poolSize, maxClients int, extra ...string) (*daemon, func(), error) {
	cleanup := func() {}
	port, err := freePort()
	if err != nil {
		return nil, cleanup, err
	}
	dir, err := os.MkdirTemp(tempBase(), "pgverbs-bench-pgbouncer-*")
	if err != nil {
		return nil, cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }

	ini := fmt.Sprintf(`[databases]
* = host=127.0.0.1 port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = session
max_client_conn = %d
default_pool_size = %d
ignore_startup_parameters = extra_float_digits
logfile = %s
log_connections = 0
log_disconnections = 0
`, pgPort, port, filepath.Join(dir, "userlist.txt"), maxClients, poolSize, filepath.Join(dir, "pgbouncer.log"))
	for _, line := range extra {
		ini += line + "\n"
	}
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	files := map[string]string{
		iniPath: ini,
		// trust still requires the user to be listed.
		filepath.Join(dir, "userlist.txt"): `"postgres" ""` + "\n",
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return nil, cleanup, err
		}
	}

	cmd := exec.Command(bin, iniPath)
	cmd.Dir = dir
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root; it runs as the postgres user,
		// which must be able to read the ini and write its log.
		if err := chownToPostgres(dir); err != nil {
			return nil, cleanup, err
		}
		if err := pgtest.RunAsPostgres(cmd); err != nil {
			return nil, cleanup, err
		}
	}
	fmt.Printf("%s: %s %s (pool_mode=session, default_pool_size=%d, max_client_conn=%d%s)\n",
		name, bin, iniPath, poolSize, maxClients, strings.Join(append([]string{""}, extra...), ", "))
	// SIGTERM is PgBouncer's immediate shutdown; SIGINT would wait for
	// clients.
	d, err := startDaemon(ctx, name, port, cmd, syscall.SIGTERM)
	if err != nil {
		err = fmt.Errorf("%w\npgbouncer.log:\n%s", err, readFile(filepath.Join(dir, "pgbouncer.log")))
	}
	return d, cleanup, err
}

func chownToPostgres(dir string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// tempBase returns a directory the postgres user can traverse when we run
// as root, where TMPDIR may point into root's private home (pgtest's own
// rule, so that the bench's files sit where its clusters' do).
func tempBase() string {
	dir, err := pgtest.TempBase()
	if err != nil {
		return "/tmp"
	}
	return dir
}

// freePort is pgtest's: a port free at the moment, which a caller that
// binds it later may lose to someone else.
func freePort() (int, error) { return pgtest.FreePort() }

// tailBuffer keeps the last max bytes written to it, so that a chatty
// process cannot grow our memory during a long run.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
			quoted[i] = a
		} else {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}

func joinInts(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}
