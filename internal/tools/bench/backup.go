package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// backupCase is one way of taking a backup, timed end to end.
type backupCase struct {
	name string
	run  func(ctx context.Context, dir string) error
}

// runBackupBench compares BASE BACKUP TO through pgverbs with pg_basebackup
// on a throwaway cluster of about scale*15 MB (pgbench -i -s scale),
// alternating the cases in every round.
func runBackupBench(ctx context.Context, proxyPath string, scale, rounds int) error {
	fmt.Fprintf(os.Stderr, "backup benchmark: starting a cluster, pgbench -i -s %d...\n", scale)
	cluster, err := pgtest.New(pgtest.Options{InitDBArgs: []string{"--data-checksums"},
		Settings: map[string]string{"max_wal_size": "4GB"}})
	if err != nil {
		return err
	}
	defer cluster.Stop()
	if _, _, err := pgbench(ctx, cluster.Bin("pgbench"), cluster.Port, "", "-i", "-s", strconv.Itoa(scale), "-q"); err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "pgverbs-bench-backups-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	port, err := freePort()
	if err != nil {
		return err
	}
	proxy, err := startDaemon(ctx, "pgverbs", port, exec.Command(proxyPath,
		"--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		"--backend", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", cluster.Port),
		"--log-level", "warn", "--backup-root", root), os.Interrupt)
	if err != nil {
		return err
	}
	defer proxy.stop()
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var size string
	if res := conn.ExecParams(ctx, "SELECT pg_size_pretty(sum(pg_database_size(oid))) FROM pg_database", nil, nil, nil, nil).Read(); res.Err == nil && len(res.Rows) == 1 {
		size = string(res.Rows[0][0])
	}
	command := func(sql string) func(context.Context, string) error {
		return func(ctx context.Context, dir string) error {
			_, err := conn.Exec(ctx, fmt.Sprintf(sql, filepath.Base(dir))).ReadAll()
			return err
		}
	}
	basebackup := func(args ...string) func(context.Context, string) error {
		return func(ctx context.Context, dir string) error {
			all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(cluster.Port), "-U", "postgres", "-D", dir}, args...)
			cmd := exec.CommandContext(ctx, cluster.Bin("pg_basebackup"), all...)
			cmd.Env = cleanEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("pg_basebackup: %w\n%s", err, out)
			}
			return nil
		}
	}
	cases := []backupCase{
		{"pg_basebackup -Fp -X stream -c fast", basebackup("-Fp", "-X", "stream", "-c", "fast")},
		{"BASE BACKUP (plain, WAL stream)", command("BASE BACKUP TO '%s'")},
		{"pg_basebackup -Ft --compress=client-zstd", basebackup("-Ft", "-X", "stream", "-c", "fast", "--compress=client-zstd")},
		{"BASE BACKUP (tar, zstd)", command("BASE BACKUP TO '%s' WITH (FORMAT tar, COMPRESSION zstd)")},
		{"BASE BACKUP (METHOD sql)", command("BASE BACKUP TO '%s' WITH (METHOD sql)")},
	}
	times := make([][]time.Duration, len(cases))
	for r := 0; r < rounds; r++ {
		for i, bc := range cases {
			dir := filepath.Join(root, fmt.Sprintf("r%d-c%d", r, i))
			start := time.Now()
			if err := bc.run(ctx, dir); err != nil {
				return fmt.Errorf("%s: %w", bc.name, err)
			}
			d := time.Since(start)
			times[i] = append(times[i], d)
			fmt.Fprintf(os.Stderr, "[backup round %d] %s: %s\n", r+1, bc.name, d.Round(10*time.Millisecond))
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
		}
	}
	med := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	fmt.Printf("\nBase backups of a %s cluster (pgbench -i -s %d, data checksums), median of %d rounds, alternating:\n\n", size, scale, rounds)
	rows := [][]string{{"backup", "median", "pg_basebackup / this (target >= 0.90; sql >= 0.50)"}}
	base := []time.Duration{med(times[0]), med(times[0]), med(times[2]), med(times[2]), med(times[0])}
	for i, bc := range cases {
		m := med(times[i])
		ratio := ""
		if i == 1 || i == 3 || i == 4 {
			ratio = fmt.Sprintf("%.2f", float64(base[i])/float64(m))
		}
		rows = append(rows, []string{bc.name, m.Round(10 * time.Millisecond).String(), ratio})
	}
	printMarkdown(rows)
	return nil
}
