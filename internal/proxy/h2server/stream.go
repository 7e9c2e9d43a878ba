package h2server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/weft-mesh/weft/internal/proxy/h2frame"
	"github.com/weft-mesh/weft/internal/proxy/reqctx"
	"github.com/weft-mesh/weft/internal/proxy/requri"
)

type streamState uint8

const (
	stateOpen             streamState = iota
	stateHalfClosedRemote             // the request ended (END_STREAM received)
)

// stream is one request and its response. The fields under "mu" are
// guarded by the connection's mu; the rest belong to the handler
// goroutine once it runs (the reader fills them before).
type stream struct {
	c  *conn
	id uint32
	// ctx is the request's context, cancelled when the stream is closed
	// or its handler returns, or when ServeConn's context ends (see
	// conn.streamParent).
	ctx reqctx.Context

	// mu
	state       streamState
	reset       bool // RST_STREAM sent or received: nothing more is sent
	removed     bool // no longer in c.streams
	respDone    bool // END_STREAM sent
	sendWin     int64
	recvWin     int64 // stream window the peer has left
	recvUnacked int64 // stream window consumed, not yet returned
	body        []byte
	bodyOff     int
	bodyErr     error // io.EOF once the request ended, or why it failed
	bodyClosed  bool
	rcond       sync.Cond // the handler waiting for body bytes; L is &c.mu
	declLen     int64     // Content-Length declared, or -1
	gotLen      int64
	gotTrailers bool
	trailer     http.Header // trailers received (declared ones are copied)
	readTimer   *time.Timer // ResponseController.SetReadDeadline
	writeTimer  *time.Timer // ResponseController.SetWriteDeadline

	// handler
	req           *http.Request
	tmpl          http.Request
	url           url.URL    // tmpl.URL
	headerVals    [16]string // backs the values of a short tmpl.Header
	reqTrailer    http.Header
	needsContinue bool
	sawEOF        bool
	handler       http.HandlerFunc // nil: the server's Handler
	finalSent     bool             // the final response header was written; under wmu
	rw            responseWriter
	rb            requestBody
}

// newStream returns a stream for id. Streams are not pooled: a handler
// may pass Request.Body to a goroutine that outlives it (a client
// transport writing the body upstream), and a stale Read must find this
// stream ended, not another request's.
func newStream(c *conn, id uint32) *stream {
	st := &stream{c: c}
	st.id = id
	st.rcond.L = &c.mu
	st.sendWin = c.initSendWin
	st.recvWin = int64(c.streamWin)
	st.declLen = -1
	st.ctx.Init(c.streamParent)
	return st
}

// free releases what the stream pooled, once its handler is done (or
// when it never got one). c.mu may be held.
func (st *stream) free() {
	st.ctx.Cancel(nil)
	st.rw.release()
}

// stopTimersLocked stops the deadlines' timers; c.mu is held.
func (st *stream) stopTimersLocked() {
	if st.readTimer != nil {
		st.readTimer.Stop()
		st.readTimer = nil
	}
	if st.writeTimer != nil {
		st.writeTimer.Stop()
		st.writeTimer = nil
	}
}

// readTimedOutLocked fails the request body's reads from now on (what
// is buffered is still read first), as net/http's read deadline.
func (st *stream) readTimedOutLocked() {
	if st.bodyErr == nil {
		st.bodyErr = fmt.Errorf("%w", os.ErrDeadlineExceeded)
	}
	st.rcond.Broadcast()
}

// writeTimedOutLocked resets the stream, as net/http's write deadline:
// the handler's writes fail from now on.
func (st *stream) writeTimedOutLocked() {
	if !st.removed {
		st.c.resetStreamLocked(st.id, http2.ErrCodeInternal)
	}
}

// buildRequest makes the stream's request from its HEADERS, as net/http's
// server does, or returns the stream error for a malformed one.
func (st *stream) buildRequest(f *http2.MetaHeadersFrame) error {
	c := st.c
	var method, scheme, authority, path, protocol string
	for _, hf := range f.PseudoFields() {
		switch hf.Name {
		case ":method":
			method = hf.Value
		case ":scheme":
			scheme = hf.Value
		case ":authority":
			authority = hf.Value
		case ":path":
			path = hf.Value
		case ":protocol":
			protocol = hf.Value
		}
	}
	bad := http2.StreamError{StreamID: st.id, Code: http2.ErrCodeProtocol}
	if protocol != "" {
		return bad // extended CONNECT is not offered
	}
	isConnect := method == "CONNECT"
	if isConnect {
		if path != "" || scheme != "" || authority == "" {
			return bad
		}
	} else if method == "" || path == "" || (scheme != "https" && scheme != "http") {
		return bad
	}

	// One map and one backing array for all values, the stream's own
	// for a short header (the stream is never reused, so the array is
	// the request's for good); a repeated name appends past its slice's
	// capacity and so copies.
	header := h2frame.Header(f.RegularFields(), st.headerVals[:], c.canonicalHeader)
	if authority == "" {
		authority = header.Get("Host")
	}

	// net/http's NewServerRequest.
	if vv := header["Expect"]; vv != nil && httpguts.HeaderValuesContainsToken(vv, "100-continue") {
		st.needsContinue = true
		delete(header, "Expect")
	}
	if cookies := header["Cookie"]; len(cookies) > 1 {
		header["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	var trailer http.Header
	for _, v := range header["Trailer"] {
		for key := range strings.SplitSeq(v, ",") {
			key = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(key))
			switch key {
			case "Transfer-Encoding", "Trailer", "Content-Length":
			default:
				if trailer == nil {
					trailer = make(http.Header)
				}
				trailer[key] = nil
			}
		}
	}
	delete(header, "Trailer")
	if strings.IndexByte(authority, '@') >= 0 && (scheme == "http" || scheme == "https") {
		return bad
	}
	u := &st.url
	var requestURI string
	if isConnect {
		*u = url.URL{Host: authority}
		requestURI = authority
	} else {
		if err := requri.Parse(u, path); err != nil {
			return bad
		}
		requestURI = path
	}

	r := &st.tmpl
	r.Method = method
	r.URL = u
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	r.Header = header
	r.Host = authority
	r.RemoteAddr = c.remote
	r.RequestURI = requestURI
	r.Trailer = trailer
	if scheme == "https" {
		r.TLS = c.tls
	}
	st.reqTrailer = trailer
	if f.StreamEnded() {
		r.ContentLength = 0
		r.Body = http.NoBody
		st.declLen = 0
	} else {
		r.ContentLength = -1
		if vv, ok := header["Content-Length"]; ok {
			if cl, err := strconv.ParseUint(vv[0], 10, 63); err == nil {
				r.ContentLength = int64(cl)
			} else {
				r.ContentLength = 0
			}
		}
		st.declLen = r.ContentLength
		st.rb.st = st
		r.Body = &st.rb
	}
	if st.needsContinue && r.Body == http.NoBody {
		st.needsContinue = false
	}

	switch {
	case f.Truncated:
		st.handler = handleHeaderListTooLong
	default:
		if err := checkValidHTTP2RequestHeaders(header); err != nil {
			st.handler = func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, err.Error(), http.StatusBadRequest)
			}
		}
	}
	return nil
}

// endStream ends the request body: io.EOF, or the Content-Length
// mismatch. c.mu is held.
func (st *stream) endStream() {
	if st.declLen >= 0 && st.declLen != st.gotLen {
		st.endBody(fmt.Errorf("request declared a Content-Length of %d but only wrote %d bytes", st.declLen, st.gotLen))
	} else {
		st.endBody(io.EOF)
	}
	st.state = stateHalfClosedRemote
	if st.respDone {
		st.c.closeStreamLocked(st, errHandlerComplete)
	}
}

func (st *stream) endBody(err error) {
	if st.bodyErr == nil {
		st.bodyErr = err
	}
	st.rcond.Broadcast()
}

// fail ends the stream with err because the connection ended. c.mu is
// held.
func (st *stream) fail(err error) {
	st.removed = true
	if st.bodyErr == nil {
		st.bodyErr = err
	}
	st.rcond.Broadcast()
	st.ctx.Cancel(nil)
}

// returnWindowLocked records n bytes of the stream's window consumed and
// returns window once half of it is, while the request is still open.
func (st *stream) returnWindowLocked(n int64) {
	st.recvUnacked += n
	c := st.c
	if st.recvUnacked >= int64(c.streamWin)/2 && st.state == stateOpen && !st.reset && !c.closed {
		c.queueLocked(appendWindowUpdate(c.ctl, st.id, uint32(st.recvUnacked)))
		st.recvWin += st.recvUnacked
		st.recvUnacked = 0
	}
}

// requestBody is a stream's Request.Body.
type requestBody struct{ st *stream }

func (b *requestBody) Read(p []byte) (int, error) {
	st := b.st
	if st.needsContinue {
		st.needsContinue = false
		st.rw.write100Continue()
	}
	if st.sawEOF {
		return 0, io.EOF
	}
	c := st.c
	c.mu.Lock()
	for st.bodyOff == len(st.body) && st.bodyErr == nil && !st.bodyClosed {
		st.rcond.Wait()
	}
	if st.bodyClosed {
		c.mu.Unlock()
		return 0, errClosedBody
	}
	if st.bodyOff == len(st.body) {
		err := st.bodyErr
		c.mu.Unlock()
		if err == io.EOF {
			st.sawEOF = true
			// Only declared trailers are passed on, as net/http.
			for k, vv := range st.trailer {
				if _, ok := st.reqTrailer[k]; ok {
					st.reqTrailer[k] = vv
				}
			}
		} else if se, ok := err.(http2.StreamError); ok {
			err = se
		}
		return 0, err
	}
	n := copy(p, st.body[st.bodyOff:])
	st.bodyOff += n
	if st.bodyOff == len(st.body) {
		st.body, st.bodyOff = st.body[:0], 0
	}
	if !st.removed {
		c.returnConnWindowLocked(int64(n))
		st.returnWindowLocked(int64(n))
	}
	ctl := len(c.ctl) > 0
	c.mu.Unlock()
	if ctl {
		// Window updates go out from here rather than waking the writer.
		c.flushCtl()
	}
	return n, nil
}

func (b *requestBody) Close() error {
	st := b.st
	c := st.c
	c.mu.Lock()
	if !st.bodyClosed {
		st.bodyClosed = true
		if n := int64(len(st.body) - st.bodyOff); n > 0 && !st.removed {
			c.returnConnWindowLocked(n)
		}
		st.body, st.bodyOff = st.body[:0], 0
		st.rcond.Broadcast()
	}
	c.mu.Unlock()
	return nil
}

// runHandler runs the stream's handler and finishes its response.
func (c *conn) runHandler(st *stream) {
	defer c.handlerDone()
	st.rw.init(st)
	// The request is the stream's template, given its context in place
	// (WithContext is inlined and its copy stays on the stack).
	st.tmpl = *st.tmpl.WithContext(&st.ctx)
	st.req = &st.tmpl
	h := st.handler
	if h == nil {
		h = c.s.Handler.ServeHTTP
	}
	didPanic := true
	defer func() {
		st.ctx.Cancel(nil)
		if st.req.MultipartForm != nil {
			_ = st.req.MultipartForm.RemoveAll()
		}
		if didPanic {
			e := recover()
			if e != nil && e != http.ErrAbortHandler {
				const size = 64 << 10
				buf := make([]byte, size)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.logger().Error("http2: panic serving", "remote", c.remote, "panic", fmt.Sprint(e), "stack", string(buf))
			}
			c.resetStream(st.id, http2.ErrCodeInternal)
		} else {
			st.rw.finish()
		}
		c.finishStream(st)
	}()
	h(&st.rw, st.req)
	didPanic = false
}

// finishStream runs after the handler: a stream whose response ended
// while the request is still open is reset with NO_ERROR (RFC 9113 8.1),
// and the stream goes back to the pool once the reader is done with it.
func (c *conn) finishStream(st *stream) {
	c.mu.Lock()
	st.stopTimersLocked()
	if !st.removed {
		if st.respDone && st.state == stateOpen {
			c.resetStreamLocked(st.id, http2.ErrCodeNo)
		} else if !st.respDone && !st.reset {
			// The response never ended (a write failed): reset.
			c.resetStreamLocked(st.id, http2.ErrCodeInternal)
		} else if st.respDone {
			c.closeStreamLocked(st, errHandlerComplete)
		} else {
			c.closeStreamLocked(st, errStreamClosed)
		}
	}
	if st.bodyOff == len(st.body) {
		// The stream is out of c.streams, so no DATA lands in the
		// buffer any more, and nothing is left in it to read (a Read
		// from a goroutine the handler left behind finds the body's
		// error): the next stream may have it.
		c.bodyBufs.Put(st.body)
		st.body, st.bodyOff = nil, 0
	}
	ctl := len(c.ctl) > 0
	c.mu.Unlock()
	if ctl {
		c.flushCtl()
	}
	st.free()
}

func handleHeaderListTooLong(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
	_, _ = io.WriteString(w, "<h1>HTTP Error 431</h1><p>Request Header Field(s) Too Large</p>")
}

// connHeaders are connection-specific fields, invalid in HTTP/2
// (RFC 9113 8.2.2).
var connHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"}

// checkValidHTTP2RequestHeaders is net/http's: a request with these is
// answered 400 with the reason.
func checkValidHTTP2RequestHeaders(h http.Header) error {
	for _, k := range connHeaders {
		if _, ok := h[k]; ok {
			return fmt.Errorf("request header %q is not valid in HTTP/2", k)
		}
	}
	te := h["Te"]
	if len(te) > 0 && (len(te) > 1 || (te[0] != "trailers" && te[0] != "")) {
		return errors.New(`request header "TE" may only be "trailers" in HTTP/2`)
	}
	return nil
}

func validTrailerHeader(k string) bool { return httpguts.ValidTrailerHeader(k) }
