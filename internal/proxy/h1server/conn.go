package h1server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/framing"
	"github.com/weft-mesh/weft/internal/proxy/reqctx"
)

// aLongTimeAgo is a deadline in the past: setting it makes a blocked read
// return at once.
var aLongTimeAgo = time.Unix(1, 0)

var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}

// outBufSize is the write buffer a connection starts with; responses are
// written when it fills, and a large body write goes out with it in one
// writev instead of being copied in.
const outBufSize = 4 << 10

var outBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, outBufSize)
	return &b
}}

// conn is one connection served by the loop. Everything but the fields
// under wmu and mu belongs to the connection's goroutine.
type conn struct {
	s      *Server
	ctx    context.Context
	nc     net.Conn
	cr     connReader
	br     *bufio.Reader
	remote string
	out    []byte
	outp   *[]byte
	pre    []byte // body written before its framing is decided
	bufs   [2][]byte
	hdr    http.Header // the response header map, reused
	resp   response    // the response writer, reused: see serveRequest
	h      head
	tmpl   http.Request // scratch for building each request
	rdl    time.Time    // the read deadline in force
	werr   error        // the first write error; the connection is done

	lastPost bool

	mu     sync.Mutex // guards idle and closed, against Shutdown
	idle   bool
	closed bool

	// The client-gone watch; see startWatch.
	watch    *time.Timer
	wmu      sync.Mutex
	wstate   watchState
	bodyDone bool
	aborting bool
	gone     bool
	wdone    chan struct{}
	reqCtx   *reqctx.Context
}

type watchState uint8

const (
	watchOff     watchState = iota
	watchArmed              // the timer runs
	watchWanted             // the timer fired before the body was read
	watchReading            // a goroutine reads the connection
)

func newConn(s *Server, ctx context.Context, nc net.Conn) *conn {
	c := &conn{s: s, ctx: ctx, nc: nc, remote: nc.RemoteAddr().String()}
	c.cr.c = c
	c.br = readers.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.outp = outBufs.Get().(*[]byte)
	c.out = (*c.outp)[:0]
	c.hdr = make(http.Header)
	return c
}

// connReader reads the socket, after the byte a watch read, if any.
type connReader struct {
	c       *conn
	hasByte bool
	byteBuf [1]byte
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.hasByte {
		r.hasByte = false
		p[0] = r.byteBuf[0]
		return 1, nil
	}
	return r.c.nc.Read(p)
}

// release returns the pooled buffers.
func (c *conn) release() {
	if c.br != nil {
		c.br.Reset(nil)
		readers.Put(c.br)
		c.br = nil
	}
	if c.outp != nil && cap(c.out) <= 64<<10 {
		*c.outp = c.out[:0]
		outBufs.Put(c.outp)
	}
	c.outp, c.out = nil, nil
	if c.watch != nil {
		c.watch.Stop()
	}
}

// setIdle records whether the connection waits for a request's first
// byte, when Shutdown may close it. It reports false when the connection
// must end: it was closed, or the server shuts down.
func (c *conn) setIdle(idle bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.idle = idle
	return !c.s.shutdown.Load()
}

// closeIfIdle closes the connection if it waits for a request. s.mu is
// held.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle && !c.closed {
		c.closed = true
		c.nc.Close()
	}
}

func (c *conn) serve() {
	handedOff := false
	defer func() {
		if !handedOff {
			c.mu.Lock()
			c.closed = true
			c.mu.Unlock()
			c.nc.Close()
		}
		c.release()
	}()
	// Between requests net/http waits for four bytes, and closes the
	// connection without a word if they do not come; before the first,
	// it reads the head at once. The same here, so that a few stray
	// bytes after a response meet the same fate.
	want := 1
	for ; ; want = 4 {
		if c.br.Buffered() < want {
			if !c.setIdle(true) {
				return
			}
			c.idleDeadline()
			_, err := c.br.Peek(want)
			if !c.setIdle(false) || err != nil {
				return
			}
		} else if c.s.shuttingDown() {
			return
		}
		if c.lastPost {
			// As net/http: up to four CR or LF bytes after a POST's body
			// are skipped (RFC 9112 section 2.2).
			peek, _ := c.br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			_, _ = c.br.Discard(n)
			c.lastPost = false
		}
		b, err := c.readHead()
		if errors.Is(err, errHandedOff) || err == nil && !parseHead(b, &c.h) {
			c.handOff()
			handedOff = true
			return
		}
		if err != nil {
			return
		}
		_, _ = c.br.Discard(len(b))
		c.lastPost = c.h.method == http.MethodPost
		if !c.serveRequest() {
			return
		}
	}
}

// idleDeadline sets the idle timeout as the read deadline, unless the one
// in force is less than a second older: one system call per second and
// connection at most, rather than one per request.
func (c *conn) idleDeadline() {
	if c.s.IdleTimeout <= 0 {
		if !c.rdl.IsZero() {
			c.rdl = time.Time{}
			_ = c.nc.SetReadDeadline(c.rdl)
		}
		return
	}
	want := time.Now().Add(c.s.IdleTimeout)
	if want.Sub(c.rdl) >= time.Second {
		c.rdl = want
		_ = c.nc.SetReadDeadline(want)
	}
}

// readHead returns the next whole head, peeked but not consumed. It
// returns errHandedOff for a head longer than the read buffer or one cut
// short by the client's end of stream (net/http answers those), and any
// other read error as is (the connection just closes, as in net/http).
func (c *conn) readHead() ([]byte, error) {
	timed := false
	defer func() {
		if timed {
			// The head deadline is for the head only.
			c.rdl = time.Time{}
			c.idleDeadline()
		}
	}()
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		// Lines may end in a bare LF here, as net/textproto reads them, so
		// that a head net/http would take is never waited on forever;
		// parseHead then hands anything but CRLF lines to net/http.
		if n := framing.HeadEnd(buf, 0); n >= 0 {
			return buf[:n], nil
		}
		if len(buf) == c.br.Size() {
			return nil, errHandedOff
		}
		if !timed && c.s.ReadHeaderTimeout > 0 {
			timed = true
			c.rdl = time.Now().Add(c.s.ReadHeaderTimeout)
			_ = c.nc.SetReadDeadline(c.rdl)
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			if err == io.EOF && c.br.Buffered() > 0 {
				return nil, errHandedOff
			}
			return nil, err
		}
	}
}

// handOff gives the connection, with what the loop read and did not use,
// to the Server's HandOff.
func (c *conn) handOff() {
	pending, _ := c.br.Peek(c.br.Buffered())
	rc := &replayConn{Conn: c.nc, pending: append([]byte(nil), pending...), r: &c.cr}
	c.rdl = time.Time{}
	_ = c.nc.SetReadDeadline(c.rdl)
	c.s.HandOff(c.ctx, rc)
}

// replayConn reads the bytes the loop had read, then the connection.
type replayConn struct {
	net.Conn
	pending []byte
	r       io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.r.Read(p)
}

// CloseWrite half-closes the socket, when it can.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// serveRequest runs the handler for the parsed head c.h and writes its
// response. It reports whether the connection may serve another request.
func (c *conn) serveRequest() (keep bool) {
	h := &c.h
	// The response writer is the connection's, reset for each request: a
	// handler must not use it once it has returned (http.ResponseWriter's
	// contract), as the header map reused before it already assumed. What
	// a handler may hand to goroutines that outlive it (the request, its
	// URL, context and body) is a new allocation each time. The context
	// ends when the handler returns, as net/http's does.
	w := &c.resp
	*w = response{c: c, header: c.hdr, contentLength: -1,
		isHEAD: h.method == http.MethodHead, proto11: h.proto11, wantsClose: h.wantsClose, wants10KeepAlive: h.keepAlive10}
	rq := new(request)
	ctx := &rq.ctx
	ctx.Init(c.ctx)
	defer ctx.Cancel(nil)
	var b *body
	var rb io.ReadCloser = http.NoBody
	if h.contentLength > 0 {
		rq.body = body{c: c, n: h.contentLength}
		b = &rq.body
		rb = b
	}
	w.body = b
	rq.url = h.url
	c.tmpl = http.Request{
		Method:        h.method,
		URL:           &rq.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h.header,
		Body:          rb,
		ContentLength: h.contentLength,
		Close:         h.close,
		Host:          h.host,
		RemoteAddr:    c.remote,
		RequestURI:    h.target,
	}
	if !h.proto11 {
		c.tmpl.Proto, c.tmpl.ProtoMinor = "HTTP/1.0", 0
	}
	// WithContext is inlined and its copy stays on the stack: the request
	// lives in rq.
	rq.req = *c.tmpl.WithContext(ctx)
	c.tmpl = http.Request{}
	req := &rq.req
	defer clear(c.hdr)
	defer clear(h.header) // kept for the next request's head; see parseHead

	c.armWatch(ctx, b == nil)
	if !c.runHandler(w, req) {
		c.disarmWatch()
		return false
	}
	c.disarmWatch()
	w.finish()
	if c.werr != nil {
		return false
	}
	if b != nil {
		b.mu.Lock()
		left := b.n
		b.closed = true
		b.mu.Unlock()
		if left > 0 {
			if left > maxDrain || w.closeAfter {
				return false
			}
			if _, err := c.br.Discard(int(left)); err != nil {
				return false
			}
		}
	}
	return !w.closeAfter && !c.gone
}

// runHandler calls the handler, and recovers and logs a panic in it as
// net/http does. It reports false if the handler panicked: the connection
// is then closed without a response (or with the part already sent).
func (c *conn) runHandler(w *response, req *http.Request) (ok bool) {
	defer func() {
		if err := recover(); err != nil {
			ok = false
			if err != http.ErrAbortHandler {
				const size = 64 << 10
				buf := make([]byte, size)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.logger().Debug("panic serving", "remote", c.remote, "err", fmt.Sprint(err), "stack", string(buf))
			}
		}
	}()
	c.s.Handler.ServeHTTP(w, req)
	return true
}

// armWatch starts the timer after which the connection is watched for the
// client going away while the handler runs.
func (c *conn) armWatch(ctx *reqctx.Context, bodyDone bool) {
	c.wmu.Lock()
	c.wstate = watchArmed
	c.bodyDone = bodyDone
	c.reqCtx = ctx
	c.wmu.Unlock()
	if c.watch == nil {
		c.watch = time.AfterFunc(WatchDelay, c.watchFired)
	} else {
		c.watch.Reset(WatchDelay)
	}
}

// watchFired runs on the timer's goroutine when a request has run for
// WatchDelay. A read of the connection would take the request body's
// bytes, so it starts only once the body has been read.
func (c *conn) watchFired() {
	c.wmu.Lock()
	if c.wstate != watchArmed {
		c.wmu.Unlock()
		return
	}
	if !c.bodyDone {
		c.wstate = watchWanted
		c.wmu.Unlock()
		return
	}
	if !c.startReadLocked() {
		c.wmu.Unlock()
		return
	}
	c.wmu.Unlock()
	c.watchRead()
}

// bodyRead is called when the request body has been read to its end.
func (c *conn) bodyRead() {
	c.wmu.Lock()
	c.bodyDone = true
	start := c.wstate == watchWanted && c.startReadLocked()
	c.wmu.Unlock()
	if start {
		go c.watchRead()
	}
}

// startReadLocked prepares a watch read, unless the next request is
// already buffered (the client is there: nothing to watch for).
func (c *conn) startReadLocked() bool {
	if c.br.Buffered() > 0 || c.cr.hasByte {
		c.wstate = watchOff
		return false
	}
	c.wstate = watchReading
	c.wdone = make(chan struct{})
	return true
}

// watchRead reads one byte from the idle connection: a byte is the next
// pipelined request's, kept for the loop; an error other than the one
// disarmWatch causes means the client is gone, and cancels the request.
func (c *conn) watchRead() {
	n, err := c.nc.Read(c.cr.byteBuf[:])
	c.wmu.Lock()
	if n == 1 {
		c.cr.hasByte = true
	}
	if err != nil && n == 0 && !c.aborting {
		c.gone = true
		c.reqCtx.Cancel(nil)
	}
	c.wstate = watchOff
	close(c.wdone)
	c.wmu.Unlock()
}

// disarmWatch stops the timer and any watch read, after the handler.
func (c *conn) disarmWatch() {
	c.watch.Stop()
	c.wmu.Lock()
	st := c.wstate
	c.wstate = watchOff
	c.reqCtx = nil
	if st != watchReading {
		c.wmu.Unlock()
		return
	}
	c.aborting = true
	done := c.wdone
	c.wmu.Unlock()
	_ = c.nc.SetReadDeadline(aLongTimeAgo)
	<-done
	_ = c.nc.SetReadDeadline(c.rdl)
	c.wmu.Lock()
	c.aborting = false
	c.wmu.Unlock()
}

// body is a request body of known length, read from the connection's
// buffer. It may be read from another goroutine than the handler's (a
// transport streaming it upstream), even after the handler returned,
// when reads fail.
type body struct {
	mu     sync.Mutex
	c      *conn
	n      int64 // bytes left
	closed bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.n == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.c.br.Read(p)
	b.n -= int64(n)
	if b.n == 0 {
		b.c.bodyRead()
		return n, nil
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close stops reads; the loop discards what is left after the handler.
func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// remaining is how much of the body is unread.
func (b *body) remaining() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}
