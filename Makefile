# The README's commands: `make demo` and `make test`. Everything installs what
# it needs itself (Go modules come through the module proxy).

GO       ?= go
BIN      := bin
PKGS_UNIT = $(shell $(GO) list ./... | grep -v /test/e2e)

.PHONY: all build demo test vet unit e2e fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN)/weft ./cmd/weft
	$(GO) build -o $(BIN)/weft-proxy ./cmd/weft-proxy

# Control plane, sidecars and demo services on loopback; Ctrl-C stops it all.
demo: build
	$(BIN)/weft demo

test: vet unit e2e

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $(PKGS_UNIT)

# Whole-system tests over real processes and sockets; they build the binaries.
e2e:
	$(GO) test -count=1 -timeout 15m ./test/e2e/...

# Fuzz the parsers of untrusted input for a bounded time each.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/config/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/proxy/...

clean:
	rm -rf $(BIN)
