// Package walstream is the client side of PostgreSQL's streaming
// replication protocol, shared by BASE BACKUP's WAL streamer (package
// backup) and the WAL archive (package walarchive): the replication
// commands (IDENTIFY_SYSTEM, TIMELINE_HISTORY, SHOW, READ_REPLICATION_SLOT,
// CREATE/DROP_REPLICATION_SLOT, START_REPLICATION with the end-of-timeline
// handshake) and the messages of a running stream (XLogData, keepalives,
// standby status updates).
//
// A Conn takes over a pgconn connection right after its startup
// (pgconn.Hijack) and does its own framing from then on, for two reasons:
// a receiver must know whether more messages are already buffered
// (Buffered), so that it fsyncs once per batch and not once per message;
// and the status messages must say exactly what was written and flushed,
// which pglogrepl's helpers do not (they replace an invalid flush position
// with the write position, see ../shared/PROTOCOL.md).
//
// Errors the server sends are *pgconn.PgError; a lost or closed connection
// is the net error. The caller decides what a client of pgverbs sees.
package walstream
