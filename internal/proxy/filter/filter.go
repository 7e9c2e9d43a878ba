// Package filter runs weft-proxy's HTTP filters: the per-request policy
// steps between a listener accepting a request and the router forwarding
// it.
//
// A listener's Chain is built once per configuration from its
// HttpConnectionManager's http_filters, in their order, and is immutable.
// For each request the chain first normalizes it (package normalize), then
// runs each filter on the normalized request; a filter either passes the
// request on or ends it with a local reply. The router is not a filter
// here: it is what runs after the chain (the forwarding engine).
//
// Filters are found by the type URL of their typed_config in a registry
// (registry.go); the order filters may run in is fixed in one place
// (order.go).
package filter

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/weft-mesh/weft/internal/proxy/normalize"
	"github.com/weft-mesh/weft/internal/proxy/peer"
)

// Filter is one compiled HTTP filter. It is immutable and safe for
// concurrent use; Decode runs on the request's goroutine.
type Filter interface {
	// Decode inspects req and may edit its headers and metadata. It
	// returns nil to pass the request on, or the reply that ends it.
	Decode(req *Request) *Reply
}

// Reply is a local reply that ends a request: a status, a one-line body
// and optional extra headers. Replies are usually shared values; never
// modify one.
type Reply struct {
	Status int
	Body   string
	Header http.Header
}

// Request is one request as the filters see it: normalized, with what the
// listener verified about its connection and what earlier filters learned.
// It lives for one pass through the chain and belongs to the request's
// goroutine.
type Request struct {
	// HTTP is the normalized request. Filters may edit its headers (and,
	// for a token in a query parameter, its query); its path and host are
	// final.
	HTTP *http.Request
	// Path is the normalized path, without the query: what routing and
	// policy match and what the upstream receives.
	Path string
	// Log is the listener's logger.
	Log *slog.Logger

	peer     *peer.Info
	fallback peer.Info
	meta     []metaEntry
}

type metaEntry struct {
	namespace string
	value     map[string]any
}

// Peer is what the listener verified about the connection: the SPIFFE ID
// of an mTLS peer, the SNI, the remote address and the local port. It is
// never nil; for a request that did not come through a weft listener
// (tests) it is derived from the request's addresses.
func (r *Request) Peer() *peer.Info {
	if r.peer == nil {
		r.fallback = peer.Info{}
		if ap, err := netip.ParseAddrPort(r.HTTP.RemoteAddr); err == nil {
			r.fallback.RemoteAddr = ap
		}
		if a, ok := r.HTTP.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if ap, err := netip.ParseAddrPort(a.String()); err == nil {
				r.fallback.LocalPort = ap.Port()
			}
		}
		r.peer = &r.fallback
	}
	return r.peer
}

// LocalAddr is the address the connection arrived on, if known.
func (r *Request) LocalAddr() (netip.AddrPort, bool) {
	a, ok := r.HTTP.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return netip.AddrPort{}, false
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort(), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// SetMetadata records dynamic metadata under a filter's namespace (for
// example "envoy.filters.http.jwt_authn"), for later filters to match.
// value must not be modified afterwards.
func (r *Request) SetMetadata(namespace string, value map[string]any) {
	for i := range r.meta {
		if r.meta[i].namespace == namespace {
			r.meta[i].value = value
			return
		}
	}
	r.meta = append(r.meta, metaEntry{namespace, value})
}

// Metadata returns the dynamic metadata an earlier filter recorded under
// namespace, or nil.
func (r *Request) Metadata(namespace string) map[string]any {
	for i := range r.meta {
		if r.meta[i].namespace == namespace {
			return r.meta[i].value
		}
	}
	return nil
}

// NewRequest returns a Request for r, whose path is already normalized, as
// the chain would pass it to its filters. It is for filters' tests.
func NewRequest(r *http.Request, path string) *Request {
	req := &Request{HTTP: r, Path: path, Log: slog.New(slog.DiscardHandler)}
	if p, ok := peer.FromContext(r.Context()); ok {
		req.peer = p
	}
	return req
}

// Named is one filter of a chain with the names it is known by.
type Named struct {
	// Name is the http_filters entry's name, for logs and config dumps.
	Name string `json:"name"`
	// TypeURL is its typed_config's type URL.
	TypeURL string `json:"type"`
	Filter  Filter `json:"config"`
}

// Chain is one listener's compiled HTTP processing: normalization, then
// its filters in order. It is immutable and safe for concurrent use. A nil
// *Chain normalizes with the zero Options (Istio's BASE) and runs no
// filter.
type Chain struct {
	normalize normalize.Options
	filters   []Named
}

// ChainConfig is what a chain is built from, decoded from an
// HttpConnectionManager.
type ChainConfig struct {
	// Normalize is the path normalization.
	Normalize normalize.Options
	// Filters are the HTTP filters before the router, in order.
	Filters []Named
}

// NewChain builds a chain.
func NewChain(c ChainConfig) *Chain {
	return &Chain{normalize: c.Normalize, filters: c.Filters}
}

// Filters returns the chain's filters in order. The caller must not
// modify them.
func (c *Chain) Filters() []Named {
	if c == nil {
		return nil
	}
	return c.filters
}

// MarshalJSON shows the chain in config dumps.
func (c *Chain) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Normalize normalize.Options `json:"normalize"`
		Filters   []Named           `json:"http_filters"`
	}{c.normalize, c.filters})
}

var requests = sync.Pool{New: func() any { return new(Request) }}

// Run normalizes r in place and runs the filters on it. It returns nil
// when r may be routed, as it now is (r's path, target and host are
// final, and what the filters saw is what will be forwarded), or the
// local reply that ends it. log is the listener's logger.
func (c *Chain) Run(r *http.Request, log *slog.Logger) *Reply {
	var opts normalize.Options
	if c != nil {
		opts = c.normalize
	}
	path, rej := normalize.Request(r, opts)
	if rej != nil {
		return &Reply{Status: rej.Status, Body: rej.Reason}
	}
	if c == nil || len(c.filters) == 0 {
		return nil
	}
	req := requests.Get().(*Request)
	defer func() {
		clear(req.meta[:cap(req.meta)]) // drop the references to claims
		*req = Request{meta: req.meta[:0]}
		requests.Put(req)
	}()
	req.HTTP, req.Path, req.Log = r, path, log
	if p, ok := peer.FromContext(r.Context()); ok {
		req.peer = p
	}
	for i := range c.filters {
		if rep := c.filters[i].Filter.Decode(req); rep != nil {
			return rep
		}
	}
	return nil
}

// NewConnRequest returns the Request that network filters (RBAC on a TCP
// workload) evaluate for one connection: no HTTP attributes, only what
// the listener verified (info) and the local address the connection
// arrived on. A nil log discards.
func NewConnRequest(info *peer.Info, local net.Addr, log *slog.Logger) *Request {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx := context.WithValue(context.Background(), http.LocalAddrContextKey, local)
	hr := (&http.Request{Header: http.Header{}}).WithContext(ctx)
	return &Request{HTTP: hr, Log: log, peer: info}
}
