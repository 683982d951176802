package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// installLines is the size of the generated package script.
const installLines = 10000

// writeBenchPackage writes a package "benchpkg" whose install.sql has
// installLines lines (2,000 five-line functions) into a new extensions
// directory, and returns the directory and the script.
func writeBenchPackage() (dir, script string, err error) {
	dir, err = os.MkdirTemp("", "pgverbs-bench-ext-")
	if err != nil {
		return "", "", err
	}
	var b strings.Builder
	for i := 0; i < installLines/5; i++ {
		fmt.Fprintf(&b, "CREATE FUNCTION bench_f%d(x int)\nRETURNS int\nLANGUAGE sql IMMUTABLE\nAS $$ SELECT x + %d $$;\n\n", i, i)
	}
	script = b.String()
	pkg := filepath.Join(dir, "benchpkg")
	if err := os.Mkdir(pkg, 0o755); err != nil {
		return "", "", err
	}
	files := map[string]string{
		"control":     "name = benchpkg\nversion = 1.0\n",
		"install.sql": script,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(pkg, name), []byte(text), 0o644); err != nil {
			return "", "", err
		}
	}
	return dir, script, nil
}

// installResult is one measured INSTALL + UNINSTALL round trip.
type installResult struct {
	install, uninstall, rawScript time.Duration
}

// measureInstall times INSTALL EXTENSION + UNINSTALL EXTENSION of the
// generated package through pgverbs, against running the same script
// directly on the server as one simple query (the floor: PostgreSQL's own
// cost of the DDL), alternating, rounds times.
func measureInstall(ctx context.Context, rounds int, directURL, proxyURL, script string) ([]installResult, error) {
	direct, err := pgconn.Connect(ctx, directURL)
	if err != nil {
		return nil, err
	}
	defer direct.Close(ctx)
	proxied, err := pgconn.Connect(ctx, proxyURL)
	if err != nil {
		return nil, err
	}
	defer proxied.Close(ctx)
	// Uninstall drops the recorded objects (no uninstall.sql), so the
	// direct baseline drops them too, by schema.
	var out []installResult
	for i := 0; i < rounds; i++ {
		var r installResult
		start := time.Now()
		if _, err := direct.Exec(ctx, "BEGIN; CREATE SCHEMA raw_bench; SET LOCAL search_path = raw_bench;\n"+script+"\nCOMMIT").ReadAll(); err != nil {
			return nil, fmt.Errorf("raw script: %w", err)
		}
		r.rawScript = time.Since(start)
		if _, err := direct.Exec(ctx, "DROP SCHEMA raw_bench CASCADE").ReadAll(); err != nil {
			return nil, err
		}
		start = time.Now()
		if _, err := proxied.Exec(ctx, "INSTALL EXTENSION benchpkg").ReadAll(); err != nil {
			return nil, fmt.Errorf("INSTALL EXTENSION: %w", err)
		}
		r.install = time.Since(start)
		start = time.Now()
		if _, err := proxied.Exec(ctx, "UNINSTALL EXTENSION benchpkg").ReadAll(); err != nil {
			return nil, fmt.Errorf("UNINSTALL EXTENSION: %w", err)
		}
		r.uninstall = time.Since(start)
		out = append(out, r)
	}
	return out, nil
}

func printInstall(rs []installResult) {
	med := func(f func(installResult) time.Duration) time.Duration {
		ds := make([]time.Duration, len(rs))
		for i, r := range rs {
			ds[i] = f(r)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	ins, un, raw := med(func(r installResult) time.Duration { return r.install }),
		med(func(r installResult) time.Duration { return r.uninstall }),
		med(func(r installResult) time.Duration { return r.rawScript })
	fmt.Printf("\nINSTALL + UNINSTALL of a %d-line script (%d statements), median of %d rounds:\n\n", installLines, installLines/5, len(rs))
	printMarkdown([][]string{
		{"step", "median", "vs. the raw script on the server"},
		{"raw script, one simple query, direct", raw.Round(time.Millisecond).String(), "1.00"},
		{"INSTALL EXTENSION through pgverbs", ins.Round(time.Millisecond).String(), fmt.Sprintf("%.2f", float64(ins)/float64(raw))},
		{"UNINSTALL EXTENSION (tracked objects)", un.Round(time.Millisecond).String(), fmt.Sprintf("%.2f", float64(un)/float64(raw))},
		{"round trip", (ins + un).Round(time.Millisecond).String(), ""},
	})
}
