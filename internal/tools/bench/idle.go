package main

import (
	"context"
	"errors"
	"fmt"
	"os"
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
	// maxIdle bounds -idle; the file and memory limits usually bind first.
	maxIdle = 100000
	// fdReserve is what a process needs besides its client connections:
	// standard streams, listeners, epoll, logs, our cluster probes.
	fdReserve = 128
	// backendKiB is what an idle server backend costs the machine: measured
	// as the drop of MemAvailable per connection with PostgreSQL 15, 1.45
	// to 1.55 MiB, rounded up.
	backendKiB = 2048
	// memoryReserveKiB stays available for everything else on the machine.
	memoryReserveKiB = 2 << 20
	// idleSettle lets the sessions settle (goroutines parked, buffers
	// allocated or released) before RSS is read.
	idleSettle = 2 * time.Second
)

// fileLimit is the RLIMIT_NOFILE the benchmark and its children run with.
type fileLimit struct {
	limit, wanted int
	// err says why the hard limit could not be raised to wanted.
	err error
}

func (f fileLimit) String() string {
	s := fmt.Sprintf("RLIMIT_NOFILE %d, inherited by the proxies and the servers", f.limit)
	if f.limit < f.wanted {
		s += fmt.Sprintf(" (wanted %d; raising the hard limit failed: %v; that takes CAP_SYS_RESOURCE)", f.wanted, f.err)
	}
	return s
}

// filesWanted is the limit under which every idle count can be held by
// every proxy: pgverbs holds a client and a server socket per client.
func filesWanted(idle []int) int {
	if len(idle) == 0 {
		return 0
	}
	return 2*slices.Max(idle) + fdReserve
}

// raiseFileLimit lifts the soft limit to the hard one, and the hard one to
// want where the process may. Setting the limit at all matters too: the Go
// runtime raises its own soft limit at start-up but hands the original one
// to the processes it starts, unless the program set the limit itself.
func raiseFileLimit(want int) fileLimit {
	f := fileLimit{wanted: want}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		f.err = err
		return f
	}
	if lim.Max < uint64(want) {
		up := syscall.Rlimit{Cur: uint64(want), Max: uint64(want)}
		if f.err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); f.err == nil {
			f.limit = want
			return f
		}
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		f.err = errors.Join(f.err, err)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	f.limit = int(min(lim.Cur, 1<<30))
	return f
}

// idleResult is the memory of one proxy holding idle client connections,
// in KiB, and the server backends those connections occupy.
type idleResult struct {
	name string
	// mode is the relay mode of a pgverbs row, "" for PgBouncer.
	mode        string
	asked, held int
	// why says what kept held below asked.
	why                   string
	before, during, after int64
	backends              int
}

// idleCapacity is how many idle clients a proxy can hold here, and what
// limits it, given the file limit and, for pgverbs, the memory for a
// server backend per client.
func idleCapacity(pgverbs bool, files int) (int, string) {
	n, why := files-fdReserve, fmt.Sprintf("RLIMIT_NOFILE %d", files)
	if pgverbs {
		n, why = (files-fdReserve)/2, fmt.Sprintf("RLIMIT_NOFILE %d, 2 per client", files)
		if avail := memAvailableKiB(); avail > 0 {
			if m := int((avail - memoryReserveKiB) / backendKiB); m < n {
				n, why = m, fmt.Sprintf("MemAvailable %d MiB, a server backend per client", avail>>10)
			}
		}
	}
	return max(0, n), why
}

// holdable returns the count to measure instead of asked, rounded down to
// a hundred so that it reads as deliberate.
func holdable(asked int, pgverbs bool, files int) (int, string) {
	capacity, why := idleCapacity(pgverbs, files)
	if asked <= capacity {
		return asked, ""
	}
	return max(1, capacity/100*100), why
}

// runIdleBench measures the proxies' memory per idle client. Each
// measurement gets a fresh proxy process, because a Go process keeps the
// memory of sessions that have gone and would make the next count look
// cheaper; and a cluster of its own, big enough for pgverbs' backends but
// with little shared memory, which exists only while this runs.
func runIdleBench(ctx context.Context, o options, proxyPath, bouncerPath, extDir string, files int) (err error) {
	var plan []idleResult
	biggest := 0
	for _, n := range o.idle {
		for _, mode := range o.relayModes {
			held, why := holdable(n, true, files)
			plan = append(plan, idleResult{name: pgverbsName(mode), mode: mode, asked: n, held: held, why: why})
			biggest = max(biggest, held)
		}
		if bouncerPath != "" {
			held, why := holdable(n, false, files)
			plan = append(plan, idleResult{name: pgbouncer, asked: n, held: held, why: why})
		}
	}
	maxConns := biggest + 100
	fmt.Fprintf(os.Stderr, "idle memory: starting PostgreSQL (max_connections=%d, shared_buffers=32MB)...\n", maxConns)
	cluster, err := pgtest.New(pgtest.Options{Settings: map[string]string{
		"max_connections": strconv.Itoa(maxConns),
		// Shared memory is not what is measured; the connections are.
		"shared_buffers": "32MB",
	}})
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := cluster.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop idle cluster: %w", stopErr))
		}
	}()
	baseline, err := countBackends(ctx, cluster)
	if err != nil {
		return err
	}

	var done []idleResult
	for _, r := range plan {
		var d *daemon
		cleanup := func() {}
		if r.mode == "" {
			d, cleanup, err = startPgbouncer(ctx, bouncerPath, pgbouncer, cluster.Port, 20, r.held+100)
		} else {
			d, err = startPgverbs(ctx, proxyPath, backendURL(cluster.Port, "disable"), extDir, r.name, r.held+100, relayModeArgs(o, r.mode)...)
		}
		if err == nil {
			err = measureIdle(ctx, cluster, d, &r)
			d.stop()
		}
		cleanup()
		if err != nil {
			return err
		}
		done = append(done, r)
		// The next measurement counts the backends it adds.
		if err := waitBackends(ctx, cluster, baseline, 2*time.Minute); err != nil {
			return err
		}
	}
	printIdle(done)
	return nil
}

// measureIdle opens r.held connections through a proxy and leaves them
// idle, which is what an application's connection pool does most of the
// time.
func measureIdle(ctx context.Context, cluster *pgtest.Cluster, proxy *daemon, r *idleResult) error {
	pid := proxy.cmd.Process.Pid
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=60", proxy.port)
	// One session first, so that what a proxy sets up once, at its first
	// session, is not spread over the idle ones.
	first, err := openConns(ctx, url, 1)
	closeConns(first)
	if err != nil {
		return fmt.Errorf("%s: %w", proxy.name, err)
	}
	if err := sleep(ctx, idleSettle); err != nil {
		return err
	}
	backendsBefore, err := countBackends(ctx, cluster)
	if err != nil {
		return err
	}
	if r.before, err = vmRSS(pid); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "opening %d idle connections through %s...\n", r.held, proxy.name)
	conns, err := openConns(ctx, url, r.held)
	defer func() { closeConns(conns) }()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", proxy.name, err, proxy.out.String())
	}
	if err := sleep(ctx, idleSettle); err != nil {
		return err
	}
	if r.during, err = vmRSS(pid); err != nil {
		return err
	}
	backendsDuring, err := countBackends(ctx, cluster)
	if err != nil {
		return err
	}
	r.backends = backendsDuring - backendsBefore
	closeConns(conns)
	conns = nil
	if err := sleep(ctx, idleSettle); err != nil {
		return err
	}
	r.after, err = vmRSS(pid)
	return err
}

func printIdle(rs []idleResult) {
	fmt.Printf("\nmemory per idle client: VmRSS of the proxy process only (/proc/PID/status), a fresh process per row,\n" +
		"\"before\" after one session opened and closed; the clients (pgconn) completed start-up and trust\n" +
		"authentication, sent nothing else and were held for 2 s before the reading; \"after\" is 2 s after closing\n\n")
	rows := [][]string{{"proxy", "clients asked", "clients held", "RSS before", "RSS holding them", "KiB per client", "RSS after closing", "server backends held"}}
	var notes []string
	for _, r := range rs {
		rows = append(rows, []string{
			r.name, strconv.Itoa(r.asked), strconv.Itoa(r.held), kib(r.before), kib(r.during),
			fmt.Sprintf("%.1f", float64(r.during-r.before)/float64(r.held)),
			kib(r.after), strconv.Itoa(r.backends),
		})
		if r.why != "" {
			notes = append(notes, fmt.Sprintf("%s held %d instead of %d: limited by %s", r.name, r.held, r.asked, r.why))
		}
	}
	printMarkdown(rows)
	for _, n := range notes {
		fmt.Println("note:", n)
	}
}

// memAvailableKiB returns MemAvailable from /proc/meminfo, or 0.
func memAvailableKiB() int64 {
	for _, line := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
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

// waitBackends waits until at most n client backends are left: thousands
// of them take a while to exit after their clients have gone.
func waitBackends(ctx context.Context, cluster *pgtest.Cluster, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := countBackends(ctx, cluster)
		if err != nil {
			return err
		}
		if got <= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("idle cluster: %d client backends still there after %s, want at most %d", got, timeout, n)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
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
