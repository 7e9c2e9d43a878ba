package xdstest

import (
	"net"
	"strconv"
	"time"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointpb "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// MustAny packs m into an Any, panicking on failure (only on programming
// errors in tests).
func MustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// ADS is the config source "over this ADS stream".
func ADS() *corepb.ConfigSource {
	return &corepb.ConfigSource{
		ConfigSourceSpecifier: &corepb.ConfigSource_Ads{Ads: &corepb.AggregatedConfigSource{}},
		ResourceApiVersion:    corepb.ApiVersion_V3,
	}
}

// HCM is the connection manager docs/xds.md describes: RDS over ADS for
// route configuration routeName, and the router filter.
func HCM(routeName string) *hcmpb.HttpConnectionManager {
	return &hcmpb.HttpConnectionManager{
		StatPrefix: routeName,
		CodecType:  hcmpb.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmpb.HttpConnectionManager_Rds{Rds: &hcmpb.Rds{
			ConfigSource:    ADS(),
			RouteConfigName: routeName,
		}},
		HttpFilters: []*hcmpb.HttpFilter{RouterFilter()},
	}
}

// RouterFilter is envoy.filters.http.router with its typed config.
func RouterFilter() *hcmpb.HttpFilter {
	return &hcmpb.HttpFilter{
		Name:       "envoy.filters.http.router",
		ConfigType: &hcmpb.HttpFilter_TypedConfig{TypedConfig: MustAny(&routerpb.Router{})},
	}
}

// Listener is a listener named name (outbound or inbound) at addr, with one
// filter chain holding hcm.
func Listener(name, addr string, hcm *hcmpb.HttpConnectionManager) *listenerpb.Listener {
	return &listenerpb.Listener{
		Name:    name,
		Address: SocketAddress(addr),
		FilterChains: []*listenerpb.FilterChain{{
			Filters: []*listenerpb.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerpb.Filter_TypedConfig{TypedConfig: MustAny(hcm)},
			}},
		}},
	}
}

// Listeners returns the outbound and inbound listeners, each using the
// route configuration of its own name.
func Listeners() []*listenerpb.Listener {
	return []*listenerpb.Listener{
		Listener("outbound", "127.0.0.1:15001", HCM("outbound")),
		Listener("inbound", "127.0.0.1:15006", HCM("inbound")),
	}
}

// SocketAddress converts host:port.
func SocketAddress(addr string) *corepb.Address {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		panic(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		panic(err)
	}
	return &corepb.Address{Address: &corepb.Address_SocketAddress{SocketAddress: &corepb.SocketAddress{
		Address:       host,
		PortSpecifier: &corepb.SocketAddress_PortValue{PortValue: uint32(p)},
	}}}
}

// RouteConfig is a route configuration.
func RouteConfig(name string, vhosts ...*routepb.VirtualHost) *routepb.RouteConfiguration {
	return &routepb.RouteConfiguration{Name: name, VirtualHosts: vhosts}
}

// VirtualHost is a virtual host.
func VirtualHost(name string, domains []string, routes ...*routepb.Route) *routepb.VirtualHost {
	return &routepb.VirtualHost{Name: name, Domains: domains, Routes: routes}
}

// PrefixRoute routes a path prefix to one cluster.
func PrefixRoute(prefix, cluster string) *routepb.Route {
	return &routepb.Route{
		Match: &routepb.RouteMatch{PathSpecifier: &routepb.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routepb.Route_Route{Route: &routepb.RouteAction{
			ClusterSpecifier: &routepb.RouteAction_Cluster{Cluster: cluster},
		}},
	}
}

// ServiceDomains are the domains docs/xds.md lists for a service seen from
// its own namespace.
func ServiceDomains(service, namespace string, port int) []string {
	p := ":" + strconv.Itoa(port)
	var out []string
	for _, d := range []string{service, service + "." + namespace, service + "." + namespace + ".svc", service + "." + namespace + ".svc.cluster.local"} {
		out = append(out, d, d+p)
	}
	return out
}

// InboundRoutes is the inbound route configuration: everything to the
// app's cluster.
func InboundRoutes(servicePort int) *routepb.RouteConfiguration {
	return RouteConfig("inbound", VirtualHost("inbound", []string{"*"}, PrefixRoute("/", InboundCluster(servicePort))))
}

// InboundCluster is the name of the inbound cluster for a service port.
func InboundCluster(port int) string { return "inbound|" + strconv.Itoa(port) + "||" }

// EDSCluster is an outbound cluster whose endpoints come over ADS.
func EDSCluster(name string) *clusterpb.Cluster {
	return &clusterpb.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterpb.Cluster_Type{Type: clusterpb.Cluster_EDS},
		EdsClusterConfig:     &clusterpb.Cluster_EdsClusterConfig{EdsConfig: ADS(), ServiceName: name},
		ConnectTimeout:       durationpb.New(time.Second),
		LbPolicy:             clusterpb.Cluster_ROUND_ROBIN,
	}
}

// StaticCluster is a cluster with inline endpoints, like the inbound one.
func StaticCluster(name string, addrs ...string) *clusterpb.Cluster {
	return &clusterpb.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterpb.Cluster_Type{Type: clusterpb.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment:       LoadAssignment(name, addrs...),
	}
}

// LoadAssignment lists a cluster's endpoints.
func LoadAssignment(name string, addrs ...string) *endpointpb.ClusterLoadAssignment {
	lbs := make([]*endpointpb.LbEndpoint, 0, len(addrs))
	for _, a := range addrs {
		lbs = append(lbs, &endpointpb.LbEndpoint{
			HostIdentifier: &endpointpb.LbEndpoint_Endpoint{Endpoint: &endpointpb.Endpoint{Address: SocketAddress(a)}},
		})
	}
	return &endpointpb.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints:   []*endpointpb.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}
}
