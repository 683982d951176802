package main

import (
	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/stats"
)

// registerOperatorCommands registers SHOW PGVERBS, which reports on the
// proxy through src and on the configuration config returns (the one in
// effect, after any reload).
func registerOperatorCommands(reg *commands.Registry, config func() *conf.Config, src stats.Source) {
}
