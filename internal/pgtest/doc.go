// Package pgtest creates throwaway PostgreSQL clusters for tests, benchmarks
// and local development.
//
// Each cluster lives in its own temporary directory (data directory, Unix
// socket directory, server log and, optionally, TLS material) and listens on
// a free TCP port on 127.0.0.1, so any number of clusters can run side by
// side without touching a system-wide installation. Durability is traded for
// speed (fsync=off, synchronous_commit=off); the clusters are not meant to
// survive a crash.
//
// PostgreSQL refuses to run as root. When the current process is root, the
// server binaries are executed as the "postgres" OS user and every file the
// server needs is chowned to that user; see RunAsPostgres.
//
// Tests normally call Start, which skips the test when no PostgreSQL
// installation is found, unless PGTEST_REQUIRE=1 is set (as in CI), in which
// case a missing installation fails the test instead.
package pgtest
