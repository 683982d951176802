package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/pgverbs/pgverbs/backup"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/storage"
)

// newStores builds the configured object-storage targets. It contacts
// none of them: a target that is down is reported where it is used.
func newStores(cfg *conf.Config) (*storage.Stores, error) {
	var cs []storage.Config
	for _, name := range cfg.StorageNames() {
		cs = append(cs, storage.Config(cfg.Storage[name]))
	}
	return storage.NewStores(context.Background(), cs)
}

// cleanStores removes, in the background, what pgverbs processes killed
// before started left in each target: open multipart uploads and
// backups that never completed (backup.CleanStorage). A target that
// cannot be reached is logged and left for the next start.
func cleanStores(stores *storage.Stores, started time.Time, log *zap.Logger) {
	for _, st := range stores.All() {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			aborted, removed, err := backup.CleanStorage(ctx, st, started)
			if err != nil {
				log.Warn("could not clean up object storage target", zap.String("target", st.Name()), zap.Error(err))
				return
			}
			if aborted > 0 || removed > 0 {
				log.Info("cleaned up object storage target", zap.String("target", st.Name()),
					zap.Int("aborted_uploads", aborted), zap.Int("removed_incomplete_backups", removed))
			}
		}()
	}
}
