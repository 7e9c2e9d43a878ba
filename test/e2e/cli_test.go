package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAnalyzeWorksOffline runs `weft analyze` with no control plane at all.
func TestAnalyzeWorksOffline(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(reviewsSubsets+"---"+strings.Replace(splitVS(80, 20), "  - route:", "  - fault:\n      delay:\n        fixedDelay: 1s\n        percentage: {value: 10}\n    route:", 1)), 0o644)
	os.WriteFile(bad, []byte(splitVS(80, 30)), 0o644)
	analyze := func(file string) (string, error) {
		cmd := exec.Command(filepath.Join(binDir, "weft"), "analyze", "-f", file)
		cmd.Env = append(os.Environ(), "WEFT_SERVER=http://127.0.0.1:1") // nothing there
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("valid resources pass and unenforced fields are reported", func(t *testing.T) {
		out, err := analyze(good)
		if err != nil {
			t.Fatalf("analyze failed: %v\n%s", err, out)
		}
		if !strings.Contains(out, "spec.http[0].fault") || !strings.Contains(out, "not enforced yet") {
			t.Fatalf("no warning about fault:\n%s", out)
		}
	})
	t.Run("invalid resources exit non-zero with resource, path and reason", func(t *testing.T) {
		out, err := analyze(bad)
		if err == nil {
			t.Fatalf("analyze succeeded on bad weights:\n%s", out)
		}
		if !strings.Contains(out, "VirtualService default/reviews: spec.http[0].route[1].weight: weights sum to 110, want 100") {
			t.Fatalf("unclear error:\n%s", out)
		}
	})
}

func TestCLIGetAndDelete(t *testing.T) {
	cp := startControlPlane(t, 10*time.Second)
	dir := t.TempDir()
	file := filepath.Join(dir, "reviews.yaml")
	os.WriteFile(file, []byte(reviewsSubsets+"---"+splitVS(80, 20)), 0o644)
	run := func(args ...string) string {
		t.Helper()
		out, err := cp.weft(t, "", args...)
		if err != nil {
			t.Fatalf("weft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	run("apply", "-f", dir)
	if out := run("get", "dr"); !strings.Contains(out, "v1,v2") {
		t.Errorf("get dr table lacks the subsets:\n%s", out)
	}
	if out := run("get", "virtualservice", "reviews", "-o", "json"); !strings.Contains(out, `"weight": 80`) {
		t.Errorf("get -o json lacks the weight:\n%s", out)
	}
	if out := run("get", "vs", "-n", "other"); strings.Contains(out, "reviews") {
		t.Errorf("namespace filter ignored:\n%s", out)
	}
	run("delete", "vs", "reviews")
	if out, err := cp.weft(t, "", "get", "vs", "reviews"); err == nil {
		t.Errorf("deleted VirtualService still served:\n%s", out)
	}
	if out := run("delete", "-f", file); !strings.Contains(out, "DestinationRule default/reviews deleted") || !strings.Contains(out, "VirtualService default/reviews not found") {
		t.Errorf("delete -f output:\n%s", out)
	}
}
