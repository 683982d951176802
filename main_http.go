package main

import (
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/backend"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/metrics"
	"github.com/pgverbs/pgverbs/proxy"
	"github.com/pgverbs/pgverbs/stats"
)

// startOperations points src at the server and starts the HTTP listener
// for metrics and health when http_listen is set. stop ends it.
func startOperations(cfg *conf.Config, srv *proxy.Server, target *backend.Target, src *stats.Deferred, log *zap.Logger) (stop func(), err error) {
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
	hs, err := metrics.Start(metrics.Options{
		Addr:        cfg.HTTPListen,
		Certificate: srv.Certificate,
		Source:      srv,
		Dial:        target.Dial,
		User:        user,
		Database:    database,
		Logger:      log.Named("http"),
	})
	if err != nil {
		return nil, err
	}
	log.Info("HTTP listener ready", zap.String("http_listen", hs.Addr().String()), zap.Bool("tls", srv.Certificate() != nil))
	return hs.Close, nil
}
