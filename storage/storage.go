package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Config is one named target of the configuration's storage map.
type Config struct {
	// Name is the target's name, as storage:// URLs give it.
	Name string
	// Endpoint is the store's base URL (http or https, no path).
	Endpoint string
	// Region is the signing region; "" is us-east-1.
	Region string
	// Bucket holds everything pgverbs writes to the target.
	Bucket string
	// Prefix is the key prefix inside Bucket, without leading or trailing
	// slashes; "" is the whole bucket.
	Prefix string
	// PathStyle addresses the bucket in the path (endpoint/bucket/key), as
	// self-hosted stores expect, rather than as a host name.
	PathStyle bool
	// CAFile is a PEM bundle of the certificate authorities to trust for
	// an https endpoint, in place of the system's.
	CAFile string
	// SSE is the server-side encryption to ask for: "", "AES256" or
	// "aws:kms" (with SSEKMSKeyID, or the bucket's default key).
	SSE, SSEKMSKeyID string
	// CredentialsFile and Profile name an AWS shared-credentials file and
	// the profile in it; empty means the SDK's default chain (the
	// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables, ~/.aws/credentials,
	// an instance role).
	CredentialsFile, Profile string
	// PartSize is the multipart part size in bytes (at least 5 MiB); 0
	// is DefaultPartSize. Uploads of large objects grow it so that they
	// stay within MaxParts.
	PartSize int64
	// ParallelParts is how many parts of one object are in flight at
	// once; 0 is DefaultParallelParts.
	ParallelParts int
}

const (
	// DefaultPartSize is the part size when Config.PartSize is 0.
	DefaultPartSize = 8 << 20
	// MinPartSize is S3's smallest part but the last.
	MinPartSize = 5 << 20
	// MaxParts is S3's most parts of one multipart upload.
	MaxParts = 10000
	// DefaultParallelParts is the in-flight parts per object when
	// Config.ParallelParts is 0.
	DefaultParallelParts = 3
)

// Store is a configured target, ready to use. Its methods name objects
// relative to the target's prefix ("nightly/base.tar"); they never reach
// outside it.
type Store struct {
	cfg    Config
	client *s3.Client
}

// New builds the client for c. It checks nothing on the network: a store
// that is down or refuses the credentials is reported by the first use
// (or by Check).
func New(ctx context.Context, c Config) (*Store, error) {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.PartSize == 0 {
		c.PartSize = DefaultPartSize
	}
	if c.ParallelParts <= 0 {
		c.ParallelParts = DefaultParallelParts
	}
	c.Prefix = strings.Trim(c.Prefix, "/")
	opts := []func(*config.LoadOptions) error{config.WithRegion(c.Region)}
	if c.CredentialsFile != "" {
		opts = append(opts, config.WithSharedCredentialsFiles([]string{c.CredentialsFile}),
			// Only the named file: a profile of ~/.aws/config must not
			// add settings the operator did not give this target.
			config.WithSharedConfigFiles([]string{}))
	}
	if c.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(c.Profile))
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("storage target %s: ca_file: %w", c.Name, err)
		}
		opts = append(opts, config.WithCustomCABundle(bytes.NewReader(pem)))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("storage target %s: %w", c.Name, err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(c.Endpoint)
		o.UsePathStyle = c.PathStyle
		// Every request that can carry a checksum does (CRC32 unless
		// asked for more); uploads ask for CRC32C themselves.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenSupported
		// The SDK's default log of checksum-less responses would reach
		// pgverbs's stderr unstructured.
		o.DisableLogOutputChecksumValidationSkipped = true
	})
	return &Store{cfg: c, client: client}, nil
}

// Name is the target's name.
func (s *Store) Name() string { return s.cfg.Name }

// Config returns the target's configuration, defaults filled in.
func (s *Store) Config() Config { return s.cfg }

// URL is the storage:// URL of name in this target.
func (s *Store) URL(name string) string {
	return Scheme + s.cfg.Name + "/" + strings.TrimPrefix(name, "/")
}

// key is name's object key: below the prefix, which name cannot leave
// (callers pass names from ParseURL or names they made themselves).
func (s *Store) key(name string) string {
	name = strings.TrimPrefix(name, "/")
	if s.cfg.Prefix == "" {
		return name
	}
	if name == "" {
		return s.cfg.Prefix + "/"
	}
	return s.cfg.Prefix + "/" + name
}

// rel is the name of key relative to the prefix.
func (s *Store) rel(key string) string {
	if s.cfg.Prefix == "" {
		return key
	}
	return strings.TrimPrefix(key, s.cfg.Prefix+"/")
}

// Check asks the store whether the bucket exists and the credentials may
// use it (HeadBucket).
func (s *Store) Check(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.cfg.Bucket)})
	return s.fail("reach", "", err)
}

// Object is one object of a listing.
type Object struct {
	// Name is the object's name relative to the target's prefix.
	Name string
	// Size is its length in bytes.
	Size int64
	// Modified is when the store last wrote it.
	Modified time.Time
}

// List returns every object whose name starts with dir + "/" (every
// object of the target when dir is ""), sorted by name, all pages read.
func (s *Store) List(ctx context.Context, dir string) ([]Object, error) {
	prefix := s.key(strings.Trim(dir, "/"))
	if !strings.HasSuffix(prefix, "/") && prefix != "" {
		prefix += "/"
	}
	var out []Object
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.Bucket),
		Prefix: aws.String(prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.fail("list", dir, err)
		}
		for _, o := range page.Contents {
			out = append(out, Object{
				Name:     s.rel(aws.ToString(o.Key)),
				Size:     aws.ToInt64(o.Size),
				Modified: aws.ToTime(o.LastModified),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Stat returns name's size and time; a missing object is an error that
// errors.Is(err, os.ErrNotExist).
func (s *Store) Stat(ctx context.Context, name string) (Object, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(name)),
	})
	if err != nil {
		return Object{}, s.fail("read", name, err)
	}
	return Object{Name: name, Size: aws.ToInt64(out.ContentLength), Modified: aws.ToTime(out.LastModified)}, nil
}

// Open streams object name. The caller closes the reader; a missing
// object is an error that errors.Is(err, os.ErrNotExist).
func (s *Store) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(name)),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return nil, 0, s.fail("read", name, err)
	}
	return &reader{body: out.Body, s: s, name: name}, aws.ToInt64(out.ContentLength), nil
}

// ReadAll reads a small object whole.
func (s *Store) ReadAll(ctx context.Context, name string) ([]byte, error) {
	r, _, err := s.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// reader names the object in read errors.
type reader struct {
	body io.ReadCloser
	s    *Store
	name string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.fail("read", r.name, err)
	}
	return n, err
}

func (r *reader) Close() error { return r.body.Close() }

// Put writes a small object whole (one PutObject, CRC32C-checked by the
// store), replacing any object of that name.
func (s *Store) Put(ctx context.Context, name string, data []byte) error {
	in := &s3.PutObjectInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               aws.String(s.key(name)),
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	}
	s.encrypt(&in.ServerSideEncryption, &in.SSEKMSKeyId)
	_, err := s.client.PutObject(ctx, in)
	return s.fail("write", name, err)
}

// PutNew writes a small object only if none of that name exists (a
// conditional PUT, If-None-Match: *): an existing one is an error that
// errors.Is(err, ErrExists). It is object storage's O_EXCL, where the
// store supports conditional writes (AWS S3 and SeaweedFS do); a store
// that ignores the condition overwrites, as Put does.
func (s *Store) PutNew(ctx context.Context, name string, data []byte) error {
	in := &s3.PutObjectInput{
		Bucket:            aws.String(s.cfg.Bucket),
		Key:               aws.String(s.key(name)),
		Body:              bytes.NewReader(data),
		ContentLength:     aws.Int64(int64(len(data))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		IfNoneMatch:       aws.String("*"),
	}
	s.encrypt(&in.ServerSideEncryption, &in.SSEKMSKeyId)
	_, err := s.client.PutObject(ctx, in)
	if err != nil && (apiCode(err) == "PreconditionFailed" || httpStatus(err) == http.StatusPreconditionFailed) {
		return pgerr.New(pgerr.DuplicateObject, "%s already exists in object storage target %s", quote(name), quote(s.cfg.Name)).WithCause(ErrExists)
	}
	return s.fail("write", name, err)
}

// encrypt sets the server-side encryption fields of a request.
func (s *Store) encrypt(sse *types.ServerSideEncryption, kms **string) {
	if s.cfg.SSE == "" {
		return
	}
	*sse = types.ServerSideEncryption(s.cfg.SSE)
	if s.cfg.SSEKMSKeyID != "" {
		*kms = aws.String(s.cfg.SSEKMSKeyID)
	}
}

// Delete removes the named objects (DeleteObjects, 1,000 a request). A
// name that does not exist is not an error.
func (s *Store) Delete(ctx context.Context, names ...string) error {
	for len(names) > 0 {
		batch := names[:min(len(names), 1000)]
		names = names[len(batch):]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i, n := range batch {
			ids[i] = types.ObjectIdentifier{Key: aws.String(s.key(n))}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.cfg.Bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return s.fail("delete", batch[0], err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return pgerr.New(pgerr.IOError, "could not delete %s in object storage target %q: %s", aws.ToString(e.Key), s.cfg.Name, aws.ToString(e.Message))
		}
	}
	return nil
}

// DeletePrefix removes every object below dir and aborts the multipart
// uploads open there.
func (s *Store) DeletePrefix(ctx context.Context, dir string) error {
	if _, err := s.AbortUploads(ctx, dir, time.Time{}); err != nil {
		return err
	}
	objs, err := s.List(ctx, dir)
	if err != nil {
		return err
	}
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.Name
	}
	return s.Delete(ctx, names...)
}

// Upload is an open multipart upload, as ListMultipartUploads finds it.
type Upload struct {
	// Name is the object being uploaded, relative to the prefix.
	Name string
	// Started is when the upload was created.
	Started time.Time
	id      string
}

// Uploads lists the multipart uploads open below dir ("" for the whole
// target).
func (s *Store) Uploads(ctx context.Context, dir string) ([]Upload, error) {
	prefix := s.key(strings.Trim(dir, "/"))
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(prefix)}
	var out []Upload
	for {
		page, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, s.fail("list uploads in", dir, err)
		}
		for _, u := range page.Uploads {
			out = append(out, Upload{Name: s.rel(aws.ToString(u.Key)), Started: aws.ToTime(u.Initiated), id: aws.ToString(u.UploadId)})
		}
		if !aws.ToBool(page.IsTruncated) {
			return out, nil
		}
		in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
	}
}

// AbortUploads aborts the multipart uploads open below dir that started
// before before (all of them when before is zero) and returns how many
// it aborted. pgverbs calls it at start for the uploads a killed process
// left behind: their parts are invisible to listings but kept, and
// billed, until aborted.
func (s *Store) AbortUploads(ctx context.Context, dir string, before time.Time) (int, error) {
	ups, err := s.Uploads(ctx, dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, u := range ups {
		if !before.IsZero() && !u.Started.Before(before) {
			continue
		}
		if err := s.abort(ctx, u.Name, u.id); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// AbortUpload aborts one upload of Uploads.
func (s *Store) AbortUpload(ctx context.Context, u Upload) error { return s.abort(ctx, u.Name, u.id) }

func (s *Store) abort(ctx context.Context, name, id string) error {
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(name)), UploadId: aws.String(id),
	})
	if err != nil && notFound(err) {
		return nil // completed or aborted meanwhile
	}
	return s.fail("abort the upload of", name, err)
}

// Join joins URL path elements with slashes, as object names are.
func Join(elem ...string) string {
	return strings.TrimPrefix(path.Join(elem...), "/")
}

// httpStatus is the HTTP status of a failed request, 0 if none came.
func httpStatus(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func notFound(err error) bool {
	code := apiCode(err)
	return code == "NoSuchKey" || code == "NoSuchUpload" || code == "NotFound" || httpStatus(err) == http.StatusNotFound && code != "NoSuchBucket"
}
