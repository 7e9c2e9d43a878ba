package forward

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// Transports hands out the upstream round trippers. Clusters that share a
// connect timeout share one http.Transport, and with it one keep-alive pool
// per endpoint, so a configuration update that rebuilds clusters keeps the
// warm connections. Clusters hold their round tripper individually, so a
// later mTLS or HTTP/2 upstream can be swapped in per cluster.
type Transports struct {
	mu sync.Mutex
	m  map[time.Duration]*http.Transport
}

// NewTransports returns an empty set of transports.
func NewTransports() *Transports {
	return &Transports{m: make(map[time.Duration]*http.Transport)}
}

// For returns the plain HTTP/1.1 keep-alive transport that dials with the
// given connect timeout. It is called when configuration is compiled, never
// on the request path.
func (t *Transports) For(connectTimeout time.Duration) http.RoundTripper {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr, ok := t.m[connectTimeout]; ok {
		return tr
	}
	tr := newTransport(connectTimeout)
	t.m[connectTimeout] = tr
	return tr
}

// CloseIdleConnections closes every idle upstream connection, at shutdown.
func (t *Transports) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.m {
		tr.CloseIdleConnections()
	}
}

func newTransport(connectTimeout time.Duration) *http.Transport {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		// Never consult HTTP_PROXY: applications point http_proxy at this
		// very proxy, and honouring it here would loop.
		Proxy:       nil,
		DialContext: dialer.DialContext,
		Protocols:   &protocols,
		// A sidecar talks to few hosts with many concurrent requests; keep
		// enough idle connections per endpoint that bursts reuse them.
		MaxIdleConns:        0, // no global cap
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		// Relay bodies as they are: no transparent gzip negotiation.
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}
