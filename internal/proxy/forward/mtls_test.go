package forward

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/internal/testca"
	"github.com/weft-mesh/weft/internal/proxy/listener"
	"github.com/weft-mesh/weft/internal/proxy/mtls"
	"github.com/weft-mesh/weft/internal/proxy/peer"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

const (
	clientSpiffe = "spiffe://cluster.local/ns/default/sa/productpage"
	serverSpiffe = "spiffe://cluster.local/ns/default/sa/reviews"
)

// meshPair is two engines on loopback as two sidecars: the client's
// outbound listener routes host "reviews" to cluster "reviews", whose
// endpoint is the server's inbound listener (PERMISSIVE: TLS with a client
// certificate, or plaintext), which routes everything to the backend.
type meshPair struct {
	ca       *testca.CA
	roots    *mtls.Roots
	clientID *testca.Source
	serverID *testca.Source
	client   *testProxy
	inbound  string // the server sidecar's inbound address
	inStats  *listener.Stats
}

func startMeshPair(t testing.TB, backend string) *meshPair {
	t.Helper()
	ca := testca.New(t, "mesh")
	roots, err := mtls.ParseRoots(ca.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	m := &meshPair{
		ca: ca, roots: roots,
		clientID: testca.NewSource(ca.Issue(t, clientSpiffe, time.Hour)),
		serverID: testca.NewSource(ca.Issue(t, serverSpiffe, time.Hour)),
	}

	// The server sidecar: inbound listener with the mTLS policy.
	var src atomic.Pointer[Config]
	tr := NewTransports()
	engine := New(&src, discard)
	tbl, err := route.Compile(route.ConfigSpec{Name: "inbound", VirtualHosts: []route.VirtualHostSpec{simpleVhost("*", "app", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	src.Store(&Config{
		Listeners: map[string]*Listener{"inbound": {Name: "inbound", RouteConfigName: "inbound", Routes: tbl, SetClientCert: true, DropInternalHeaders: true}},
		Clusters:  map[string]*cluster.Cluster{"app": cluster.New("app", time.Second, []cluster.Endpoint{{Address: backend}}, tr.For(time.Second))},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := listener.New("inbound", ln, engine.Handler("inbound"), discard)
	policy := &listener.Policy{Inspect: true, Plaintext: true, Identity: m.serverID,
		TLS: mtls.ServerConfig(roots, m.serverID, []string{"h2", "http/1.1"})}
	srv.SetPolicy(func() *listener.Policy { return policy })
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
		tr.CloseIdleConnections()
	})
	m.inbound = ln.Addr().String()
	m.inStats = srv.Stats()
	m.client = startProxy(t, nil)
	return m
}

// useMTLS points the client's cluster at the server over mTLS, accepting
// the server identities sans.
func (m *meshPair) useMTLS(t testing.TB, sans ...string) { m.useMTLSWith(t, false, sans...) }

// useMTLSWith is useMTLS, with HTTP/1.1 kept as HTTP/1.1 between the
// sidecars when keepHTTP1 is set (DestinationRule h2UpgradePolicy
// DO_NOT_UPGRADE).
func (m *meshPair) useMTLSWith(t testing.TB, keepHTTP1 bool, sans ...string) {
	t.Helper()
	tbl, err := route.Compile(route.ConfigSpec{Name: "outbound", VirtualHosts: []route.VirtualHostSpec{simpleVhost("reviews", "reviews", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	rt := m.client.tr.ForTLS(time.Second, UpstreamTLS{Roots: m.roots, Identity: m.clientID, SNI: "reviews", SubjectAltNames: sans, KeepHTTP1: keepHTTP1})
	m.client.src.Store(&Config{
		Listeners: map[string]*Listener{"outbound": {Name: "outbound", RouteConfigName: "outbound", Routes: tbl}},
		Clusters: map[string]*cluster.Cluster{"reviews": cluster.New("reviews", time.Second, []cluster.Endpoint{{Address: m.inbound}}, rt,
			cluster.WithTLS(&cluster.TLS{SNI: "reviews", SubjectAltNames: sans}))},
	})
}

// usePlaintext points the client's cluster at the server in plaintext.
func (m *meshPair) usePlaintext(t testing.TB) {
	t.Helper()
	m.client.src.Store(m.client.config(t, []route.VirtualHostSpec{simpleVhost("reviews", "reviews", 0)}, clusterDef{"reviews", []string{m.inbound}}))
}

func TestMTLSForwarding(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			_ = http.NewResponseController(w).EnableFullDuplex()
			w.Header().Set("Trailer", "X-Sum")
			n, _ := io.Copy(w, r.Body)
			w.Header().Set("X-Sum", strconv.FormatInt(n, 10))
			return
		}
		io.WriteString(w, r.Header.Get("X-Forwarded-Client-Cert")+" "+r.Header.Get("X-Weft-Internal"))
	}))
	defer backend.Close()
	m := startMeshPair(t, backendAddr(backend))
	client := newClient(t)
	get := func(t *testing.T, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+m.client.addr+"/", nil)
		req.Host = "reviews"
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	t.Run("the server sidecar sets the verified client certificate header and drops spoofed ones", func(t *testing.T) {
		m.useMTLS(t, serverSpiffe)
		code, body := get(t, "X-Forwarded-Client-Cert", "URI=spiffe://forged", "X-Weft-Internal", "forged")
		want := "By=" + serverSpiffe + ";Hash=" + (&peer.Info{TLS: true, LeafSHA256: sha256Leaf(m.clientID.Certificate())}).LeafSHA256Hex() + ";URI=" + clientSpiffe + " "
		if code != 200 || body != want {
			t.Errorf("got %d %q, want 200 %q", code, body, want)
		}
	})

	for _, hop := range []struct {
		name string
		use  func()
	}{{"mTLS", func() { m.useMTLS(t, serverSpiffe) }}, {"plaintext", func() { m.usePlaintext(t) }}} {
		t.Run("a large streamed body and trailers cross the "+hop.name+" hop intact", func(t *testing.T) {
			hop.use()
			body := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
			req, _ := http.NewRequest("POST", "http://"+m.client.addr+"/echo", io.MultiReader(strings.NewReader(body)))
			req.Host = "reviews"
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != 200 || string(got) != body || res.Trailer.Get("X-Sum") != strconv.Itoa(len(body)) {
				t.Errorf("got %d, %d bytes (equal %v), trailer %q, err %v", res.StatusCode, len(got), string(got) == body, res.Trailer.Get("X-Sum"), err)
			}
		})
	}

	t.Run("a small body of known length and the trailers cross the mTLS hop through weft's HTTP/2 client", func(t *testing.T) {
		m.useMTLS(t, serverSpiffe)
		body := strings.Repeat("x", 1024)
		req, _ := http.NewRequest("POST", "http://"+m.client.addr+"/echo", strings.NewReader(body))
		req.Host = "reviews"
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 || string(got) != body || res.Trailer.Get("X-Sum") != "1024" {
			t.Errorf("got %d, %d bytes, trailer %q, err %v", res.StatusCode, len(got), res.Trailer.Get("X-Sum"), err)
		}
	})

	t.Run("plaintext to a PERMISSIVE inbound has no client certificate header", func(t *testing.T) {
		m.usePlaintext(t)
		if code, body := get(t, "X-Forwarded-Client-Cert", "URI=spiffe://forged"); code != 200 || body != " " {
			t.Errorf("got %d %q, want 200 with neither header", code, body)
		}
	})

	t.Run("a server outside the cluster's identities gets a 503 naming the cluster", func(t *testing.T) {
		m.useMTLS(t, clientSpiffe)
		code, body := get(t)
		if want := "upstream TLS error for cluster reviews: server identity " + serverSpiffe + " is not one of " + clientSpiffe + "\n"; code != 503 || body != want {
			t.Errorf("got %d %q, want 503 %q", code, body, want)
		}
	})

	t.Run("without a certificate of its own the client gets a 503 naming the cluster", func(t *testing.T) {
		cert := m.clientID.Certificate()
		m.clientID.Set(nil)
		defer m.clientID.Set(cert)
		m.useMTLS(t, serverSpiffe)
		m.client.tr.CloseIdleConnections()
		code, body := get(t)
		if !strings.HasPrefix(body, "upstream TLS handshake failed for cluster reviews: ") || code != 503 {
			t.Errorf("got %d %q, want a 503 handshake failure", code, body)
		}
	})
}

func sha256Leaf(c *tls.Certificate) [32]byte { return sha256.Sum256(c.Certificate[0]) }

// BenchmarkForwardMTLS measures one small GET through a pair of sidecars
// in process: client -> outbound -> (plaintext HTTP/1.1 | mTLS) ->
// inbound -> backend, over keep-alive loopback connections, so it is the
// per-request cost of the mesh hop, handshakes amortised. The client
// speaks HTTP/1.1, which "mtls" (the default) multiplexes over HTTP/2
// between the sidecars and "mtls-h1" (DO_NOT_UPGRADE) keeps as HTTP/1.1;
// in "mtls-h2" the client speaks HTTP/2 (h2c) itself. "h2c" is cleartext
// HTTP/2 between the sidecars: the HTTP/2 share of the cost. The "-post"
// cases send make bench's load, a 1 KiB POST echoed back.
// (golang.org/x/net/http2's Transport measured the same as net/http's own
// HTTP/2, within noise, and is deprecated in its favour.)
func BenchmarkForwardMTLS(b *testing.B) {
	payload := strings.Repeat("x", 1024)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if r.Method == "POST" {
			// make bench's echo: fortio reads the body, then answers
			// with a Content-Length.
			b, _ := io.ReadAll(r.Body)
			_, _ = w.Write(b)
			return
		}
		_, _ = io.WriteString(w, payload)
	}))
	defer backend.Close()
	m := startMeshPair(b, backendAddr(backend))

	for _, bc := range []struct {
		name  string
		setup func()
		h2    bool
		post  bool
	}{
		{"plaintext", func() { m.usePlaintext(b) }, false, false},
		{"h2c", func() { m.useH2C(b) }, false, false},
		{"mtls", func() { m.useMTLS(b, serverSpiffe) }, false, false},
		{"mtls-h1", func() { m.useMTLSWith(b, true, serverSpiffe) }, false, false},
		{"mtls-h2", func() { m.useMTLS(b, serverSpiffe) }, true, false},
		{"plaintext-post", func() { m.usePlaintext(b) }, false, true},
		{"mtls-post", func() { m.useMTLS(b, serverSpiffe) }, false, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bc.setup()
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
			if bc.h2 {
				var protocols http.Protocols
				protocols.SetUnencryptedHTTP2(true)
				tr.Protocols = &protocols
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			// 16 requests in flight on 2 cores, as make bench's fortio
			// keeps 16 connections busy: enough concurrency for the
			// HTTP/2 connection's shared machinery to show.
			b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
			// CPU time per request (both sidecars, the backend and the
			// client together) moves less than wall time when other
			// programs share the machine.
			cpu0 := processCPU()
			defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op") }()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest("GET", "http://"+m.client.addr+"/reviews/1", nil)
				req.Host = "reviews"
				for pb.Next() {
					if bc.post {
						req.Method = "POST"
						req.Body = io.NopCloser(strings.NewReader(payload))
						req.ContentLength = int64(len(payload))
					}
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

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// useH2C is plaintext with cleartext HTTP/2 between the sidecars: the
// HTTP/2 share of the mTLS cost, without TLS.
func (m *meshPair) useH2C(t testing.TB) {
	t.Helper()
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2c := &http.Transport{Protocols: &protocols, DisableCompression: true}
	t.Cleanup(h2c.CloseIdleConnections)
	tbl, err := route.Compile(route.ConfigSpec{Name: "outbound", VirtualHosts: []route.VirtualHostSpec{simpleVhost("reviews", "reviews", 0)}})
	if err != nil {
		t.Fatal(err)
	}
	m.client.src.Store(&Config{
		Listeners: map[string]*Listener{"outbound": {Name: "outbound", RouteConfigName: "outbound", Routes: tbl}},
		Clusters:  map[string]*cluster.Cluster{"reviews": cluster.New("reviews", time.Second, []cluster.Endpoint{{Address: m.inbound}}, h2c)},
	})
}

// TestMTLSMultiplexesHTTP1OverHTTP2 checks issue 3's default: HTTP/1.1
// requests from the app are streams of HTTP/2 connections between the
// sidecars (one while requests come one at a time, HTTP2ConnsPerEndpoint,
// one, for 8 concurrent clients), and only a cluster
// that keeps HTTP/1.1 uses the engine's HTTP/1.1 client over mTLS.
func TestMTLSMultiplexesHTTP1OverHTTP2(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keepHTTP1=%v", keep), func(t *testing.T) {
			m := startMeshPair(t, backend.Listener.Addr().String())
			m.useMTLSWith(t, keep, serverSpiffe)
			tr := &http.Transport{MaxIdleConnsPerHost: 8}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			// Requests one at a time share one connection.
			for range 5 {
				req, _ := http.NewRequest("GET", "http://"+m.client.addr+"/", nil)
				req.Host = "reviews"
				res, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			if n := m.inStats.TLS.Load(); !keep && n != 1 {
				t.Errorf("5 requests one at a time: %d TLS connections between the sidecars, want 1", n)
			}
			var wg sync.WaitGroup
			var failures atomic.Int64
			for range 8 {
				wg.Go(func() {
					for range 20 {
						req, _ := http.NewRequest("GET", "http://"+m.client.addr+"/", nil)
						req.Host = "reviews"
						res, err := client.Do(req)
						if err != nil {
							failures.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, res.Body)
						res.Body.Close()
						if res.StatusCode != 200 {
							failures.Add(1)
						}
					}
				})
			}
			wg.Wait()
			if n := failures.Load(); n != 0 {
				t.Fatalf("%d requests failed", n)
			}
			var stats strings.Builder
			if err := m.client.tr.WriteStats(&stats); err != nil {
				t.Fatal(err)
			}
			h1Used := !strings.Contains(stats.String(), "upstream.http1.connections_opened 0\n")
			if n := m.inStats.TLS.Load(); !keep && (n < 1 || n > HTTP2ConnsPerEndpoint || h1Used) {
				t.Errorf("default: 160 requests from 8 clients over %d TLS connections between the sidecars (want 1 to %d, HTTP/2), HTTP/1.1 client used %v:\n%s",
					n, HTTP2ConnsPerEndpoint, h1Used, stats.String())
			}
			if keep && !h1Used {
				t.Errorf("keepHTTP1: the HTTP/1.1 client over mTLS was not used:\n%s", stats.String())
			}
		})
	}
}
