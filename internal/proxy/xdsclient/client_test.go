package xdsclient

import (
	"context"
	"regexp"
	"sync"
	"testing"
	"time"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/weft-mesh/weft/internal/proxy/internal/leakcheck"
	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// goodSnapshot is a complete, valid configuration.
func goodSnapshot(backend string) xdstest.Snapshot {
	l := xdstest.Listeners()
	return xdstest.Snapshot{
		Clusters:  []types.Resource{xdstest.EDSCluster(reviews), xdstest.StaticCluster("inbound|80||", "127.0.0.1:8080")},
		Endpoints: []types.Resource{xdstest.LoadAssignment(reviews, backend)},
		Listeners: []types.Resource{l[0], l[1]},
		Routes: []types.Resource{
			xdstest.RouteConfig("outbound", xdstest.VirtualHost("reviews", []string{"reviews"}, xdstest.PrefixRoute("/", reviews))),
			xdstest.InboundRoutes(80),
		},
	}
}

// updates collects what OnUpdate receives.
type updates struct {
	mu   sync.Mutex
	all  []Resources
	more chan struct{}
}

func newUpdates() *updates { return &updates{more: make(chan struct{}, 100)} }

func (u *updates) add(r Resources) {
	u.mu.Lock()
	u.all = append(u.all, r)
	u.mu.Unlock()
	select {
	case u.more <- struct{}{}:
	default:
	}
}

func (u *updates) last() (Resources, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.all) == 0 {
		return Resources{}, 0
	}
	return u.all[len(u.all)-1], len(u.all)
}

// waitComplete waits for an update that is complete at the given versions.
func (u *updates) waitComplete(ctx context.Context, t *testing.T, version string) Resources {
	t.Helper()
	for {
		if r, n := u.last(); n > 0 && r.Complete && r.Versions["CDS"] == version && r.Versions["EDS"] == version &&
			r.Versions["LDS"] == version && r.Versions["RDS"] == version && r.Versions["SDS"] == version {
			return r
		}
		select {
		case <-u.more:
		case <-ctx.Done():
			r, _ := u.last()
			t.Fatalf("no complete update at version %s; last: %+v", version, r.Versions)
		}
	}
}

// startClient runs a client against addr until the test ends.
func startClient(t *testing.T, addr string) (*Client, *updates) {
	t.Helper()
	u := newUpdates()
	c, err := New(Options{
		ControlPlane: addr,
		Node: NodeInfo{
			Service: "productpage", Namespace: "bookinfo", Labels: map[string]string{"version": "v1"}, ServicePort: 9080,
			InboundAddr: "127.0.0.1:15006", OutboundAddr: "127.0.0.1:15001", AppAddr: "127.0.0.1:9080", AdminAddr: "127.0.0.1:15000",
		},
		OnUpdate:   u.add,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c, u
}

func TestClientSubscribesWithNodeInContractOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := xdstest.NewServer(t, "127.0.0.1:0")
	c, _ := startClient(t, srv.Addr)

	srv.WaitRequest(ctx, t, "for SDS", func(r *discoverypb.DiscoveryRequest) bool { return r.GetTypeUrl() == SecretURL })
	reqs := srv.Requests()[:5]
	for i, want := range []string{ClusterURL, EndpointsURL, ListenerURL, RouteURL, SecretURL} {
		if got := reqs[i].GetTypeUrl(); got != want {
			t.Errorf("subscription %d is %s, want %s", i, got, want)
		}
		if n := len(reqs[i].GetResourceNames()); n != 0 {
			t.Errorf("subscription %d names %d resources, want a wildcard", i, n)
		}
	}
	node := reqs[0].GetNode()
	if !regexp.MustCompile(`^sidecar~productpage-[0-9a-f]{8}\.bookinfo$`).MatchString(node.GetId()) || node.GetId() != c.NodeID() {
		t.Errorf("node id = %q (client says %q), want sidecar~productpage-<8 hex>.bookinfo", node.GetId(), c.NodeID())
	}
	if node.GetCluster() != "productpage" || node.GetUserAgentName() != "weft-proxy" {
		t.Errorf("node cluster, user agent = %q, %q; want productpage, weft-proxy", node.GetCluster(), node.GetUserAgentName())
	}
	md := node.GetMetadata().AsMap()
	want := map[string]any{
		"service": "productpage", "namespace": "bookinfo", "labels": map[string]any{"version": "v1"}, "service_port": float64(9080),
		"inbound_addr": "127.0.0.1:15006", "outbound_addr": "127.0.0.1:15001", "app_addr": "127.0.0.1:9080", "admin_addr": "127.0.0.1:15000",
	}
	for k, v := range want {
		if got := md[k]; !equalJSON(got, v) {
			t.Errorf("metadata %s = %#v, want %#v", k, got, v)
		}
	}
}

func equalJSON(a, b any) bool {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		if len(am) != len(bm) {
			return false
		}
		for k := range am {
			if !equalJSON(am[k], bm[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestClientACKsGoodAndNACKsBadResponses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	srv := xdstest.NewServer(t, "127.0.0.1:0")
	c, u := startClient(t, srv.Addr)

	srv.Push(t, "1", goodSnapshot("10.0.0.1:9080"))
	u.waitComplete(ctx, t, "1")
	for _, url := range []string{ClusterURL, EndpointsURL, ListenerURL, RouteURL} {
		srv.WaitRequest(ctx, t, "ACKing "+url+" version 1", xdstest.IsACK(url, "1"))
	}

	// Version 2 changes the endpoints (valid) and adds a retry policy
	// (invalid): EDS moves to 2, RDS is NACKed and stays at 1.
	bad := goodSnapshot("10.0.0.2:9080")
	retry := xdstest.PrefixRoute("/", reviews)
	retry.GetRoute().RetryPolicy = &routepb.RetryPolicy{RetryOn: "5xx"}
	bad.Routes[0] = xdstest.RouteConfig("outbound", xdstest.VirtualHost("reviews", []string{"reviews"}, retry))
	srv.Push(t, "2", bad)
	const msg = "route outbound: virtual_hosts[0].routes[0].route.retry_policy: not supported"
	nack := srv.WaitRequest(ctx, t, "NACKing RDS version 2", xdstest.IsNACK(RouteURL, msg))
	if nack.GetVersionInfo() != "1" {
		t.Errorf("NACK carries version %q, want the last good version \"1\"", nack.GetVersionInfo())
	}
	srv.WaitRequest(ctx, t, "ACKing EDS version 2", xdstest.IsACK(EndpointsURL, "2"))

	r, _ := u.last()
	if r.Versions["RDS"] != "1" || r.Versions["EDS"] != "2" {
		t.Errorf("versions in use = %v, want RDS 1 and EDS 2", r.Versions)
	}
	if got := r.Endpoints[reviews].Endpoints[0].Address; got != "10.0.0.2:9080" {
		t.Errorf("endpoint = %s, want the version 2 endpoint", got)
	}
	if r.Routes["outbound"] == nil {
		t.Error("the version 1 route configuration was dropped")
	}
	st := c.Status().Types[TypeRoute]
	if st.VersionReceived != "2" || st.VersionAcked != "1" || st.LastNACK != msg || st.Rejected == 0 {
		t.Errorf("RDS status = %+v, want received 2, acked 1 and the NACK message", st)
	}

	// A fixed version 3 is accepted as a whole.
	srv.Push(t, "3", goodSnapshot("10.0.0.3:9080"))
	u.waitComplete(ctx, t, "3")
	srv.WaitRequest(ctx, t, "ACKing RDS version 3", xdstest.IsACK(RouteURL, "3"))
}

func TestClientPacesRepeatedNACKs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	srv := xdstest.NewServer(t, "127.0.0.1:0")
	_, u := startClient(t, srv.Addr)
	srv.Push(t, "1", goodSnapshot("10.0.0.1:9080"))
	u.waitComplete(ctx, t, "1")

	bad := goodSnapshot("10.0.0.1:9080")
	bad.Clusters[0].(*clusterpb.Cluster).LbPolicy = clusterpb.Cluster_MAGLEV
	srv.Push(t, "2", bad)
	const msg = "cluster " + reviews + ": lb_policy: MAGLEV not supported, want ROUND_ROBIN"
	srv.WaitRequest(ctx, t, "NACKing CDS version 2", xdstest.IsNACK(ClusterURL, msg))

	// go-control-plane resends version 2 for every NACK (which carries
	// version 1). Unpaced, that is thousands of NACKs a second; paced, the
	// second NACK waits a second and the third two more.
	time.Sleep(1500 * time.Millisecond)
	n := 0
	for _, r := range srv.Requests() {
		if xdstest.IsNACK(ClusterURL, msg)(r) {
			n++
		}
	}
	if n < 1 || n > 3 {
		t.Errorf("%d NACKs of the same version in 1.5s, want 1 to 3", n)
	}
}

func TestClientReconnectsAndKeepsConfigMeanwhile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	srv := xdstest.NewServer(t, "127.0.0.1:0")
	c, u := startClient(t, srv.Addr)
	srv.Push(t, "1", goodSnapshot("10.0.0.1:9080"))
	u.waitComplete(ctx, t, "1")
	_, updatesBefore := u.last()

	srv.Stop()
	for c.Status().Connected {
		select {
		case <-ctx.Done():
			t.Fatal("client still reports connected after the server stopped")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, n := u.last(); n != updatesBefore {
		t.Errorf("losing the control plane produced %d updates; want none", n-updatesBefore)
	}

	// A new control plane on the same address: the client comes back, and
	// says which versions it already has.
	srv2 := xdstest.NewServer(t, srv.Addr)
	srv2.Push(t, "7", goodSnapshot("10.0.0.7:9080"))
	r := u.waitComplete(ctx, t, "7")
	if got := r.Endpoints[reviews].Endpoints[0].Address; got != "10.0.0.7:9080" {
		t.Errorf("endpoint after reconnecting = %s, want 10.0.0.7:9080", got)
	}
	first := srv2.Requests()[0]
	if first.GetVersionInfo() != "1" || first.GetNode().GetId() != c.NodeID() {
		t.Errorf("first request on the new stream = %s, want version \"1\" and the node", xdstest.String(first))
	}
	if st := c.Status(); !st.Connected || st.StreamsOpen < 2 {
		t.Errorf("status = connected %v after %d streams; want connected after at least 2", st.Connected, st.StreamsOpen)
	}
}

func TestBackoffDelay(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		lo, hi   time.Duration
	}{
		{"the first retry waits about the minimum", 0, 50 * time.Millisecond, 100 * time.Millisecond},
		{"each failure doubles the delay", 3, 400 * time.Millisecond, 800 * time.Millisecond},
		{"the delay stops growing at the maximum", 30, 2500 * time.Millisecond, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 100 {
				if d := backoffDelay(100*time.Millisecond, 5*time.Second, tt.failures); d < tt.lo || d > tt.hi {
					t.Fatalf("delay %v outside [%v, %v]", d, tt.lo, tt.hi)
				}
			}
		})
	}
}
