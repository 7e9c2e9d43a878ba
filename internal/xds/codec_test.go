package xds

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
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
	r := &response{req: &discoverygrpc.DiscoveryRequest{TypeUrl: resource.ClusterType}, version: "42",
		resources: set.anys, entries: set.entries}
	out, err := r.GetDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
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
	// The resources are the shared bytes, not copies.
	if &set.anys[0].Value[0] != &set.entries[0][len(set.entries[0])-len(set.anys[0].Value)] {
		t.Error("an Any's value does not share its entry's bytes")
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
