// Package backup takes base backups of a PostgreSQL server into a directory
// on the proxy's host: everything `BASE BACKUP TO 'dir' [WITH (...)]` needs,
// independent of the proxy. Run is the entry point; the caller supplies a
// Connect function, so credentials and TLS stay the caller's business.
//
// # Where backups go
//
// Every backup lands in a new (or empty) directory below a configured root.
// ResolveTarget turns the user's path into that directory: relative paths
// are taken below the root, absolute ones must lie inside it, ".."
// escapes and symbolic links that lead out of the root are refused, and so
// is an existing directory that is not empty. Errors quote only what the
// user typed, never the root or what a link points to. Run creates the
// missing directories (0700, files 0600) through an os.Root, so a symbolic
// link swapped in while the backup runs cannot redirect writes either. Two
// Runs for the same directory exclude each other: in this process through a
// lock map keyed by the resolved path, across processes through the marker
// file .pgverbs-backup-in-progress (created O_EXCL, removed at the end).
//
// On any error, and when ctx is canceled (SQLSTATE 57014), Run closes its
// server connections, which ends the backup on the server and drops the
// temporary replication slot, and removes what it created: the target
// directory and the parents it made, or only the contents when the target
// existed (empty) beforehand.
//
// # Replication method (the default)
//
// The way pg_basebackup works: BASE_BACKUP on a replication=database
// connection. PostgreSQL 15 and later send one CopyOut stream carrying
// every archive ('n' new archive, 'd' data, 'p' progress, 'm' manifest);
// 13 and 14 send one CopyOut per tablespace and one for the manifest, which
// Run also reads (not exercised by the tests, which run on 15). Servers
// before 13 are refused (no backup manifests).
//
// Plain format unpacks each archive as it arrives, with no temporary tar on
// disk (see Unpack): base.tar into the target, the archive of tablespace
// OID into tablespaces/OID, with pg_tblspc/OID a relative symbolic link to
// ../tablespaces/OID, so that the backup can be moved or copied as a whole.
// Like pg_basebackup -Fp, plain format does not ask for a tablespace_map
// (the links are written directly). Note that pg_verifybackup walks both
// the link and tablespaces/, so a plain backup of a cluster with
// tablespaces needs `pg_verifybackup -i tablespaces`. Options.TablespaceMap
// (TABLESPACE_MAP, like pg_basebackup -T) writes a tablespace to a
// directory of its own below the root instead, linked by absolute path;
// such a backup verifies without -i.
//
// Tar format writes base.tar, OID.tar per tablespace and, with WAL
// streaming, pg_wal.tar, each optionally compressed on the client (gzip:
// .tar.gz, lz4: .tar.lz4, zstd: .tar.zst), plus backup_manifest beside
// them. The archives end with the two zero blocks pg_basebackup adds;
// base.tar carries a tablespace_map with the original locations, as with
// pg_basebackup -Ft. Unlike pg_basebackup 15, pg_wal.tar is compressed with
// the same algorithm as the other archives.
//
// WAL "stream" (the default) opens a second replication connection before
// BASE_BACKUP, creates a TEMPORARY PHYSICAL slot with RESERVE_WAL, and
// streams from the start of the segment holding the backup's start LSN
// until past its end LSN, writing full-size segments named by timeline and
// LSN (the last one padded with zeros) to pg_wal/ (plain, with .done marks
// in pg_wal/archive_status) or pg_wal.tar. "fetch" asks the server to put
// the WAL into base.tar (WAL option of BASE_BACKUP); "none" leaves it out,
// and the backup is only restorable with a WAL archive. With stream or
// fetch, BASE_BACKUP is sent WAIT false (the backup does not wait for WAL
// archiving), as pg_basebackup does. The streaming connection is a
// walstream.Conn, the replication client the WAL archive uses too, and
// like pg_basebackup's it reports the WAL it wrote but none as flushed, so
// that a primary never counts a backup as a synchronous standby.
//
// # SQL method
//
// The 2010 approach, for servers that refuse replication connections: on a
// normal connection, a temporary physical slot (so that checkpoints cannot
// remove WAL the backup needs; skipped with a warning when no slot is
// free), pg_backup_start (pg_start_backup before 15), a walk of the data
// directory with pg_ls_dir and pg_stat_file applying the server's own
// exclusion list (temporary files and relations, unlogged relations but
// their init forks, the contents of pg_wal, pg_replslot, pg_stat_tmp and
// the like, postmaster.pid, ...), file contents read in 1 MB chunks with
// pg_read_binary_file, global/pg_control last and re-read until its CRC is
// valid, pg_backup_stop, backup_label written byte for byte, and the WAL
// segments from start to stop read from pg_wal/. WAL "stream" and "fetch"
// both mean "include the WAL" here. Run writes the backup manifest itself
// (version 1, as PostgreSQL does, any of its checksum algorithms), so
// pg_verifybackup can check SQL backups too. It needs a superuser or the
// corresponding EXECUTE grants. Not supported with this method: checksum
// verification of data pages (VerifyChecksums is ignored), server
// warnings in Result.Warnings, and symbolic links other than tablespaces
// (a linked file is copied as a file).
//
// # Progress
//
// Options.Progress is called from a separate goroutine about once a
// second, and once more with Phase "done" at the end of a successful Run.
package backup
