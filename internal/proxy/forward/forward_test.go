package forward

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/internal/leakcheck"
	"github.com/weft-mesh/weft/internal/proxy/listener"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

var discard = slog.New(slog.DiscardHandler)

// testProxy runs the engine behind a real outbound listener on loopback.
type testProxy struct {
	src    atomic.Pointer[Config]
	engine *Engine
	addr   string
	tr     *Transports
}

func startProxy(t testing.TB, cfg *Config) *testProxy {
	t.Helper()
	p := &testProxy{tr: NewTransports()}
	p.src.Store(cfg)
	p.engine = New(&p.src, discard)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := listener.New("outbound", ln, p.engine.Handler("outbound"), discard)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve()
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
		p.tr.CloseIdleConnections()
	})
	p.addr = ln.Addr().String()
	return p
}

// config builds a one-listener configuration: each host maps to the
// cluster of the same name, whose endpoints are given.
type clusterDef struct {
	name      string
	endpoints []string
}

func (p *testProxy) config(t testing.TB, vhosts []route.VirtualHostSpec, clusters ...clusterDef) *Config {
	t.Helper()
	tbl, err := route.Compile(route.ConfigSpec{Name: "outbound", VirtualHosts: vhosts})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		Listeners: map[string]*Listener{"outbound": {Name: "outbound", RouteConfigName: "outbound", Routes: tbl}},
		Clusters:  map[string]*cluster.Cluster{},
	}
	for _, c := range clusters {
		var eps []cluster.Endpoint
		for _, e := range c.endpoints {
			eps = append(eps, cluster.Endpoint{Address: e})
		}
		cfg.Clusters[c.name] = cluster.New(c.name, 200*time.Millisecond, eps, p.tr.For(200*time.Millisecond))
	}
	return cfg
}

func simpleVhost(domain, clusterName string, timeout time.Duration) route.VirtualHostSpec {
	return route.VirtualHostSpec{Name: domain, Domains: []string{domain}, Routes: []route.RouteSpec{{
		Match:  route.MatchSpec{PathKind: route.PathPrefix, Path: "/", CaseSensitive: true},
		Action: route.ActionSpec{Cluster: clusterName, Timeout: timeout},
	}}}
}

func backendAddr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// newClient returns an HTTP/1.1 client whose idle connections are closed
// at cleanup, so no pool goroutine outlives the test.
func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{Proxy: nil, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// rawRequest writes a raw HTTP/1.1 request and reads the response, for
// requests a Go client would not send as-is.
func rawRequest(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func TestForwardPreservesTheRequest(t *testing.T) {
	type seen struct {
		method, uri, host, body string
		header                  http.Header
		trailer                 http.Header
	}
	got := make(chan seen, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Host, string(b), r.Header.Clone(), r.Trailer.Clone()}
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "must not pass")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-App", "kept")
		_, _ = io.WriteString(w, "ok")
	}))
	defer backend.Close()
	p := startProxy(t, nil)
	p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("reviews", "reviews", 0)}, clusterDef{"reviews", []string{backendAddr(backend)}}))

	tests := []struct {
		name       string
		raw        string
		wantMethod string
		wantURI    string
		wantBody   string
		wantHeader map[string]string // "" means absent
		wantTrail  map[string]string
	}{
		{
			name:       "an origin-form request keeps method, path, query, host and body",
			raw:        "POST /a/b%2Fc?x=1&y=2 HTTP/1.1\r\nHost: reviews\r\nContent-Length: 5\r\nUser-Agent: test\r\n\r\nhello",
			wantMethod: "POST", wantURI: "/a/b%2Fc?x=1&y=2", wantBody: "hello",
			wantHeader: map[string]string{"User-Agent": "test"},
		},
		{
			name:       "an absolute-form request reaches the upstream in origin form",
			raw:        "GET http://reviews/x?q=1 HTTP/1.1\r\nHost: ignored\r\nUser-Agent: test\r\n\r\n",
			wantMethod: "GET", wantURI: "/x?q=1",
		},
		{
			name: "hop-by-hop headers and the headers Connection names are stripped",
			raw: "GET / HTTP/1.1\r\nHost: reviews\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\n" +
				"Keep-Alive: timeout=5\r\nProxy-Authorization: Basic Zm9v\r\nProxy-Connection: keep-alive\r\nUpgrade: websocket\r\nX-Kept: yes\r\n\r\n",
			wantMethod: "GET", wantURI: "/",
			wantHeader: map[string]string{"X-Private": "", "Keep-Alive": "", "Proxy-Authorization": "", "Proxy-Connection": "", "Upgrade": "", "Connection": "", "X-Kept": "yes"},
		},
		{
			name:       "TE survives only as trailers",
			raw:        "GET / HTTP/1.1\r\nHost: reviews\r\nTE: trailers, deflate\r\n\r\n",
			wantMethod: "GET", wantURI: "/",
			wantHeader: map[string]string{"Te": "trailers"},
		},
		{
			name:       "no User-Agent is added when the client sent none",
			raw:        "GET / HTTP/1.1\r\nHost: reviews\r\n\r\n",
			wantMethod: "GET", wantURI: "/",
			wantHeader: map[string]string{"User-Agent": ""},
		},
		{
			name: "a chunked body and its trailers are relayed",
			raw: "POST /up HTTP/1.1\r\nHost: reviews\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n" +
				"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Checksum: 42\r\n\r\n",
			wantMethod: "POST", wantURI: "/up", wantBody: "abcde",
			wantTrail: map[string]string{"X-Checksum": "42"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := rawRequest(t, p.addr, tt.raw)
			if res.StatusCode != http.StatusOK || body != "ok" {
				t.Fatalf("response = %d %q, want 200 \"ok\"", res.StatusCode, body)
			}
			if res.Header.Get("X-App") != "kept" || res.Header.Get("X-Hop") != "" || res.Header.Get("Keep-Alive") != "" {
				t.Errorf("response headers = %v, want X-App kept and X-Hop, Keep-Alive stripped", res.Header)
			}
			var s seen
			select {
			case s = <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("backend saw no request")
			}
			if s.method != tt.wantMethod || s.uri != tt.wantURI || s.host != "reviews" || s.body != tt.wantBody {
				t.Errorf("upstream saw %s %s host %q body %q, want %s %s host \"reviews\" body %q",
					s.method, s.uri, s.host, s.body, tt.wantMethod, tt.wantURI, tt.wantBody)
			}
			for k, want := range tt.wantHeader {
				if got := strings.Join(s.header.Values(k), ","); got != want {
					t.Errorf("upstream header %s = %q, want %q", k, got, want)
				}
			}
			for k, want := range tt.wantTrail {
				if got := s.trailer.Get(k); got != want {
					t.Errorf("upstream trailer %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestForwardRelaysResponseTrailers(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	}))
	defer backend.Close()
	p := startProxy(t, nil)
	p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("grpc", "grpc", 0)}, clusterDef{"grpc", []string{backendAddr(backend)}}))

	req, _ := http.NewRequest("GET", "http://"+p.addr+"/", nil)
	req.Host = "grpc"
	res, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if string(body) != "body" {
		t.Errorf("body = %q, want \"body\"", body)
	}
	if got := res.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("trailer Grpc-Status = %q, want \"0\"", got)
	}
	if got := res.Trailer.Get("X-Late"); got != "yes" {
		t.Errorf("unannounced trailer X-Late = %q, want \"yes\"", got)
	}
}

func TestForwardStreamsResponses(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "second\n")
	}))
	defer backend.Close()
	defer close(release)
	p := startProxy(t, nil)
	p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("events", "events", 0)}, clusterDef{"events", []string{backendAddr(backend)}}))

	req, _ := http.NewRequest("GET", "http://"+p.addr+"/", nil)
	req.Host = "events"
	res, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(res.Body).ReadString('\n')
		line <- l
	}()
	// The backend holds the rest of the body until released: the first
	// chunk can only arrive now if the proxy flushed it.
	select {
	case l := <-line:
		if l != "first\n" {
			t.Errorf("first line = %q, want \"first\\n\"", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first chunk not flushed through the proxy")
	}
}

func TestForwardH2CPriorKnowledge(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.Host, r.RequestURI)
	}))
	defer backend.Close()
	p := startProxy(t, nil)
	p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("reviews", "reviews", 0)}, clusterDef{"reviews", []string{backendAddr(backend)}}))

	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+p.addr+"/x?y=1", nil)
	req.Host = "reviews"
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.ProtoMajor != 2 {
		t.Errorf("client saw %s, want HTTP/2", res.Proto)
	}
	if want := "HTTP/1.1 reviews /x?y=1"; string(body) != want {
		t.Errorf("upstream saw %q, want %q", body, want)
	}
}

func TestLocalReplies(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	resetter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer resetter.Close()
	closedAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()

	p := startProxy(t, nil)
	full := p.config(t, []route.VirtualHostSpec{
		{Name: "reviews", Domains: []string{"reviews"}, Routes: []route.RouteSpec{{
			Match: route.MatchSpec{PathKind: route.PathPrefix, Path: "/api", CaseSensitive: true}, Action: route.ActionSpec{Cluster: "reviews"},
		}}},
		simpleVhost("empty", "outbound|80||reviews.default.svc.cluster.local", 0),
		simpleVhost("ghost", "outbound|80||ghost.default.svc.cluster.local", 0),
		simpleVhost("refused", "refused", 0),
		simpleVhost("slow", "slow", 150*time.Millisecond),
		simpleVhost("reset", "reset", 0),
	},
		clusterDef{"reviews", []string{backendAddr(slow)}},
		clusterDef{"outbound|80||reviews.default.svc.cluster.local", nil},
		clusterDef{"refused", []string{closedAddr}},
		clusterDef{"slow", []string{backendAddr(slow)}},
		clusterDef{"reset", []string{backendAddr(resetter)}},
	)
	noRoutes := &Config{Listeners: map[string]*Listener{"outbound": {Name: "outbound", RouteConfigName: "outbound"}}}
	noListener := &Config{Listeners: map[string]*Listener{}}

	tests := []struct {
		name     string
		cfg      *Config
		host     string
		path     string
		wantCode int
		wantBody string
	}{
		{"before any configuration the proxy says so", nil, "reviews", "/", 503,
			"no configuration received from the control plane yet"},
		{"a listener missing from the configuration is named", noListener, "reviews", "/", 503,
			`no listener "outbound" in the configuration from the control plane`},
		{"a listener whose routes have not arrived says which", noRoutes, "reviews", "/", 503,
			`no route configuration "outbound" received from the control plane yet`},
		{"an unknown host gets 404 naming it", full, "details:9080", "/", 404,
			`no route for host "details:9080"`},
		{"a known host with no matching route gets 404 naming host and path", full, "reviews", "/other", 404,
			`no route for host "reviews" and path "/other"`},
		{"a cluster without endpoints gets 503 no healthy upstream", full, "empty", "/", 503,
			"no healthy upstream for cluster outbound|80||reviews.default.svc.cluster.local"},
		{"a route to an unknown cluster gets 503 naming it", full, "ghost", "/", 503,
			"unknown cluster outbound|80||ghost.default.svc.cluster.local"},
		{"a refused connection gets 503 naming reason and cluster", full, "refused", "/", 503,
			"upstream connect error for cluster refused: connection refused"},
		{"an upstream that closes without answering gets 503", full, "reset", "/", 503,
			"upstream connection reset before response headers for cluster reset"},
		{"the route timeout gets 504", full, "slow", "/", 504,
			"upstream request timeout for cluster slow after 150ms"},
	}
	client := newClient(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.src.Store(tt.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.addr+tt.path, nil)
			req.Host = tt.host
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.wantCode || string(body) != tt.wantBody+"\n" {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, body, tt.wantCode, tt.wantBody+"\n")
			}
			if ct := res.Header.Get("Content-Type"); ct != "text/plain" {
				t.Errorf("content-type = %q, want text/plain", ct)
			}
			if res.Header.Get("X-Weft-Local-Reply") != "true" {
				t.Error("x-weft-local-reply header missing")
			}
		})
	}
}

func TestUpstreamFailureMidBodyAbortsTheResponse(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "only ten..")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer backend.Close()
	p := startProxy(t, nil)
	p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("x", "x", 0)}, clusterDef{"x", []string{backendAddr(backend)}}))

	req, _ := http.NewRequest("GET", "http://"+p.addr+"/", nil)
	req.Host = "x"
	// Depending on how much the server had buffered, the client sees the
	// abort before or after the headers; either way it must see an error.
	res, err := newClient(t).Do(req)
	if err == nil {
		defer res.Body.Close()
		_, err = io.ReadAll(res.Body)
	}
	if err == nil {
		t.Error("a truncated upstream body passed through the proxy as a complete response; want an error")
	}
}

func TestHopByHopRemoval(t *testing.T) {
	tests := []struct {
		name    string
		in      http.Header
		request bool
		want    http.Header
	}{
		{"headers named by Connection go with it",
			http.Header{"Connection": {"X-A, x-b"}, "X-A": {"1"}, "X-B": {"2"}, "X-C": {"3"}}, true,
			http.Header{"X-C": {"3"}}},
		{"TE: trailers is kept on requests",
			http.Header{"Te": {"gzip, trailers;q=1"}, "Connection": {"TE"}}, true,
			http.Header{"Te": {"trailers"}}},
		{"TE without trailers is dropped",
			http.Header{"Te": {"gzip"}}, true, http.Header{}},
		{"TE is dropped from responses",
			http.Header{"Te": {"trailers"}}, false, http.Header{}},
		{"every listed hop-by-hop header is dropped",
			http.Header{"Keep-Alive": {"1"}, "Proxy-Connection": {"1"}, "Proxy-Authenticate": {"1"}, "Proxy-Authorization": {"1"},
				"Trailer": {"X"}, "Transfer-Encoding": {"chunked"}, "Upgrade": {"h2c"}, "Content-Type": {"a/b"}}, false,
			http.Header{"Content-Type": {"a/b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			removeHopByHop(tt.in, tt.request)
			if fmt.Sprint(tt.in) != fmt.Sprint(tt.want) {
				t.Errorf("headers = %v, want %v", tt.in, tt.want)
			}
		})
	}
}

// BenchmarkForward measures one small GET through the engine behind a real
// listener, over keep-alive loopback connections on both sides; the
// ReverseProxy case is the naive baseline on the same setup.
func BenchmarkForward(b *testing.B) {
	payload := strings.Repeat("x", 1024)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, payload)
	}))
	defer backend.Close()

	p := startProxy(b, nil)
	p.src.Store(p.config(b, []route.VirtualHostSpec{simpleVhost("reviews", "reviews", 0)}, clusterDef{"reviews", []string{backendAddr(backend)}}))

	target, _ := url.Parse(backend.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rpTransport := &http.Transport{MaxIdleConnsPerHost: 1024}
	rp.Transport = rpTransport
	defer rpTransport.CloseIdleConnections()
	rpServer := httptest.NewServer(rp)
	defer rpServer.Close()

	for _, bc := range []struct {
		name string
		addr string
	}{
		{"weft", p.addr},
		{"httputil.ReverseProxy", strings.TrimPrefix(rpServer.URL, "http://")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest("GET", "http://"+bc.addr+"/reviews/1", nil)
				req.Host = "reviews"
				for pb.Next() {
					res, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						b.Errorf("status %d", res.StatusCode)
						return
					}
				}
			})
		})
	}
}
