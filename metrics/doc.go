// Package metrics is pgverbs's HTTP listener for machines: /metrics in the
// Prometheus text format, /healthz (the process serves) and /readyz (the
// backend accepts connections).
//
// Every metric is listed in metrics.go, with its name, help and labels;
// the values are read at scrape time by collectors that turn the proxy's
// counters (package stats, through Source) into constant metrics, so the
// relay never touches a Prometheus type. A later part of pgverbs that has
// metrics of its own (the WAL archive) adds its descriptions and a
// collector there, to the one registry New builds.
//
// /metrics and the health endpoints need no token: they show counts and
// states, no data.
//
// /readyz asks the backend as pg_isready does, at most once a second
// whatever the number of probes, and never more than one question at a
// time (ready.go).
package metrics
