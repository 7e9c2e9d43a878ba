package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProxiesServeThroughControlPlaneOutage(t *testing.T) {
	m := startMesh(t, 10*time.Second)
	m.cp.apply(t, reviewsSubsets+"---"+splitVS(0, 100))
	m.waitFor(t, "http://reviews:9080/", nil, "reviews-v1")

	m.cp.stop(syscall.SIGKILL)
	// Give the proxies time to notice the stream is gone.
	time.Sleep(500 * time.Millisecond)
	got := m.counts(t, 200, "http://reviews:9080/", nil)
	if got["reviews-v1"] != 200 {
		t.Fatalf("during the outage: %v, want 200 answers from v1", got)
	}

	m.cp.start(t)
	out, err := m.cp.weft(t, "", "get", "virtualservices")
	if err != nil || !strings.Contains(out, "reviews") {
		t.Fatalf("after restart the VirtualService is gone: %v\n%s", err, out)
	}
	eventually(t, 20*time.Second, "all three proxies reconnect", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		proxies, err := m.cp.api.Proxies(ctx)
		if err != nil {
			return err
		}
		if len(proxies) != 3 {
			return fmt.Errorf("%d proxies connected", len(proxies))
		}
		return nil
	})
	m.cp.apply(t, splitVS(100, 0))
	m.waitFor(t, "http://reviews:9080/", nil, "reviews-v2")
}

func TestStoppedProxyLeavesAfterGracePeriod(t *testing.T) {
	const grace = 2 * time.Second
	m := startMesh(t, grace)
	second := startSidecar(t, m.cp, "reviews", "app=reviews,version=v1", startBackend(t, "reviews-v1b").addr)
	eventually(t, 10*time.Second, "both v1 instances answer", func() error {
		got := m.counts(t, 40, "http://reviews:9080/", nil)
		if got["reviews-v1b"] == 0 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})

	second.stop(syscall.SIGTERM)
	eventually(t, grace+10*time.Second, "the stopped workload is deregistered", func() error {
		out, err := m.cp.weft(t, "", "get", "workloads")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if strings.Contains(out, second.inboundAddr) {
			return fmt.Errorf("still listed:\n%s", out)
		}
		return nil
	})
	// Once the removal is pushed, no request is sent to the dead endpoint.
	time.Sleep(500 * time.Millisecond)
	got := m.counts(t, 200, "http://reviews:9080/", nil)
	if got["reviews-v1b"] != 0 {
		t.Fatalf("the stopped workload still got requests: %v", got)
	}
}

func TestBadApplyChangesNothing(t *testing.T) {
	m := startMesh(t, 10*time.Second)
	m.cp.apply(t, reviewsSubsets+"---"+splitVS(0, 100))
	m.waitFor(t, "http://reviews:9080/", nil, "reviews-v1")
	before, err := m.cp.weft(t, "", "get", "vs", "reviews", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "weights that do not sum to 100",
			yaml: splitVS(70, 20),
			want: []string{"VirtualService default/reviews", "spec.http[0].route", "weights sum to 90, want 100"},
		},
		{
			name: "an unknown field",
			yaml: strings.Replace(splitVS(100, 0), "weight: 100", "wieght: 100", 1),
			want: []string{"VirtualService default/reviews", "spec.http[0].route[0].wieght", "unknown field"},
		},
		{
			name: "a bad regex",
			yaml: `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - match:
    - uri:
        regex: "/v[2"
    route:
    - destination: {host: reviews, subset: v2}
`,
			want: []string{"VirtualService default/reviews", "spec.http[0].match[0].uri.regex"},
		},
		{
			name: "a good document next to a bad one",
			yaml: splitVS(100, 0) + "---" + strings.Replace(reviewsSubsets, "host: reviews", "host: \"\"", 1),
			want: []string{"DestinationRule default/reviews", "spec.host"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused with resource, path and reason", func(t *testing.T) {
			out, err := m.cp.weft(t, tt.yaml, "apply", "-f", "-")
			if err == nil {
				t.Fatalf("apply succeeded:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	after, err := m.cp.weft(t, "", "get", "vs", "reviews", "-o", "yaml")
	if err != nil || after != before {
		t.Fatalf("stored config changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := m.counts(t, 100, "http://reviews:9080/", nil); got["reviews-v1"] != 100 {
		t.Fatalf("traffic changed after refused applies: %v", got)
	}
}

func TestUnenforceableConfigIsNackedAndOldConfigServes(t *testing.T) {
	m := startMesh(t, 10*time.Second)
	m.cp.apply(t, reviewsSubsets+"---"+splitVS(0, 100))
	m.waitFor(t, "http://reviews:9080/", nil, "reviews-v1")

	// Retries are valid Istio, translated to xDS, but not enforced by
	// weft-proxy yet: the proxies must refuse the route config.
	out, err := m.cp.weft(t, strings.Replace(splitVS(100, 0), "  - route:", "  - retries:\n      attempts: 3\n    route:", 1), "apply", "-f", "-")
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if !strings.Contains(out, "spec.http[0].retries") || !strings.Contains(out, "not enforced yet") {
		t.Errorf("apply did not warn that retries are not enforced:\n%s", out)
	}

	eventually(t, 10*time.Second, "proxy-status shows the NACK", func() error {
		out, err := m.cp.weft(t, "", "proxy-status")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(out, "NACK") || !strings.Contains(out, "retry") {
			return fmt.Errorf("no NACK yet:\n%s", out)
		}
		return nil
	})
	got := m.counts(t, 100, "http://reviews:9080/", nil)
	if got["reviews-v1"] != 100 {
		t.Fatalf("after the NACK traffic should follow the last good config (all v1): %v", got)
	}
	code, _, err := get(m.client, "http://reviews:9080/", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("request after NACK: %d %v", code, err)
	}
}
