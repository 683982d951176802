// Package stats holds what pgverbs counts for its operators and the
// snapshots that read it: the per-session counters the relay keeps, the
// server-wide totals, and the Source interface through which both the
// Prometheus metrics (package metrics) and SHOW PGVERBS (package commands)
// read them.
//
// It sits below proxy, commands and metrics and imports none of them, so
// that counting needs no Prometheus type on the hot path: the relay only
// adds to plain atomic counters a session or loop owns, and a scrape or a
// SHOW folds them together when it asks. Nothing here takes a lock or
// allocates per relayed message.
package stats
