// Package storage is pgverbs's one way into S3-compatible object storage:
// the named targets of the configuration's storage map (Store), the
// storage://target/path URLs SQL names them by (ParseURL), and what base
// backups, the WAL archive, VERIFY BACKUP and backup-get need of a store:
// streaming multipart uploads (Writer), small objects written whole,
// streaming reads, listings, prefix deletion and the cleanup of multipart
// uploads a killed process left behind (AbortUploads).
//
// Signing, retries with backoff, checksums and the multipart protocol are
// the AWS SDK for Go v2's (service/s3 and feature/s3/transfermanager):
// nothing here re-implements them. What this package adds is the shape
// pgverbs needs: a key space below the target's prefix that a URL cannot
// leave, errors that are PostgreSQL errors with SQLSTATEs a client can act
// on (credentials refused, bucket missing, store unreachable, a part
// rejected for a bad checksum), and uploads that are either complete or
// aborted, never left open, when the writer fails or is cancelled.
//
// Every upload carries a CRC32C checksum per part (per object for whole
// puts) that the server verifies; a corrupted part is refused by the store
// and the upload fails rather than storing wrong bytes.
package storage
