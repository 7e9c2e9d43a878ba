package translate

import (
	"os"
	"slices"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacnetworkv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"

	"github.com/weft-mesh/weft/internal/mesh"
)

// TestTCPWorkloadGetsNetworkFilters: a TCP workload's inbound listener
// proxies connections (tcp_proxy to the app) behind network RBAC filters,
// on both the TLS and the plaintext chain, and AuthorizationPolicy fields
// a connection does not have are handled as Istio does: an ALLOW rule that
// needs one is dropped, a DENY rule's HTTP-only value matches anything.
func TestTCPWorkloadGetsNetworkFilters(t *testing.T) {
	db := payments()
	db.Protocol = mesh.ProtocolTCP
	bundle, err := os.ReadFile("testdata/trust_bundle.pem")
	if err != nil {
		t.Fatal(err)
	}
	snap := mesh.NewSnapshot("1", "", append(bookinfo(), db), nil, nil)
	snap.Security = mesh.Security{TrustDomain: "cluster.local", TrustBundlePEM: bundle, RootNamespace: "istio-system"}
	snap.SetPolicies(nil, []*mesh.AuthorizationPolicy{
		ordersOnly(),
		ap("default", "allow-get", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_ALLOW, Rules: []*security.Rule{{
			To: []*security.Rule_To{{Operation: &security.Operation{Methods: []string{"GET"}}}},
		}}}),
		ap("default", "deny-admin", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{
			From: []*security.Rule_From{{Source: &security.Source{Namespaces: []string{"test"}}}},
			To:   []*security.Rule_To{{Operation: &security.Operation{Paths: []string{"/admin"}}}},
		}}}),
	}, nil)
	res, err := Translate(snap, db)
	if err != nil {
		t.Fatal(err)
	}
	// The golden is also decoded by the proxy's contract test
	// (internal/proxy/xdsclient), which must accept it.
	checkGolden(t, "a tcp workload behind network rbac", res)
	var inbound *listenerv3.Listener
	for _, r := range res.Listeners {
		if l := r.(*listenerv3.Listener); l.GetName() == InboundName {
			inbound = l
		}
	}
	if inbound == nil || len(inbound.GetFilterChains()) != 2 {
		t.Fatalf("inbound listener %v: want a TLS and a plaintext chain", inbound)
	}
	for _, fc := range inbound.GetFilterChains() {
		var names []string
		for _, f := range fc.GetFilters() {
			names = append(names, f.GetName())
		}
		want := []string{"envoy.filters.network.rbac", "envoy.filters.network.rbac", "envoy.filters.network.tcp_proxy"}
		if !slices.Equal(names, want) {
			t.Fatalf("chain %s: filters %v, want %v", fc.GetName(), names, want)
		}
		var deny, allow rbacnetworkv3.RBAC
		var tp tcpproxyv3.TcpProxy
		for i, m := range []proto.Message{&deny, &allow, &tp} {
			if err := fc.GetFilters()[i].GetTypedConfig().UnmarshalTo(m); err != nil {
				t.Fatal(err)
			}
		}
		if got := tp.GetCluster(); got != InboundClusterName(db.ServicePort) {
			t.Errorf("tcp_proxy cluster %q, want %q", got, InboundClusterName(db.ServicePort))
		}
		if deny.GetRules().GetAction() != rbacv3.RBAC_DENY || allow.GetRules().GetAction() != rbacv3.RBAC_ALLOW {
			t.Fatalf("actions %v, %v; want DENY then ALLOW", deny.GetRules().GetAction(), allow.GetRules().GetAction())
		}
		if _, ok := allow.GetRules().GetPolicies()["ns[default]-policy[allow-get]-rule[0]"]; ok {
			t.Error("the ALLOW rule on methods was kept; a connection has no method, so it must be dropped")
		}
		if _, ok := allow.GetRules().GetPolicies()["ns[default]-policy[payments-from-orders]-rule[0]"]; !ok {
			t.Error("the ALLOW rule on principals is missing")
		}
		p := deny.GetRules().GetPolicies()["ns[default]-policy[deny-admin]-rule[0]"]
		if p == nil {
			t.Fatal("the DENY rule is missing")
		}
		// The path condition becomes "any", the namespace condition stays.
		want2 := &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{
			{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: []*rbacv3.Permission{permissionAny()}}}},
		}}}}
		if len(p.GetPermissions()) != 1 || !proto.Equal(p.GetPermissions()[0], want2) {
			t.Errorf("DENY permissions %v, want the path taken as any: %v", p.GetPermissions(), want2)
		}
		if len(p.GetPrincipals()) != 1 || proto.Equal(p.GetPrincipals()[0], principalAny()) {
			t.Errorf("DENY principals %v: the namespace condition must stay", p.GetPrincipals())
		}
	}
}
