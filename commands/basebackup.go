package commands

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/backup"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/stats"
)

// ConnectFunc opens a connection of the proxy's own to the server, as user
// to database, with replication=database when replication is set.
type ConnectFunc func(ctx context.Context, user, database string, replication bool) (*pgconn.PgConn, error)

// BaseBackup is the BASE BACKUP TO command: a consistent, verified base
// backup of the backend cluster, written under the configured backup root.
type BaseBackup struct {
	root    string
	connect ConnectFunc
}

// NewBaseBackup returns BASE BACKUP writing under root ("" disables the
// command) over connections from connect.
func NewBaseBackup(root string, connect ConnectFunc) *BaseBackup {
	return &BaseBackup{root: root, connect: connect}
}

// Name implements Command.
func (*BaseBackup) Name() string { return "BASE BACKUP" }

// Keywords implements Command.
func (*BaseBackup) Keywords() []string { return []string{"BASE", "BACKUP"} }

// Parse implements Parser.
func (b *BaseBackup) Parse(sql string) (Prepared, error) {
	st, err := ParseBaseBackup(sql)
	if err != nil {
		return nil, err
	}
	opts, err := backupOptionsFrom(st)
	if err != nil {
		return nil, err
	}
	return &backupRun{cmd: b, opts: opts}, nil
}

// backupOptionsFrom turns the parsed options into backup.Options, with
// pg_basebackup's defaults.
func backupOptionsFrom(st *BaseBackupStmt) (backup.Options, error) {
	o := backup.Options{
		Target: st.Path, Format: backup.Plain, Compression: backup.NoCompression, Level: st.Level,
		WAL: backup.WALStream, Checkpoint: backup.FastCheckpoint, Manifest: true, ManifestChecksums: "CRC32C",
		Label: "pgverbs base backup", VerifyChecksums: true, Method: backup.Replication,
	}
	for k, v := range st.Options {
		var err error
		switch k {
		case "format":
			if v == "tar" {
				o.Format = backup.Tar
			}
		case "compression":
			o.Compression, err = backup.ParseCompression(v)
		case "wal":
			o.WAL, err = backup.ParseWAL(v)
		case "checkpoint":
			o.Checkpoint, err = backup.ParseCheckpoint(v)
		case "manifest":
			o.Manifest = isOn(v)
		case "manifest_checksums":
			o.ManifestChecksums = strings.ToUpper(v)
		case "max_rate":
			rate, err := parseRate(v)
			if err != nil {
				return o, err
			}
			o.MaxRate = rate
		case "label":
			o.Label = v
		case "verify_checksums":
			o.VerifyChecksums = isOn(v)
		case "method":
			if v == "sql" {
				o.Method = backup.SQL
			}
		}
		if err != nil {
			return o, err
		}
	}
	for _, m := range st.TablespaceMap {
		old, dir, err := splitMapping(m)
		if err != nil {
			return o, err
		}
		if o.TablespaceMap == nil {
			o.TablespaceMap = map[string]string{}
		}
		if _, dup := o.TablespaceMap[old]; dup {
			return o, pgerr.New(pgerr.InvalidParameterValue, "multiple tablespace mappings for %q", old)
		}
		o.TablespaceMap[old] = dir
	}
	if o.Compression != backup.NoCompression && o.Format != backup.Tar {
		e := pgerr.New(pgerr.InvalidParameterValue, "COMPRESSION %s needs FORMAT tar", o.Compression)
		e.Hint = "A plain backup is a data directory; compress tar backups."
		return o, e
	}
	return o, nil
}

// splitMapping splits a TABLESPACE_MAP value 'olddir=newdir' at the first
// '=' not escaped with a backslash; "\=" stands for '=' in either
// directory, as in pg_basebackup's --tablespace-mapping.
func splitMapping(v string) (old, dir string, err error) {
	var cur strings.Builder
	var parts []string
	for i := 0; i < len(v); i++ {
		switch {
		case v[i] == '\\' && i+1 < len(v) && v[i+1] == '=':
			cur.WriteByte('=')
			i++
		case v[i] == '=' && len(parts) == 0:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(v[i])
		}
	}
	parts = append(parts, cur.String())
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		e := pgerr.New(pgerr.InvalidParameterValue, "invalid TABLESPACE_MAP %q: want 'olddir=newdir'", v)
		e.Hint = "olddir is the tablespace's location on the server, newdir a directory below the backup root; write \\= for an = in a directory name."
		return "", "", e
	}
	return parts[0], parts[1], nil
}

func isOn(v string) bool { return v == "on" || v == "true" || v == "yes" }

// parseRate reads a MAX_RATE such as '32MB', '500kB' or '1048576' (bytes
// per second).
func parseRate(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, pgerr.New(pgerr.InvalidParameterValue, "invalid MAX_RATE %q: want a positive size such as '32MB'", v)
	}
	return n * mult, nil
}

type backupRun struct {
	cmd  *BaseBackup
	opts backup.Options
}

// Standalone implements Standalone: the backup runs on the proxy's own
// connections, never inside a transaction block.
func (*backupRun) Standalone() {}

// CommandName names the command in the engine's messages.
func (*backupRun) CommandName() string { return "BASE BACKUP" }

// Columns implements Prepared: the one row BASE BACKUP returns.
func (*backupRun) Columns() []Column {
	return []Column{
		{"path", pgwire.TextOID}, {"format", pgwire.TextOID}, {"bytes", pgwire.Int8OID}, {"files", pgwire.Int8OID},
		{"start_lsn", pgwire.PgLSNOID}, {"end_lsn", pgwire.PgLSNOID}, {"timeline", pgwire.Int4OID},
		{"seconds", pgwire.Float8OID}, {"manifest", pgwire.TextOID}, {"method", pgwire.TextOID},
	}
}

func (r *backupRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	if r.cmd.root == "" {
		e := pgerr.New(pgerr.ObjectNotInPrerequisiteState, "BASE BACKUP is disabled: no backup root is configured")
		e.Hint = "Start pgverbs with --backup-root DIR (config backup_root)."
		return nil, e
	}
	// The client's own role decides, checked on its own session.
	res, err := c.Exec(`SELECT rolsuper OR rolreplication FROM pg_catalog.pg_roles WHERE rolname = current_user`)
	if err != nil {
		return nil, err
	}
	if len(res.Rows) == 0 || string(res.Rows[0][0]) != "t" {
		e := pgerr.New(pgerr.InsufficientPrivilege, "permission denied to run BASE BACKUP")
		e.Detail = "Only roles with the REPLICATION attribute or superusers may take base backups."
		return nil, e
	}
	o := r.opts
	o.Root = r.cmd.root
	user, db := c.User(), c.Database()
	o.Connect = func(ctx context.Context, replication bool) (*pgconn.PgConn, error) {
		conn, err := r.cmd.connect(ctx, user, db, replication)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && strings.HasPrefix(pe.Code, "28") {
			// The client logged in fine; say whose login failed.
			e := pgerr.FromServer(pe)
			e.Message = "BASE BACKUP cannot log in to the server for its own connections: " + pe.Message
			e.Hint = "pgverbs opens its own connections for a backup, with the user and password of backup_conninfo (else of the backend URL, else the client's user name without a password). Set backup_conninfo to a role with REPLICATION and its password."
			return nil, e
		}
		return conn, err
	}
	o.Progress = func(p backup.Progress) {
		c.Notice("NOTICE", progressText(p), "")
	}
	out, err := backup.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	stats.BackupsFrom(ctx).Record(out.Bytes, out.Duration, time.Now())
	format := "plain"
	if out.Format == backup.Tar {
		format = "tar"
		if o.Compression != backup.NoCompression {
			format += "+" + o.Compression.String()
		}
	}
	manifest, method := "no", "replication"
	if out.Manifest {
		manifest = "yes"
	}
	if out.Method == backup.SQL {
		method = "sql"
	}
	row := []*string{
		strp(out.Path), strp(format), strp(strconv.FormatInt(out.Bytes, 10)), strp(strconv.Itoa(out.Files)),
		strp(out.StartLSN.String()), strp(out.EndLSN.String()), strp(strconv.Itoa(int(out.Timeline))),
		strp(strconv.FormatFloat(out.Duration.Seconds(), 'f', 3, 64)), strp(manifest), strp(method),
	}
	return &Outcome{Tag: "BASE BACKUP", Rows: [][]*string{row}}, nil
}

// progressText renders a progress report for a NOTICE.
func progressText(p backup.Progress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "BASE BACKUP %s: %s", p.Phase, humanBytes(p.Bytes))
	if p.Total > 0 {
		fmt.Fprintf(&b, " of %s (%d%%)", humanBytes(p.Total), min(100, p.Bytes*100/p.Total))
	}
	if p.Rate > 0 {
		fmt.Fprintf(&b, ", %s/s", humanBytes(p.Rate))
	}
	return b.String()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
