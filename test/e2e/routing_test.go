package e2e

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const reviewsSubsets = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`

func splitVS(v2, v1 int) string {
	return fmt.Sprintf(`
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
      weight: %d
    - destination:
        host: reviews
        subset: v1
      weight: %d
`, v2, v1)
}

// mesh is the common topology: reviews v1 and v2, each behind a sidecar,
// and a productpage sidecar whose outbound listener the tests send through.
type meshFixture struct {
	cp          *controlPlane
	reviewsV1   *sidecar
	reviewsV2   *sidecar
	productpage *sidecar
	client      *http.Client
}

func startMesh(t *testing.T, grace time.Duration) *meshFixture {
	t.Helper()
	m := &meshFixture{cp: startControlPlane(t, grace)}
	m.reviewsV1 = startSidecar(t, m.cp, "reviews", "app=reviews,version=v1", startBackend(t, "reviews-v1").addr)
	m.reviewsV2 = startSidecar(t, m.cp, "reviews", "app=reviews,version=v2", startBackend(t, "reviews-v2").addr)
	m.productpage = startSidecar(t, m.cp, "productpage", "app=productpage,version=v1", startBackend(t, "productpage").addr)
	m.client = m.productpage.client()
	// Every endpoint is known to the client's proxy once round-robin reaches
	// both versions.
	eventually(t, 10*time.Second, "both reviews instances reachable", func() error {
		got := map[string]int{}
		for i := 0; i < 4; i++ {
			_, body, err := get(m.client, "http://reviews:9080/", nil)
			if err != nil {
				return err
			}
			got[body]++
		}
		if got["reviews-v1"] == 0 || got["reviews-v2"] == 0 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	return m
}

// counts sends n requests to url and counts answers by body; any failure
// fails the test.
func (m *meshFixture) counts(t *testing.T, n int, target string, header http.Header) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := 0; i < n; i++ {
		code, body, err := get(m.client, target, header)
		if err != nil || code != http.StatusOK {
			t.Fatalf("request %d to %s: %d %q %v", i, target, code, body, err)
		}
		got[body]++
	}
	return got
}

// waitForRouting waits until n consecutive requests all land on want.
func (m *meshFixture) waitFor(t *testing.T, target string, header http.Header, want string) {
	t.Helper()
	eventually(t, 10*time.Second, "requests reach "+want, func() error {
		for i := 0; i < 20; i++ {
			code, body, err := get(m.client, target, header)
			if err != nil {
				return err
			}
			if code != http.StatusOK || body != want {
				return fmt.Errorf("got %d %q", code, body)
			}
		}
		return nil
	})
}

func TestWeightedSplit(t *testing.T) {
	m := startMesh(t, 10*time.Second)
	m.cp.apply(t, reviewsSubsets+"---"+splitVS(80, 20))
	// The split is in place once both versions answer.
	eventually(t, 10*time.Second, "both versions answer", func() error {
		got := m.counts(t, 50, "http://reviews:9080/", nil)
		if got["reviews-v1"] == 0 || got["reviews-v2"] == 0 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})

	got := m.counts(t, 2000, "http://reviews:9080/", nil)
	v2 := 100 * float64(got["reviews-v2"]) / 2000
	t.Logf("2000 requests: %v (v2 %.1f%%)", got, v2)
	if math.Abs(v2-80) > 4 {
		t.Fatalf("v2 got %.1f%% of requests, want 80%% ± 4", v2)
	}
}

func TestSplitChangesLiveWithoutErrors(t *testing.T) {
	m := startMesh(t, 10*time.Second)
	m.cp.apply(t, reviewsSubsets+"---"+splitVS(80, 20))
	eventually(t, 10*time.Second, "v1 answers", func() error {
		if got := m.counts(t, 50, "http://reviews:9080/", nil); got["reviews-v1"] == 0 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})

	// Traffic flows from four clients while the split changes under them.
	var failures, total atomic.Int64
	var mu sync.Mutex
	var lastV1 time.Time
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ { // bounded; stopped long before
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := get(m.client, "http://reviews:9080/", nil)
				total.Add(1)
				if err != nil || code != http.StatusOK {
					failures.Add(1)
					t.Errorf("request failed during the switch: %d %q %v", code, body, err)
					continue
				}
				if body == "reviews-v1" {
					mu.Lock()
					lastV1 = time.Now()
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	applied := time.Now()
	m.cp.apply(t, splitVS(100, 0))
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	lag := lastV1.Sub(applied)
	mu.Unlock()
	t.Logf("%d requests, %d failed; last v1 answer %s after the apply", total.Load(), failures.Load(), lag)
	if failures.Load() > 0 {
		t.Fatalf("%d of %d requests failed during the switch", failures.Load(), total.Load())
	}
	if lag > 2*time.Second {
		t.Fatalf("v1 still answered %s after the apply, want within 2s", lag)
	}
	if got := m.counts(t, 200, "http://reviews:9080/", nil); got["reviews-v2"] != 200 {
		t.Fatalf("after the switch: %v, want all on v2", got)
	}
}

func TestHeaderMatchRoutesJasonToV2(t *testing.T) {
	m := startMesh(t, 10*time.Second)
	// As in Istio's request-routing task.
	m.cp.apply(t, reviewsSubsets+`---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
`)
	jason := http.Header{"End-User": {"jason"}}
	m.waitFor(t, "http://reviews:9080/", jason, "reviews-v2")
	m.waitFor(t, "http://reviews:9080/", nil, "reviews-v1")
	tests := []struct {
		name   string
		header http.Header
		want   string
	}{
		{"jason goes to v2", jason, "reviews-v2"},
		{"another user goes to v1", http.Header{"End-User": {"alice"}}, "reviews-v1"},
		{"no user goes to v1", nil, "reviews-v1"},
		{"the header value is case sensitive", http.Header{"End-User": {"Jason"}}, "reviews-v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := m.counts(t, 50, "http://reviews:9080/", tt.header)
			if got[tt.want] != 50 {
				t.Fatalf("got %v, want all 50 on %s", got, tt.want)
			}
		})
	}
	t.Run("every name of the service routes the same", func(t *testing.T) {
		for _, host := range []string{"reviews", "reviews:9080", "reviews.default", "reviews.default.svc.cluster.local:9080", "REVIEWS.Default"} {
			got := m.counts(t, 10, "http://"+host+"/", jason)
			if got["reviews-v2"] != 10 {
				t.Errorf("host %s: got %v, want v2", host, got)
			}
		}
	})
}

func TestLocalRepliesAreClear(t *testing.T) {
	m := startMesh(t, 10*time.Second)
	m.cp.apply(t, reviewsSubsets+`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - match:
    - uri:
        prefix: /v3
    route:
    - destination: {host: reviews, subset: v3}
  - match:
    - uri:
        prefix: /v1
    route:
    - destination: {host: reviews, subset: v1}
`)
	m.waitFor(t, "http://reviews:9080/v1/x", nil, "reviews-v1")
	tests := []struct {
		name   string
		target string
		code   int
		body   string
	}{
		{"an unknown host gets 404", "http://nosuch:9080/", http.StatusNotFound, "nosuch"},
		{"a path no route matches gets 404", "http://reviews:9080/other", http.StatusNotFound, "route"},
		{"a subset without a cluster gets 503 naming it", "http://reviews:9080/v3", http.StatusServiceUnavailable, "outbound|9080|v3|reviews.default.svc.cluster.local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, err := get(m.client, tt.target, nil)
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || !strings.Contains(body, tt.body) {
				t.Fatalf("got %d %q, want %d and a body naming %q", code, body, tt.code, tt.body)
			}
		})
	}
}
