// Command bench (make bench) measures what pgverbs costs a client compared
// with talking to PostgreSQL directly and with going through PgBouncer.
//
// It starts a throwaway cluster (internal/pgtest), loads it with
// `pgbench -i -s 10`, starts bin/pgverbs in front of it and, when a pgbouncer
// binary is installed, PgBouncer in session mode as well. It then runs the
// read-only pgbench workload (`pgbench -S`, one primary-key SELECT per
// transaction) for each query protocol mode (simple, extended, prepared) and
// client count (1 and 16) against the three targets. Within one
// configuration the targets take turns, round after round, so that drift of
// the machine (thermal, noisy neighbours, caches) hits all of them alike; the
// reported figure is the median of the rounds.
//
// Reading the output: the header records the machine, the versions and the
// exact command, so that a result can be reproduced and compared. In the
// table, "pgverbs/direct" is the share of direct throughput that survives the
// proxy (1.000 = free). The targets column checks the goals of the project:
// at least 0.90 with one client (where per-message latency dominates), at
// least 0.80 with 16 clients (where the proxy competes for CPU with pgbench
// and the server), and a better ratio than PgBouncer. The raw rounds below
// the table show the spread; when it is of the same size as the difference
// between two targets, the difference means nothing. Next to them, "CPU
// µs/tx" is the CPU time the proxy process spent per transaction: a proxy
// that is slow with little CPU is waiting (scheduling, wake-ups), one with a
// lot is doing too much work per message. The last section opens 1,000 idle
// connections through each proxy in turn and reports its resident memory
// (VmRSS) before, while holding them and after closing them, the cost per
// connection, and how many server backends the idle clients occupy (pgverbs
// relays every session to a backend of its own; PgBouncer only assigns one
// when a client sends something).
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
// apt-get download; without it that section is skipped.
//
// Everything runs on this machine: on a small one the proxy, pgbench and
// PostgreSQL share the same cores, which is what the 16-client rows measure.
// Anything else running skews the result, so every run also reports the
// "other load": the share of the machine's CPU capacity (from /proc/stat)
// not used by the benchmark's own processes (pgbench, the proxies, the
// postmaster and its backends). Runs above 10% are flagged; trust a
// comparison only where the other load is near 0 for all the targets. On
// virtual machines, mind that an idle machine can be slower at one client
// than a busy one, because waking an idle virtual CPU is expensive.
//
// Usage:
//
//	go run ./internal/tools/bench [-proxy bin/pgverbs] [-duration 10s] [-rounds 3]
//	                              [-quick] [-clients 1,16] [-modes simple,extended,prepared]
//	                              [-pgbouncer auto|off|PATH] [-idle 1000]
//	                              [-install-rounds 5] [-pgtap-rounds 7]
//	                              [-backup-scale 70] [-backup-rounds 5]
package main

import (
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

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

const (
	scale = 10
	// maxConnections leaves room above the idle-connection test (one backend
	// per client, since pgverbs relays sessions 1:1) for PgBouncer's pool and
	// our own probes.
	maxConnections = 1100
	// proxyMaxClients lifts pgverbs' default of 1000 so that the idle test
	// never races with sessions of the last pgbench run still winding down.
	proxyMaxClients = 2000
	dialParallelism = 16
)

// Target names, as printed in the table.
const (
	direct    = "direct"
	pgverbs   = "pgverbs"
	pgbouncer = "pgbouncer"
)

type options struct {
	proxy     string
	duration  time.Duration
	rounds    int
	quick     bool
	clients   []int
	modes     []string
	pgbouncer string
	idle      int
	// installRounds is the number of INSTALL + UNINSTALL round trips timed.
	installRounds int
	// pgtapRounds is the number of native/pgverbs pairs of pgTAP installs.
	pgtapRounds int
	// backupScale sizes the base-backup benchmark's cluster (pgbench
	// scale; 0 skips it); backupRounds is its number of rounds.
	backupScale, backupRounds int
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
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of one pgbench run")
	fs.IntVar(&o.rounds, "rounds", 3, "pgbench runs per target and configuration; the median is reported")
	fs.BoolVar(&o.quick, "quick", false, "smoke test: -duration 3s -rounds 1 unless given explicitly")
	clients := fs.String("clients", "1,16", "comma-separated pgbench client counts")
	modes := fs.String("modes", "simple,extended,prepared", "comma-separated pgbench -M modes")
	fs.StringVar(&o.pgbouncer, "pgbouncer", "auto", "pgbouncer binary: auto (PATH, then /usr/sbin/pgbouncer), off, or a path")
	fs.IntVar(&o.idle, "idle", 1000, "idle connections for the memory measurement (0 skips it)")
	fs.IntVar(&o.installRounds, "install-rounds", 5, "INSTALL + UNINSTALL EXTENSION round trips of a 10,000-line script (0 skips them)")
	fs.IntVar(&o.pgtapRounds, "pgtap-rounds", 7, "pairs of native CREATE EXTENSION pgtap and INSTALL EXTENSION pgtap through pgverbs (0 skips them)")
	fs.IntVar(&o.backupScale, "backup-scale", 70, "pgbench scale of the base-backup benchmark's cluster, about 15 MB each (0 skips it)")
	fs.IntVar(&o.backupRounds, "backup-rounds", 5, "rounds of the base-backup benchmark (odd, for a true median)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["duration"] {
			o.duration = 3 * time.Second
		}
		if !set["rounds"] {
			o.rounds = 1
		}
	}
	// pgbench -T takes whole seconds.
	if o.duration < time.Second || o.duration%time.Second != 0 {
		return o, fmt.Errorf("-duration %s: want a whole number of seconds, at least 1s", o.duration)
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	if o.pgtapRounds < 0 {
		return o, fmt.Errorf("-pgtap-rounds %d: want 0 or more", o.pgtapRounds)
	}
	if o.idle < 0 || o.idle > maxConnections-50 {
		return o, fmt.Errorf("-idle %d: want 0..%d (the cluster has max_connections=%d)", o.idle, maxConnections-50, maxConnections)
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 200 {
			return o, fmt.Errorf("-clients: %q is not a client count in 1..200", s)
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
	return o, nil
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

	fmt.Printf("command: %s\n", strings.TrimSpace("go run ./internal/tools/bench "+shellJoin(os.Args[1:])))
	fmt.Printf("settings: -duration %s -rounds %d -clients %s -modes %s -idle %d\n",
		o.duration, o.rounds, joinInts(o.clients), strings.Join(o.modes, ","), o.idle)

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

	fmt.Fprintf(os.Stderr, "pgbench -i -s %d...\n", scale)
	start := time.Now()
	if _, _, err := pgbench(ctx, cluster.Bin("pgbench"), cluster.Port, "-i", "-s", strconv.Itoa(scale), "-q"); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "initialised in %s\n", time.Since(start).Round(100*time.Millisecond))

	targets := []*target{{name: direct, port: cluster.Port}}

	extDir, script, err := writeBenchPackage()
	if err != nil {
		return err
	}
	defer os.RemoveAll(extDir)
	proxy, err := startPgverbs(ctx, proxyPath, cluster.Port, extDir)
	if err != nil {
		return err
	}
	defer proxy.stop()
	targets = append(targets, &target{name: pgverbs, port: proxy.port, daemon: proxy})

	if bouncerPath != "" {
		bouncer, cleanup, err := startPgbouncer(ctx, bouncerPath, cluster.Port)
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
	printTable(o, targets, results)
	fmt.Printf("\nload average after the runs: %s\n", loadAvg())

	if o.idle > 0 {
		var idle []idleResult
		for _, t := range targets {
			if t.daemon == nil {
				continue
			}
			r, err := measureIdle(ctx, o.idle, cluster, t.daemon)
			if err != nil {
				return err
			}
			idle = append(idle, r)
		}
		printIdle(o.idle, idle)
	}
	if o.installRounds > 0 {
		fmt.Fprintln(os.Stderr, "INSTALL/UNINSTALL latency...")
		rs, err := measureInstall(ctx, o.installRounds,
			fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", cluster.Port),
			fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", proxy.port), script)
		if err != nil {
			return err
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
	if msg := strings.TrimSpace(proxy.out.String()); msg != "" {
		fmt.Printf("\npgverbs logged (level warn and above):\n%s\n", msg)
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

// target is one column group of the table.
type target struct {
	name   string
	port   int
	daemon *daemon // nil for the server itself
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
	// other is the share of the machine's CPU capacity used by processes
	// that are not part of the benchmark, steal the share the hypervisor
	// gave to other guests: both should be near 0 for a clean run.
	other, steal float64
}

// results holds every round, per configuration and target.
type results map[config]map[string][]round

func (r results) tps(cfg config, target string) []float64 {
	var xs []float64
	for _, x := range r[cfg][target] {
		xs = append(xs, x.tps)
	}
	return xs
}

func (r results) cpuPerTx(cfg config, target string) []float64 {
	var xs []float64
	for _, x := range r[cfg][target] {
		xs = append(xs, x.cpuPerTx)
	}
	return xs
}

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

func (b *runner) benchmark(ctx context.Context, o options, targets []*target) (results, error) {
	// The first runs after pgbench -i would otherwise pay for the vacuum's
	// aftermath and cold caches, and the proxies for their first sessions.
	warm := min(o.duration, 5*time.Second)
	for _, t := range targets {
		fmt.Fprintf(os.Stderr, "warm-up %s (%s)\n", t.name, warm)
		if _, err := b.runSelectOnly(ctx, t, "simple", 2, warm); err != nil {
			return nil, err
		}
	}

	res := results{}
	total := len(o.modes) * len(o.clients) * o.rounds * len(targets)
	eta := time.Duration(total) * (o.duration + 500*time.Millisecond)
	fmt.Fprintf(os.Stderr, "%d pgbench runs of %s, about %s\n", total, o.duration, eta.Round(time.Second))
	n := 0
	for _, mode := range o.modes {
		for _, clients := range o.clients {
			cfg := config{mode, clients}
			res[cfg] = map[string][]round{}
			for i := 1; i <= o.rounds; i++ {
				for _, t := range targets {
					n++
					r, err := b.runSelectOnly(ctx, t, mode, clients, o.duration)
					if err != nil {
						return nil, err
					}
					res[cfg][t.name] = append(res[cfg][t.name], r)
					cpu := ""
					if t.daemon != nil {
						cpu = fmt.Sprintf(", %s CPU %.1f µs/tx", t.name, r.cpuPerTx)
					}
					fmt.Fprintf(os.Stderr, "[%d/%d] -M %s -c %d round %d %s: %.0f tps%s, other load %.0f%%, steal %.0f%%\n",
						n, total, mode, clients, i, t.name, r.tps, cpu, 100*r.other, 100*r.steal)
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

func (b *runner) runSelectOnly(ctx context.Context, t *target, mode string, clients int, d time.Duration) (round, error) {
	before, err := b.sample()
	if err != nil {
		return round{}, err
	}
	var proxyBefore time.Duration
	if t.daemon != nil {
		if proxyBefore, err = procCPU(t.daemon.cmd.Process.Pid, false); err != nil {
			return round{}, err
		}
	}
	out, pgbenchCPU, err := pgbench(ctx, b.pgbench, t.port,
		"-S", "-n",
		"-T", strconv.Itoa(int(d/time.Second)),
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
		proxyAfter, err := procCPU(t.daemon.cmd.Process.Pid, false)
		if err != nil {
			return round{}, err
		}
		n, err := strconv.ParseFloat(txs[1], 64)
		if err != nil || n == 0 {
			return round{}, fmt.Errorf("%s: bad transaction count %q", t.name, txs[1])
		}
		r.cpuPerTx = float64((proxyAfter - proxyBefore).Microseconds()) / n
	}
	return r, nil
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
// its combined output and the CPU time it used.
func pgbench(ctx context.Context, bin string, port int, args ...string) (string, time.Duration, error) {
	args = append(args, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "postgres")
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv()
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

func printTable(o options, targets []*target, res results) {
	hasBouncer := slices.ContainsFunc(targets, func(t *target) bool { return t.name == pgbouncer })
	header := []string{"mode", "clients", "tps direct", "tps pgverbs", "pgverbs/direct"}
	if hasBouncer {
		header = append(header, "tps pgbouncer", "pgbouncer/direct")
	}
	header = append(header, "max other load", "targets")
	rows := [][]string{header}
	missed, disturbed := 0, 0
	for _, mode := range o.modes {
		for _, clients := range o.clients {
			cfg := config{mode, clients}
			d := median(res.tps(cfg, direct))
			v := median(res.tps(cfg, pgverbs))
			vr := v / d
			row := []string{mode, strconv.Itoa(clients), fmt.Sprintf("%.0f", d), fmt.Sprintf("%.0f", v), fmt.Sprintf("%.3f", vr)}
			var misses []string
			if vr < minRatio(clients) {
				misses = append(misses, fmt.Sprintf("pgverbs < %.2f", minRatio(clients)))
			}
			if hasBouncer {
				b := median(res.tps(cfg, pgbouncer))
				br := b / d
				row = append(row, fmt.Sprintf("%.0f", b), fmt.Sprintf("%.3f", br))
				if vr <= br {
					misses = append(misses, "pgverbs <= pgbouncer")
				}
			}
			verdict := "met"
			if len(misses) > 0 {
				verdict = "MISSED: " + strings.Join(misses, ", ")
				missed++
			}
			other := 0.0
			for _, t := range targets {
				for _, r := range res[cfg][t.name] {
					other = max(other, r.other)
					if r.other > disturbedAbove {
						disturbed++
					}
				}
			}
			rows = append(rows, append(row, fmt.Sprintf("%.0f%%", 100*other), verdict))
		}
	}

	fmt.Printf("\npgbench -S -n -T %d -j min(clients,2), median of %d round(s), scale %d\n\n",
		int(o.duration/time.Second), o.rounds, scale)
	printMarkdown(rows)
	goal := fmt.Sprintf("targets: pgverbs/direct >= %.2f at 1 client, >= %.2f at 16", minRatio(1), minRatio(16))
	if hasBouncer {
		goal += ", and pgverbs/direct > pgbouncer/direct"
	}
	fmt.Printf("\n%s: %d of %d configurations met\n", goal, len(rows)-1-missed, len(rows)-1)
	if disturbed > 0 {
		fmt.Printf("warning: in %d run(s) other processes used more than %.0f%% of the machine; see \"other\" below\n", disturbed, 100*disturbedAbove)
	}

	fmt.Printf("\nraw tps per round (targets alternating), median proxy CPU per transaction, and the\n" +
		"share of the machine's CPU used by processes outside the benchmark during each run:\n")
	for _, mode := range o.modes {
		for _, clients := range o.clients {
			cfg := config{mode, clients}
			var parts []string
			for _, t := range targets {
				var xs []string
				for _, x := range res.tps(cfg, t.name) {
					xs = append(xs, fmt.Sprintf("%.0f", x))
				}
				part := t.name + " " + strings.Join(xs, " ")
				if t.daemon != nil {
					part += fmt.Sprintf(" (CPU %.1f µs/tx)", median(res.cpuPerTx(cfg, t.name)))
				}
				parts = append(parts, part)
			}
			fmt.Printf("  %-8s -c %-3d tps:   %s\n", mode, clients, strings.Join(parts, " | "))
			parts = parts[:0]
			for _, t := range targets {
				var xs []string
				for _, r := range res[cfg][t.name] {
					xs = append(xs, fmt.Sprintf("%.0f%%", 100*r.other))
				}
				parts = append(parts, t.name+" "+strings.Join(xs, " "))
			}
			fmt.Printf("  %-8s    %-3s other: %s\n", "", "", strings.Join(parts, " | "))
		}
	}
}

// printMarkdown prints rows as an aligned Markdown table, readable in a
// terminal and pasteable into docs/BENCHMARKS.md as is.
func printMarkdown(rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len(cell))
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
// in KiB, and the server backends those connections occupy.
type idleResult struct {
	name                  string
	before, during, after int64
	backends              int
}

// measureIdle opens n connections through a proxy and leaves them idle,
// which is what an application's connection pool does most of the time.
// Proxies run one at a time so that the backend count is each one's own.
func measureIdle(ctx context.Context, n int, cluster *pgtest.Cluster, proxy *daemon) (idleResult, error) {
	r := idleResult{name: proxy.name}
	pid := proxy.cmd.Process.Pid
	backendsBefore, err := countBackends(ctx, cluster)
	if err != nil {
		return r, err
	}
	if r.before, err = vmRSS(pid); err != nil {
		return r, err
	}
	fmt.Fprintf(os.Stderr, "opening %d idle connections through %s...\n", n, proxy.name)
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=60", proxy.port)
	conns, err := openConns(ctx, url, n)
	defer func() { closeConns(conns) }()
	if err != nil {
		return r, fmt.Errorf("%s: %w", proxy.name, err)
	}
	// Let the sessions settle (goroutines parked, buffers allocated) before
	// reading RSS.
	if err := sleep(ctx, time.Second); err != nil {
		return r, err
	}
	if r.during, err = vmRSS(pid); err != nil {
		return r, err
	}
	backendsDuring, err := countBackends(ctx, cluster)
	if err != nil {
		return r, err
	}
	r.backends = backendsDuring - backendsBefore
	closeConns(conns)
	conns = nil
	if err := sleep(ctx, time.Second); err != nil {
		return r, err
	}
	r.after, err = vmRSS(pid)
	return r, err
}

func printIdle(n int, rs []idleResult) {
	fmt.Printf("\nmemory with %d idle client connections (VmRSS from /proc/PID/status, 1 s after connecting/closing):\n\n", n)
	rows := [][]string{{"proxy", "RSS before", fmt.Sprintf("RSS with %d idle", n), "per connection", "RSS after closing", "extra server backends"}}
	for _, r := range rs {
		rows = append(rows, []string{
			r.name, kib(r.before), kib(r.during),
			fmt.Sprintf("%.1f KiB", float64(r.during-r.before)/float64(n)),
			kib(r.after), strconv.Itoa(r.backends),
		})
	}
	printMarkdown(rows)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func openConns(ctx context.Context, url string, n int) ([]*pgconn.PgConn, error) {
	conns := make([]*pgconn.PgConn, n)
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range dialParallelism {
		wg.Go(func() {
			for i := range next {
				conns[i], errs[i] = pgconn.Connect(ctx, url)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	var opened []*pgconn.PgConn
	for _, c := range conns {
		if c != nil {
			opened = append(opened, c)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return opened, fmt.Errorf("open %d connections (%d succeeded): %w", n, len(opened), firstErr(errs))
	}
	return opened, nil
}

func firstErr(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func closeConns(conns []*pgconn.PgConn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.Close(ctx)
		})
	}
	wg.Wait()
}

func countBackends(ctx context.Context, cluster *pgtest.Cluster) (int, error) {
	conn, err := pgconn.Connect(ctx, cluster.SuperURL())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()", nil, nil, nil, nil).Read()
	if res.Err != nil {
		return 0, res.Err
	}
	return strconv.Atoi(string(res.Rows[0][0]))
}

// vmRSS returns the resident set size of pid in KiB.
func vmRSS(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

func kib(k int64) string {
	if k >= 10*1024 {
		return fmt.Sprintf("%.1f MiB", float64(k)/1024)
	}
	return fmt.Sprintf("%d KiB", k)
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

func startPgverbs(ctx context.Context, bin string, pgPort int, extDir string) (*daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--backend", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pgPort),
		"--log-level", "warn",
		"--max-client-conns", strconv.Itoa(proxyMaxClients),
		"--extensions", extDir,
	}
	fmt.Printf("pgverbs: %s %s\n", bin, shellJoin(args))
	// SIGINT ends every session at once; SIGTERM would wait for them.
	return startDaemon(ctx, "pgverbs", port, exec.Command(bin, args...), os.Interrupt)
}

// startPgbouncer runs PgBouncer in session mode, the mode that keeps
// session semantics as pgverbs does, so the comparison is like for like.
// The returned cleanup removes its temporary directory and must be called
// even on error.
func startPgbouncer(ctx context.Context, bin string, pgPort int) (*daemon, func(), error) {
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
max_client_conn = 2000
default_pool_size = 100
ignore_startup_parameters = extra_float_digits
logfile = %s
log_connections = 0
log_disconnections = 0
`, pgPort, port, filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.log"))
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
	fmt.Printf("pgbouncer: %s %s (pool_mode=session, default_pool_size=100)\n", bin, iniPath)
	// SIGTERM is PgBouncer's immediate shutdown; SIGINT would wait for
	// clients.
	d, err := startDaemon(ctx, "pgbouncer", port, cmd, syscall.SIGTERM)
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
// as root, where TMPDIR may point into root's private home.
func tempBase() string {
	if os.Geteuid() != 0 {
		return ""
	}
	for dir := os.TempDir(); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if dir == filepath.Dir(dir) {
			return ""
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

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
