package main

import (
	"context"
	"errors"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/backend"
	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/proxy"
	"github.com/pgverbs/pgverbs/storage"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walsender"
)

// registerWALCommands registers START, STOP, ALTER, SHOW and CHECK WAL
// ARCHIVE over a, the process's one archive, with archive directories
// below backupRoot. With no root (or no archive) they stay registered and
// refuse to run with 55000 and a hint, as BASE BACKUP does without a
// root, rather than being sent to the server as unknown syntax.
func registerWALCommands(registry *commands.Registry, backupRoot string, a walarchive.Archiver) {
	for _, c := range commands.WALArchiveCommands(backupRoot, a) {
		registry.Register(c)
	}
	var setter commands.WALSourceSetter
	if m, ok := a.(*walarchive.Manager); ok {
		setter = m
	}
	registry.Register(commands.NewWALFailover(setter))
}

// newArchive returns the process's WAL archive, fed from target
// (backup_conninfo, else the backend), uploading to stores when started
// TO a storage URL, and resumes the one that was
// running when pgverbs last stopped. Without a backup root there is none:
// the interface is nil then (never a nil *Manager inside it), which the
// commands and the HTTP listener test for.
func newArchive(cfg *conf.Config, target *backend.Target, stores *storage.Stores, log *zap.Logger) (walarchive.Archiver, func()) {
	if cfg.BackupRoot == "" {
		return nil, func() {}
	}
	network, address := target.Address()
	m := walarchive.NewManager(walarchive.Config{
		Root:     cfg.BackupRoot,
		Dial:     archiveDial(target),
		Upstream: network + ":" + address,
		Logger:   log,
		Connect:  sourceConnect,
		// START WAL ARCHIVE TO 'storage://...' uploads to these.
		Stores: stores,
		// Instances sharing a backup root each resume their own archive.
		Instance: instanceName(cfg.PeerID),
	})
	if err := m.Recover(); err != nil {
		// The archive stays stopped; the operator sees why and can START
		// it again. pgverbs itself serves on.
		log.Error("cannot resume the WAL archive", zap.Error(err))
	}
	return m, m.Close
}

// archiveDial opens the archive's physical replication connections, with
// the credentials of target when it names a user, else as the role that
// ran START WAL ARCHIVE, and with the archive's application_name: the
// name a primary's synchronous_standby_names lists.
func archiveDial(target *backend.Target) walarchive.DialFunc {
	return func(ctx context.Context, user, applicationName string) (*pgconn.PgConn, error) {
		if target.HasUser() {
			user = ""
		}
		return target.Connect(ctx, user, "", map[string]string{
			"replication":      "true",
			"application_name": applicationName,
		})
	}
}

// newWALSender returns the walsender that serves standbys from the
// archive (nil without one). A command it passes upstream after the
// session's own connection closed opens a new one as the client's role,
// and only when the backend conninfo names no user of its own: pgverbs
// never runs a client's command as another role.
func newWALSender(a walarchive.Archiver, current func() *backend.Target, log *zap.Logger) *walsender.Server {
	m, ok := a.(*walarchive.Manager)
	if !ok {
		return nil
	}
	dial := func(ctx context.Context, user, applicationName string) (*pgconn.PgConn, error) {
		target := current()
		if target.HasUser() {
			return nil, errors.New("the backend conninfo names its own user")
		}
		return target.Connect(ctx, user, "", map[string]string{"replication": "true", "application_name": applicationName})
	}
	return walsender.NewServer(walsender.Config{Archive: m, Dial: dial, Logger: log.Named("walsender")})
}

// replication is s as the proxy takes it: a nil interface without one.
func replication(s *walsender.Server) proxy.Replication {
	if s == nil {
		return nil
	}
	return s
}

// standbyNames lists the application names of the standbys s serves.
func standbyNames(s *walsender.Server) func() []string {
	return func() []string {
		if s == nil {
			return nil
		}
		var names []string
		for _, sb := range s.Standbys() {
			names = append(names, sb.ApplicationName)
		}
		return names
	}
}

// instanceName names this instance among several for files they share
// (the WAL archive's pointer in the backup root): its peer id, "" without
// peering.
func instanceName(peerID int) string {
	if peerID == 0 {
		return ""
	}
	return strconv.Itoa(peerID)
}
