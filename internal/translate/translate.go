// Package translate turns the mesh model and one proxy's identity into the
// Envoy xDS v3 resources that proxy needs. It is pure: no I/O, no clocks, no
// global state, so a test can call it with a literal model and diff the
// result against a golden file. The resource shapes are the contract in
// docs/xds.md.
package translate

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weft-mesh/weft/internal/mesh"
)

// Names of the listeners and route configurations every sidecar gets.
const (
	OutboundName = "outbound"
	InboundName  = "inbound"
)

// connectTimeout is the upstream connect timeout of every cluster until
// DestinationRule connection pools are enforced.
const connectTimeout = time.Second

// Resources is everything one proxy is sent, by xDS type. Each slice is
// sorted by resource name so output is deterministic.
type Resources struct {
	Listeners []types.Resource
	Routes    []types.Resource
	Clusters  []types.Resource
	Endpoints []types.Resource
	// Secrets holds ROOTCA when security is on, and is empty otherwise.
	Secrets []types.Resource
}

// Translate builds the resources for proxy from snap. proxy need not be in
// snap yet: a proxy that has just connected is translated from its own
// metadata.
func Translate(snap *mesh.Snapshot, proxy *mesh.Workload) (*Resources, error) {
	return translate(snap, proxy, policy{mtlsMode: peerAuthenticationMode, httpFilters: inboundHTTPFilters})
}

// policy are the security policy decisions translation takes from the
// policy code (authz*.go); tests may substitute them.
type policy struct {
	mtlsMode    func(*mesh.Snapshot, *mesh.Workload, uint32) MTLSMode
	httpFilters func(*mesh.Snapshot, *mesh.Workload) ([]*hcmv3.HttpFilter, error)
}

func translate(snap *mesh.Snapshot, proxy *mesh.Workload, pol policy) (*Resources, error) {
	t := &translation{snap: snap, proxy: proxy, policy: pol}
	res := &Resources{}
	if securityOn(snap) {
		res.Secrets = append(res.Secrets, rootCASecret(snap))
	}

	inboundCluster := InboundClusterName(proxy.ServicePort)
	for _, name := range []string{OutboundName, InboundName} {
		l, err := t.listener(name)
		if err != nil {
			return nil, fmt.Errorf("listener %s of proxy %s: %w", name, proxy.ID, err)
		}
		res.Listeners = append(res.Listeners, l)
	}

	res.Routes = append(res.Routes, t.outboundRoutes(), &routev3.RouteConfiguration{
		Name: InboundName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    InboundName,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   "default",
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: clusterAction(inboundCluster, nil),
			}},
		}},
	})

	appEndpoint, err := lbEndpoint(proxy.AppAddr)
	if err != nil {
		return nil, fmt.Errorf("app address of proxy %s: %w", proxy.ID, err)
	}
	res.Clusters = append(res.Clusters, &clusterv3.Cluster{
		Name:                 inboundCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: inboundCluster,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{appEndpoint}}},
		},
	})

	for _, c := range t.outboundClusters() {
		cl, err := t.outboundClusterResource(c)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.name, err)
		}
		res.Clusters = append(res.Clusters, cl)
		cla, err := loadAssignment(c.name, c.endpoints)
		if err != nil {
			return nil, err
		}
		res.Endpoints = append(res.Endpoints, cla)
	}
	sortByName(res.Clusters)
	sortByName(res.Endpoints)
	return res, nil
}

// OutboundClusterName names a cluster the way Istio does:
// outbound|PORT|SUBSET|HOST.
func OutboundClusterName(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// InboundClusterName names the cluster that reaches the proxy's own app.
func InboundClusterName(port uint32) string {
	return fmt.Sprintf("inbound|%d||", port)
}

type translation struct {
	snap   *mesh.Snapshot
	proxy  *mesh.Workload
	policy policy
	// modes caches the PeerAuthentication mode of endpoints by workload ID.
	modes map[string]MTLSMode
}

// outboundCluster is one cluster to build: a service or one of its subsets.
type outboundCluster struct {
	name      string
	endpoints []*mesh.Workload
	svc       *mesh.Service
	rule      *mesh.DestinationRule // the service's DestinationRule, if any
	subset    int                   // index in rule's subsets; -1 for the whole service
}

func (t *translation) outboundClusters() []outboundCluster {
	var out []outboundCluster
	for _, svc := range t.snap.Services {
		dr := t.destinationRule(svc.Hostname)
		out = append(out, outboundCluster{name: OutboundClusterName(svc.Port, "", svc.Hostname), endpoints: svc.Workloads, svc: svc, rule: dr, subset: -1})
		if dr == nil {
			continue
		}
		for i, subset := range dr.Spec.GetSubsets() {
			var eps []*mesh.Workload
			for _, w := range svc.Workloads {
				if labelsMatch(subset.GetLabels(), w.Labels) {
					eps = append(eps, w)
				}
			}
			out = append(out, outboundCluster{name: OutboundClusterName(svc.Port, subset.GetName(), svc.Hostname), endpoints: eps, svc: svc, rule: dr, subset: i})
		}
	}
	return out
}

// destinationRule returns the DestinationRule for host: the first, in
// namespace/name order, whose host resolves to it.
func (t *translation) destinationRule(host string) *mesh.DestinationRule {
	for _, dr := range t.snap.DestinationRules {
		if t.snap.ResolveHost(dr.Spec.GetHost(), dr.Namespace) == host {
			return dr
		}
	}
	return nil
}

// virtualService returns the VirtualService for host: the first, in
// namespace/name order, that lists it.
func (t *translation) virtualService(host string) *mesh.VirtualService {
	for _, vs := range t.snap.VirtualServices {
		for _, h := range vs.Spec.GetHosts() {
			if t.snap.ResolveHost(h, vs.Namespace) == host {
				return vs
			}
		}
	}
	return nil
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   adsSource(),
			ServiceName: name,
		},
		ConnectTimeout: durationpb.New(connectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func loadAssignment(cluster string, workloads []*mesh.Workload) (*endpointv3.ClusterLoadAssignment, error) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	if len(workloads) == 0 {
		return cla, nil
	}
	locality := &endpointv3.LocalityLbEndpoints{}
	for _, w := range workloads {
		ep, err := lbEndpoint(w.InboundAddr)
		if err != nil {
			return nil, fmt.Errorf("endpoint of workload %s in cluster %s: %w", w.ID, cluster, err)
		}
		locality.LbEndpoints = append(locality.LbEndpoints, ep)
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{locality}
	return cla, nil
}

func lbEndpoint(hostport string) (*endpointv3.LbEndpoint, error) {
	addr, err := socketAddress(hostport)
	if err != nil {
		return nil, err
	}
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr}},
	}, nil
}

func socketAddress(hostport string) (*corev3.Address, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", hostport, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("address %q: bad port: %w", hostport, err)
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}, nil
}

// listener builds the outbound or the inbound listener. Both hold one
// HTTP connection manager routing with the route configuration of the
// listener's name. With security on, the inbound listener tells TLS from
// plaintext connections and serves each with the filter chain its
// PeerAuthentication mode allows, and its HCM sets x-forwarded-client-cert
// from the verified peer; the inbound HCM runs the policy filters first.
func (t *translation) listener(name string) (*listenerv3.Listener, error) {
	addr := t.proxy.OutboundAddr
	if name == InboundName {
		addr = t.proxy.InboundAddr
	}
	address, err := socketAddress(addr)
	if err != nil {
		return nil, err
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	h := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: name,
		}},
	}
	if err := pathNormalization(h, t.snap.Security.PathNormalization); err != nil {
		return nil, err
	}
	if name == InboundName {
		filters, err := t.policy.httpFilters(t.snap, t.proxy)
		if err != nil {
			return nil, err
		}
		h.HttpFilters = append(h.HttpFilters, filters...)
		if securityOn(t.snap) {
			setClientCertDetails(h)
		}
	}
	h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
	})
	hcm, err := anypb.New(h)
	if err != nil {
		return nil, err
	}
	filters := []*listenerv3.Filter{{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
	}}
	l := &listenerv3.Listener{Name: name, Address: address}
	if name != InboundName || !securityOn(t.snap) {
		l.FilterChains = []*listenerv3.FilterChain{{Filters: filters}}
		return l, nil
	}
	inspector, err := tlsInspector()
	if err != nil {
		return nil, err
	}
	l.ListenerFilters = []*listenerv3.ListenerFilter{inspector}
	if l.FilterChains, err = inboundChains(t.policy.mtlsMode(t.snap, t.proxy, t.proxy.ServicePort), filters); err != nil {
		return nil, err
	}
	return l, nil
}

type named interface {
	proto.Message
	GetName() string
}

func sortByName(rs []types.Resource) {
	sort.Slice(rs, func(i, j int) bool {
		return resourceName(rs[i]) < resourceName(rs[j])
	})
}

func resourceName(r types.Resource) string {
	switch v := r.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return v.GetClusterName()
	case named:
		return v.GetName()
	}
	return ""
}
