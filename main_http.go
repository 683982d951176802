package main

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/backend"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/metrics"
	"github.com/pgverbs/pgverbs/proxy"
	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/walarchive"
)

// startOperations points src at the server and starts the HTTP listener
// for metrics, health and the WAL archive's /wal/ when http_listen is
// set. archiver, which may be nil (none), is the WAL archive /metrics
// reports and /wal/ serves; relay, nil too without one, the WAL relay's
// standbys and slots /metrics reports. stop ends it.
func startOperations(cfg *conf.Config, srv *proxy.Server, target *backend.Target, src *stats.Deferred, archiver walarchive.Archiver,
	relay metrics.Relay, log *zap.Logger) (stop func(), err error) {
	src.Set(srv)
	if cfg.HTTPListen == "" {
		return func() {}, nil
	}
	// The readiness probe's startup packet names the backend conninfo's
	// user and database, so that the server logs no unknown role for it.
	user, database := "postgres", "postgres"
	if pc, err := pgconn.ParseConfig(cfg.Backend); err == nil {
		user, database = pc.User, pc.Database
		if database == "" {
			database = user
		}
	}
	token, err := cfg.Token()
	if err != nil {
		return nil, fmt.Errorf("http_token_file: %w", err)
	}
	archive := walarchive.ArchiveFunc(func() (string, uint64, bool) { return "", 0, false })
	var status func() (walarchive.Status, bool)
	if archiver != nil {
		archive, status = walarchive.StatusArchive(archiver), archiver.Status
	}
	hs, err := metrics.Start(metrics.Options{
		Addr:        cfg.HTTPListen,
		Certificate: srv.Certificate,
		Source:      srv,
		Dial:        target.Dial,
		User:        user,
		Database:    database,
		WAL:         walarchive.NewHandler(archive, token, log.Named("wal")),
		Archive:     status,
		Relay:       relay,
		Logger:      log.Named("http"),
	})
	if err != nil {
		return nil, err
	}
	log.Info("HTTP listener ready", zap.String("http_listen", hs.Addr().String()), zap.Bool("tls", srv.Certificate() != nil),
		zap.Bool("wal_token", token != ""))
	return hs.Close, nil
}
