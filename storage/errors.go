package storage

import (
	"context"
	"errors"
	"os"

	"github.com/aws/smithy-go"

	"github.com/pgverbs/pgverbs/internal/pgerr"
)

// Errors the store's failures wrap (errors.Is), beside os.ErrNotExist for
// a missing object.
var (
	// ErrAccess is the store refusing the credentials or the operation.
	ErrAccess = errors.New("object storage refused access")
	// ErrNoBucket is the target's bucket missing.
	ErrNoBucket = errors.New("object storage bucket does not exist")
	// ErrChecksum is the store rejecting a request whose checksum did not
	// match what arrived.
	ErrChecksum = errors.New("object storage rejected a checksum")
	// ErrExists is PutNew finding the object already there.
	ErrExists = errors.New("object storage object exists")
)

// apiCode is the S3 error code of err, "" if the store sent none.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// fail turns an SDK error of doing op on name into the *pgerr.Error a
// client sees: what pgverbs tried, on which target, and what the store
// said, with a hint where the fix is the operator's. A nil err stays nil;
// a canceled or expired ctx stays recognisable (errors.Is) for the caller
// to report as a cancel.
func (s *Store) fail(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *pgerr.Error
	if errors.As(err, &pe) {
		return err
	}
	what := "object storage target " + quote(s.cfg.Name)
	if name != "" {
		what = quote(name) + " in " + what
	}
	code := apiCode(err)
	status := httpStatus(err)
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return pgerr.New(pgerr.QueryCanceled, "could not %s %s: canceled", op, what).WithCause(err)
	case code == "NoSuchBucket" || (status == 404 && name == ""):
		return pgerr.New(pgerr.UndefinedFile, "bucket %s of object storage target %s does not exist", quote(s.cfg.Bucket), quote(s.cfg.Name)).
			WithHint("Create the bucket, or correct storage.%s.bucket in the configuration.", s.cfg.Name).WithCause(errors.Join(ErrNoBucket, err))
	case notFound(err):
		return pgerr.New(pgerr.UndefinedFile, "could not %s %s: no such object", op, what).WithCause(errors.Join(os.ErrNotExist, err))
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "AccessDenied" ||
		code == "InvalidToken" || code == "ExpiredToken" || status == 403:
		if code == "" {
			code = "Forbidden"
		}
		return pgerr.New(pgerr.InsufficientPrivilege, "object storage target %s refused to let pgverbs %s %s: %s", quote(s.cfg.Name), op, quoteOr(name), code).
			WithHint("Check the credentials pgverbs uses for the target (its credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) and their permissions on the bucket.").
			WithCause(errors.Join(ErrAccess, err))
	case code == "BadDigest" || code == "InvalidDigest" || code == "XAmzContentChecksumMismatch" || code == "XAmzContentSHA256Mismatch":
		return pgerr.New(pgerr.IOError, "could not %s %s: the store rejected the data's checksum (%s)", op, what, code).
			WithDetail("The bytes that reached the store differ from those pgverbs sent; nothing corrupt was stored.").
			WithCause(errors.Join(ErrChecksum, err))
	}
	e := pgerr.New(pgerr.IOError, "could not %s %s: %s", op, what, brief(err)).WithCause(err)
	if status == 0 {
		e = e.WithHint("Is the store at %s running and reachable?", s.cfg.Endpoint)
	}
	return e
}

// brief is err's message without the SDK's operation and request-id
// wrapping where the store sent a code.
func brief(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		if m := ae.ErrorMessage(); m != "" {
			return ae.ErrorCode() + ": " + m
		}
		return ae.ErrorCode()
	}
	return err.Error()
}

func quote(s string) string { return `"` + s + `"` }

func quoteOr(name string) string {
	if name == "" {
		return "its bucket"
	}
	return quote(name)
}
