package main

import (
	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/walarchive"
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
}
