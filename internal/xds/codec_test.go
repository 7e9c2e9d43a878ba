package xds

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// TestPreEncodedResponsesDecodeToTheSameMessage: what the codec sends for
// a response built from shared entries decodes to exactly the message
// go-control-plane built and numbered.
func TestPreEncodedResponsesDecodeToTheSameMessage(t *testing.T) {
	set, err := marshalSet(resource.ClusterType, []types.Resource{
		&clusterv3.Cluster{Name: "outbound|9080||reviews.default.svc.cluster.local"},
		&clusterv3.Cluster{Name: "outbound|9080||ratings.default.svc.cluster.local"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &response{req: &discoverygrpc.DiscoveryRequest{TypeUrl: resource.ClusterType}, version: "42", parts: []*resourceSet{set}}
	out, err := r.GetDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	checkPreEncoded(t, out)
	// The resources are the shared bytes, not copies.
	if &set.anys[0].Value[0] != &set.entries[0][len(set.entries[0])-len(set.anys[0].Value)] {
		t.Error("an Any's value does not share its entry's bytes")
	}
}

// TestPartialResponsesArePreEncodedToo: a response that leaves out what
// the proxy holds is sent from the same shared entries.
func TestPartialResponsesArePreEncodedToo(t *testing.T) {
	held, err := marshalSet(resource.EndpointType, []types.Resource{
		&endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080||reviews.default.svc.cluster.local"},
		&endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080||ratings.default.svc.cluster.local"},
	})
	if err != nil {
		t.Fatal(err)
	}
	set, err := marshalShared(resource.EndpointType, []types.Resource{
		&endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080||reviews.default.svc.cluster.local"},
		&endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080||ratings.default.svc.cluster.local", Endpoints: []*endpointv3.LocalityLbEndpoints{{}}},
	}, held)
	if err != nil {
		t.Fatal(err)
	}
	anys, entries := selectResources([]*resourceSet{set}, nil, &heldSet{parts: []*resourceSet{held}})
	if len(anys) != 1 || &entries[0][0] != &set.entries[1][0] {
		t.Fatalf("selected %d resources, want ratings' shared entry alone", len(anys))
	}
	out := &discoverygrpc.DiscoveryResponse{VersionInfo: "43", TypeUrl: resource.EndpointType, Resources: anys}
	rememberEntries(out, entries)
	checkPreEncoded(t, out)
}

// checkPreEncoded checks that what the codec sends for out decodes to
// out.
func checkPreEncoded(t *testing.T, out *discoverygrpc.DiscoveryResponse) {
	t.Helper()
	out.Nonce = "7" // as the ADS server does before sending
	m := preEncoded(out)
	if _, ok := m.(*preEncodedResponse); !ok {
		t.Fatalf("preEncoded gave %T, want the pre-encoded response", m)
	}
	if again := preEncoded(out); again != out {
		t.Fatal("a response was pre-encoded twice; its entries must be taken once")
	}
	c := newCodec()
	data, err := c.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var got discoverygrpc.DiscoveryResponse
	if err := proto.Unmarshal(data.Materialize(), &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, out) {
		t.Fatalf("decoded %v\nwant    %v", &got, out)
	}
}

func TestOtherMessagesUseTheProtoCodec(t *testing.T) {
	msg := &discoverygrpc.DiscoveryResponse{VersionInfo: "1", TypeUrl: resource.ClusterType, Nonce: "1"}
	if preEncoded(msg) != any(msg) {
		t.Fatal("a response without known entries was replaced")
	}
	data, err := newCodec().Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	var got discoverygrpc.DiscoveryResponse
	if err := newCodec().Unmarshal(data, &got); err != nil || !proto.Equal(&got, msg) {
		t.Fatalf("round trip: %v, %v", &got, err)
	}
}
