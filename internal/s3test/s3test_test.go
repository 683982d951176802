package s3test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// One server for every subtest: a fresh one takes seconds to take writes.
func TestServer(t *testing.T) {
	s := Start(t)
	bucket := s.Bucket(t, "s3test-main")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	user := s.Client()

	t.Run("RoundTrip", func(t *testing.T) {
		want := []byte("hello, object storage")
		put(ctx, t, user, bucket, "round/trip", want)
		if got := get(ctx, t, user, bucket, "round/trip"); !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})

	t.Run("UserKeyCannotCreateBuckets", func(t *testing.T) {
		_, err := user.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String("s3test-missing"), Key: aws.String("k"), Body: strings.NewReader("x"),
		})
		if code := ErrorCode(err); code != "NoSuchBucket" {
			t.Errorf("put into a missing bucket: code %q (err %v), want NoSuchBucket", code, err)
		}
		_, err = user.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("s3test-missing")})
		if code := ErrorCode(err); code != "AccessDenied" {
			t.Errorf("create bucket with the user key: code %q (err %v), want AccessDenied", code, err)
		}
		// Neither may have created it behind the error.
		_, err = s.AdminClient().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("s3test-missing")})
		if err == nil {
			t.Errorf("s3test-missing exists after the user key's attempts")
		}
	})

	// Signed payloads fail the SHA-256 check, unsigned ones the CRC32C.
	modes := []struct {
		name string
		opts []func(*s3.Options)
		code string
	}{
		{"Signed", nil, "XAmzContentSHA256Mismatch"},
		{"Unsigned", []func(*s3.Options){UnsignedPayload}, "BadDigest"},
	}
	for _, m := range modes {
		t.Run("CorruptPut"+m.name, func(t *testing.T) {
			p := NewFaultProxy(t, s.Addr())
			c := NewClient(p.Endpoint, s.AccessKey, s.SecretKey, m.opts...)
			key := "corrupt/put-" + m.name
			p.CorruptRequests(1, func(line string) bool { return strings.HasPrefix(line, "PUT ") })
			_, err := c.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String(bucket), Key: aws.String(key),
				Body:              bytes.NewReader(bytes.Repeat([]byte("payload "), 1000)),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
			})
			if n := p.Corrupted(); n != 1 {
				t.Fatalf("proxy corrupted %d requests, want 1 (err %v)", n, err)
			}
			assertCode(t, err, m.code)
			if _, err := user.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}); err == nil {
				t.Errorf("the corrupted object was stored")
			}
		})

		t.Run("CorruptUploadPart"+m.name, func(t *testing.T) {
			p := NewFaultProxy(t, s.Addr())
			c := NewClient(p.Endpoint, s.AccessKey, s.SecretKey, m.opts...)
			key := "corrupt/multipart-" + m.name
			up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
				Bucket: aws.String(bucket), Key: aws.String(key), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
			})
			if err != nil {
				t.Fatal(err)
			}
			// 3 MiB, over the SDK's 2 MiB threshold for Expect: 100-continue,
			// which the proxy must let through; a last part may be small.
			part := bytes.Repeat([]byte("0123456789abcdef"), 3<<16)
			uploadPart := func() (*s3.UploadPartOutput, error) {
				return c.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
					PartNumber: aws.Int32(1), Body: bytes.NewReader(part),
					ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
				})
			}
			p.CorruptUploadParts(1)
			_, err = uploadPart()
			if n := p.Corrupted(); n != 1 {
				t.Fatalf("proxy corrupted %d requests, want 1 (err %v)", n, err)
			}
			assertCode(t, err, m.code)
			// The retry, undamaged, goes through and completes the upload.
			out, err := uploadPart()
			if err != nil {
				t.Fatalf("retried part: %v", err)
			}
			_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
				Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.UploadId,
				MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
					{PartNumber: aws.Int32(1), ETag: out.ETag, ChecksumCRC32C: out.ChecksumCRC32C},
				}},
			})
			if err != nil {
				t.Fatalf("complete: %v", err)
			}
			if got := get(ctx, t, user, bucket, key); !bytes.Equal(got, part) {
				t.Fatalf("multipart object differs from what was uploaded (%d bytes, want %d)", len(got), len(part))
			}
		})
	}

	t.Run("Cut", func(t *testing.T) {
		p := NewFaultProxy(t, s.Addr())
		c := NewClient(p.Endpoint, s.AccessKey, s.SecretKey, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		put(ctx, t, c, bucket, "cut/before", []byte("x"))
		p.Cut()
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("cut/during"), Body: strings.NewReader("x")})
		if err == nil || ErrorCode(err) != "" {
			t.Fatalf("put through a cut proxy: %v, want a transport error", err)
		}
		p.Resume()
		put(ctx, t, c, bucket, "cut/after", []byte("x"))
	})

	t.Run("Restart", func(t *testing.T) {
		want := []byte("kept across a restart")
		put(ctx, t, user, bucket, "restart/kept", want)
		start := time.Now()
		s.Stop()
		t.Logf("stop took %.1fs", time.Since(start).Seconds())
		s.Restart()
		if got := get(ctx, t, user, bucket, "restart/kept"); !bytes.Equal(got, want) {
			t.Fatalf("after restart got %q, want %q", got, want)
		}
		put(ctx, t, user, bucket, "restart/new", want)
	})
}

// assertCode checks that err is an S3 error with code, here the server
// refusing a body that does not match its checksum.
func assertCode(t *testing.T, err error, code string) {
	t.Helper()
	if err == nil {
		t.Fatal("a corrupted body was accepted")
	}
	if got := ErrorCode(err); got != code {
		t.Fatalf("error code %q (err %v), want %s", got, err, code)
	}
}

func put(ctx context.Context, t *testing.T, c *s3.Client, bucket, key string, body []byte) {
	t.Helper()
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
	if err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

func get(ctx context.Context, t *testing.T, c *s3.Client, bucket, key string) []byte {
	t.Helper()
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	return b
}
