# ktd — see README.md. Every target works from a fresh clone with Go 1.26.

GO        ?= go

# testcontainers: its reaper is an image from a registry (none is reachable), and
# it would reach published ports through this machine's default gateway.
export TESTCONTAINERS_RYUK_DISABLED ?= true
export TESTCONTAINERS_HOST_OVERRIDE ?= 127.0.0.1
BIN       := bin
BENCHCOUNT ?= 5
PKGS      := ./...

.PHONY: all build install image images compose-demo fresh-test run test pgdeps check race examples unit fuzz fuzz-long bench bench-kt load repl-load conformance fdw demo bench-fdw sim crash soak clean

all: build

build:
	$(GO) build -buildvcs=auto -o $(BIN)/ktd ./cmd/ktd
	$(GO) build -o $(BIN)/ktconform ./cmd/ktconform
	$(GO) build -o $(BIN)/ktload ./harness/cmd/ktload
	$(GO) build -o $(BIN)/ktrepl ./harness/cmd/ktrepl
	$(GO) build -o $(BIN)/fdwtest ./cmd/fdwtest
	$(GO) build -o $(BIN)/popsim ./harness/cmd/popsim
	$(GO) build -o $(BIN)/ktcrash ./harness/cmd/ktcrash
	$(GO) build -o $(BIN)/ktsoak ./harness/cmd/ktsoak

# install: ktd into $(DESTDIR)$(PREFIX)/bin, its systemd unit into
# $(PREFIX)/lib/systemd/system, /etc/default/ktd (kept when it exists) and a
# logrotate rule. Then: systemctl daemon-reload && systemctl enable --now ktd.
PREFIX  ?= /usr/local
DESTDIR ?=
install:
	$(GO) build -buildvcs=auto -o $(BIN)/ktd ./cmd/ktd
	install -D -m 0755 $(BIN)/ktd $(DESTDIR)$(PREFIX)/bin/ktd
	mkdir -p $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|@BINDIR@|$(PREFIX)/bin|g' packaging/ktd.service > $(DESTDIR)$(PREFIX)/lib/systemd/system/ktd.service
	chmod 0644 $(DESTDIR)$(PREFIX)/lib/systemd/system/ktd.service
	[ -e $(DESTDIR)/etc/default/ktd ] || install -D -m 0644 packaging/ktd.default $(DESTDIR)/etc/default/ktd
	install -D -m 0644 packaging/ktd.logrotate $(DESTDIR)/etc/logrotate.d/ktd

# image: the ktd container image ($(IMAGE)): a static ktd on an empty base, a
# non-root user, a /data volume, a health check (ktd health). Needs a Docker
# engine (scripts/docker-up.sh installs and starts one as root).
IMAGE ?= ktd:dev
image:
	./scripts/docker-up.sh
	rm -rf $(BIN)/image && mkdir -p $(BIN)/image/data
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -trimpath -o $(BIN)/image/ktd ./cmd/ktd
	cp deploy/docker/ktd.Dockerfile $(BIN)/image/Dockerfile
	printf 'root:x:0:0:root:/:/ktd\nktd:x:65532:65532:ktd:/data:/ktd\n' > $(BIN)/image/passwd
	printf 'root:x:0:\nktd:x:65532:\n' > $(BIN)/image/group
	DOCKER_BUILDKIT=0 docker build -q -t $(IMAGE) $(BIN)/image

# images: every image the container tests and the compose demo use (the ktd
# image, a debootstrapped Debian base, PostgreSQL 15 with kt_fdw), each built
# only when missing. make test runs the container tests when they exist.
images:
	./scripts/images.sh

# compose-demo: the rules pipeline in containers (deploy/compose): PostgreSQL
# with kt_fdw, a ktd master, three PoP replicas; writes rules through
# PostgreSQL, verifies every replica, tears it all down.
compose-demo: images
	$(GO) build -buildvcs=auto -o $(BIN)/ktd ./cmd/ktd
	./deploy/compose/demo.sh

# fresh-test: the README's two commands (make run, make test) on a fresh
# Debian (a debootstrapped container); not part of make test.
fresh-test:
	./scripts/fresh-test.sh

# run: ktd on 127.0.0.1:1978 with a file (Pebble) database under ./data.
run: build
	mkdir -p data
	./$(BIN)/ktd -host 127.0.0.1 -port 1978 -ls data/casket.kct

# test: the whole suite, as CI runs it: gofmt, go vet and staticcheck, every test
# with the race detector (kt_fdw's pg_regress suite and the PostgreSQL
# pipeline included), then a short run of every fuzz target.
test: pgdeps check race examples fuzz

# pgdeps: PostgreSQL 15 server binaries and headers for kt_fdw (installed
# with apt-get when run as root, else named).
pgdeps:
	./scripts/pgdeps.sh

# check: gofmt, go vet and staticcheck (installed into bin/ at a pinned version
# from the Go module proxy the first time).
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(BIN)/staticcheck-$(STATICCHECK_VERSION)

check: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

$(STATICCHECK):
	mkdir -p $(BIN)
	GOBIN=$(CURDIR)/$(BIN)/.staticcheck $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(BIN)/.staticcheck/staticcheck $@
	rmdir $(BIN)/.staticcheck

race:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

# examples: the module under examples/, which uses ktd through its public
# packages only (ktdtest, ktserver), as another project would.
examples:
	cd examples && $(GO) vet ./... && $(GO) test -race -count=1 ./...

unit:
	$(GO) test -count=1 $(PKGS)

# fuzz: every fuzz target for a fixed number of executions (about 20 s
# each here). Counts, not durations: with a duration, Go 1.26's fuzzing
# coordinator can report a spurious "context deadline exceeded" when the
# time runs out during a minimization (go.dev/issue/75804). FUZZTIME=30s
# (or any go test -fuzztime value) overrides the counts for every target.
FUZZ_TARGETS := \
	./internal/ktproto:FuzzReadRequest:400000x \
	./internal/ktproto:FuzzParseTSV:300000x \
	./internal/ktproto:FuzzColEnc:600000x \
	./internal/ktproto:FuzzBinaryFrames:300000x \
	./internal/ktproto:FuzzReadResponse:200000x \
	./internal/ktproto:FuzzURLCodec:400000x \
	./internal/ktproto:FuzzParseKTTime:500000x \
	./internal/txtar:FuzzEscape:150000x \
	./internal/posixre:FuzzRegexp:250000x \
	./internal/posixre:FuzzPOSIXSubset:150000x \
	./replication:FuzzDecodeMessage:100000x \
	./replication:FuzzReadFrame:100000x \
	./replication:FuzzReadCheckedFrame:100000x \
	./replication:FuzzReadULogFile:100000x \
	./internal/script:FuzzPlayScript:10000x \
	./internal/script:FuzzKCCodecs:30000x \
	./internal/store:FuzzDecodeBatch:150000x \
	./internal/store:FuzzCheckOptionsText:150000x \
	./internal/snapfile:FuzzReader:200000x \
	./internal/lzo:FuzzDecompress:350000x

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; n=$${rest#*:}; \
		budget=$${FUZZTIME:-$$n}; \
		echo "fuzz $$name ($$budget)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget -fuzzminimizetime 5s -timeout 10m $$pkg; \
	done

fuzz-long:
	$(MAKE) fuzz FUZZTIME=5m

# bench: Go benchmarks of the hot paths, with allocations.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./internal/... ./ktserver | tee bench.txt

# bench-fdw: the pipeline's write speed through PostgreSQL and kt_fdw into a
# durable ktd: 10 000 rows in one transaction, and 1 000 single-row
# autocommit inserts from 1 and 4 sessions, direct and through the rules
# table (fdwbridge/bench_test.go). Three runs of each.
bench-fdw: pgdeps
	$(GO) test -run '^$$' -bench 'OneTx' -benchtime 3x -count 3 ./fdwbridge | tee bench-fdw.txt
	$(GO) test -run '^$$' -bench 'Autocommit' -benchtime 1000x -count 3 ./fdwbridge | tee -a bench-fdw.txt

# sim: the PoP replication simulation's default scenario (about a minute):
# a master and 23 PoP replicas as ktd processes, 2 000 writes/s, faults;
# report in popsim-out/. SIM_FLAGS passes more flags (bin/popsim -h).
sim: build
	./$(BIN)/popsim -ktd $(BIN)/ktd $(SIM_FLAGS)

# crash: the crash loop (README, "Tests"): 50 rounds of kill -9 of the
# master or a replica under a write storm, then a timed restart at 1 M keys
# (about 3 minutes). CRASH_FLAGS changes it.
CRASH_FLAGS ?= -rounds 50 -preload 1000000
crash: build
	./$(BIN)/ktcrash -ktd $(BIN)/ktd $(CRASH_FLAGS)

# soak: the soak test (README, "Soak"): a master and 2 replicas under
# mixed load at 80 % of the measured peak for 10 minutes; memory,
# goroutines, descriptors, latency and lag must stay flat (a 60 s run is
# in make test). Report in soak-out/. SOAK_FLAGS changes it (bin/ktsoak -h).
SOAK_FLAGS ?= -duration 10m -replicas 2
soak: build
	./$(BIN)/ktsoak -ktd $(BIN)/ktd $(SOAK_FLAGS)

# bench-kt: the loads the real KT 0.9.56 was measured with here (wrk get/set
# on '*' and on a file database, ktremotetest's binary bulk set, replica CPU
# per applied write; BIG=1 adds 2 M keys), printed as a table beside KT's
# recorded figures with ratios, after a Redis run that times the machine when
# redis-server is installed (about 5 minutes; scripts/bench-kt.sh).
bench-kt: build
	./scripts/bench-kt.sh

# load: wrk and binary load runs against a fresh ktd; see scripts/load.sh.
load: build
	./scripts/load.sh

# repl-load: replication lag, catch-up, bootstrap and master overhead
# against real ktd processes; see scripts/repl-load.sh.
repl-load: build
	./scripts/repl-load.sh

# conformance: replay the real KT recordings against ktd in-process, or
# against KT_ADDR=host:port when set.
conformance: build
	./$(BIN)/ktconform $(if $(KT_ADDR),-addr $(KT_ADDR))

# fdw: build kt_fdw and install it into the local PostgreSQL (writes into
# PostgreSQL's directories: run as root).
fdw: pgdeps
	$(MAKE) -C fdwbridge/kt_fdw
	$(MAKE) -C fdwbridge/kt_fdw install

# demo: the whole pipeline in one command: PostgreSQL with kt_fdw, a ktd
# master and 3 replicas, concurrent rule changes, then verification and a
# latency report (see README, "PostgreSQL pipeline"). FDWTEST_FLAGS passes
# more flags, e.g. FDWTEST_FLAGS="-replicas 5 -duration 30s".
demo: pgdeps build
	./$(BIN)/fdwtest -ktd $(BIN)/ktd $(FDWTEST_FLAGS)

clean:
	rm -rf $(BIN) bench.txt bench-fdw.txt
	$(MAKE) -C fdwbridge/kt_fdw clean 2>/dev/null || true
