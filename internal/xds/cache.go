package xds

import (
	"context"
	"errors"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// adsCache is the configuration source of go-control-plane's ADS server:
// it answers each stream's requests from the per-proxy state the Server
// keeps (proxyState.xds), which Server.Update and Server.connect fill.
//
// It replaces go-control-plane's snapshot cache, which keeps one version
// for all types and marshals every resource of every response again for
// every proxy. Here each type of each proxy has its own version, and the
// resources shared by proxies are marshalled once per mesh snapshot.
//
// Contract (cachev3.ConfigWatcher): the ADS server calls CreateWatch from
// a stream's goroutine for every request, after the StreamRequest
// callback, and cancels the previous watch of the type first. A watch is
// answered at most once, by a send on its channel that never blocks: the
// ADS server gives every stream a channel with room for one response of
// each type, and a type has at most one open watch.
type adsCache struct{ s *Server }

var _ cachev3.Cache = adsCache{}

// CreateWatch answers req at once when the proxy's version of the type
// differs from the one req holds (its last ACKed version, or the version
// it NACKed: see onStreamRequest), and otherwise parks it until the
// proxy's configuration of the type changes.
func (c adsCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	ti := typeIndex(req.GetTypeUrl())
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proxies[req.GetNode().GetId()]
	if ti < 0 || p == nil {
		// A type weft does not serve, or a stream that is going away:
		// nothing will answer.
		return func() {}, nil
	}
	ts := &p.xds[ti]
	w := &watch{req: req, sub: sub, ch: ch}
	if ts.ready && req.GetVersionInfo() != ts.version {
		s.respondLocked(p, ts, w)
		return func() {}, nil
	}
	ts.watch = w
	return func() {
		s.mu.Lock()
		if ts.watch == w {
			ts.watch = nil
		}
		s.mu.Unlock()
	}, nil
}

// respondLocked answers w with ts's configuration. Callers hold s.mu.
func (s *Server) respondLocked(p *proxyState, ts *typeState, w *watch) {
	ti := typeIndex(w.req.GetTypeUrl())
	wildcard := w.sub.IsWildcard()
	resp := &response{s: s, p: p, ti: ti, req: w.req, version: ts.version, parts: ts.parts,
		partial: partialAllowed(p, ti, wildcard)}
	if !wildcard {
		resp.names = w.sub.SubscribedResources()
		if resp.names == nil {
			resp.names = map[string]struct{}{}
		}
	}
	select {
	case w.ch <- resp:
	default:
		// Cannot happen while the ADS server keeps its contract (see
		// adsCache); should it, the proxy gets this type on its next
		// request or change.
		s.log.Error("response channel full; response dropped", "proxy", p.workload.ID, "type", shortType(w.req.GetTypeUrl()), "version", ts.version)
	}
}

var errNoFetch = errors.New("weft serves xDS over ADS streams only")

// Fetch is REST xDS, which weft does not serve.
func (adsCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errNoFetch
}

// CreateDeltaWatch is never called: delta streams are refused when they
// open (errNoDelta).
func (adsCache) CreateDeltaWatch(*cachev3.DeltaRequest, cachev3.Subscription, chan cachev3.DeltaResponse) (func(), error) {
	return nil, errNoDelta
}
