package commands

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgverbs/pgverbs/backup"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/stats"
	"github.com/pgverbs/pgverbs/storage"
)

// ConnectFunc opens a connection of the proxy's own to the server, as user
// to database, with replication=database when replication is set.
type ConnectFunc func(ctx context.Context, user, database string, replication bool) (*pgconn.PgConn, error)

// BaseBackup is the BASE BACKUP TO command: a consistent, verified base
// backup of the backend cluster, written under the configured backup root.
type BaseBackup struct {
	root    string
	connect ConnectFunc
	standby StandbySource
	stores  *storage.Stores
}

// StandbySource is what BASE BACKUP ... WITH (STANDBY on) writes into a
// standby's settings about pgverbs itself: where the standby streams
// from, and where its restore_command fetches WAL.
type StandbySource struct {
	// Listen is pgverbs's client address (listen), host:port.
	Listen string
	// HTTPListen is the HTTP listener serving /wal/ (http_listen), ""
	// when there is none; HTTPS when it serves TLS.
	HTTPListen string
	HTTPS      bool
	// TokenFile is http_token_file; InlineToken reports an http_token
	// given inline, which a restore_command cannot name without writing
	// the secret into the backup.
	TokenFile   string
	InlineToken bool
	// Executable is the path of the pgverbs binary, for wal-get.
	Executable string
}

// NewBaseBackup returns BASE BACKUP writing under root ("" disables the
// command) over connections from connect; standby describes pgverbs for
// STANDBY on.
func NewBaseBackup(root string, connect ConnectFunc, standby StandbySource) *BaseBackup {
	return &BaseBackup{root: root, connect: connect, standby: standby}
}

// WithStorage lets BASE BACKUP write to the object-storage targets of
// stores, named 'storage://target/path'.
func (b *BaseBackup) WithStorage(stores *storage.Stores) *BaseBackup {
	b.stores = stores
	return b
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
	r := &backupRun{cmd: b, opts: opts}
	if storage.IsURL(st.Path) {
		// The target is checked now, so that a mistyped name or a path
		// escape never reaches the permission check or the server.
		if r.opts.Store, r.opts.Target, err = b.stores.Resolve(st.Path); err != nil {
			return nil, err
		}
	}
	if isOn(st.Options["standby"]) {
		if r.standby, err = b.standby.plan(st); err != nil {
			return nil, err
		}
	} else if _, ok := st.Options["standby_host"]; ok {
		e := pgerr.New(pgerr.InvalidParameterValue, "STANDBY_HOST needs STANDBY on")
		e.Hint = "Add STANDBY on, or leave out STANDBY_HOST."
		return nil, e
	}
	return r, nil
}

// standbyPlan is what a STANDBY backup writes, except the role, which is
// the client's and known only when the command runs.
type standbyPlan struct {
	host, port, appName string
	restoreCommand      string
	notice              string // why there is no restore_command, if there is none
}

// plan decides the standby settings for st, a STANDBY on backup. A
// wildcard listen address says nothing of how a standby can reach
// pgverbs, so STANDBY_HOST must then name it (22023 without it).
func (s StandbySource) plan(st *BaseBackupStmt) (*standbyPlan, error) {
	host, port, err := net.SplitHostPort(s.Listen)
	if err != nil {
		return nil, pgerr.New(pgerr.InternalError, "BASE BACKUP: invalid listen address %q: %v", s.Listen, err)
	}
	if h, ok := st.Options["standby_host"]; ok {
		if h == "" {
			return nil, pgerr.New(pgerr.InvalidParameterValue, "STANDBY_HOST must not be empty")
		}
		host = h
	} else if wildcard(host) {
		e := pgerr.New(pgerr.InvalidParameterValue, "STANDBY on needs STANDBY_HOST: pgverbs listens on all addresses (%s)", s.Listen)
		e.Hint = "Add STANDBY_HOST 'host', the name or address by which the standby reaches pgverbs."
		return nil, e
	}
	// The directory's name identifies the standby: it becomes its
	// application_name, which names it in pg_stat_replication (later in
	// SHOW WAL STANDBYS) and synchronous_standby_names, where the
	// default "walreceiver" of every standby would tell none apart.
	p := &standbyPlan{host: host, port: port, appName: filepath.Base(filepath.Clean(st.Path))}
	switch {
	case s.HTTPListen == "":
		p.notice = "BASE BACKUP wrote no restore_command: pgverbs has no HTTP listener (http_listen) for pgverbs wal-get; the standby only streams."
	case s.InlineToken:
		p.notice = "BASE BACKUP wrote no restore_command: the HTTP token is given inline (http_token) and is not written into the backup; set http_token_file, or add a restore_command with pgverbs wal-get --token-file."
	default:
		hh, hp, err := net.SplitHostPort(s.HTTPListen)
		if err != nil {
			return nil, pgerr.New(pgerr.InternalError, "BASE BACKUP: invalid http_listen %q: %v", s.HTTPListen, err)
		}
		if wildcard(hh) {
			hh = host // the standby reaches pgverbs by host, so the HTTP listener too
		}
		scheme := "http"
		if s.HTTPS {
			scheme = "https"
		}
		cmd := []string{shellQuote(s.Executable), "wal-get", "--url", shellQuote(scheme + "://" + net.JoinHostPort(hh, hp))}
		if s.TokenFile != "" {
			cmd = append(cmd, "--token-file", shellQuote(s.TokenFile))
		}
		p.restoreCommand = strings.Join(append(cmd, "--partial", "%f", "%p"), " ")
	}
	return p, nil
}

func wildcard(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

// conninfo returns the primary_conninfo for role user.
func (p *standbyPlan) conninfo(user string) string {
	return "host=" + connQuote(p.host) + " port=" + connQuote(p.port) + " user=" + connQuote(user) + " application_name=" + connQuote(p.appName)
}

// connQuote quotes a libpq connection string value: ' and \ escaped
// with a backslash.
func connQuote(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return "'" + strings.ReplaceAll(v, "'", `\'`) + "'"
}

// shellQuote quotes a word for the shell that runs restore_command,
// leaving words of only safe characters as they are.
func shellQuote(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-:+@=") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
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
	if isOn(st.Options["standby"]) && o.Format != backup.Plain {
		e := pgerr.New(pgerr.FeatureNotSupported, "STANDBY on needs FORMAT plain")
		e.Hint = "A standby starts on a data directory; leave out FORMAT tar, or write standby.signal and primary_conninfo yourself when you restore."
		return o, e
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
	cmd     *BaseBackup
	opts    backup.Options
	standby *standbyPlan // nil without STANDBY on
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
	if r.cmd.root == "" && r.opts.Store == nil {
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
	if sp := r.standby; sp != nil {
		// The client's role: the one that may take backups may stream.
		o.Standby = &backup.Standby{PrimaryConninfo: sp.conninfo(user), RestoreCommand: sp.restoreCommand}
	}
	out, err := backup.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	stats.BackupsFrom(ctx).Record(out.Bytes, out.Duration, time.Now())
	if r.standby != nil && r.standby.notice != "" {
		c.Notice("NOTICE", r.standby.notice, "")
	}
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
