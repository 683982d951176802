package walsender

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"

	"github.com/pgverbs/pgverbs/walstream"
)

// historyEntry is one ancestor timeline of a history file: tli ended at
// end, where the next line's timeline (or the file's own) began.
type historyEntry struct {
	tli uint32
	end uint64
}

// parseHistory reads a timeline history file as PostgreSQL's
// readTimeLineHistory: "parentTLI<TAB>X/X<TAB>reason" lines, comments
// and blank lines skipped. Malformed lines end the list (PostgreSQL
// refuses the file; the archive received it from PostgreSQL).
func parseHistory(content []byte) []historyEntry {
	var out []historyEntry
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			break
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			break
		}
		end, err := walstream.ParseLSN(f[1])
		if err != nil {
			break
		}
		out = append(out, historyEntry{tli: uint32(tli), end: end})
	}
	return out
}

// switchPoint is tliSwitchPoint: where timeline tli ends in the history
// of timeline cur (given by cur's history file), and the timeline that
// follows it. ok is false when tli is not in that history.
func switchPoint(tli, cur uint32, history []historyEntry) (end uint64, next uint32, ok bool) {
	for i, e := range history {
		if e.tli != tli {
			continue
		}
		next = cur
		if i+1 < len(history) {
			next = history[i+1].tli
		}
		return e.end, next, true
	}
	return 0, 0, false
}

// timelineOf is tliOfPointInHistory: the timeline of cur's history that
// holds lsn.
func timelineOf(lsn uint64, cur uint32, history []historyEntry) uint32 {
	for _, e := range history {
		if lsn < e.end {
			return e.tli
		}
	}
	return cur
}
