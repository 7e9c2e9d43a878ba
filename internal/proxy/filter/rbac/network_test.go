package rbac

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacnetworkpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/weft-mesh/weft/internal/proxy/filter"
	"github.com/weft-mesh/weft/internal/proxy/peer"
)

func ordersPolicy(permission *rbacpb.Permission) *rbacnetworkpb.RBAC {
	return &rbacnetworkpb.RBAC{StatPrefix: "tcp.", Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW, Policies: map[string]*rbacpb.Policy{
		"orders": {
			Permissions: []*rbacpb.Permission{permission},
			Principals: []*rbacpb.Principal{{Identifier: &rbacpb.Principal_Authenticated_{Authenticated: &rbacpb.Principal_Authenticated{
				PrincipalName: &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: "spiffe://cluster.local/ns/default/sa/orders"}},
			}}}},
		},
	}}}
}

func TestNetworkRBACJudgesConnections(t *testing.T) {
	f, err := CompileNetwork(ordersPolicy(&rbacpb.Permission{Rule: &rbacpb.Permission_Any{Any: true}}))
	if err != nil {
		t.Fatal(err)
	}
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 15006}
	for _, tt := range []struct {
		name string
		info peer.Info
		want bool
	}{
		{"orders over mTLS", peer.Info{TLS: true, SpiffeID: "spiffe://cluster.local/ns/default/sa/orders"}, true},
		{"another identity", peer.Info{TLS: true, SpiffeID: "spiffe://cluster.local/ns/default/sa/reviews"}, false},
		{"plaintext", peer.Info{RemoteAddr: netip.MustParseAddrPort("127.0.0.1:5000")}, false},
	} {
		if got := f.AllowConnection(filter.NewConnRequest(&tt.info, local, nil)); got != tt.want {
			t.Errorf("%s: allowed %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNetworkRBACRefusesRequestMatchers(t *testing.T) {
	header := &rbacpb.Permission{Rule: &rbacpb.Permission_OrRules{OrRules: &rbacpb.Permission_Set{Rules: []*rbacpb.Permission{
		{Rule: &rbacpb.Permission_Header{Header: &routepb.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: true}}}},
	}}}}
	_, err := CompileNetwork(ordersPolicy(header))
	if err == nil || !strings.Contains(err.Error(), `rules.policies["orders"].permissions[0].or_rules.rules[0].header`) {
		t.Fatalf("got %v, want an error naming the header matcher's path", err)
	}
}
