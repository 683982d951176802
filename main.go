// Command pgverbs is a PostgreSQL wire-protocol proxy that relays clients to
// a PostgreSQL server and executes a few SQL commands of its own.
//
// Usage:
//
//	pgverbs [--config FILE] [--listen ADDR] [--backend CONNINFO] [flags]
//	pgverbs wal-get [--url URL] [--token-file FILE] [--partial] FILE DEST
//	pgverbs backup-get [--config FILE] [--restore-command URL] [--token-file FILE] SOURCE DATADIR
//
// pgverbs --help lists every flag with its setting and environment
// variable; README.md's configuration section explains them.
//
// This file only wires the parts together: configuration, logger, server
// and signals.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgverbs/pgverbs/backend"
	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/extension"
	"github.com/pgverbs/pgverbs/proxy"
	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/walarchive"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	started := time.Now()
	if len(args) > 0 && args[0] == walGetCommand {
		return runWalGet(args[1:], os.Getenv, os.Stderr)
	}
	if len(args) > 0 && args[0] == backupGetCommand {
		return runBackupGet(args[1:], os.Getenv, os.Stderr)
	}
	cfg, err := conf.Load(args, os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgverbs: %v\n", err)
		return 2
	}
	level := zap.NewAtomicLevelAt(cfg.ZapLevel())
	log := newLogger(cfg.LogFormat, level)
	defer log.Sync()

	target, err := backend.Parse(cfg.Backend)
	if err != nil {
		log.Error("invalid backend", zap.Error(err))
		return 2
	}
	backupTarget := target
	if cfg.BackupConninfo != "" {
		// Validated (with secrets redacted) by conf; an error here would
		// come from the same parser, so it is not printed.
		if backupTarget, err = backend.Parse(cfg.BackupConninfo); err != nil {
			log.Error("invalid backup_conninfo")
			return 2
		}
	}
	cert, err := loadCert(cfg)
	if err != nil {
		log.Error("cannot load TLS certificate", zap.Error(err))
		return 2
	}
	repo := extension.OpenRepo(cfg.ExtensionsDir)
	registry := commands.NewRegistry()
	registry.Register(commands.NewInstall(repo, cfg.ExtensionCollision == "package"))
	registry.Register(commands.NewUninstall(repo))
	registry.Register(commands.NewAlterExtension(repo))
	for _, show := range commands.ShowCommands(repo) {
		registry.Register(show)
	}
	self, _ := os.Executable() // "" only on odd systems; wal-get is then found on PATH
	if self == "" {
		self = "pgverbs"
	}
	backendFollow, backupFollow := newFollowTarget(cfg.Backend, target), newFollowTarget(cfg.BackupConninfo, backupTarget)
	if cfg.BackupConninfo == "" {
		backupFollow.configured = cfg.Backend
	}
	stores, err := newStores(cfg)
	if err != nil {
		log.Error("cannot set up object storage", zap.Error(err))
		return 2
	}
	cleanStores(stores, started, log)
	registry.Register(commands.NewBaseBackup(cfg.BackupRoot, backupConnect(backupFollow.get), commands.StandbySource{
		Listen: cfg.Listen, HTTPListen: cfg.HTTPListen, HTTPS: cfg.TLSCert != "",
		TokenFile: cfg.HTTPTokenFile, InlineToken: cfg.HTTPToken != "", Executable: self,
	}).WithStorage(stores))
	archive, closeArchive := newArchive(cfg, backupTarget, stores, log)
	defer closeArchive()
	registerWALCommands(registry, cfg.BackupRoot, archive)
	registry.Register(commands.NewShowBackups(cfg.BackupRoot, stores, archive))
	registry.Register(commands.NewVerifyBackup(cfg.BackupRoot, stores, archive))
	// current is the configuration in effect, for SHOW PGVERBS CONFIG;
	// source is the proxy, once it exists, for what reports on it.
	var current atomic.Pointer[conf.Config]
	current.Store(cfg)
	source := new(stats.Deferred)
	registerOperatorCommands(registry, func() *conf.Config {
		// After SET SOURCE or FAILOVER the backend is the archive's
		// source, whatever the file says.
		if m, ok := archive.(*walarchive.Manager); ok {
			if src := m.Source(); src != "" {
				return current.Load().FollowingSource(backendFollow.conninfo(src))
			}
		}
		return current.Load()
	}, source, archive)
	localAuth, admins, err := loadLocalAuth(cfg)
	if err != nil {
		log.Error("cannot read wal_auth_file", zap.Error(err))
		return 2
	}
	sender := newWALSender(archive, backendFollow.get, log)
	relay := registerWALRelay(registry, cfg.BackupRoot, archive, sender)
	srv := proxy.New(proxy.Options{
		Logger:      log,
		Target:      target,
		Commands:    registry,
		Limits:      limits(cfg),
		Certificate: cert,
		RelayMode:   cfg.RelayMode,
		Replication: replication(sender),
		LocalAuth:   localAuth,
		LocalAdmins: admins,
		Peering:     peering(cfg),
	})
	if m, ok := archive.(*walarchive.Manager); ok {
		wireFollow(m, backendFollow, backupFollow, srv.SetTarget, standbyNames(sender), log)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("cannot listen", zap.Error(err))
		return 1
	}
	stopOperations, err := startOperations(cfg, srv, target, source, archive, relay, log)
	if err != nil {
		log.Error("cannot serve HTTP", zap.Error(err))
		return 1
	}
	defer stopOperations()
	network, address := target.Address()
	log.Info("pgverbs ready",
		zap.String("listen", ln.Addr().String()),
		zap.String("backend", network+":"+address),
		zap.Bool("tls", cert != nil),
		zap.String("relay_mode", cfg.RelayMode))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for {
		select {
		case err := <-served:
			if !errors.Is(err, proxy.ErrServerClosed) {
				log.Error("listener failed", zap.Error(err))
				srv.Close()
				return 1
			}
			return 0
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				cfg = reload(log, args, cfg, level, srv)
				current.Store(cfg)
			case syscall.SIGTERM:
				log.Info("SIGTERM: graceful shutdown", zap.Int("sessions", srv.Sessions()), zap.Duration("timeout", cfg.ShutdownTimeout))
				ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
				err := srv.Shutdown(ctx)
				cancel()
				if err != nil {
					log.Info("shutdown timeout reached; remaining sessions terminated")
				}
				<-served
				return 0
			case syscall.SIGINT:
				log.Info("SIGINT: immediate shutdown", zap.Int("sessions", srv.Sessions()))
				srv.Close()
				<-served
				return 0
			}
		}
	}
}

// reload re-reads the configuration and applies what can change at run
// time. An invalid configuration is logged and the old one kept.
func reload(log *zap.Logger, args []string, old *conf.Config, level zap.AtomicLevel, srv *proxy.Server) *conf.Config {
	cfg, err := conf.Load(args, os.Getenv, os.Stderr)
	if err != nil {
		log.Error("SIGHUP: configuration invalid, keeping the old one", zap.Error(err))
		return old
	}
	cert, err := loadCert(cfg)
	if err != nil {
		log.Error("SIGHUP: cannot load TLS certificate, keeping the old configuration", zap.Error(err))
		return old
	}
	localAuth, admins, err := loadLocalAuth(cfg)
	if err != nil {
		log.Error("SIGHUP: cannot read wal_auth_file, keeping the old configuration", zap.Error(err))
		return old
	}
	level.SetLevel(cfg.ZapLevel())
	srv.SetLimits(limits(cfg))
	srv.SetLocalAuth(localAuth, admins)
	srv.SetCertificate(cert)
	srv.SetPeering(peering(cfg))
	if keys := conf.RestartNeeded(old, cfg); len(keys) > 0 {
		log.Warn("SIGHUP: changed settings that take effect only on restart", zap.Strings("settings", keys))
	}
	log.Info("SIGHUP: configuration reloaded", zap.String("log_level", cfg.LogLevel), zap.Int("max_client_conns", cfg.MaxClientConns),
		zap.Int("peer_id", cfg.PeerID), zap.Stringer("peers", cfg.Peers))
	return cfg
}

// backupConnect opens BASE BACKUP's connections to the backend: with the
// credentials of target (backup_conninfo, else the backend URL) when it
// names a user, else as the client's own user (trust or .pgpass setups).
func backupConnect(current func() *backend.Target) commands.ConnectFunc {
	return func(ctx context.Context, user, database string, replication bool) (*pgconn.PgConn, error) {
		target := current()
		if target.HasUser() {
			user = ""
		}
		// A name of its own, as pg_basebackup's, so that the backup's
		// connections are told apart in pg_stat_activity and
		// pg_stat_replication, and never match a synchronous_standby_names
		// meant for a standby (or for the WAL archive). One the conninfo
		// sets wins.
		params := map[string]string{}
		if !target.HasParam("application_name") {
			params["application_name"] = "pgverbs_basebackup"
		}
		if replication {
			params["replication"] = "database"
		}
		return target.Connect(ctx, user, database, params)
	}
}

func limits(cfg *conf.Config) proxy.Limits {
	return proxy.Limits{MaxClientConns: cfg.MaxClientConns, AuthTimeout: cfg.AuthTimeout}
}

// peering is the cancel peering cfg sets; SIGHUP applies it again.
func peering(cfg *conf.Config) proxy.Peering {
	return proxy.Peering{ID: cfg.PeerID, Peers: cfg.Peers}
}

func loadCert(cfg *conf.Config) (*tls.Certificate, error) {
	if cfg.TLSCert == "" {
		return nil, nil
	}
	c, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func newLogger(format string, level zap.AtomicLevel) *zap.Logger {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if format == "json" {
		enc = zapcore.NewJSONEncoder(encCfg)
	} else {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(os.Stderr), level))
}
