package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"time"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Run takes a base backup as o describes and returns what it wrote. See
// the package documentation for the layout and the two methods. Errors are
// *pgerr.Error values (errors.As), ready to be sent to a client; a canceled
// ctx gives SQLSTATE 57014 wrapping ctx's cause (errors.Is). On any error
// the server side is aborted and everything Run created is removed.
func Run(ctx context.Context, o Options) (*Result, error) {
	began := time.Now()
	s, err := validate(o)
	if err != nil {
		return nil, err
	}
	if o.Store != nil {
		return runObject(ctx, o, s, began)
	}
	r, err := resolve(o.Root, o.Target)
	if err != nil {
		return nil, err
	}
	mapped, err := resolveMapped(o.Root, s.spcMap, r)
	if err != nil {
		return nil, err
	}
	unlock, err := lockTarget(r)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := checkEmpty(r); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, canceledError(ctx)
	}
	t, err := createTarget(r)
	if err != nil {
		return nil, err
	}
	defer t.close()
	// Every directory written: the target, then the mapped tablespaces.
	all := []*targetDir{t}
	discard := func() error {
		var errs []error
		for _, d := range all {
			errs = append(errs, d.discard())
		}
		return errors.Join(errs...)
	}

	b := &run{
		s:      s,
		t:      t,
		out:    t,
		spcDir: map[string]*targetDir{},
		prog:   newProgress(o.Progress),
		res:    &Result{Path: r.path, Format: s.Format, Method: s.Method},
	}
	for _, old := range sortedKeys(s.spcMap) {
		d, unlock, err := mapTarget(mapped[old])
		if err != nil {
			discard()
			return nil, err
		}
		defer unlock()
		defer d.close()
		all = append(all, d)
		b.spcDir[old] = d
	}
	switch s.Method {
	case Replication:
		err = b.replication(ctx)
	case SQL:
		err = b.sql(ctx)
	}
	if err == nil && s.Standby != nil {
		err = writeStandby(t, s.Standby)
	}
	for _, d := range all {
		if err == nil {
			err = syncTarget(d)
		}
	}
	for _, d := range all {
		if err == nil {
			err = d.finish()
		}
	}
	if err != nil {
		b.prog.close(false)
		if ctx.Err() != nil {
			err = canceledError(ctx)
		}
		if derr := discard(); derr != nil {
			if pe := asPgErr(err); pe != nil && pe.Detail == "" {
				pe.Detail = "The partial backup could not be removed completely: " + pathErrno(derr).Error()
			}
		}
		return nil, err
	}
	b.prog.close(true)
	b.res.Duration = time.Since(began)
	return b.res, nil
}

// run is one Run in progress.
type run struct {
	s      *settings
	t      *targetDir            // nil for a backup to object storage
	out    dest                  // where tar files and the manifest go: t or an objectDest
	spcDir map[string]*targetDir // TABLESPACE_MAP: server location -> directory
	prog   *progress
	res    *Result
}

// resolveMapped resolves the TABLESPACE_MAP directories, which must not
// overlap the target or each other.
func resolveMapped(root string, spcMap map[string]string, target *resolved) (map[string]*resolved, error) {
	out := map[string]*resolved{}
	seen := []*resolved{target}
	for _, old := range sortedKeys(spcMap) {
		r, err := resolve(root, spcMap[old])
		if err != nil {
			return nil, err
		}
		for _, o := range seen {
			_, inside := within(o.path, r.path)
			_, outside := within(r.path, o.path)
			if inside || outside {
				what := "the backup target"
				if o != target {
					what = "the tablespace directory"
				}
				return nil, invalid("tablespace directory %s overlaps %s %s", quote(r.typed), what, quote(o.typed))
			}
		}
		seen = append(seen, r)
		out[old] = r
	}
	return out, nil
}

// mapTarget prepares the directory a mapped tablespace is written to,
// with the same checks as the target.
func mapTarget(r *resolved) (*targetDir, func(), error) {
	unlock, err := lockTarget(r)
	if err != nil {
		return nil, nil, err
	}
	if err := checkEmpty(r); err != nil {
		unlock()
		return nil, nil, err
	}
	d, err := createTarget(r)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return d, unlock, nil
}

// checkMapped refuses TABLESPACE_MAP entries that name no tablespace, so
// that a typo does not quietly leave a tablespace in the default place.
// locations are the server's tablespace locations.
func (b *run) checkMapped(locations []string) error {
	have := map[string]bool{}
	for _, l := range locations {
		have[filepath.Clean(l)] = true
	}
	for _, old := range sortedKeys(b.s.spcMap) {
		if !have[old] {
			e := invalid("tablespace mapping names %s, which is not the location of any tablespace", quote(old))
			if len(locations) > 0 {
				e = withDetail(e, "Tablespace locations: "+strings.Join(locations, ", ")+".")
			} else {
				e = withDetail(e, "The cluster has no tablespaces outside the data directory.")
			}
			return e
		}
	}
	return nil
}

// spcLink is the target of the symbolic link pg_tblspc/OID for a
// tablespace at location on the server: the mapped directory by its
// absolute path, else the copy inside the backup.
func (b *run) spcLink(oid, location string) string {
	if d := b.spcDir[filepath.Clean(location)]; d != nil {
		return d.r.path
	}
	return "../" + tablespacesDir + "/" + oid
}

func asPgErr(err error) *pgerr.Error {
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// connectError reports a failed Connect.
func connectError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return canceledError(ctx)
	}
	if pe := asPgErr(err); pe != nil {
		return err
	}
	return serverError("connect", err)
}

// randomSuffix returns n random hex digits for slot names.
func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
