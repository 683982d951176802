package main

import (
	"github.com/pgverbs/pgverbs/commands"
	"github.com/pgverbs/pgverbs/walarchive"
	"github.com/pgverbs/pgverbs/walsender"
)

// registerWALRelay registers SHOW WAL STANDBYS and SHOW WAL SLOTS over
// sender, the walsender serving standbys from a (see newWALSender), and
// a's own slots. Without them (no backup root, so no archive) the
// commands stay registered and refuse to run with 55000, as the WAL
// ARCHIVE commands do. It returns what the commands read, nil without a
// relay, for /metrics.
func registerWALRelay(registry *commands.Registry, backupRoot string, a walarchive.Archiver, sender *walsender.Server) commands.WALRelay {
	relay := newWALRelay(a, sender)
	for _, c := range commands.WALRelayCommands(backupRoot, relay) {
		registry.Register(c)
	}
	return relay
}

// newWALRelay is the WAL relay as the commands and /metrics read it: nil
// (never a nil pointer inside the interface) without a walsender or an
// archive.
func newWALRelay(a walarchive.Archiver, sender *walsender.Server) commands.WALRelay {
	m, ok := a.(*walarchive.Manager)
	if !ok || sender == nil {
		return nil
	}
	return walRelay{sender: sender, archive: m}
}

// walRelay is the walsender's standbys and the archive's slots.
type walRelay struct {
	sender  *walsender.Server
	archive *walarchive.Manager
}

// Standbys implements commands.WALRelay.
func (r walRelay) Standbys() []walsender.Standby { return r.sender.Standbys() }

// Slots implements commands.WALRelay.
func (r walRelay) Slots() []walarchive.Slot { return r.archive.Slots() }
