package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// What counting for the metrics costs the relay: a target of its own runs
// a pgverbs built with the tag pgverbs_nocount, which compiles the
// per-session counting away (stats/count.go), in the first of
// -relay-modes, in the same pairs as every other target. Its comparison is
// only fair when -proxy was built from the same tree (make bench builds
// both).

// nocountSuffix names the no-counting target of a relay mode's target.
const nocountSuffix = ", no counting"

// nocountBinary returns the binary of the no-counting target: flagValue
// itself when it is a path, else one built now from the source tree in
// the working directory (auto), or "" for off. cleanup removes what was
// built.
func nocountBinary(ctx context.Context, flagValue string) (path string, cleanup func(), err error) {
	cleanup = func() {}
	switch flagValue {
	case "off":
		return "", cleanup, nil
	case "auto":
	default:
		path, err := filepath.Abs(flagValue)
		if err != nil {
			return "", cleanup, err
		}
		if _, err := os.Stat(path); err != nil {
			return "", cleanup, fmt.Errorf("-nocount: %w", err)
		}
		return path, cleanup, nil
	}
	dir, err := os.MkdirTemp(tempBase(), "pgverbs-bench-nocount-")
	if err != nil {
		return "", cleanup, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "pgverbs-nocount")
	fmt.Fprintln(os.Stderr, "building pgverbs with -tags pgverbs_nocount...")
	build := exec.CommandContext(ctx, "go", "build", "-tags", "pgverbs_nocount", "-o", path, "github.com/pgverbs/pgverbs")
	if out, err := build.CombinedOutput(); err != nil {
		cleanup()
		return "", func() {}, fmt.Errorf("build pgverbs -tags pgverbs_nocount (-nocount off skips it): %w\n%s", err, out)
	}
	return path, cleanup, nil
}

// printCountingCost prints, for each target built without counting, the
// CPU per transaction of the counting build over it: the medians of the
// per-pair ratios, 1.00 meaning counting costs nothing measurable.
func printCountingCost(o options, targets []*target, res results) {
	for _, t := range targets {
		if t.countingOf == "" {
			continue
		}
		fmt.Printf("\ncounting cost: CPU per transaction, %s : %s (median of %d per-pair ratios; 1.00 = no cost):\n\n",
			t.countingOf, t.name, o.pairs)
		header := []string{"mode"}
		for _, c := range o.clients {
			header = append(header, strconv.Itoa(c)+" client(s)")
		}
		rows := [][]string{header}
		for _, mode := range o.modes {
			row := []string{mode}
			for _, c := range o.clients {
				row = append(row, fmt.Sprintf("%.3f", median(res.ratios(config{mode, c}, t.countingOf, t.name, roundCPU))))
			}
			rows = append(rows, row)
		}
		printMarkdown(rows)
	}
}
