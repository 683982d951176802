//go:build !pgverbs_nocount

package stats

// Counting reports whether the relay counts its traffic. The build tag
// pgverbs_nocount turns it off, and with it every per-session counter
// write: the bench tool builds such a binary to measure what counting
// costs (internal/tools/bench). Server-wide events (connects, refusals,
// commands) are counted either way.
const Counting = true
