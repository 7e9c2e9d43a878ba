package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/weft-mesh/weft/internal/proxy/forward"
	"github.com/weft-mesh/weft/internal/proxy/internal/testca"
	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
)

const (
	productpageID = "spiffe://cluster.local/ns/default/sa/productpage"
	reviewsID     = "spiffe://cluster.local/ns/default/sa/reviews"
	ratingsID     = "spiffe://cluster.local/ns/default/sa/ratings"
	meshReviews   = "outbound|80||reviews.default.svc.cluster.local"
	certTTL       = time.Hour
)

// pair is two sidecars with certificates from one test CA, configured by
// one control plane: the client's outbound reaches reviews, whose inbound
// (the server sidecar) delivers to the app. Both sidecars get the same
// snapshot: each uses only its own half of it.
type pair struct {
	ca             *testca.CA
	srv            *xdstest.Server
	client, server *Proxy
	clientID       *testca.Source
	serverID       *testca.Source
	clientAddrs    Addrs
	serverAddrs    Addrs
	app            *httptest.Server
	http           *http.Client
}

func newPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{ca: testca.New(t, "mesh"), srv: xdstest.NewServer(t, "127.0.0.1:0")}
	p.clientID = testca.NewSource(p.ca.Issue(t, productpageID, certTTL))
	p.serverID = testca.NewSource(p.ca.Issue(t, reviewsID, certTTL))
	p.app = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var internal []string
		for k := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "x-weft-") {
				internal = append(internal, k)
			}
		}
		fmt.Fprintf(w, "xfcc=%s internal=%s", strings.Join(r.Header.Values("X-Forwarded-Client-Cert"), "|"), strings.Join(internal, ","))
	}))
	t.Cleanup(p.app.Close)
	p.client, p.clientAddrs = startProxy(t, p.srv.Addr, "productpage", addrOf(p.app), p.clientID)
	p.server, p.serverAddrs = startProxy(t, p.srv.Addr, "reviews", addrOf(p.app), p.serverID)
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	p.http = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return p
}

func startProxy(t *testing.T, cp, service, app string, id *testca.Source) (*Proxy, Addrs) {
	t.Helper()
	px, err := New(Options{
		ControlPlane: cp, InsecureXDS: true, Identity: id,
		Service: service, AppAddr: app,
		InboundAddr: "127.0.0.1:0", OutboundAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		DrainTimeout: 2 * time.Second, Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- px.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve %s: %v", service, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve %s did not return", service)
		}
	})
	return px, px.Addrs()
}

// snapshot is the mesh with the server's inbound under mode and the
// reviews cluster accepting sans.
func (p *pair) snapshot(mode string, sans ...string) xdstest.Snapshot {
	return xdstest.Snapshot{
		Clusters: []types.Resource{
			xdstest.MTLSCluster(meshReviews, sans...),
			xdstest.StaticCluster(xdstest.InboundCluster(80), addrOf(p.app)),
		},
		Endpoints: []types.Resource{xdstest.LoadAssignment(meshReviews, p.serverAddrs.Inbound)},
		Listeners: []types.Resource{
			xdstest.Listener("outbound", "127.0.0.1:15001", xdstest.HCM("outbound")),
			xdstest.InboundMTLS("127.0.0.1:15006", mode, xdstest.SecureHCM("inbound")),
		},
		Routes: []types.Resource{
			xdstest.RouteConfig("outbound", xdstest.VirtualHost("reviews.default.svc.cluster.local:80", xdstest.ServiceDomains("reviews", "default", 80),
				xdstest.PrefixRoute("/", meshReviews))),
			xdstest.InboundRoutes(80),
		},
		Secrets: []types.Resource{xdstest.RootCA(p.ca.BundlePEM())},
	}
}

// push installs snap and waits until both sidecars serve it.
func (p *pair) push(ctx context.Context, t *testing.T, version string, snap xdstest.Snapshot) {
	t.Helper()
	p.srv.Push(t, version, snap)
	for _, px := range []*Proxy{p.client, p.server} {
		waitServing(ctx, t, px, version)
	}
}

func waitServing(ctx context.Context, t *testing.T, px *Proxy, version string) {
	t.Helper()
	for {
		if d := px.dump.Load(); d != nil {
			v := d.Versions
			if v["CDS"] == version && v["EDS"] == version && v["LDS"] == version && v["RDS"] == version && v["SDS"] == version {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("proxy %s never served version %s: %v", px.opts.Service, version, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// call sends a request through the client sidecar's outbound to reviews.
func (p *pair) call(ctx context.Context, t *testing.T, header ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+p.clientAddrs.Outbound+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "reviews"
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return do(t, p.http, req)
}

func leafHash(c *tls.Certificate) string {
	h := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(h[:])
}

// tlsConfig is a mesh peer's client configuration presenting cert.
func (p *pair) tlsConfig(cert *tls.Certificate, cache tls.ClientSessionCache) *tls.Config {
	roots := p.ca.Pool()
	return &tls.Config{
		MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}, ServerName: meshReviews,
		Certificates: []tls.Certificate{*cert}, ClientSessionCache: cache,
		// The server is checked by hand below: SPIFFE certificates have no
		// DNS name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		},
	}
}

func TestMTLSBetweenSidecars(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPair(t)
	p.push(ctx, t, "1", p.snapshot(xdstest.Permissive, reviewsID))

	t.Run("a request crosses the mesh over mTLS and HTTP/2 and the app sees the verified identity", func(t *testing.T) {
		got := p.call(ctx, t, "X-Forwarded-Client-Cert", "By=spiffe://evil;URI=spiffe://cluster.local/ns/default/sa/admin", "X-Weft-Spoof", "1")
		want := "xfcc=By=" + reviewsID + ";Hash=" + leafHash(p.clientID.Certificate()) + ";URI=" + productpageID + " internal="
		if got.code != 200 || got.body != want {
			t.Errorf("got %d %q, want 200 %q", got.code, got.body, want)
		}
		if n := p.server.inbound.Stats().TLS.Load(); n != 1 {
			t.Errorf("the server sidecar accepted %d TLS connections, want 1", n)
		}
		// The later requests ride the pooled connection, whose XFCC value
		// is made once: each must still carry it, and only it.
		for i := range 5 {
			if got := p.call(ctx, t, "X-Forwarded-Client-Cert", "URI=spiffe://forged"); got.code != 200 || got.body != want {
				t.Errorf("request %d on the pooled connection: got %d %q, want 200 %q", i+2, got.code, got.body, want)
			}
		}
		if n := p.server.inbound.Stats().TLS.Load(); n != 1 {
			t.Errorf("after more requests the server sidecar accepted %d TLS connections, want the one pooled connection", n)
		}
	})

	t.Run("the sidecar speaks HTTP/2 over TLS to mesh peers", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: p.tlsConfig(p.clientID.Certificate(), nil), ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+p.serverAddrs.Inbound+"/", nil)
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.ProtoMajor != 2 || !strings.Contains(string(body), "URI="+productpageID) {
			t.Errorf("got %s %q, want HTTP/2 and the peer's XFCC", res.Proto, body)
		}
	})

	t.Run("a PERMISSIVE inbound serves plaintext peers without any client certificate header", func(t *testing.T) {
		got := (&world{client: p.http}).get(ctx, t, p.serverAddrs.Inbound, "GET", "reviews", "/", "X-Forwarded-Client-Cert", "URI=spiffe://forged")
		if got.code != 200 || got.body != "xfcc= internal=" {
			t.Errorf("got %+v, want 200 with no XFCC", got)
		}
	})

	t.Run("a peer with a certificate from another CA is refused", func(t *testing.T) {
		other := testca.New(t, "other").Issue(t, productpageID, certTTL)
		conn, err := tls.Dial("tcp", p.serverAddrs.Inbound, p.tlsConfig(other, nil))
		if err == nil {
			// TLS 1.3: the client finishes first; the server's verdict
			// comes with the first read.
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("handshake with a foreign certificate: %v, want a certificate error", err)
		}
		for p.server.inbound.Stats().HandshakeFailures.Load() == 0 {
			select {
			case <-ctx.Done():
				t.Fatal("the server sidecar counted no handshake failure")
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
}

func TestMTLSWrongServerIdentityIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPair(t)
	p.push(ctx, t, "1", p.snapshot(xdstest.Permissive, ratingsID, productpageID))

	got := p.call(ctx, t)
	want := reply{503, "upstream TLS error for cluster " + meshReviews + ": server identity " + reviewsID +
		" is not one of " + ratingsID + ", " + productpageID + "\n", true}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if n := p.server.inbound.Stats().TLS.Load(); n != 0 {
		t.Errorf("the server sidecar served %d TLS connections, want none", n)
	}
}

func TestPeerAuthenticationModes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPair(t)
	plain := &world{client: p.http}

	plaintextRefused := func(t *testing.T) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.serverAddrs.Inbound+"/", nil)
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			res.Body.Close()
			t.Fatalf("a plaintext request got %s, want the connection closed", res.Status)
		}
	}
	tlsRefused := func(t *testing.T) {
		t.Helper()
		conn, err := tls.Dial("tcp", p.serverAddrs.Inbound, p.tlsConfig(p.clientID.Certificate(), nil))
		if err == nil {
			conn.Close()
			t.Fatal("a TLS handshake succeeded, want the connection closed")
		}
	}

	p.push(ctx, t, "strict", p.snapshot(xdstest.Strict, reviewsID))
	t.Run("STRICT refuses plaintext and serves mTLS", func(t *testing.T) {
		plaintextRefused(t)
		if got := p.call(ctx, t); got.code != 200 {
			t.Errorf("mTLS request: %+v", got)
		}
		if n := p.server.inbound.Stats().RefusedPlaintext.Load(); n != 1 {
			t.Errorf("refused plaintext connections = %d, want 1", n)
		}
	})

	p.push(ctx, t, "permissive", p.snapshot(xdstest.Permissive, reviewsID))
	t.Run("PERMISSIVE serves both", func(t *testing.T) {
		if got := plain.get(ctx, t, p.serverAddrs.Inbound, "GET", "reviews", "/"); got.code != 200 {
			t.Errorf("plaintext request: %+v", got)
		}
		if got := p.call(ctx, t); got.code != 200 {
			t.Errorf("mTLS request: %+v", got)
		}
	})

	p.push(ctx, t, "disable", p.snapshot(xdstest.Disable, reviewsID))
	t.Run("DISABLE serves plaintext only", func(t *testing.T) {
		tlsRefused(t)
		if got := plain.get(ctx, t, p.serverAddrs.Inbound, "GET", "reviews", "/"); got.code != 200 {
			t.Errorf("plaintext request: %+v", got)
		}
		if n := p.server.inbound.Stats().RefusedTLS.Load(); n != 1 {
			t.Errorf("refused TLS connections = %d, want 1", n)
		}
	})

	t.Run("a plaintext connection accepted under PERMISSIVE is not served once STRICT applies", func(t *testing.T) {
		p.push(ctx, t, "permissive-2", p.snapshot(xdstest.Permissive, reviewsID))
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		keep := &world{client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
		if got := keep.get(ctx, t, p.serverAddrs.Inbound, "GET", "reviews", "/"); got.code != 200 {
			t.Fatalf("plaintext request under PERMISSIVE: %+v", got)
		}
		p.push(ctx, t, "strict-2", p.snapshot(xdstest.Strict, reviewsID))
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.serverAddrs.Inbound+"/", nil)
		if res, err := keep.client.Do(req); err == nil {
			res.Body.Close()
			t.Errorf("a request on the old plaintext connection got %s, want it refused", res.Status)
		}
	})
}

func TestMTLSSessionsAreResumed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPair(t)
	p.push(ctx, t, "1", p.snapshot(xdstest.Strict, reviewsID))

	t.Run("a peer's second connection resumes its session", func(t *testing.T) {
		cache := tls.NewLRUClientSessionCache(4)
		for i, wantResumed := range []bool{false, true} {
			tr := &http.Transport{TLSClientConfig: p.tlsConfig(p.clientID.Certificate(), cache), ForceAttemptHTTP2: true}
			var state tls.ConnectionState
			req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+p.serverAddrs.Inbound+"/", nil)
			res, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			state = *res.TLS
			tr.CloseIdleConnections()
			if state.DidResume != wantResumed {
				t.Errorf("connection %d: DidResume = %v, want %v", i, state.DidResume, wantResumed)
			}
		}
	})

	t.Run("the sidecar resumes its sessions to its peers", func(t *testing.T) {
		before := p.server.inbound.Stats().TLSResumed.Load()
		if got := p.call(ctx, t); got.code != 200 {
			t.Fatalf("first request: %+v", got)
		}
		p.client.transports.CloseIdleConnections()
		if got := p.call(ctx, t); got.code != 200 {
			t.Fatalf("second request: %+v", got)
		}
		if n := p.server.inbound.Stats().TLSResumed.Load() - before; n != 1 {
			t.Errorf("resumed connections from the client sidecar = %d, want 1", n)
		}
	})
}

func TestMTLSCertificateRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := newPair(t)
	p.push(ctx, t, "1", p.snapshot(xdstest.Strict, reviewsID))
	if got := p.call(ctx, t); got.code != 200 {
		t.Fatalf("before rotation: %+v", got)
	}

	// A bounded load loop: 8 workers, at most 3 s or 20,000 requests.
	var (
		sent, failed atomic.Int64
		firstErr     atomic.Value
		wg           sync.WaitGroup
	)
	loadCtx, stopLoad := context.WithTimeout(ctx, 3*time.Second)
	defer stopLoad()
	for range 8 {
		wg.Go(func() {
			for loadCtx.Err() == nil && sent.Add(1) <= 20000 {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.clientAddrs.Outbound+"/", nil)
				req.Host = "reviews"
				res, err := p.http.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						err = fmt.Errorf("status %s", res.Status)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	newServer := p.ca.Issue(t, reviewsID, certTTL)
	newClient := p.ca.Issue(t, productpageID, certTTL)
	p.serverID.Set(newServer)
	p.clientID.Set(newClient)
	time.Sleep(500 * time.Millisecond)
	stopLoad()
	wg.Wait()

	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d requests failed across the rotation; first: %v", n, sent.Load(), firstErr.Load())
	}
	// Every request is a stream of the client sidecar's HTTP/2
	// connections to the server (issue 3), forward.HTTP2ConnsPerEndpoint
	// of them (one), which 8 concurrent workers fill before the rotation.
	// A rotation that replaced them would open more.
	if n := p.server.inbound.Stats().TLS.Load(); n < 1 || n > forward.HTTP2ConnsPerEndpoint {
		t.Errorf("the server sidecar accepted %d TLS connections across the rotation, want the %d established before it", n, forward.HTTP2ConnsPerEndpoint)
	}

	t.Run("new connections present the new certificates", func(t *testing.T) {
		conn, err := tls.Dial("tcp", p.serverAddrs.Inbound, p.tlsConfig(newClient, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if got := conn.ConnectionState().PeerCertificates[0]; !got.Equal(newServer.Leaf) {
			t.Errorf("the server presented serial %v, want the rotated certificate's %v", got.SerialNumber, newServer.Leaf.SerialNumber)
		}
		p.client.transports.CloseIdleConnections()
		got := p.call(ctx, t)
		if want := "Hash=" + leafHash(newClient); !strings.Contains(got.body, want) {
			t.Errorf("after reconnecting the client sidecar presented another certificate: %q, want %s", got.body, want)
		}
	})
}

func TestMTLSConfigurationWaitsForTheTrustBundle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := newPair(t)
	snap := p.snapshot(xdstest.Strict, reviewsID)
	snap.Secrets = nil
	p.srv.Push(t, "1", snap)
	p.srv.WaitRequest(ctx, t, "ACKing SDS 1", xdstest.IsACK("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret", "1"))
	if got := p.call(ctx, t); got.code != 503 || got.body != "no configuration received from the control plane yet\n" {
		t.Errorf("without ROOTCA: got %+v, want the 503 of a proxy without configuration", got)
	}
	p.push(ctx, t, "2", p.snapshot(xdstest.Strict, reviewsID))
	if got := p.call(ctx, t); got.code != 200 {
		t.Errorf("with ROOTCA: got %+v, want 200", got)
	}
}
