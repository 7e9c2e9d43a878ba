package xds

import (
	"fmt"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// A proxy that reconnects before the server saw its old stream end: the
// old stream's last requests may be read after the new stream opened.
// Whenever they are read, the new stream is the one served.
func TestASupersededStreamDoesNotTakeTheProxyBack(t *testing.T) {
	three := map[string]int{"reviews": 2, "ratings": 1, "details": 1}
	// The old stream's own ACKs race with the new stream's opening: many
	// rounds make every order likely.
	for round := range 30 {
		s, reg, client := startServer(t)
		s.Update(servicesMesh("10", three))
		id := fmt.Sprintf("sidecar~p-%d.default", round)
		old := subscribeAs(t, client, partialNode(t, id), nil)
		got := old.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")
		cur := subscribeAs(t, client, partialNode(t, id), nil)
		cur.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")
		// One more request read late on the old stream (the ACK of its
		// last EDS response once more). The old stream may have ended
		// already, on its own ACKs above.
		r := got["EDS"]
		_ = old.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
		// The old stream ends, or gets nothing more.
		select {
		case r, ok := <-old.resps:
			if ok {
				t.Fatalf("round %d: the old stream got a %s response", round, shortType(r.GetTypeUrl()))
			}
		case <-time.After(50 * time.Millisecond):
		}
		s.Update(servicesMesh("11", map[string]int{"reviews": 3, "ratings": 1, "details": 1}))
		select {
		case r, ok := <-cur.resps:
			if !ok || shortType(r.GetTypeUrl()) != "EDS" || r.GetVersionInfo() != "11" {
				t.Fatalf("round %d: the new stream got %v, want EDS 11", round, r)
			}
			wantCLAs(t, r, cla("reviews"))
		case <-time.After(2 * time.Second):
			t.Fatalf("round %d: the new stream got no EDS 11", round)
		}
		reg.mu.Lock()
		if len(reg.registered) != 2 || len(reg.released) != 1 {
			t.Errorf("round %d: registered %d times and released %d, want 2 and 1 (the old stream's)", round, len(reg.registered), len(reg.released))
		}
		reg.mu.Unlock()
	}
}
