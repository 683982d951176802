// Package walsender is pgverbs's side of the streaming replication
// protocol as a server: while a WAL archive runs, physical replication
// connections (replication=true) that the proxy authenticated are handed
// here and served from the archive, so that any number of standbys cost
// the primary one walsender (the archive's).
//
// It answers IDENTIFY_SYSTEM, TIMELINE_HISTORY, SHOW wal_segment_size and
// data_directory_mode, READ/CREATE/DROP_REPLICATION_SLOT for physical
// slots (the archive's own, package walarchive keeps them) and
// START_REPLICATION, with PostgreSQL 15's result types, tags and error
// texts (walsender.c is the reference). Everything else (BASE_BACKUP,
// other SHOWs, logical slots, SQL) is passed to the upstream on the
// session's own connection, which stays open until streaming starts, or
// on a new one as the same role.
//
// Streaming sends only what the archive says is durable, at most 128 kB a
// message and cut at 8 kB page boundaries unless a message reaches the
// durable end, as the walsender does. When the archive moves to a new
// timeline (a failover) a standby streaming the old one is led across it
// with the end-of-timeline handshake: WAL up to the switch point,
// CopyDone, the next timeline's result set, so it carries on without a
// restart. A standby silent for wal_sender_timeout is dropped; half of it
// asks for a reply. Hot-standby feedback is aggregated (the oldest xmin
// and catalog_xmin) and handed to the archive to send upstream.
package walsender
