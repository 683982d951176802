// SeaweedFS's weed binary, the S3-compatible server the object-storage tests
// run (internal/s3test). A module of its own so that pgverbs's go.mod never
// carries SeaweedFS's dependencies; .ci/run builds it once and caches it.
module github.com/pgverbs/pgverbs/internal/tools/weed

go 1.26.6

require github.com/seaweedfs/seaweedfs v0.0.0-20261109003541-7506e5f91cd6

// SeaweedFS's own go.mod replaces go-bip39 (its original repository is gone);
// replace directives of a dependency do not apply, so repeat it here.
replace github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0
