package meshbench

import (
	"os"
	"strings"
	"testing"
)

// The harness measures the weft-proxy that `make build` makes: its build
// flags change the proxy's memory.
func TestProxyBuildFlagsMatchTheMakefile(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	var flags, build string
	for _, line := range strings.Split(string(mk), "\n") {
		if v, ok := strings.CutPrefix(line, "PROXY_BUILD_FLAGS :="); ok {
			flags = strings.TrimSpace(v)
		}
		if strings.Contains(line, "-o $(BIN)/weft-proxy") {
			build = line
		}
	}
	want := "-trimpath -tags grpcnotrace -ldflags '-s -w'"
	got := strings.Join(proxyBuildFlags[:4], " ") + " '" + proxyBuildFlags[4] + "'"
	if flags != want || got != want {
		t.Errorf("Makefile PROXY_BUILD_FLAGS = %q, harness %q; both want %q (update the two together)", flags, got, want)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "$(PROXY_BUILD_FLAGS)") {
		t.Errorf("the Makefile builds weft-proxy with %q, want CGO_ENABLED=0 and $(PROXY_BUILD_FLAGS), as the harness does", build)
	}
}
