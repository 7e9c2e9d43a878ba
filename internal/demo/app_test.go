package demo

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// forwardProxy is a minimal explicit HTTP proxy for tests: it sends each
// absolute-form request to the test server registered for the request's
// host, and records what it saw. It stands in for a sidecar's outbound
// listener in the app's unit tests only.
type forwardProxy struct {
	*httptest.Server
	mu       sync.Mutex
	backends map[string]*url.URL // "ratings:9080" -> the test server's URL
	seen     []*http.Request     // clones of the requests it received
	status   int                 // if set, answered instead of forwarding
}

func newForwardProxy(t *testing.T) *forwardProxy {
	t.Helper()
	p := &forwardProxy{backends: map[string]*url.URL{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p.mu.Lock()
			backend := p.backends[pr.In.Host]
			p.mu.Unlock()
			if backend != nil {
				pr.SetURL(backend)
				pr.Out.URL.Path = pr.In.URL.Path
			}
		},
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.Clone(context.Background()))
		backend, status := p.backends[r.Host], p.status
		p.mu.Unlock()
		switch {
		case status != 0:
			http.Error(w, "no healthy upstream", status)
		case backend == nil:
			http.Error(w, "no route to "+r.Host, http.StatusNotFound)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *forwardProxy) route(host string, backend *httptest.Server) {
	u, _ := url.Parse(backend.URL)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends[host] = u
}

// fail makes the proxy answer every request with status.
func (p *forwardProxy) fail(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.status = status
}

func (p *forwardProxy) requests() []*http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

// serveApp runs an App for cfg on a test server.
func serveApp(t *testing.T, cfg AppConfig) *httptest.Server {
	t.Helper()
	app, err := NewApp(cfg, nil)
	if err != nil {
		t.Fatalf("NewApp(%+v): %v", cfg, err)
	}
	srv := httptest.NewServer(app)
	t.Cleanup(func() {
		srv.Close()
		app.Close()
	})
	return srv
}

func get(t *testing.T, url string, header http.Header) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, body
}

func decode(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, body)
	}
	return m
}

func TestLeafAppAnswersWithItsNameAndVersion(t *testing.T) {
	srv := serveApp(t, AppConfig{Name: "ratings", Version: "v1"})
	for _, path := range []string{"/", "/ratings", "/ratings/0"} {
		status, body := get(t, srv.URL+path, nil)
		if status != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200: %s", path, status, body)
		}
		got := decode(t, body)
		want := map[string]any{"name": "ratings", "version": "v1"}
		if len(got) != len(want) || got["name"] != want["name"] || got["version"] != want["version"] {
			t.Errorf("GET %s = %v, want %v", path, got, want)
		}
	}
}

func TestAppHealthz(t *testing.T) {
	// The upstream is unreachable: /healthz must not depend on it.
	srv := serveApp(t, AppConfig{Name: "productpage", Version: "v1", Upstream: "http://reviews:9080/", Proxy: "http://127.0.0.1:1"})
	status, body := get(t, srv.URL+"/healthz", nil)
	if status != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", status, body)
	}
}

func TestAppCallsItsUpstreamThroughTheProxy(t *testing.T) {
	proxy := newForwardProxy(t)
	ratings := serveApp(t, AppConfig{Name: "ratings", Version: "v1"})
	proxy.route("ratings:9080", ratings)
	reviews := serveApp(t, AppConfig{Name: "reviews", Version: "v2", Upstream: "http://ratings:9080/ratings", Proxy: proxy.URL})

	status, body := get(t, reviews.URL+"/reviews", http.Header{"X-Request-Id": {"req-1"}, "Traceparent": {"00-abc-def-01"}, "Cookie": {"secret"}})
	if status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", status, body)
	}
	var got struct {
		Name, Version string
		Ratings       struct{ Name, Version string }
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	if got.Name != "reviews" || got.Version != "v2" || got.Ratings.Name != "ratings" || got.Ratings.Version != "v1" {
		t.Errorf("answer = %s, want reviews v2 with ratings v1 inside", body)
	}

	seen := proxy.requests()
	if len(seen) != 1 {
		t.Fatalf("proxy saw %d requests, want 1", len(seen))
	}
	r := seen[0]
	if r.RequestURI != "http://ratings:9080/ratings" {
		t.Errorf("proxy saw request URI %q, want the absolute form http://ratings:9080/ratings", r.RequestURI)
	}
	if r.Host != "ratings:9080" {
		t.Errorf("proxy saw Host %q, want ratings:9080", r.Host)
	}
	if r.Header.Get("X-Request-Id") != "req-1" || r.Header.Get("Traceparent") != "00-abc-def-01" {
		t.Errorf("upstream call lost the trace headers: %v", r.Header)
	}
	if r.Header.Get("Cookie") != "" {
		t.Errorf("upstream call carried the Cookie header, which is not for the upstream")
	}
}

func TestProductpageNamesTheReviewsVersionThatAnswered(t *testing.T) {
	proxy := newForwardProxy(t)
	ratings := serveApp(t, AppConfig{Name: "ratings", Version: "v1"})
	reviews := serveApp(t, AppConfig{Name: "reviews", Version: "v3", Upstream: "http://ratings:9080/ratings", Proxy: proxy.URL})
	productpage := serveApp(t, AppConfig{Name: "productpage", Version: "v1", Upstream: "http://reviews:9080/reviews", Proxy: proxy.URL})
	proxy.route("ratings:9080", ratings)
	proxy.route("reviews:9080", reviews)

	status, body := get(t, productpage.URL+"/productpage", nil)
	if status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", status, body)
	}
	version, err := ParseVersion(body, "reviews")
	if err != nil || version != "v3" {
		t.Errorf("ParseVersion(%s) = %q, %v; want v3", body, version, err)
	}
	want := `{"name":"productpage","reviews":{"name":"reviews","ratings":{"name":"ratings","version":"v1"},"version":"v3"},"version":"v1"}`
	if got := strings.TrimSpace(string(body)); got != want {
		t.Errorf("answer:\n got %s\nwant %s", got, want)
	}
}

func TestAppAnswers502WhenTheUpstreamFails(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name      string
		proxy     func(*forwardProxy) string
		wantError string
	}{
		{
			name:      "the proxy answers 503",
			proxy:     func(p *forwardProxy) string { p.fail(http.StatusServiceUnavailable); return p.URL },
			wantError: "ratings answered 503: no healthy upstream",
		},
		{
			name:      "the proxy has no route",
			proxy:     func(p *forwardProxy) string { return p.URL },
			wantError: "ratings answered 404: no route to ratings:9080",
		},
		{
			name:      "the proxy is down",
			proxy:     func(*forwardProxy) string { return "http://" + closedAddr },
			wantError: "calling ratings:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxy := newForwardProxy(t)
			reviews := serveApp(t, AppConfig{Name: "reviews", Version: "v2", Upstream: "http://ratings:9080/ratings", Proxy: tt.proxy(proxy)})
			status, body := get(t, reviews.URL+"/", nil)
			if status != http.StatusBadGateway {
				t.Fatalf("status %d, want 502: %s", status, body)
			}
			got := decode(t, body)
			if got["name"] != "reviews" || got["version"] != "v2" {
				t.Errorf("answer %s does not name reviews v2", body)
			}
			if msg, _ := got["error"].(string); !strings.Contains(msg, tt.wantError) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.wantError)
			}
			if _, err := ParseVersion(body, "ratings"); err == nil {
				t.Errorf("ParseVersion found a ratings version in a failed answer: %s", body)
			}
		})
	}
}

func TestNewAppRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  AppConfig
		want string
	}{
		{"no name", AppConfig{Version: "v1"}, "--name is required"},
		{"no version", AppConfig{Name: "a"}, "--version is required"},
		{"upstream without a host", AppConfig{Name: "a", Version: "v1", Upstream: "http:///x"}, "--upstream-service"},
		{"https upstream", AppConfig{Name: "a", Version: "v1", Upstream: "https://b:9080/"}, "--upstream-service"},
		{"upstream named like a field", AppConfig{Name: "a", Version: "v1", Upstream: "http://version:9080/"}, "clashes"},
		{"proxy that is no URL", AppConfig{Name: "a", Version: "v1", Upstream: "http://b:9080/", Proxy: "127.0.0.1:15001"}, "--proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewApp(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewApp(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

func TestAppConfigArgsParseBackToTheSameConfig(t *testing.T) {
	want := AppConfig{
		Name: "reviews", Version: "v3", Listen: "127.0.0.1:4242",
		Upstream: "http://ratings:9080/ratings", Proxy: "http://127.0.0.1:4243", Timeout: 2 * time.Second,
	}
	var got AppConfig
	fs := pflag.NewFlagSet("demo-app", pflag.ContinueOnError)
	got.BindFlags(fs)
	if err := fs.Parse(want.Args()); err != nil {
		t.Fatalf("parsing %q: %v", want.Args(), err)
	}
	if got != want {
		t.Errorf("parsed %+v, want %+v", got, want)
	}
}

func TestServeAppStopsWhenTheContextIsDone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- ServeApp(ctx, ln, AppConfig{Name: "ratings", Version: "v1"}, nil) }()

	status, body := get(t, "http://"+ln.Addr().String()+"/healthz", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /healthz: %d %s", status, body)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("ServeApp = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeApp did not return after its context was cancelled")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the app still accepts connections after ServeApp returned")
	}
}

func TestRunAppFailsOnABadListenAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := RunApp(ctx, AppConfig{Name: "a", Version: "v1", Listen: "127.0.0.1:notaport"}, nil)
	if err == nil || !strings.Contains(err.Error(), "listening") {
		t.Errorf("RunApp = %v, want a listening error", err)
	}
}
