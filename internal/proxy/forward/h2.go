package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/h2frame"
	"github.com/weft-mesh/weft/internal/proxy/reqctx"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Client is weft's own HTTP/2 client for the sidecar hop, for the same
// requests as the HTTP/1.1 fast path (h1Eligible: no body, or a body of
// known length up to maxBufferedBody, no Expect, no request trailers),
// which are nearly all mesh traffic. Everything else (streamed uploads,
// gRPC, Expect: 100-continue) goes to net/http's HTTP/2 Transport, on
// connections of its own.
//
// Measured against net/http's client (BenchmarkForwardMTLS, profiles),
// what it saves per request is: the goroutine net/http starts for every
// request and the hand-offs to and from it; the separate write (and TLS
// record) of the request body after its HEADERS, here one write for
// HEADERS and DATA; and most WINDOW_UPDATE frames, since the receive
// windows are large and returned in big steps. The handler's goroutine
// encodes and writes its request and then waits for the response, which
// one read goroutine per connection demultiplexes.
//
// Connections are HTTP/2 over TLS with ALPN h2, HTTP2ConnsPerEndpoint per
// endpoint (more only at the server's stream limit), each carrying every
// concurrent request as a stream.
type h2Client struct {
	dial     func(ctx context.Context, addr string) (net.Conn, error)
	fallback *http.Transport
	idle     time.Duration

	mu      sync.Mutex
	conns   map[string][]*h2Conn
	dialing map[string]chan struct{} // closed when a dial in progress ends
	closed  bool
}

// The receive windows this client announces: large enough that a
// WINDOW_UPDATE is rare, bounded so that a stalled reader cannot make a
// sidecar buffer more than this per connection.
const (
	h2StreamWindow = 4 << 20
	h2ConnWindow   = 16 << 20
	// h2MaxHeaderList bounds the response headers accepted.
	h2MaxHeaderList = 1 << 20
	// h2DefaultMaxStreams applies until the server's SETTINGS arrive.
	h2DefaultMaxStreams = 100
	// h2EarlyBody is the most of a request body sent before the server's
	// first SETTINGS arrived. The protocol lets a client send 65,535
	// bytes on a stream until then, but servers such as net/http's
	// enforce the smaller window they announce from the start; none
	// announces less than a frame's 16 KiB in practice, and a body that
	// small still goes out with its headers in one write.
	h2EarlyBody = 16 << 10
)

func newH2Client(dial func(ctx context.Context, addr string) (net.Conn, error), fallback *http.Transport, idle time.Duration) *h2Client {
	return &h2Client{dial: dial, fallback: fallback, idle: idle, conns: make(map[string][]*h2Conn), dialing: make(map[string]chan struct{})}
}

// errH2Retry marks a request the server did not process (a GOAWAY below
// its stream, REFUSED_STREAM, a connection found dead before the request
// was written): it may be sent again, whatever its method.
type errH2Retry struct{ err error }

func (e errH2Retry) Error() string { return e.err.Error() }
func (e errH2Retry) Unwrap() error { return e.err }

// RoundTrip sends r over HTTP/2. r must use the https scheme.
func (c *h2Client) RoundTrip(r *http.Request) (*http.Response, error) {
	if !h1Eligible(r) {
		return c.fallback.RoundTrip(r)
	}
	var body []byte
	if n := int(r.ContentLength); n > 0 {
		// A buffer of the HTTP/1.1 path's pool: every write of the body
		// is done when RoundTrip returns, and nothing keeps it.
		bp := getBuf()
		defer putBuf(bp)
		*bp = slices.Grow((*bp)[:0], n+1)
		body = (*bp)[:n]
		if _, err := io.ReadFull(r.Body, body); err != nil {
			r.Body.Close()
			return nil, errDownstreamBody{err}
		}
		// The byte past Content-Length must be EOF; it is read into the
		// buffer's spare byte.
		if m, err := r.Body.Read((*bp)[n : n+1]); m > 0 || err != io.EOF {
			r.Body.Close()
			if err == nil || m > 0 {
				err = errors.New("request body longer than its Content-Length")
			}
			return nil, errDownstreamBody{err}
		}
	}
	if r.Body != nil {
		r.Body.Close()
	}
	// The header list stays on the stack unless it is long.
	var fields [24]hpack.HeaderField
	hdr, err := appendEncodableHeaders(fields[:0], r, len(body))
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	for attempt := 0; ; attempt++ {
		cc, err := c.conn(ctx, r.URL.Host)
		if err != nil {
			return nil, err
		}
		res, err := cc.roundTrip(ctx, r, hdr, body)
		if _, retry := errors.AsType[errH2Retry](err); retry && attempt < 3 && ctx.Err() == nil {
			continue
		}
		return res, err
	}
}

// CloseIdleConnections closes the connections that carry no request, and
// the fallback's.
func (c *h2Client) CloseIdleConnections() {
	c.fallback.CloseIdleConnections()
	c.mu.Lock()
	var idle []*h2Conn
	for _, conns := range c.conns {
		for _, cc := range conns {
			cc.mu.Lock()
			if cc.reserved == 0 {
				idle = append(idle, cc)
			}
			cc.mu.Unlock()
		}
	}
	c.mu.Unlock()
	for _, cc := range idle {
		cc.closeIfIdle()
	}
}

// close closes every idle connection and stops the client from keeping
// connections: for a transport that is no longer used.
func (c *h2Client) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.CloseIdleConnections()
}

// HTTP2ConnsPerEndpoint is how many HTTP/2 connections weft's client
// opens to one endpoint before the server's stream limit forces more;
// each carries every concurrent request as a stream, and a new one is
// opened only when all are busy. One: under make bench's 16 concurrent
// requests, 4 connections helped only while other programs loaded the
// machine, and on a quiet one cost CPU and throughput
// (docs/PERFORMANCE.md).
const HTTP2ConnsPerEndpoint = 1

// conn returns a connection to addr with a stream reserved on it: the
// least busy one, or a new one when every connection is busy and there
// are fewer than HTTP2ConnsPerEndpoint, or when none can take another
// stream.
func (c *h2Client) conn(ctx context.Context, addr string) (*h2Conn, error) {
	for {
		c.mu.Lock()
		conns := c.conns[addr]
		_, dialing := c.dialing[addr]
		if dialing || len(conns) >= HTTP2ConnsPerEndpoint || !allBusy(conns) {
			if cc := leastBusy(conns); cc != nil && cc.reserve() {
				c.mu.Unlock()
				return cc, nil
			}
			for _, cc := range conns {
				if cc.reserve() {
					c.mu.Unlock()
					return cc, nil
				}
			}
		}
		if wait, ok := c.dialing[addr]; ok {
			// One dial per endpoint at a time: a burst of first requests
			// shares the connection it makes.
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.dialing[addr] = done
		c.mu.Unlock()

		cc, err := c.newConn(ctx, addr)
		c.mu.Lock()
		delete(c.dialing, addr)
		close(done)
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		cc.reserve()
		if !c.closed {
			c.conns[addr] = append(c.conns[addr], cc)
		}
		c.mu.Unlock()
		return cc, nil
	}
}

// allBusy reports whether every connection carries a stream (true for
// none).
func allBusy(conns []*h2Conn) bool {
	for _, cc := range conns {
		if cc.load() == 0 {
			return false
		}
	}
	return true
}

// leastBusy returns the connection carrying the fewest streams.
func leastBusy(conns []*h2Conn) *h2Conn {
	var best *h2Conn
	bestN := 0
	for _, cc := range conns {
		if n := cc.load(); best == nil || n < bestN {
			best, bestN = cc, n
		}
	}
	return best
}

// remove forgets cc, which takes no new streams.
func (c *h2Client) remove(cc *h2Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conns := c.conns[cc.addr]
	for i, x := range conns {
		if x == cc {
			conns = append(conns[:i], conns[i+1:]...)
			break
		}
	}
	if len(conns) == 0 {
		delete(c.conns, cc.addr)
	} else {
		c.conns[cc.addr] = conns
	}
}

func (c *h2Client) newConn(ctx context.Context, addr string) (*h2Conn, error) {
	nc, err := c.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if cs, ok := nc.(interface{ NegotiatedProtocol() string }); ok && cs.NegotiatedProtocol() != "h2" {
		nc.Close()
		return nil, fmt.Errorf("upstream %s did not negotiate h2 (ALPN %q)", addr, cs.NegotiatedProtocol())
	}
	cc := &h2Conn{
		client:            c,
		addr:              addr,
		nc:                nc,
		streams:           make(map[uint32]*h2Stream),
		nextID:            1,
		maxStreams:        h2DefaultMaxStreams,
		sendWindow:        65535,
		initialSendWindow: 65535,
		maxFrame:          16384,
		peerMaxHeaderList: math.MaxUint32,
		recvWindow:        h2ConnWindow,
	}
	cc.cond = sync.NewCond(&cc.mu)
	cc.wq.Init(&cc.wmu)
	br := bufio.NewReaderSize(nc, 16<<10)
	cc.fr = http2.NewFramer(&cc.wq, br)
	cc.fr.MaxHeaderListSize = h2MaxHeaderList
	cc.fr.SetReuseFrames()
	cc.rd = h2frame.NewFrameReader(cc.fr, br)
	cc.henc = hpack.NewEncoder(&cc.hbuf)

	// The preface, our settings and the connection window, in one write.
	cc.wmu.Lock()
	_, err = cc.wq.Write([]byte(http2.ClientPreface))
	if err == nil {
		err = cc.fr.WriteSettings(
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: h2MaxHeaderList},
		)
	}
	if err == nil {
		err = cc.fr.WriteWindowUpdate(0, h2ConnWindow-65535)
	}
	if err == nil {
		err = cc.flushLocked()
	}
	cc.wmu.Unlock()
	if err != nil {
		nc.Close()
		return nil, err
	}
	cc.idleTimer = time.AfterFunc(c.idle, cc.closeIfIdle)
	cc.lastRead.Store(time.Now().UnixNano())
	cc.healthTimer = time.AfterFunc(h2PingAfter, cc.checkHealth)
	go cc.readLoop()
	return cc, nil
}

// h2Conn is one HTTP/2 connection. Lock order: wmu, then mu.
type h2Conn struct {
	client *h2Client
	addr   string
	nc     net.Conn
	rd     *h2frame.FrameReader // readLoop's: reads fr, decoding header blocks

	// wmu serializes writes: frames, and the header encoder whose state
	// must follow the order of the header blocks on the wire. The framer
	// writes into wq; flushLocked sends it (see h2frame.WriteQueue).
	wmu      sync.Mutex
	wq       h2frame.WriteQueue
	fr       *http2.Framer // its read side belongs to readLoop
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	maxFrame int // the server's SETTINGS_MAX_FRAME_SIZE

	mu                sync.Mutex
	cond              *sync.Cond // a send window grew, a stream ended or the connection failed
	streams           map[uint32]*h2Stream
	nextID            uint32
	reserved          int // streams reserved or open
	maxStreams        uint32
	sendWindow        int64 // connection send window
	initialSendWindow int64 // the server's SETTINGS_INITIAL_WINDOW_SIZE
	// peerSettings is set once the server's first SETTINGS arrived.
	// Until then a stream sends at most h2EarlyBody of DATA (see there).
	peerSettings      bool
	peerMaxHeaderList uint32
	recvWindow        int64 // connection receive window left
	unacked           int64 // bytes consumed, not yet returned with a WINDOW_UPDATE
	goAway            bool
	err               error // why the connection ended; nil while it works
	idleTimer         *time.Timer
	healthTimer       *time.Timer
	lastRead          atomic.Int64 // UnixNano of the last frame read
	pingSentAt        int64        // UnixNano; 0 when no health ping is out. Only checkHealth uses it.

	bufs  h2frame.BodyBufs  // under mu: body buffers of ended streams, for new ones
	canon map[string]string // readLoop's: lower-case wire name -> canonical key
}

// load is the number of streams reserved or open.
func (cc *h2Conn) load() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.reserved
}

// reserve takes a stream slot if the connection takes new streams.
func (cc *h2Conn) reserve() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.err != nil || cc.goAway || uint32(cc.reserved) >= cc.maxStreams || cc.nextID >= math.MaxInt32-2 {
		return false
	}
	cc.reserved++
	if cc.reserved == 1 {
		cc.idleTimer.Stop()
	}
	return true
}

// releaseLocked gives a stream slot back.
func (cc *h2Conn) releaseLocked() {
	cc.reserved--
	if cc.reserved == 0 {
		if cc.goAway && cc.err == nil {
			cc.err = errors.New("connection closed after GOAWAY")
			go cc.nc.Close()
		} else if cc.err == nil {
			cc.idleTimer.Reset(cc.client.idle)
		}
	}
	cc.cond.Broadcast()
}

// closeIfIdle closes the connection if it carries no stream.
func (cc *h2Conn) closeIfIdle() {
	cc.mu.Lock()
	if cc.reserved > 0 || cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = errors.New("idle connection closed")
	cc.mu.Unlock()
	cc.client.remove(cc)
	// A GOAWAY tells the server this was no failure; best effort.
	if cc.wmu.TryLock() {
		_ = cc.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_ = cc.fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		_ = cc.flushLocked()
		cc.wmu.Unlock()
	}
	cc.nc.Close()
}

// h2Stream is one request. Its fields are guarded by cc.mu.
type h2Stream struct {
	cc  *h2Conn
	id  uint32
	req *http.Request
	res *http.Response
	// notify gets a token when the stream has news: its head (headDone)
	// and then its body. One channel for both, as both waiters look at
	// the stream under cc.mu after each token: a channel less per request.
	notify chan struct{}

	// The response lives in its stream (res points to resp once its head
	// is in), as the stream lives as long as the response's body does:
	// one allocation for all of it.
	resp       http.Response
	body       h2Body    // resp.Body, when it has one
	headerVals [8]string // backs the values of a short response header

	sendWindow int64
	recvWindow int64
	unacked    int64 // body bytes read, not yet returned
	buf        []byte
	off        int
	got        int64 // body bytes received
	sentEnd    bool  // our END_STREAM (or RST_STREAM) is sent
	eof        bool  // the server's END_STREAM arrived
	err        error // the stream failed
	trailer    http.Header
	closed     bool // the body was closed by its reader, or never handed out
	done       bool // removed from cc.streams
	headDone   bool // res or err is set; the request waiting for it was woken

	// watch hangs the stream on its request's context, so that the head
	// and body waits need not select on ctx.Done(): on the servers'
	// request contexts (reqctx) that channel is an allocation made for
	// the first caller. Set and stopped under cc.mu.
	watch     reqctx.Watch
	cancelled atomic.Bool // the request's context ended; set by the hook
}

// ContextCanceled is the stream's reqctx hook: the request's context
// ended, so its waits stop.
func (s *h2Stream) ContextCanceled() {
	s.cancelled.Store(true)
	wake(s)
}

// stopWatchLocked takes the stream's hook off its request's context; cc.mu
// is held. It may be called more than once (a stopped Watch is zero).
func (s *h2Stream) stopWatchLocked() { s.watch.Stop() }

// finishHead wakes the request waiting for the response head, once.
func (s *h2Stream) finishHead() {
	if !s.headDone {
		s.headDone = true
		wake(s)
	}
}

// roundTrip sends one request on a reserved stream slot and waits for the
// response head.
func (cc *h2Conn) roundTrip(ctx context.Context, r *http.Request, hdr []hpack.HeaderField, body []byte) (*http.Response, error) {
	s := &h2Stream{cc: cc, req: r, notify: make(chan struct{}, 1), recvWindow: h2StreamWindow}
	cc.wmu.Lock()
	cc.wq.Room(len(body))
	cc.mu.Lock()
	if cc.err != nil || cc.goAway {
		err := cc.err
		if err == nil {
			err = errors.New("server sent GOAWAY")
		}
		cc.releaseLocked()
		cc.mu.Unlock()
		cc.wmu.Unlock()
		return nil, errH2Retry{err}
	}
	if size := headerListSize(hdr); size > uint64(cc.peerMaxHeaderList) {
		cc.releaseLocked()
		cc.mu.Unlock()
		cc.wmu.Unlock()
		return nil, fmt.Errorf("request headers of %d bytes exceed the server's limit of %d", size, cc.peerMaxHeaderList)
	}
	s.id = cc.nextID
	cc.nextID += 2
	s.sendWindow = cc.initialSendWindow
	cc.streams[s.id] = s
	s.watch = reqctx.WatchContext(ctx, s)
	// The whole body goes with the headers when the windows allow, which
	// with net/http's servers (1 MiB stream windows) is always.
	n := int64(len(body))
	inline := n > 0 && (cc.peerSettings || n <= h2EarlyBody) && n <= cc.sendWindow && n <= s.sendWindow
	if inline {
		cc.sendWindow -= n
		s.sendWindow -= n
		s.sentEnd = true
	} else if n == 0 {
		s.sentEnd = true
	}
	cc.mu.Unlock()

	err := cc.writeHeaders(s.id, hdr, n == 0)
	if err == nil && inline {
		err = cc.writeData(s.id, body, true)
	}
	if err == nil {
		err = cc.flushLocked()
	}
	cc.wmu.Unlock()
	if err != nil {
		cc.fail(err)
		cc.mu.Lock()
		if s.err != nil {
			err = s.err // marked for a retry when the request may go again
		}
		s.stopWatchLocked()
		cc.mu.Unlock()
		return nil, err
	}
	if n > 0 && !inline {
		if err := cc.sendBody(ctx, s, body); err != nil {
			cc.mu.Lock()
			s.stopWatchLocked()
			cc.mu.Unlock()
			return nil, err
		}
	}

	for {
		<-s.notify
		if s.cancelled.Load() {
			cc.cancel(s)
			return nil, ctx.Err()
		}
		cc.mu.Lock()
		if s.headDone {
			break // with cc.mu held
		}
		cc.mu.Unlock()
	}
	res, err := s.res, s.err
	if res == nil {
		s.closed = true
		cc.endLocked(s)
	}
	cc.mu.Unlock()
	if res == nil {
		return nil, err
	}
	return res, nil
}

// sendBody sends a body the windows did not take at once, as the server
// grants window.
func (cc *h2Conn) sendBody(ctx context.Context, s *h2Stream, body []byte) error {
	stop := context.AfterFunc(ctx, func() {
		cc.mu.Lock()
		cc.cond.Broadcast()
		cc.mu.Unlock()
	})
	defer stop()
	for len(body) > 0 {
		cc.mu.Lock()
		for (cc.sendWindow <= 0 || s.sendWindow <= 0 || !cc.peerSettings) && cc.err == nil && s.err == nil && !s.eof && ctx.Err() == nil {
			cc.cond.Wait()
		}
		if cc.err != nil || s.err != nil || s.eof || ctx.Err() != nil {
			// The response (or a reset) came first, or the request
			// ended: stop sending; the caller sees why.
			early := s.eof && s.err == nil && cc.err == nil
			cc.mu.Unlock()
			if early {
				// A complete response before the request: tell the
				// server we are not sending the rest.
				cc.reset(s, http2.ErrCodeCancel)
			}
			return nil
		}
		m := min(int64(len(body)), cc.sendWindow, s.sendWindow)
		cc.sendWindow -= m
		s.sendWindow -= m
		last := m == int64(len(body))
		if last {
			s.sentEnd = true
		}
		cc.mu.Unlock()
		cc.wmu.Lock()
		cc.wq.Room(int(m))
		err := cc.writeData(s.id, body[:m], last)
		if err == nil {
			err = cc.flushLocked()
		}
		cc.wmu.Unlock()
		if err != nil {
			cc.fail(err)
			cc.mu.Lock()
			if s.err != nil {
				err = s.err // a GOAWAY read first may have marked it for a retry
			}
			cc.mu.Unlock()
			return err
		}
		body = body[m:]
	}
	return nil
}

// flushLocked sends the queued frames (h2frame.WriteQueue.Flush: when
// another goroutine is writing, it sends them with its next write); wmu
// is held, released during the write and held again on return. A write
// that fails is reported to the goroutine that made it, which fails the
// connection; the others' streams fail with it.
func (cc *h2Conn) flushLocked() error { return cc.wq.Flush(cc.nc) }

// writeHeaders encodes hdr and writes HEADERS and any CONTINUATION
// frames. The caller holds wmu.
func (cc *h2Conn) writeHeaders(id uint32, hdr []hpack.HeaderField, endStream bool) error {
	cc.hbuf.Reset()
	for _, f := range hdr {
		if err := cc.henc.WriteField(f); err != nil {
			return err
		}
	}
	block := cc.hbuf.Bytes()
	first := block[:min(len(block), cc.maxFrame)]
	rest := block[len(first):]
	err := cc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(rest) == 0})
	for err == nil && len(rest) > 0 {
		frag := rest[:min(len(rest), cc.maxFrame)]
		rest = rest[len(frag):]
		err = cc.fr.WriteContinuation(id, len(rest) == 0, frag)
	}
	return err
}

// writeData writes body as DATA frames of at most the server's frame
// size. The caller holds wmu and has taken the window.
func (cc *h2Conn) writeData(id uint32, body []byte, endStream bool) error {
	for {
		m := min(len(body), cc.maxFrame)
		last := m == len(body)
		if err := cc.fr.WriteData(id, last && endStream, body[:m]); err != nil {
			return err
		}
		if last {
			return nil
		}
		body = body[m:]
	}
}

// writeControl writes one connection-level frame and flushes.
func (cc *h2Conn) writeControl(write func(fr *http2.Framer) error) {
	cc.wmu.Lock()
	err := write(cc.fr)
	if err == nil {
		err = cc.flushLocked()
	}
	cc.wmu.Unlock()
	if err != nil {
		cc.fail(err)
	}
}

// reset sends RST_STREAM for s and forgets it.
func (cc *h2Conn) reset(s *h2Stream, code http2.ErrCode) {
	cc.mu.Lock()
	send := !s.done && cc.err == nil
	s.sentEnd = true
	cc.endLocked(s)
	cc.mu.Unlock()
	if send {
		cc.writeControl(func(fr *http2.Framer) error { return fr.WriteRSTStream(s.id, code) })
	}
}

// cancel abandons s: its reader is gone (context ended) or never comes.
func (cc *h2Conn) cancel(s *h2Stream) {
	cc.mu.Lock()
	s.closed = true
	s.stopWatchLocked()
	if s.err == nil {
		s.err = context.Canceled
	}
	finished := s.eof
	cc.mu.Unlock()
	if finished {
		cc.mu.Lock()
		cc.endLocked(s)
		cc.mu.Unlock()
		return
	}
	cc.reset(s, http2.ErrCodeCancel)
}

// endLocked removes s from the connection once nothing more will be read
// from it, returning the window of its unread bytes.
func (cc *h2Conn) endLocked(s *h2Stream) {
	if s.done {
		// A reader that came after the stream ended is done with what
		// was left for it.
		cc.dropBufLocked(s)
		return
	}
	s.done = true
	s.stopWatchLocked()
	delete(cc.streams, s.id)
	cc.dropBufLocked(s)
	cc.releaseLocked()
	wake(s)
}

// dropBufLocked lets s's body buffer go, and returns the window of its
// unread bytes, unless its reader may still read them.
func (cc *h2Conn) dropBufLocked(s *h2Stream) {
	unread := len(s.buf) - s.off
	switch {
	case unread > 0 && !s.closed && s.err == nil:
		// A complete response whose reader is still to come (the
		// server answered before the request was all sent): the bytes
		// are its, and its reads return their window.
	case unread > 0 && cc.err != nil:
		// Left to a reader of what came before the connection failed.
	default:
		if unread > 0 {
			cc.unacked += int64(unread)
		}
		// Nothing more is read from the buffer (no DATA arrives for a
		// stream out of cc.streams): the next stream may have it.
		cc.bufs.Put(s.buf)
		s.buf, s.off = nil, 0
	}
}

// fail ends the connection: every stream in progress fails with err.
func (cc *h2Conn) fail(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = err
	for _, s := range cc.streams {
		if s.err == nil && !s.eof {
			s.err = fmt.Errorf("upstream HTTP/2 connection: %w", err)
			if s.res == nil && replayable(s.req) {
				// As net/http: an idempotent request whose response never
				// started may go again on another connection.
				s.err = errH2Retry{s.err}
			}
		}
		if s.res == nil {
			s.finishHead()
		}
		wake(s)
	}
	cc.cond.Broadcast()
	cc.idleTimer.Stop()
	cc.healthTimer.Stop()
	cc.mu.Unlock()
	cc.client.remove(cc)
	cc.nc.Close()
}

func wake(s *h2Stream) {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// readLoop reads every frame the server sends and hands each to its
// stream, until the connection fails.
func (cc *h2Conn) readLoop() {
	defer cc.healthTimer.Stop()
	for {
		f, err := cc.rd.ReadFrame()
		cc.lastRead.Store(time.Now().UnixNano())
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				// Malformed headers of one stream; the header
				// decoder's state is intact.
				cc.streamError(se.StreamID, se)
				continue
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			cc.fail(err)
			return
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			cc.onHeaders(f)
		case *http2.DataFrame:
			err = cc.onData(f)
		case *http2.RSTStreamFrame:
			cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
		case *http2.SettingsFrame:
			err = cc.onSettings(f)
		case *http2.WindowUpdateFrame:
			err = cc.onWindowUpdate(f)
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				cc.writeControl(func(fr *http2.Framer) error { return fr.WritePing(true, data) })
			}
		case *http2.GoAwayFrame:
			cc.onGoAway(f)
		case *http2.PushPromiseFrame:
			err = http2.ConnectionError(http2.ErrCodeProtocol) // push is disabled in our SETTINGS
		}
		if err != nil {
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				cc.writeControl(func(fr *http2.Framer) error { return fr.WriteGoAway(0, http2.ErrCode(ce), nil) })
			}
			cc.fail(err)
			return
		}
	}
}

// streamError fails stream id with err (a reset from the server, or
// headers we cannot accept) and resets it if the server did not.
func (cc *h2Conn) streamError(id uint32, err http2.StreamError) {
	cc.mu.Lock()
	s := cc.streams[id]
	if s == nil {
		cc.mu.Unlock()
		return
	}
	if err.Code == http2.ErrCodeNo && err.Cause == nil && s.eof && s.err == nil {
		// The server answered in full and wants no more of the request
		// (RFC 9113 8.1): the response stands, and the stream is closed
		// for sending too.
		s.sentEnd = true
		cc.endLocked(s)
		cc.cond.Broadcast() // a sender waiting for window stops
		cc.mu.Unlock()
		return
	}
	retry := s.res == nil && err.Code == http2.ErrCodeRefusedStream
	if retry {
		s.err = errH2Retry{err}
	} else {
		s.err = err
	}
	if s.res == nil {
		s.finishHead()
	}
	wake(s)
	cc.mu.Unlock()
	if err.Cause != nil {
		// Ours to reset: the server thinks the stream is fine.
		cc.reset(s, err.Code)
		return
	}
	cc.mu.Lock()
	s.sentEnd = true
	if s.closed {
		cc.endLocked(s)
	}
	cc.mu.Unlock()
}

func (cc *h2Conn) onHeaders(f *http2.MetaHeadersFrame) {
	cc.mu.Lock()
	s := cc.streams[f.StreamID]
	if s == nil || s.err != nil || s.eof {
		cc.mu.Unlock()
		return // a stream we reset or that failed; the decoder has read its block
	}
	if f.Truncated {
		cc.mu.Unlock()
		cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: errors.New("response headers too large")})
		return
	}
	if s.res != nil {
		// Trailers: they end the stream and carry no pseudo-header.
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
			cc.mu.Unlock()
			cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: errors.New("malformed trailers")})
			return
		}
		s.trailer = cc.headerOf(f.RegularFields(), nil)
		cc.endOfBodyLocked(s)
		cc.mu.Unlock()
		return
	}
	status := f.PseudoValue("status")
	code, err := strconv.Atoi(status)
	if err != nil || len(status) != 3 || code < 100 {
		cc.mu.Unlock()
		cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: fmt.Errorf("malformed :status %q", status)})
		return
	}
	if code < 200 {
		cc.mu.Unlock()
		if code == http.StatusSwitchingProtocols || f.StreamEnded() {
			cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: fmt.Errorf("unexpected %d response", code)})
		}
		// Informational (103 Early Hints, a stray 100): the final
		// response follows.
		return
	}
	h := cc.headerOf(f.RegularFields(), s.headerVals[:])
	res := &s.resp
	*res = http.Response{
		Status:        statusLine(code, status),
		StatusCode:    code,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        h,
		ContentLength: -1,
		Request:       s.req,
	}
	if cl := h["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 63)
		for _, v := range cl[1:] {
			if v != cl[0] {
				err = errors.New("conflicting")
			}
		}
		if err != nil || n < 0 {
			cc.mu.Unlock()
			cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: fmt.Errorf("malformed content-length %q", cl)})
			return
		}
		res.ContentLength = n
	}
	for _, v := range h["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				if res.Trailer == nil {
					res.Trailer = make(http.Header)
				}
				res.Trailer[canonicalHeader(k)] = nil
			}
		}
	}
	if f.StreamEnded() && res.ContentLength > 0 && !bodiless(s.req, code) {
		cc.mu.Unlock()
		cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: errors.New("response ended before its content-length")})
		return
	}
	s.res = res
	if f.StreamEnded() {
		if res.ContentLength < 0 {
			res.ContentLength = 0
		}
		s.eof = true
		res.Body = http.NoBody
		s.closed = true
		s.finishHead()
		cc.endLocked(s)
		cc.mu.Unlock()
		return
	}
	s.body.s = s
	res.Body = &s.body
	s.finishHead()
	cc.mu.Unlock()
}

// endOfBodyLocked marks the server's END_STREAM on s, checking the body
// against its content-length.
func (cc *h2Conn) endOfBodyLocked(s *h2Stream) {
	if cl := s.res.ContentLength; cl >= 0 && s.got != cl && !bodiless(s.req, s.res.StatusCode) {
		s.err = fmt.Errorf("upstream body of %d bytes, content-length %d", s.got, cl)
	}
	s.eof = true
	wake(s)
	cc.cond.Broadcast() // a sender waiting for window stops
	if s.closed {
		cc.endLocked(s)
	}
}

func (cc *h2Conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included: it counts against the windows
	var update int64
	cc.mu.Lock()
	cc.recvWindow -= n
	if cc.recvWindow < 0 {
		cc.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	s := cc.streams[f.StreamID]
	data := f.Data()
	switch {
	case s == nil || s.closed || s.err != nil || s.eof:
		// A stream we reset or whose reader left: return the window.
		cc.unacked += n
	case s.res == nil:
		cc.unacked += n
		cc.mu.Unlock()
		cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol, Cause: errors.New("DATA before the response headers")})
		return cc.windowUpdate(0)
	default:
		s.recvWindow -= n
		if s.recvWindow < 0 {
			cc.unacked += n
			cc.mu.Unlock()
			cc.streamError(f.StreamID, http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl, Cause: errors.New("stream window exceeded")})
			return cc.windowUpdate(0)
		}
		cc.unacked += n - int64(len(data)) // padding
		if s.buf == nil {
			s.buf = cc.bufs.Get()
		}
		s.buf = append(s.buf, data...)
		s.got += int64(len(data))
		if cl := s.res.ContentLength; cl >= 0 && s.got > cl {
			s.err = fmt.Errorf("upstream body longer than its content-length %d", cl)
		}
		wake(s)
		if f.StreamEnded() {
			cc.endOfBodyLocked(s)
		}
	}
	if cc.unacked >= h2ConnWindow/2 {
		update, cc.unacked = cc.unacked, 0
		cc.recvWindow += update
	}
	cc.mu.Unlock()
	return cc.windowUpdate(update)
}

// windowUpdate returns n bytes of connection window to the server.
func (cc *h2Conn) windowUpdate(n int64) error {
	if n > 0 {
		cc.writeControl(func(fr *http2.Framer) error { return fr.WriteWindowUpdate(0, uint32(n)) })
	}
	return nil
}

func (cc *h2Conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	var tableSize uint32
	var tableSet bool
	var maxFrame int
	cc.mu.Lock()
	cc.peerSettings = true
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingMaxConcurrentStreams:
			cc.maxStreams = st.Val
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - cc.initialSendWindow
			cc.initialSendWindow = int64(st.Val)
			for _, s := range cc.streams {
				s.sendWindow += delta
				if s.sendWindow > math.MaxInt32 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			maxFrame = int(st.Val)
		case http2.SettingMaxHeaderListSize:
			cc.peerMaxHeaderList = st.Val
		case http2.SettingHeaderTableSize:
			tableSize, tableSet = st.Val, true
		}
		return nil
	})
	cc.cond.Broadcast()
	cc.mu.Unlock()
	if err != nil {
		return err
	}
	cc.writeControl(func(fr *http2.Framer) error {
		if tableSet {
			cc.henc.SetMaxDynamicTableSizeLimit(tableSize)
		}
		if maxFrame > 0 {
			cc.maxFrame = maxFrame
		}
		return fr.WriteSettingsAck()
	})
	return nil
}

func (cc *h2Conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if f.StreamID == 0 {
		cc.sendWindow += int64(f.Increment)
		if cc.sendWindow > math.MaxInt32 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else if s := cc.streams[f.StreamID]; s != nil {
		s.sendWindow += int64(f.Increment)
	}
	cc.cond.Broadcast()
	return nil
}

func (cc *h2Conn) onGoAway(f *http2.GoAwayFrame) {
	cc.mu.Lock()
	cc.goAway = true
	for id, s := range cc.streams {
		if id > f.LastStreamID && s.res == nil {
			// Never processed: safe to send again elsewhere.
			s.err = errH2Retry{fmt.Errorf("server sent GOAWAY (%v) before processing the request", f.ErrCode)}
			s.finishHead()
			s.closed = true
			cc.endLocked(s)
		}
	}
	if cc.reserved == 0 && cc.err == nil {
		cc.err = errors.New("connection closed after GOAWAY")
		go cc.nc.Close()
	}
	cc.cond.Broadcast()
	cc.mu.Unlock()
	cc.client.remove(cc)
}

// Health checks of a connection, as net/http's HTTP2Config SendPingTimeout
// and PingTimeout: a connection from which nothing was read for
// h2PingAfter gets a PING, and is closed if nothing comes back within
// h2PingTimeout, so requests do not queue on a peer that vanished
// without closing its connections.
var (
	h2PingAfter   = 30 * time.Second
	h2PingTimeout = 10 * time.Second
)

// checkHealth runs from healthTimer.
func (cc *h2Conn) checkHealth() {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.mu.Unlock()
	now := time.Now().UnixNano()
	last := cc.lastRead.Load()
	switch {
	case cc.pingSentAt != 0 && last < cc.pingSentAt:
		cc.fail(errors.New("no answer to a health PING"))
		return
	case now-last < int64(h2PingAfter):
		cc.pingSentAt = 0
		cc.healthTimer.Reset(time.Duration(int64(h2PingAfter) - (now - last)))
		return
	}
	cc.pingSentAt = now
	cc.writeControl(func(fr *http2.Framer) error { return fr.WritePing(false, [8]byte{'w', 'e', 'f', 't'}) })
	cc.healthTimer.Reset(h2PingTimeout)
}

// h2Body is a response body: the bytes the read loop has buffered for
// its stream.
type h2Body struct{ s *h2Stream }

func (b *h2Body) Read(p []byte) (int, error) {
	s := b.s
	cc := s.cc
	for {
		cc.mu.Lock()
		if s.off < len(s.buf) {
			n := copy(p, s.buf[s.off:])
			s.off += n
			if s.off == len(s.buf) {
				s.buf, s.off = s.buf[:0], 0
			}
			// Return the window in big steps: one WINDOW_UPDATE per half
			// window read.
			s.unacked += int64(n)
			cc.unacked += int64(n)
			var streamUpdate, connUpdate int64
			if s.unacked >= h2StreamWindow/2 && !s.eof && !s.done {
				streamUpdate, s.unacked = s.unacked, 0
				s.recvWindow += streamUpdate
			}
			if cc.unacked >= h2ConnWindow/2 && cc.err == nil {
				connUpdate, cc.unacked = cc.unacked, 0
				cc.recvWindow += connUpdate
			}
			cc.mu.Unlock()
			if streamUpdate > 0 || connUpdate > 0 {
				cc.writeControl(func(fr *http2.Framer) error {
					var err error
					if connUpdate > 0 {
						err = fr.WriteWindowUpdate(0, uint32(connUpdate))
					}
					if err == nil && streamUpdate > 0 {
						err = fr.WriteWindowUpdate(s.id, uint32(streamUpdate))
					}
					return err
				})
			}
			return n, nil
		}
		if s.err != nil {
			err := s.err
			cc.mu.Unlock()
			return 0, err
		}
		if s.eof {
			trailer := s.trailer
			cc.mu.Unlock()
			// Filled here, by the reader, as net/http does: the reader
			// owns res.Trailer.
			if len(trailer) > 0 {
				if s.res.Trailer == nil {
					s.res.Trailer = make(http.Header, len(trailer))
				}
				for k, v := range trailer {
					s.res.Trailer[k] = v
				}
			}
			return 0, io.EOF
		}
		cc.mu.Unlock()
		<-s.notify
		if s.cancelled.Load() {
			cc.cancel(s)
			return 0, s.req.Context().Err()
		}
	}
}

// Close abandons the rest of the body: the stream is reset unless the
// server already ended it.
func (b *h2Body) Close() error {
	s := b.s
	cc := s.cc
	cc.mu.Lock()
	if s.closed {
		cc.mu.Unlock()
		return nil
	}
	s.closed = true
	finished := s.eof || s.err != nil
	if finished {
		cc.endLocked(s)
	}
	cc.mu.Unlock()
	if !finished {
		cc.reset(s, http2.ErrCodeCancel)
	}
	return nil
}

// appendEncodableHeaders checks r's header and appends the HTTP/2 header
// list to hdr: pseudo-headers first, names lower-cased,
// connection-specific headers dropped, as net/http's HTTP/2 client sends
// them.
func appendEncodableHeaders(hdr []hpack.HeaderField, r *http.Request, bodyLen int) ([]hpack.HeaderField, error) {
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return nil, fmt.Errorf("invalid Host %q", host)
	}
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	if !validMethod(method) {
		return nil, fmt.Errorf("invalid method %q", method)
	}
	path := r.URL.RequestURI()
	if path == "" || (path[0] != '/' && path != "*") {
		return nil, fmt.Errorf("invalid request target %q", path)
	}
	hdr = append(hdr,
		hpack.HeaderField{Name: ":authority", Value: host},
		hpack.HeaderField{Name: ":method", Value: method},
		hpack.HeaderField{Name: ":path", Value: path},
		hpack.HeaderField{Name: ":scheme", Value: "https"},
	)
	for k, vv := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("invalid header name %q", k)
		}
		name := lowerHeader(k)
		switch name {
		case "host", "content-length", "connection", "proxy-connection", "transfer-encoding", "upgrade", "keep-alive":
			continue
		case "user-agent":
			// An empty value means "send none", as for net/http.
			if len(vv) == 0 || vv[0] == "" {
				continue
			}
			vv = vv[:1]
		case "te":
			// Only "trailers" may cross HTTP/2.
			if httpguts.HeaderValuesContainsToken(vv, "trailers") {
				hdr = append(hdr, hpack.HeaderField{Name: "te", Value: "trailers"})
			}
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("invalid value for header %q", k)
			}
			hdr = append(hdr, hpack.HeaderField{Name: name, Value: v})
		}
	}
	if bodyLen > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		hdr = append(hdr, hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(bodyLen)})
	}
	return hdr, nil
}

// statusLines are the Status of responses with the codes net/http names.
var statusLines = func() map[int]string {
	m := make(map[int]string)
	for code := 100; code < 600; code++ {
		if text := http.StatusText(code); text != "" {
			m[code] = strconv.Itoa(code) + " " + text
		}
	}
	return m
}()

// statusLine returns a response's Status, as net/http's client sets it,
// from its :status (three digits) and their value.
func statusLine(code int, status string) string {
	if line, ok := statusLines[code]; ok {
		return line
	}
	return status + " " // no text, as net/http
}

// headerOf returns fields as an http.Header (see h2frame.Header), with
// the connection's canonical keys. Only readLoop calls it.
func (cc *h2Conn) headerOf(fields []hpack.HeaderField, vals []string) http.Header {
	return h2frame.Header(fields, vals, cc.canonicalKey)
}

// canonicalKey returns the canonical key of a lower-case wire name, and
// remembers the ones it had to compute, as the server's connections do:
// a response's uncommon names are usually the previous response's too.
// Only readLoop calls it.
func (cc *h2Conn) canonicalKey(name string) string {
	if k, ok := commonHeaders[name]; ok && k[0] < 'a' {
		return k
	}
	if k, ok := cc.canon[name]; ok {
		return k
	}
	k := http.CanonicalHeaderKey(name)
	if len(cc.canon) < 64 && len(name) < 64 {
		if cc.canon == nil {
			cc.canon = make(map[string]string)
		}
		cc.canon[name] = k
	}
	return k
}

// bodiless reports whether a response to r with status code has no body
// whatever its content-length says.
func bodiless(r *http.Request, code int) bool {
	return r.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
}

// replayable reports whether r may be sent again after a connection
// failed under it, net/http's rule: an idempotent method or an
// Idempotency-Key (the body is buffered, so it can be).
func replayable(r *http.Request) bool {
	switch r.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}

func headerListSize(hdr []hpack.HeaderField) uint64 {
	var n uint64
	for _, f := range hdr {
		n += uint64(f.Size())
	}
	return n
}

// commonHeaders maps the usual header names between their canonical and
// lower-case forms without allocating.
var commonHeaders = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Accept-Ranges", "Authorization", "Cache-Control",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "Cookie", "Date", "Etag",
		"Expires", "Grpc-Message", "Grpc-Status", "Last-Modified", "Location", "Server", "Set-Cookie",
		"Trailer", "Traceparent", "Tracestate", "User-Agent", "Vary", "X-B3-Sampled", "X-B3-Spanid",
		"X-B3-Traceid", "X-Content-Type-Options", "X-Forwarded-Client-Cert", "X-Forwarded-For",
		"X-Forwarded-Proto", "X-Request-Id",
	} {
		l := strings.ToLower(k)
		m[k], m[l] = l, k
	}
	return m
}()

func lowerHeader(k string) string {
	if l, ok := commonHeaders[k]; ok && l[0] >= 'a' {
		return l
	}
	return strings.ToLower(k)
}

func canonicalHeader(k string) string {
	if c, ok := commonHeaders[k]; ok && c[0] < 'a' {
		return c
	}
	return http.CanonicalHeaderKey(k)
}
