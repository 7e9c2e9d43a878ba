package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

// bufferSize is the body copy buffer: large enough that big bodies move in
// few syscalls, small enough to pool one per in-flight request.
const bufferSize = 32 << 10

// Engine forwards HTTP requests according to the Config its Source gives.
// One Engine serves every listener; Handler binds it to one listener's name.
type Engine struct {
	src      Source
	log      *slog.Logger
	inflight atomic.Int64
	bufs     sync.Pool

	mu       sync.Mutex
	handlers map[string]*handler
}

// New returns an engine reading its configuration from src. log is the
// engine's component logger.
func New(src Source, log *slog.Logger) *Engine {
	e := &Engine{src: src, log: log, handlers: make(map[string]*handler)}
	e.bufs.New = func() any {
		b := make([]byte, bufferSize)
		return &b
	}
	return e
}

// Handler returns the http.Handler for the named listener ("outbound" or
// "inbound"): it routes with that listener's route table. Calling it again
// with the same name returns the same handler.
func (e *Engine) Handler(listener string) http.Handler {
	e.mu.Lock()
	defer e.mu.Unlock()
	if h, ok := e.handlers[listener]; ok {
		return h
	}
	h := &handler{e: e, name: listener, log: e.log.With("listener", listener)}
	e.handlers[listener] = h
	return h
}

// InFlight is the number of requests being handled right now, for draining.
func (e *Engine) InFlight() int64 { return e.inflight.Load() }

// WriteStats writes the engine's counters as "name value" lines, sorted.
func (e *Engine) WriteStats(w io.Writer) error {
	e.mu.Lock()
	names := make([]string, 0, len(e.handlers))
	for n := range e.handlers {
		names = append(names, n)
	}
	e.mu.Unlock()
	slices.Sort(names)
	for _, n := range names {
		e.mu.Lock()
		h := e.handlers[n]
		e.mu.Unlock()
		if err := h.stats.write(w, "listener."+n+"."); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "server.requests_in_flight %d\n", e.InFlight())
	return err
}

// stats are a listener's counters. Each is one atomic add on the request
// path.
type stats struct {
	requests       atomic.Uint64 // every request the listener received
	localReplies   atomic.Uint64 // answered by the proxy itself (any 4xx/5xx it made up)
	upstreamFailed atomic.Uint64 // of those, because the upstream exchange failed
	downstreamGone atomic.Uint64 // abandoned because the client went away
	refused        atomic.Uint64 // aborted: the connection's transport (plaintext or TLS) is no longer allowed
	responses      [6]atomic.Uint64
}

func (s *stats) write(w io.Writer, prefix string) error {
	lines := []struct {
		name string
		v    uint64
	}{
		{"requests_total", s.requests.Load()},
		{"local_replies_total", s.localReplies.Load()},
		{"upstream_failures_total", s.upstreamFailed.Load()},
		{"downstream_cancelled_total", s.downstreamGone.Load()},
		{"connection_policy_refused_total", s.refused.Load()},
		{"upstream_responses_1xx", s.responses[1].Load()},
		{"upstream_responses_2xx", s.responses[2].Load()},
		{"upstream_responses_3xx", s.responses[3].Load()},
		{"upstream_responses_4xx", s.responses[4].Load()},
		{"upstream_responses_5xx", s.responses[5].Load()},
	}
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%s%s %d\n", prefix, l.name, l.v); err != nil {
			return err
		}
	}
	return nil
}

type handler struct {
	e     *Engine
	name  string
	log   *slog.Logger
	stats stats
}

var _ http.Handler = (*handler)(nil)

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := h.e
	e.inflight.Add(1)
	defer e.inflight.Add(-1)
	h.stats.requests.Add(1)

	// One load: this request uses this Config to its end.
	cfg := e.src.Load()
	if cfg == nil {
		h.localReply(w, r, http.StatusServiceUnavailable, "no configuration received from the control plane yet")
		return
	}
	l := cfg.Listeners[h.name]
	if l == nil {
		h.localReply(w, r, http.StatusServiceUnavailable, fmt.Sprintf("no listener %q in the configuration from the control plane", h.name))
		return
	}
	if (l.RefusePlaintext || l.RefuseTLS) && !admitted(r, l) {
		// The connection was accepted under an earlier policy (say
		// PERMISSIVE, now STRICT): end it, as Envoy drains the filter
		// chains a listener no longer has.
		h.stats.refused.Add(1)
		h.log.Debug("request on a connection the listener's policy no longer allows", "remote", r.RemoteAddr)
		panic(http.ErrAbortHandler)
	}
	sanitize(r, l)
	if l.Routes == nil {
		h.localReply(w, r, http.StatusServiceUnavailable, fmt.Sprintf("no route configuration %q received from the control plane yet", l.RouteConfigName))
		return
	}
	// Normalize once and run the HTTP filters: routing, policy and the
	// upstream all see the request as it is now.
	if rep := l.HTTP.Run(r, h.log); rep != nil {
		for k, v := range rep.Header {
			w.Header()[k] = v
		}
		h.localReply(w, r, rep.Status, rep.Body)
		return
	}
	vh := l.Routes.Lookup(r.Host)
	if vh == nil {
		h.localReply(w, r, http.StatusNotFound, fmt.Sprintf("no route for host %+q", r.Host))
		return
	}
	req := route.NewRequest(r)
	rt := vh.Match(&req)
	if rt == nil {
		h.localReply(w, r, http.StatusNotFound, fmt.Sprintf("no route for host %+q and path %+q", r.Host, req.Path))
		return
	}
	act := rt.Action()
	name := act.Cluster()
	c := cfg.Clusters[name]
	if c == nil {
		h.localReply(w, r, http.StatusServiceUnavailable, "unknown cluster "+name)
		return
	}
	ep, ok := c.Pick()
	if !ok {
		h.localReply(w, r, http.StatusServiceUnavailable, "no healthy upstream for cluster "+name)
		return
	}
	h.forward(w, r, c, ep, act.Timeout())
}

// forward relays r to ep and the response back to w.
func (h *handler) forward(w http.ResponseWriter, r *http.Request, c *cluster.Cluster, ep cluster.Endpoint, timeout time.Duration) {
	if u, ok := c.Transport().(*Upstream); ok && u.fast(r) {
		h.forwardH1(w, r, u.h1, c, ep, timeout)
		return
	}
	ctx := r.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	// The outbound request is the inbound one, edited in place: the header
	// map, which this handler owns, and the URL, which the server no
	// longer needs; rewriting both is cheaper than cloning them, and the
	// clients only read them. A shallow copy is made only when the context
	// or the body must differ (an allocation a request otherwise).
	out := r
	if ctx != r.Context() || r.ContentLength == 0 && r.Body != nil && r.Body != http.NoBody {
		out = r.WithContext(ctx)
		if r.ContentLength == 0 {
			out.Body = nil // lets the transport send no body and retry safely on a stale connection
		}
	}
	prepareOutbound(out, c, ep)
	if _, ok := out.Header["User-Agent"]; !ok {
		// An empty value stops the client from adding its own.
		out.Header["User-Agent"] = emptyValue
	}

	res, err := c.Transport().RoundTrip(out)
	if err != nil {
		h.roundTripFailed(ctx, w, r, c, ep, timeout, err)
		return
	}
	if out.Body != nil {
		// The upstream may answer while the request body is still
		// streaming to it (an echo, a gRPC-style bidirectional stream).
		// net/http's HTTP/1 server would otherwise discard the unread
		// rest of the body, up to 256 KiB, as the response starts, and
		// the upstream would silently get a body with a hole in it.
		// (HTTP/2 is always full duplex.)
		if fd, ok := w.(interface{ EnableFullDuplex() error }); ok {
			_ = fd.EnableFullDuplex()
		}
	}
	h.relay(w, res, c, ep, nil)
}

// roundTripFailed answers a request whose round trip failed: nothing when
// the client itself went away or sent a short body (the engine's own
// clients read small bodies before sending, so that shows up here; there
// is nobody, or nothing valid, to answer), else the upstream failure.
func (h *handler) roundTripFailed(ctx context.Context, w http.ResponseWriter, r *http.Request, c *cluster.Cluster, ep cluster.Endpoint, timeout time.Duration, err error) {
	var be errDownstreamBody
	if errors.As(err, &be) {
		h.stats.downstreamGone.Add(1)
		h.log.Debug("reading the request body failed", "err", be.err)
		return
	}
	h.upstreamFailure(ctx, w, r, c, ep, timeout, err)
}

// forwardH1 relays r to ep over the engine's own HTTP/1.1 client: the
// request is edited in place (no copy), and no goroutine but the handler's
// takes part.
func (h *handler) forwardH1(w http.ResponseWriter, r *http.Request, pool *h1Pool, c *cluster.Cluster, ep cluster.Endpoint, timeout time.Duration) {
	prepareOutbound(r, c, ep)
	x := getExchange()
	res, err := pool.roundTrip(r.Context(), r, ep.Address, timeout, x)
	if err != nil {
		putExchange(x)
		h.roundTripFailed(r.Context(), w, r, c, ep, timeout, err)
		return
	}
	// relay releases the exchange's connection; when it panics to abort
	// the response, x is left to the collector.
	h.relay(w, res, c, ep, x)
	putExchange(x)
}

// prepareOutbound turns the server request r into the request for ep, in
// place.
func prepareOutbound(r *http.Request, c *cluster.Cluster, ep cluster.Endpoint) {
	u := r.URL
	u.Scheme = c.Scheme() // https for mTLS clusters, whose transport dials TLS
	u.Host = ep.Address   // absolute-form targets become origin-form: the client writes u.RequestURI()
	u.User = nil          // or the client would turn user:password@ into an Authorization header
	r.RequestURI = ""     // set only on server requests; the client refuses it
	r.Close = false
	removeHopByHop(r.Header, true)
	// r.Host keeps the client's Host / :authority for the upstream.
}

// relay writes the upstream response res to w: headers, body, trailers.
// x is the fast path's exchange, released here; nil for net/http's
// Transport.
func (h *handler) relay(w http.ResponseWriter, res *http.Response, c *cluster.Cluster, ep cluster.Endpoint, x *h1Exchange) {
	h.stats.responses[min(res.StatusCode/100, 5)].Add(1)
	removeHopByHop(res.Header, false)
	dst := w.Header()
	for k, vv := range res.Header {
		dst[k] = vv // no value copy: the response is ours alone
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		dst["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(res.StatusCode)

	// A response of unknown length is often a stream (server-sent events,
	// long polls, chunked progress): flush every read so bytes are not held
	// back. Known-length responses let net/http buffer.
	werr, rerr := h.copyBody(w, res.Body, res.ContentLength < 0)
	// The body was read to EOF, which fills res.Trailer; release the
	// upstream connection before writing the trailers out.
	if x == nil {
		res.Body.Close()
	} else if werr == nil && rerr == nil {
		x.finish(res)
	} else {
		x.abort() // never drain the rest of a body nobody reads
		rerr = x.bodyErr(rerr)
	}
	if werr != nil {
		h.stats.downstreamGone.Add(1)
		return
	}
	if rerr != nil {
		// Headers are gone; the status can no longer say it. Abort the
		// downstream response so the client sees an error, not a truncated
		// body that looks complete.
		h.stats.upstreamFailed.Add(1)
		h.log.Debug("upstream body failed", "cluster", c.Name(), "endpoint", ep.Address, "err", rerr)
		panic(http.ErrAbortHandler)
	}
	if len(res.Trailer) > 0 {
		if announced == len(res.Trailer) {
			for k, vv := range res.Trailer {
				dst[k] = vv
			}
		} else {
			// Some trailers were not announced: send them all the late way.
			for k, vv := range res.Trailer {
				dst[http.TrailerPrefix+k] = vv
			}
		}
	}
}

// copyBody copies the upstream body to the client through a pooled buffer.
// It returns the client write error or the upstream read error, if any.
func (h *handler) copyBody(w http.ResponseWriter, body io.Reader, flush bool) (werr, rerr error) {
	bp := h.e.bufs.Get().(*[]byte)
	defer h.e.bufs.Put(bp)
	buf := *bp
	var fl http.Flusher
	if flush {
		fl, _ = w.(http.Flusher)
	}
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr, nil
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// upstreamFailure answers a request whose upstream exchange failed before
// response headers arrived.
func (h *handler) upstreamFailure(ctx context.Context, w http.ResponseWriter, r *http.Request, c *cluster.Cluster, ep cluster.Endpoint, timeout time.Duration, err error) {
	if r.Context().Err() != nil {
		// The client went away (or the server is closing): nobody to answer.
		h.stats.downstreamGone.Add(1)
		return
	}
	h.stats.upstreamFailed.Add(1)
	h.stats.localReplies.Add(1)
	code, msg := classify(ctx, c, timeout, err)
	h.log.Debug("upstream request failed", "cluster", c.Name(), "endpoint", ep.Address, "status", code, "err", err)
	writeLocalReply(w, code, msg)
}

// localReply counts, logs and writes a reply the proxy makes up itself.
func (h *handler) localReply(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h.stats.localReplies.Add(1)
	h.log.Debug("local reply", "status", code, "host", r.Host, "method", r.Method, "reason", msg)
	writeLocalReply(w, code, msg)
}

// writeLocalReply answers from the proxy itself: a one-line text/plain body
// and the x-weft-local-reply header, so clients, operators and tests can tell
// the proxy's answers from the application's.
func writeLocalReply(w http.ResponseWriter, code int, msg string) {
	hd := w.Header()
	hd["Content-Type"] = textPlain
	hd["X-Content-Type-Options"] = nosniff
	hd["X-Weft-Local-Reply"] = trueValue
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}
