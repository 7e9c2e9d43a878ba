package xds

import (
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

func TestASupersededStreamDoesNotTakeTheProxyBack(t *testing.T) {
	s, reg, client := startServer(t)
	three := map[string]int{"reviews": 2, "ratings": 1, "details": 1}
	s.Update(servicesMesh("10", three))
	const id = "sidecar~p-1.default"
	old := subscribeAs(t, client, partialNode(t, id), nil)
	got := old.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")
	// The proxy reconnects before its old stream is gone.
	cur := subscribeAs(t, client, partialNode(t, id), nil)
	cur.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")
	// A request still in flight on the old stream (here the ACK of its
	// last EDS response once more) is read after the new stream opened.
	// (The old stream may have ended already, on its own ACKs above.)
	r := got["EDS"]
	_ = old.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
	// The old stream may end, or get nothing more; the new one is served.
	select {
	case r, ok := <-old.resps:
		if ok {
			t.Fatalf("the old stream got a %s response", shortType(r.GetTypeUrl()))
		}
	case <-time.After(300 * time.Millisecond):
	}
	s.Update(servicesMesh("11", map[string]int{"reviews": 3, "ratings": 1, "details": 1}))
	wantCLAs(t, cur.expect("11", "EDS")["EDS"], cla("reviews"))
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.registered) != 2 {
		t.Errorf("registered %d times, want 2 (one per stream)", len(reg.registered))
	}
}
