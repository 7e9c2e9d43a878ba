# The README's commands: `make demo` and `make test`. Everything installs what
# it needs itself (Go modules come through the module proxy).

GO       ?= go
BIN      := bin
PKGS_UNIT = $(shell $(GO) list ./... | grep -v /test/e2e)

.PHONY: all build demo test vet lint unit e2e fuzz bench bench-quick bench-micro clean

all: build

# weft-proxy runs beside every workload, so its resident memory counts many
# times over; most of it is the pages of its own executable (the kernel maps
# 64 KiB around every page touched), so a smaller binary is less RSS.
# Measured with make bench-quick (docs/PERFORMANCE.md):
#   -tags grpcnotrace  leaves out grpc's golang.org/x/net/trace, whose
#                      html/template makes the linker keep every exported
#                      method of every type (all the Envoy protos' validators):
#                      35 -> 21 MB file, about 4.5 MiB less RSS;
#   CGO_ENABLED=0      a static binary without libc and ld.so mapped: 1.8 MiB;
#   -trimpath, -s -w   reproducible, and 21 -> 15 MB on disk; no RSS change
#                      (symbols and DWARF are never loaded). Stack traces and
#                      pprof still work; for a debugger, go build it plainly.
# bench/meshbench builds weft-proxy with the same flags (proxyBuildFlags).
PROXY_BUILD_FLAGS := -trimpath -tags grpcnotrace -ldflags '-s -w'

build:
	$(GO) build -o $(BIN)/weft ./cmd/weft
	CGO_ENABLED=0 $(GO) build $(PROXY_BUILD_FLAGS) -o $(BIN)/weft-proxy ./cmd/weft-proxy

# Control plane, sidecars and demo services on loopback; Ctrl-C stops it all.
demo: build
	$(BIN)/weft demo

test: vet lint unit fuzz e2e

vet:
	$(GO) vet ./...

STATICCHECK_VERSION := v0.8.2
lint:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

unit:
	$(GO) test -race -count=1 $(PKGS_UNIT)

# Whole-system tests over real processes and sockets; they build the binaries.
e2e:
	$(GO) test -count=1 -timeout 15m ./test/e2e/...

# Fuzz the parsers of untrusted input for a bounded number of runs each; the seed
# corpora live in each package's testdata/fuzz and run with every unit test.
# Budgets are execution counts, about 10 s each on a quiet 2-core machine
# (FUZZTIME=30s, say, overrides them all): with a duration, go1.26's fuzz
# coordinator can fail a clean run with "context deadline exceeded" at the
# deadline (golang/go#75804, fixed in go1.27), as one make test here did.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),30000x) ./internal/config/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(or $(FUZZTIME),80000x) ./internal/proxy/xdsclient/
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizePath$$' -fuzztime $(or $(FUZZTIME),200000x) ./internal/proxy/normalize/
	$(GO) test -run '^$$' -fuzz '^FuzzRBACMatch$$' -fuzztime $(or $(FUZZTIME),60000x) ./internal/proxy/filter/rbac/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),60000x) ./internal/jwks/
	$(GO) test -run '^$$' -fuzz '^FuzzFramingAgreesWithNetHTTP$$' -fuzztime $(or $(FUZZTIME),30000x) ./internal/proxy/framing/
	$(GO) test -run '^$$' -fuzz '^FuzzOwnLoopAgreesWithNetHTTP$$' -fuzztime $(or $(FUZZTIME),20000x) ./internal/proxy/listener/
	$(GO) test -run '^$$' -fuzz '^FuzzOwnServerAgreesWithNetHTTP$$' -fuzztime $(or $(FUZZTIME),12000x) ./internal/proxy/h2server/
	$(GO) test -run '^$$' -fuzz '^FuzzResponseAgreesWithNetHTTP$$' -fuzztime $(or $(FUZZTIME),100000x) ./internal/proxy/forward/
	$(GO) test -run '^$$' -fuzz '^FuzzFrameReader$$' -fuzztime $(or $(FUZZTIME),100000x) ./internal/proxy/h2frame/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(or $(FUZZTIME),100000x) ./internal/proxy/requri/

# The benchmark against nginx (bench/, results in docs/PERFORMANCE.md and
# bench/results/): fortio, weft and nginx on loopback, under 5 minutes. It
# installs fortio into bench/.tools and, as root, nginx-light with apt-get.
bench:
	$(GO) run ./bench/cmd/meshbench -mode full -command 'make bench'

# One short round of the same, under a minute; prints the table and writes
# bench/results/ but leaves docs/PERFORMANCE.md alone.
bench-quick:
	$(GO) run ./bench/cmd/meshbench -mode quick -command 'make bench-quick'

# The proxy's Go micro-benchmarks (go test -bench); their table goes into
# docs/PERFORMANCE.md too.
bench-micro:
	$(GO) run ./bench/cmd/meshbench -micro

# The control plane at scale (bench/cp, results in docs/PERFORMANCE.md and
# bench/results/cp-*.json): the real `weft control-plane` against simulated
# proxies on real ADS streams over TLS. bench-cp runs 1,000 proxies on the
# quick mesh, then issue 4's full size (1,000 proxies / 1,000 services /
# 10,000 endpoints), which stops at a 4-minute bound or when the control
# plane's RSS passes 8 GiB, and records how far it got; about 5 minutes.
.PHONY: bench-cp bench-cp-quick
bench-cp: build
	$(GO) run ./bench/cp/cmd/cpbench -mode 1000-proxies -command 'make bench-cp'
	$(GO) run ./bench/cp/cmd/cpbench -mode full -command 'make bench-cp'

# 100 proxies / 100 services / 1,000 endpoints, under a minute.
bench-cp-quick: build
	$(GO) run ./bench/cp/cmd/cpbench -mode quick -command 'make bench-cp-quick'

clean:
	rm -rf $(BIN)
