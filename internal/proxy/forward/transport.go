package forward

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/proxy/mtls"
	"github.com/weft-mesh/weft/internal/proxy/rawio"
)

// sessionCacheSize bounds the TLS sessions kept for resumption, one per
// endpoint and cluster.
const sessionCacheSize = 4096

// Transports hands out the upstream round trippers. Plaintext clusters
// that share a connect timeout share one http.Transport, and with it one
// keep-alive pool per endpoint, so a configuration update that rebuilds
// clusters keeps the warm connections. mTLS clusters each have their own
// HTTP/2 transport (the SNI and the accepted server identities are the
// cluster's), kept across updates for as long as those settings do not
// change.
type Transports struct {
	mu       sync.Mutex
	m        map[time.Duration]*Upstream
	tls      map[tlsKey]*tlsEntry
	gen      uint64
	sessions tls.ClientSessionCache
}

// NewTransports returns an empty set of transports.
func NewTransports() *Transports {
	return &Transports{
		m:        make(map[time.Duration]*Upstream),
		tls:      make(map[tlsKey]*tlsEntry),
		sessions: tls.NewLRUClientSessionCache(sessionCacheSize),
	}
}

// UpstreamTLS is what an mTLS cluster's transport is built from.
type UpstreamTLS struct {
	// Roots is the trust bundle servers are verified against.
	Roots *mtls.Roots
	// Identity provides the proxy's client certificate, read on every
	// handshake.
	Identity identity.Source
	// SNI is the server name sent.
	SNI string
	// SubjectAltNames are the SPIFFE IDs a server may have.
	SubjectAltNames []string
	// KeepHTTP1 lets HTTP/1.1 requests go as HTTP/1.1 (the cluster's
	// DestinationRule says h2UpgradePolicy DO_NOT_UPGRADE). Without it,
	// weft's default, every request to the cluster is multiplexed over
	// HTTP/2, whatever the app speaks.
	KeepHTTP1 bool
}

type tlsKey struct {
	connectTimeout time.Duration
	roots          [32]byte
	identity       identity.Source
	sni            string
	sans           string
	keepHTTP1      bool
}

type tlsEntry struct {
	t    *Upstream
	used uint64 // the generation of the last ForTLS that returned it
}

// ForTLS returns the mTLS transport for a cluster: TLS 1.3, the proxy's
// current certificate on each new connection, servers verified against
// u.Roots with a SPIFFE ID in u.SubjectAltNames, sessions resumed. By
// default (issue 3) every request is multiplexed over pooled HTTP/2
// connections (ALPN h2), whatever the app speaks. With u.KeepHTTP1 the
// protocol of the request is kept from hop to hop, as Istio's sidecars do
// by default: HTTP/2 requests (gRPC among them) over HTTP/2, and HTTP/1.1
// requests as HTTP/1.1 over pooled TLS connections (ALPN http/1.1),
// through the engine's own client when it can carry them. HTTP/2 requests
// go through weft's own HTTP/2 client (h2Client) when they have no body
// or a small one of known length, and through net/http's HTTP/2 Transport
// otherwise: measured on loopback (BenchmarkForwardMTLS, make bench),
// net/http's client costs the hop a goroutine per request and a separate
// write for the body. Requests must use the https scheme. It is called when
// configuration is compiled, never on the request path; the same settings
// return the same transport. u.Identity must be comparable (a pointer).
func (t *Transports) ForTLS(connectTimeout time.Duration, u UpstreamTLS) http.RoundTripper {
	key := tlsKey{connectTimeout, u.Roots.Digest(), u.Identity, u.SNI, strings.Join(u.SubjectAltNames, "\n"), u.KeepHTTP1}
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.tls[key]
	if e == nil {
		cfg := mtls.ClientConfig(u.Roots, u.Identity, u.SNI, u.SubjectAltNames, nil)
		h1cfg := cfg.Clone()
		h1cfg.NextProtos = []string{"http/1.1"}
		dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
		e = &tlsEntry{t: &Upstream{
			rt: newH2Client(func(ctx context.Context, addr string) (net.Conn, error) {
				return dialTLS(ctx, dialer, addr, cfg, connectTimeout, u.Identity, t.sessions, "")
			}, newMTLSTransport(connectTimeout, cfg, u.Identity, t.sessions), idleConnTimeout),
			h1: newH1Pool(func(ctx context.Context, addr string) (net.Conn, error) {
				return dialTLS(ctx, dialer, addr, h1cfg, connectTimeout, u.Identity, t.sessions, "http/1.1|")
			}, idleConnTimeout, maxIdleConnsPerHost),
			keepH2: true,
			h2Only: !u.KeepHTTP1,
		}}
		t.tls[key] = e
	}
	e.used = t.gen
	return e.t
}

// dialTLS connects to addr and completes the TLS handshake with cfg. The
// connect timeout bounds the TCP connect and, separately, the handshake.
// Sessions are cached per endpoint, own certificate and protocol.
func dialTLS(ctx context.Context, dialer *net.Dialer, addr string, cfg *tls.Config, connectTimeout time.Duration,
	id identity.Source, sessions tls.ClientSessionCache, proto string) (net.Conn, error) {
	raw, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if rawio.Enabled() {
		raw = rawio.Wrap(raw)
	}
	c := cfg.Clone()
	c.ClientSessionCache = endpointSessions{proto + sessionPrefix(addr, id), sessions}
	tc := tls.Client(raw, c)
	hctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, &HandshakeError{Endpoint: addr, Err: err}
	}
	return tc, nil
}

// Sweep closes and forgets the mTLS transports that no ForTLS call asked
// for since the previous Sweep: the proxy calls it after each compile, so
// transports of clusters that are gone (or whose settings changed) do not
// keep their idle connections. Requests still in flight on them finish.
func (t *Transports) Sweep() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.tls {
		if e.used != t.gen {
			if c, ok := e.t.rt.(*h2Client); ok {
				c.close()
			} else {
				e.t.rt.CloseIdleConnections()
			}
			e.t.h1.closeIdle(true)
			delete(t.tls, k)
		}
	}
	t.gen++
}

// Upstream is the round tripper of a cluster. Requests the engine's own
// HTTP/1.1 client can carry (h1Eligible) go through its pool; RoundTrip,
// and so everything else, through rt: net/http's Transport, or for mTLS
// clusters weft's HTTP/2 client, which hands what it does not carry to
// net/http's HTTP/2 Transport. The pools are separate: a connection
// serves one client or the other.
type Upstream struct {
	rt roundTripCloser
	h1 *h1Pool
	// keepH2 sends HTTP/2 requests with rt (HTTP/2) even when the fast
	// path could carry them: mTLS clusters keep the request's protocol.
	keepH2 bool
	// h2Only sends every request with rt: an mTLS cluster that
	// multiplexes all its requests over HTTP/2 (the default).
	h2Only bool
}

// fast reports whether r goes through the engine's own client.
func (u *Upstream) fast(r *http.Request) bool {
	return !u.h2Only && h1Eligible(r) && (r.ProtoMajor == 1 || !u.keepH2)
}

// RoundTrip sends r with net/http's Transport.
func (u *Upstream) RoundTrip(r *http.Request) (*http.Response, error) { return u.rt.RoundTrip(r) }

// CloseIdleConnections closes both pools' idle connections.
func (u *Upstream) CloseIdleConnections() {
	u.rt.CloseIdleConnections()
	u.h1.closeIdle(false)
}

// For returns the plain HTTP/1.1 keep-alive transport that dials with the
// given connect timeout. It is called when configuration is compiled, never
// on the request path.
func (t *Transports) For(connectTimeout time.Duration) http.RoundTripper {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u, ok := t.m[connectTimeout]; ok {
		return u
	}
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	u := &Upstream{
		rt: newTransport(dialer),
		h1: newH1Pool(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, "tcp", addr)
			if err == nil && rawio.Enabled() {
				c = rawio.Wrap(c)
			}
			return c, err
		}, idleConnTimeout, maxIdleConnsPerHost),
	}
	t.m[connectTimeout] = u
	return u
}

// WriteStats writes the HTTP/1.1 client's connection counters, summed
// over the transports in use, as "name value" lines.
func (t *Transports) WriteStats(w io.Writer) error {
	var dials, reuses, stale, retries uint64
	t.mu.Lock()
	pools := make([]*h1Pool, 0, len(t.m)+len(t.tls))
	for _, u := range t.m {
		pools = append(pools, u.h1)
	}
	for _, e := range t.tls {
		pools = append(pools, e.t.h1)
	}
	for _, p := range pools {
		dials += p.dials.Load()
		reuses += p.reuses.Load()
		stale += p.stale.Load()
		retries += p.retries.Load()
	}
	t.mu.Unlock()
	_, err := fmt.Fprintf(w, "upstream.http1.connections_opened %d\nupstream.http1.connections_reused %d\n"+
		"upstream.http1.idle_connections_dropped %d\nupstream.http1.requests_retried %d\n", dials, reuses, stale, retries)
	return err
}

// CloseIdleConnections closes every idle upstream connection, at shutdown.
func (t *Transports) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, u := range t.m {
		u.CloseIdleConnections()
	}
	for _, e := range t.tls {
		e.t.CloseIdleConnections()
	}
}

// HandshakeError is a failed TLS handshake with an upstream endpoint.
type HandshakeError struct {
	Endpoint string
	Err      error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("TLS handshake with %s: %v", e.Endpoint, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// endpointSessions keys one shared session cache by endpoint and by the
// proxy's own certificate as well as by server name: every endpoint of a
// cluster gets the cluster's SNI, a ticket is only good with the server
// that issued it, and a session resumed after a rotation would carry the
// old certificate's identity instead of presenting the new one.
type endpointSessions struct {
	prefix string
	cache  tls.ClientSessionCache
}

func (s endpointSessions) Get(key string) (*tls.ClientSessionState, bool) {
	return s.cache.Get(s.prefix + key)
}

func (s endpointSessions) Put(key string, cs *tls.ClientSessionState) {
	s.cache.Put(s.prefix+key, cs)
}

// sessionPrefix is the session cache key prefix for endpoint with the
// proxy's current certificate.
func sessionPrefix(endpoint string, id identity.Source) string {
	var cert [8]byte
	if id != nil {
		if c := id.Certificate(); c != nil && len(c.Certificate) > 0 {
			h := sha256.Sum256(c.Certificate[0])
			copy(cert[:], h[:])
		}
	}
	return endpoint + "|" + hex.EncodeToString(cert[:]) + "|"
}

// newMTLSTransport returns an HTTP/2-only transport that dials TLS with
// cfg. The connect timeout bounds the TCP connect and, separately, the TLS
// handshake. One connection per endpoint carries concurrent requests as
// streams; another is opened when the server's stream limit is reached.
func newMTLSTransport(connectTimeout time.Duration, cfg *tls.Config, id identity.Source, sessions tls.ClientSessionCache) *http.Transport {
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil,
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialTLS(ctx, dialer, addr, cfg, connectTimeout, id, sessions, "")
		},
		Protocols: &protocols,
		HTTP2: &http.HTTP2Config{
			// Find connections that died silently (a peer's host gone)
			// instead of queueing requests on them.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     10 * time.Second,
		},
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		// Bounds only waiting for 100-continue, as for plaintext.
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}

// Pool settings of every upstream transport: a sidecar talks to few hosts
// with many concurrent requests, so it keeps enough idle connections per
// endpoint that bursts reuse them.
const (
	maxIdleConnsPerHost = 1024
	idleConnTimeout     = 90 * time.Second
)

func newTransport(dialer *net.Dialer) *http.Transport {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Transport{
		// Never consult HTTP_PROXY: applications point http_proxy at this
		// very proxy, and honouring it here would loop.
		Proxy:       nil,
		DialContext: dialer.DialContext,
		Protocols:   &protocols,
		// A sidecar talks to few hosts with many concurrent requests; keep
		// enough idle connections per endpoint that bursts reuse them.
		MaxIdleConns:        0, // no global cap
		MaxIdleConnsPerHost: maxIdleConnsPerHost,
		IdleConnTimeout:     idleConnTimeout,
		// Relay bodies as they are: no transparent gzip negotiation.
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}

// Unavailable returns a round tripper that fails every request with
// reason, for a cluster whose transport cannot be built.
func Unavailable(reason string) http.RoundTripper { return unavailable(reason) }

type unavailable string

func (u unavailable) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return nil, errors.New(string(u))
}

// roundTripCloser is net/http's Transport or weft's HTTP/2 client.
type roundTripCloser interface {
	http.RoundTripper
	CloseIdleConnections()
}

var (
	_ roundTripCloser = (*http.Transport)(nil)
	_ roundTripCloser = (*h2Client)(nil)
)
