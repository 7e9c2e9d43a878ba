package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlspb "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-mesh/weft/internal/proxy/internal/leakcheck"
	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
	"github.com/weft-mesh/weft/internal/proxy/xdsclient"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

const (
	reviewsV1 = "outbound|80||reviews.default.svc.cluster.local"
	reviewsV2 = "outbound|80|v2|reviews.default.svc.cluster.local"
	ratings   = "outbound|80||ratings.default.svc.cluster.local"
	streamer  = "outbound|80||stream.default.svc.cluster.local"
	empty     = "outbound|80||empty.default.svc.cluster.local"
)

// testLogger discards logs unless WEFT_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("WEFT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// backend is a named upstream that says who answered and what it saw.
func backend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s %s", name, r.Method, r.RequestURI, r.Host)
	}))
	t.Cleanup(s.Close)
	return s
}

func addrOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// world is one control plane, one proxy and the backends behind it.
type world struct {
	srv      *xdstest.Server
	proxy    *Proxy
	addrs    Addrs
	backends map[string]*httptest.Server
	client   *http.Client
	stop     func() error // stops the proxy and returns Serve's result
}

func newWorld(t *testing.T, options ...func(*Options)) *world {
	t.Helper()
	w := &world{srv: xdstest.NewServer(t, "127.0.0.1:0"), backends: map[string]*httptest.Server{}}
	for _, n := range []string{"app", "reviews-v1", "reviews-v2", "ratings", "other"} {
		w.backends[n] = backend(t, n)
	}
	w.backends["stream"] = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		for i := range 10 {
			fmt.Fprintf(rw, "chunk %d\n", i)
			rw.(http.Flusher).Flush()
			select {
			case <-time.After(50 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(w.backends["stream"].Close)

	opts := Options{
		ControlPlane: w.srv.Addr,
		InsecureXDS:  true,
		Service:      "productpage",
		AppAddr:      addrOf(w.backends["app"]),
		InboundAddr:  "127.0.0.1:0",
		OutboundAddr: "127.0.0.1:0",
		AdminAddr:    "127.0.0.1:0",
		DrainTimeout: 2 * time.Second,
		Logger:       testLogger(),
	}
	for _, o := range options {
		o(&opts)
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w.proxy, w.addrs = p, p.Addrs()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	stopped := false
	var result error
	w.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return after cancel")
			}
		}
		return result
	}
	t.Cleanup(func() {
		if err := w.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	w.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return w
}

// snapshot is the standard configuration: reviews (v2 for requests with
// x-canary), ratings, a streaming service, a service with no endpoints, a
// route to a cluster nobody sent, and the inbound path to the app.
func (w *world) snapshot() xdstest.Snapshot {
	canary := xdstest.PrefixRoute("/", reviewsV2)
	canary.Match.Headers = []*routepb.HeaderMatcher{{
		Name:                 "x-canary",
		HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: "yes"}}},
	}}
	post := xdstest.PrefixRoute("/", ratings)
	post.Match.Headers = []*routepb.HeaderMatcher{{
		Name:                 ":method",
		HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: "POST"}}},
	}}
	l := xdstest.Listeners()
	return xdstest.Snapshot{
		Clusters: []types.Resource{
			xdstest.EDSCluster(reviewsV1), xdstest.EDSCluster(reviewsV2), xdstest.EDSCluster(ratings),
			xdstest.EDSCluster(streamer), xdstest.EDSCluster(empty),
			xdstest.StaticCluster(xdstest.InboundCluster(80), addrOf(w.backends["app"])),
		},
		Endpoints: []types.Resource{
			xdstest.LoadAssignment(reviewsV1, addrOf(w.backends["reviews-v1"])),
			xdstest.LoadAssignment(reviewsV2, addrOf(w.backends["reviews-v2"])),
			xdstest.LoadAssignment(ratings, addrOf(w.backends["ratings"])),
			xdstest.LoadAssignment(streamer, addrOf(w.backends["stream"])),
			xdstest.LoadAssignment(empty),
		},
		Listeners: []types.Resource{l[0], l[1]},
		Routes: []types.Resource{
			xdstest.RouteConfig("outbound",
				xdstest.VirtualHost("reviews.default.svc.cluster.local:80", xdstest.ServiceDomains("reviews", "default", 80),
					canary, post, xdstest.PrefixRoute("/", reviewsV1)),
				xdstest.VirtualHost("ratings.default.svc.cluster.local:80", xdstest.ServiceDomains("ratings", "default", 80),
					xdstest.PrefixRoute("/", ratings)),
				xdstest.VirtualHost("stream.default.svc.cluster.local:80", xdstest.ServiceDomains("stream", "default", 80),
					xdstest.PrefixRoute("/", streamer)),
				xdstest.VirtualHost("empty.default.svc.cluster.local:80", []string{"empty"}, xdstest.PrefixRoute("/", empty)),
				xdstest.VirtualHost("ghost.default.svc.cluster.local:80", []string{"ghost"},
					xdstest.PrefixRoute("/", "outbound|80||ghost.default.svc.cluster.local")),
			),
			xdstest.InboundRoutes(80),
		},
	}
}

// waitVersion waits until the proxy serves a complete configuration at
// version for every type.
func (w *world) waitVersion(ctx context.Context, t *testing.T, version string) {
	t.Helper()
	for {
		if d := w.proxy.dump.Load(); d != nil {
			v := d.Versions
			if v["CDS"] == version && v["EDS"] == version && v["LDS"] == version && v["RDS"] == version {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("proxy never served version %s: %v", version, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

type reply struct {
	code  int
	body  string
	local bool
}

func (w *world) get(ctx context.Context, t *testing.T, addr, method, host, path string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, w.client, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) reply {
	t.Helper()
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s (host %s): %v", req.Method, req.URL, req.Host, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{res.StatusCode, string(b), res.Header.Get("X-Weft-Local-Reply") == "true"}
}

func TestRoutesByHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := newWorld(t)
	w.srv.Push(t, "1", w.snapshot())
	w.waitVersion(ctx, t, "1")

	tests := []struct {
		name     string
		listener string
		method   string
		host     string
		path     string
		header   []string
		want     string
	}{
		{"the short name routes to the service", "outbound", "GET", "reviews", "/r/1?x=y", nil, "reviews-v1 GET /r/1?x=y reviews"},
		{"the name with its port routes to the service", "outbound", "GET", "reviews:80", "/", nil, "reviews-v1 GET / reviews:80"},
		{"the fully qualified name routes to the service", "outbound", "GET", "reviews.default.svc.cluster.local", "/", nil, "reviews-v1 GET / reviews.default.svc.cluster.local"},
		{"host matching ignores case, and the host is forwarded lower-cased as policy saw it", "outbound", "GET", "Ratings.Default", "/", nil, "ratings GET / ratings.default"},
		{"a header match routes to the canary", "outbound", "GET", "reviews", "/", []string{"X-Canary", "yes"}, "reviews-v2 GET / reviews"},
		{"a header with another value does not", "outbound", "GET", "reviews", "/", []string{"X-Canary", "no"}, "reviews-v1 GET / reviews"},
		{"a :method match routes by method", "outbound", "POST", "reviews", "/", nil, "ratings POST / reviews"},
		{"the inbound listener delivers any host to the app", "inbound", "GET", "productpage:9080", "/p", nil, "app GET /p productpage:9080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := w.addrs.Outbound
			if tt.listener == "inbound" {
				addr = w.addrs.Inbound
			}
			r := w.get(ctx, t, addr, tt.method, tt.host, tt.path, tt.header...)
			if r.code != 200 || r.body != tt.want {
				t.Errorf("got %d %q, want 200 %q", r.code, r.body, tt.want)
			}
		})
	}

	t.Run("an absolute-form request through http_proxy reaches the upstream in origin form", func(t *testing.T) {
		proxyURL, _ := url.Parse("http://" + w.addrs.Outbound)
		tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://reviews/x?y=1", nil)
		r := do(t, &http.Client{Transport: tr}, req)
		if want := "reviews-v1 GET /x?y=1 reviews"; r.code != 200 || r.body != want {
			t.Errorf("got %d %q, want 200 %q", r.code, r.body, want)
		}
	})

	t.Run("an h2c prior-knowledge client is served on the outbound listener", func(t *testing.T) {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: &protos}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+w.addrs.Outbound+"/h2", nil)
		req.Host = "ratings"
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.ProtoMajor != 2 || string(b) != "ratings GET /h2 ratings" {
			t.Errorf("got %s %q, want HTTP/2 \"ratings GET /h2 ratings\"", res.Proto, b)
		}
	})
}

func TestLocalRepliesThroughXDS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := newWorld(t)

	before := w.get(ctx, t, w.addrs.Outbound, "GET", "reviews", "/")
	if want := (reply{503, "no configuration received from the control plane yet\n", true}); before != want {
		t.Errorf("before any configuration: got %+v, want %+v", before, want)
	}

	w.srv.Push(t, "1", w.snapshot())
	w.waitVersion(ctx, t, "1")
	tests := []struct {
		name string
		host string
		want reply
	}{
		{"an unknown host gets 404 naming it", "details", reply{404, "no route for host \"details\"\n", true}},
		{"a service without endpoints gets 503", "empty", reply{503, "no healthy upstream for cluster " + empty + "\n", true}},
		{"a cluster nobody sent gets 503 naming it", "ghost", reply{503, "unknown cluster outbound|80||ghost.default.svc.cluster.local\n", true}},
		{"a served route is not a local reply", "reviews", reply{200, "reviews-v1 GET / reviews", false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := w.get(ctx, t, w.addrs.Outbound, "GET", tt.host, "/"); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// nackCase is one update outside docs/xds.md: how to break the standard
// snapshot, which type is NACKed, and the message the server must get.
type nackCase struct {
	name    string
	typeURL string
	mutate  func(*xdstest.Snapshot)
	msg     string
}

func outboundRoute(s *xdstest.Snapshot) *routepb.Route {
	return s.Routes[0].(*routepb.RouteConfiguration).VirtualHosts[0].Routes[2]
}

func outboundHCM(s *xdstest.Snapshot, mutate func(*hcmpb.HttpConnectionManager)) {
	h := xdstest.HCM("outbound")
	mutate(h)
	s.Listeners[0] = xdstest.Listener("outbound", "127.0.0.1:15001", h)
}

var nackCases = []nackCase{
	{"a route with a retry policy", xdsclient.RouteURL, func(s *xdstest.Snapshot) {
		outboundRoute(s).GetRoute().RetryPolicy = &routepb.RetryPolicy{RetryOn: "5xx"}
	}, "route outbound: virtual_hosts[0].routes[2].route.retry_policy: not supported"},
	{"a route with a redirect", xdsclient.RouteURL, func(s *xdstest.Snapshot) {
		outboundRoute(s).Action = &routepb.Route_Redirect{Redirect: &routepb.RedirectAction{HostRedirect: "example.com"}}
	}, "route outbound: virtual_hosts[0].routes[2].redirect: not supported"},
	{"a route with a direct response", xdsclient.RouteURL, func(s *xdstest.Snapshot) {
		outboundRoute(s).Action = &routepb.Route_DirectResponse{DirectResponse: &routepb.DirectResponseAction{Status: 418}}
	}, "route outbound: virtual_hosts[0].routes[2].direct_response: not supported"},
	{"a cluster with MAGLEV load balancing", xdsclient.ClusterURL, func(s *xdstest.Snapshot) {
		s.Clusters[0].(*clusterpb.Cluster).LbPolicy = clusterpb.Cluster_MAGLEV
	}, "cluster " + reviewsV1 + ": lb_policy: MAGLEV not supported, want ROUND_ROBIN"},
	{"a cluster with mTLS allowing TLS 1.2", xdsclient.ClusterURL, func(s *xdstest.Snapshot) {
		ctx := xdstest.UpstreamTLSContext(reviewsV1, "spiffe://cluster.local/ns/default/sa/reviews")
		ctx.CommonTlsContext.TlsParams.TlsMinimumProtocolVersion = tlspb.TlsParameters_TLSv1_2
		xdstest.WithUpstreamTLS(s.Clusters[0].(*clusterpb.Cluster), ctx)
	}, "cluster " + reviewsV1 + ": transport_socket.typed_config.common_tls_context.tls_params.tls_minimum_protocol_version: TLSv1_2 not supported, want TLSv1_3"},
	{"an HTTP filter other than the router that is not optional", xdsclient.ListenerURL, func(s *xdstest.Snapshot) {
		outboundHCM(s, func(h *hcmpb.HttpConnectionManager) {
			h.HttpFilters = append([]*hcmpb.HttpFilter{{
				Name:       "envoy.filters.http.fault",
				ConfigType: &hcmpb.HttpFilter_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"}},
			}}, h.HttpFilters...)
		})
	}, `listener outbound: filter_chains[0].filters[0].typed_config.http_filters[0]: filter "envoy.filters.http.fault" ` +
		"(type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault) not supported; want envoy.filters.http.jwt_authn, envoy.filters.http.rbac and envoy.filters.http.router, or is_optional"},
	{"a listener with two filter chains", xdsclient.ListenerURL, func(s *xdstest.Snapshot) {
		l := s.Listeners[0].(*listenerpb.Listener)
		l.FilterChains = append(l.FilterChains, proto.Clone(l.FilterChains[0]).(*listenerpb.FilterChain))
	}, "listener outbound: filter_chains: want exactly one filter chain, got 2"},
}

func TestNACKedUpdateKeepsTheOldConfigServing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := newWorld(t)
	w.srv.Push(t, "1", w.snapshot())
	w.waitVersion(ctx, t, "1")

	typeName := map[string]string{xdsclient.ClusterURL: "CDS", xdsclient.ListenerURL: "LDS", xdsclient.RouteURL: "RDS"}
	for i, tc := range nackCases {
		t.Run(tc.name+" is NACKed and the old config keeps serving", func(t *testing.T) {
			version := fmt.Sprintf("bad-%d", i)
			snap := w.snapshot()
			tc.mutate(&snap)
			w.srv.Push(t, version, snap)

			nack := w.srv.WaitRequest(ctx, t, "NACKing "+version, xdstest.IsNACK(tc.typeURL, tc.msg))
			if nack.GetVersionInfo() == version {
				t.Errorf("NACK carries the rejected version %q; want the last good one", version)
			}
			// The other types of the same version are fine and accepted;
			// wait for them so the check below sees the settled state.
			w.srv.WaitRequest(ctx, t, "ACKing EDS "+version, xdstest.IsACK(xdsclient.EndpointsURL, version))
			if v := w.proxy.dump.Load().Versions[typeName[tc.typeURL]]; v == version {
				t.Errorf("the proxy serves %s version %s, which it NACKed", typeName[tc.typeURL], v)
			}
			if got := w.get(ctx, t, w.addrs.Outbound, "GET", "reviews", "/"); got != (reply{200, "reviews-v1 GET / reviews", false}) {
				t.Errorf("after the NACK: got %+v, want the old route to reviews-v1", got)
			}
			for _, ts := range w.proxy.xds.Status().Types {
				if ts.TypeURL == tc.typeURL && (ts.LastNACK != tc.msg || ts.VersionReceived != version || ts.VersionAcked == version) {
					t.Errorf("status of %s = %+v, want the NACK of %s recorded and an older version acked", ts.Type, ts, version)
				}
			}
		})
	}

	t.Run("a good update after the NACKs is applied", func(t *testing.T) {
		snap := w.snapshot()
		snap.Endpoints[0] = xdstest.LoadAssignment(reviewsV1, addrOf(w.backends["other"]))
		w.srv.Push(t, "2", snap)
		w.waitVersion(ctx, t, "2")
		if got := w.get(ctx, t, w.addrs.Outbound, "GET", "reviews", "/"); !strings.HasPrefix(got.body, "other ") {
			t.Errorf("after version 2: got %+v, want the new endpoint", got)
		}
	})
}

func TestConfigSwapWhileStreaming(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := newWorld(t)
	w.srv.Push(t, "1", w.snapshot())
	w.waitVersion(ctx, t, "1")

	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+w.addrs.Outbound+"/events", nil)
	req.Host = "stream"
	res, err := w.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if l, err := br.ReadString('\n'); err != nil || l != "chunk 0\n" {
		t.Fatalf("first chunk = %q, %v", l, err)
	}

	// Mid-stream, the stream service disappears from the configuration.
	snap := w.snapshot()
	rc := snap.Routes[0].(*routepb.RouteConfiguration)
	rc.VirtualHosts = append(rc.VirtualHosts[:2], rc.VirtualHosts[3:]...)
	snap.Clusters = append(snap.Clusters[:3], snap.Clusters[4:]...)
	w.srv.Push(t, "2", snap)
	w.waitVersion(ctx, t, "2")

	if got := w.get(ctx, t, w.addrs.Outbound, "GET", "stream", "/"); got.code != 404 {
		t.Errorf("a new request after the swap: got %+v, want 404", got)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("the stream in flight broke after the swap: %v", err)
	}
	if want := "chunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5\nchunk 6\nchunk 7\nchunk 8\nchunk 9\n"; string(rest) != want {
		t.Errorf("rest of the stream = %q, want %q", rest, want)
	}
}

func TestServesWhileTheControlPlaneIsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := newWorld(t)
	w.srv.Push(t, "1", w.snapshot())
	w.waitVersion(ctx, t, "1")

	w.srv.Stop()
	for w.proxy.xds.Status().Connected {
		select {
		case <-ctx.Done():
			t.Fatal("proxy still connected after the control plane stopped")
		case <-time.After(10 * time.Millisecond):
		}
	}
	for i := range 20 {
		if got := w.get(ctx, t, w.addrs.Outbound, "GET", "reviews", "/"); got.code != 200 {
			t.Fatalf("request %d with the control plane down: got %+v, want 200", i, got)
		}
	}
	if got := w.get(ctx, t, w.addrs.Admin, "GET", "admin", "/healthz/ready"); got.code != 200 {
		t.Errorf("readiness with the control plane down: got %+v, want 200", got)
	}

	// The control plane comes back (same address, new state): the proxy
	// reconnects on its own and applies it.
	srv2 := xdstest.NewServer(t, w.srv.Addr)
	snap := w.snapshot()
	snap.Endpoints[0] = xdstest.LoadAssignment(reviewsV1, addrOf(w.backends["other"]))
	srv2.Push(t, "2", snap)
	w.waitVersion(ctx, t, "2")
	if got := w.get(ctx, t, w.addrs.Outbound, "GET", "reviews", "/"); !strings.HasPrefix(got.body, "other ") {
		t.Errorf("after reconnecting: got %+v, want the new endpoint", got)
	}
}

func TestAdminEndpoints(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := newWorld(t)

	if got := w.get(ctx, t, w.addrs.Admin, "GET", "admin", "/healthz/ready"); got.code != 503 {
		t.Errorf("readiness before any configuration: got %+v, want 503", got)
	}
	w.srv.Push(t, "1", w.snapshot())
	w.waitVersion(ctx, t, "1")
	if got := w.get(ctx, t, w.addrs.Admin, "GET", "admin", "/healthz/ready"); got != (reply{200, "ready\n", false}) {
		t.Errorf("readiness with a configuration: got %+v, want 200 ready", got)
	}
	_ = w.get(ctx, t, w.addrs.Outbound, "GET", "reviews", "/")
	// The configuration is served once CDS, EDS, LDS and RDS are in; the
	// other types' ACKs may still be on their way.
	for !allAcked(w.proxy.xds.Status(), "1") {
		select {
		case <-ctx.Done():
			t.Fatalf("not every type acked version 1: %+v", w.proxy.xds.Status().Types)
		case <-time.After(5 * time.Millisecond):
		}
	}

	dump := w.get(ctx, t, w.addrs.Admin, "GET", "admin", "/config_dump")
	var d struct {
		Node struct {
			ID, Service, Namespace string
		}
		Ready bool
		XDS   struct {
			Connected bool
			Types     []struct {
				Type         string
				VersionAcked string `json:"version_acked"`
			}
		}
		Compiled struct {
			Versions map[string]string
			Warnings []string
			Config   struct {
				Listeners map[string]struct {
					RouteConfigName string `json:"route_config_name"`
					Routes          struct {
						VirtualHosts []struct{ Name string } `json:"virtual_hosts"`
					}
				}
				Clusters map[string]struct {
					Endpoints []struct{ Address string }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(dump.body), &d); err != nil {
		t.Fatalf("config dump is not JSON: %v\n%s", err, dump.body)
	}
	if d.Node.ID != w.proxy.NodeID() || d.Node.Service != "productpage" || d.Node.Namespace != "default" || !d.Ready || !d.XDS.Connected {
		t.Errorf("config dump node/status = %+v ready %v connected %v", d.Node, d.Ready, d.XDS.Connected)
	}
	for _, ts := range d.XDS.Types {
		if ts.VersionAcked != "1" {
			t.Errorf("%s acked %q, want 1", ts.Type, ts.VersionAcked)
		}
	}
	if got := d.Compiled.Config.Listeners["outbound"].Routes.VirtualHosts; len(got) != 5 {
		t.Errorf("outbound virtual hosts in the dump = %v, want 5", got)
	}
	if got := d.Compiled.Config.Clusters[reviewsV1].Endpoints; len(got) != 1 || got[0].Address != addrOf(w.backends["reviews-v1"]) {
		t.Errorf("reviews endpoints in the dump = %v", got)
	}
	if want := "route outbound: cluster outbound|80||ghost.default.svc.cluster.local not received"; len(d.Compiled.Warnings) != 1 || d.Compiled.Warnings[0] != want {
		t.Errorf("warnings = %q, want [%q]", d.Compiled.Warnings, want)
	}

	stats := w.get(ctx, t, w.addrs.Admin, "GET", "admin", "/stats").body
	for _, want := range []string{"listener.outbound.requests_total 1\n", "listener.outbound.upstream_responses_2xx 1\n", "xds.connected 1\n", "xds.RDS.responses_accepted 1\n"} {
		if !strings.Contains(stats, want) {
			t.Errorf("stats lack %q:\n%s", want, stats)
		}
	}

	// The benchmark harness saves execution traces from here.
	tr := w.get(ctx, t, w.addrs.Admin, "GET", "admin", "/debug/pprof/trace?seconds=0.05")
	if tr.code != http.StatusOK || !strings.HasPrefix(tr.body, "go 1.") {
		t.Errorf("GET /debug/pprof/trace: status %d, body starts %q, want 200 and a Go execution trace", tr.code, tr.body[:min(len(tr.body), 20)])
	}
}

// allAcked says whether every resource type the client knows has version
// acked.
func allAcked(s xdsclient.Status, version string) bool {
	for _, ts := range s.Types {
		if ts.VersionAcked != version {
			return false
		}
	}
	return true
}

func TestOnReadyIsCalledOnceWhenReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var calls atomic.Int32
	readyAtCall := make(chan bool, 4)
	var w *world
	w = newWorld(t, func(o *Options) {
		o.OnReady = func() {
			calls.Add(1)
			ready, _ := w.proxy.readiness()
			readyAtCall <- ready
		}
	})

	w.srv.Push(t, "1", w.snapshot())
	select {
	case ready := <-readyAtCall:
		if !ready {
			t.Error("OnReady was called before the proxy was ready")
		}
	case <-ctx.Done():
		t.Fatal("OnReady was not called after the first configuration")
	}
	w.srv.Push(t, "2", w.snapshot())
	w.waitVersion(ctx, t, "2")
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("OnReady called %d times, want once", n)
	}
}

func TestShutdownDrainsRequestsInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := newWorld(t)
	w.srv.Push(t, "1", w.snapshot())
	w.waitVersion(ctx, t, "1")

	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+w.addrs.Outbound+"/", nil)
	req.Host = "stream"
	res, err := w.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- w.stop() }()

	body, err := io.ReadAll(res.Body)
	if err != nil || strings.Count(string(body), "chunk") != 10 {
		t.Errorf("the request in flight got %q, %v; want all 10 chunks", body, err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve returned %v, want nil", err)
	}
	if c, err := net.DialTimeout("tcp", w.addrs.Outbound, time.Second); err == nil {
		c.Close()
		t.Error("the outbound listener still accepts connections after shutdown")
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"a missing control plane, service and app address", Options{InsecureXDS: true},
			"invalid options: control plane address is required\nservice is required\napp address is required"},
		{"an admin address off loopback", Options{ControlPlane: "cp:15010", Service: "s", AppAddr: "127.0.0.1:8080", AdminAddr: "0.0.0.0:15000", InsecureXDS: true},
			`invalid options: admin address: "0.0.0.0:15000" is not a loopback address`},
		{"an app address without a port", Options{ControlPlane: "cp:15010", Service: "s", AppAddr: "127.0.0.1", InsecureXDS: true},
			"invalid options: app address: address 127.0.0.1: missing port in address"},
		{"without insecure xDS a token and a CA file are required", Options{ControlPlane: "cp:15010", Service: "s", AppAddr: "127.0.0.1:8080"},
			"invalid options: a token file is required to talk to the control plane (--token-file; make one with weft token create), or --insecure-xds for tests\n" +
				"a CA file is required to verify the control plane (--ca-file; the bundle from weft ca root), or --insecure-xds for tests"},
		{"a token file that does not exist is named", Options{ControlPlane: "cp:15010", Service: "s", AppAddr: "127.0.0.1:8080", InsecureXDS: true, TokenFile: "/nonexistent/token"},
			"invalid options: token file: stat /nonexistent/token: no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || err.Error() != tt.want {
				t.Errorf("New error = %v, want %q", err, tt.want)
			}
		})
	}
}
