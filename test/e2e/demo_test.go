package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/demo"
)

// TestDemo runs `weft demo`'s whole topology (control plane, five apps and
// six sidecars as processes) for ten seconds of traffic.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	stats, err := demo.Run(ctx, demo.Options{
		WeftBinary:  filepath.Join(binDir, "weft"),
		ProxyBinary: filepath.Join(binDir, "weft-proxy"),
		Out:         &out,
		Duration:    10 * time.Second,
		Rate:        100,
	})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Logf("demo stats: %s", stats)
	if stats.Errors != 0 {
		t.Errorf("%d of %d requests failed; last: %s", stats.Errors, stats.Requests, stats.LastError)
	}
	if stats.Requests < 500 {
		t.Errorf("only %d requests in 10s at 100/s", stats.Requests)
	}
	if v2 := stats.Share("v2"); v2 < 0.70 || v2 > 0.90 {
		t.Errorf("v2 share %.2f, want about 0.80", v2)
	}
	for _, want := range []string{"weft apply", "http://127.0.0.1:", "req/s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
