// Package cluster holds weft-proxy's upstream clusters: their endpoints, the
// load balancer that picks one per request, and the transport that carries
// requests to them.
//
// A Cluster is built once per configuration update and is immutable apart
// from its round-robin position, so the request path reads it without locks.
package cluster

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"
)

// DefaultConnectTimeout is used when the control plane sets none; it is
// Envoy's default too.
const DefaultConnectTimeout = time.Second

// Endpoint is one upstream address.
type Endpoint struct {
	// Address is host:port, ready to dial.
	Address string `json:"address"`
}

// TLS describes how a cluster's endpoints are reached over mTLS.
type TLS struct {
	// SNI is the server name sent in the handshake.
	SNI string `json:"sni"`
	// SubjectAltNames are the SPIFFE IDs a server may have.
	SubjectAltNames []string `json:"subject_alt_names"`
}

// Option sets an optional property of a Cluster.
type Option func(*Cluster)

// WithTLS marks the cluster as reached over mTLS (and HTTP/2): requests
// are sent as https to the cluster's transport, which must speak it.
func WithTLS(t *TLS) Option { return func(c *Cluster) { c.tls = t } }

// Cluster is a named set of endpoints with a round-robin picker.
type Cluster struct {
	name           string
	connectTimeout time.Duration
	endpoints      []Endpoint
	transport      http.RoundTripper
	tls            *TLS

	// next is the round-robin position. It is the only mutable field and is
	// only ever advanced atomically.
	next atomic.Uint64
}

// New returns a cluster. endpoints is kept, not copied: the caller must not
// modify it afterwards. transport carries requests to the endpoints; it is
// per cluster so that mTLS or HTTP/2 upstreams can replace plain HTTP/1.1
// cluster by cluster.
func New(name string, connectTimeout time.Duration, endpoints []Endpoint, transport http.RoundTripper, opts ...Option) *Cluster {
	if connectTimeout <= 0 {
		connectTimeout = DefaultConnectTimeout
	}
	c := &Cluster{name: name, connectTimeout: connectTimeout, endpoints: endpoints, transport: transport}
	for _, o := range opts {
		o(c)
	}
	// Start at a random position so that proxies (and config swaps, which
	// build new clusters) do not all send their first request to endpoint 0.
	c.next.Store(rand.Uint64())
	return c
}

// Name is the cluster's name, e.g. outbound|80||reviews.default.svc.cluster.local.
func (c *Cluster) Name() string { return c.name }

// ConnectTimeout bounds establishing a connection to one endpoint.
func (c *Cluster) ConnectTimeout() time.Duration { return c.connectTimeout }

// Endpoints returns the cluster's endpoints; the caller must not modify them.
func (c *Cluster) Endpoints() []Endpoint { return c.endpoints }

// Transport is the round tripper for requests to this cluster's endpoints.
func (c *Cluster) Transport() http.RoundTripper { return c.transport }

// TLS is the cluster's mTLS settings, or nil for plaintext.
func (c *Cluster) TLS() *TLS { return c.tls }

// Scheme is the URL scheme of requests to the cluster: "https" over mTLS,
// "http" otherwise.
func (c *Cluster) Scheme() string {
	if c.tls != nil {
		return "https"
	}
	return "http"
}

// Pick returns the next endpoint in round-robin order, or false when the
// cluster has none. It takes no lock: one atomic add per call.
func (c *Cluster) Pick() (Endpoint, bool) {
	n := uint64(len(c.endpoints))
	if n == 0 {
		return Endpoint{}, false
	}
	return c.endpoints[(c.next.Add(1)-1)%n], true
}

// MarshalJSON prints the cluster for config dumps.
func (c *Cluster) MarshalJSON() ([]byte, error) {
	eps := c.endpoints
	if eps == nil {
		eps = []Endpoint{}
	}
	return json.Marshal(struct {
		Name           string     `json:"name"`
		ConnectTimeout string     `json:"connect_timeout"`
		Endpoints      []Endpoint `json:"endpoints"`
		TLS            *TLS       `json:"tls,omitempty"`
	}{c.name, c.connectTimeout.String(), eps, c.tls})
}
