package conf

// DefaultRelayMode is the relay mode used unless configured: the event
// loop where the proxy has one (epoll).
const DefaultRelayMode = "loop"
