package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// The WAL relay benchmark measures what the relay saves the primary: two
// standbys streaming from it directly (pg_basebackup -R) against two fed
// through pgverbs (START WAL ARCHIVE, BASE BACKUP ... WITH (STANDBY on)),
// where the primary serves one walsender, the archive's. pgbench runs
// against the primary itself, not through pgverbs: the figure is the
// primary's cost, and relaying the clients would add pgverbs' relay cost
// to one side only. Every run gets fresh standbys (and, relayed, a fresh
// archive), so that no run starts with another's backlog.

const (
	relayDirect = "direct"
	relayFed    = "relay"
	// relayStandbys is the number of standbys of either setup.
	relayStandbys = 2
	// replayEvery is how often the standbys' replay position is sampled.
	replayEvery = 100 * time.Millisecond
)

// relayRun is what one pgbench run with one setup's standbys measured.
type relayRun struct {
	tps, walMBps float64
	// walsenders is the number of the primary's walsender processes;
	// walsenderCPU their CPU seconds over the run, all together, and
	// walsenderPerGB the same per GB of WAL the run wrote.
	walsenders                   int
	walsenderCPU, walsenderPerGB float64
	// pgverbsCPU is the pgverbs process's CPU seconds over the run and
	// pgverbsPerGB the same per GB of WAL, NaN for the direct setup:
	// where the walsender work went, on this machine the same cores.
	pgverbsCPU, pgverbsPerGB float64
	// busy is the share of the machine's CPU capacity in use during the
	// run (/proc/stat), by anything: near 1, whatever pgverbs uses is
	// taken from the primary and pgbench.
	busy float64
	// lagMed and lagMax are of the samples of both standbys' replay lag
	// in bytes (the primary's WAL position minus the standby's replay
	// position); timeLagMed and timeLagMax of now() -
	// pg_last_xact_replay_timestamp() on the standby, in ms.
	lagMed, lagMax, timeLagMed, timeLagMax float64
}

// relayEnv is what every run of the benchmark shares.
type relayEnv struct {
	cluster *pgtest.Cluster
	mon     *pgconn.PgConn // to the primary
	admin   *pgconn.PgConn // to pgverbs
	proxy   *daemon
	// base holds pg_basebackup's directories, root is pgverbs'
	// --backup-root (archives and its base backups).
	base, root string
}

// runWALRelayBench runs rounds of pgbench -N -c 8 for duration against a
// primary with two direct standbys and with two relay-fed ones, in
// alternating order.
func runWALRelayBench(ctx context.Context, proxyPath string, rounds int, duration time.Duration) error {
	fmt.Fprintln(os.Stderr, "WAL relay benchmark: starting a cluster (fsync on), pgbench -i -s 10...")
	cluster, err := pgtest.New(pgtest.Options{Settings: map[string]string{
		"fsync": "on", "synchronous_commit": "on", "wal_level": "replica", "hot_standby": "on",
		// As in the WAL archive benchmark: one CHECKPOINT before every
		// run and none during it.
		"max_wal_size": "16GB", "checkpoint_timeout": "1h",
	}})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	if _, _, err := pgbench(ctx, cluster.Bin("pgbench"), cluster.Port, "", "-i", "-s", strconv.Itoa(scale), "-q"); err != nil {
		return err
	}
	env := &relayEnv{cluster: cluster}
	if env.mon, err = pgconn.Connect(ctx, backendURL(cluster.Port, "disable")); err != nil {
		return err
	}
	defer env.mon.Close(context.Background())
	if env.base, err = os.MkdirTemp(tempBase(), "pgverbs-bench-relay-"); err != nil {
		return err
	}
	defer os.RemoveAll(env.base)
	env.root = filepath.Join(env.base, "root")
	if err := os.Mkdir(env.root, 0o700); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	args := []string{"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--backend", backendURL(cluster.Port, "disable"), "--log-level", "warn", "--backup-root", env.root}
	fmt.Printf("\nWAL relay pgverbs: %s %s\n", proxyPath, shellJoin(args))
	if env.proxy, err = startDaemon(ctx, "pgverbs", port, exec.Command(proxyPath, args...), os.Interrupt); err != nil {
		return err
	}
	defer func() { stopPgverbs([]*daemon{env.proxy}) }()
	if env.admin, err = pgconn.Connect(ctx, backendURL(port, "disable")); err != nil {
		return err
	}
	defer env.admin.Close(context.Background())

	fmt.Printf("\nWAL relay: %d standbys through pgverbs vs %d direct; pgbench -N -c 8 -j 2 -T %s against the primary, scale %d, fsync on, synchronous_commit on, %d round(s) (%s), alternating\n",
		relayStandbys, relayStandbys, strconv.FormatFloat(duration.Seconds(), 'f', -1, 64), scale, rounds, pairWord(rounds))
	res := map[string][]relayRun{}
	var raw []string
	for r := 0; r < rounds; r++ {
		order := []string{relayDirect, relayFed}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		var parts []string
		for _, mode := range order {
			run, err := env.runOnce(ctx, mode, r, duration)
			if err != nil {
				return fmt.Errorf("WAL relay, %s standbys, round %d: %w", mode, r+1, err)
			}
			part := fmt.Sprintf("%s %.0f tps, %d walsender(s) %.2f CPU s (%.2f s/GB), replay lag median %.0f max %.0f KB, %.1f / %.1f ms",
				mode, run.tps, run.walsenders, run.walsenderCPU, run.walsenderPerGB, run.lagMed/1024, run.lagMax/1024, run.timeLagMed, run.timeLagMax)
			if !math.IsNaN(run.pgverbsCPU) {
				part += fmt.Sprintf(", pgverbs %.2f CPU s (%.2f s/GB)", run.pgverbsCPU, run.pgverbsPerGB)
			}
			part += fmt.Sprintf(", machine %.0f%% busy", 100*run.busy)
			fmt.Fprintf(os.Stderr, "[relay round %d] %s\n", r+1, part)
			parts = append(parts, part)
			res[mode] = append(res[mode], run)
		}
		raw = append(raw, fmt.Sprintf("  round %d: %s", r+1, strings.Join(parts, " | ")))
	}
	printRelayBench(res, raw)
	return nil
}

// runOnce sets up mode's standbys, waits until both stream and have
// replayed everything, runs pgbench against the primary, sampling the
// standbys meanwhile, and takes the standbys (and the archive) down.
func (e *relayEnv) runOnce(ctx context.Context, mode string, round int, duration time.Duration) (_ relayRun, err error) {
	var run relayRun
	for _, sql := range []string{"TRUNCATE pgbench_history", "VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers", "CHECKPOINT"} {
		if err := execSQL(ctx, e.mon, sql); err != nil {
			return run, err
		}
	}
	var standbys []*pgtest.Cluster
	// Cleanups run last first: the standbys stop before the archive
	// they stream from.
	var cleanups []func() error
	defer func() {
		for _, f := range slices.Backward(cleanups) {
			err = errors.Join(err, f())
		}
	}()
	if mode == relayFed {
		wal := fmt.Sprintf("wal-r%d", round)
		if err := execSQL(ctx, e.admin, fmt.Sprintf("START WAL ARCHIVE TO '%s' WITH (SYNCHRONOUS off)", wal)); err != nil {
			return run, err
		}
		cleanups = append(cleanups, func() error {
			defer os.RemoveAll(filepath.Join(e.root, wal))
			return execSQL(context.Background(), e.admin, "STOP WAL ARCHIVE DROP SLOT")
		})
		if err := waitReplication(ctx, e.mon, "pgverbs", "true"); err != nil {
			return run, err
		}
	}
	for i := range relayStandbys {
		name := fmt.Sprintf("%s-r%d-sb%d", mode, round, i+1)
		dir, err := e.baseBackup(ctx, mode, name)
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		if err != nil {
			return run, err
		}
		sb, stop, err := startCopy(dir, pgtest.Options{BinDir: e.cluster.BinDir, Password: e.cluster.Password})
		if err != nil {
			return run, fmt.Errorf("start standby %s: %w", name, err)
		}
		cleanups = append(cleanups, stop)
		// The copy is the standby's; the backup itself is no longer needed.
		os.RemoveAll(dir)
		standbys = append(standbys, sb)
	}
	var sconns []*pgconn.PgConn
	defer func() {
		for _, c := range sconns {
			c.Close(context.Background())
		}
	}()
	for _, sb := range standbys {
		c, err := pgconn.Connect(ctx, backendURL(sb.Port, "disable"))
		if err != nil {
			return run, err
		}
		sconns = append(sconns, c)
	}
	if err := waitStandbys(ctx, e.mon, sconns); err != nil {
		return run, err
	}
	pids, err := walsenderPIDs(ctx, e.mon, mode)
	if err != nil {
		return run, err
	}
	run.walsenders = len(pids)

	lsn0, err := queryFloat(ctx, e.mon, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
	if err != nil {
		return run, err
	}
	cpu0, err := sumCPU(pids)
	if err != nil {
		return run, err
	}
	proxyCPU0, err := procCPU(e.proxy.cmd.Process.Pid, false)
	if err != nil {
		return run, err
	}
	busy0, _, err := machineCPU()
	if err != nil {
		return run, err
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var lag, timeLag []float64
	var wg sync.WaitGroup
	wg.Go(func() { lag, timeLag = sampleReplay(sampleCtx, e.cluster.Port, standbys) })
	start := time.Now()
	out, _, err := pgbench(ctx, e.cluster.Bin("pgbench"), e.cluster.Port, "", "-n", "-N", "-c", "8", "-j", "2",
		"-T", strconv.FormatFloat(duration.Seconds(), 'f', -1, 64))
	elapsed := time.Since(start)
	stopSampling()
	wg.Wait()
	if err != nil {
		return run, err
	}
	cpu1, err := sumCPU(pids)
	if err != nil {
		return run, fmt.Errorf("a walsender of the run is gone (did a standby reconnect?): %w", err)
	}
	proxyCPU1, err := procCPU(e.proxy.cmd.Process.Pid, false)
	if err != nil {
		return run, err
	}
	busy1, _, err := machineCPU()
	if err != nil {
		return run, err
	}
	lsn1, err := queryFloat(ctx, e.mon, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
	if err != nil {
		return run, err
	}
	after, err := walsenderPIDs(ctx, e.mon, mode)
	if err != nil {
		return run, err
	}
	if !slices.Equal(pids, after) {
		return run, fmt.Errorf("walsenders changed during the run: %v before, %v after", pids, after)
	}
	if run.tps, err = pgbenchTPS(out); err != nil {
		return run, err
	}
	gb := (lsn1 - lsn0) / 1e9
	run.walMBps = gb * 1e3 / elapsed.Seconds()
	run.walsenderCPU = (cpu1 - cpu0).Seconds()
	run.walsenderPerGB = run.walsenderCPU / gb
	run.busy = (busy1 - busy0).Seconds() / (elapsed.Seconds() * float64(runtime.NumCPU()))
	run.pgverbsCPU, run.pgverbsPerGB = math.NaN(), math.NaN()
	if mode == relayFed {
		run.pgverbsCPU = (proxyCPU1 - proxyCPU0).Seconds()
		run.pgverbsPerGB = run.pgverbsCPU / gb
	}
	if len(lag) == 0 || len(timeLag) == 0 {
		return run, errors.New("no replay position sampled during the run")
	}
	run.lagMed, run.lagMax = median(lag), slices.Max(lag)
	run.timeLagMed, run.timeLagMax = median(timeLag), slices.Max(timeLag)
	return run, nil
}

// baseBackup makes standby name's data directory: pg_basebackup -R from
// the primary for the direct setup, BASE BACKUP ... WITH (STANDBY on)
// through pgverbs for the relay-fed one. It returns the directory, to be
// removed, also on error.
func (e *relayEnv) baseBackup(ctx context.Context, mode, name string) (string, error) {
	if mode == relayFed {
		dir := filepath.Join(e.root, name)
		return dir, execSQL(ctx, e.admin, fmt.Sprintf("BASE BACKUP TO '%s' WITH (STANDBY on)", name))
	}
	dir := filepath.Join(e.base, name)
	cmd := exec.CommandContext(ctx, e.cluster.Bin("pg_basebackup"), "-D", dir, "-R", "-X", "stream", "-c", "fast", "--no-password",
		"-d", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=%s", e.cluster.Port, name))
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return dir, fmt.Errorf("pg_basebackup: %w\n%s", err, out)
	}
	return dir, nil
}

// waitStandbys waits until every standby streams (pg_stat_wal_receiver)
// and has replayed the primary's WAL up to where it was when the wait
// began.
func waitStandbys(ctx context.Context, mon *pgconn.PgConn, standbys []*pgconn.PgConn) error {
	target, err := queryFloat(ctx, mon, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(120 * time.Second)
	for i, sb := range standbys {
		for {
			n, err := queryFloat(ctx, sb, fmt.Sprintf("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming' AND pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0') >= %.0f", target))
			if err != nil {
				return err
			}
			if n > 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("standby %d does not stream or has not replayed the primary's WAL after 120s", i+1)
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// walsenderPIDs returns the pids of the primary's walsenders, sorted,
// after checking that they are those mode implies: one per standby when
// direct, pgverbs' archive alone when relayed (its standbys stream from
// pgverbs, not from the primary).
func walsenderPIDs(ctx context.Context, mon *pgconn.PgConn, mode string) ([]int, error) {
	sql := "SELECT pid, application_name, state FROM pg_stat_replication ORDER BY pid"
	res := mon.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("%s: %w", sql, res.Err)
	}
	var pids []int
	var seen []string
	for _, row := range res.Rows {
		pid, err := strconv.Atoi(string(row[0]))
		if err != nil {
			return nil, err
		}
		pids = append(pids, pid)
		seen = append(seen, fmt.Sprintf("%s (pid %d, %s)", row[1], pid, row[2]))
	}
	ok := len(pids) == relayStandbys
	if mode == relayFed {
		ok = len(pids) == 1 && string(res.Rows[0][1]) == "pgverbs"
	}
	if !ok {
		return nil, fmt.Errorf("the primary's pg_stat_replication shows %d walsender(s): %s", len(pids), strings.Join(seen, ", "))
	}
	return pids, nil
}

// sumCPU is the CPU time of the processes pids together; an error when
// one has exited.
func sumCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		d, err := procCPU(pid, false)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// sampleReplay samples every replayEvery, until ctx ends, the primary's
// WAL position and then each standby's replay position and the age of
// its last replayed commit, on connections of its own. The standbys are
// asked themselves: relayed, the primary's pg_stat_replication shows
// pgverbs' positions, not theirs.
func sampleReplay(ctx context.Context, primaryPort int, standbys []*pgtest.Cluster) (lag, timeLag []float64) {
	ports := []int{primaryPort}
	for _, sb := range standbys {
		ports = append(ports, sb.Port)
	}
	var conns []*pgconn.PgConn
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	for _, port := range ports {
		c, err := pgconn.Connect(ctx, backendURL(port, "disable"))
		if err != nil {
			return nil, nil
		}
		conns = append(conns, c)
	}
	const standbySQL = "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0'), EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000"
	t := time.NewTicker(replayEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return lag, timeLag
		case <-t.C:
		}
		primary, err := queryFloat(ctx, conns[0], "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
		if err != nil {
			continue
		}
		for _, c := range conns[1:] {
			res := c.ExecParams(ctx, standbySQL, nil, nil, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 {
				continue
			}
			if b, err := strconv.ParseFloat(string(res.Rows[0][0]), 64); err == nil {
				// Replayed after the primary's position was read: no lag.
				lag = append(lag, max(0, primary-b))
			}
			if ms, err := strconv.ParseFloat(string(res.Rows[0][1]), 64); err == nil {
				timeLag = append(timeLag, max(0, ms))
			}
		}
	}
}

// printRelayBench prints the medians of the runs per setup, the ratios
// relay : direct as medians of the per-round ratios, the targets of
// issue 14 and the raw rounds.
func printRelayBench(res map[string][]relayRun, raw []string) {
	cols := []column[relayRun]{
		{"tps", func(r relayRun) float64 { return r.tps }, 0},
		{"WAL MB/s", func(r relayRun) float64 { return r.walMBps }, 2},
		{"walsenders", func(r relayRun) float64 { return float64(r.walsenders) }, 0},
		{"walsender CPU s", func(r relayRun) float64 { return r.walsenderCPU }, 2},
		{"walsender CPU s/GB", func(r relayRun) float64 { return r.walsenderPerGB }, 2},
		{"per walsender s/GB", func(r relayRun) float64 { return r.walsenderPerGB / float64(r.walsenders) }, 2},
		{"pgverbs CPU s", func(r relayRun) float64 { return r.pgverbsCPU }, 2},
		{"pgverbs CPU s/GB", func(r relayRun) float64 { return r.pgverbsPerGB }, 2},
		{"replay lag median KB", func(r relayRun) float64 { return r.lagMed / 1024 }, 0},
		{"replay lag max KB", func(r relayRun) float64 { return r.lagMax / 1024 }, 0},
		{"replay lag median ms", func(r relayRun) float64 { return r.timeLagMed }, 1},
		{"replay lag max ms", func(r relayRun) float64 { return r.timeLagMax }, 0},
		{"machine busy %", func(r relayRun) float64 { return 100 * r.busy }, 0},
	}
	rows := summaryRows("standbys", cols, []string{relayDirect, relayFed}, res)
	ratio := []string{"relay : direct"}
	for _, c := range cols {
		v := relayRatios(res, c.f)
		if len(v) == 0 {
			ratio = append(ratio, "")
			continue
		}
		ratio = append(ratio, fmt.Sprintf("%.2f", median(v)))
	}
	fmt.Printf("\nmedians of the rounds (max: of the rounds' maxima); ratios: medians of the per-round ratios\n\n")
	printMarkdown(append(rows, ratio))

	// The walsender target compares the relay's walsender with ONE direct
	// one: direct's total over its standbys, per GB so that a side that
	// wrote more WAL is not charged for it.
	cpu := median(relayRatios(res, func(r relayRun) float64 {
		if r.walsenders == 1 {
			return r.walsenderPerGB
		}
		return r.walsenderPerGB / float64(r.walsenders)
	}))
	tps := median(relayRatios(res, func(r relayRun) float64 { return r.tps }))
	fmt.Printf("\nwalsender CPU target (relay's walsenders : one direct walsender, s/GB, <= 1.00): %.2f, %s\n", cpu, verdict(cpu <= 1))
	fmt.Printf("tps target (relay : direct >= 1.00): %.2f, %s\n", tps, verdict(tps >= 1))
	fmt.Printf("\nraw rounds, in the order they ran (CPU s: the primary's walsenders over the run; replay lag median and max\n" +
		"of both standbys' samples every 100 ms, bytes and ms; machine busy: all processes, share of all CPUs):\n")
	for _, line := range raw {
		fmt.Println(line)
	}
}

// column is one column of a summary table over runs of type R: its
// header, the run's value and the decimals printed.
type column[R any] struct {
	name string
	f    func(R) float64
	prec int
}

// summaryRows returns a header (first, then the columns' names) and a row
// per name: the median of its runs' values, the largest for a column
// whose name says max, "-" where no run has a number (NaN: not measured).
func summaryRows[R any](first string, cols []column[R], names []string, runs map[string][]R) [][]string {
	head := []string{first}
	for _, c := range cols {
		head = append(head, c.name)
	}
	rows := [][]string{head}
	for _, name := range names {
		row := []string{name}
		for _, c := range cols {
			var v []float64
			for _, r := range runs[name] {
				if x := c.f(r); !math.IsNaN(x) {
					v = append(v, x)
				}
			}
			cell := "-"
			if len(v) > 0 {
				agg := median(v)
				if strings.Contains(c.name, "max") {
					agg = slices.Max(v)
				}
				cell = strconv.FormatFloat(agg, 'f', c.prec, 64)
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	return rows
}

// relayRatios returns, round by round, f(relay's run) / f(direct's run),
// leaving out rounds where either is not a number or direct's is 0.
func relayRatios(res map[string][]relayRun, f func(relayRun) float64) []float64 {
	var v []float64
	for i, a := range res[relayFed] {
		x, y := f(a), f(res[relayDirect][i])
		if y != 0 && !math.IsNaN(x) && !math.IsNaN(y) {
			v = append(v, x/y)
		}
	}
	return v
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "MISSED"
}

// copyTB is the testing.TB that pgtest.StartCopy takes, for a benchmark
// that is not a test: Fatal panics with a copyFatal that startCopy turns
// back into an error, and cleanups are kept for the caller to run. The
// embedded nil TB is never called; StartCopy uses only the methods below.
type copyTB struct {
	testing.TB
	cleanups []func()
	errs     []error
}

type copyFatal struct{ msg string }

func (t *copyTB) Helper()             {}
func (t *copyTB) Logf(string, ...any) {}
func (t *copyTB) Cleanup(f func())    { t.cleanups = append(t.cleanups, f) }
func (t *copyTB) Errorf(format string, args ...any) {
	t.errs = append(t.errs, fmt.Errorf(format, args...))
}
func (t *copyTB) Fatal(args ...any)                 { panic(copyFatal{fmt.Sprint(args...)}) }
func (t *copyTB) Fatalf(format string, args ...any) { panic(copyFatal{fmt.Sprintf(format, args...)}) }
func (t *copyTB) Skipf(format string, args ...any)  { t.Fatalf(format, args...) }
func (t *copyTB) stop() error {
	for _, f := range slices.Backward(t.cleanups) {
		f()
	}
	t.cleanups = nil
	return errors.Join(t.errs...)
}

// startCopy is pgtest.StartCopy with errors instead of a failed test: it
// returns the running standby and the function that stops and removes it.
func startCopy(dir string, opts pgtest.Options) (c *pgtest.Cluster, stop func() error, err error) {
	t := &copyTB{}
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		f, ok := r.(copyFatal)
		if !ok {
			panic(r)
		}
		err = errors.Join(errors.New(f.msg), t.stop())
	}()
	c = pgtest.StartCopy(t, dir, opts, nil)
	return c, t.stop, nil
}
