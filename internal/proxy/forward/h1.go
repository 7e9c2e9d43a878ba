package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/reqctx"
)

// h1Pool is weft's own HTTP/1.1 client for the exchanges that make up
// nearly all mesh traffic: a request with no body or a small body of known
// length. The handler's goroutine writes the whole request in one write
// and reads the response itself, where net/http's Transport hands every
// request to a connection's write goroutine and the response back from its
// read goroutine, flushes the headers and the body in two writes, and
// copies a known-length body through a fresh 32 KiB buffer. Everything
// else (streamed or chunked bodies, which need full duplex, Expect:
// 100-continue, trailers on requests) takes the http.Transport.
//
// The common response head (HTTP/1.1, one Content-Length) is parsed here
// too (h1resp.go); every other one by net/http (http.ReadResponse: chunked
// bodies, trailers, conflicting lengths refused, bodies of HEAD, 204 and
// 304).
type h1Pool struct {
	dial        func(ctx context.Context, addr string) (net.Conn, error)
	idleTimeout time.Duration
	maxIdle     int // per endpoint

	// Counters for /stats: connections dialled, idle connections reused,
	// idle connections found closed (or unclean) and dropped, requests
	// sent again after a reused connection failed.
	dials, reuses, stale, retries atomic.Uint64

	mu     sync.Mutex
	idle   map[string][]*h1Conn // per endpoint; the most recently used last
	sweep  *time.Timer          // pending while connections are idle
	closed bool
}

// maxBufferedBody is the largest request body the fast path reads ahead
// and sends with the headers; larger ones are streamed by the
// http.Transport. Reading a small body before the upstream sees the
// request also lets a request that meets a connection the upstream just
// closed be sent again on a new one.
const maxBufferedBody = 64 << 10

// h1ReadBufferSize is each upstream connection's read buffer: a typical
// response's headers and body in one read.
const h1ReadBufferSize = 16 << 10

func newH1Pool(dial func(ctx context.Context, addr string) (net.Conn, error), idleTimeout time.Duration, maxIdle int) *h1Pool {
	return &h1Pool{dial: dial, idleTimeout: idleTimeout, maxIdle: maxIdle, idle: make(map[string][]*h1Conn)}
}

// h1Conn is one upstream connection.
type h1Conn struct {
	conn   net.Conn
	br     *bufio.Reader
	addr   string
	tls    bool
	idleAt time.Time
	peek   *peeker // made on the first liveness check
	// hdr is the header map of the connection's responses, reused by
	// parseResponse: nothing may keep a response's Header once its
	// exchange has finished.
	hdr http.Header
}

// eligible reports whether the fast path can carry r: a body of known
// length up to maxBufferedBody or none, no Expect and no request trailers.
func h1Eligible(r *http.Request) bool {
	if r.ContentLength < 0 || r.ContentLength > maxBufferedBody || len(r.Trailer) > 0 || r.Method == http.MethodConnect {
		return false
	}
	_, expect := r.Header["Expect"]
	return !expect
}

// peekAfter is how long a connection must have been idle before get
// checks that the upstream has not closed it. A server closes a keep-alive
// connection either on its last response (Connection: close, and it is
// never pooled) or after an idle timeout of seconds; one closed sooner
// fails the exchange before any response byte, and that is sent again on
// a new connection (errH1Retry) like one that closes as the request goes
// out, which no check can rule out. Under load a connection is idle for
// microseconds to milliseconds, so the check's system call, one a request,
// is skipped where it would nearly never find anything.
const peekAfter = 100 * time.Millisecond

// get returns an idle connection to addr that still looks alive, or dials
// a new one. reused says which.
func (p *h1Pool) get(ctx context.Context, addr string, fresh bool) (pc *h1Conn, reused bool, err error) {
	for !fresh {
		p.mu.Lock()
		conns := p.idle[addr]
		n := len(conns)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		pc = conns[n-1]
		conns[n-1] = nil
		p.idle[addr] = conns[:n-1]
		p.mu.Unlock()
		if idle := time.Since(pc.idleAt); idle < p.idleTimeout && (idle < peekAfter || pc.alive()) {
			p.reuses.Add(1)
			return pc, true, nil
		}
		p.stale.Add(1)
		pc.conn.Close()
	}
	p.dials.Add(1)
	c, err := p.dial(ctx, addr)
	if err != nil {
		return nil, false, err
	}
	_, isTLS := c.(*tls.Conn)
	return &h1Conn{conn: c, br: bufio.NewReaderSize(c, h1ReadBufferSize), addr: addr, tls: isTLS}, false, nil
}

// put returns a connection whose last exchange ended cleanly to the pool.
func (p *h1Pool) put(pc *h1Conn) {
	if pc.br.Buffered() > 0 {
		// Bytes after the response: the upstream is out of step with us
		// (or trying to be), and the next response would be wrong.
		pc.conn.Close()
		return
	}
	pc.idleAt = time.Now()
	p.mu.Lock()
	conns := p.idle[pc.addr]
	if p.closed || len(conns) >= p.maxIdle {
		p.mu.Unlock()
		pc.conn.Close()
		return
	}
	p.idle[pc.addr] = append(conns, pc)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(p.idleTimeout, p.closeExpired)
	}
	p.mu.Unlock()
}

// closeExpired closes the connections idle for longer than the idle
// timeout, and comes back while some are left.
func (p *h1Pool) closeExpired() {
	var expired []*h1Conn
	p.mu.Lock()
	p.sweep = nil
	now := time.Now()
	for addr, conns := range p.idle {
		// Oldest first: the expired ones are a prefix.
		i := 0
		for i < len(conns) && now.Sub(conns[i].idleAt) >= p.idleTimeout {
			i++
		}
		expired = append(expired, conns[:i]...)
		if i == len(conns) {
			delete(p.idle, addr)
		} else if i > 0 {
			p.idle[addr] = append(conns[:0], conns[i:]...)
			clear(conns[len(conns)-i:])
		}
	}
	if len(p.idle) > 0 && !p.closed {
		p.sweep = time.AfterFunc(p.idleTimeout/2, p.closeExpired)
	}
	p.mu.Unlock()
	for _, pc := range expired {
		pc.conn.Close()
	}
}

// closeIdle closes every idle connection; when final, the pool keeps no
// connection from now on.
func (p *h1Pool) closeIdle(final bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = make(map[string][]*h1Conn)
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.closed = p.closed || final
	p.mu.Unlock()
	for _, conns := range idle {
		for _, pc := range conns {
			pc.conn.Close()
		}
	}
}

// aLongTimeAgo is a deadline in the past: setting it makes blocked I/O on
// a connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// h1Exchange is one request in progress on the fast path.
type h1Exchange struct {
	pool *h1Pool
	pc   *h1Conn
	// watch hangs the exchange on the request's context (see
	// ContextCanceled); hookConn is the connection the hook interrupts,
	// written only while no hook can run.
	watch     reqctx.Watch
	hookConn  net.Conn
	cancelled atomic.Bool
	deadline  bool
	// hookRan is set once a Stop of watch came too late: the hook ran or
	// is running, so the exchange may still be touched and is not reused.
	hookRan bool
	// res and body hold the response when readResponse parses it itself.
	res  http.Response
	body lengthBody
}

// exchanges recycles h1Exchanges: one per request otherwise, and the
// largest allocation of the engine's own HTTP/1.1 path.
var exchanges = sync.Pool{New: func() any { return new(h1Exchange) }}

// getExchange returns an exchange ready for roundTrip.
func getExchange() *h1Exchange { return exchanges.Get().(*h1Exchange) }

// putExchange recycles x once the response is relayed and x.finish or
// x.abort has run, unless the context's hook may still hold it. Nothing
// else keeps x: the response and its body are x's own fields, read only
// by relay.
func putExchange(x *h1Exchange) {
	if x.hookRan {
		return
	}
	*x = h1Exchange{}
	exchanges.Put(x)
}

// stopWatch undoes the context hook, and reports whether it never ran.
func (x *h1Exchange) stopWatch() bool {
	if !x.watch.Stop() {
		x.hookRan = true
	}
	return !x.hookRan
}

// errH1Retry marks a failure on a reused connection before any byte of a
// response: the upstream had closed it, and the request can be sent again.
var errH1Retry = errors.New("reused connection closed by the upstream")

// errDownstreamBody is a request body that could not be read from the
// client: it went away or sent less than its Content-Length.
type errDownstreamBody struct{ err error }

func (e errDownstreamBody) Error() string { return "reading the request body: " + e.err.Error() }
func (e errDownstreamBody) Unwrap() error { return e.err }

// roundTrip reads out's body (h1Eligible: none, or ContentLength bytes),
// sends out (origin-form target, Host, the headers as they are, the body)
// to addr in one write and reads the response head. ctx ending aborts the
// exchange; timeout > 0 bounds the whole exchange, response body
// included. On success the caller reads res.Body and must then call
// x.finish or x.abort; on failure the connection is already closed.
func (p *h1Pool) roundTrip(ctx context.Context, out *http.Request, addr string, timeout time.Duration, x *h1Exchange) (*http.Response, error) {
	buf := getBuf()
	defer putBuf(buf)
	n := int(out.ContentLength)
	head, err := appendRequestHead((*buf)[:0], out, n)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		head = slices.Grow(head, n)
		if _, err := io.ReadFull(out.Body, head[len(head):len(head)+n]); err != nil {
			return nil, errDownstreamBody{err}
		}
		head = head[:len(head)+n]
		// Reading the end of the body tells the server so: from then on
		// it watches the client's connection and cancels the request's
		// context when the client goes away.
		var one [1]byte
		if m, err := out.Body.Read(one[:]); m > 0 || err != io.EOF {
			if err == nil || m > 0 {
				err = errors.New("request body longer than its Content-Length")
			}
			return nil, errDownstreamBody{err}
		}
	}
	*buf = head

	x.pool = p
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	fresh := false
	for attempt := 0; ; attempt++ {
		pc, reused, err := p.get(ctx, addr, fresh)
		if err != nil {
			return nil, err
		}
		x.pc = pc
		res, err := x.send(ctx, head, out, deadline, reused)
		if err == nil {
			return res, nil
		}
		x.abort()
		if errors.Is(err, errH1Retry) && attempt == 0 && ctx.Err() == nil {
			p.retries.Add(1)
			fresh = true
			continue
		}
		if errors.Is(err, errH1Retry) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
}

func (x *h1Exchange) send(ctx context.Context, head []byte, out *http.Request, deadline time.Time, reused bool) (*http.Response, error) {
	pc := x.pc
	x.deadline = !deadline.IsZero()
	if x.deadline {
		_ = pc.conn.SetDeadline(deadline)
	}
	x.cancelled.Store(false)
	x.hookConn = pc.conn
	x.watch = reqctx.WatchContext(ctx, x)
	if _, err := writeRequest(pc.conn, head); err != nil {
		if reused && !x.cancelled.Load() && !isTimeout(err) {
			return nil, errH1Retry
		}
		return nil, x.err(err)
	}
	for {
		if _, err := pc.br.Peek(1); err != nil {
			if reused && !x.cancelled.Load() && !isTimeout(err) {
				return nil, errH1Retry
			}
			return nil, x.err(err)
		}
		res, err := readResponse(pc.br, out, &x.res, &x.body, &pc.hdr)
		if err != nil {
			return nil, x.err(err)
		}
		if res.StatusCode >= 100 && res.StatusCode <= 199 {
			if res.StatusCode == http.StatusSwitchingProtocols {
				return nil, errors.New("upstream switched protocols, but no upgrade was asked for")
			}
			// Informational (103 Early Hints, a stray 100): the final
			// response follows, as net/http's Transport treats them.
			continue
		}
		return res, nil
	}
}

// writeRequest writes a whole request to an upstream connection. On a
// raw plaintext connection it also waits for the response to begin (see
// rawio.Conn.WriteThenWait), which saves the read that would otherwise
// find nothing, a system call per request. Over TLS the request can be
// several writes, after any of which a wait could stall the exchange, so
// it is written plainly. The wait relies on the upstream sending nothing
// between a response and the next request: an upstream that closed the
// connection meanwhile resets it when the request arrives, which ends the
// wait, and one idle for peekAfter or more is checked first; one that only
// half-closed and still reads would leave the exchange to its timeout or
// the client's cancellation, where a read would have seen the end at once.
func writeRequest(c net.Conn, head []byte) (int, error) {
	if w, ok := c.(interface{ WriteThenWait([]byte) (int, error) }); ok {
		return w.WriteThenWait(head)
	}
	return c.Write(head)
}

// ContextCanceled interrupts the exchange's I/O: the request's context
// ended (the client went away, or the handler is done).
func (x *h1Exchange) ContextCanceled() {
	x.cancelled.Store(true)
	_ = x.hookConn.SetDeadline(aLongTimeAgo)
}

// err turns an I/O error caused by the cancellation hook back into the
// context's reason.
func (x *h1Exchange) err(err error) error {
	if x.cancelled.Load() {
		return context.Canceled
	}
	if x.deadline && isTimeout(err) {
		return context.DeadlineExceeded
	}
	return err
}

// bodyErr is err for a read of the response body.
func (x *h1Exchange) bodyErr(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return x.err(err)
}

// abort closes the exchange's connection: the exchange failed or was not
// read to its end.
func (x *h1Exchange) abort() {
	x.stopWatch()
	if x.pc != nil {
		x.pc.conn.Close()
		x.pc = nil
	}
}

// finish ends an exchange whose response body was read to EOF: the
// connection goes back to the pool unless either side said close or the
// exchange was cancelled meanwhile.
func (x *h1Exchange) finish(res *http.Response) {
	if !x.stopWatch() || res.Close {
		x.abort()
		return
	}
	if x.deadline {
		_ = x.pc.conn.SetDeadline(time.Time{})
	}
	x.pool.put(x.pc)
	x.pc = nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// headBufs are scratch buffers for serialized requests.
var headBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 4<<10)
	return &b
}}

func getBuf() *[]byte { return headBufs.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxBufferedBody+(16<<10) {
		return // an outsized head: let it go
	}
	*b = (*b)[:0]
	headBufs.Put(b)
}

// errBadHeader is a header the proxy will not put on the wire.
type errBadHeader string

func (e errBadHeader) Error() string { return "invalid header field " + strconv.Quote(string(e)) }

// appendRequestHead appends the HTTP/1.1 request line and header section of
// out, whose body is bodyLen bytes, to b. The hop-by-hop headers were
// removed by the caller; Host comes from out.Host (or the URL's host) and
// Content-Length from bodyLen, whatever the map says. Field names and
// values are checked as net/http's Transport checks them, so that nothing
// a filter put in the map can split the request.
func appendRequestHead(b []byte, out *http.Request, bodyLen int) ([]byte, error) {
	host := out.Host
	if host == "" {
		host = out.URL.Host
	}
	if !validFieldValue(host) || host == "" {
		return b, errBadHeader("Host")
	}
	target := out.URL.RequestURI()
	if !validTarget(target) || !validMethod(out.Method) {
		return b, errors.New("invalid request line")
	}
	b = append(b, out.Method...)
	b = append(b, ' ')
	b = append(b, target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)
	for k, vv := range out.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue
		}
		if !validFieldName(k) {
			return b, errBadHeader(k)
		}
		for _, v := range vv {
			if v == "" && k == "User-Agent" {
				continue // net/http's convention: an empty User-Agent is none
			}
			if !validFieldValue(v) {
				return b, errBadHeader(k)
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if bodyLen > 0 || out.Method == http.MethodPost || out.Method == http.MethodPut || out.Method == http.MethodPatch {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(bodyLen), 10)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...), nil
}

// validFieldName reports whether s is a token (RFC 9110 section 5.1).
func validFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validFieldValue reports whether s may be sent as a field value: no
// control characters but horizontal tab (so no CR, LF or NUL).
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func validMethod(s string) bool { return validFieldName(s) }

// validTarget reports whether s can be a request target: not empty, no
// whitespace or control characters.
func validTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}
