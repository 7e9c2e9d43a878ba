package translate

import (
	"fmt"
	"sort"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/weft-mesh/weft/internal/mesh"
)

// outboundRoutes builds the outbound route table of a proxy in namespace:
// one virtual host per mesh service, routed by its VirtualService when one
// applies and straight to the service's cluster otherwise.
func (t *translation) outboundRoutes(namespace string) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: OutboundName}
	for _, svc := range t.snap.Services {
		vh := &routev3.VirtualHost{
			Name:    fmt.Sprintf("%s:%d", svc.Hostname, svc.Port),
			Domains: domains(svc, namespace),
		}
		if vs := t.virtualService(svc.Hostname); vs != nil {
			vh.Routes = t.virtualServiceRoutes(vs, svc)
		} else {
			vh.Routes = []*routev3.Route{{
				Name:   "default",
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: clusterAction(OutboundClusterName(svc.Port, "", svc.Hostname), nil),
			}}
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc
}

// domains lists the names a client in namespace may use for svc, with and
// without the port. The bare service name is only meaningful inside its
// own namespace, so only proxies there get it.
func domains(svc *mesh.Service, namespace string) []string {
	names := []string{svc.Name + "." + svc.Namespace, svc.Name + "." + svc.Namespace + ".svc", svc.Hostname}
	if svc.Namespace == namespace {
		names = append([]string{svc.Name}, names...)
	}
	out := make([]string, 0, 2*len(names))
	for _, n := range names {
		out = append(out, n, fmt.Sprintf("%s:%d", n, svc.Port))
	}
	return out
}

func (t *translation) virtualServiceRoutes(vs *mesh.VirtualService, svc *mesh.Service) []*routev3.Route {
	var routes []*routev3.Route
	for i, h := range vs.Spec.GetHttp() {
		name := h.GetName()
		if name == "" {
			name = fmt.Sprintf("%d", i)
		}
		name = fmt.Sprintf("%s.%s.%s", vs.Namespace, vs.Name, name)
		action := t.routeAction(vs, svc, h)
		matches := h.GetMatch()
		if len(matches) == 0 {
			matches = []*networking.HTTPMatchRequest{nil}
		}
		for _, m := range matches {
			routes = append(routes, &routev3.Route{
				Name:   name,
				Match:  routeMatch(m),
				Action: action,
			})
		}
	}
	return routes
}

// routeAction turns an HTTPRoute's destinations into one cluster or a
// weighted split. Destinations of weight zero receive nothing, so they are
// left out, as Istio does.
func (t *translation) routeAction(vs *mesh.VirtualService, svc *mesh.Service, h *networking.HTTPRoute) *routev3.Route_Route {
	type weighted struct {
		cluster string
		weight  uint32
	}
	var dests []weighted
	for _, d := range h.GetRoute() {
		if len(h.GetRoute()) > 1 && d.GetWeight() <= 0 {
			continue
		}
		host := t.snap.ResolveHost(d.GetDestination().GetHost(), vs.Namespace)
		port := d.GetDestination().GetPort().GetNumber()
		if port == 0 {
			port = svc.Port
			if target := t.snap.Service(host); target != nil {
				port = target.Port
			}
		}
		dests = append(dests, weighted{OutboundClusterName(port, d.GetDestination().GetSubset(), host), uint32(max(d.GetWeight(), 0))})
	}
	var action *routev3.RouteAction
	switch len(dests) {
	case 0:
		// Validation forbids an empty route; send to the service itself
		// rather than emit an action the proxy must reject.
		action = &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: OutboundClusterName(svc.Port, "", svc.Hostname)}}
	case 1:
		action = &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: dests[0].cluster}}
	default:
		wc := &routev3.WeightedCluster{}
		for _, d := range dests {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
				Name:   d.cluster,
				Weight: wrapperspb.UInt32(d.weight),
			})
		}
		action = &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}
	}
	// Istio's default is no timeout; Envoy's would be 15s, so say it.
	action.Timeout = durationpb.New(0)
	if h.GetTimeout() != nil {
		action.Timeout = durationpb.New(h.GetTimeout().AsDuration())
	}
	if r := h.GetRetries(); r != nil && r.GetAttempts() > 0 {
		rp := &routev3.RetryPolicy{
			RetryOn:    r.GetRetryOn(),
			NumRetries: wrapperspb.UInt32(uint32(r.GetAttempts())),
		}
		if rp.RetryOn == "" {
			rp.RetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
		}
		if r.GetPerTryTimeout() != nil {
			rp.PerTryTimeout = durationpb.New(r.GetPerTryTimeout().AsDuration())
		}
		action.RetryPolicy = rp
	}
	return &routev3.Route_Route{Route: action}
}

func clusterAction(cluster string, timeout *durationpb.Duration) *routev3.Route_Route {
	if timeout == nil {
		timeout = durationpb.New(0)
	}
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
		Timeout:          timeout,
	}}
}

// routeMatch turns one Istio match into an Envoy RouteMatch; a nil match
// matches every request.
func routeMatch(m *networking.HTTPMatchRequest) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm
	}
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
	case *networking.StringMatch_Regex:
		rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	if m.GetMethod() != nil {
		rm.Headers = append(rm.Headers, headerMatcher(":method", m.GetMethod()))
	}
	names := make([]string, 0, len(m.GetHeaders()))
	for name := range m.GetHeaders() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		rm.Headers = append(rm.Headers, headerMatcher(strings.ToLower(name), m.GetHeaders()[name]))
	}
	return rm
}

// headerMatcher matches one header; an Istio StringMatch with no value set
// means the header must be present.
func headerMatcher(name string, sm *networking.StringMatch) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: name}
	var s *matcherv3.StringMatcher
	switch v := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		s = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Exact}}
	case *networking.StringMatch_Prefix:
		s = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v.Prefix}}
	case *networking.StringMatch_Regex:
		s = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: v.Regex}}}
	}
	if s == nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: s}
	}
	return hm
}
