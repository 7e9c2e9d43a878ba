package translate

import (
	"os"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/weft-mesh/weft/internal/mesh"
)

// secureBookinfo is bookinfo with service accounts: reviews v1 and v2 run
// as reviews, v3 as reviews-v3, ratings as its namespace's default.
func secureBookinfo() []*mesh.Workload {
	ws := bookinfo()
	for _, w := range ws {
		switch w.Service {
		case "productpage":
			w.ServiceAccount = "productpage"
		case "reviews":
			w.ServiceAccount = "reviews"
			if w.Labels["version"] == "v3" {
				w.ServiceAccount = "reviews-v3"
			}
		}
	}
	return ws
}

func secureSnapshot(t *testing.T, drs []*mesh.DestinationRule) *mesh.Snapshot {
	t.Helper()
	bundle, err := os.ReadFile("testdata/trust_bundle.pem")
	if err != nil {
		t.Fatal(err)
	}
	snap := mesh.NewSnapshot("1", "", secureBookinfo(), nil, drs)
	snap.Security = mesh.Security{TrustDomain: "cluster.local", TrustBundlePEM: bundle, RootNamespace: "istio-system"}
	return snap
}

// modes is a PeerAuthentication stand-in: the mode of each workload by
// service name, PERMISSIVE for the others.
func modes(byService map[string]MTLSMode) policy {
	return policy{
		mtlsMode: func(_ *mesh.Snapshot, w *mesh.Workload, _ uint32) MTLSMode {
			if m, ok := byService[w.Service]; ok {
				return m
			}
			return MTLSPermissive
		},
		httpFilters: func(*mesh.Snapshot, *mesh.Workload) ([]*hcmv3.HttpFilter, error) { return nil, nil },
	}
}

func tlsRule(mode networking.ClientTLSSettings_TLSmode) *networking.TrafficPolicy {
	return &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{Mode: mode}}
}

func TestTranslateSecurityGolden(t *testing.T) {
	reviewsMixed := reviewsRule()
	reviewsMixed.Spec.TrafficPolicy = tlsRule(networking.ClientTLSSettings_ISTIO_MUTUAL)
	reviewsMixed.Spec.Subsets[2].TrafficPolicy = tlsRule(networking.ClientTLSSettings_DISABLE)
	ratingsPort := &mesh.DestinationRule{Name: "ratings", Namespace: "prod", Spec: &networking.DestinationRule{
		Host: "ratings",
		TrafficPolicy: &networking.TrafficPolicy{PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{
			{Port: &networking.PortSelector{Number: 8080}, Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL}},
			{Port: &networking.PortSelector{Number: 9080}, Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_DISABLE}},
		}},
	}}

	tests := []struct {
		name   string
		drs    []*mesh.DestinationRule
		policy policy
	}{
		{
			name:   "security on: sidecars talk mtls to every service and a permissive inbound takes tls and plaintext",
			drs:    []*mesh.DestinationRule{reviewsRule()},
			policy: modes(nil),
		},
		{
			name:   "security on: a strict inbound has only the tls chain",
			policy: modes(map[string]MTLSMode{"productpage": MTLSStrict}),
		},
		{
			name:   "security on: a disabled inbound has only the plaintext chain and services that all disable mtls are called in plaintext",
			policy: modes(map[string]MTLSMode{"productpage": MTLSDisable, "ratings": MTLSDisable}),
		},
		{
			name:   "security on: http/1.1 stays http/1.1 where a destination rule says do not upgrade, except in a subset that says upgrade",
			drs:    []*mesh.DestinationRule{reviewsKeepsHTTP1()},
			policy: modes(nil),
		},
		{
			name:   "security on: destination rule tls disable sends plaintext at rule, subset and port level",
			drs:    []*mesh.DestinationRule{reviewsMixed, ratingsPort},
			policy: modes(nil),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := translate(secureSnapshot(t, tt.drs), secureBookinfo()[0], tt.policy)
			if err != nil {
				t.Fatalf("translate: %v", err)
			}
			checkGolden(t, tt.name, res)
		})
	}
}

func TestTranslateSecurity(t *testing.T) {
	t.Run("security off sends no secret and no TLS", func(t *testing.T) {
		snap := mesh.NewSnapshot("1", "", secureBookinfo(), nil, nil)
		res, err := Translate(snap, secureBookinfo()[0])
		if err != nil {
			t.Fatal(err)
		}
		out := string(render(t, res))
		if len(res.Secrets) != 0 || strings.Contains(out, "transport_socket") || strings.Contains(out, "tls") || strings.Contains(out, "forwardClientCert") {
			t.Errorf("security off, yet:\n%s", out)
		}
	})

	t.Run("the policy filters come before the router on the inbound only", func(t *testing.T) {
		pol := modes(nil)
		pol.httpFilters = func(*mesh.Snapshot, *mesh.Workload) ([]*hcmv3.HttpFilter, error) {
			return []*hcmv3.HttpFilter{{Name: "envoy.filters.http.rbac"}}, nil
		}
		res, err := translate(secureSnapshot(t, nil), secureBookinfo()[0], pol)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Listeners {
			l := l.(*listenerv3.Listener)
			var names []string
			for _, f := range hcmOf(t, l).GetHttpFilters() {
				names = append(names, f.GetName())
			}
			want := "envoy.filters.http.router"
			if l.GetName() == InboundName {
				want = "envoy.filters.http.rbac envoy.filters.http.router"
			}
			if got := strings.Join(names, " "); got != want {
				t.Errorf("%s http filters = %s, want %s", l.GetName(), got, want)
			}
		}
	})

	t.Run("unsupported DestinationRule TLS settings are errors naming the field", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			spec *networking.DestinationRule
			want string
		}{
			{"TLS origination", &networking.DestinationRule{Host: "reviews", TrafficPolicy: tlsRule(networking.ClientTLSSettings_SIMPLE)},
				"cluster outbound|9080||reviews.default.svc.cluster.local: DestinationRule default/reviews: spec.trafficPolicy.tls.mode: SIMPLE not supported, want ISTIO_MUTUAL or DISABLE"},
			{"an SNI override", &networking.DestinationRule{Host: "reviews", TrafficPolicy: &networking.TrafficPolicy{PortLevelSettings: []*networking.TrafficPolicy_PortTrafficPolicy{
				{Port: &networking.PortSelector{Number: 9080}, Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_ISTIO_MUTUAL, Sni: "x"}},
			}}}, "cluster outbound|9080||reviews.default.svc.cluster.local: DestinationRule default/reviews: spec.trafficPolicy.portLevelSettings[0].tls.sni: not supported"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				snap := secureSnapshot(t, []*mesh.DestinationRule{{Name: "reviews", Namespace: "default", Spec: tt.spec}})
				_, err := translate(snap, secureBookinfo()[0], modes(nil))
				if err == nil || err.Error() != tt.want {
					t.Errorf("error = %v, want %q", err, tt.want)
				}
			})
		}
	})

	t.Run("path normalization is set on both connection managers", func(t *testing.T) {
		for setting, want := range map[string]string{
			"BASE":                     "normalize true merge false escaped IMPLEMENTATION_SPECIFIC_DEFAULT",
			"MERGE_SLASHES":            "normalize true merge true escaped IMPLEMENTATION_SPECIFIC_DEFAULT",
			"DECODE_AND_MERGE_SLASHES": "normalize true merge true escaped UNESCAPE_AND_FORWARD",
		} {
			snap := secureSnapshot(t, nil)
			snap.Security.PathNormalization = setting
			res, err := translate(snap, secureBookinfo()[0], modes(nil))
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range res.Listeners {
				h := hcmOf(t, l.(*listenerv3.Listener))
				got := strings.Join([]string{"normalize", boolString(h.GetNormalizePath().GetValue()), "merge", boolString(h.GetMergeSlashes()),
					"escaped", h.GetPathWithEscapedSlashesAction().String()}, " ")
				if got != want {
					t.Errorf("%s on %s: %s, want %s", setting, l.(*listenerv3.Listener).GetName(), got, want)
				}
			}
		}
		snap := secureSnapshot(t, nil)
		snap.Security.PathNormalization = "NONE"
		if _, err := translate(snap, secureBookinfo()[0], modes(nil)); err == nil {
			t.Error("an unknown path normalization was accepted")
		}
	})

	t.Run("a cluster's server identities are the distinct SPIFFE IDs of its endpoints", func(t *testing.T) {
		res, err := translate(secureSnapshot(t, []*mesh.DestinationRule{reviewsRule()}), secureBookinfo()[0], modes(nil))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"outbound|9080||reviews.default.svc.cluster.local":   "spiffe://cluster.local/ns/default/sa/reviews spiffe://cluster.local/ns/default/sa/reviews-v3",
			"outbound|9080|v1|reviews.default.svc.cluster.local": "spiffe://cluster.local/ns/default/sa/reviews",
			"outbound|9080|v3|reviews.default.svc.cluster.local": "spiffe://cluster.local/ns/default/sa/reviews-v3",
			"outbound|9080||ratings.prod.svc.cluster.local":      "spiffe://cluster.local/ns/prod/sa/default",
		}
		for _, r := range res.Clusters {
			c := r.(*clusterv3.Cluster)
			w, ok := want[c.GetName()]
			if !ok {
				continue
			}
			if got := strings.Join(sansOf(t, c), " "); got != w {
				t.Errorf("%s SANs = %s, want %s", c.GetName(), got, w)
			}
		}
	})
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func hcmOf(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	h := new(hcmv3.HttpConnectionManager)
	if err := anypb.UnmarshalTo(l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig(), h, proto.UnmarshalOptions{}); err != nil {
		t.Fatal(err)
	}
	return h
}

func sansOf(t *testing.T, c *clusterv3.Cluster) []string {
	t.Helper()
	ctx := new(tlsv3.UpstreamTlsContext)
	if err := anypb.UnmarshalTo(c.GetTransportSocket().GetTypedConfig(), ctx, proto.UnmarshalOptions{}); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ctx.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		out = append(out, m.GetMatcher().GetExact())
	}
	return out
}

// reviewsKeepsHTTP1 is reviewsRule with h2UpgradePolicy DO_NOT_UPGRADE,
// which subset v3 overrides with UPGRADE.
func reviewsKeepsHTTP1() *mesh.DestinationRule {
	dr := reviewsRule()
	pool := func(p networking.ConnectionPoolSettings_HTTPSettings_H2UpgradePolicy) *networking.TrafficPolicy {
		return &networking.TrafficPolicy{ConnectionPool: &networking.ConnectionPoolSettings{
			Http: &networking.ConnectionPoolSettings_HTTPSettings{H2UpgradePolicy: p},
		}}
	}
	dr.Spec.TrafficPolicy = pool(networking.ConnectionPoolSettings_HTTPSettings_DO_NOT_UPGRADE)
	dr.Spec.Subsets[2].TrafficPolicy = pool(networking.ConnectionPoolSettings_HTTPSettings_UPGRADE)
	return dr
}
