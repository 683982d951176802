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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// The WAL archive benchmark compares pgverbs' START WAL ARCHIVE with
// pg_receivewal on the same primary, which runs with fsync and
// synchronous_commit on (pgtest's clusters have both off): what a
// synchronous archive costs is the fsync a commit waits for. Every run
// gets a fresh directory and a fresh slot, and only the measured archiver
// is connected, so that neither pays for the other's catching up.

const (
	receivewalName = "pg_receivewal"
	archiveName    = "pgverbs"
	// receivewalApp is pg_receivewal's application_name, which
	// synchronous_standby_names names in the synchronous mode; pgverbs'
	// is its default, "pgverbs".
	receivewalApp = "receivewal"
	// lagEvery is how often pg_stat_replication is sampled during a run.
	lagEvery = 200 * time.Millisecond
)

// walRun is what one pgbench run behind one archiver measured.
type walRun struct {
	tps, p99ms, walMBps float64
	// lagMed and lagMax are of the samples of the primary's WAL position
	// minus the archiver's flush position, in bytes; flushLagMed and
	// flushLagMax of pg_stat_replication.flush_lag, in ms.
	lagMed, lagMax, flushLagMed, flushLagMax float64
	// cpuPerGB is the archiver's CPU seconds per GB of WAL the run wrote.
	cpuPerGB float64
	// fsyncsPerSec counts the archiver's fsync and fdatasync calls; NaN
	// when perf could not count them.
	fsyncsPerSec float64
}

// walSide is one archiver: start begins archiving into a fresh directory
// and returns the PID that does the work and the way to stop.
type walSide struct {
	name, app string
	start     func(ctx context.Context, dir string, synchronous bool) (pid int, stop func() error, err error)
}

// runWALArchiveBench runs rounds of pgbench -N -c 8 for duration behind
// pg_receivewal and behind pgverbs' archive, in alternating order, once
// with asynchronous archivers and once with synchronous ones.
func runWALArchiveBench(ctx context.Context, proxyPath string, rounds int, duration time.Duration) error {
	fmt.Fprintln(os.Stderr, "WAL archive benchmark: starting a cluster (fsync on), pgbench -i -s 10...")
	cluster, err := pgtest.New(pgtest.Options{Settings: map[string]string{
		"fsync": "on", "synchronous_commit": "on",
		// One CHECKPOINT before every run and none during it: a
		// checkpoint's fsyncs in one run and not in the other would
		// decide the comparison.
		"max_wal_size": "16GB", "checkpoint_timeout": "1h",
	}})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	if _, _, err := pgbench(ctx, cluster.Bin("pgbench"), cluster.Port, "", "-i", "-s", strconv.Itoa(scale), "-q"); err != nil {
		return err
	}
	mon, err := pgconn.Connect(ctx, backendURL(cluster.Port, "disable"))
	if err != nil {
		return err
	}
	defer mon.Close(context.Background())

	// The archive root and pg_receivewal's directories share one file
	// system, the one the preallocation measurement below runs on.
	base, err := os.MkdirTemp(tempBase(), "pgverbs-bench-wal-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)
	root := filepath.Join(base, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	proxy, err := startDaemon(ctx, "pgverbs", port, exec.Command(proxyPath,
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--backend", backendURL(cluster.Port, "disable"),
		"--log-level", "warn", "--backup-root", root), os.Interrupt)
	if err != nil {
		return err
	}
	defer proxy.stop()
	admin, err := pgconn.Connect(ctx, backendURL(port, "disable"))
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())

	receivewal := walSide{name: receivewalName, app: receivewalApp,
		start: func(ctx context.Context, dir string, synchronous bool) (int, func() error, error) {
			const slot = "bench_receivewal"
			if err := os.Mkdir(dir, 0o700); err != nil {
				return 0, nil, err
			}
			if err := execSQL(ctx, mon, fmt.Sprintf("SELECT pg_create_physical_replication_slot('%s', true)", slot)); err != nil {
				return 0, nil, err
			}
			args := []string{"-D", dir, "--slot", slot, "--no-loop", "--no-password",
				"-d", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=%s", cluster.Port, receivewalApp)}
			if synchronous {
				args = append(args, "--synchronous")
			}
			cmd := exec.Command(cluster.Bin("pg_receivewal"), args...)
			cmd.Env = cleanEnv()
			out := &tailBuffer{max: 8 << 10}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				return 0, nil, err
			}
			stop := func() error {
				// SIGINT is pg_receivewal's clean exit.
				_ = cmd.Process.Signal(os.Interrupt)
				waitErr := cmd.Wait()
				if waitErr != nil {
					waitErr = fmt.Errorf("pg_receivewal: %w\n%s", waitErr, out.String())
				}
				return errors.Join(waitErr, execSQL(context.Background(), mon, fmt.Sprintf("SELECT pg_drop_replication_slot('%s')", slot)))
			}
			return cmd.Process.Pid, stop, nil
		}}
	archive := walSide{name: archiveName, app: "pgverbs",
		start: func(ctx context.Context, dir string, synchronous bool) (int, func() error, error) {
			rel, err := filepath.Rel(root, dir)
			if err != nil {
				return 0, nil, err
			}
			sql := fmt.Sprintf("START WAL ARCHIVE TO '%s' WITH (SLOT 'bench_pgverbs', SYNCHRONOUS %s)", rel, onOff(synchronous))
			if err := execSQL(ctx, admin, sql); err != nil {
				return 0, nil, err
			}
			return proxy.cmd.Process.Pid, func() error {
				return execSQL(context.Background(), admin, "STOP WAL ARCHIVE DROP SLOT")
			}, nil
		}}
	sides := []walSide{receivewal, archive}

	fmt.Printf("\nWAL archive vs pg_receivewal: pgbench -N -c 8 -j 2 -T %s, scale %d, fsync on, synchronous_commit on, %d round(s) per mode (%s), alternating\n",
		strconv.FormatFloat(duration.Seconds(), 'f', -1, 64), scale, rounds, pairWord(rounds))
	for _, synchronous := range []bool{false, true} {
		res := map[string][]walRun{}
		for r := 0; r < rounds; r++ {
			order := sides
			if r%2 == 1 {
				order = []walSide{sides[1], sides[0]}
			}
			for _, side := range order {
				dir := filepath.Join(root, fmt.Sprintf("%s-%s-r%d", side.name, onOff(synchronous), r))
				if side.name == receivewalName {
					dir = filepath.Join(base, filepath.Base(dir))
				}
				run, err := walRunOnce(ctx, cluster, mon, side, dir, synchronous, duration)
				if err != nil {
					return fmt.Errorf("%s (synchronous %s): %w", side.name, onOff(synchronous), err)
				}
				fmt.Fprintf(os.Stderr, "[wal %s round %d] %s: %.0f tps, p99 %.2f ms, %.2f MB/s WAL, lag median %.0f max %.0f bytes, %.1f CPU s/GB, %.0f fsyncs/s\n",
					modeName(synchronous), r+1, side.name, run.tps, run.p99ms, run.walMBps, run.lagMed, run.lagMax, run.cpuPerGB, run.fsyncsPerSec)
				res[side.name] = append(res[side.name], run)
			}
		}
		printWALMode(synchronous, res)
	}
	return printPrealloc(root)
}

// walRunOnce starts side in a fresh dir, waits until it streams (and, when
// synchronous, until the primary counts it as its synchronous standby),
// runs pgbench and samples the primary meanwhile.
func walRunOnce(ctx context.Context, cluster *pgtest.Cluster, mon *pgconn.PgConn, side walSide, dir string, synchronous bool, duration time.Duration) (_ walRun, err error) {
	var run walRun
	defer os.RemoveAll(dir)
	// What every run starts from: the same table sizes, no dirty buffers.
	if err := execSQL(ctx, mon, "TRUNCATE pgbench_history"); err != nil {
		return run, err
	}
	if err := execSQL(ctx, mon, "VACUUM pgbench_accounts, pgbench_branches, pgbench_tellers"); err != nil {
		return run, err
	}
	if err := execSQL(ctx, mon, "CHECKPOINT"); err != nil {
		return run, err
	}
	pid, stop, err := side.start(ctx, dir, synchronous)
	if err != nil {
		return run, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	if err := waitReplication(ctx, mon, side.app, "sent_lsn >= pg_current_wal_lsn()"); err != nil {
		return run, err
	}
	if synchronous {
		if err := setStandbyNames(ctx, mon, side.app); err != nil {
			return run, err
		}
		// Reset before the archiver stops: commits would wait for it.
		defer func() { err = errors.Join(err, setStandbyNames(context.Background(), mon, "")) }()
		if err := waitReplication(ctx, mon, side.app, "sync_state = 'sync'"); err != nil {
			return run, err
		}
	}

	lsn0, err := queryFloat(ctx, mon, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
	if err != nil {
		return run, err
	}
	cpu0, err := procCPU(pid, false)
	if err != nil {
		return run, err
	}
	fsyncs := startFsyncCount(pid)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var lag, flushLag []float64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		lag, flushLag = sampleLag(sampleCtx, cluster.Port, side.app)
	}()
	logPrefix := filepath.Join(filepath.Dir(dir), filepath.Base(dir)+"-pgbench")
	defer removeGlob(logPrefix + "*")
	start := time.Now()
	out, _, err := pgbench(ctx, cluster.Bin("pgbench"), cluster.Port, "", "-n", "-N", "-c", "8", "-j", "2",
		"-T", strconv.FormatFloat(duration.Seconds(), 'f', -1, 64), "--log", "--log-prefix", logPrefix)
	elapsed := time.Since(start)
	stopSampling()
	wg.Wait()
	n, fsyncErr := fsyncs()
	if err != nil {
		return run, err
	}
	cpu1, err := procCPU(pid, false)
	if err != nil {
		return run, err
	}
	lsn1, err := queryFloat(ctx, mon, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")
	if err != nil {
		return run, err
	}
	if run.tps, err = pgbenchTPS(out); err != nil {
		return run, err
	}
	if run.p99ms, err = logPercentile(logPrefix+"*", 0.99); err != nil {
		return run, err
	}
	wal := lsn1 - lsn0
	run.walMBps = wal / 1e6 / elapsed.Seconds()
	run.cpuPerGB = (cpu1 - cpu0).Seconds() / (wal / 1e9)
	run.fsyncsPerSec = math.NaN()
	if fsyncErr == nil {
		run.fsyncsPerSec = float64(n) / elapsed.Seconds()
	} else {
		fmt.Fprintf(os.Stderr, "fsyncs of %s not counted: %v\n", side.name, fsyncErr)
	}
	if len(lag) == 0 {
		return run, fmt.Errorf("no pg_stat_replication row for %s during the run", side.app)
	}
	run.lagMed, run.lagMax = median(lag), slices.Max(lag)
	run.flushLagMed, run.flushLagMax = math.NaN(), math.NaN()
	if len(flushLag) > 0 {
		run.flushLagMed, run.flushLagMax = median(flushLag), slices.Max(flushLag)
	}
	return run, nil
}

// waitReplication waits until the primary's pg_stat_replication row of
// app streams and satisfies cond.
func waitReplication(ctx context.Context, mon *pgconn.PgConn, app, cond string) error {
	sql := fmt.Sprintf("SELECT count(*) FROM pg_stat_replication WHERE application_name = '%s' AND state = 'streaming' AND %s", app, cond)
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := queryFloat(ctx, mon, sql)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: no replication connection with %s after 60s", app, cond)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func setStandbyNames(ctx context.Context, mon *pgconn.PgConn, names string) error {
	if err := execSQL(ctx, mon, fmt.Sprintf("ALTER SYSTEM SET synchronous_standby_names = '%s'", names)); err != nil {
		return err
	}
	return execSQL(ctx, mon, "SELECT pg_reload_conf()")
}

// sampleLag samples app's row of pg_stat_replication every lagEvery until
// ctx ends, on a connection of its own. flush_lag is NULL when the
// primary has no recent flush reply to time (pg_receivewal without
// --synchronous replies only every 10 s); those samples count for the
// byte lag only.
func sampleLag(ctx context.Context, port int, app string) (lag, flushLag []float64) {
	conn, err := pgconn.Connect(ctx, backendURL(port, "disable"))
	if err != nil {
		return nil, nil
	}
	defer conn.Close(context.Background())
	sql := "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn), EXTRACT(epoch FROM flush_lag) * 1000 FROM pg_stat_replication WHERE application_name = $1"
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return lag, flushLag
		case <-t.C:
		}
		res := conn.ExecParams(ctx, sql, [][]byte{[]byte(app)}, nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 {
			continue
		}
		if b, err := strconv.ParseFloat(string(res.Rows[0][0]), 64); err == nil {
			lag = append(lag, b)
		}
		if f, err := strconv.ParseFloat(string(res.Rows[0][1]), 64); err == nil {
			flushLag = append(flushLag, f)
		}
	}
}

// startFsyncCount counts pid's fsync and fdatasync calls, all threads,
// with perf's syscall tracepoints (counted in the kernel, unlike strace,
// which would slow the archiver down). The returned function stops the
// count and returns it.
func startFsyncCount(pid int) func() (int64, error) {
	out, err := os.CreateTemp("", "pgverbs-bench-perf-")
	if err != nil {
		return func() (int64, error) { return 0, err }
	}
	out.Close()
	cmd := exec.Command("perf", "stat", "-x,", "-o", out.Name(),
		"-e", "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync", "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		os.Remove(out.Name())
		return func() (int64, error) { return 0, err }
	}
	// perf attaches to the threads after it started.
	time.Sleep(300 * time.Millisecond)
	return func() (int64, error) {
		defer os.Remove(out.Name())
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		var n int64
		seen := 0
		for _, line := range strings.Split(readFile(out.Name()), "\n") {
			f := strings.Split(line, ",")
			if len(f) < 3 || !strings.HasPrefix(f[2], "syscalls:") {
				continue
			}
			c, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("perf stat: %q", line)
			}
			n += c
			seen++
		}
		if seen != 2 {
			return 0, fmt.Errorf("perf stat counted nothing:\n%s", readFile(out.Name()))
		}
		return n, nil
	}
}

// pgbenchTPS is the tps pgbench reports, without connection time.
func pgbenchTPS(out string) (float64, error) {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "tps = "); ok {
			return strconv.ParseFloat(strings.Fields(rest)[0], 64)
		}
	}
	return 0, fmt.Errorf("no tps in pgbench's output:\n%s", out)
}

// logPercentile is the q-quantile of the latencies (third field, µs) in
// pgbench's per-transaction logs, in ms: pgbench itself prints only the
// average and the standard deviation.
func logPercentile(pattern string, q float64) (float64, error) {
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		return 0, fmt.Errorf("no pgbench log %s", pattern)
	}
	var lat []float64
	for _, name := range files {
		for _, line := range strings.Split(readFile(name), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			us, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %q", name, line)
			}
			lat = append(lat, us)
		}
	}
	if len(lat) == 0 {
		return 0, fmt.Errorf("empty pgbench logs %s", pattern)
	}
	slices.Sort(lat)
	return lat[min(len(lat)-1, int(q*float64(len(lat))))] / 1000, nil
}

// printWALMode prints one mode's table: medians of the runs, and the
// ratios pgverbs : pg_receivewal as medians of the per-round ratios.
func printWALMode(synchronous bool, res map[string][]walRun) {
	fmt.Printf("\n%s: pg_receivewal --slot%s vs START WAL ARCHIVE WITH (SYNCHRONOUS %s)\n\n",
		modeName(synchronous), map[bool]string{true: " --synchronous"}[synchronous], onOff(synchronous))
	cols := []struct {
		name string
		f    func(walRun) float64
		prec int
	}{
		{"tps", func(r walRun) float64 { return r.tps }, 0},
		{"p99 ms", func(r walRun) float64 { return r.p99ms }, 2},
		{"WAL MB/s", func(r walRun) float64 { return r.walMBps }, 2},
		{"lag median KB", func(r walRun) float64 { return r.lagMed / 1024 }, 0},
		{"lag max KB", func(r walRun) float64 { return r.lagMax / 1024 }, 0},
		{"flush_lag median ms", func(r walRun) float64 { return r.flushLagMed }, 2},
		{"flush_lag max ms", func(r walRun) float64 { return r.flushLagMax }, 1},
		{"CPU s/GB", func(r walRun) float64 { return r.cpuPerGB }, 2},
		{"fsyncs/s", func(r walRun) float64 { return r.fsyncsPerSec }, 0},
	}
	head := []string{"archiver"}
	for _, c := range cols {
		head = append(head, c.name)
	}
	rows := [][]string{head}
	for _, name := range []string{receivewalName, archiveName} {
		row := []string{name}
		for _, c := range cols {
			var v []float64
			for _, r := range res[name] {
				if x := c.f(r); !math.IsNaN(x) {
					v = append(v, x)
				}
			}
			if len(v) == 0 {
				// Not measured (perf missing) or never reported.
				row = append(row, "-")
				continue
			}
			agg := median(v)
			if strings.Contains(c.name, "max") {
				agg = slices.Max(v)
			}
			row = append(row, strconv.FormatFloat(agg, 'f', c.prec, 64))
		}
		rows = append(rows, row)
	}
	ratio := []string{"pgverbs : pg_receivewal"}
	for _, c := range cols {
		var v []float64
		for i, a := range res[archiveName] {
			if b := c.f(res[receivewalName][i]); b != 0 && !math.IsNaN(b) && !math.IsNaN(c.f(a)) {
				v = append(v, c.f(a)/b)
			}
		}
		if len(v) == 0 {
			ratio = append(ratio, "")
			continue
		}
		ratio = append(ratio, fmt.Sprintf("%.2f", median(v)))
	}
	printMarkdown(append(rows, ratio))
	if synchronous {
		var v []float64
		for i, a := range res[archiveName] {
			v = append(v, a.tps/res[receivewalName][i].tps)
		}
		tr := median(v)
		verdict := "met"
		if tr < 1 {
			verdict = "MISSED"
		}
		fmt.Printf("\nsynchronous tps target (pgverbs : pg_receivewal >= 1.00, goal 1.20): %.2f, %s\n", tr, verdict)
	}
}

func modeName(synchronous bool) string {
	if synchronous {
		return "synchronous"
	}
	return "asynchronous"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// printPrealloc times making a 16 MB segment's space durable on the
// archive's file system, alternating, as the archive does it
// (fallocate, fsync) and as PostgreSQL and pg_receivewal do (writing
// zeros, fsync); then 8 KB writes into the file so made, each followed by
// fdatasync (the archive's) or fsync (pg_receivewal's), which is where
// the two may differ for a synchronous archive: a write into fallocated
// (unwritten) extents converts them, a metadata change that fdatasync
// must make durable too (a journal commit; on ext4 without a journal a
// synchronous write of the inode).
func printPrealloc(dir string) error {
	const (
		size    = 16 << 20
		reps    = 5
		writes  = 128
		perSync = 8 << 10
	)
	type result struct{ prealloc, cpu, datasync, sync []float64 }
	res := map[string]*result{"fallocate": {}, "zero-fill": {}}
	zeros := make([]byte, 64<<10)
	block := make([]byte, perSync)
	for i := range block {
		block[i] = byte(i)
	}
	for r := 0; r < reps; r++ {
		order := []string{"fallocate", "zero-fill"}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, how := range order {
			name := filepath.Join(dir, fmt.Sprintf("prealloc-%s-%d", how, r))
			f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			cpu0 := selfCPU()
			t := time.Now()
			if how == "fallocate" {
				err = unix.Fallocate(int(f.Fd()), 0, 0, size)
			} else {
				for off := 0; off < size && err == nil; off += len(zeros) {
					_, err = f.WriteAt(zeros, int64(off))
				}
			}
			if err == nil {
				err = f.Sync()
			}
			d := time.Since(t)
			cpu := selfCPU() - cpu0
			// fdatasync as the archive syncs and fsync as pg_receivewal
			// does, each on a region of its own, the first region's
			// alternating.
			var sd [2]time.Duration
			syncs := []func() error{func() error { return unix.Fdatasync(int(f.Fd())) }, f.Sync}
			for _, i := range [][]int{{0, 1}, {1, 0}}[r%2] {
				syncf := syncs[i]
				region := i
				if r%2 == 1 {
					region = 1 - i
				}
				t = time.Now()
				for w := 0; w < writes && err == nil; w++ {
					if _, err = f.WriteAt(block, int64((region*writes+w)*perSync)); err == nil {
						err = syncf()
					}
				}
				sd[i] = time.Since(t)
			}
			f.Close()
			os.Remove(name)
			if err != nil {
				return fmt.Errorf("%s: %w", how, err)
			}
			res[how].prealloc = append(res[how].prealloc, float64(d.Microseconds())/1000)
			res[how].cpu = append(res[how].cpu, float64(cpu.Microseconds())/1000)
			res[how].datasync = append(res[how].datasync, float64(sd[0].Microseconds())/1000/writes)
			res[how].sync = append(res[how].sync, float64(sd[1].Microseconds())/1000/writes)
		}
	}
	fmt.Printf("\npreallocating a 16 MB segment on the archive's file system, median of %d alternating repetitions,\n"+
		"then %d writes of 8 KB into it, each followed by fdatasync, and %d more, each followed by fsync (in alternating order):\n\n", reps, writes, writes)
	rows := [][]string{{"preallocation", "time ms", "CPU ms", "8 KB write + fdatasync, ms each", "8 KB write + fsync, ms each"}}
	for _, how := range []string{"fallocate", "zero-fill"} {
		r := res[how]
		rows = append(rows, []string{how + " + fsync", fmt.Sprintf("%.2f", median(r.prealloc)),
			fmt.Sprintf("%.2f", median(r.cpu)), fmt.Sprintf("%.3f", median(r.datasync)), fmt.Sprintf("%.3f", median(r.sync))})
	}
	printMarkdown(rows)
	return nil
}

// selfCPU is the benchmark's own user+system CPU time: it does nothing
// else while it times a preallocation.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func execSQL(ctx context.Context, conn *pgconn.PgConn, sql string) error {
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

func queryFloat(ctx context.Context, conn *pgconn.PgConn, sql string) (float64, error) {
	res := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return 0, fmt.Errorf("%s: %w", sql, res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return 0, fmt.Errorf("%s: want one value", sql)
	}
	return strconv.ParseFloat(string(res.Rows[0][0]), 64)
}

func removeGlob(pattern string) {
	files, _ := filepath.Glob(pattern)
	for _, f := range files {
		os.Remove(f)
	}
}
