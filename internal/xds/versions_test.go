package xds

import (
	"bytes"
	"context"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/weft-mesh/weft/internal/mesh"
	"github.com/weft-mesh/weft/internal/translate"
)

// adsClient is a proxy's ADS stream in a test: it subscribes to the five
// types as weft-proxy does and hands over each response.
type adsClient struct {
	t      *testing.T
	stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resps  chan *discoverygrpc.DiscoveryResponse
}

func subscribe(t *testing.T, client discoverygrpc.AggregatedDiscoveryServiceClient, versions map[string]string) *adsClient {
	t.Helper()
	return subscribeAs(t, client, reviewsNode(t), versions)
}

// subscribeStream opens an ADS stream that has sent nothing yet.
func subscribeStream(t *testing.T, client discoverygrpc.AggregatedDiscoveryServiceClient) *adsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &adsClient{t: t, stream: stream, resps: make(chan *discoverygrpc.DiscoveryResponse, 16)}
	go func() {
		defer close(c.resps)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			c.resps <- r
		}
	}()
	return c
}

// next returns the next response, which must come.
func (c *adsClient) next() *discoverygrpc.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(5 * time.Second):
		c.t.Fatal("no response within 5s")
	}
	return nil
}

// quiet fails the test if a response comes within a short while; a
// response that does not come cannot be waited for any better.
func (c *adsClient) quiet() {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("unexpected %s response, version %s", shortType(r.GetTypeUrl()), r.GetVersionInfo())
	case <-time.After(300 * time.Millisecond):
	}
}

func (c *adsClient) ack(r *discoverygrpc.DiscoveryResponse) {
	c.t.Helper()
	if err := c.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *adsClient) nack(r *discoverygrpc.DiscoveryResponse, acked string) {
	c.t.Helper()
	if err := c.stream.Send(&discoverygrpc.DiscoveryRequest{
		TypeUrl: r.GetTypeUrl(), VersionInfo: acked, ResponseNonce: r.GetNonce(),
		ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "rejected"},
	}); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads one response of each of the given types, in that order,
// checks their version, ACKs them and returns them by type.
func (c *adsClient) expect(version string, short ...string) map[string]*discoverygrpc.DiscoveryResponse {
	c.t.Helper()
	out := map[string]*discoverygrpc.DiscoveryResponse{}
	for _, want := range short {
		r := c.next()
		if got := shortType(r.GetTypeUrl()); got != want || r.GetVersionInfo() != version {
			c.t.Fatalf("got %s version %s, want %s version %s", got, r.GetVersionInfo(), want, version)
		}
		c.ack(r)
		out[want] = r
	}
	return out
}

func meshWith(version string, reviews int, drs ...*mesh.DestinationRule) *mesh.Snapshot {
	var ws []*mesh.Workload
	for i := range reviews {
		ws = append(ws, &mesh.Workload{
			ID: "sidecar~reviews-" + string(rune('a'+i)) + ".default", Service: "reviews", Namespace: "default", ServiceAccount: "reviews",
			ServicePort: 9080, Labels: map[string]string{"version": "v1"},
			InboundAddr: "127.0.0.1:" + string(rune('1'+i)) + "6006", AppAddr: "127.0.0.1:8080",
		})
	}
	ws = append(ws, &mesh.Workload{ID: "sidecar~ratings-1.prod", Service: "ratings", Namespace: "prod", ServicePort: 9080,
		InboundAddr: "127.0.0.2:16006", AppAddr: "127.0.0.2:8080"})
	return mesh.NewSnapshot(version, "", ws, nil, drs)
}

func reviewsSubsets() *mesh.DestinationRule {
	return &mesh.DestinationRule{Name: "reviews", Namespace: "default", Spec: &networking.DestinationRule{
		Host: "reviews", Subsets: []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}},
	}}
}

func TestProxiesGetWhatTranslateGives(t *testing.T) {
	s, _, client := startServer(t)
	snap := meshWith("10", 2, reviewsSubsets())
	s.Update(snap)
	c := subscribe(t, client, nil)
	got := c.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")

	w, err := WorkloadFromNode(reviewsNode(t))
	if err != nil {
		t.Fatal(err)
	}
	want, err := translate.Translate(meshWith("10", 2, reviewsSubsets()), w)
	if err != nil {
		t.Fatal(err)
	}
	for short, rs := range map[string][]types.Resource{"CDS": want.Clusters, "EDS": want.Endpoints, "LDS": want.Listeners, "RDS": want.Routes, "SDS": want.Secrets} {
		resp := got[short]
		if len(resp.GetResources()) != len(rs) {
			t.Fatalf("%s: %d resources, want %d", short, len(resp.GetResources()), len(rs))
		}
		for i, r := range rs {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(resp.GetResources()[i].GetValue(), b) {
				t.Errorf("%s resource %d differs from translate.Translate's", short, i)
			}
		}
	}
}

func TestOnlyChangedTypesGetANewVersion(t *testing.T) {
	s, _, client := startServer(t)
	s.Update(meshWith("10", 1))
	c := subscribe(t, client, nil)
	c.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")

	t.Run("an endpoint change sends EDS only", func(t *testing.T) {
		s.Update(meshWith("11", 2))
		c.expect("11", "EDS")
		c.quiet()
		waitFor(t, func() bool { return s.Status()[0].XDS["EDS"].Acked == "11" })
		for short, ts := range s.Status()[0].XDS {
			if ts.Sent != "11" || ts.Acked != "11" {
				t.Errorf("%s status %+v, want sent and acked 11: the proxy has revision 11's configuration", short, ts)
			}
		}
	})
	t.Run("a snapshot that changes nothing sends nothing", func(t *testing.T) {
		s.Update(meshWith("12", 2))
		c.quiet()
	})
	t.Run("a new subset sends CDS then EDS", func(t *testing.T) {
		s.Update(meshWith("13", 2, reviewsSubsets()))
		c.expect("13", "CDS", "EDS")
		c.quiet()
	})
	t.Run("a NACKed type is parked until it changes; other types go on", func(t *testing.T) {
		s.Update(meshWith("14", 3, reviewsSubsets()))
		c.nack(c.next(), "13")
		waitFor(t, func() bool { return s.Status()[0].XDS["EDS"].NackMessage != "" })
		c.quiet()
		s.Update(meshWith("15", 3))
		got := c.expect("15", "CDS", "EDS")
		if n := len(got["EDS"].GetResources()); n != 2 {
			t.Fatalf("EDS has %d endpoint sets, want 2", n)
		}
		c.quiet()
	})
}

func TestVersionsGrowAcrossRestarts(t *testing.T) {
	s, _, client := startServer(t)
	s.Update(meshWith("20", 1))
	c := subscribe(t, client, nil)
	c.expect("20", "CDS", "EDS", "LDS", "RDS", "SDS")
	s.Update(meshWith("21", 2))
	c.expect("21", "EDS")

	// A new control plane (the store's revision has moved on) gets the
	// proxy's versions in its first requests, and sends everything anew,
	// at the newest revision.
	s2, _, client2 := startServer(t)
	s2.Update(meshWith("25", 2))
	c2 := subscribe(t, client2, map[string]string{"CDS": "20", "EDS": "21", "LDS": "20", "RDS": "20", "SDS": "20"})
	c2.expect("25", "CDS", "EDS", "LDS", "RDS", "SDS")

	// A proxy that already holds the newest revision is not sent it again.
	s3, _, client3 := startServer(t)
	s3.Update(meshWith("25", 2))
	c3 := subscribe(t, client3, map[string]string{"CDS": "25", "EDS": "25", "LDS": "25", "RDS": "25", "SDS": "25"})
	c3.quiet()
	// It is in sync all the same.
	waitFor(t, func() bool { st := s3.Status(); return len(st) == 1 && len(st[0].XDS) == numTypes })
	for short, ts := range s3.Status()[0].XDS {
		if ts.Sent != "25" || ts.Acked != "25" {
			t.Errorf("%s status %+v, want sent and acked 25", short, ts)
		}
	}
}
