package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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
	r, err := resolve(o.Root, o.Target)
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

	b := &run{
		s:    s,
		t:    t,
		prog: newProgress(o.Progress),
		res:  &Result{Path: r.path, Format: s.Format, Method: s.Method},
	}
	switch s.Method {
	case Replication:
		err = b.replication(ctx)
	case SQL:
		err = b.sql(ctx)
	}
	if err == nil {
		err = syncTarget(t)
	}
	if err == nil {
		err = t.finish()
	}
	if err != nil {
		b.prog.close(false)
		if ctx.Err() != nil {
			err = canceledError(ctx)
		}
		if derr := t.discard(); derr != nil {
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
	s    *settings
	t    *targetDir
	prog *progress
	res  *Result
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
