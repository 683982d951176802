//go:build !linux

package conf

// DefaultRelayMode is the relay mode used unless configured: without
// epoll, the goroutine relay.
const DefaultRelayMode = "goroutines"
