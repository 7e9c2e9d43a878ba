package cluster

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func endpoints(addrs ...string) []Endpoint {
	eps := make([]Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = Endpoint{Address: a}
	}
	return eps
}

func TestPickRoundRobin(t *testing.T) {
	tests := []struct {
		name  string
		addrs []string
		picks int
	}{
		{"one endpoint is always picked", []string{"a:1"}, 5},
		{"three endpoints are picked in turn", []string{"a:1", "b:1", "c:1"}, 9},
		{"many rounds visit every endpoint equally", []string{"a:1", "b:1", "c:1", "d:1", "e:1"}, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New("outbound|80||x", time.Second, endpoints(tt.addrs...), nil)
			first, _ := c.Pick()
			start := -1
			for i, a := range tt.addrs {
				if a == first.Address {
					start = i
				}
			}
			if start < 0 {
				t.Fatalf("first pick %q is not an endpoint", first.Address)
			}
			for i := 1; i < tt.picks; i++ {
				ep, ok := c.Pick()
				if !ok {
					t.Fatal("Pick reported no endpoints")
				}
				if want := tt.addrs[(start+i)%len(tt.addrs)]; ep.Address != want {
					t.Fatalf("pick %d = %q, want %q", i, ep.Address, want)
				}
			}
		})
	}
}

func TestPickWithoutEndpoints(t *testing.T) {
	c := New("outbound|80||empty", 0, nil, nil)
	if ep, ok := c.Pick(); ok {
		t.Errorf("Pick() = %v, true; want false for a cluster without endpoints", ep)
	}
	if got := c.ConnectTimeout(); got != DefaultConnectTimeout {
		t.Errorf("ConnectTimeout() = %v, want the default %v", got, DefaultConnectTimeout)
	}
}

func TestConcurrentPicksStayBalanced(t *testing.T) {
	c := New("outbound|80||x", time.Second, endpoints("a:1", "b:1", "c:1", "d:1"), nil)
	const workers, perWorker = 8, 1000
	counts := make([]map[string]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		counts[w] = map[string]int{}
		wg.Go(func() {
			for range perWorker {
				ep, _ := c.Pick()
				counts[w][ep.Address]++
			}
		})
	}
	wg.Wait()
	total := map[string]int{}
	for _, m := range counts {
		for a, n := range m {
			total[a] += n
		}
	}
	// One atomic counter hands out consecutive positions, so concurrent
	// picks are exactly balanced.
	for _, a := range []string{"a:1", "b:1", "c:1", "d:1"} {
		if total[a] != workers*perWorker/4 {
			t.Errorf("endpoint %s picked %d times, want %d", a, total[a], workers*perWorker/4)
		}
	}
}

func TestMarshalJSON(t *testing.T) {
	b, err := json.Marshal(New("inbound|80||", 250*time.Millisecond, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"inbound|80||","connect_timeout":"250ms","endpoints":[]}`
	if string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
}

func BenchmarkPick(b *testing.B) {
	c := New("outbound|80||x", time.Second, endpoints("a:1", "b:1", "c:1"), nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Pick()
		}
	})
}
