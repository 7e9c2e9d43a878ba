package xdsclient

import (
	"reflect"
	"testing"
	"time"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointpb "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

const reviews = "outbound|80||reviews.default.svc.cluster.local"

func anys(ms ...proto.Message) []*anypb.Any {
	out := make([]*anypb.Any, len(ms))
	for i, m := range ms {
		out[i] = xdstest.MustAny(m)
	}
	return out
}

// with returns a mutated deep copy of m.
func with[M proto.Message](m M, mutate func(M)) M {
	c := proto.Clone(m).(M)
	mutate(c)
	return c
}

// hcmListener is the outbound listener with its connection manager mutated.
func hcmListener(mutate func(*hcmpb.HttpConnectionManager)) *listenerpb.Listener {
	h := xdstest.HCM("outbound")
	mutate(h)
	return xdstest.Listener("outbound", "127.0.0.1:15001", h)
}

func inbound() *listenerpb.Listener { return xdstest.Listeners()[1] }

// routes is the outbound route configuration with one route mutated.
func routes(mutate func(*routepb.Route)) *routepb.RouteConfiguration {
	r := xdstest.PrefixRoute("/", reviews)
	mutate(r)
	return xdstest.RouteConfig("outbound", xdstest.VirtualHost("reviews", []string{"reviews"}, r))
}

func faultFilter(optional bool) *hcmpb.HttpFilter {
	return &hcmpb.HttpFilter{
		Name:       "envoy.filters.http.fault",
		ConfigType: &hcmpb.HttpFilter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
		IsOptional: optional,
	}
}

func TestDecodeNACKMessages(t *testing.T) {
	const hcmPath = "listener outbound: filter_chains[0].filters[0].typed_config."
	tests := []struct {
		name      string
		typ       Type
		resources []proto.Message
		want      string // the NACK message; "" means accepted
	}{
		// Clusters.
		{"an EDS cluster over ADS is accepted", TypeCluster, []proto.Message{xdstest.EDSCluster(reviews)}, ""},
		{"a STATIC cluster with inline endpoints is accepted", TypeCluster, []proto.Message{xdstest.StaticCluster("inbound|80||", "127.0.0.1:8080")}, ""},
		{"a cluster with lb_policy MAGLEV is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) { c.LbPolicy = clusterpb.Cluster_MAGLEV })},
			"cluster " + reviews + ": lb_policy: MAGLEV not supported, want ROUND_ROBIN"},
		{"a cluster with a transport socket without a TLS context is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) {
				c.TransportSocket = &corepb.TransportSocket{Name: "envoy.transport_sockets.tls"}
			})},
			"cluster " + reviews + ": transport_socket.typed_config: required: want an UpstreamTlsContext"},
		{"a cluster with circuit breakers is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) { c.CircuitBreakers = &clusterpb.CircuitBreakers{} })},
			"cluster " + reviews + ": circuit_breakers: not supported"},
		{"a cluster with outlier detection is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) { c.OutlierDetection = &clusterpb.OutlierDetection{} })},
			"cluster " + reviews + ": outlier_detection: not supported"},
		{"a cluster with health checks is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) { c.HealthChecks = []*corepb.HealthCheck{{}} })},
			"cluster " + reviews + ": health_checks: not supported"},
		{"a DNS cluster is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) {
				c.ClusterDiscoveryType = &clusterpb.Cluster_Type{Type: clusterpb.Cluster_STRICT_DNS}
			})},
			"cluster " + reviews + ": type: STRICT_DNS not supported, want EDS or STATIC"},
		{"an EDS cluster not over ADS is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) {
				c.EdsClusterConfig.EdsConfig = &corepb.ConfigSource{ConfigSourceSpecifier: &corepb.ConfigSource_ApiConfigSource{ApiConfigSource: &corepb.ApiConfigSource{}}}
			})},
			"cluster " + reviews + ": eds_cluster_config.eds_config.api_config_source: not supported"},
		{"an EDS service name other than the cluster's is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) { c.EdsClusterConfig.ServiceName = "other" })},
			"cluster " + reviews + `: eds_cluster_config.service_name: "other", want the cluster name`},
		{"a zero connect timeout is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) { c.ConnectTimeout = durationpb.New(0) })},
			"cluster " + reviews + ": connect_timeout: must be positive, got 0s"},
		{"a STATIC cluster without endpoints is rejected", TypeCluster,
			[]proto.Message{with(xdstest.StaticCluster("inbound|80||", "127.0.0.1:8080"), func(c *clusterpb.Cluster) { c.LoadAssignment = nil })},
			"cluster inbound|80||: load_assignment: required for STATIC clusters"},
		{"two clusters with one name are rejected", TypeCluster,
			[]proto.Message{xdstest.EDSCluster(reviews), xdstest.EDSCluster(reviews)},
			"cluster " + reviews + ": more than one resource with this name"},
		{"a resource of another type is rejected", TypeCluster, []proto.Message{inbound()},
			"resources[0]: type " + ListenerURL + ", want " + ClusterURL},
		{"every invalid cluster is reported", TypeCluster,
			[]proto.Message{
				with(xdstest.EDSCluster("a"), func(c *clusterpb.Cluster) { c.LbPolicy = clusterpb.Cluster_RING_HASH }),
				xdstest.EDSCluster("ok"),
				with(xdstest.EDSCluster("b"), func(c *clusterpb.Cluster) { c.CircuitBreakers = &clusterpb.CircuitBreakers{} }),
			},
			"cluster a: lb_policy: RING_HASH not supported, want ROUND_ROBIN; cluster b: circuit_breakers: not supported"},

		// Endpoints.
		{"a load assignment is accepted", TypeEndpoints, []proto.Message{xdstest.LoadAssignment(reviews, "10.0.0.1:9080", "10.0.0.2:9080")}, ""},
		{"an endpoint hostname is rejected", TypeEndpoints,
			[]proto.Message{with(xdstest.LoadAssignment(reviews, "10.0.0.1:9080"), func(c *endpointpb.ClusterLoadAssignment) {
				c.Endpoints[0].LbEndpoints[0].GetEndpoint().Hostname = "reviews-1"
			})},
			"cluster_load_assignment " + reviews + ": endpoints[0].lb_endpoints[0].endpoint.hostname: not supported"},
		{"port zero is rejected", TypeEndpoints, []proto.Message{xdstest.LoadAssignment(reviews, "10.0.0.1:0")},
			"cluster_load_assignment " + reviews + ": endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: 0 is not a port"},
		{"endpoint metadata is rejected", TypeEndpoints,
			[]proto.Message{with(xdstest.LoadAssignment(reviews, "10.0.0.1:9080"), func(c *endpointpb.ClusterLoadAssignment) {
				c.Endpoints[0].LbEndpoints[0].Metadata = &corepb.Metadata{}
			})},
			"cluster_load_assignment " + reviews + ": endpoints[0].lb_endpoints[0].metadata: not supported"},
		{"a load balancing policy is rejected", TypeEndpoints,
			[]proto.Message{with(xdstest.LoadAssignment(reviews, "10.0.0.1:9080"), func(c *endpointpb.ClusterLoadAssignment) {
				c.Policy = &endpointpb.ClusterLoadAssignment_Policy{}
			})},
			"cluster_load_assignment " + reviews + ": policy: not supported"},

		// Listeners.
		{"the two listeners of the contract are accepted", TypeListener, []proto.Message{xdstest.Listeners()[0], inbound()}, ""},
		{"a listener with two filter chains is rejected", TypeListener,
			[]proto.Message{with(xdstest.Listeners()[0], func(l *listenerpb.Listener) {
				l.FilterChains = append(l.FilterChains, l.FilterChains[0])
			}), inbound()},
			"listener outbound: filter_chains: want exactly one filter chain, got 2"},
		{"a filter chain match is rejected", TypeListener,
			[]proto.Message{with(xdstest.Listeners()[0], func(l *listenerpb.Listener) {
				l.FilterChains[0].FilterChainMatch = &listenerpb.FilterChainMatch{}
			}), inbound()},
			"listener outbound: filter_chains[0].filter_chain_match: not supported"},
		{"two network filters are rejected", TypeListener,
			[]proto.Message{with(xdstest.Listeners()[0], func(l *listenerpb.Listener) {
				l.FilterChains[0].Filters = append(l.FilterChains[0].Filters, l.FilterChains[0].Filters[0])
			}), inbound()},
			"listener outbound: filter_chains[0].filters: want exactly one filter, envoy.filters.network.http_connection_manager, got 2"},
		{"listener filters on the outbound listener are rejected", TypeListener,
			[]proto.Message{with(xdstest.Listeners()[0], func(l *listenerpb.Listener) {
				l.ListenerFilters = []*listenerpb.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector"}}
			}), inbound()},
			"listener outbound: listener_filters: not supported on the outbound listener: only the inbound listener terminates mTLS"},
		{"an HTTP filter other than the router is rejected", TypeListener,
			[]proto.Message{hcmListener(func(h *hcmpb.HttpConnectionManager) {
				h.HttpFilters = append([]*hcmpb.HttpFilter{faultFilter(false)}, h.HttpFilters...)
			}), inbound()},
			hcmPath + `http_filters[0]: filter "envoy.filters.http.fault" (type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault) not supported; want envoy.filters.http.jwt_authn, envoy.filters.http.rbac and envoy.filters.http.router, or is_optional`},
		{"an optional HTTP filter is skipped", TypeListener,
			[]proto.Message{hcmListener(func(h *hcmpb.HttpConnectionManager) {
				h.HttpFilters = append([]*hcmpb.HttpFilter{faultFilter(true)}, h.HttpFilters...)
			}), inbound()}, ""},
		{"a router that is not last is rejected", TypeListener,
			[]proto.Message{hcmListener(func(h *hcmpb.HttpConnectionManager) {
				h.HttpFilters = append(h.HttpFilters, faultFilter(true))
			}), inbound()},
			hcmPath + "http_filters[0]: envoy.filters.http.router must be the last filter"},
		{"a connection manager without the router is rejected", TypeListener,
			[]proto.Message{hcmListener(func(h *hcmpb.HttpConnectionManager) { h.HttpFilters = nil }), inbound()},
			hcmPath + "http_filters: want envoy.filters.http.router as the last filter"},
		{"router options are rejected", TypeListener,
			[]proto.Message{hcmListener(func(h *hcmpb.HttpConnectionManager) {
				h.HttpFilters[0].ConfigType = &hcmpb.HttpFilter_TypedConfig{TypedConfig: xdstest.MustAny(&routerpb.Router{SuppressEnvoyHeaders: true})}
			}), inbound()},
			hcmPath + "http_filters[0].typed_config.suppress_envoy_headers: not supported"},
		{"upgrade configs are rejected", TypeListener,
			[]proto.Message{hcmListener(func(h *hcmpb.HttpConnectionManager) {
				h.UpgradeConfigs = []*hcmpb.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}}
			}), inbound()},
			hcmPath + "upgrade_configs: not supported"},
		{"an HTTP/3 codec is rejected", TypeListener,
			[]proto.Message{hcmListener(func(h *hcmpb.HttpConnectionManager) { h.CodecType = hcmpb.HttpConnectionManager_HTTP3 }), inbound()},
			hcmPath + "codec_type: HTTP3 not supported, want AUTO, HTTP1 or HTTP2"},
		{"a route configuration named unlike the listener is rejected", TypeListener,
			[]proto.Message{hcmListener(func(h *hcmpb.HttpConnectionManager) { h.GetRds().RouteConfigName = "other" }), inbound()},
			hcmPath + `rds.route_config_name: "other", want "outbound" (the listener's name)`},
		{"an inline route configuration is accepted", TypeListener,
			[]proto.Message{hcmListener(func(h *hcmpb.HttpConnectionManager) {
				h.RouteSpecifier = &hcmpb.HttpConnectionManager_RouteConfig{RouteConfig: routes(func(*routepb.Route) {})}
			}), inbound()}, ""},
		{"a listener not named outbound or inbound is rejected", TypeListener,
			[]proto.Message{xdstest.Listeners()[0], inbound(), xdstest.Listener("gateway", "127.0.0.1:8080", xdstest.HCM("gateway"))},
			`listener gateway: name: want "outbound" or "inbound"`},
		{"a missing inbound listener is rejected", TypeListener, []proto.Message{xdstest.Listeners()[0]},
			`listeners: want "outbound" and "inbound", missing "inbound"`},

		// Routes.
		{"a route configuration is accepted", TypeRoute, []proto.Message{routes(func(*routepb.Route) {})}, ""},
		{"a retry policy is rejected", TypeRoute,
			[]proto.Message{xdstest.RouteConfig("outbound",
				xdstest.VirtualHost("a", []string{"a"}, xdstest.PrefixRoute("/", "a")),
				xdstest.VirtualHost("b", []string{"b"}, xdstest.PrefixRoute("/", "b")),
				xdstest.VirtualHost("c", []string{"c"}, with(xdstest.PrefixRoute("/", "c"), func(r *routepb.Route) {
					r.GetRoute().RetryPolicy = &routepb.RetryPolicy{RetryOn: "5xx"}
				})),
			)},
			"route outbound: virtual_hosts[2].routes[0].route.retry_policy: not supported"},
		{"a redirect is rejected", TypeRoute,
			[]proto.Message{routes(func(r *routepb.Route) { r.Action = &routepb.Route_Redirect{Redirect: &routepb.RedirectAction{}} })},
			"route outbound: virtual_hosts[0].routes[0].redirect: not supported"},
		{"a direct response is rejected", TypeRoute,
			[]proto.Message{routes(func(r *routepb.Route) {
				r.Action = &routepb.Route_DirectResponse{DirectResponse: &routepb.DirectResponseAction{Status: 200}}
			})},
			"route outbound: virtual_hosts[0].routes[0].direct_response: not supported"},
		{"a prefix rewrite is rejected", TypeRoute,
			[]proto.Message{routes(func(r *routepb.Route) { r.GetRoute().PrefixRewrite = "/v2" })},
			"route outbound: virtual_hosts[0].routes[0].route.prefix_rewrite: not supported"},
		{"a cluster from a header is rejected", TypeRoute,
			[]proto.Message{routes(func(r *routepb.Route) {
				r.GetRoute().ClusterSpecifier = &routepb.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"}
			})},
			"route outbound: virtual_hosts[0].routes[0].route.cluster_header: not supported"},
		{"a query parameter match is rejected", TypeRoute,
			[]proto.Message{routes(func(r *routepb.Route) {
				r.Match.QueryParameters = []*routepb.QueryParameterMatcher{{Name: "debug"}}
			})},
			"route outbound: virtual_hosts[0].routes[0].match.query_parameters: not supported"},
		{"a deprecated header matcher field is rejected", TypeRoute,
			[]proto.Message{routes(func(r *routepb.Route) {
				//lint:ignore SA1019 the test is that the deprecated field is rejected
				r.Match.Headers = []*routepb.HeaderMatcher{{Name: "x-a", HeaderMatchSpecifier: &routepb.HeaderMatcher_ExactMatch{ExactMatch: "1"}}}
			})},
			"route outbound: virtual_hosts[0].routes[0].match.headers[0].exact_match: not supported"},
		{"an invalid path regex is rejected", TypeRoute,
			[]proto.Message{routes(func(r *routepb.Route) {
				r.Match.PathSpecifier = &routepb.RouteMatch_SafeRegex{SafeRegex: &matcherpb.RegexMatcher{Regex: "["}}
			})},
			"route outbound: virtual_hosts[0].routes[0].match.safe_regex.regex: invalid RE2 expression: error parsing regexp: missing closing ]: `[`"},
		{"virtual host headers to add are rejected", TypeRoute,
			[]proto.Message{with(routes(func(*routepb.Route) {}), func(rc *routepb.RouteConfiguration) {
				rc.VirtualHosts[0].RequestHeadersToAdd = []*corepb.HeaderValueOption{{}}
			})},
			"route outbound: virtual_hosts[0].request_headers_to_add: not supported"},
		{"a domain in two virtual hosts is rejected", TypeRoute,
			[]proto.Message{xdstest.RouteConfig("outbound",
				xdstest.VirtualHost("a", []string{"reviews"}, xdstest.PrefixRoute("/", "a")),
				xdstest.VirtualHost("b", []string{"reviews"}, xdstest.PrefixRoute("/", "b")),
			)},
			`route outbound: virtual_hosts[1].domains[0]: duplicate domain "reviews" (also in virtual_hosts[0])`},
		{"weights summing to zero are rejected", TypeRoute,
			[]proto.Message{routes(func(r *routepb.Route) {
				r.GetRoute().ClusterSpecifier = &routepb.RouteAction_WeightedClusters{WeightedClusters: &routepb.WeightedCluster{
					Clusters: []*routepb.WeightedCluster_ClusterWeight{{Name: "a"}, {Name: "b", Weight: wrapperspb.UInt32(0)}},
				}}
			})},
			"route outbound: virtual_hosts[0].routes[0].route.weighted_clusters: weights sum to 0, want more than 0"},
		{"a runtime fraction is rejected", TypeRoute,
			[]proto.Message{routes(func(r *routepb.Route) { r.Match.RuntimeFraction = &corepb.RuntimeFractionalPercent{} })},
			"route outbound: virtual_hosts[0].routes[0].match.runtime_fraction: not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode(tt.typ, anys(tt.resources...))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("decode error:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestDecodeRouteConfiguration(t *testing.T) {
	rc := xdstest.RouteConfig("outbound", xdstest.VirtualHost("reviews.default.svc.cluster.local:80", []string{"reviews", "reviews:80"},
		&routepb.Route{
			Name: "canary",
			Match: &routepb.RouteMatch{
				PathSpecifier: &routepb.RouteMatch_SafeRegex{SafeRegex: &matcherpb.RegexMatcher{Regex: `/api/v\d+/.*`}},
				CaseSensitive: wrapperspb.Bool(false),
				Headers: []*routepb.HeaderMatcher{
					{Name: "x-user", HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: &matcherpb.StringMatcher{
						MatchPattern: &matcherpb.StringMatcher_Exact{Exact: "Jason"}, IgnoreCase: true}}},
					{Name: ":method", HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: &matcherpb.StringMatcher{
						MatchPattern: &matcherpb.StringMatcher_SafeRegex{SafeRegex: &matcherpb.RegexMatcher{Regex: "GET|HEAD"}}}}},
					{Name: "x-debug", HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: true}, InvertMatch: true},
					{Name: "x-any"},
				},
			},
			Action: &routepb.Route_Route{Route: &routepb.RouteAction{
				ClusterSpecifier: &routepb.RouteAction_WeightedClusters{WeightedClusters: &routepb.WeightedCluster{
					Clusters: []*routepb.WeightedCluster_ClusterWeight{
						{Name: "outbound|80|v1|reviews.default.svc.cluster.local", Weight: wrapperspb.UInt32(90)},
						{Name: "outbound|80|v2|reviews.default.svc.cluster.local", Weight: wrapperspb.UInt32(10)},
					},
				}},
				Timeout: durationpb.New(1500 * time.Millisecond),
			}},
		},
		xdstest.PrefixRoute("/", reviews),
	))
	set, err := decode(TypeRoute, anys(rc))
	if err != nil {
		t.Fatal(err)
	}
	got := set.(map[string]*route.Table)["outbound"].Spec()
	want := route.ConfigSpec{Name: "outbound", VirtualHosts: []route.VirtualHostSpec{{
		Name: "reviews.default.svc.cluster.local:80", Domains: []string{"reviews", "reviews:80"},
		Routes: []route.RouteSpec{
			{
				Name: "canary",
				Match: route.MatchSpec{PathKind: route.PathRegex, Path: `/api/v\d+/.*`, CaseSensitive: false, Headers: []route.HeaderMatchSpec{
					{Name: "x-user", Kind: route.StringExact, Value: "Jason", IgnoreCase: true},
					{Name: ":method", Kind: route.StringRegex, Value: "GET|HEAD"},
					{Name: "x-debug", Kind: route.StringPresent, Present: true, Invert: true},
					{Name: "x-any", Kind: route.StringPresent, Present: true},
				}},
				Action: route.ActionSpec{WeightedClusters: []route.WeightedCluster{
					{Name: "outbound|80|v1|reviews.default.svc.cluster.local", Weight: 90},
					{Name: "outbound|80|v2|reviews.default.svc.cluster.local", Weight: 10},
				}, Timeout: 1500 * time.Millisecond},
			},
			{Match: route.MatchSpec{PathKind: route.PathPrefix, Path: "/", CaseSensitive: true}, Action: route.ActionSpec{Cluster: reviews}},
		},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded spec:\n got %+v\nwant %+v", got, want)
	}
}

func TestDecodeEndpointsSkipsUnhealthy(t *testing.T) {
	cla := xdstest.LoadAssignment(reviews, "10.0.0.1:9080", "10.0.0.2:9080", "10.0.0.3:9080", "10.0.0.4:9080")
	lbs := cla.Endpoints[0].LbEndpoints
	lbs[1].HealthStatus = corepb.HealthStatus_UNHEALTHY
	lbs[2].HealthStatus = corepb.HealthStatus_DRAINING
	lbs[3].HealthStatus = corepb.HealthStatus_HEALTHY
	set, err := decode(TypeEndpoints, anys(cla))
	if err != nil {
		t.Fatal(err)
	}
	got := set.(map[string]*Endpoints)[reviews].Endpoints
	want := []cluster.Endpoint{{Address: "10.0.0.1:9080"}, {Address: "10.0.0.4:9080"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
}

func TestDecodeClusterDefaults(t *testing.T) {
	c := xdstest.EDSCluster(reviews)
	c.ConnectTimeout = nil
	c.EdsClusterConfig.ServiceName = ""
	set, err := decode(TypeCluster, anys(c))
	if err != nil {
		t.Fatal(err)
	}
	got := set.(map[string]*Cluster)[reviews]
	want := &Cluster{Name: reviews, Type: ClusterEDS, ServiceName: reviews, ConnectTimeout: time.Second}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cluster = %+v, want %+v", got, want)
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder as the value of a
// correctly typed resource: decoding untrusted input must never panic.
func FuzzDecode(f *testing.F) {
	for _, m := range []proto.Message{
		xdstest.EDSCluster(reviews), xdstest.LoadAssignment(reviews, "10.0.0.1:80"), inbound(), routes(func(*routepb.Route) {}),
		xdstest.MTLSCluster(reviews, "spiffe://cluster.local/ns/default/sa/reviews"),
		xdstest.InboundMTLS("127.0.0.1:15006", xdstest.Permissive, xdstest.SecureHCM("inbound")),
		xdstest.RootCA([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")),
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for typ := range numTypes {
			_, _ = decode(typ, []*anypb.Any{{TypeUrl: typ.URL(), Value: b}})
		}
	})
}
