package main

import (
	"context"

	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/walarchive"
)

// registerOperatorCommands registers SHOW PGVERBS, which reports on the
// proxy through src and on the configuration config returns (the one in
// effect, after any reload), and on the WAL archive (nil when there is
// none).
//
// It starts the one sampler behind SHOW PGVERBS STATS's rates, which runs
// for the life of the process: it only reads src's totals once a second.
func registerOperatorCommands(reg *commands.Registry, config func() *conf.Config, src stats.Source, archive walarchive.Archiver) {
	rates := stats.NewWindow(src, nil)
	go rates.Run(context.Background())
	for _, show := range commands.ShowPgverbsCommands(src, rates, config, commands.WithArchive(archive)) {
		reg.Register(show)
	}
}
