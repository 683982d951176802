package storage

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
)

// abortTimeout bounds the AbortMultipartUpload a failed or cancelled
// upload sends on a context of its own (the upload's may be cancelled).
const abortTimeout = 30 * time.Second

// WriteOptions shape one upload.
type WriteOptions struct {
	// SizeHint is what the object is expected to hold, 0 if unknown: a
	// large hint grows the part size so that the object fits in MaxParts
	// parts with room to spare.
	SizeHint int64
	// ParallelParts overrides the target's in-flight parts for this
	// object (a secondary object uploaded beside a larger one takes 1).
	ParallelParts int
}

// Writer streams one object into a multipart upload: the transfer
// manager reads what Write hands it through a pipe, cuts parts of the
// part size, uploads up to the parallel parts at once, each with its
// CRC32C, and completes the upload at Close. Memory is bounded by about
// (parallel parts + 2) × part size. Write blocks while every part buffer
// is busy, which is the backpressure a backup's reader needs.
//
// A Writer is used from one goroutine; Abort may be called from any.
type Writer struct {
	name   string
	pw     *io.PipeWriter
	cancel context.CancelFunc
	done   chan struct{}
	err    error // the upload's result, set before done closes
	n      int64
	once   sync.Once
}

// PartSize is the part size an upload of about hint bytes uses.
func (s *Store) PartSize(hint int64) int64 {
	ps := s.cfg.PartSize
	// Leave a quarter of the part budget for the object outgrowing its
	// hint (a database that grows during the backup, WAL).
	if need := hint / (MaxParts * 3 / 4); need > ps {
		ps = (need + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return ps
}

// Create starts uploading object name. Nothing is visible under name
// until Close returns nil; after a failure, Abort (or a failed Close)
// aborts the multipart upload so that no parts are left behind.
func (s *Store) Create(ctx context.Context, name string, o WriteOptions) *Writer {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	w := &Writer{name: name, pw: pw, cancel: cancel, done: make(chan struct{})}
	parallel := s.cfg.ParallelParts
	if o.ParallelParts > 0 {
		parallel = o.ParallelParts
	}
	ps := s.PartSize(o.SizeHint)
	tm := transfermanager.New(s.client, func(t *transfermanager.Options) {
		t.PartSizeBytes = ps
		// The first part is read whole before the upload decides between
		// one PutObject and a multipart upload: at the part size, that
		// buffer is one of the bounded ones.
		t.MultipartUploadThreshold = ps
		t.Concurrency = parallel
		t.ChecksumAlgorithm = tmtypes.ChecksumAlgorithmCrc32c
		t.FailTimeout = abortTimeout
	})
	in := &transfermanager.UploadObjectInput{
		Bucket: aws.String(s.cfg.Bucket),
		Key:    aws.String(s.key(name)),
		Body:   pr,
	}
	if s.cfg.SSE != "" {
		in.ServerSideEncryption = tmtypes.ServerSideEncryption(s.cfg.SSE)
		if s.cfg.SSEKMSKeyID != "" {
			in.SSEKMSKeyID = aws.String(s.cfg.SSEKMSKeyID)
		}
	}
	go func() {
		defer close(w.done)
		_, err := tm.UploadObject(ctx, in)
		if err != nil {
			w.err = s.fail("write", name, err)
		}
		// A writer still in Write learns of the failure at once.
		pr.CloseWithError(errOr(w.err, errClosed))
	}()
	return w
}

var errClosed = errors.New("upload finished")

func errOr(err, other error) error {
	if err != nil {
		return err
	}
	return other
}

// Write hands p to the upload; it fails with the upload's error once the
// upload has failed.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.pw.Write(p)
	w.n += int64(n)
	if err != nil {
		<-w.done
		return n, errOr(w.err, err)
	}
	return n, nil
}

// Written is how many bytes Write accepted.
func (w *Writer) Written() int64 { return w.n }

// Close ends the object and waits for the upload to complete. The object
// is in the store, whole, exactly when Close returns nil.
func (w *Writer) Close() error {
	w.pw.Close()
	<-w.done
	w.cancel()
	return w.err
}

// Abort gives the upload up: the transfer manager aborts the multipart
// upload (on a context of its own, so that a cancelled caller still
// leaves no parts behind) and Abort waits for that. An object whose
// upload had already completed stays: its caller deletes it.
func (w *Writer) Abort() {
	w.once.Do(func() {
		w.pw.CloseWithError(errAborted)
		w.cancel()
	})
	<-w.done
}

var errAborted = errors.New("upload aborted")
