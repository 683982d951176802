package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgverbs/pgverbs/backup"
	"github.com/pgverbs/pgverbs/conf"
	"github.com/pgverbs/pgverbs/storage"
)

// backupGetCommand is the subcommand main dispatches to runBackupGet,
// before the proxy's own configuration is read.
const backupGetCommand = "backup-get"

// Exit statuses of pgverbs backup-get (README: "Restoring a backup").
const (
	bgOK          = 0   // DATADIR holds the verified backup
	bgVerify      = 1   // a file or archive does not match the manifest or the summary
	bgUsage       = 2   // bad arguments, a DATADIR that is not empty, a bad configuration
	bgSource      = 3   // the source cannot be read or is not a complete backup
	bgWrite       = 4   // DATADIR cannot be written (permissions, a full disk)
	bgInterrupted = 130 // SIGINT or SIGTERM
)

const backupGetUsage = `Usage: pgverbs backup-get [--config FILE] [--restore-command URL] [--token-file FILE] [--quiet] SOURCE DATADIR

Downloads, decompresses and unpacks the base backup SOURCE into DATADIR,
which must not exist or be empty, verifying every file against the
backup's manifest as it goes (size and checksum; no file missing, none
extra). Tablespaces become directories in DATADIR/pg_tblspc/OID, the
backup's WAL goes to DATADIR/pg_wal and backup_manifest into DATADIR, so
that pg_verifybackup DATADIR checks the result. On any failure, an
interrupt included, what was written to DATADIR is removed.

SOURCE is a backup directory BASE BACKUP wrote (plain or tar, any
compression) or 'storage://target/path' (a target of the storage map of
the configuration file, which --config or $PGVERBS_CONFIG names).

  --config FILE           pgverbs's configuration file, for storage:// targets
  --restore-command URL   also write restore_command = 'pgverbs wal-get --url URL ...'
                          into postgresql.auto.conf and create recovery.signal
  --token-file FILE       the bearer token file restore_command passes to wal-get
  --quiet                 no progress on stderr

Exit status: 0 restored and verified; 1 verification failed; 2 usage or
configuration; 3 SOURCE unreadable or not a complete backup; 4 DATADIR
cannot be written; 130 interrupted.
`

// bgError is a failure with its exit status.
type bgError struct {
	code int
	err  error
}

func (e *bgError) Error() string { return e.err.Error() }
func (e *bgError) Unwrap() error { return e.err }

func bgFail(code int, format string, args ...any) error {
	return &bgError{code, fmt.Errorf(format, args...)}
}

// exitCode is err's exit status.
func exitCode(err error) int {
	var be *bgError
	if errors.As(err, &be) {
		return be.code
	}
	return bgWrite
}

// backupGetOptions are backup-get's arguments.
type backupGetOptions struct {
	source, datadir string
	config          string
	configGiven     bool
	restoreURL      string
	tokenFile       string
	self            string // the pgverbs binary, for restore_command
	getenv          func(string) string
	progress        *bgProgress
}

// runBackupGet is pgverbs backup-get.
func runBackupGet(args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet(backupGetCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := backupGetOptions{getenv: getenv}
	fs.StringVar(&o.config, "config", "", "")
	fs.StringVar(&o.restoreURL, "restore-command", "", "")
	fs.StringVar(&o.tokenFile, "token-file", "", "")
	quiet := fs.Bool("quiet", false, "")
	fs.Usage = func() { fmt.Fprint(stderr, backupGetUsage) }
	// Flags may come after the arguments too, as in most commands.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return bgOK
			}
			return bgUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	fs.Visit(func(f *flag.Flag) { o.configGiven = o.configGiven || f.Name == "config" })
	if len(pos) != 2 {
		fs.Usage()
		return bgUsage
	}
	o.source, o.datadir = pos[0], pos[1]
	if o.tokenFile != "" && o.restoreURL == "" {
		fmt.Fprintln(stderr, "pgverbs backup-get: --token-file is for --restore-command")
		return bgUsage
	}
	if o.restoreURL != "" && !strings.HasPrefix(o.restoreURL, "http://") && !strings.HasPrefix(o.restoreURL, "https://") {
		fmt.Fprintf(stderr, "pgverbs backup-get: --restore-command %q is not an http:// or https:// URL of pgverbs's HTTP listener\n", o.restoreURL)
		return bgUsage
	}
	o.self, _ = os.Executable()
	if o.self == "" {
		o.self = "pgverbs"
	}
	o.progress = newBGProgress(stderr, *quiet)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := backupGet(ctx, o)
	o.progress.finish(err == nil)
	if err != nil {
		code := exitCode(err)
		if ctx.Err() != nil {
			code, err = bgInterrupted, errors.New("interrupted; what was written to "+o.datadir+" was removed")
		}
		fmt.Fprintf(stderr, "pgverbs backup-get: %v\n", err)
		return code
	}
	return bgOK
}

// backupGet restores o.source into o.datadir, removing what it wrote on
// failure.
func backupGet(ctx context.Context, o backupGetOptions) (err error) {
	src, err := openBGSource(ctx, o)
	if err != nil {
		return err
	}
	created, err := prepareDatadir(o.datadir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			removeDatadir(o.datadir, created)
		}
	}()
	opts := backup.RestoreOptions{Start: o.progress.start, Read: o.progress.add}
	if o.restoreURL != "" {
		if opts.RestoreCommand, err = restoreCommand(o); err != nil {
			return err
		}
	}
	_, err = backup.Restore(ctx, src, o.datadir, opts)
	var re *backup.RestoreError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return &bgError{bgInterrupted, ctx.Err()}
	case errors.As(err, &re):
		return &bgError{restoreExit[re.Kind], re}
	}
	return &bgError{bgWrite, err}
}

// restoreExit is the exit status of each kind of backup.RestoreError.
var restoreExit = map[backup.RestoreErrorKind]int{
	backup.RestoreVerify: bgVerify,
	backup.RestoreSource: bgSource,
	backup.RestoreWrite:  bgWrite,
}

// prepareDatadir creates dir (0700) or checks that it is an empty
// directory; created reports that backup-get made it.
func prepareDatadir(dir string) (created bool, err error) {
	err = os.Mkdir(dir, 0o700)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, &bgError{bgWrite, fmt.Errorf("create DATADIR: %w", err)}
	}
	f, err := os.Open(dir)
	if err != nil {
		return false, &bgError{bgWrite, fmt.Errorf("DATADIR: %w", err)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		return false, bgFail(bgUsage, "DATADIR %s exists and is not a directory", dir)
	}
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return false, bgFail(bgUsage, "DATADIR %s exists and is not empty", dir)
	}
	// A data directory must be the server user's alone.
	if err := os.Chmod(dir, 0o700); err != nil {
		return false, &bgError{bgWrite, fmt.Errorf("DATADIR: %w", err)}
	}
	return false, nil
}

// removeDatadir removes what backup-get wrote: dir itself when it made
// it, else dir's contents.
func removeDatadir(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// openBGSource opens SOURCE: a local directory, or a storage:// URL
// resolved through the configuration's storage targets.
func openBGSource(ctx context.Context, o backupGetOptions) (*backup.Stored, error) {
	if !storage.IsURL(o.source) {
		src, err := backup.OpenLocal(o.source, o.source)
		if err != nil {
			return nil, bgFail(bgSource, "SOURCE: %s", backup.ErrorText(err))
		}
		return src, nil
	}
	var args []string
	if o.configGiven {
		args = []string{"--config", o.config}
	}
	cfg, err := conf.Load(args, o.getenv, io.Discard)
	if err != nil {
		return nil, bgFail(bgUsage, "configuration: %v", err)
	}
	stores, err := newStores(cfg)
	if err != nil {
		return nil, bgFail(bgUsage, "configuration: %v", err)
	}
	store, dir, err := stores.Resolve(o.source)
	if err != nil {
		return nil, bgFail(bgUsage, "%s", backup.ErrorText(err))
	}
	src, err := backup.OpenStored(ctx, store, dir)
	if err != nil {
		return nil, bgFail(bgSource, "%s", backup.ErrorText(err))
	}
	return src, nil
}

// restoreCommand is the restore_command that fetches WAL through pgverbs
// wal-get from o.restoreURL. --partial lets recovery reach the end of
// the archive's last, still incomplete, segment.
func restoreCommand(o backupGetOptions) (string, error) {
	cmd := []string{shellWord(o.self), "wal-get", "--url", shellWord(o.restoreURL)}
	if o.tokenFile != "" {
		tf, err := filepath.Abs(o.tokenFile)
		if err != nil {
			return "", &bgError{bgUsage, err}
		}
		cmd = append(cmd, "--token-file", shellWord(tf))
	}
	cmd = append(cmd, "--partial", "%f", "%p")
	return strings.Join(cmd, " "), nil
}

// shellWord quotes w for the shell that runs restore_command, leaving
// words of only safe characters as they are.
func shellWord(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-:+@=") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// bgProgress shows how far the download is: a bar redrawn on a terminal,
// else a line per 10 %.
type bgProgress struct {
	w     io.Writer
	quiet bool
	tty   bool

	mu       sync.Mutex
	total    int64
	done     int64
	began    time.Time
	lastDraw time.Time
	lastTen  int64
}

func newBGProgress(w io.Writer, quiet bool) *bgProgress {
	p := &bgProgress{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *bgProgress) start(total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total, p.began = total, time.Now()
}

func (p *bgProgress) add(n int64) {
	if p == nil || p.quiet || n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.tty {
		if time.Since(p.lastDraw) >= 200*time.Millisecond {
			p.lastDraw = time.Now()
			p.draw()
		}
		return
	}
	if p.total > 0 {
		if ten := p.done * 10 / p.total; ten > p.lastTen && ten < 10 {
			p.lastTen = ten
			fmt.Fprintf(p.w, "pgverbs backup-get: %d%% (%s of %s)\n", ten*10, mb(p.done), mb(p.total))
		}
	}
}

// draw redraws the bar; the caller holds mu.
func (p *bgProgress) draw() {
	const width = 30
	frac := 0.0
	if p.total > 0 {
		frac = min(float64(p.done)/float64(p.total), 1)
	}
	filled := int(frac * width)
	rate := float64(p.done) / max(time.Since(p.began).Seconds(), 0.001)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %s of %s, %s/s ", strings.Repeat("#", filled), strings.Repeat(" ", width-filled),
		frac*100, mb(p.done), mb(p.total), mb(int64(rate)))
}

func (p *bgProgress) finish(ok bool) {
	if p == nil || p.quiet || p.began.IsZero() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.draw()
		fmt.Fprintln(p.w)
	}
	if ok {
		fmt.Fprintf(p.w, "pgverbs backup-get: done, %s in %.1f s\n", mb(p.done), time.Since(p.began).Seconds())
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
