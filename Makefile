# pgverbs build, test and benchmark entry points. See README.md.

GO      ?= go
BIN     := bin/pgverbs
PKGS    := ./...

.PHONY: all build test unit e2e lint fuzz bench weed run clean

all: build

build:
	$(GO) build -o $(BIN) .

# Unit and end-to-end tests; e2e tests start their own PostgreSQL clusters.
# The relay's tests run twice: in the default relay mode (the event loops
# on Linux) and on the goroutine relay that is its fallback.
RELAY_PKGS := ./proxy/ ./test/e2e/
# The object-storage and cross-instance e2e tests exercise the store and
# the locks between processes, not the relay (a standalone command's path
# through the relay is TestBaseBackupCommand's, run in both modes): the
# second run leaves them out.
STORAGE_TESTS := ^(TestBaseBackupStorage|TestStorageRestoreChain|TestBackupGet|TestBackupGetInterrupted|TestWALArchiveStorage|TestVerifyBackup|TestShowBackups|TestExtensionsAcrossInstances|TestBaseBackupAcrossInstances|TestWALArchiveSlotAcrossInstances|TestWALArchiveDirAcrossInstances)$$

test: lint
	$(GO) test -count=1 -timeout 30m $(PKGS)
	PGVERBS_RELAY_MODE=goroutines $(GO) test -count=1 -timeout 30m -skip '$(STORAGE_TESTS)' $(RELAY_PKGS)

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/e2e)

e2e:
	$(GO) test -count=1 -timeout 30m -v ./test/e2e/

lint:
	@fmt=$$(gofmt -l .); \
	if [ -n "$$fmt" ]; then echo "gofmt needed:"; echo "$$fmt"; exit 1; fi
	$(GO) vet $(PKGS)
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck $(PKGS); \
	elif [ -x "$$($(GO) env GOPATH)/bin/staticcheck" ]; then "$$($(GO) env GOPATH)/bin/staticcheck" $(PKGS); \
	else echo "staticcheck not installed; skipped (go install honnef.co/go/tools/cmd/staticcheck@v0.8.2)"; fi

# Short coverage-guided runs of every fuzz target, found in the test files
# (go test -fuzz takes one target at a time); the seed corpora also run in
# `make test`. FUZZTIME=5m make fuzz for longer runs.
FUZZTIME ?= 30s

fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "== $$t ($$(dirname $$f))"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$(dirname $$f)/; \
		done; \
	done

bench: build weed
	$(GO) run ./internal/tools/bench

# SeaweedFS's weed, the S3 server of the object-storage tests and benchmark
# (internal/s3test finds it here, or at $$PGVERBS_WEED as .ci/run sets it).
# Built once from the pinned module internal/tools/weed: about 6 minutes
# and 2.7 GB of RAM the first time.
WEED ?= $(HOME)/.cache/pgverbs-weed/weed

weed:
	@if [ -n "$$PGVERBS_WEED" ] && [ -x "$$PGVERBS_WEED" ]; then exit 0; fi; \
	if [ ! -x "$(WEED)" ]; then \
		echo "building $(WEED) (once; several minutes)"; mkdir -p "$$(dirname "$(WEED)")"; \
		cd internal/tools/weed && GOFLAGS="-mod=readonly -buildvcs=false" $(GO) build -o "$(WEED)" github.com/seaweedfs/seaweedfs/weed; \
	fi

# The example packages are served from examples/extensions; devrun adds a
# backup root (./backups, git-ignored) and the HTTP listener on loopback
# (127.0.0.1:9187, or a free port when that is taken) unless ARGS, the
# environment or a --config file set them. ARGS come last, so they win.
run: build
	$(GO) run ./internal/tools/devrun -- $(BIN) --extensions examples/extensions $(ARGS)

clean:
	rm -rf bin
