//go:build pgverbs_nocount

package stats

// Counting is off in this build; see count.go.
const Counting = false
