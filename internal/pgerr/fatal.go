package pgerr

// The FATAL errors the proxy sends a client itself, named after the
// situation. FATAL means the connection is closed after the message, with
// no ReadyForQuery; the texts are PostgreSQL's where it has one for the
// same situation, so that clients and people recognise them.

// TooManyClients is FATAL 53300, for a connection over max_client_conns:
// PostgreSQL's answer over max_connections.
func TooManyClients() *Error {
	return NewFatal(TooManyConnections, "sorry, too many clients already")
}

// BackendUnreachable is FATAL 08006, for a client whose server the proxy
// cannot connect to; why is the detail.
func BackendUnreachable(cause error) *Error {
	return NewFatal(ConnectionFailure, "could not connect to the database server").
		WithDetail("%v", cause).WithCause(cause)
}

// BackendLost is FATAL 08006, for a session whose server connection ended
// without a FATAL of its own, in libpq's words for the same event. cause,
// which may be nil, is kept for the log, not sent.
func BackendLost(cause error) *Error {
	return NewFatal(ConnectionFailure, "server closed the connection unexpectedly").
		WithDetail("This probably means the server terminated abnormally before or while processing the request.").
		WithCause(cause)
}

// Shutdown is FATAL 57P01, for sessions ended by the proxy's shutdown:
// PostgreSQL's answer to a fast shutdown or pg_terminate_backend.
func Shutdown() *Error {
	return NewFatal(AdminShutdown, "terminating connection due to administrator command")
}

// ChannelBindingImpossible is FATAL 28000, for a client that asks for SCRAM
// channel binding through the proxy, which cannot carry it: the client's
// TLS session ends at the proxy, the server's binding is to another one.
func ChannelBindingImpossible() *Error {
	return NewFatal(InvalidAuthorizationSpecification, "SCRAM channel binding cannot pass through pgverbs").
		WithDetail("The client connected to pgverbs with TLS and supports channel binding, and the server offers it " +
			"on pgverbs's own TLS connection; the two TLS sessions differ, so the binding cannot match.").
		WithHint("Connect with channel_binding=disable, or connect pgverbs to the server without TLS (sslmode=disable in the backend URL).")
}

// Protocol is FATAL 08P01, for a client or server message the proxy cannot
// frame or make sense of.
func Protocol(message string) *Error {
	return NewFatal(ProtocolViolation, "%s", message)
}
