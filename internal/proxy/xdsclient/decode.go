package xdsclient

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointpb "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlspb "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httppb "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/filter"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

// maxReportedErrors bounds a NACK's error_detail: the first few invalid
// resources say enough, and a huge message helps nobody.
const maxReportedErrors = 8

// decode decodes and validates one response's resources of type t into
// that type's map (map[string]*Cluster, ...). The error, if any, is the
// NACK message: "<kind> <name>: <field path>: <reason>" per invalid
// resource, joined with "; ".
func decode(t Type, resources []*anypb.Any) (any, error) {
	switch t {
	case TypeCluster:
		return decodeAll("cluster", ClusterURL, resources, func() *clusterpb.Cluster { return new(clusterpb.Cluster) },
			(*clusterpb.Cluster).GetName, decodeCluster, nil)
	case TypeEndpoints:
		return decodeAll("cluster_load_assignment", EndpointsURL, resources,
			func() *endpointpb.ClusterLoadAssignment { return new(endpointpb.ClusterLoadAssignment) },
			(*endpointpb.ClusterLoadAssignment).GetClusterName, decodeLoadAssignment, nil)
	case TypeListener:
		return decodeAll("listener", ListenerURL, resources, func() *listenerpb.Listener { return new(listenerpb.Listener) },
			(*listenerpb.Listener).GetName, decodeListener, checkListenerSet)
	case TypeRoute:
		return decodeAll("route", RouteURL, resources, func() *routepb.RouteConfiguration { return new(routepb.RouteConfiguration) },
			(*routepb.RouteConfiguration).GetName, decodeRouteConfig, nil)
	case TypeSecret:
		return decodeAll("secret", SecretURL, resources, func() *tlspb.Secret { return new(tlspb.Secret) },
			(*tlspb.Secret).GetName, decodeSecret, nil)
	}
	return nil, fmt.Errorf("unknown resource type %d", t)
}

// decodeAll unmarshals and decodes every resource of one response. It
// reports every invalid resource, not just the first, so one NACK tells
// the operator all that is wrong; checkSet validates the set as a whole.
func decodeAll[P proto.Message, T any](
	kind, url string, resources []*anypb.Any, newMsg func() P, name func(P) string,
	decodeOne func(P) (T, error), checkSet func(map[string]T) error,
) (map[string]T, error) {
	out := make(map[string]T, len(resources))
	seen := make(map[string]bool, len(resources))
	var errs []string
	for i, a := range resources {
		if a.GetTypeUrl() != url {
			errs = append(errs, fmt.Sprintf("resources[%d]: type %s, want %s", i, a.GetTypeUrl(), url))
			continue
		}
		m := newMsg()
		if err := proto.Unmarshal(a.GetValue(), m); err != nil {
			errs = append(errs, fmt.Sprintf("resources[%d]: decoding %s: %v", i, kind, err))
			continue
		}
		n := name(m)
		if n == "" {
			errs = append(errs, fmt.Sprintf("resources[%d]: %s without a name", i, kind))
			continue
		}
		if seen[n] {
			errs = append(errs, fmt.Sprintf("%s %s: more than one resource with this name", kind, n))
			continue
		}
		seen[n] = true
		v, err := decodeOne(m)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s %s: %v", kind, n, err))
			continue
		}
		out[n] = v
	}
	if len(errs) == 0 && checkSet != nil {
		if err := checkSet(out); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		if len(errs) > maxReportedErrors {
			errs = append(errs[:maxReportedErrors], fmt.Sprintf("and %d more", len(errs)-maxReportedErrors))
		}
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return out, nil
}

// fieldError is a validation error at a field path inside one resource.
type fieldError struct {
	path   string
	reason string
}

func (e *fieldError) Error() string {
	if e.path == "" {
		return e.reason
	}
	return e.path + ": " + e.reason
}

func fail(path, format string, args ...any) error {
	return &fieldError{path: path, reason: fmt.Sprintf(format, args...)}
}

// at prefixes err's field path with path, so that each level of the decoder
// names only its own fields.
func at(path string, err error) error {
	if err == nil {
		return nil
	}
	var fe *fieldError
	if errors.As(err, &fe) {
		return &fieldError{path: joinPath(path, fe.path), reason: fe.reason}
	}
	var re *route.Error
	if errors.As(err, &re) {
		return &fieldError{path: joinPath(path, re.Path), reason: re.Reason}
	}
	return &fieldError{path: path, reason: err.Error()}
}

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case b[0] == '[':
		return a + b
	}
	return a + "." + b
}

// onlyFields rejects a message with any field set that is not in allowed,
// and any field this build does not know (a newer API version's): weft must
// never accept a policy it would silently not enforce. It is the filters'
// check, with the decoder's error type.
func onlyFields(m proto.Message, allowed ...protoreflect.Name) error {
	var ce *filter.ConfigError
	if err := filter.OnlyFields(m, allowed...); errors.As(err, &ce) {
		return fail(ce.Path, "%s", ce.Reason)
	} else if err != nil {
		return err
	}
	return nil
}

// unmarshalAny unmarshals a typed_config after checking its type URL.
func unmarshalAny(a *anypb.Any, url string, m proto.Message) error {
	if a.GetTypeUrl() != url {
		return fail("", "type %s not supported, want %s", a.GetTypeUrl(), url)
	}
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return fail("", "decoding: %v", err)
	}
	return nil
}

// checkADS accepts only a config source that says "over this ADS stream".
func checkADS(cs *corepb.ConfigSource) error {
	if cs == nil {
		return fail("", "required")
	}
	if err := onlyFields(cs, "ads", "resource_api_version", "initial_fetch_timeout"); err != nil {
		return err
	}
	if cs.GetAds() == nil {
		return fail("", "want ads")
	}
	if err := onlyFields(cs.GetAds()); err != nil {
		return at("ads", err)
	}
	if v := cs.GetResourceApiVersion(); v != corepb.ApiVersion_V3 && v != corepb.ApiVersion_AUTO {
		return fail("resource_api_version", "%s not supported, want V3", v)
	}
	return nil
}

// Listeners.

func decodeListener(l *listenerpb.Listener) (*Listener, error) {
	name := l.GetName()
	if name != "outbound" && name != "inbound" {
		return nil, fail("name", "want \"outbound\" or \"inbound\"")
	}
	// The address is the one the proxy reported; the proxy keeps the
	// sockets it bound from its flags and never rebinds from xDS.
	if err := onlyFields(l, "name", "address", "filter_chains", "traffic_direction", "listener_filters"); err != nil {
		return nil, err
	}
	out := &Listener{Name: name}
	inspect, err := decodeListenerFilters(l.GetListenerFilters())
	if err != nil {
		return nil, at("listener_filters", err)
	}
	chain := 0
	switch {
	case inspect && name != "inbound":
		return nil, fail("listener_filters", "not supported on the %s listener: only the inbound listener terminates mTLS", name)
	case inspect:
		out.InspectTLS = true
		if chain, err = inspectedChains(l.GetFilterChains(), out); err != nil {
			return nil, err
		}
	default:
		if n := len(l.GetFilterChains()); n != 1 {
			return nil, fail("filter_chains", "want exactly one filter chain, got %d", n)
		}
		if err := onlyFields(l.GetFilterChains()[0], "name", "filters"); err != nil {
			return nil, at("filter_chains[0]", err)
		}
		out.Plaintext = true
	}
	fc := l.GetFilterChains()[chain]
	if tcp := fc.GetFilters(); name == "inbound" && len(tcp) > 0 && tcp[len(tcp)-1].GetTypedConfig().GetTypeUrl() == tcpProxyURL {
		out.TCP, err = decodeTCPFilters(chain, tcp)
		return out, err
	}
	if n := len(fc.GetFilters()); n != 1 {
		return nil, fail(fmt.Sprintf("filter_chains[%d].filters", chain), "want exactly one filter, envoy.filters.network.http_connection_manager, got %d", n)
	}
	fpath := fmt.Sprintf("filter_chains[%d].filters[0]", chain)
	f := fc.GetFilters()[0]
	if err := onlyFields(f, "name", "typed_config"); err != nil {
		return nil, at(fpath, err)
	}
	hcm := new(hcmpb.HttpConnectionManager)
	if err := unmarshalAny(f.GetTypedConfig(), hcmURL, hcm); err != nil {
		return nil, at(fpath+".typed_config", err)
	}
	return out, at(fpath+".typed_config", decodeHCM(name, hcm, out))
}

// hcmFields are the HttpConnectionManager fields decodeHCM itself decodes.
var hcmFields = []protoreflect.Name{"codec_type", "stat_prefix", "rds", "route_config",
	"forward_client_cert_details", "set_current_client_cert_details"}

func decodeHCM(listener string, h *hcmpb.HttpConnectionManager, out *Listener) error {
	if err := onlyFields(h, slices.Concat(hcmFields, httpFilterFields)...); err != nil {
		return err
	}
	switch c := h.GetCodecType(); c {
	case hcmpb.HttpConnectionManager_AUTO, hcmpb.HttpConnectionManager_HTTP1, hcmpb.HttpConnectionManager_HTTP2:
	default:
		return fail("codec_type", "%s not supported, want AUTO, HTTP1 or HTTP2", c)
	}
	if err := decodeForwardClientCert(h, out); err != nil {
		return err
	}
	if err := decodeHTTPFilters(h, out); err != nil {
		return err
	}
	switch {
	case h.GetRds() != nil:
		rds := h.GetRds()
		if err := onlyFields(rds, "config_source", "route_config_name"); err != nil {
			return at("rds", err)
		}
		if err := checkADS(rds.GetConfigSource()); err != nil {
			return at("rds.config_source", err)
		}
		if rds.GetRouteConfigName() != listener {
			return fail("rds.route_config_name", "%q, want %q (the listener's name)", rds.GetRouteConfigName(), listener)
		}
		out.RouteConfigName = rds.GetRouteConfigName()
	case h.GetRouteConfig() != nil:
		tbl, err := decodeRouteConfig(h.GetRouteConfig())
		if err != nil {
			return at("route_config", err)
		}
		out.RouteConfigName = h.GetRouteConfig().GetName()
		out.InlineRoutes = tbl
	default:
		return fail("route_specifier", "want rds or route_config")
	}
	return nil
}

// checkListenerSet enforces "exactly two listeners, outbound and inbound".
func checkListenerSet(ls map[string]*Listener) error {
	var missing []string
	for _, n := range []string{"outbound", "inbound"} {
		if ls[n] == nil {
			missing = append(missing, strconv.Quote(n))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("listeners: want \"outbound\" and \"inbound\", missing %s", strings.Join(missing, " and "))
	}
	return nil
}

// Routes.

func decodeRouteConfig(rc *routepb.RouteConfiguration) (*route.Table, error) {
	// validate_clusters is accepted and has no effect: weft never rejects a
	// route for an unknown cluster; requests to it get a 503 naming it.
	if err := onlyFields(rc, "name", "virtual_hosts", "validate_clusters"); err != nil {
		return nil, err
	}
	spec := route.ConfigSpec{Name: rc.GetName()}
	for i, vh := range rc.GetVirtualHosts() {
		p := fmt.Sprintf("virtual_hosts[%d]", i)
		if err := onlyFields(vh, "name", "domains", "routes"); err != nil {
			return nil, at(p, err)
		}
		vs := route.VirtualHostSpec{Name: vh.GetName(), Domains: vh.GetDomains()}
		for j, r := range vh.GetRoutes() {
			rs, err := decodeRoute(r)
			if err != nil {
				return nil, at(fmt.Sprintf("%s.routes[%d]", p, j), err)
			}
			vs.Routes = append(vs.Routes, rs)
		}
		spec.VirtualHosts = append(spec.VirtualHosts, vs)
	}
	tbl, err := route.Compile(spec)
	if err != nil {
		return nil, at("", err)
	}
	return tbl, nil
}

func decodeRoute(r *routepb.Route) (route.RouteSpec, error) {
	if err := onlyFields(r, "name", "match", "route"); err != nil {
		return route.RouteSpec{}, err
	}
	if r.GetMatch() == nil {
		return route.RouteSpec{}, fail("match", "required")
	}
	if r.GetRoute() == nil {
		return route.RouteSpec{}, fail("", "want a route action (route)")
	}
	m, err := decodeMatch(r.GetMatch())
	if err != nil {
		return route.RouteSpec{}, at("match", err)
	}
	a, err := decodeAction(r.GetRoute())
	if err != nil {
		return route.RouteSpec{}, at("route", err)
	}
	return route.RouteSpec{Name: r.GetName(), Match: m, Action: a}, nil
}

func decodeMatch(m *routepb.RouteMatch) (route.MatchSpec, error) {
	if err := onlyFields(m, "prefix", "path", "safe_regex", "case_sensitive", "headers"); err != nil {
		return route.MatchSpec{}, err
	}
	ms := route.MatchSpec{CaseSensitive: true}
	if cs := m.GetCaseSensitive(); cs != nil {
		ms.CaseSensitive = cs.GetValue()
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routepb.RouteMatch_Prefix:
		ms.PathKind, ms.Path = route.PathPrefix, ps.Prefix
	case *routepb.RouteMatch_Path:
		ms.PathKind, ms.Path = route.PathExact, ps.Path
	case *routepb.RouteMatch_SafeRegex:
		re, err := decodeRegex(ps.SafeRegex)
		if err != nil {
			return route.MatchSpec{}, at("safe_regex", err)
		}
		ms.PathKind, ms.Path = route.PathRegex, re
	default:
		return route.MatchSpec{}, fail("", "want prefix, path or safe_regex")
	}
	for k, h := range m.GetHeaders() {
		hs, err := decodeHeaderMatcher(h)
		if err != nil {
			return route.MatchSpec{}, at(fmt.Sprintf("headers[%d]", k), err)
		}
		ms.Headers = append(ms.Headers, hs)
	}
	return ms, nil
}

func decodeRegex(rm *matcherpb.RegexMatcher) (string, error) {
	if err := onlyFields(rm, "google_re2", "regex"); err != nil {
		return "", err
	}
	// google_re2 is deprecated but older control planes still send it
	// empty; accept it only empty (its one option is a program size limit).
	// Reflection avoids the deprecated getter.
	m := rm.ProtoReflect()
	if fd := m.Descriptor().Fields().ByName("google_re2"); m.Has(fd) {
		if err := onlyFields(m.Get(fd).Message().Interface()); err != nil {
			return "", at("google_re2", err)
		}
	}
	return rm.GetRegex(), nil
}

func decodeHeaderMatcher(h *routepb.HeaderMatcher) (route.HeaderMatchSpec, error) {
	if err := onlyFields(h, "name", "string_match", "present_match", "invert_match"); err != nil {
		return route.HeaderMatchSpec{}, err
	}
	hs := route.HeaderMatchSpec{Name: h.GetName(), Invert: h.GetInvertMatch()}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routepb.HeaderMatcher_StringMatch:
		if err := decodeStringMatcher(s.StringMatch, &hs); err != nil {
			return route.HeaderMatchSpec{}, at("string_match", err)
		}
	case *routepb.HeaderMatcher_PresentMatch:
		hs.Kind, hs.Present = route.StringPresent, s.PresentMatch
	default:
		// No specifier means "the header is present", as in Envoy.
		hs.Kind, hs.Present = route.StringPresent, true
	}
	return hs, nil
}

func decodeStringMatcher(sm *matcherpb.StringMatcher, hs *route.HeaderMatchSpec) error {
	if err := onlyFields(sm, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return err
	}
	hs.IgnoreCase = sm.GetIgnoreCase()
	switch p := sm.GetMatchPattern().(type) {
	case *matcherpb.StringMatcher_Exact:
		hs.Kind, hs.Value = route.StringExact, p.Exact
	case *matcherpb.StringMatcher_Prefix:
		hs.Kind, hs.Value = route.StringPrefix, p.Prefix
	case *matcherpb.StringMatcher_Suffix:
		hs.Kind, hs.Value = route.StringSuffix, p.Suffix
	case *matcherpb.StringMatcher_Contains:
		hs.Kind, hs.Value = route.StringContains, p.Contains
	case *matcherpb.StringMatcher_SafeRegex:
		re, err := decodeRegex(p.SafeRegex)
		if err != nil {
			return at("safe_regex", err)
		}
		hs.Kind, hs.Value = route.StringRegex, re
	default:
		return fail("", "want exact, prefix, suffix, contains or safe_regex")
	}
	return nil
}

func decodeAction(a *routepb.RouteAction) (route.ActionSpec, error) {
	if err := onlyFields(a, "cluster", "weighted_clusters", "timeout"); err != nil {
		return route.ActionSpec{}, err
	}
	var as route.ActionSpec
	if t := a.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil {
			return route.ActionSpec{}, fail("timeout", "%v", err)
		}
		if as.Timeout = t.AsDuration(); as.Timeout < 0 {
			return route.ActionSpec{}, fail("timeout", "negative duration %s", as.Timeout)
		}
	}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routepb.RouteAction_Cluster:
		if cs.Cluster == "" {
			return route.ActionSpec{}, fail("cluster", "required")
		}
		as.Cluster = cs.Cluster
	case *routepb.RouteAction_WeightedClusters:
		wc := cs.WeightedClusters
		if err := onlyFields(wc, "clusters"); err != nil {
			return route.ActionSpec{}, at("weighted_clusters", err)
		}
		if len(wc.GetClusters()) == 0 {
			return route.ActionSpec{}, fail("weighted_clusters.clusters", "at least one cluster is required")
		}
		for i, cw := range wc.GetClusters() {
			if err := onlyFields(cw, "name", "weight"); err != nil {
				return route.ActionSpec{}, at(fmt.Sprintf("weighted_clusters.clusters[%d]", i), err)
			}
			as.WeightedClusters = append(as.WeightedClusters, route.WeightedCluster{Name: cw.GetName(), Weight: cw.GetWeight().GetValue()})
		}
	default:
		return route.ActionSpec{}, fail("", "want cluster or weighted_clusters")
	}
	return as, nil
}

// Clusters.

func decodeCluster(c *clusterpb.Cluster) (*Cluster, error) {
	// Checked before the generic field check for a clearer message.
	if p := c.GetLbPolicy(); p != clusterpb.Cluster_ROUND_ROBIN {
		return nil, fail("lb_policy", "%s not supported, want ROUND_ROBIN", p)
	}
	if err := onlyFields(c, "name", "type", "eds_cluster_config", "connect_timeout", "lb_policy", "load_assignment", "transport_socket",
		"typed_extension_protocol_options"); err != nil {
		return nil, err
	}
	out := &Cluster{Name: c.GetName(), ConnectTimeout: cluster.DefaultConnectTimeout}
	if ts := c.GetTransportSocket(); ts != nil {
		t, err := decodeUpstreamTLS(ts)
		if err != nil {
			return nil, at("transport_socket", err)
		}
		out.TLS = t
	}
	if opts := c.GetTypedExtensionProtocolOptions(); len(opts) > 0 {
		keep, err := decodeProtocolOptions(opts)
		if err != nil {
			return nil, at("typed_extension_protocol_options", err)
		}
		if out.TLS == nil {
			return nil, fail("typed_extension_protocol_options", "only mTLS clusters choose their HTTP protocol; plaintext ones keep the request's")
		}
		out.TLS.KeepHTTP1 = keep
	}
	if ct := c.GetConnectTimeout(); ct != nil {
		if err := ct.CheckValid(); err != nil {
			return nil, fail("connect_timeout", "%v", err)
		}
		if out.ConnectTimeout = ct.AsDuration(); out.ConnectTimeout <= 0 {
			return nil, fail("connect_timeout", "must be positive, got %s", out.ConnectTimeout)
		}
	}
	switch t := c.GetType(); t { // GetType is STATIC when unset, Envoy's default
	case clusterpb.Cluster_EDS:
		out.Type = ClusterEDS
		ecc := c.GetEdsClusterConfig()
		if ecc == nil {
			return nil, fail("eds_cluster_config", "required for type EDS")
		}
		if err := onlyFields(ecc, "eds_config", "service_name"); err != nil {
			return nil, at("eds_cluster_config", err)
		}
		if err := checkADS(ecc.GetEdsConfig()); err != nil {
			return nil, at("eds_cluster_config.eds_config", err)
		}
		out.ServiceName = ecc.GetServiceName()
		if out.ServiceName == "" {
			out.ServiceName = c.GetName() // Envoy's default
		}
		if out.ServiceName != c.GetName() {
			return nil, fail("eds_cluster_config.service_name", "%q, want the cluster name", out.ServiceName)
		}
		if c.GetLoadAssignment() != nil {
			return nil, fail("load_assignment", "not supported for EDS clusters, whose endpoints come from EDS")
		}
	case clusterpb.Cluster_STATIC:
		out.Type = ClusterStatic
		if c.GetEdsClusterConfig() != nil {
			return nil, fail("eds_cluster_config", "not supported for STATIC clusters")
		}
		if out.TLS != nil {
			return nil, fail("transport_socket", "not supported for STATIC clusters: mTLS is for mesh endpoints, from EDS")
		}
		if c.GetLoadAssignment() == nil {
			return nil, fail("load_assignment", "required for STATIC clusters")
		}
		eps, err := decodeLoadAssignment(c.GetLoadAssignment())
		if err != nil {
			return nil, at("load_assignment", err)
		}
		out.Endpoints = eps.Endpoints
	default:
		return nil, fail("type", "%s not supported, want EDS or STATIC", t)
	}
	return out, nil
}

// Endpoints.

func decodeLoadAssignment(cla *endpointpb.ClusterLoadAssignment) (*Endpoints, error) {
	if err := onlyFields(cla, "cluster_name", "endpoints"); err != nil {
		return nil, err
	}
	out := &Endpoints{ClusterName: cla.GetClusterName(), Endpoints: []cluster.Endpoint{}}
	for i, lle := range cla.GetEndpoints() {
		p := fmt.Sprintf("endpoints[%d]", i)
		// Locality, priority and weights are accepted and ignored for now.
		if err := onlyFields(lle, "locality", "lb_endpoints", "load_balancing_weight", "priority"); err != nil {
			return nil, at(p, err)
		}
		for j, lbe := range lle.GetLbEndpoints() {
			q := fmt.Sprintf("%s.lb_endpoints[%d]", p, j)
			ep, err := decodeLbEndpoint(lbe)
			if err != nil {
				return nil, at(q, err)
			}
			switch lbe.GetHealthStatus() {
			case corepb.HealthStatus_UNKNOWN, corepb.HealthStatus_HEALTHY, corepb.HealthStatus_DEGRADED:
				out.Endpoints = append(out.Endpoints, ep)
			}
		}
	}
	return out, nil
}

func decodeLbEndpoint(lbe *endpointpb.LbEndpoint) (cluster.Endpoint, error) {
	if err := onlyFields(lbe, "endpoint", "health_status", "load_balancing_weight"); err != nil {
		return cluster.Endpoint{}, err
	}
	ep := lbe.GetEndpoint()
	if ep == nil {
		return cluster.Endpoint{}, fail("endpoint", "required")
	}
	if err := onlyFields(ep, "address"); err != nil {
		return cluster.Endpoint{}, at("endpoint", err)
	}
	addr := ep.GetAddress()
	if addr == nil {
		return cluster.Endpoint{}, fail("endpoint.address", "required")
	}
	if err := onlyFields(addr, "socket_address"); err != nil {
		return cluster.Endpoint{}, at("endpoint.address", err)
	}
	sa := addr.GetSocketAddress()
	if sa == nil {
		return cluster.Endpoint{}, fail("endpoint.address", "want socket_address")
	}
	const sp = "endpoint.address.socket_address"
	if err := onlyFields(sa, "address", "port_value"); err != nil {
		return cluster.Endpoint{}, at(sp, err)
	}
	if sa.GetAddress() == "" {
		return cluster.Endpoint{}, fail(sp+".address", "required")
	}
	port := sa.GetPortValue()
	if port == 0 || port > 65535 {
		return cluster.Endpoint{}, fail(sp+".port_value", "%d is not a port", port)
	}
	return cluster.Endpoint{Address: net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(port), 10))}, nil
}

// httpProtocolOptionsURL is the type of a cluster's HTTP protocol options.
const (
	httpProtocolOptionsURL = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// decodeProtocolOptions reads a cluster's typed_extension_protocol_options:
// only HttpProtocolOptions with use_downstream_protocol_config (HTTP/1.1
// requests stay HTTP/1.1 over mTLS, HTTP/2 stays HTTP/2) or
// explicit_http_config with http2_protocol_options (weft's default for
// mTLS clusters: HTTP/2), each with no option set.
func decodeProtocolOptions(opts map[string]*anypb.Any) (keepHTTP1 bool, err error) {
	const key = httpProtocolOptionsKey
	for k := range opts {
		if k != key {
			return false, fail(fmt.Sprintf("[%q]", k), "not supported, want %q", key)
		}
	}
	path := fmt.Sprintf("[%q]", key)
	po := new(httppb.HttpProtocolOptions)
	if err := unmarshalAny(opts[key], httpProtocolOptionsURL, po); err != nil {
		return false, at(path, err)
	}
	if err := onlyFields(po, "explicit_http_config", "use_downstream_protocol_config"); err != nil {
		return false, at(path, err)
	}
	switch {
	case po.GetUseDownstreamProtocolConfig() != nil:
		u := po.GetUseDownstreamProtocolConfig()
		if err := onlyFields(u, "http_protocol_options", "http2_protocol_options"); err != nil {
			return false, at(path+".use_downstream_protocol_config", err)
		}
		for name, m := range map[string]proto.Message{"http_protocol_options": u.GetHttpProtocolOptions(), "http2_protocol_options": u.GetHttp2ProtocolOptions()} {
			if m.ProtoReflect().IsValid() {
				if err := onlyFields(m); err != nil {
					return false, at(path+".use_downstream_protocol_config."+name, err)
				}
			}
		}
		return true, nil
	case po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
		if err := onlyFields(po.GetExplicitHttpConfig().GetHttp2ProtocolOptions()); err != nil {
			return false, at(path+".explicit_http_config.http2_protocol_options", err)
		}
		return false, nil
	}
	return false, fail(path, "want use_downstream_protocol_config or explicit_http_config.http2_protocol_options")
}
