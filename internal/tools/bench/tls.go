package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// The TLS measurement runs one client count and two query modes only, to
// bound its time: 16 clients is where the proxies compete for the CPU, and
// extended differs from prepared mostly in parsing, which TLS does not
// touch.
const tlsClients = 16

var tlsModes = []string{"prepared", "simple"}

// directTLS is pgbench over TLS straight to the server, the baseline of
// the proxies' client-side TLS throughput.
const directTLS = "direct (TLS)"

// tlsSide is where a TLS target encrypts: nowhere (the plaintext
// reference), between pgbench and the proxy, or between the proxy and the
// server.
type tlsSide struct {
	// name is the side as the table shows it; suffix is appended to the
	// proxies' target names.
	name, suffix string
	// clientSSL is pgbench's sslmode against the proxy, backendSSL the
	// proxy's against the server.
	clientSSL, backendSSL string
	// baseline is the direct target with the same client sslmode.
	baseline string
}

// tlsSides are the sides measured; the first is the plaintext reference.
var tlsSides = []tlsSide{
	{name: "none", clientSSL: "disable", backendSSL: "disable", baseline: direct},
	{name: "client", suffix: ", client TLS", clientSSL: "require", backendSSL: "disable", baseline: directTLS},
	{name: "backend", suffix: ", backend TLS", clientSSL: "disable", backendSSL: "require", baseline: direct},
}

// tlsTargets are the targets of one side.
type tlsTargets struct {
	side             tlsSide
	pgverbs, bouncer string // target names; bouncer is "" without PgBouncer
}

// runTLSBench measures what TLS on either side of the proxy adds to its
// CPU per transaction, against the same proxy in plaintext in the same
// pairs. The cluster is one of its own: with ssl=on, the main one's direct
// runs (libpq's default sslmode=prefer) would encrypt.
func runTLSBench(ctx context.Context, o options, proxyPath, bouncerPath, extDir string) (err error) {
	fmt.Fprintln(os.Stderr, "TLS relay cost: starting PostgreSQL with ssl=on...")
	cluster, err := pgtest.New(pgtest.Options{Settings: clusterSettings(), TLS: true})
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := cluster.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop TLS cluster: %w", stopErr))
		}
	}()
	if _, _, err := pgbench(ctx, cluster.Bin("pgbench"), cluster.Port, "disable", "-i", "-s", strconv.Itoa(scale), "-q"); err != nil {
		return err
	}
	// The server's own certificate serves the proxies too: pgbench's
	// sslmode=require does not verify it, and the postgres user that
	// PgBouncer runs as can read it.
	cert, key := filepath.Join(cluster.DataDir, "server.crt"), filepath.Join(cluster.DataDir, "server.key")

	mode := o.relayModes[0]
	targets := []*target{
		{name: direct, port: cluster.Port, sslmode: "disable"},
		{name: directTLS, port: cluster.Port, sslmode: "require"},
	}
	var sides []tlsTargets
	var proxies []*daemon
	defer func() { stopPgverbs(proxies) }()
	for _, side := range tlsSides {
		args := relayModeArgs(o, mode)
		if side.clientSSL == "require" {
			args = append(args, "--tls-cert", cert, "--tls-key", key)
		}
		p, err := startPgverbs(ctx, proxyPath, backendURL(cluster.Port, side.backendSSL), extDir,
			pgverbsName(mode)+side.suffix, proxyMaxClients, args...)
		if err != nil {
			return err
		}
		proxies = append(proxies, p)
		targets = append(targets, &target{name: p.name, port: p.port, daemon: p, pgverbs: true, sslmode: side.clientSSL})
		st := tlsTargets{side: side, pgverbs: p.name}
		if bouncerPath != "" {
			var ini []string
			if side.clientSSL == "require" {
				ini = append(ini, "client_tls_sslmode = require", "client_tls_cert_file = "+cert, "client_tls_key_file = "+key)
			}
			if side.backendSSL == "require" {
				ini = append(ini, "server_tls_sslmode = require")
			}
			b, cleanup, err := startPgbouncer(ctx, bouncerPath, pgbouncer+side.suffix, cluster.Port, tlsClients, proxyMaxClients, ini...)
			defer cleanup()
			if err != nil {
				return err
			}
			defer b.stop()
			targets = append(targets, &target{name: b.name, port: b.port, daemon: b, sslmode: side.clientSSL})
			st.bouncer = b.name
		}
		sides = append(sides, st)
	}

	runner, err := newRunner(cluster, targets)
	if err != nil {
		return err
	}
	tlsOpts := o
	tlsOpts.modes, tlsOpts.clients, tlsOpts.pairs = tlsModes, []int{tlsClients}, o.tlsRounds
	res, err := runner.benchmark(ctx, tlsOpts, targets)
	if err != nil {
		return err
	}
	printTLS(tlsOpts, targets, sides, res)
	fmt.Printf("\nload average after the TLS runs: %s\n", loadAvg())
	return nil
}

// printTLS prints the TLS measurement: per query mode and side, each
// proxy's CPU per transaction, what TLS adds to it (the median of the
// per-pair differences from the same proxy in plaintext), its ratio to
// PgBouncer's, and throughput against direct with the same client sslmode;
// then the cost in a sentence per mode and side, and the raw pairs.
func printTLS(o options, targets []*target, sides []tlsTargets, res results) {
	rows := [][]string{{"mode", "TLS", "target", "CPU µs/tx", "TLS adds µs/tx", "CPU/tx vs pgbouncer",
		"switches/tx", "tps", "tps vs direct", "max other load"}}
	disturbed := 0
	plain := sides[0]
	for _, mode := range o.modes {
		cfg := config{mode, tlsClients}
		// row appends name's row; proxy holds its four proxy-only cells,
		// CPU to switches.
		row := func(side, name, baseline string, proxy ...string) {
			other, n := res.otherLoad(cfg, name)
			disturbed += n
			vsDirect := ""
			if baseline != "" {
				vsDirect = fmt.Sprintf("%.3f", median(res.ratios(cfg, name, baseline, roundTPS)))
			}
			r := append([]string{mode, side, name}, proxy...)
			rows = append(rows, append(r, fmt.Sprintf("%.0f", median(res.values(cfg, name, roundTPS))), vsDirect, fmt.Sprintf("%.0f%%", 100*other)))
		}
		row("none", direct, "", "", "", "", "")
		row("client", directTLS, "", "", "", "", "")
		for _, s := range sides {
			for _, p := range []struct{ name, plain string }{{s.pgverbs, plain.pgverbs}, {s.bouncer, plain.bouncer}} {
				if p.name == "" {
					continue
				}
				adds, vsBouncer := "", ""
				if p.name != p.plain {
					adds = fmt.Sprintf("%+.1f", median(res.differences(cfg, p.name, p.plain, roundCPU)))
				}
				if p.name == s.pgverbs && s.bouncer != "" {
					vsBouncer = fmt.Sprintf("%.2f", median(res.ratios(cfg, p.name, s.bouncer, roundCPU)))
				}
				row(s.side.name, p.name, s.side.baseline,
					fmt.Sprintf("%.1f", median(res.values(cfg, p.name, roundCPU))), adds, vsBouncer,
					fmt.Sprintf("%.2f", median(res.values(cfg, p.name, roundSwitches))))
			}
		}
	}

	fmt.Printf("\nTLS relay cost: pgbench -S -n -t %d/%d -c %d -j 2 -M mode, scale %d, %d pair(s) (%s); one proxy process per\n"+
		"side, pgbench sslmode=require where the client side has TLS and the proxy's sslmode=require where the backend\n"+
		"side has; \"TLS adds\" is the median of the per-pair differences from the same proxy in plaintext, \"tps vs\n"+
		"direct\" against pgbench to the server with the same client sslmode; CPU and switches as in the relay cost table\n\n",
		o.transactions, tlsClients, tlsClients, scale, o.pairs, pairWord(o.pairs))
	printMarkdown(rows)
	warnDisturbed(disturbed)
	fmt.Println()
	for _, mode := range o.modes {
		cfg := config{mode, tlsClients}
		for _, s := range sides[1:] {
			line := fmt.Sprintf("-M %s, %s TLS: a TLS user pays %s more CPU per transaction in pgverbs", mode, s.side.name, tlsCost(res, cfg, plain.pgverbs, s.pgverbs))
			if s.bouncer != "" {
				line += ", " + tlsCost(res, cfg, plain.bouncer, s.bouncer) + " in PgBouncer"
			}
			fmt.Println(line)
		}
	}
	printPairs(o, targets, res)
}

// tlsCost states what target costs over its plaintext counterpart plain.
func tlsCost(res results, cfg config, plain, target string) string {
	return fmt.Sprintf("%.1f µs (%.1f -> %.1f)",
		median(res.differences(cfg, target, plain, roundCPU)),
		median(res.values(cfg, plain, roundCPU)), median(res.values(cfg, target, roundCPU)))
}
