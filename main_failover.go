package main

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/backend"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/internal/localauth"
	"github.com/pgverbs/pgverbs/walarchive"
)

// followTarget is a backend target that moves to the WAL archive's
// source after SET SOURCE or FAILOVER: what BASE BACKUP and new sessions
// reach is the new primary, with no configuration change.
type followTarget struct {
	configured string // the configured conninfo, whose settings the new one keeps
	cur        atomic.Pointer[backend.Target]
}

func newFollowTarget(conninfo string, t *backend.Target) *followTarget {
	f := &followTarget{configured: conninfo}
	f.cur.Store(t)
	return f
}

func (f *followTarget) get() *backend.Target { return f.cur.Load() }

// follow moves to source: the configured keyword/value settings (sslmode,
// user, password) with the source's host, port and whatever it names
// itself, since later keywords win; a configured URL is not merged.
func (f *followTarget) follow(source string) (*backend.Target, error) {
	t, err := backend.Parse(f.conninfo(source))
	if err != nil {
		return nil, err
	}
	f.cur.Store(t)
	return t, nil
}

// conninfo is the connection string follow uses for source.
func (f *followTarget) conninfo(source string) string {
	if !strings.Contains(f.configured, "://") && !strings.Contains(source, "://") {
		return f.configured + " " + source
	}
	return source
}

// sourceConnect is the archive's ConnectFunc: a connection to the server
// a SET SOURCE or FAILOVER conninfo names, as user unless it names one.
func sourceConnect(ctx context.Context, conninfo, user string, params map[string]string) (*pgconn.PgConn, error) {
	t, err := backend.Parse(conninfo)
	if err != nil {
		return nil, err
	}
	if t.HasUser() {
		user = ""
	}
	return t.Connect(ctx, user, "", params)
}

// wireFollow makes the backend (proxy sessions) and the backup target
// follow the archive's source, now (a source persisted by an earlier
// run) and at each change.
func wireFollow(m *walarchive.Manager, backendT, backupT *followTarget, setProxy func(*backend.Target), standbys func() []string, log *zap.Logger) {
	apply := func(source string) {
		t, err := backendT.follow(source)
		if err != nil {
			log.Error("cannot follow the WAL archive's new source", zap.Error(err))
			return
		}
		setProxy(t)
		if _, err := backupT.follow(source); err != nil {
			log.Error("cannot follow the WAL archive's new source for backups", zap.Error(err))
		}
	}
	m.SetHooks(apply, standbys)
	if src := m.Source(); src != "" {
		apply(src)
	}
}

// loadLocalAuth reads wal_auth_file and wal_auth_admins (none: nil).
func loadLocalAuth(cfg *conf.Config) (*localauth.File, []string, error) {
	if cfg.WALAuthFile == "" {
		return nil, nil, nil
	}
	f, err := localauth.Load(cfg.WALAuthFile)
	if err != nil {
		return nil, nil, err
	}
	var admins []string
	for _, r := range strings.Split(cfg.WALAuthAdmins, ",") {
		if r = strings.TrimSpace(r); r != "" {
			admins = append(admins, r)
		}
	}
	return f, admins, nil
}
