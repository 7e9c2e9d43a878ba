package xdsclient

import (
	"slices"
	"strconv"
	"testing"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointpb "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpproxypb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
)

const ratings = "outbound|80||ratings.default.svc.cluster.local"

// mergeHarness drives a Client's response handling directly, one response
// at a time, as the ADS stream would, and keeps what OnUpdate received.
type mergeHarness struct {
	t     *testing.T
	c     *Client
	nonce int
	last  Resources
}

func newMergeHarness(t *testing.T) *mergeHarness {
	t.Helper()
	h := &mergeHarness{t: t}
	c, err := New(Options{ControlPlane: "127.0.0.1:1", Node: NodeInfo{Service: "productpage", Namespace: "default"},
		OnUpdate: func(r Resources) { h.last = r }})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	return h
}

// send hands the client one response and returns its answer.
func (h *mergeHarness) send(url, version string, resources ...proto.Message) *discoverypb.DiscoveryRequest {
	h.t.Helper()
	h.nonce++
	resp := &discoverypb.DiscoveryResponse{TypeUrl: url, VersionInfo: version, Nonce: strconv.Itoa(h.nonce)}
	for _, r := range resources {
		resp.Resources = append(resp.Resources, xdstest.MustAny(r))
	}
	req, _ := h.c.handle(resp)
	return req
}

func (h *mergeHarness) accept(url, version string, resources ...proto.Message) {
	h.t.Helper()
	if req := h.send(url, version, resources...); req.GetErrorDetail() != nil {
		h.t.Fatalf("%s version %s NACKed: %s", url, version, req.GetErrorDetail().GetMessage())
	}
}

// endpoints lists, sorted, "<cluster>=<first address>" for every endpoint
// set the client holds, and checks that the status counts them.
func (h *mergeHarness) endpoints() []string {
	h.t.Helper()
	var out []string
	for name, e := range h.last.Endpoints {
		a := ""
		if len(e.Endpoints) > 0 {
			a = e.Endpoints[0].Address
		}
		out = append(out, name+"="+a)
	}
	slices.Sort(out)
	if got := h.c.Status().Types[TypeEndpoints].Resources; got != len(out) {
		h.t.Errorf("status counts %d EDS resources, the client holds %d", got, len(out))
	}
	return out
}

func (h *mergeHarness) routes() []string {
	h.t.Helper()
	var out []string
	for name := range h.last.Routes {
		out = append(out, name)
	}
	slices.Sort(out)
	if got := h.c.Status().Types[TypeRoute].Resources; got != len(out) {
		h.t.Errorf("status counts %d RDS resources, the client holds %d", got, len(out))
	}
	return out
}

func wantList(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// complete gives the harness a full configuration with clusters reviews
// and ratings.
func (h *mergeHarness) complete() {
	h.t.Helper()
	l := xdstest.Listeners()
	h.accept(ClusterURL, "1", xdstest.EDSCluster(reviews), xdstest.EDSCluster(ratings))
	h.accept(EndpointsURL, "1", xdstest.LoadAssignment(reviews, "10.0.0.1:80"), xdstest.LoadAssignment(ratings, "10.0.1.1:80"))
	h.accept(ListenerURL, "1", l[0], l[1])
	h.accept(RouteURL, "1", xdstest.RouteConfig("outbound"), xdstest.InboundRoutes(80))
	if !h.last.Complete {
		h.t.Fatal("not complete after one response of each type")
	}
}

func TestEDSResponsesAreLaidOverWhatTheClientHolds(t *testing.T) {
	h := newMergeHarness(t)
	h.complete()
	before := h.last

	h.accept(EndpointsURL, "2", xdstest.LoadAssignment(ratings, "10.0.1.2:80"))
	wantList(t, "endpoints after a response with ratings only", h.endpoints(),
		ratings+"=10.0.1.2:80", reviews+"=10.0.0.1:80")
	if h.last.Versions["EDS"] != "2" {
		t.Errorf("EDS version in use = %q, want 2", h.last.Versions["EDS"])
	}
	if got := before.Endpoints[ratings].Endpoints[0].Address; got != "10.0.1.1:80" {
		t.Errorf("the Resources handed out before were modified: ratings = %s", got)
	}

	t.Run("an empty response changes nothing but the version", func(t *testing.T) {
		h.accept(EndpointsURL, "3")
		wantList(t, "endpoints", h.endpoints(), ratings+"=10.0.1.2:80", reviews+"=10.0.0.1:80")
		if h.last.Versions["EDS"] != "3" {
			t.Errorf("EDS version in use = %q, want 3", h.last.Versions["EDS"])
		}
	})
}

func TestAPartialResponseWithAnInvalidResourceChangesNothing(t *testing.T) {
	h := newMergeHarness(t)
	h.complete()
	bad := xdstest.LoadAssignment(ratings, "10.0.1.9:80")
	bad.Policy = &endpointpb.ClusterLoadAssignment_Policy{WeightedPriorityHealth: true}
	req := h.send(EndpointsURL, "2", xdstest.LoadAssignment(reviews, "10.0.0.9:80"), bad)
	if req.GetErrorDetail() == nil || req.GetVersionInfo() != "1" {
		t.Fatalf("answer = %s, want a NACK carrying version 1", xdstest.String(req))
	}
	wantList(t, "endpoints after the NACK", h.endpoints(), ratings+"=10.0.1.1:80", reviews+"=10.0.0.1:80")
	if st := h.c.Status().Types[TypeEndpoints]; st.VersionAcked != "1" || st.Rejected != 1 {
		t.Errorf("EDS status = %+v, want acked 1 and one rejection", st)
	}
}

func TestAcceptedClustersDropTheEndpointsNoClusterUses(t *testing.T) {
	h := newMergeHarness(t)
	h.complete()

	h.accept(ClusterURL, "2", xdstest.EDSCluster(reviews))
	wantList(t, "endpoints once ratings left CDS", h.endpoints(), reviews+"=10.0.0.1:80")

	t.Run("a NACKed CDS response drops nothing", func(t *testing.T) {
		h.accept(ClusterURL, "3", xdstest.EDSCluster(reviews), xdstest.EDSCluster(ratings))
		h.accept(EndpointsURL, "3", xdstest.LoadAssignment(ratings, "10.0.1.3:80"))
		bad := xdstest.EDSCluster(reviews)
		bad.LbPolicy = clusterpb.Cluster_MAGLEV
		if req := h.send(ClusterURL, "4", bad); req.GetErrorDetail() == nil {
			t.Fatal("a MAGLEV cluster was accepted")
		}
		wantList(t, "endpoints", h.endpoints(), ratings+"=10.0.1.3:80", reviews+"=10.0.0.1:80")
	})

	t.Run("a static cluster of the same name does not keep an endpoint set", func(t *testing.T) {
		h.accept(ClusterURL, "5", xdstest.EDSCluster(reviews), xdstest.StaticCluster(ratings, "10.0.1.5:80"))
		wantList(t, "endpoints", h.endpoints(), reviews+"=10.0.0.1:80")
	})
}

func TestEndpointsThatArriveBeforeTheirClusterWaitForTheNextCDS(t *testing.T) {
	h := newMergeHarness(t)
	h.complete()
	h.accept(ClusterURL, "2", xdstest.EDSCluster(reviews))
	wantList(t, "endpoints", h.endpoints(), reviews+"=10.0.0.1:80")

	// EDS of the snapshot that adds ratings back comes before its CDS.
	h.accept(EndpointsURL, "3", xdstest.LoadAssignment(ratings, "10.0.1.3:80"))
	wantList(t, "endpoints before ratings' cluster", h.endpoints(), ratings+"=10.0.1.3:80", reviews+"=10.0.0.1:80")
	// Another EDS response before that CDS keeps it: the server counts on it.
	h.accept(EndpointsURL, "4", xdstest.LoadAssignment(reviews, "10.0.0.4:80"))
	wantList(t, "endpoints", h.endpoints(), ratings+"=10.0.1.3:80", reviews+"=10.0.0.4:80")

	h.accept(ClusterURL, "3", xdstest.EDSCluster(reviews), xdstest.EDSCluster(ratings))
	wantList(t, "endpoints once ratings' cluster came", h.endpoints(), ratings+"=10.0.1.3:80", reviews+"=10.0.0.4:80")
	if eps := h.last.Endpoints[ratings]; eps == nil || h.last.Clusters[ratings] == nil {
		t.Error("ratings has no cluster or no endpoints")
	}
}

func TestAClusterWhoseEndpointsHaveNotArrivedHasNone(t *testing.T) {
	h := newMergeHarness(t)
	h.complete()
	const details = "outbound|80||details.default.svc.cluster.local"
	h.accept(ClusterURL, "2", xdstest.EDSCluster(reviews), xdstest.EDSCluster(ratings), xdstest.EDSCluster(details))
	if h.last.Clusters[details] == nil || h.last.Endpoints[details] != nil {
		t.Fatalf("details: cluster %v, endpoints %v; want a cluster without endpoints yet", h.last.Clusters[details], h.last.Endpoints[details])
	}
	if !h.last.Complete {
		t.Error("no longer complete")
	}
	h.accept(EndpointsURL, "2", xdstest.LoadAssignment(details, "10.0.2.1:80"))
	wantList(t, "endpoints", h.endpoints(), details+"=10.0.2.1:80", ratings+"=10.0.1.1:80", reviews+"=10.0.0.1:80")
}

func TestReadinessNeedsOneEDSResponseEvenAnEmptyOne(t *testing.T) {
	h := newMergeHarness(t)
	l := xdstest.Listeners()
	h.accept(ClusterURL, "1", xdstest.EDSCluster(reviews))
	h.accept(ListenerURL, "1", l[0], l[1])
	h.accept(RouteURL, "1", xdstest.RouteConfig("outbound"), xdstest.InboundRoutes(80))
	if h.last.Complete {
		t.Fatal("complete without an EDS response")
	}
	h.accept(EndpointsURL, "1")
	if !h.last.Complete {
		t.Fatal("not complete after an empty EDS response")
	}
	wantList(t, "endpoints", h.endpoints())
}

func TestRDSResponsesAreLaidOverAndListenersDropUnusedRoutes(t *testing.T) {
	h := newMergeHarness(t)
	h.complete()

	h.accept(RouteURL, "2", xdstest.RouteConfig("outbound", xdstest.VirtualHost("reviews", []string{"reviews"}, xdstest.PrefixRoute("/", reviews))))
	wantList(t, "routes after an outbound-only response", h.routes(), "inbound", "outbound")
	if vh := h.last.Routes["outbound"]; vh == nil || len(h.last.Routes["outbound"].VirtualHosts()) != 1 {
		t.Errorf("outbound routes not replaced: %+v", vh)
	}

	// An inbound listener that proxies TCP takes no route configuration.
	l := xdstest.Listeners()
	tcp := tcpInboundListener(t)
	h.accept(ListenerURL, "2", l[0], tcp)
	wantList(t, "routes once no listener uses inbound", h.routes(), "outbound")
}

// tcpInboundListener is an inbound listener with tcp_proxy to the app's
// cluster.
func tcpInboundListener(t *testing.T) proto.Message {
	t.Helper()
	l := xdstest.Listeners()[1]
	l.FilterChains[0].Filters[0].ConfigType = &listenerpb.Filter_TypedConfig{TypedConfig: xdstest.MustAny(&tcpproxypb.TcpProxy{
		StatPrefix: "inbound", ClusterSpecifier: &tcpproxypb.TcpProxy_Cluster{Cluster: xdstest.InboundCluster(80)},
	})}
	l.FilterChains[0].Filters[0].Name = "envoy.filters.network.tcp_proxy"
	return l
}

func TestNodeDeclaresPartialSotW(t *testing.T) {
	h := newMergeHarness(t)
	if !slices.Contains(h.c.node.GetClientFeatures(), "com.github.weft-mesh.partial-sotw") {
		t.Errorf("client features = %q, want the partial state-of-the-world feature", h.c.node.GetClientFeatures())
	}
}

func TestANewStreamDoesNotClaimAVersionPartlyDropped(t *testing.T) {
	h := newMergeHarness(t)
	h.complete()
	for _, typ := range []Type{TypeCluster, TypeEndpoints, TypeListener, TypeRoute} {
		if v := h.c.resumeVersion(typ); v != "1" {
			t.Errorf("%s resumes at %q, want 1", typ, v)
		}
	}

	// CDS 2 drops ratings' endpoints, which EDS 1 carried: the client no
	// longer holds EDS 1, and a server whose current EDS is 1 (and whose
	// clusters still use ratings) must send it again.
	h.accept(ClusterURL, "2", xdstest.EDSCluster(reviews))
	if v := h.c.resumeVersion(TypeEndpoints); v != "" {
		t.Errorf("EDS resumes at %q after CDS dropped some of it, want none", v)
	}
	if v := h.c.resumeVersion(TypeCluster); v != "2" {
		t.Errorf("CDS resumes at %q, want 2", v)
	}
	h.accept(EndpointsURL, "2")
	if v := h.c.resumeVersion(TypeEndpoints); v != "2" {
		t.Errorf("EDS resumes at %q after EDS 2, want 2", v)
	}
	h.accept(ClusterURL, "3", xdstest.EDSCluster(reviews))
	if v := h.c.resumeVersion(TypeEndpoints); v != "2" {
		t.Errorf("EDS resumes at %q after a CDS response that dropped nothing, want 2", v)
	}

	// The same for routes and listeners.
	h.accept(ListenerURL, "2", xdstest.Listeners()[0], tcpInboundListener(t))
	if v := h.c.resumeVersion(TypeRoute); v != "" {
		t.Errorf("RDS resumes at %q after LDS dropped some of it, want none", v)
	}
	h.accept(RouteURL, "2", xdstest.RouteConfig("outbound"))
	if v := h.c.resumeVersion(TypeRoute); v != "2" {
		t.Errorf("RDS resumes at %q after RDS 2, want 2", v)
	}
}
