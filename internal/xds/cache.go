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
// it NACKed: see onStreamRequest), or when req subscribes by name to a
// resource the stream has not answered for yet (watch.wants); otherwise
// it parks req until the proxy's configuration of the type changes.
func (c adsCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	ti := typeIndex(req.GetTypeUrl())
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proxies[req.GetNode().GetId()]
	if ti < 0 || p == nil || p.xds[ti].req != req {
		// A type weft does not serve, or a stream that is going away
		// (perhaps replaced by a newer stream of the same proxy, whose
		// requests p now serves): nothing will answer.
		return func() {}, nil
	}
	ts := &p.xds[ti]
	w := &watch{req: req, ch: ch, wildcard: sub.IsWildcard(), names: sub.SubscribedResources()}
	if w.wildcard && len(req.GetResourceNames()) == 0 && !legacyWildcard(p, ti) {
		// go-control-plane reads empty names on a stream's first request
		// of any type as a wildcard; the protocol, only for LDS and CDS.
		w.wildcard, w.names = false, map[string]struct{}{}
	}
	if !w.wildcard {
		if w.names == nil {
			w.names = map[string]struct{}{}
		}
		ts.answered = ts.answered.narrow(w.names)
	}
	if w.wants(ti, ts) {
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

// legacyWildcard says whether empty resource_names on p's first request of
// type ti subscribe to every resource. The xDS protocol says so for LDS
// and CDS ("How the client specifies what resources to return"); for the
// other types empty names subscribe to nothing. weft-proxy subscribes with
// empty names to every type, and so do clients that give no user agent
// (weft's tests and tools); every other client (Envoy, gRPC) gets the
// protocol's rule.
func legacyWildcard(p *proxyState, ti int) bool {
	return ti == lds || ti == cds || p.legacyWildcardAll
}

// wants says whether w must be answered now with ts's configuration of
// type ti. Callers hold s.mu.
//
// A request is answered when the proxy's version differs from the one it
// holds. At the same version, a subscription by name is answered when it
// names a resource the stream did not answer it for yet (ts.answered),
// as the protocol requires of a request that changes the names: for LDS
// and CDS whether the resource exists or not (their responses are
// complete, so the client learns at once that it does not), for EDS and
// RDS when it exists (when it comes, the version changes). A wildcard
// subscription at the same version is answered only when the stream had
// answered names before: a proxy that holds the current version on a new
// stream is sent nothing.
func (w *watch) wants(ti int, ts *typeState) bool {
	if !ts.ready {
		return false
	}
	if !w.wildcard && len(w.names) == 0 {
		return false // subscribes to nothing
	}
	if w.req.GetVersionInfo() != ts.version {
		return true
	}
	a := ts.answered
	if w.wildcard {
		return a != nil && !a.all
	}
	for name := range w.names {
		if a != nil && a.has(name) {
			continue
		}
		if ti == lds || ti == cds || ts.has(name) {
			return true
		}
	}
	return false
}

// answeredSet is what the responses sent on a stream answered of one
// type: every resource (all), or the names the subscription held when the
// last response was built, less those unsubscribed since. It is replaced,
// never modified, so it may share its map with a subscription.
type answeredSet struct {
	all   bool
	names map[string]struct{}
}

func (a *answeredSet) has(name string) bool {
	if a.all {
		return true
	}
	_, ok := a.names[name]
	return ok
}

// narrow returns what a answered of the names a subscription by name now
// holds: a name unsubscribed and subscribed again is answered again, as
// the client dropped it.
func (a *answeredSet) narrow(names map[string]struct{}) *answeredSet {
	if a == nil {
		return nil
	}
	out := &answeredSet{names: make(map[string]struct{}, len(names))}
	for name := range names {
		if a.has(name) {
			out.names[name] = struct{}{}
		}
	}
	return out
}

// respondLocked answers w with ts's configuration. Callers hold s.mu.
func (s *Server) respondLocked(p *proxyState, ts *typeState, w *watch) {
	ti := typeIndex(w.req.GetTypeUrl())
	resp := &response{s: s, p: p, ti: ti, req: w.req, version: ts.version, parts: ts.parts,
		partial: partialAllowed(p, ti, w.wildcard)}
	if !w.wildcard {
		resp.names = w.names
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
