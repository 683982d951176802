package s3test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/pgverbs/pgverbs/internal/pgtest"
)

// Region is the region clients sign for; weed accepts any, but the SDK
// needs one.
const Region = "us-east-1"

// The two identities of every server. Fixed values: nothing secret guards a
// throwaway server on 127.0.0.1, and fixed keys make logs comparable.
const (
	adminAccessKey = "s3test-admin"
	adminSecretKey = "s3test-admin-secret"
	userAccessKey  = "s3test-user"
	userSecretKey  = "s3test-user-secret"
)

// readyBucket is where the readiness check writes; tests should not use it.
const readyBucket = "s3test-ready"

// readyTimeout bounds how long Start and Restart wait for the first write to
// succeed. A fresh server takes about ten seconds on an idle machine; CI
// runs many packages side by side.
const readyTimeout = 60 * time.Second

// Server is a running weed server with its S3 gateway.
type Server struct {
	// Endpoint is the S3 gateway's URL, http://127.0.0.1:port.
	Endpoint string
	// Region is the region to sign for (Region).
	Region string
	// AccessKey and SecretKey are the ordinary identity's: objects of every
	// bucket, no bucket creation, no bucket created on upload.
	AccessKey, SecretKey string
	// AdminAccessKey and AdminSecretKey are the admin identity's.
	AdminAccessKey, AdminSecretKey string
	// Dir holds the server's data, configuration and log (weed.log).
	Dir string

	t         testing.TB // Start's; nil for Launch
	logf      func(format string, args ...any)
	bin       string
	args      []string
	log       string
	grpcPorts map[string]int // by weed's service name

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Binary returns the weed binary tests use: $PGVERBS_WEED, else
// ~/.cache/pgverbs-weed/weed.
func Binary() (string, error) {
	if p := os.Getenv("PGVERBS_WEED"); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("PGVERBS_WEED=%s: %w", p, err)
		}
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no PGVERBS_WEED and no home directory: %w", err)
	}
	p := filepath.Join(home, ".cache", "pgverbs-weed", "weed")
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("no PGVERBS_WEED and %w (build it: see .ci/run)", err)
	}
	return p, nil
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// Options tune Launch.
type Options struct {
	// VolumeSizeLimitMB is the size at which weed stops writing to a volume
	// and grows another (-master.volumeSizeLimitMB); 0 means 64.
	VolumeSizeLimitMB int
	// Logf receives progress lines; nil drops them.
	Logf func(format string, args ...any)
}

// Start starts a server for t and kills it when t ends. Without a weed
// binary it skips t, or fails it when PGTEST_REQUIRE=1.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("PGTEST_REQUIRE") == "1" {
			t.Fatalf("s3test: PGTEST_REQUIRE=1 but %v", err)
		}
		t.Skipf("skipping: %v (PGTEST_REQUIRE=1 turns this into a failure)", err)
	}
	s, err := launch(bin, Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	s.t = t
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.LogTail())
		}
		s.Close()
	})
	return s
}

// Launch starts a server outside a test, for benchmarks and local runs;
// the caller must Close it.
func Launch(opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	s, err := launch(bin, opts)
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	return s, nil
}

// Close kills the server and removes its directory. Killed, not stopped: a
// graceful stop takes weed 15 s, and nothing of the server is kept.
func (s *Server) Close() {
	s.kill()
	s.removeSockets()
	os.RemoveAll(s.Dir)
}

func launch(bin string, opts Options) (*Server, error) {
	if opts.VolumeSizeLimitMB == 0 {
		opts.VolumeSizeLimitMB = 64
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	// A free port can be taken by someone else between FreePort and weed's
	// bind, and weed then exits: try again with new ports and a new
	// directory, as pgtest does for PostgreSQL.
	const attempts = 3
	var err error
	for range attempts {
		var s *Server
		if s, err = start(bin, opts); err == nil || !errors.Is(err, errExited) {
			return s, err
		}
	}
	return nil, err
}

// errExited marks a server that exited during startup, the mark of a lost
// race for a port.
var errExited = errors.New("weed exited")

func start(bin string, opts Options) (_ *Server, err error) {
	// Not t.TempDir: weed's Unix socket paths must stay under the 108 bytes
	// of sun_path, and t.TempDir's contain the test's name.
	dir, err := os.MkdirTemp("", "s3test-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	ports, err := freePorts(8)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:       "http://127.0.0.1:" + strconv.Itoa(ports[6]),
		Region:         Region,
		AccessKey:      userAccessKey,
		SecretKey:      userSecretKey,
		AdminAccessKey: adminAccessKey,
		AdminSecretKey: adminSecretKey,
		Dir:            dir,
		logf:           opts.Logf,
		bin:            bin,
		log:            filepath.Join(dir, "weed.log"),
		grpcPorts:      map[string]int{"master": ports[1], "volume": ports[3], "filer": ports[5], "s3": ports[7]},
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		return nil, err
	}
	if err := writeConfig(dir); err != nil {
		return nil, err
	}
	p := func(i int) string { return strconv.Itoa(ports[i]) }
	s.args = []string{
		"-config_dir=" + dir, // master.toml; weed also looks in ~/.seaweedfs and /etc/seaweedfs
		"-logtostderr=true",  // glog would otherwise write files into /tmp
		"server",
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-dir=" + data,
		"-master.port=" + p(0), "-master.port.grpc=" + p(1),
		"-volume.port=" + p(2), "-volume.port.grpc=" + p(3),
		"-filer", "-filer.port=" + p(4), "-filer.port.grpc=" + p(5),
		"-filer.localSocket=" + filepath.Join(dir, "filer.sock"),
		"-s3", "-s3.port=" + p(6), "-s3.port.grpc=" + p(7),
		"-s3.localSocket=" + filepath.Join(dir, "s3.sock"),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-s3.config=" + filepath.Join(dir, "s3.json"),
		"-master.telemetry=false",
		// One master, nothing to wait for: a restarted one would otherwise
		// take ~15 s to elect itself.
		"-master.electionTimeout=1s",
		// A missing bucket is NoSuchBucket, as on S3, for either key.
		"-s3.autoCreateBucket=false",
		// Small volumes, grown one at a time (master.toml): every bucket is
		// a collection of its own with volumes of its own.
		"-master.volumeSizeLimitMB=" + strconv.Itoa(opts.VolumeSizeLimitMB), "-volume.max=0",
		"-master.volumePreallocate=false",
		// Without this the volume server lingers 10 s on SIGINT.
		"-volume.preStopSeconds=0",
	}
	if err := s.launch(); err != nil {
		return nil, err
	}
	if err := s.waitReady(); err != nil {
		s.kill()
		s.removeSockets()
		return nil, err
	}
	return s, nil
}

// freePorts returns n distinct free ports.
func freePorts(n int) ([]int, error) {
	seen := make(map[int]bool)
	var ports []int
	for len(ports) < n {
		port, err := pgtest.FreePort()
		if err != nil {
			return nil, err
		}
		if !seen[port] {
			seen[port] = true
			ports = append(ports, port)
		}
	}
	return ports, nil
}

type s3Identity struct {
	Name        string         `json:"name"`
	Credentials []s3Credential `json:"credentials"`
	Actions     []string       `json:"actions"`
}

type s3Credential struct {
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
}

// writeConfig writes the S3 identities and master.toml into dir.
func writeConfig(dir string) error {
	ids := struct {
		Identities []s3Identity `json:"identities"`
	}{[]s3Identity{
		{"admin", []s3Credential{{adminAccessKey, adminSecretKey}}, []string{"Admin", "Read", "Write", "List", "Tagging"}},
		// No Admin action: creating a bucket needs it, and weed creates a
		// missing bucket on upload only for admins.
		{"user", []s3Credential{{userAccessKey, userSecretKey}}, []string{"Read", "Write", "List", "Tagging"}},
	}}
	js, err := json.MarshalIndent(ids, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "s3.json"), js, 0o600); err != nil {
		return err
	}
	// copy_1: volumes created at a time for a collection without
	// replication (7 by default). allocation_deferral: a fresh master
	// otherwise holds the first allocation back for a warmup window, in
	// case veteran volume servers still have to report. No maintenance
	// scripts: nothing to balance or repair on one throwaway node.
	const masterToml = `[master.maintenance]
scripts = ""
sleep_minutes = 1000

[master.volume_growth]
copy_1 = 1
allocation_deferral = "0s"
`
	return os.WriteFile(filepath.Join(dir, "master.toml"), []byte(masterToml), 0o600)
}

// launch starts the weed process, appending its output to the log.
func (s *Server) launch() error {
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n=== s3test: %s starting weed %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(s.args, " "))
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own process group, so that a ^C aimed at go test does not stop
	// the server out from under a test's own Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

// waitReady polls until an object write through the S3 gateway succeeds:
// the gateway answers long before the master has a writable volume.
func (s *Server) waitReady() error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	// No retries inside the SDK: the loop retries, and sees each error.
	admin := NewClient(s.Endpoint, adminAccessKey, adminSecretKey, func(o *s3.Options) { o.Retryer = aws.NopRetryer{} })
	start := time.Now()
	deadline := start.Add(readyTimeout)
	delay := 100 * time.Millisecond
	var lastErr error
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lastErr = probe(ctx, admin)
		cancel()
		if lastErr == nil {
			s.logf("s3test: weed ready at %s after %.1fs (%d attempts)", s.Endpoint, time.Since(start).Seconds(), attempt)
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%w during startup: %s", errExited, s.LogTail())
		case <-time.After(delay):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("weed not ready after %s: %v; %s", readyTimeout, lastErr, s.LogTail())
		}
		delay = min(delay*2, time.Second)
	}
}

func probe(ctx context.Context, c *s3.Client) error {
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(readyBucket)})
	if err != nil && !isCode(err, "BucketAlreadyOwnedByYou", "BucketAlreadyExists") {
		return fmt.Errorf("create bucket: %w", err)
	}
	_, err = c.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(readyBucket),
		Key:    aws.String("probe"),
		Body:   bytes.NewReader([]byte("ready")),
	})
	if err != nil {
		return fmt.Errorf("put object: %w", err)
	}
	return nil
}

func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}

// ErrorCode returns the S3 error code in err ("NoSuchBucket", "BadDigest",
// ...), or "" when err carries none, as a transport error does.
func ErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// NewClient returns an S3 client for endpoint with static credentials and
// path-style addressing (weed does not serve bucket host names here), then
// applies opts. It reads nothing from the environment or ~/.aws, so a
// developer's AWS configuration cannot leak into tests.
func NewClient(endpoint, accessKey, secretKey string, opts ...func(*s3.Options)) *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	}, opts...)
}

// UnsignedPayload is a NewClient option that signs UNSIGNED-PAYLOAD instead
// of the body's SHA-256, as the SDK does over TLS: the server then checks
// the body only against the checksum header (x-amz-checksum-crc32c, ...).
// v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware is not enough
// over plain HTTP, where the checksum middleware computes the SHA-256
// itself unless a payload hash is already set: this sets it first.
func UnsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, func(stack *middleware.Stack) error {
		return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("s3test:UnsignedPayload",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				return next.HandleFinalize(v4.SetPayloadHash(ctx, "UNSIGNED-PAYLOAD"), in)
			}), middleware.Before)
	})
}

// Client returns a client with the ordinary identity's key.
func (s *Server) Client() *s3.Client { return NewClient(s.Endpoint, s.AccessKey, s.SecretKey) }

// AdminClient returns a client with the admin identity's key.
func (s *Server) AdminClient() *s3.Client {
	return NewClient(s.Endpoint, s.AdminAccessKey, s.AdminSecretKey)
}

// Bucket creates the bucket name with the admin key and returns name. An
// existing bucket is fine, so that a test can call it again after Restart.
func (s *Server) Bucket(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateBucket(ctx, name); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return name
}

// CreateBucket creates the bucket name with the admin key; an existing
// bucket is fine.
func (s *Server) CreateBucket(ctx context.Context, name string) error {
	_, err := s.AdminClient().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	if err != nil && !isCode(err, "BucketAlreadyOwnedByYou", "BucketAlreadyExists") {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// Stop stops the server (SIGINT, SIGKILL after 30 s) and waits for it,
// about 16 s: weed's filer waits for the volume server it has just stopped.
// It keeps the data directory for Restart and does nothing on a stopped
// server.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.logf("s3test: weed ignored SIGINT for 30s, killing it")
		cmd.Process.Kill()
		<-done
	}
}

// kill ends the process at once; for startup failures.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		<-done
	}
}

// removeSockets removes the Unix sockets weed names after its gRPC ports in
// /tmp (a killed weed leaves them behind), once the process is gone.
func (s *Server) removeSockets() {
	for name, port := range s.grpcPorts {
		os.Remove(fmt.Sprintf("/tmp/seaweedfs-%s-grpc-%d.sock", name, port))
	}
}

// Restart stops the server if it runs and starts it again on the same ports
// and data, waiting until it takes writes (about 17 s: weed's master refuses
// writes for 15 s after a restart). It fails the test if the server does
// not come back (a port taken meanwhile, for one); for a server from Launch,
// use RestartErr.
func (s *Server) Restart() {
	if s.t == nil {
		panic("s3test: Restart on a server from Launch; use RestartErr")
	}
	s.t.Helper()
	if err := s.RestartErr(); err != nil {
		s.t.Fatalf("s3test: %v", err)
	}
}

// RestartErr is Restart returning its error.
func (s *Server) RestartErr() error {
	s.Stop()
	if err := s.launch(); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if err := s.waitReady(); err != nil {
		s.kill()
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// LogTail returns the end of the server's log, for failure messages.
func (s *Server) LogTail() string {
	const maxTail = 8 << 10
	f, err := os.Open(s.log)
	if err != nil {
		return "(no weed log: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		f.Seek(fi.Size()-maxTail, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return "weed log " + s.log + " (tail):\n" + strings.TrimSpace(string(b))
}

// Addr returns the S3 gateway's host:port, the target to give NewFaultProxy.
func (s *Server) Addr() string { return strings.TrimPrefix(s.Endpoint, "http://") }

// Pid is the running weed process's id, 0 when it is stopped; the bench
// reads its CPU time.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}
