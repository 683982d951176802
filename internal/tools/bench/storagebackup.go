package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
	"github.com/pgverbs/pgverbs/internal/s3test"
	"github.com/pgverbs/pgverbs/storage"
)

// storageRun is one timed backup of the object-storage benchmark.
type storageRun struct {
	seconds  float64
	peakRSS  int64   // pgverbs's peak resident set during the run, bytes; 0 when not measured
	cpu      float64 // pgverbs's CPU seconds during the run
	storeCPU float64 // the object store's (weed's) CPU seconds during the run
}

// runStorageBench compares, on one cluster of about scale*15 MB, alternating
// in every round: BASE BACKUP TO 'storage://...' (tar, zstd) into a local
// SeaweedFS, the same backup to the local disk, and pg_basebackup -Ft
// --compress=client-zstd followed by an upload of its files through the
// same SDK (package storage, the same part size and parallelism). It
// reports seconds, MB/s of the cluster's size, and pgverbs's peak RSS
// during each of its backups (VmHWM, reset before each run through
// /proc/PID/clear_refs).
func runStorageBench(ctx context.Context, proxyPath string, scale, rounds int) error {
	fmt.Fprintf(os.Stderr, "object-storage benchmark: starting SeaweedFS and a cluster, pgbench -i -s %d...\n", scale)
	srv, err := s3test.Launch(s3test.Options{VolumeSizeLimitMB: 1024})
	if err != nil {
		return err
	}
	defer srv.Close()
	const bucket = "bench"
	if err := srv.CreateBucket(ctx, bucket); err != nil {
		return err
	}
	cluster, err := pgtest.New(pgtest.Options{InitDBArgs: []string{"--data-checksums"},
		Settings: map[string]string{"max_wal_size": "4GB"}})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	if _, _, err := pgbench(ctx, cluster.Bin("pgbench"), cluster.Port, "", "-i", "-s", strconv.Itoa(scale), "-q"); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "pgverbs-bench-storage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		return err
	}
	creds := filepath.Join(work, "credentials")
	if err := os.WriteFile(creds, []byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)), 0o600); err != nil {
		return err
	}
	target := storage.Config{Name: "bench", Endpoint: srv.Endpoint, Region: srv.Region, Bucket: bucket,
		PathStyle: true, CredentialsFile: creds, PartSize: storage.DefaultPartSize, ParallelParts: storage.DefaultParallelParts}
	cfg := filepath.Join(work, "pgverbs.yaml")
	yaml := fmt.Sprintf("storage:\n  bench:\n    endpoint: %s\n    region: %s\n    bucket: %s\n    credentials_file: %s\n", srv.Endpoint, srv.Region, bucket, creds)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return err
	}
	store, err := storage.New(ctx, target)
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	proxy, err := startDaemon(ctx, "pgverbs", port, exec.Command(proxyPath,
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--backend", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", cluster.Port),
		"--log-level", "warn", "--backup-root", root, "--config", cfg), os.Interrupt)
	if err != nil {
		return err
	}
	defer proxy.stop()
	pid := proxy.cmd.Process.Pid
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var size int64
	if res := conn.ExecParams(ctx, "SELECT sum(pg_database_size(oid)) FROM pg_database", nil, nil, nil, nil).Read(); res.Err == nil && len(res.Rows) == 1 {
		size, _ = strconv.ParseInt(string(res.Rows[0][0]), 10, 64)
	}

	command := func(sql string) func(context.Context, string) error {
		return func(ctx context.Context, name string) error {
			_, err := conn.Exec(ctx, fmt.Sprintf(sql, name)).ReadAll()
			return err
		}
	}
	twoStep := func(ctx context.Context, name string) error {
		dir := filepath.Join(work, name)
		cmd := exec.CommandContext(ctx, cluster.Bin("pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(cluster.Port),
			"-U", "postgres", "-D", dir, "-Ft", "-X", "stream", "-c", "fast", "--compress=client-zstd")
		cmd.Env = cleanEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("pg_basebackup: %w\n%s", err, out)
		}
		defer os.RemoveAll(dir)
		files, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := uploadFile(ctx, store, filepath.Join(dir, f.Name()), storage.Join(name, f.Name())); err != nil {
				return err
			}
		}
		return nil
	}
	cases := []struct {
		name    string
		run     func(context.Context, string) error
		rss     bool
		cleanup func(name string) error
	}{
		{"BASE BACKUP TO 'storage://...' (tar, zstd)", command("BASE BACKUP TO 'storage://bench/%s' WITH (FORMAT tar, COMPRESSION zstd)"), true,
			func(name string) error { return store.DeletePrefix(ctx, name) }},
		{"BASE BACKUP TO local disk (tar, zstd)", command("BASE BACKUP TO '%s' WITH (FORMAT tar, COMPRESSION zstd)"), true,
			func(name string) error { return os.RemoveAll(filepath.Join(root, name)) }},
		{"pg_basebackup -Ft --compress=client-zstd + upload", twoStep, false,
			func(name string) error { return store.DeletePrefix(ctx, name) }},
	}
	idleRSS := peakRSS(pid)
	runs := make([][]storageRun, len(cases))
	for r := 0; r < rounds; r++ {
		for i, c := range cases {
			name := fmt.Sprintf("r%d-c%d", r, i)
			if c.rss {
				resetPeakRSS(pid)
			}
			cpu0, _ := procCPU(pid, false)
			weed0, _ := procCPU(srv.Pid(), false)
			start := time.Now()
			if err := c.run(ctx, name); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			run := storageRun{seconds: time.Since(start).Seconds()}
			cpu1, _ := procCPU(pid, false)
			run.cpu = (cpu1 - cpu0).Seconds()
			weed1, _ := procCPU(srv.Pid(), false)
			run.storeCPU = (weed1 - weed0).Seconds()
			if c.rss {
				run.peakRSS = peakRSS(pid)
			}
			runs[i] = append(runs[i], run)
			fmt.Fprintf(os.Stderr, "[storage round %d] %s: %.2fs, pgverbs CPU %.2fs, weed CPU %.2fs, peak RSS %.1f MB\n", r+1, c.name, run.seconds, run.cpu, run.storeCPU, float64(run.peakRSS)/(1<<20))
			if err := c.cleanup(name); err != nil {
				return err
			}
		}
	}
	fmt.Printf("\nBase backups to object storage (SeaweedFS on the same machine), cluster of %.0f MB (pgbench -i -s %d), %d rounds alternating, medians; ratios are medians of per-round ratios:\n\n", float64(size)/(1<<20), scale, rounds)
	rows := [][]string{{"backup", "seconds", "MB/s", "pgverbs CPU s", "store (weed) CPU s", "pgverbs peak RSS (max over rounds)", "this seconds / storage seconds (targets: local >= 0.90, two-step >= 1.30)"}}
	for i, c := range cases {
		secs := make([]float64, len(runs[i]))
		cpus := make([]float64, len(runs[i]))
		weeds := make([]float64, len(runs[i]))
		var peak int64
		for k, r := range runs[i] {
			secs[k], cpus[k], weeds[k] = r.seconds, r.cpu, r.storeCPU
			peak = max(peak, r.peakRSS)
		}
		m := median(secs)
		ratio := ""
		if i > 0 {
			per := make([]float64, rounds)
			for k := range per {
				per[k] = runs[i][k].seconds / runs[0][k].seconds
			}
			ratio = fmt.Sprintf("%.2f", median(per))
		}
		rss := "-"
		if c.rss {
			rss = fmt.Sprintf("%.1f MB", float64(peak)/(1<<20))
		}
		rows = append(rows, []string{c.name, fmt.Sprintf("%.2f", m), fmt.Sprintf("%.0f", float64(size)/(1<<20)/m),
			fmt.Sprintf("%.2f", median(cpus)), fmt.Sprintf("%.2f", median(weeds)), rss, ratio})
	}
	printMarkdown(rows)
	fmt.Printf("\npgverbs's resident set before the rounds: %.1f MB (the local tar+zstd backup's peak is the same process without part buffers).\n", float64(idleRSS)/(1<<20))
	fmt.Printf("\nThe configured bound: parts of %d MB, %d in flight for base.tar and 1 for pg_wal.tar: (3+2+1+2) x 8 MB = 64 MB of part buffers.\n",
		storage.DefaultPartSize>>20, storage.DefaultParallelParts)
	return nil
}

// uploadFile uploads one file through the storage layer, as a backup
// script with the SDK would.
func uploadFile(ctx context.Context, store *storage.Store, path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w := store.Create(ctx, name, storage.WriteOptions{SizeHint: fi.Size()})
	if _, err := io.Copy(w, f); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}

// resetPeakRSS resets the process's VmHWM (clear_refs 5, Linux 4.0+).
func resetPeakRSS(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSS reads the process's VmHWM in bytes, 0 if unknown.
func peakRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
