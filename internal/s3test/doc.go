// Package s3test runs a real S3-compatible server for tests: SeaweedFS's
// weed binary, one process holding master, volume server, filer and S3
// gateway, in a temporary directory of its own.
//
// Every port weed opens is chosen free and passed explicitly, including the
// gRPC ports: weed names its local gRPC Unix sockets in /tmp after them and
// removes a "stale" socket of the same name before binding, so two runs
// sharing a gRPC port would steal each other's socket. Telemetry is off and
// volumes are small, so a server fits in little disk and memory.
//
// The S3 gateway knows two identities: an admin key, which may create
// buckets, and an ordinary key that may read, write and list the objects of
// every bucket but not create one. Code under test uses the ordinary key;
// tests create buckets with Bucket. SeaweedFS's creation of missing buckets
// on upload (for admin keys) is off, so a missing bucket is NoSuchBucket as
// on S3.
//
// Over plain HTTP the AWS SDK signs the SHA-256 of every payload, so a body
// damaged in transit fails that check first (XAmzContentSHA256Mismatch);
// with UnsignedPayload the server verifies the body against the SDK's
// CRC32C/CRC32 header instead and answers BadDigest.
//
// weed is slow to stop and restart, for reasons of its own: a SIGINT takes
// about 16 s (the filer waits for a volume that has already stopped), and a
// restarted master refuses writes for 15 s while volume servers report.
//
// The binary is $PGVERBS_WEED, else ~/.cache/pgverbs-weed/weed (.ci/run
// builds it from internal/tools/weed). Without one, Start skips the test,
// unless PGTEST_REQUIRE=1 (as in CI), where it fails instead.
//
// FaultProxy sits between a client and the server and damages the traffic
// on demand: it flips a byte of chosen request bodies, so that the server's
// checksum verification refuses them, and it cuts connections.
package s3test
