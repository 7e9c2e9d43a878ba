package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/weft-mesh/weft/internal/mesh"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func workload(id, svc, ns, version, inbound string) *mesh.Workload {
	return &mesh.Workload{
		ID: id, Service: svc, Namespace: ns, ServicePort: 9080,
		Labels:      map[string]string{"app": svc, "version": version},
		InboundAddr: inbound, OutboundAddr: "127.0.0.1:15001", AppAddr: "127.0.0.1:8080",
	}
}

func bookinfo() []*mesh.Workload {
	return []*mesh.Workload{
		workload("sidecar~productpage-1.default", "productpage", "default", "v1", "127.0.0.1:16006"),
		workload("sidecar~reviews-1.default", "reviews", "default", "v1", "127.0.0.1:16106"),
		workload("sidecar~reviews-2.default", "reviews", "default", "v2", "127.0.0.1:16206"),
		workload("sidecar~reviews-3.default", "reviews", "default", "v3", "127.0.0.1:16306"),
		workload("sidecar~ratings-1.prod", "ratings", "prod", "v1", "127.0.0.1:16406"),
	}
}

func reviewsRule() *mesh.DestinationRule {
	return &mesh.DestinationRule{Name: "reviews", Namespace: "default", Spec: &networking.DestinationRule{
		Host: "reviews",
		Subsets: []*networking.Subset{
			{Name: "v1", Labels: map[string]string{"version": "v1"}},
			{Name: "v2", Labels: map[string]string{"version": "v2"}},
			{Name: "v3", Labels: map[string]string{"version": "v3"}},
		},
	}}
}

func TestTranslateGolden(t *testing.T) {
	tests := []struct {
		name string
		vss  []*mesh.VirtualService
		drs  []*mesh.DestinationRule
	}{
		{name: "services without policy route to their whole cluster"},
		{
			name: "a weighted split sends traffic to subsets",
			drs:  []*mesh.DestinationRule{reviewsRule()},
			vss: []*mesh.VirtualService{{Name: "reviews", Namespace: "default", Spec: &networking.VirtualService{
				Hosts: []string{"reviews"},
				Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
					{Destination: &networking.Destination{Host: "reviews", Subset: "v2"}, Weight: 80},
					{Destination: &networking.Destination{Host: "reviews", Subset: "v1"}, Weight: 20},
					{Destination: &networking.Destination{Host: "reviews", Subset: "v3"}, Weight: 0},
				}}},
			}}},
		},
		{
			name: "header, uri and method matches come before the default route",
			drs:  []*mesh.DestinationRule{reviewsRule()},
			vss: []*mesh.VirtualService{{Name: "reviews", Namespace: "default", Spec: &networking.VirtualService{
				Hosts: []string{"reviews.default.svc.cluster.local"},
				Http: []*networking.HTTPRoute{
					{
						Name: "jason",
						Match: []*networking.HTTPMatchRequest{
							{Headers: map[string]*networking.StringMatch{"end-user": {MatchType: &networking.StringMatch_Exact{Exact: "jason"}}}},
							{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: "/v2/.*"}}, IgnoreUriCase: true},
							{Method: &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: "PUT"}}, Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/admin"}}},
						},
						Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews", Subset: "v2"}}},
						Timeout: durationpb.New(2500000000),
					},
					{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "reviews", Subset: "v1", Port: &networking.PortSelector{Number: 9080}}}}},
				},
			}}},
		},
		{
			name: "retries are translated for the proxy to accept or refuse",
			vss: []*mesh.VirtualService{{Name: "ratings", Namespace: "prod", Spec: &networking.VirtualService{
				Hosts: []string{"ratings"},
				Http: []*networking.HTTPRoute{{
					Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "ratings"}}},
					Retries: &networking.HTTPRetry{Attempts: 3, PerTryTimeout: durationpb.New(1000000000)},
				}},
			}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := mesh.NewSnapshot("1", "", bookinfo(), tt.vss, tt.drs)
			proxy := bookinfo()[0]
			res, err := Translate(snap, proxy)
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			checkGolden(t, tt.name, res)
		})
	}
}

// checkGolden compares res with the golden file named after the test, or
// rewrites it with -update.
func checkGolden(t *testing.T, name string, res *Resources) {
	t.Helper()
	checkConsistent(t, res)
	got := render(t, res)
	file := filepath.Join("testdata", sanitize(name)+".golden.json")
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("translation differs from %s; run `go test ./internal/translate -update` and review the diff\n%s", file, got)
	}
}

func TestTranslateIsDeterministic(t *testing.T) {
	snap := mesh.NewSnapshot("1", "", bookinfo(), nil, []*mesh.DestinationRule{reviewsRule()})
	a, _ := Translate(snap, bookinfo()[0])
	b, _ := Translate(snap, bookinfo()[0])
	if !bytes.Equal(render(t, a), render(t, b)) {
		t.Fatal("two translations of one snapshot differ")
	}
}

func TestShortNamesOnlyInOwnNamespace(t *testing.T) {
	snap := mesh.NewSnapshot("1", "", bookinfo(), nil, nil)
	res, _ := Translate(snap, bookinfo()[0]) // a proxy in default
	out := string(render(t, res))
	if !bytes.Contains([]byte(out), []byte(`"reviews:9080"`)) {
		t.Error("a proxy in default lacks the short name reviews:9080")
	}
	if bytes.Contains([]byte(out), []byte(`"ratings:9080"`)) {
		t.Error("a proxy in default got the short name of prod's ratings")
	}
}

// checkConsistent applies go-control-plane's own check: every route and
// endpoint name referred to is present.
func checkConsistent(t *testing.T, res *Resources) {
	t.Helper()
	snap, err := cachev3.NewSnapshot("1", map[resource.Type][]types.Resource{
		resource.ListenerType: res.Listeners,
		resource.RouteType:    res.Routes,
		resource.ClusterType:  res.Clusters,
		resource.EndpointType: res.Endpoints,
		resource.SecretType:   res.Secrets,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Fatalf("snapshot is not consistent: %v", err)
	}
}

func render(t *testing.T, res *Resources) []byte {
	t.Helper()
	out := map[string][]json.RawMessage{}
	add := func(kind string, rs []types.Resource) {
		for _, r := range rs {
			b, err := protojson.MarshalOptions{}.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			out[kind] = append(out[kind], b)
		}
	}
	add("listeners", res.Listeners)
	add("routes", res.Routes)
	add("clusters", res.Clusters)
	add("endpoints", res.Endpoints)
	add("secrets", res.Secrets)
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func sanitize(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
