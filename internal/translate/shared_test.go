package translate

import (
	"bytes"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	networking "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/weft-mesh/weft/internal/mesh"
)

// sharedMesh is a secure bookinfo with a subset rule, a VirtualService and
// policies that apply to some workloads only, so that the per-proxy part
// differs between proxies.
func sharedMesh(t *testing.T) *mesh.Snapshot {
	t.Helper()
	snap := secureSnapshot(t, []*mesh.DestinationRule{reviewsRule()})
	snap.VirtualServices = []*mesh.VirtualService{{Name: "reviews", Namespace: "default", Spec: &networking.VirtualService{
		Hosts: []string{"reviews"},
		Http: []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{
			{Destination: &networking.Destination{Host: "reviews", Subset: "v2"}, Weight: 50},
			{Destination: &networking.Destination{Host: "reviews", Subset: "v1"}, Weight: 50},
		}}},
	}}}
	snap.SetPolicies(
		[]*mesh.PeerAuthentication{{Name: "strict", Namespace: "prod", Spec: &securityv1beta1.PeerAuthentication{
			Mtls: &securityv1beta1.PeerAuthentication_MutualTLS{Mode: securityv1beta1.PeerAuthentication_MutualTLS_STRICT},
		}}},
		[]*mesh.AuthorizationPolicy{{Name: "reviews-only", Namespace: "default", Spec: &securityv1beta1.AuthorizationPolicy{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "reviews"}},
			Rules: []*securityv1beta1.Rule{{From: []*securityv1beta1.Rule_From{{Source: &securityv1beta1.Source{
				Principals: []string{"cluster.local/ns/default/sa/productpage"},
			}}}}},
		}}},
		nil,
	)
	return snap
}

func TestSharedTranslationEqualsPerProxyTranslation(t *testing.T) {
	sh, err := NewShared(sharedMesh(t))
	if err != nil {
		t.Fatal(err)
	}
	before := renderResources(t, sh.Clusters, sh.Endpoints, sh.Secrets)
	for _, proxy := range secureBookinfo() {
		t.Run(proxy.ID+" gets from the shared part what a translation of its own gives", func(t *testing.T) {
			got, err := sh.Translate(proxy)
			if err != nil {
				t.Fatal(err)
			}
			// A fresh snapshot, so nothing computed for another proxy
			// can leak into this one.
			want, err := Translate(sharedMesh(t), proxy)
			if err != nil {
				t.Fatal(err)
			}
			checkConsistent(t, got)
			if g, w := render(t, got), render(t, want); !bytes.Equal(g, w) {
				t.Fatalf("shared translation differs from a translation of its own:\n%s\nwant\n%s", g, w)
			}
		})
	}
	if after := renderResources(t, sh.Clusters, sh.Endpoints, sh.Secrets); !bytes.Equal(before, after) {
		t.Fatal("translating proxies modified the shared resources")
	}
}

func TestOutboundRoutesDependOnlyOnTheNamespace(t *testing.T) {
	sh, err := NewShared(sharedMesh(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, proxy := range secureBookinfo() {
		res, err := sh.Translate(proxy)
		if err != nil {
			t.Fatal(err)
		}
		got := renderResources(t, res.Routes[:1])
		want := renderResources(t, []types.Resource{sh.OutboundRoutes(proxy.Namespace)})
		if !bytes.Equal(got, want) {
			t.Errorf("%s: outbound routes differ from its namespace's", proxy.ID)
		}
	}
	if bytes.Equal(renderResources(t, []types.Resource{sh.OutboundRoutes("default")}), renderResources(t, []types.Resource{sh.OutboundRoutes("prod")})) {
		t.Error("default and prod see the same outbound routes; short names should differ")
	}
}

func TestSubsetsShareTheServicesEndpointMessages(t *testing.T) {
	sh, err := NewShared(sharedMesh(t))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*endpointv3.LbEndpoint]int{}
	for _, r := range sh.Endpoints {
		for _, loc := range r.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
			for _, ep := range loc.GetLbEndpoints() {
				seen[ep]++
			}
		}
	}
	// reviews has three workloads in four clusters (the service and three
	// subsets of one workload each): each message appears twice.
	shared := 0
	for _, n := range seen {
		if n > 1 {
			shared++
		}
	}
	if shared != 3 {
		t.Fatalf("%d endpoint messages shared between clusters, want the 3 of reviews", shared)
	}
}

func renderResources(t *testing.T, sets ...[]types.Resource) []byte {
	t.Helper()
	var all []types.Resource
	for _, s := range sets {
		all = append(all, s...)
	}
	return render(t, &Resources{Clusters: all})
}
