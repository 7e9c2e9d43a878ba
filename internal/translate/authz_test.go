package translate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/weft-mesh/weft/internal/jwks"
	"github.com/weft-mesh/weft/internal/mesh"
)

// payments is the workload the policy tests protect: payments in default,
// with service account payments.
func payments() *mesh.Workload {
	w := workload("sidecar~payments-1.default", "payments", "default", "v1", "127.0.0.1:16506")
	w.ServiceAccount = "payments"
	return w
}

func selector(labels ...string) *typev1beta1.WorkloadSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		m[labels[i]] = labels[i+1]
	}
	return &typev1beta1.WorkloadSelector{MatchLabels: m}
}

func ap(ns, name string, spec *security.AuthorizationPolicy) *mesh.AuthorizationPolicy {
	return &mesh.AuthorizationPolicy{Name: name, Namespace: ns, Spec: spec}
}

func ra(ns, name string, spec *security.RequestAuthentication) *mesh.RequestAuthentication {
	return &mesh.RequestAuthentication{Name: name, Namespace: ns, Spec: spec}
}

func pa(ns, name string, sel *typev1beta1.WorkloadSelector, mode security.PeerAuthentication_MutualTLS_Mode, ports map[uint32]security.PeerAuthentication_MutualTLS_Mode) *mesh.PeerAuthentication {
	spec := &security.PeerAuthentication{Selector: sel, Mtls: &security.PeerAuthentication_MutualTLS{Mode: mode}}
	for p, m := range ports {
		if spec.PortLevelMtls == nil {
			spec.PortLevelMtls = map[uint32]*security.PeerAuthentication_MutualTLS{}
		}
		spec.PortLevelMtls[p] = &security.PeerAuthentication_MutualTLS{Mode: m}
	}
	return &mesh.PeerAuthentication{Name: name, Namespace: ns, Spec: spec}
}

const (
	unset      = security.PeerAuthentication_MutualTLS_UNSET
	strict     = security.PeerAuthentication_MutualTLS_STRICT
	permissive = security.PeerAuthentication_MutualTLS_PERMISSIVE
	disable    = security.PeerAuthentication_MutualTLS_DISABLE
)

func TestPeerAuthenticationMode(t *testing.T) {
	finance := selector("app", "payments")
	other := selector("app", "orders")
	tests := []struct {
		name string
		root string
		pas  []*mesh.PeerAuthentication
		port uint32
		want MTLSMode
	}{
		{name: "no policy is PERMISSIVE", want: MTLSPermissive},
		{name: "a mesh-wide policy in istio-system applies", pas: []*mesh.PeerAuthentication{
			pa("istio-system", "default", nil, strict, nil)}, want: MTLSStrict},
		{name: "a policy in another namespace does not apply", pas: []*mesh.PeerAuthentication{
			pa("prod", "default", nil, strict, nil)}, want: MTLSPermissive},
		{name: "the root namespace is the one configured", root: "mesh-root", pas: []*mesh.PeerAuthentication{
			pa("istio-system", "default", nil, disable, nil), pa("mesh-root", "default", nil, strict, nil)}, want: MTLSStrict},
		{name: "the namespace policy overrides the mesh one", pas: []*mesh.PeerAuthentication{
			pa("istio-system", "default", nil, strict, nil), pa("default", "default", nil, permissive, nil)}, want: MTLSPermissive},
		{name: "a workload policy overrides the namespace one", pas: []*mesh.PeerAuthentication{
			pa("istio-system", "default", nil, permissive, nil), pa("default", "default", nil, permissive, nil),
			pa("default", "payments", finance, strict, nil)}, want: MTLSStrict},
		{name: "a workload policy whose selector does not match does not apply", pas: []*mesh.PeerAuthentication{
			pa("default", "orders", other, disable, nil)}, want: MTLSPermissive},
		{name: "a selector policy in the root namespace is ignored, as in Istio", pas: []*mesh.PeerAuthentication{
			pa("istio-system", "payments", finance, strict, nil)}, want: MTLSPermissive},
		{name: "UNSET at the namespace inherits the mesh mode", pas: []*mesh.PeerAuthentication{
			pa("istio-system", "default", nil, strict, nil), pa("default", "default", nil, unset, nil)}, want: MTLSStrict},
		{name: "UNSET at the workload inherits the namespace mode", pas: []*mesh.PeerAuthentication{
			pa("default", "default", nil, disable, nil), pa("default", "payments", finance, unset, nil)}, want: MTLSDisable},
		{name: "of two namespace policies the first by name wins", pas: []*mesh.PeerAuthentication{
			pa("default", "b", nil, disable, nil), pa("default", "a", nil, strict, nil)}, want: MTLSStrict},
		{name: "of two workload policies the first by name wins", pas: []*mesh.PeerAuthentication{
			pa("default", "z-payments", finance, disable, nil), pa("default", "a-payments", finance, strict, nil)}, want: MTLSStrict},
		{name: "portLevelMtls for the workload's port overrides", port: 9080, pas: []*mesh.PeerAuthentication{
			pa("default", "payments", finance, strict, map[uint32]security.PeerAuthentication_MutualTLS_Mode{9080: disable})}, want: MTLSDisable},
		{name: "portLevelMtls for another port does not", port: 9080, pas: []*mesh.PeerAuthentication{
			pa("default", "payments", finance, strict, map[uint32]security.PeerAuthentication_MutualTLS_Mode{8080: disable})}, want: MTLSStrict},
		{name: "UNSET at the port inherits the workload's inherited mode", port: 9080, pas: []*mesh.PeerAuthentication{
			pa("istio-system", "default", nil, strict, nil),
			pa("default", "payments", finance, unset, map[uint32]security.PeerAuthentication_MutualTLS_Mode{9080: unset})}, want: MTLSStrict},
		{name: "Istio's example: UNSET with a DISABLE port under a STRICT namespace", port: 8080, pas: []*mesh.PeerAuthentication{
			pa("default", "default", nil, strict, nil),
			pa("default", "finance", finance, unset, map[uint32]security.PeerAuthentication_MutualTLS_Mode{8080: disable})}, want: MTLSDisable},
		{name: "portLevelMtls of a workload policy that lost to an older one does not apply", port: 9080, pas: []*mesh.PeerAuthentication{
			pa("default", "a", finance, strict, nil),
			pa("default", "b", finance, strict, map[uint32]security.PeerAuthentication_MutualTLS_Mode{9080: disable})}, want: MTLSStrict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := mesh.NewSnapshot("1", "", nil, nil, nil)
			snap.Security.RootNamespace = tt.root
			snap.SetPolicies(tt.pas, nil, nil)
			if got := peerAuthenticationMode(snap, payments(), tt.port); got != tt.want {
				t.Errorf("mode = %s, want %s", got, tt.want)
			}
		})
	}
}

// ordersOnly is the policy: only orders may call payments.
func ordersOnly() *mesh.AuthorizationPolicy {
	return ap("default", "payments-from-orders", &security.AuthorizationPolicy{
		Selector: selector("app", "payments"),
		Action:   security.AuthorizationPolicy_ALLOW,
		Rules: []*security.Rule{{From: []*security.Rule_From{{Source: &security.Source{
			Principals: []string{"cluster.local/ns/default/sa/orders"},
		}}}}},
	})
}

func inlineKeys(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestInboundHTTPFiltersGolden(t *testing.T) {
	keys := inlineKeys(t)
	tests := []struct {
		name string
		aps  []*mesh.AuthorizationPolicy
		ras  []*mesh.RequestAuthentication
		jwks map[string]string
	}{
		{name: "no policy, no filter"},
		{name: "only orders may call payments", aps: []*mesh.AuthorizationPolicy{ordersOnly()}},
		{name: "DENY beats ALLOW: the DENY filter runs first", aps: []*mesh.AuthorizationPolicy{
			ordersOnly(),
			ap("default", "no-admin", &security.AuthorizationPolicy{
				Action: security.AuthorizationPolicy_DENY,
				Rules: []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{
					Paths: []string{"/admin*"}, NotMethods: []string{"GET"},
				}}}}},
			}),
		}},
		{name: "namespace and mesh-wide policies combine, and AUDIT comes first", aps: []*mesh.AuthorizationPolicy{
			ap("istio-system", "deny-untrusted", &security.AuthorizationPolicy{
				Action: security.AuthorizationPolicy_DENY,
				Rules: []*security.Rule{{From: []*security.Rule_From{{Source: &security.Source{
					NotNamespaces: []string{"default", "istio-system"},
				}}}}},
			}),
			ap("istio-system", "audit-everything", &security.AuthorizationPolicy{
				Action: security.AuthorizationPolicy_AUDIT, Rules: []*security.Rule{{}},
			}),
			ap("default", "allow-reads", &security.AuthorizationPolicy{
				Rules: []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{Methods: []string{"GET", "HEAD"}}}}}},
			}),
			// Not for payments: another namespace, another selector, a dry run.
			ap("prod", "allow-nothing", &security.AuthorizationPolicy{}),
			ap("default", "orders-only", &security.AuthorizationPolicy{Selector: selector("app", "orders")}),
			{Name: "dry-run", Namespace: "default", DryRun: true, Spec: &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{}}}},
		}},
		{name: "spec {} allows nothing: an ALLOW filter without policies", aps: []*mesh.AuthorizationPolicy{
			ap("default", "allow-nothing", &security.AuthorizationPolicy{}),
		}},
		{name: "rules [{}] allows everything, also beside spec {}", aps: []*mesh.AuthorizationPolicy{
			ap("default", "allow-nothing", &security.AuthorizationPolicy{}),
			ap("default", "allow-all", &security.AuthorizationPolicy{Rules: []*security.Rule{{}}}),
		}},
		{name: "ports are decided for the workload's port by the control plane", aps: []*mesh.AuthorizationPolicy{
			ap("default", "ports", &security.AuthorizationPolicy{
				Action: security.AuthorizationPolicy_DENY,
				Rules: []*security.Rule{
					{To: []*security.Rule_To{{Operation: &security.Operation{Ports: []string{"9080"}, Methods: []string{"DELETE"}}}}},
					{To: []*security.Rule_To{{Operation: &security.Operation{Ports: []string{"8080"}}}}},
					{To: []*security.Rule_To{{Operation: &security.Operation{NotPorts: []string{"9080"}}}}},
					{When: []*security.Condition{{Key: "destination.port", Values: []string{"8080", "9080"}}}},
				},
			}),
		}},
		{name: "every field and condition", aps: []*mesh.AuthorizationPolicy{
			ap("default", "everything", &security.AuthorizationPolicy{
				Action: security.AuthorizationPolicy_DENY,
				Rules: []*security.Rule{{
					From: []*security.Rule_From{
						{Source: &security.Source{
							Principals:           []string{"cluster.local/ns/default/sa/orders", "*", "cluster.local/ns/prod/*", "*/sa/admin"},
							NotPrincipals:        []string{"cluster.local/ns/default/sa/evil"},
							RequestPrincipals:    []string{"https://issuer.example.com/alice", "*", "https://issuer.example.com/*", "*/bob", "*@example.com", "https://other*"},
							NotRequestPrincipals: []string{"https://issuer.example.com/bot"},
							Namespaces:           []string{"default", "team-*"},
							NotNamespaces:        []string{"kube-system"},
							RemoteIpBlocks:       []string{"203.0.113.0/24"},
							NotRemoteIpBlocks:    []string{"203.0.113.9"},
							IpBlocks:             []string{"10.1.2.3/16", "192.168.1.7", "2001:db8::1"},
							NotIpBlocks:          []string{"10.1.0.0/24"},
						}},
						{Source: &security.Source{ServiceAccounts: []string{"orders", "prod/checkout"}}},
					},
					To: []*security.Rule_To{
						{Operation: &security.Operation{
							Hosts:      []string{"payments", "*.example.com", "api.*", "payments:8080", "*"},
							NotHosts:   []string{"admin.example.com"},
							Methods:    []string{"POST", "*"},
							NotMethods: []string{"GET"},
							Paths:      []string{"/pay", "/api/*", "*.json", "*"},
							NotPaths:   []string{"/internal*"},
							Ports:      []string{"9080"},
							NotPorts:   []string{"15000"},
						}},
					},
					When: []*security.Condition{
						{Key: "request.headers[X-User]", Values: []string{"alice", "bob*", "*"}, NotValues: []string{"*-bot"}},
						{Key: "source.ip", Values: []string{"10.0.0.1"}},
						{Key: "remote.ip", NotValues: []string{"1.2.3.0/24"}},
						{Key: "source.namespace", Values: []string{"default"}},
						{Key: "source.principal", Values: []string{"cluster.local/ns/default/sa/orders"}},
						{Key: "request.auth.principal", Values: []string{"https://issuer.example.com/alice"}},
						{Key: "request.auth.audiences", Values: []string{"payments"}},
						{Key: "request.auth.presenter", Values: []string{"web"}},
						{Key: "request.auth.claims[groups]", Values: []string{"admins", "ops-*"}},
						{Key: "request.auth.claims[realm_access][roles]", NotValues: []string{"guest"}},
						{Key: "destination.port", Values: []string{"9080"}},
						{Key: "connection.sni", Values: []string{"*.default.svc.cluster.local"}},
					},
				}},
			}),
		}},
		{name: "a JWT rule with inline keys, and a policy that requires a token", aps: []*mesh.AuthorizationPolicy{
			ap("default", "require-jwt", &security.AuthorizationPolicy{Rules: []*security.Rule{{From: []*security.Rule_From{{Source: &security.Source{
				RequestPrincipals: []string{"*"},
			}}}}}}),
		}, ras: []*mesh.RequestAuthentication{
			ra("default", "payments", &security.RequestAuthentication{Selector: selector("app", "payments"), JwtRules: []*security.JWTRule{{
				Issuer: "https://auth.example.com", Audiences: []string{"payments"}, Jwks: keys,
				FromHeaders:          []*security.JWTHeader{{Name: "x-jwt-assertion", Prefix: "Bearer "}},
				FromParams:           []string{"access_token"},
				ForwardOriginalToken: true, OutputPayloadToHeader: "x-jwt-payload",
				SpaceDelimitedClaims: []string{"roles", "scope"},
				OutputClaimToHeaders: []*security.ClaimToHeader{{Header: "x-jwt-sub", Claim: "sub"}, {Header: "x-jwt-tenant", Claim: "org.tenant"}},
			}}}),
		}},
		{name: "JWT rules from the namespace and the root namespace, fetched or not yet", ras: []*mesh.RequestAuthentication{
			ra("istio-system", "mesh-jwt", &security.RequestAuthentication{JwtRules: []*security.JWTRule{
				{Issuer: "https://accounts.example.com"},
			}}),
			ra("default", "payments", &security.RequestAuthentication{JwtRules: []*security.JWTRule{
				{Issuer: "issuer-foo", JwksUri: "https://example.com/jwks.json"},
				{Issuer: "issuer-bar", JwksUri: "https://example.com/not-fetched-yet.json"},
			}}),
			ra("default", "orders", &security.RequestAuthentication{Selector: selector("app", "orders"), JwtRules: []*security.JWTRule{{Issuer: "not-for-payments"}}}),
		}, jwks: map[string]string{
			"https://example.com/jwks.json":                   keys,
			jwks.DiscoveryURI("https://accounts.example.com"): keys,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := mesh.NewSnapshot("1", "", bookinfo(), nil, nil)
			snap.SetPolicies(nil, tt.aps, tt.ras)
			snap.JWKS = tt.jwks
			filters, err := inboundHTTPFilters(snap, payments())
			if err != nil {
				t.Fatal(err)
			}
			checkFiltersGolden(t, filepath.Join("testdata", "authz", sanitize(strings.ToLower(tt.name))+".golden.json"), renderFilters(t, filters))
		})
	}
}

func checkFiltersGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
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

func renderFilters(t *testing.T, filters []*hcmv3.HttpFilter) []byte {
	t.Helper()
	out := []json.RawMessage{}
	for _, f := range filters {
		b, err := protojson.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestUntranslatablePoliciesFailClosed covers policies that validation
// would have refused but that a store may still hold: they must never
// allow more or deny less than they say.
func TestUntranslatablePoliciesFailClosed(t *testing.T) {
	rulesOf := func(t *testing.T, aps ...*mesh.AuthorizationPolicy) []*rbacv3.RBAC {
		t.Helper()
		snap := mesh.NewSnapshot("1", "", nil, nil, nil)
		snap.SetPolicies(nil, aps, nil)
		filters, err := rbacFilters(snap, payments())
		if err != nil {
			t.Fatal(err)
		}
		var out []*rbacv3.RBAC
		for _, f := range filters {
			var cfg rbacfilterv3.RBAC
			if err := f.GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				t.Fatal(err)
			}
			out = append(out, cfg.GetRules())
		}
		return out
	}
	compact := func(t *testing.T, m proto.Message) string {
		t.Helper()
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	const anyPrincipal = `{"andIds":{"ids":[{"any":true}]}}`

	t.Run("an ALLOW rule with an unknown condition is dropped, so its policy allows nothing", func(t *testing.T) {
		rules := rulesOf(t, ap("default", "p", &security.AuthorizationPolicy{Rules: []*security.Rule{{
			When: []*security.Condition{{Key: "destination.ip", Values: []string{"10.0.0.1"}}},
		}}}))
		if len(rules) != 1 || rules[0].GetAction() != rbacv3.RBAC_ALLOW || len(rules[0].GetPolicies()) != 0 {
			t.Errorf("got %v, want an ALLOW filter without policies", rules)
		}
	})
	t.Run("an ALLOW rule with a bad value is dropped", func(t *testing.T) {
		rules := rulesOf(t, ap("default", "p", &security.AuthorizationPolicy{Rules: []*security.Rule{
			{From: []*security.Rule_From{{Source: &security.Source{IpBlocks: []string{"not-an-ip"}}}}},
			{To: []*security.Rule_To{{Operation: &security.Operation{Methods: []string{"GET"}}}}},
		}}))
		if len(rules) != 1 || len(rules[0].GetPolicies()) != 1 || rules[0].GetPolicies()["ns[default]-policy[p]-rule[1]"] == nil {
			t.Errorf("got %v, want only rule 1", rules)
		}
	})
	t.Run("a DENY rule leaves an unknown condition out, matching more", func(t *testing.T) {
		rules := rulesOf(t, ap("default", "p", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{
			When: []*security.Condition{{Key: "experimental.envoy.filters.x[y]", Values: []string{"z"}}},
		}}}))
		p := rules[0].GetPolicies()["ns[default]-policy[p]-rule[0]"]
		if got := compact(t, p.GetPrincipals()[0]); got != anyPrincipal {
			t.Errorf("principal = %s, want %s", got, anyPrincipal)
		}
	})
	t.Run("a DENY rule takes a bad value as matching and drops a bad not-value", func(t *testing.T) {
		rules := rulesOf(t, ap("default", "p", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{
			From: []*security.Rule_From{
				{Source: &security.Source{IpBlocks: []string{"not-an-ip", "10.0.0.0/8"}}},
				{Source: &security.Source{NotIpBlocks: []string{"not-an-ip"}}},
			},
		}}}))
		p := rules[0].GetPolicies()["ns[default]-policy[p]-rule[0]"]
		want := `{"andIds":{"ids":[{"orIds":{"ids":[{"any":true},{"directRemoteIp":{"addressPrefix":"10.0.0.0","prefixLen":8}}]}}]}}`
		if got := compact(t, p.GetPrincipals()[0]); got != want {
			t.Errorf("principal 0 = %s, want %s", got, want)
		}
		if got := compact(t, p.GetPrincipals()[1]); got != anyPrincipal {
			t.Errorf("principal 1 = %s, want %s", got, anyPrincipal)
		}
	})
}

// TestPolicyFiltersReachTheInboundListener checks the seam with the
// listener code: the policy filters run on the inbound HCM, in order,
// before the router, and never on the outbound one.
func TestPolicyFiltersReachTheInboundListener(t *testing.T) {
	snap := mesh.NewSnapshot("1", "", append(bookinfo(), payments()), nil, nil)
	snap.SetPolicies(nil, []*mesh.AuthorizationPolicy{
		ordersOnly(),
		ap("default", "deny-admin", &security.AuthorizationPolicy{Action: security.AuthorizationPolicy_DENY, Rules: []*security.Rule{{
			To: []*security.Rule_To{{Operation: &security.Operation{Paths: []string{"/admin*"}}}},
		}}}),
	}, []*mesh.RequestAuthentication{
		ra("default", "jwt", &security.RequestAuthentication{JwtRules: []*security.JWTRule{{Issuer: "https://auth.example.com", Jwks: inlineKeys(t)}}}),
	})
	res, err := Translate(snap, payments())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Listeners {
		l := r.(*listenerv3.Listener)
		for _, fc := range l.GetFilterChains() {
			var hcm hcmv3.HttpConnectionManager
			if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range hcm.GetHttpFilters() {
				names = append(names, f.GetName())
			}
			want := []string{"envoy.filters.http.router"}
			if l.GetName() == InboundName {
				want = []string{"envoy.filters.http.jwt_authn", "envoy.filters.http.rbac", "envoy.filters.http.rbac", "envoy.filters.http.router"}
			}
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("listener %s chain %q: filters %v, want %v", l.GetName(), fc.GetName(), names, want)
			}
		}
	}
}
