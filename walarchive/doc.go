// Package walarchive is the on-disk half of pgverbs's WAL archive (issue
// 13): the names of WAL files and the writer of segment files. It has no
// database access and knows nothing of the proxy; the receiving side
// (START_REPLICATION, status updates, timeline switches) builds on it.
//
// # File names
//
// A segment is named as PostgreSQL names it: timeline, then the segment
// number split in two halves, 24 upper-case hex digits (SegmentName).
// ParseName accepts exactly the names the archive may hold, a complete
// segment, a segment's NAME.partial and a timeline's XXXXXXXX.history,
// and refuses everything else (lower-case hex, which PostgreSQL never
// writes and its IsXLogFileName refuses too; timeline 0; other suffixes;
// anything with a separator), so that a name taken from a request can be
// opened in the archive directory without further checks.
//
// # Writing a segment
//
// The writer follows pg_receivewal's discipline, with the position it
// reports kept honest:
//
//  1. Open creates NAME.partial preallocated to the segment size (a full
//     disk fails here, with ENOSPC, and not in the middle of WAL), then
//     fsyncs the file and the directory, so that a later fdatasync of the
//     file's data is enough for the data to survive a crash.
//  2. Write puts WAL bytes at their offset in the segment; they must
//     continue where the previous write ended.
//  3. Sync is one fdatasync; only then does Durable move. This is the
//     position the archive may report upstream as flushed.
//  4. Complete fdatasyncs, renames NAME.partial to NAME and fsyncs the
//     directory. A segment that stays partial (the end of a timeline)
//     is just closed.
//
// Nothing here truncates or deletes WAL. An error from Write or Sync
// takes the written position back to the durable one: what was written
// since is suspect (on Linux a failed fdatasync may already have dropped
// the dirty pages, and a second fdatasync would report success for data
// that is not on disk), so the caller writes it again from Durable.
//
// Opening a segment whose NAME.partial exists resumes it from a durable
// position the caller passes; opening one whose NAME exists compares
// every write with the bytes already there and refuses a difference
// (ErrDiffers): a complete segment is never overwritten.
//
// # Serving standbys and changing the source
//
// Package walsender reads the archive while it is written (feed.go):
// Position is the durable end and a channel closed when it or the
// timeline moves, and nothing beyond it is ever served. The archive's own
// replication slots (slots.go) live in SlotsFile beside StateFile;
// retention keeps what their restart_lsn needs. SET SOURCE and FAILOVER
// (source.go) change the upstream: the new source's history file is
// archived first, WAL beyond its switch point is renamed NAME.diverged...
// (a name ParseName refuses, so it is never served or counted), and the
// receiver resumes at the start of the segment holding the switch point,
// crossing to the new timeline as at any timeline switch. A slot's
// position on another source vouches for nothing the archive holds, so
// the resume floor applies only to the source the archive last streamed
// from.
//
// # Object storage
//
// START WAL ARCHIVE TO 'storage://target/path' (upload.go) archives into
// a local staging directory, <backup root>/.pgverbs-wal/target/path, with
// every promise above unchanged: what is acknowledged upstream is
// fsynced there first. An uploader goroutine then copies each completed
// segment and history file to the object path/NAME (path/NAME.zst with
// COMPRESSION zstd, uploaded once compressed; a .partial never), in
// order, stopping at the first failure and retrying with exponential
// backoff (1 s to 1 min). An upload is confirmed when the store accepted
// it with its CRC32C checksum. What is uploaded is not recorded locally:
// at start the uploader lists the prefix (objects appear whole, so a
// listed object is a confirmed upload and one a crash cut is absent and
// uploaded again); until that listing succeeds nothing counts as
// uploaded. RETENTION and MAX_SIZE apply to the staging directory only:
// they never remove a segment whose upload is not confirmed (Protect's
// NotUploaded, and the plan cut at the first such file), and the store
// keeps everything (expire it with the bucket's lifecycle rules). START
// writes StateFile's system identifier beside the uploaded WAL and
// refuses a prefix holding another system's. /wal/ serves a file from
// the store when the staging directory no longer has it.
package walarchive
