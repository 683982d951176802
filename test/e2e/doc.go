// Package e2e drives the real pgverbs binary with real clients (the psql
// binary, pgx, pg_basebackup) against real PostgreSQL clusters started by
// internal/pgtest.
package e2e
