package xds

import (
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
)

// Subscriptions by resource name, as Envoy and proxyless gRPC make them.
//
// grpc-go's xDS client subscribes to a listener by name, then to the route
// configuration, clusters and endpoint sets it names. Each time the set of
// names of a type changes, it sends the whole new set with the version and
// nonce it last received for the type (internal/xds/clients/xdsclient
// ads_stream.go, sendNewLocked), so a request that adds a name may be
// otherwise identical to the ACK before it. The xDS protocol requires the
// server to answer it with the newly named resources.

// grpcNode is a proxyless gRPC client's node: it says who it is in
// user_agent_name, as grpc-go does.
func grpcNode(t *testing.T, id string) *corev3.Node {
	n := reviewsNode(t)
	n.Id = id
	n.UserAgentName = "gRPC Go"
	return n
}

// byName is an ADS stream that subscribes by name.
type byName struct {
	*adsClient
	node *corev3.Node
	// last is the last response of each type, whose version and nonce the
	// next request of the type carries, as grpc-go's do.
	last map[string]*discoverygrpc.DiscoveryResponse
}

func newByName(t *testing.T, client discoverygrpc.AggregatedDiscoveryServiceClient, n *corev3.Node) *byName {
	return &byName{adsClient: subscribeStream(t, client), node: n, last: map[string]*discoverygrpc.DiscoveryResponse{}}
}

// subscribe sends the set of names of typeURL, with the version and nonce
// of the type's last response (an ACK of it, when names are unchanged).
func (c *byName) subscribe(typeURL string, names ...string) {
	c.t.Helper()
	req := &discoverygrpc.DiscoveryRequest{Node: c.node, TypeUrl: typeURL, ResourceNames: names}
	c.node = nil
	if r := c.last[typeURL]; r != nil {
		req.VersionInfo, req.ResponseNonce = r.GetVersionInfo(), r.GetNonce()
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

// await reads the next response, which must be of typeURL and come: the
// deadline is generous, so that a request that was parked fails the test
// and a slow machine does not.
func (c *byName) await(typeURL string) *discoverygrpc.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		if r.GetTypeUrl() != typeURL {
			c.t.Fatalf("got a %s response, want %s", shortType(r.GetTypeUrl()), shortType(typeURL))
		}
		c.last[typeURL] = r
		return r
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no %s response within 10s: the request was parked", shortType(typeURL))
	}
	return nil
}

// resourceNames lists, sorted, the names of the resources r carries.
func resourceNames(t *testing.T, r *discoverygrpc.DiscoveryResponse) []string {
	t.Helper()
	out := []string{}
	for _, a := range r.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cachev3.GetResourceName(m.(types.Resource)))
	}
	slices.Sort(out)
	return out
}

func wantNames(t *testing.T, r *discoverygrpc.DiscoveryResponse, want ...string) {
	t.Helper()
	slices.Sort(want)
	if want == nil {
		want = []string{}
	}
	if got := resourceNames(t, r); !slices.Equal(got, want) {
		t.Errorf("%s version %s carries %q, want %q", shortType(r.GetTypeUrl()), r.GetVersionInfo(), got, want)
	}
}

func TestSubscriptionsByName(t *testing.T) {
	three := map[string]int{"reviews": 2, "ratings": 1, "details": 1}
	cds, eds, lds, rds := resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType

	t.Run("a name added with the same version and nonce is answered at once, for every type", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := newByName(t, client, grpcNode(t, "grpc~app-1.default"))
		for _, tc := range []struct {
			typeURL      string
			first, added string
		}{
			{lds, "outbound", "inbound"},
			{rds, "outbound", "inbound"},
			{cds, cla("reviews"), cla("ratings")},
			{eds, cla("reviews"), cla("ratings")},
		} {
			c.subscribe(tc.typeURL, tc.first)
			wantNames(t, c.await(tc.typeURL), tc.first)
			c.subscribe(tc.typeURL, tc.first) // ACK
			c.subscribe(tc.typeURL, tc.first, tc.added)
			r := c.await(tc.typeURL)
			if r.GetVersionInfo() != "10" {
				t.Errorf("%s version %s, want 10", shortType(tc.typeURL), r.GetVersionInfo())
			}
			wantNames(t, r, tc.first, tc.added)
			c.subscribe(tc.typeURL, tc.first, tc.added) // ACK
		}
		c.quiet()
	})

	t.Run("a name removed is not answered; subscribed again, it is sent again", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := newByName(t, client, grpcNode(t, "grpc~app-1.default"))
		for _, typeURL := range []string{cds, eds} {
			c.subscribe(typeURL, cla("reviews"), cla("ratings"))
			wantNames(t, c.await(typeURL), cla("reviews"), cla("ratings"))
			c.subscribe(typeURL, cla("reviews"), cla("ratings")) // ACK
			c.subscribe(typeURL, cla("reviews"))
		}
		c.quiet()
		for _, typeURL := range []string{cds, eds} {
			c.subscribe(typeURL, cla("reviews"), cla("ratings"))
			wantNames(t, c.await(typeURL), cla("reviews"), cla("ratings"))
			c.subscribe(typeURL, cla("reviews"), cla("ratings")) // ACK
		}
		c.quiet()
		// A change is sent for the names subscribed to, only those.
		s.Update(servicesMesh("11", map[string]int{"reviews": 3, "ratings": 1, "details": 1, "stars": 1}))
		wantNames(t, c.await(cds), cla("reviews"), cla("ratings"))
		wantNames(t, c.await(eds), cla("reviews"), cla("ratings"))
	})

	t.Run("a cluster that does not exist is answered without it; an endpoint set only when it exists", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := newByName(t, client, grpcNode(t, "grpc~app-1.default"))
		for _, typeURL := range []string{cds, eds} {
			c.subscribe(typeURL, cla("reviews"))
			wantNames(t, c.await(typeURL), cla("reviews"))
			c.subscribe(typeURL, cla("reviews")) // ACK
		}
		// CDS is complete: the answer says that it does not exist, so a
		// client need not wait for its does-not-exist timer.
		c.subscribe(cds, cla("reviews"), cla("stars"))
		wantNames(t, c.await(cds), cla("reviews"))
		c.subscribe(cds, cla("reviews"), cla("stars")) // ACK
		c.subscribe(eds, cla("reviews"), cla("stars"))
		c.quiet()
		// When it comes, both are sent.
		s.Update(servicesMesh("11", map[string]int{"reviews": 2, "ratings": 1, "details": 1, "stars": 1}))
		wantNames(t, c.await(cds), cla("reviews"), cla("stars"))
		wantNames(t, c.await(eds), cla("reviews"), cla("stars"))
	})

	t.Run("an explicit wildcard gets everything; names again get only those", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := newByName(t, client, grpcNode(t, "grpc~app-1.default"))
		c.subscribe(eds, cla("reviews"))
		wantNames(t, c.await(eds), cla("reviews"))
		c.subscribe(eds, cla("reviews")) // ACK
		c.subscribe(eds, "*")
		wantNames(t, c.await(eds), cla("reviews"), cla("ratings"), cla("details"))
		c.subscribe(eds, "*") // ACK
		c.quiet()
		c.subscribe(eds, cla("ratings"))
		c.quiet() // ratings was sent with the wildcard: nothing new is named
		s.Update(servicesMesh("11", map[string]int{"reviews": 3, "ratings": 1, "details": 1}))
		wantNames(t, c.await(eds), cla("ratings"))
	})

	t.Run("empty names are a wildcard for LDS and CDS only", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := newByName(t, client, grpcNode(t, "grpc~app-1.default"))
		c.subscribe(cds)
		wantNames(t, c.await(cds), "inbound|9080||", cla("reviews"), cla("ratings"), cla("details"))
		c.subscribe(eds)
		c.subscribe(rds)
		c.subscribe(lds)
		wantNames(t, c.await(lds), "inbound", "outbound")
		c.quiet() // no EDS and RDS: they subscribe to nothing
		c.subscribe(eds, cla("details"))
		wantNames(t, c.await(eds), cla("details"))
	})

	t.Run("empty names are a wildcard for every type from weft-proxy", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		n := partialNode(t, "sidecar~p-1.default")
		n.UserAgentName = "weft-proxy"
		c := subscribeAs(t, client, n, nil)
		wantCLAs(t, c.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")["EDS"], cla("reviews"), cla("ratings"), cla("details"))
	})

	t.Run("a NACK by a subscriber by name is not answered with the same version", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := newByName(t, client, grpcNode(t, "grpc~app-1.default"))
		c.subscribe(cds, cla("reviews"))
		r := c.await(cds)
		if err := c.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: cds, ResponseNonce: r.GetNonce(),
			ResourceNames: []string{cla("reviews")}, ErrorDetail: &status.Status{Code: 3, Message: "rejected"}}); err != nil {
			t.Fatal(err)
		}
		c.quiet()
		// A name added after the NACK is answered.
		if err := c.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: cds, ResponseNonce: r.GetNonce(),
			ResourceNames: []string{cla("reviews"), cla("ratings")}}); err != nil {
			t.Fatal(err)
		}
		wantNames(t, c.await(cds), cla("reviews"), cla("ratings"))
	})
}
