// Package proxy is pgverbs's client-facing side: the listener, one session
// per client connection, the startup/TLS/authentication relay, cancel
// requests, the relay (event loops or goroutines) and graceful shutdown.
//
// # Connection lifecycle
//
// Each accepted connection is a session that goes through these phases, in
// order, each in session.go or relay.go:
//
//  1. Accept. Server.Serve accepts and starts session.serve in its own
//     goroutine. A deadline of auth_timeout covers phases 2 to 4.
//  2. Negotiate. session.negotiate reads startup-phase packets (at most
//     10000 bytes each, PostgreSQL's cap): SSLRequest is answered 'S' and TLS
//     terminated with the configured certificate (plaintext bytes already
//     buffered then are refused), or 'N'; GSSENCRequest is answered 'N'; a
//     TLS ClientHello as first byte is PostgreSQL 17 direct TLS. The loop
//     ends at a StartupMessage or a CancelRequest. A CancelRequest is looked
//     up by the proxy's key, forwarded to the backend on a fresh connection
//     (or to the peer instance holding the session, see Cancellation),
//     and the connection closed without answer, as PostgreSQL does.
//  3. Connect. Over max_client_conns the client gets FATAL 53300. Otherwise
//     the backend is dialled (TLS per the backend's sslmode) and the client's
//     startup packet forwarded byte for byte, so the server negotiates the
//     protocol version and _pq_ options itself; a dial failure is FATAL 08006.
//  4. Authenticate. session.relayAuth relays the server's authentication
//     requests and the client's answers unchanged, except that
//     SCRAM-SHA-256-PLUS is removed from the SASL mechanisms (the client
//     would bind to the proxy's certificate, which the server cannot check).
//     BackendKeyData is replaced: same process id, a secret of the proxy's
//     own (32 bytes under protocol 3.2), mapped to the server's key. The phase
//     ends at the first ReadyForQuery; a FATAL from the server is relayed and
//     ends the session.
//  5. Relay. Framed messages are copied in each direction without being
//     decoded: the 5-byte header is read in place and the raw bytes written
//     on, so pipelined traffic is batched into one read and one write each
//     way. Only Query and Parse messages from the client are looked at, by
//     the commands registry's cheap keyword check. Replication connections
//     are relayed the same way, CopyBoth included, and never inspected.
//     relay_mode chooses who does it. "loop" (the default on Linux): a
//     plaintext session (TCP or Unix socket, no TLS on either side) moves
//     to one of GOMAXPROCS event loops (loop_linux.go), each a goroutine
//     with an epoll set, edge-triggered, of the raw fds of all its
//     sessions (the set's own fd waits in the runtime's poller, so a loop
//     parks like any goroutine); each direction is a flow (flow.go) whose
//     buffer comes from a pool when bytes arrive and goes back once they
//     are written, so an idle session holds no buffer and no goroutine.
//     While the destination cannot take more, the source is not read.
//     "goroutines", TLS sessions and non-Linux builds: two goroutines per
//     session with bufio buffers (relay.go); the writer is flushed only
//     when the reader has nothing buffered.
//  6. Terminate. The session ends when either side goes away. When the
//     backend closes without a FATAL of its own, the client gets FATAL 08006
//     rather than a silent close. See relayLoops (goroutines) and
//     loopSession.finish (loops) for how each side stops the other.
//
// # Who owns which socket
//
// Phases 1 to 4 run on the session's goroutine, which owns both sockets,
// read through small (2 KiB) bufio readers when the loops will take over.
// toLoop then duplicates both descriptors, hands what the readers had read
// ahead to the flows, closes the net.Conns and posts the session to its
// loop; the session's goroutine ends. From then on the loop alone touches
// the session's fds, flows and ledger, with no lock, except while a
// command runs: when frameUp meets a message the engine claims (engine.go),
// the loop detaches the session and runs the engine's step on a goroutine
// of its own, which owns everything (blocking I/O on the same fds through
// poll(2), port_fds_linux.go) until it posts the session back; the loop
// ignores the session's events meanwhile. A kill (shutdown) is posted to
// the loop, which ends the session at the next message boundary from the
// backend, or, when detached, cancels the step and shuts the backend
// socket's read side so that the step returns.
//
// In the goroutine relay the client goroutine owns the client reader and
// the backend writer, the backend goroutine the backend reader and the
// client writer. When the client goroutine meets a command it asks the
// engine to run it: the engine acquires the backend through the handoff
// (handoff.go), waiting until every reply owed to the client has been
// forwarded; from then until release the backend goroutine only reads
// whole backend messages and queues them for the engine, which alone
// writes to the client (port_goroutines.go).
//
// Either way the engine sees the session only through its port.
//
// # Counting
//
// What operators see (stats.go, package stats) is counted by whoever
// relays: the loop when it frames a read's messages, each relay goroutine
// in plain fields published at its flush points, the engine around each
// command; all into atomics the session owns, once per read, never per
// message. Server.Clients and Server.Totals read them at scrape time; a
// session's counters are folded into the totals as it ends.
//
// # Shutdown
//
// Server.Shutdown stops accepting and waits for sessions to end by
// themselves (PostgreSQL's smart shutdown) until its context expires; the
// rest, like all sessions on Server.Close, are told FATAL 57P01 at their next
// message boundary and closed.
//
// # Cancellation
//
// The client's cancel key is (backend process id, proxy secret). Keeping
// the process id means pg_backend_pid() and the sender of a notification
// match what the client was told. With peering (peer_id and peers, for
// several instances behind one address; cancel.go), a key this instance
// does not hold is forwarded once to the instance that does: under
// protocol 3.2 the secret's first two bytes name it, under 3.0 the
// 4-byte secret stays wholly random and the request goes to every peer.
// A forwarded request carries forwardedCancelCode instead of
// PostgreSQL's CancelRequest code and is never forwarded again.
package proxy
