// Package translate turns the mesh model and one proxy's identity into the
// Envoy xDS v3 resources that proxy needs. It is pure: no I/O, no clocks, no
// global state, so a test can call it with a literal model and diff the
// result against a golden file. The resource shapes are the contract in
// docs/xds.md.
package translate

import (
	"fmt"
	"net"
	"slices"
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

// Resources is everything one proxy is sent, by xDS type. Clusters,
// Endpoints and Secrets are sorted by resource name; Listeners and Routes
// are outbound then inbound. Output is deterministic.
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
// metadata. It is NewShared(snap) followed by Shared.Translate(proxy); a
// caller with many proxies should build the Shared part once.
func Translate(snap *mesh.Snapshot, proxy *mesh.Workload) (*Resources, error) {
	return translate(snap, proxy, defaultPolicy)
}

// policy are the security policy decisions translation takes from the
// policy code (authz*.go); tests may substitute them.
type policy struct {
	mtlsMode    func(*mesh.Snapshot, *mesh.Workload, uint32) MTLSMode
	httpFilters func(*mesh.Snapshot, *mesh.Workload) ([]*hcmv3.HttpFilter, error)
}

var defaultPolicy = policy{mtlsMode: peerAuthenticationMode, httpFilters: inboundHTTPFilters}

func translate(snap *mesh.Snapshot, proxy *mesh.Workload, pol policy) (*Resources, error) {
	sh, err := newShared(snap, pol)
	if err != nil {
		return nil, err
	}
	return sh.Translate(proxy)
}

// Shared is the part of a snapshot's translation that is the same for
// every proxy: the outbound clusters, their endpoints and the ROOTCA
// secret, and (by namespace) the outbound route configuration. Every proxy
// gets the same outbound view of the mesh, so the control plane builds
// this once per snapshot instead of once per proxy, and only the small
// per-proxy part (ProxyResources) for each proxy.
//
// A Shared never changes after NewShared returns, and neither do the
// resources it hands out: callers may read them from many goroutines, and
// must not modify them.
type Shared struct {
	snap   *mesh.Snapshot
	policy policy

	// Clusters are the outbound clusters, sorted by name.
	Clusters []types.Resource
	// Endpoints hold one ClusterLoadAssignment per outbound cluster,
	// sorted by cluster name.
	Endpoints []types.Resource
	// Secrets holds ROOTCA when security is on, and is empty otherwise.
	Secrets []types.Resource
}

// NewShared translates the proxy-independent part of snap. It fails when
// the mesh holds something no proxy can be given (a DestinationRule TLS
// setting weft does not support, an endpoint address that does not
// parse); every proxy's translation would fail the same way.
func NewShared(snap *mesh.Snapshot) (*Shared, error) {
	return newShared(snap, defaultPolicy)
}

func newShared(snap *mesh.Snapshot, pol policy) (*Shared, error) {
	sh := &Shared{snap: snap, policy: pol}
	if securityOn(snap) {
		sh.Secrets = append(sh.Secrets, rootCASecret(snap))
	}
	t := &translation{snap: snap, policy: pol}
	clusters := t.outboundClusters()
	sh.Clusters = make([]types.Resource, 0, len(clusters))
	sh.Endpoints = make([]types.Resource, 0, len(clusters))
	// Subsets list the same workloads as their service: parse each
	// workload's address once and share the endpoint message.
	eps := make(map[*mesh.Workload]*endpointv3.LbEndpoint, len(snap.Services))
	for _, c := range clusters {
		cl, err := t.outboundClusterResource(c)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.name, err)
		}
		sh.Clusters = append(sh.Clusters, cl)
		cla, err := loadAssignment(c.name, c.endpoints, eps)
		if err != nil {
			return nil, err
		}
		sh.Endpoints = append(sh.Endpoints, cla)
	}
	sortByName(sh.Clusters)
	sortByName(sh.Endpoints)
	return sh, nil
}

// OutboundRoutes is the outbound route configuration of every proxy in
// namespace: the same for all of them, since only the short names of
// services depend on the proxy, and only through its namespace. Each call
// builds a new one.
func (sh *Shared) OutboundRoutes(namespace string) *routev3.RouteConfiguration {
	t := &translation{snap: sh.snap, policy: sh.policy}
	return t.outboundRoutes(namespace)
}

// ProxyResources are the resources of one proxy that depend on the proxy
// itself: its two listeners (outbound, inbound), the inbound cluster to
// its app and the inbound route configuration.
type ProxyResources struct {
	Listeners      []types.Resource // outbound, inbound
	InboundCluster *clusterv3.Cluster
	InboundRoutes  *routev3.RouteConfiguration // nil for a TCP workload
}

// inboundRoutes is the inbound route configuration: every request to
// the app's cluster.
func inboundRoutes(cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: InboundName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    InboundName,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   "default",
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: clusterAction(cluster, nil),
			}},
		}},
	}
}

// InboundRouteResources is InboundRoutes as a resource list: empty for a
// TCP workload, which has none.
func (pr *ProxyResources) InboundRouteResources() []types.Resource {
	if pr.InboundRoutes == nil {
		return nil
	}
	return []types.Resource{pr.InboundRoutes}
}

// ProxyResources builds proxy's own resources.
func (sh *Shared) ProxyResources(proxy *mesh.Workload) (*ProxyResources, error) {
	t := &translation{snap: sh.snap, proxy: proxy, policy: sh.policy}
	pr := &ProxyResources{}
	for _, name := range []string{OutboundName, InboundName} {
		l, err := t.listener(name)
		if err != nil {
			return nil, fmt.Errorf("listener %s of proxy %s: %w", name, proxy.ID, err)
		}
		pr.Listeners = append(pr.Listeners, l)
	}
	inboundCluster := InboundClusterName(proxy.ServicePort)
	if !proxy.IsTCP() { // a TCP workload's inbound listener uses no routes
		pr.InboundRoutes = inboundRoutes(inboundCluster)
	}
	appEndpoint, err := lbEndpoint(proxy.AppAddr)
	if err != nil {
		return nil, fmt.Errorf("app address of proxy %s: %w", proxy.ID, err)
	}
	pr.InboundCluster = &clusterv3.Cluster{
		Name:                 inboundCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(connectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: inboundCluster,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{appEndpoint}}},
		},
	}
	return pr, nil
}

// Translate builds everything proxy is sent: the shared resources and its
// own, merged.
func (sh *Shared) Translate(proxy *mesh.Workload) (*Resources, error) {
	pr, err := sh.ProxyResources(proxy)
	if err != nil {
		return nil, err
	}
	res := &Resources{
		Listeners: pr.Listeners,
		Routes:    append([]types.Resource{sh.OutboundRoutes(proxy.Namespace)}, pr.InboundRouteResources()...),
		Clusters:  append([]types.Resource{pr.InboundCluster}, sh.Clusters...),
		Endpoints: slices.Clone(sh.Endpoints),
		Secrets:   slices.Clone(sh.Secrets),
	}
	sortByName(res.Clusters)
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
	snap *mesh.Snapshot
	// proxy is the proxy being translated; nil for the shared part.
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

// loadAssignment is the endpoint set of cluster. eps remembers each
// workload's endpoint message across the clusters of one snapshot, so that
// a workload in a service and its subsets is parsed and allocated once.
func loadAssignment(cluster string, workloads []*mesh.Workload, eps map[*mesh.Workload]*endpointv3.LbEndpoint) (*endpointv3.ClusterLoadAssignment, error) {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	if len(workloads) == 0 {
		return cla, nil
	}
	locality := &endpointv3.LocalityLbEndpoints{LbEndpoints: make([]*endpointv3.LbEndpoint, 0, len(workloads))}
	for _, w := range workloads {
		ep := eps[w]
		if ep == nil {
			var err error
			if ep, err = lbEndpoint(w.InboundAddr); err != nil {
				return nil, fmt.Errorf("endpoint of workload %s in cluster %s: %w", w.ID, cluster, err)
			}
			eps[w] = ep
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
	if name == InboundName && t.proxy.IsTCP() {
		filters, err := inboundTCPFilters(t.snap, t.proxy)
		if err != nil {
			return nil, err
		}
		return t.withChains(&listenerv3.Listener{Name: name, Address: address}, filters)
	}
	router, err := typedConfig(&routerv3.Router{})
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
	hcm, err := typedConfig(h)
	if err != nil {
		return nil, err
	}
	filters := []*listenerv3.Filter{{
		Name:       wellknown.HTTPConnectionManager,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
	}}
	l := &listenerv3.Listener{Name: name, Address: address}
	if name != InboundName {
		l.FilterChains = []*listenerv3.FilterChain{{Filters: filters}}
		return l, nil
	}
	return t.withChains(l, filters)
}

// withChains gives the inbound listener l its filter chains, each with
// filters: one plaintext chain without security, else the TLS and
// plaintext chains PeerAuthentication asks for, told apart by the
// tls_inspector.
func (t *translation) withChains(l *listenerv3.Listener, filters []*listenerv3.Filter) (*listenerv3.Listener, error) {
	if !securityOn(t.snap) {
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

// typedConfig wraps m in an Any, marshalled deterministically (map entries
// in key order), so that one configuration always has the same bytes: the
// control plane compares resources by their bytes to decide what changed.
func typedConfig(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, err
	}
	return a, nil
}
