package backup

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/storage"
)

// Format is the layout of a backup on disk.
type Format int

const (
	// Plain writes a data directory that a postmaster can start on (after
	// copying it where the server runs), like pg_basebackup -Fp.
	Plain Format = iota
	// Tar writes base.tar, OID.tar per tablespace and pg_wal.tar, optionally
	// compressed, like pg_basebackup -Ft.
	Tar
)

// String returns "plain" or "tar".
func (f Format) String() string {
	switch f {
	case Plain:
		return "plain"
	case Tar:
		return "tar"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Method is how the backup is taken from the server.
type Method int

const (
	// Replication uses the BASE_BACKUP replication command, as
	// pg_basebackup does. It needs a role with REPLICATION, a pg_hba.conf
	// replication line and a free WAL sender (two with WAL streaming).
	Replication Method = iota
	// SQL uses pg_backup_start, pg_ls_dir, pg_read_binary_file and
	// pg_backup_stop over a normal connection, for servers that allow no
	// replication connections.
	SQL
)

// String returns "replication" or "sql".
func (m Method) String() string {
	switch m {
	case Replication:
		return "replication"
	case SQL:
		return "sql"
	}
	return fmt.Sprintf("Method(%d)", int(m))
}

// Compression is the client-side compression of a tar backup's files.
type Compression int

const (
	// NoCompression writes plain .tar files.
	NoCompression Compression = iota
	// Gzip writes .tar.gz, levels 1-9.
	Gzip
	// LZ4 writes .tar.lz4, levels 1-12.
	LZ4
	// Zstd writes .tar.zst with libzstd, levels 1-22.
	Zstd
)

// compressions are the names of the algorithms, as BASE BACKUP's
// COMPRESSION and pg_basebackup spell them.
var compressions = []string{NoCompression: "none", Gzip: "gzip", LZ4: "lz4", Zstd: "zstd"}

// ParseCompression returns the algorithm named s ("none", "gzip", "lz4"
// or "zstd", in any case). An unknown name is SQLSTATE 22023.
func ParseCompression(s string) (Compression, error) {
	return parseName[Compression](compressions, s, "unrecognized compression algorithm %s")
}

// String returns "none", "gzip", "lz4" or "zstd".
func (c Compression) String() string { return nameOf(compressions, int(c), "Compression") }

// maxLevel is the highest compression level c accepts, 0 for none.
func (c Compression) maxLevel() int {
	return [...]int{NoCompression: 0, Gzip: 9, LZ4: 12, Zstd: 22}[c]
}

// suffix is what pg_basebackup appends to a file name compressed with c.
func (c Compression) suffix() string {
	return [...]string{NoCompression: "", Gzip: ".gz", LZ4: ".lz4", Zstd: ".zst"}[c]
}

// checkCompression validates an algorithm and level of o.
func checkCompression(o Options) error {
	c := o.Compression
	if c < NoCompression || c > Zstd {
		return invalid("invalid compression algorithm %d", int(c))
	}
	if c != NoCompression && o.Format != Tar {
		return withHint(invalid("compression is only supported with the tar format"), "Add FORMAT tar, or leave out COMPRESSION.")
	}
	if o.Level != 0 && (o.Level < 1 || o.Level > c.maxLevel()) {
		if c.maxLevel() == 0 {
			return invalid("compression algorithm %s does not accept a compression level", quote(c.String()))
		}
		return invalid("compression level %d is outside the range 1..%d of %s", o.Level, c.maxLevel(), c)
	}
	return nil
}

// WAL is how a backup gets the write-ahead log it needs to be consistent.
type WAL int

const (
	// WALStream streams the WAL on a second connection while the backup
	// runs, into pg_wal/ or pg_wal.tar (pg_basebackup -X stream).
	WALStream WAL = iota
	// WALFetch has the server add the WAL to base.tar at the end
	// (pg_basebackup -X fetch).
	WALFetch
	// WALNone leaves the WAL out: the backup needs a WAL archive to be
	// restored.
	WALNone
)

// wals are the names of the WAL methods, as BASE BACKUP's WAL option
// spells them.
var wals = []string{WALStream: "stream", WALFetch: "fetch", WALNone: "none"}

// ParseWAL returns the WAL method named s ("stream", "fetch" or "none",
// in any case). An unknown name is SQLSTATE 22023.
func ParseWAL(s string) (WAL, error) {
	return parseName[WAL](wals, s, "invalid WAL method %s (stream, fetch or none)")
}

// String returns "stream", "fetch" or "none".
func (w WAL) String() string { return nameOf(wals, int(w), "WAL") }

// Checkpoint is how the server makes the checkpoint a backup starts from.
type Checkpoint int

const (
	// SpreadCheckpoint spreads the checkpoint's writes over
	// checkpoint_completion_target, as PostgreSQL's default does: the
	// backup waits, the server's load does not jump.
	SpreadCheckpoint Checkpoint = iota
	// FastCheckpoint writes everything at once, so that the backup starts
	// without waiting.
	FastCheckpoint
)

// checkpoints are the names of the checkpoint modes, as BASE BACKUP's
// CHECKPOINT option spells them.
var checkpoints = []string{SpreadCheckpoint: "spread", FastCheckpoint: "fast"}

// ParseCheckpoint returns the checkpoint mode named s ("spread" or
// "fast", in any case). An unknown name is SQLSTATE 22023.
func ParseCheckpoint(s string) (Checkpoint, error) {
	return parseName[Checkpoint](checkpoints, s, "invalid checkpoint argument %s (fast or spread)")
}

// String returns "spread" or "fast".
func (c Checkpoint) String() string { return nameOf(checkpoints, int(c), "Checkpoint") }

// parseName returns the value whose name in names is s, compared
// case-insensitively, or the 22023 error unknown (a format for s, quoted).
func parseName[T ~int](names []string, s, unknown string) (T, error) {
	for i, n := range names {
		if strings.EqualFold(n, s) {
			return T(i), nil
		}
	}
	return 0, invalid(unknown, quote(s))
}

// nameOf returns names[i], or typ(i) for a value that has no name.
func nameOf(names []string, i int, typ string) string {
	if i < 0 || i >= len(names) {
		return fmt.Sprintf("%s(%d)", typ, i)
	}
	return names[i]
}

// Options configure Run. The zero value of each field is its default,
// except Connect and Root, which are required.
type Options struct {
	// Root is the configured backup root, an absolute path. Empty means
	// base backups are disabled.
	Root string
	// Target is the user's path for the backup directory, relative to Root;
	// an absolute path must still lie inside Root. With Store, it is the
	// path below the store's prefix (storage.ParseURL's).
	Target string
	// Store, when set, has the backup written to object storage below
	// Target, as streaming multipart uploads: tar format only, Root
	// unused.
	Store *storage.Store
	// Format is Plain (default) or Tar.
	Format Format
	// Compression is NoCompression (default), Gzip, LZ4 or Zstd: client-side
	// compression of each tar file (tar format only).
	Compression Compression
	// Level is the compression level, 0 for the algorithm's default
	// (gzip 1-9, lz4 1-12, zstd 1-22).
	Level int
	// WAL is WALStream (default), WALFetch or WALNone.
	WAL WAL
	// Checkpoint is SpreadCheckpoint (default, as in PostgreSQL) or
	// FastCheckpoint.
	Checkpoint Checkpoint
	// Manifest asks for a backup_manifest.
	Manifest bool
	// ManifestChecksums is the manifest's checksum algorithm: "CRC32C"
	// (default), "NONE", "SHA224", "SHA256", "SHA384" or "SHA512".
	ManifestChecksums string
	// MaxRate limits the transfer rate in bytes per second, 0 for no
	// limit; otherwise at least 32 kB/s and at most 1 GB/s (the limits of
	// BASE_BACKUP's MAX_RATE).
	MaxRate int64
	// Label is the backup label, "pgverbs" when empty.
	Label string
	// VerifyChecksums has the server verify data page checksums while
	// sending them (replication method only).
	VerifyChecksums bool
	// Method is Replication (default) or SQL.
	Method Method
	// TablespaceMap relocates tablespaces of a plain backup, as
	// pg_basebackup's --tablespace-mapping: a tablespace whose location on
	// the server is a key (an absolute path) is written to the value, a
	// directory below Root given like Target (it must not exist or be
	// empty, and must not overlap the target), and pg_tblspc/OID links to
	// it by its absolute path. A key that is no tablespace's location is
	// an error. Unmapped tablespaces go to the target's tablespaces/OID.
	TablespaceMap map[string]string
	// Standby, when set, makes a plain backup a standby's data directory
	// (pg_basebackup -R).
	Standby *Standby
	// Connect opens a connection to the server; replication asks for a
	// replication=database connection. Run closes every connection it
	// opens.
	Connect func(ctx context.Context, replication bool) (*pgconn.PgConn, error)
	// Progress, when set, is called about once a second from another
	// goroutine, and once with Phase "done" before Run returns success.
	Progress func(p Progress)
}

// Progress reports how a running backup is doing.
type Progress struct {
	// Phase is "checkpoint" (waiting for the server's start checkpoint),
	// "copying", "manifest", "wal" (waiting for the last WAL) or "done".
	Phase string
	// Bytes is the amount of backup data received so far (without WAL).
	Bytes int64
	// Total is the server's estimate of the data size, 0 when unknown.
	Total int64
	// Rate is the average transfer rate since copying began, in bytes per
	// second.
	Rate int64
}

// LSN is a PostgreSQL write-ahead log position.
type LSN uint64

// String formats the LSN as PostgreSQL does: "16/B374D848".
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// parseLSN parses PostgreSQL's "X/X" notation.
func parseLSN(s string) (LSN, error) {
	var hi, lo uint32
	if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
		return 0, protocolError("invalid LSN %q", s)
	}
	return LSN(uint64(hi)<<32 | uint64(lo)), nil
}

// Result describes a finished backup.
type Result struct {
	// Path is the absolute path of the backup directory.
	Path string
	// Format and Method are those the backup was taken with.
	Format Format
	Method Method
	// Bytes is the amount of data received from the server: archive or
	// file contents, the manifest (replication method) and WAL.
	Bytes int64
	// Files counts the regular files of the backup's data directory,
	// inside the archives for tar format, WAL segments included and
	// backup_manifest not.
	Files int
	// StartLSN and EndLSN delimit the WAL the backup needs, on Timeline.
	StartLSN LSN
	EndLSN   LSN
	Timeline uint32
	// Duration is how long Run took.
	Duration time.Duration
	// Manifest reports whether a backup_manifest was written.
	Manifest bool
	// Warnings holds the server's warnings and notices (replication
	// method) and Run's own, e.g. for a WAL slot that could not be made.
	Warnings []string
}

// settings are the validated, defaulted options.
type settings struct {
	Options
	checksums string            // manifest algorithm, upper case
	maxRateKB int               // MAX_RATE in kB/s for BASE_BACKUP, 0 none
	spcMap    map[string]string // TablespaceMap with cleaned keys
}

func invalid(format string, args ...any) error {
	return pgerr.New(pgerr.InvalidParameterValue, format, args...)
}

// validate checks the options and fills in defaults.
func validate(o Options) (*settings, error) {
	s := &settings{Options: o}
	if o.Connect == nil {
		return nil, pgerr.New(pgerr.InternalError, "backup: Options.Connect is required")
	}
	switch o.Format {
	case Plain, Tar:
	default:
		return nil, invalid("invalid backup format %d", int(o.Format))
	}
	switch o.Method {
	case Replication, SQL:
	default:
		return nil, invalid("invalid backup method %d", int(o.Method))
	}
	if err := checkCompression(o); err != nil {
		return nil, err
	}
	if o.WAL < WALStream || o.WAL > WALNone {
		return nil, invalid("invalid WAL method %d", int(o.WAL))
	}
	if o.Checkpoint < SpreadCheckpoint || o.Checkpoint > FastCheckpoint {
		return nil, invalid("invalid checkpoint mode %d", int(o.Checkpoint))
	}
	s.checksums = strings.ToUpper(o.ManifestChecksums)
	switch s.checksums {
	case "":
		s.checksums = "CRC32C"
	case "NONE", "CRC32C", "SHA224", "SHA256", "SHA384", "SHA512":
	default:
		return nil, invalid("unrecognized manifest checksum algorithm %s", quote(o.ManifestChecksums))
	}
	const minRate, maxRate = 32 * 1024, 1024 * 1024 * 1024
	if o.MaxRate != 0 {
		if o.MaxRate < minRate || o.MaxRate > maxRate {
			return nil, invalid("transfer rate %d bytes/s is outside the range 32 kB/s..1 GB/s", o.MaxRate)
		}
		s.maxRateKB = int((o.MaxRate + 1023) / 1024)
	}
	if len(o.TablespaceMap) > 0 && o.Format != Plain {
		return nil, withHint(invalid("TABLESPACE_MAP is only supported with the plain format"),
			"A tar backup keeps the original locations in tablespace_map; map them when you restore.")
	}
	if o.Standby != nil && o.Format != Plain {
		return nil, withHint(pgerr.New(pgerr.FeatureNotSupported, "STANDBY is only supported with the plain format"),
			"A standby starts on a data directory; take the backup with FORMAT plain.")
	}
	s.spcMap = map[string]string{}
	for old, dir := range o.TablespaceMap {
		clean := filepath.Clean(old)
		if !filepath.IsAbs(old) {
			return nil, invalid("old directory %s of a tablespace mapping is not an absolute path", quote(old))
		}
		if dir == "" {
			return nil, invalid("new directory for tablespace %s is empty", quote(old))
		}
		if _, dup := s.spcMap[clean]; dup {
			return nil, invalid("multiple tablespace mappings for %s", quote(old))
		}
		s.spcMap[clean] = dir
	}
	if s.Label == "" {
		s.Label = "pgverbs"
	}
	if strings.ContainsRune(s.Label, 0) {
		return nil, invalid("backup label must not contain NUL characters")
	}
	if len(s.Label) > 1023 {
		return nil, invalid("backup label too long (max 1023 bytes)")
	}
	return s, nil
}

func withDetail(err error, detail string) error {
	if pe, ok := err.(*pgerr.Error); ok {
		pe.Detail = detail
	}
	return err
}

func withHint(err error, hint string) error {
	if pe, ok := err.(*pgerr.Error); ok {
		pe.Hint = hint
	}
	return err
}
