package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgverbs/pgverbs/backup"
	"github.com/pgverbs/pgverbs/internal/pgerr"
	"github.com/pgverbs/pgverbs/internal/pgwire"
	"github.com/pgverbs/pgverbs/storage"
	"github.com/pgverbs/pgverbs/walarchive"
)

// VerifyBackup is the VERIFY BACKUP command: pg_verifybackup's checks of a
// backup under the backup root or in object storage, read where it is
// stored (nothing is copied locally).
type VerifyBackup struct{ backupPlaces }

// NewVerifyBackup returns VERIFY BACKUP for backups below root ("" leaves
// only storage:// backups) and in the targets of stores; the WAL a backup
// does not hold is read from the running archive of a (nil: none) unless
// the statement names a WAL_ARCHIVE.
func NewVerifyBackup(root string, stores *storage.Stores, a walarchive.Archiver) *VerifyBackup {
	return &VerifyBackup{backupPlaces{root: root, stores: stores, archive: a}}
}

// Name implements Command.
func (*VerifyBackup) Name() string { return "VERIFY BACKUP" }

// Keywords implements Command.
func (*VerifyBackup) Keywords() []string { return []string{"VERIFY", "BACKUP"} }

// Parse implements Parser. Storage URLs are resolved now, so that an
// unknown target or a path escape fails before anything runs.
func (v *VerifyBackup) Parse(sql string) (Prepared, error) {
	st, err := ParseVerifyBackup(sql)
	if err != nil {
		return nil, err
	}
	r := &verifyRun{cmd: v, st: st}
	if storage.IsURL(st.Path) {
		if r.store, r.prefix, err = v.stores.Resolve(st.Path); err != nil {
			return nil, err
		}
		if r.prefix == "" {
			return nil, pgerr.New(pgerr.InvalidParameterValue, "VERIFY BACKUP needs a backup's path below the storage target, not its whole prefix").
				WithHint("Name the backup as BASE BACKUP TO named it, as in 'storage://target/nightly/2026-12-02'.")
		}
	}
	if storage.IsURL(st.WALArchive) {
		if r.walStore, r.walPrefix, err = v.stores.Resolve(st.WALArchive); err != nil {
			return nil, err
		}
	}
	return r, nil
}

type verifyRun struct {
	cmd               *VerifyBackup
	st                *VerifyBackupStmt
	store, walStore   *storage.Store
	prefix, walPrefix string
}

// Standalone implements Standalone: the backup is read by the proxy, not
// the client's session, and a cancel stops the reading.
func (*verifyRun) Standalone() {}

// CommandName names the command in the engine's messages.
func (*verifyRun) CommandName() string { return "VERIFY BACKUP" }

// Columns implements Prepared: a row per problem, or one "ok" row.
func (*verifyRun) Columns() []Column {
	return []Column{{"result", pgwire.TextOID}, {"path", pgwire.TextOID}, {"detail", pgwire.TextOID}}
}

// Execute implements Prepared.
func (r *verifyRun) Execute(ctx context.Context, c Conn) (*Outcome, error) {
	if r.store == nil && r.cmd.root == "" {
		return nil, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "VERIFY BACKUP of a local backup is disabled: no backup root is configured").
			WithHint("Start pgverbs with --backup-root DIR (config backup_root), or name a backup in object storage ('storage://target/path').")
	}
	if err := requireWALRole(c, "VERIFY BACKUP", false); err != nil {
		return nil, err
	}
	var b *backup.Stored
	var err error
	if r.store != nil {
		b, err = backup.OpenStored(ctx, r.store, r.prefix)
	} else {
		var dir string
		if dir, err = backup.ResolveDir(r.cmd.root, r.st.Path); err == nil {
			b, err = backup.OpenLocal(dir, r.st.Path)
			if err == nil {
				b.ConfineLinks(r.cmd.root)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	o := backup.VerifyOptions{WAL: r.st.WAL}
	if r.st.WAL {
		if o.Archive, err = r.walSource(); err != nil {
			return nil, err
		}
	}
	res, err := backup.VerifyBackup(ctx, b, o)
	if err != nil {
		return nil, err
	}
	r.record(ctx, c, b, res)
	out := &Outcome{Tag: "VERIFY BACKUP"}
	for _, p := range res.Problems {
		out.Rows = append(out.Rows, []*string{strp(p.Kind), strp(p.Path), strp(p.Message)})
	}
	if len(out.Rows) == 0 {
		out.Rows = [][]*string{{strp("ok"), strp(b.Name()), strp(verifiedText(b, res))}}
	}
	return out, nil
}

// record writes the result where SHOW BACKUPS reads it as the last
// verification: a VerifyResultName object in the backup's prefix, or the
// file VerifyResultSuffix beside a local backup's directory. A failure to
// write it is a WARNING: the verification itself is done.
func (r *verifyRun) record(ctx context.Context, c Conn, b *backup.Stored, res *backup.VerifyResult) {
	rec := VerifyRecord{Time: time.Now().UTC(), Result: "ok"}
	if n := len(res.Problems); n == 1 {
		rec.Result = "1 problem"
	} else if n > 1 {
		rec.Result = fmt.Sprintf("%d problems", n)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return
	}
	data = append(data, '\n')
	if r.store != nil {
		err = r.store.Put(ctx, storage.Join(r.prefix, VerifyResultName), data)
	} else {
		name := filepath.Clean(b.Dir()) + VerifyResultSuffix
		if err = os.WriteFile(name+".tmp", data, 0o600); err == nil {
			err = os.Rename(name+".tmp", name)
		}
	}
	if err != nil {
		var pe *pgerr.Error
		var fe *fs.PathError
		if errors.As(err, &pe) {
			err = errors.New(pe.Message)
		} else if errors.As(err, &fe) {
			err = fe.Err // its path would show the backup root
		}
		c.Notice("WARNING", fmt.Sprintf("VERIFY BACKUP could not record its result for SHOW BACKUPS: %v", err), "")
	}
}

// verifiedText says what a successful verification checked.
func verifiedText(b *backup.Stored, res *backup.VerifyResult) string {
	var s strings.Builder
	fmt.Fprintf(&s, "backup %q verified: %d files, %d bytes", b.Name(), res.Files, res.Bytes)
	switch {
	case !res.WALChecked:
		s.WriteString(", WAL not checked")
	default:
		for _, w := range res.WAL {
			fmt.Fprintf(&s, ", WAL %s-%s on timeline %d", w.Start, w.End, w.Timeline)
		}
		fmt.Fprintf(&s, " (%d records)", res.WALRecords)
	}
	return s.String()
}

// walSource is where the segments the backup lacks are read: WAL_ARCHIVE,
// else the running archive's directory and then its object storage.
func (r *verifyRun) walSource() (backup.SegmentSource, error) {
	switch {
	case r.walStore != nil:
		return backup.StoreSegments(r.walStore, r.walPrefix), nil
	case r.st.WALArchive != "":
		if r.cmd.root == "" {
			return nil, pgerr.New(pgerr.ObjectNotInPrerequisiteState, "WAL_ARCHIVE names a directory, but no backup root is configured")
		}
		dir, err := backup.ResolveDir(r.cmd.root, r.st.WALArchive)
		if err != nil {
			return nil, err
		}
		return backup.DirSegments(dir), nil
	case r.cmd.archive == nil:
		return nil, nil
	}
	st, ok := r.cmd.archive.Status()
	if !ok {
		return nil, nil
	}
	var chain segmentChain
	if st.Dir != "" {
		chain = append(chain, backup.DirSegments(st.Dir))
	}
	if u := st.Upload.Storage; u != "" {
		if store, prefix, err := r.cmd.stores.Resolve(u); err == nil {
			chain = append(chain, backup.StoreSegments(store, prefix))
		}
	}
	return chain, nil
}

// segmentChain reads a segment from the first source that has it.
type segmentChain []backup.SegmentSource

func (c segmentChain) OpenSegment(ctx context.Context, name string, segSize uint64) (io.ReadCloser, error) {
	var failed error // the first failure other than a missing segment
	for _, s := range c {
		rc, err := s.OpenSegment(ctx, name, segSize)
		if err == nil {
			return rc, nil
		}
		if failed == nil && !errors.Is(err, fs.ErrNotExist) {
			failed = err
		}
	}
	if failed != nil {
		return nil, failed
	}
	return nil, fs.ErrNotExist
}
