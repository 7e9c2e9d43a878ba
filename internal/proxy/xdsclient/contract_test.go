package xdsclient

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointpb "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlspb "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// translateGoldens are the control plane's golden outputs
// (internal/translate): what weft's control plane really sends.
const translateGoldens = "../../translate/testdata"

// goldenNACKs are the goldens built to exercise a NACK, and the message the
// proxy must send for each.
var goldenNACKs = map[string]string{
	"retries_are_translated_for_the_proxy_to_accept_or_refuse.golden.json": "route outbound: virtual_hosts[1].routes[0].route.retry_policy: not supported",
}

// TestTranslateGoldensHonourTheContract decodes every golden the
// translator produces: all must be accepted, except the ones made to be
// refused, which must be NACKed with the expected message. It is the
// contract in docs/xds.md checked from both sides.
func TestTranslateGoldensHonourTheContract(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(translateGoldens, "*.golden.json"))
	if len(files) == 0 {
		t.Skip("no translate goldens found")
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(strings.ReplaceAll(strings.TrimSuffix(name, ".golden.json"), "_", " "), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var golden map[string][]json.RawMessage
			if err := json.Unmarshal(raw, &golden); err != nil {
				t.Fatal(err)
			}
			var nacks []string
			for _, tc := range []struct {
				key string
				typ Type
				new func() proto.Message
			}{
				{"clusters", TypeCluster, func() proto.Message { return new(clusterpb.Cluster) }},
				{"endpoints", TypeEndpoints, func() proto.Message { return new(endpointpb.ClusterLoadAssignment) }},
				{"listeners", TypeListener, func() proto.Message { return new(listenerpb.Listener) }},
				{"routes", TypeRoute, func() proto.Message { return new(routepb.RouteConfiguration) }},
				{"secrets", TypeSecret, func() proto.Message { return new(tlspb.Secret) }},
			} {
				var resources []*anypb.Any
				for _, r := range golden[tc.key] {
					m := tc.new()
					if err := protojson.Unmarshal(r, m); err != nil {
						t.Fatalf("%s: %v", tc.key, err)
					}
					a, err := anypb.New(m)
					if err != nil {
						t.Fatal(err)
					}
					resources = append(resources, a)
				}
				if _, err := decode(tc.typ, resources); err != nil {
					nacks = append(nacks, err.Error())
				}
			}
			got := strings.Join(nacks, "; ")
			if want := goldenNACKs[name]; got != want {
				t.Errorf("NACKs:\n got %q\nwant %q", got, want)
			}
		})
	}
}
