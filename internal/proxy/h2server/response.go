package h2server

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// bufSize is how much body the response writer holds before sending; a
// response whose whole body fits, written before the handler returns,
// gets a Content-Length. net/http's HTTP/2 server uses the same size, so
// the two agree on which responses get one.
const bufSize = 4 << 10

// maxWriteChunk bounds the DATA assembled for one write.
const maxWriteChunk = 128 << 10

// kv is one header of the snapshot taken at WriteHeader.
type kv struct {
	k  string
	vv []string
}

// rwBufs are a response writer's reusable parts.
type rwBufs struct {
	hdr  http.Header
	snap []kv
	buf  []byte
}

var rwPool = sync.Pool{New: func() any {
	return &rwBufs{hdr: make(http.Header, 8), buf: make([]byte, 0, bufSize)}
}}

// responseWriter is a stream's http.ResponseWriter. It belongs to the
// handler's goroutine, as net/http's does.
type responseWriter struct {
	st   *stream
	bufs *rwBufs

	handlerHeader  http.Header
	snap           []kv // the header as WriteHeader saw it
	status         int
	wroteHeader    bool // WriteHeader called (explicitly or implicitly)
	sentHeader     bool // HEADERS written
	handlerDone    bool
	isHead         bool
	sentContentLen int64
	wroteBytes     int64
	trailers       []string
	buf            []byte
}

var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ http.Flusher        = (*responseWriter)(nil)
)

func (w *responseWriter) init(st *stream) {
	w.st = st
	w.bufs = rwPool.Get().(*rwBufs)
	w.buf = w.bufs.buf[:0]
	w.isHead = st.tmpl.Method == http.MethodHead
}

// release returns the pooled parts; the writer must not be used after.
func (w *responseWriter) release() {
	b := w.bufs
	if b == nil {
		return
	}
	w.bufs = nil
	if len(b.hdr) > 64 {
		b.hdr = make(http.Header, 8)
	} else {
		clear(b.hdr)
	}
	clear(b.snap)
	b.snap = b.snap[:0]
	if cap(w.buf) == bufSize {
		b.buf = w.buf[:0]
	}
	w.handlerHeader, w.snap, w.buf = nil, nil, nil
	rwPool.Put(b)
}

func (w *responseWriter) Header() http.Header {
	if w.bufs == nil {
		panic("Header called after Handler finished")
	}
	if w.handlerHeader == nil {
		w.handlerHeader = w.bufs.hdr
	}
	return w.handlerHeader
}

func (w *responseWriter) WriteHeader(code int) {
	if w.bufs == nil {
		panic("WriteHeader called after Handler finished")
	}
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code >= 100 && code <= 199 {
		w.write1xx(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	// A snapshot, as net/http clones the map here: what the handler sets
	// afterwards (trailers, say) is not part of the header.
	snap := w.bufs.snap[:0]
	for k, vv := range w.handlerHeader {
		snap = append(snap, kv{k, vv})
	}
	w.bufs.snap = snap
	w.snap = snap
}

func (w *responseWriter) snapGet(k string) (string, bool) {
	for _, e := range w.snap {
		if e.k == k {
			if len(e.vv) == 0 {
				return "", true
			}
			return e.vv[0], true
		}
	}
	return "", false
}

func (w *responseWriter) snapDel(k string) {
	for i, e := range w.snap {
		if e.k == k {
			w.snap = slices.Delete(w.snap, i, i+1)
			return
		}
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	return w.write(p, "", len(p))
}

func (w *responseWriter) WriteString(s string) (int, error) {
	return w.write(nil, s, len(s))
}

func (w *responseWriter) write(p []byte, s string, n int) (int, error) {
	if w.bufs == nil {
		panic("Write called after Handler finished")
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.wroteBytes += int64(n)
	if w.sentContentLen != 0 && w.wroteBytes > w.sentContentLen {
		return 0, errors.New("http2: handler wrote more than declared Content-Length")
	}
	if p == nil && n > 0 {
		if len(w.buf)+n <= bufSize {
			w.buf = append(w.buf, s...)
			return n, nil
		}
		p = []byte(s)
	}
	// As a bufio.Writer of bufSize would: fill and send the buffer, and
	// send a large write directly when the buffer is empty.
	written := 0
	for len(p) > bufSize-len(w.buf) {
		if len(w.buf) == 0 {
			if err := w.writeChunk(p); err != nil {
				return written, err
			}
			return n, nil
		}
		k := copy(w.buf[len(w.buf):bufSize], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		written += k
		err := w.writeChunk(w.buf)
		w.buf = w.buf[:0]
		if err != nil {
			return written, err
		}
	}
	w.buf = append(w.buf, p...)
	return n, nil
}

func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError sends what is buffered (the header at least), as net/http's.
func (w *responseWriter) FlushError() error {
	if w.bufs == nil {
		panic("Flush called after Handler finished")
	}
	var err error
	if len(w.buf) > 0 {
		err = w.writeChunk(w.buf)
		w.buf = w.buf[:0]
	} else {
		err = w.writeChunk(nil)
		if err == nil {
			c := w.st.c
			c.mu.Lock()
			if w.st.reset || c.closed {
				err = errStreamClosed
			}
			c.mu.Unlock()
		}
	}
	return err
}

// SetReadDeadline bounds the handler's reads of the request body, as
// net/http's (http.ResponseController); zero means none.
func (w *responseWriter) SetReadDeadline(deadline time.Time) error {
	st := w.st
	return st.setDeadline(&st.readTimer, deadline, st.readTimedOutLocked)
}

// SetWriteDeadline bounds the response: past it the stream is reset, as
// net/http's (http.ResponseController); zero means none.
func (w *responseWriter) SetWriteDeadline(deadline time.Time) error {
	st := w.st
	err := st.setDeadline(&st.writeTimer, deadline, st.writeTimedOutLocked)
	st.c.flushCtl()
	return err
}

func (st *stream) setDeadline(t **time.Timer, deadline time.Time, fire func()) error {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
	if deadline.IsZero() {
		return nil
	}
	d := time.Until(deadline)
	if d <= 0 {
		fire()
		return nil
	}
	*t = time.AfterFunc(d, func() {
		c.mu.Lock()
		fire()
		ctl := len(c.ctl) > 0
		c.mu.Unlock()
		if ctl {
			c.flushCtl()
		}
	})
	return nil
}

// EnableFullDuplex is a no-op: HTTP/2 is always full duplex.
func (w *responseWriter) EnableFullDuplex() error { return nil }

// CloseNotify reports the stream's end, as net/http's (deprecated) does.
func (w *responseWriter) CloseNotify() <-chan bool {
	ch := make(chan bool, 1)
	context.AfterFunc(&w.st.ctx, func() { ch <- true })
	return ch
}

// finish finishes the response after the handler returned.
func (w *responseWriter) finish() {
	w.handlerDone = true
	if len(w.buf) > 0 {
		_ = w.writeChunk(w.buf)
		w.buf = w.buf[:0]
		return
	}
	_ = w.writeChunk(nil)
}

func (w *responseWriter) hasNonemptyTrailers() bool {
	for _, k := range w.trailers {
		if _, ok := w.handlerHeader[k]; ok {
			return true
		}
	}
	return false
}

func (w *responseWriter) declareTrailer(k string) {
	k = http.CanonicalHeaderKey(k)
	if !httpguts.ValidTrailerHeader(k) {
		return
	}
	if !slices.Contains(w.trailers, k) {
		w.trailers = append(w.trailers, k)
	}
}

// promoteUndeclaredTrailers turns "Trailer:"-prefixed header keys into
// trailers, as net/http does when the handler ends.
func (w *responseWriter) promoteUndeclaredTrailers() {
	for k, vv := range w.handlerHeader {
		if !strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		tk := strings.TrimPrefix(k, http.TrailerPrefix)
		w.declareTrailer(tk)
		w.handlerHeader[http.CanonicalHeaderKey(tk)] = vv
	}
	if len(w.trailers) > 1 {
		slices.Sort(w.trailers)
	}
}

// respHead is a response header block to encode under the write mutex.
type respHead struct {
	status              int
	snap                []kv
	ctype, clen, date   string
	trailers            []string // trailer block: these keys of hdr
	hdr                 http.Header
	endStream, trailing bool
}

// writeChunk is net/http's writeChunk: it sends the header on the first
// call, p as DATA, and, once the handler is done, ends the stream, with
// trailers if there are any; all of it in as few writes as flow control
// allows.
func (w *responseWriter) writeChunk(p []byte) error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.handlerDone {
		w.promoteUndeclaredTrailers()
	}
	var head *respHead
	var h respHead
	if !w.sentHeader {
		w.sentHeader = true
		var ctype, clen string
		if v, ok := w.snapGet("Content-Length"); ok {
			clen = v
			w.snapDel("Content-Length")
			if cl, err := strconv.ParseUint(clen, 10, 63); err == nil {
				w.sentContentLen = int64(cl)
			} else {
				clen = ""
			}
		}
		if clen == "" && w.handlerDone && bodyAllowedForStatus(w.status) && (len(p) > 0 || !w.isHead) {
			clen = strconv.Itoa(len(p))
		}
		_, hasCT := w.snapGet("Content-Type")
		ce, _ := w.snapGet("Content-Encoding")
		if ce == "" && !hasCT && bodyAllowedForStatus(w.status) && len(p) > 0 {
			ctype = http.DetectContentType(p)
		}
		var date string
		if _, ok := w.snapGet("Date"); !ok {
			date = httpDate()
		}
		for _, e := range w.snap {
			if e.k == "Trailer" {
				for _, v := range e.vv {
					foreachHeaderElement(v, w.declareTrailer)
				}
			}
		}
		if v, ok := w.snapGet("Connection"); ok {
			w.snapDel("Connection")
			if v == "close" {
				w.st.c.startGracefulShutdown()
			}
		}
		endStream := (w.handlerDone && len(w.trailers) == 0 && len(p) == 0) || w.isHead
		h = respHead{status: w.status, snap: w.snap, ctype: ctype, clen: clen, date: date, endStream: endStream}
		head = &h
		if endStream {
			return w.st.c.writeResponse(w.st, head, nil, false, nil)
		}
	}
	if w.isHead {
		return nil
	}
	if len(p) == 0 && !w.handlerDone {
		if head != nil {
			return w.st.c.writeResponse(w.st, head, nil, false, nil)
		}
		return nil
	}
	trailers := w.handlerDone && w.hasNonemptyTrailers()
	endData := w.handlerDone && !trailers
	var tr *respHead
	if trailers {
		tr = &respHead{trailers: w.trailers, hdr: w.handlerHeader, endStream: true, trailing: true}
	}
	return w.st.c.writeResponse(w.st, head, p, endData, tr)
}

// write1xx sends an informational response with the current header.
func (w *responseWriter) write1xx(code int) {
	snap := make([]kv, 0, len(w.handlerHeader))
	for k, vv := range w.handlerHeader {
		if k == "Content-Length" || k == "Transfer-Encoding" {
			continue
		}
		snap = append(snap, kv{k, vv})
	}
	_ = w.st.c.writeResponse(w.st, &respHead{status: code, snap: snap}, nil, false, nil)
}

// write100Continue answers Expect: 100-continue at the first body read,
// unless the response header went out already.
func (w *responseWriter) write100Continue() {
	st := w.st
	c := st.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if st.finalSent {
		return
	}
	c.mu.Lock()
	if st.reset || c.closed || st.respDone {
		c.mu.Unlock()
		return
	}
	c.wq.Buf = append(c.wq.Buf, c.ctl...)
	c.ctl = c.ctl[:0]
	c.applyTableSizeLocked()
	maxFrame := c.maxFrame
	c.mu.Unlock()
	c.hbuf.Reset()
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "100"})
	c.wq.Buf = appendHeaderBlock(c.wq.Buf, st.id, c.hbuf.Bytes(), false, maxFrame)
	_ = c.writeLocked()
}

// writeResponse writes, for st: the header block head (if any), p as DATA
// (END_STREAM on the last frame if endData), and the trailer block tr (if
// any), as the peer's windows allow: when p fits them, all of it in one
// write, together with the control frames queued meanwhile.
func (c *conn) writeResponse(st *stream, head *respHead, p []byte, endData bool, tr *respHead) error {
	for {
		n := 0
		if len(p) > 0 {
			c.mu.Lock()
			for {
				if err := st.sendErrLocked(); err != nil {
					c.mu.Unlock()
					return err
				}
				avail := min(st.sendWin, c.sendWin, int64(len(p)), maxWriteChunk)
				if avail > 0 {
					n = int(avail)
					st.sendWin -= avail
					c.sendWin -= avail
					break
				}
				if head != nil {
					break // the header needs no window: send it first
				}
				c.sendCond.Wait()
			}
			c.mu.Unlock()
		}
		last := n == len(p)
		ended := head != nil && head.endStream || last && (endData || tr != nil)
		c.wmu.Lock()
		c.wq.Room(n)
		c.mu.Lock()
		if err := st.sendErrLocked(); err != nil {
			if n > 0 {
				// The window taken above was not used: give it back, or
				// the connection's send window shrinks for good.
				c.sendWin += int64(n)
				st.sendWin += int64(n)
				c.sendCond.Broadcast()
			}
			c.mu.Unlock()
			c.wmu.Unlock()
			return err
		}
		c.wq.Buf = append(c.wq.Buf, c.ctl...)
		c.ctl = c.ctl[:0]
		c.applyTableSizeLocked()
		maxFrame := c.maxFrame
		// The stream's state moves before the frames leave, so the
		// reader never sees a peer's next frame on a stream it still
		// thinks open.
		rst := false
		if ended {
			rst = c.endResponseLocked(st)
		}
		c.mu.Unlock()
		if head != nil {
			c.wq.Buf = appendHeaderBlock(c.wq.Buf, st.id, c.encodeHead(head), head.endStream, maxFrame)
			if head.status >= 200 || head.status == 0 {
				st.finalSent = true
			}
			head = nil
		}
		if n > 0 || (last && endData) {
			c.wq.Buf = appendData(c.wq.Buf, st.id, p[:n], last && endData, maxFrame)
		}
		if last && tr != nil {
			c.wq.Buf = appendHeaderBlock(c.wq.Buf, st.id, c.encodeHead(tr), true, maxFrame)
		}
		if rst {
			c.wq.Buf = appendRSTStream(c.wq.Buf, st.id, http2.ErrCodeNo)
		}
		err := c.writeLocked()
		c.wmu.Unlock()
		if err != nil {
			return err
		}
		p = p[n:]
		if last {
			return nil
		}
	}
}

// sendErrLocked says why nothing more may be sent on st, if so.
func (st *stream) sendErrLocked() error {
	c := st.c
	switch {
	case c.closed:
		return errClientDisconnected
	case st.reset:
		return errStreamClosed
	case st.respDone:
		return errStreamClosed
	}
	return nil
}

// endResponseLocked records that END_STREAM goes out on st: the stream
// closes if the request ended too; otherwise it is reset with NO_ERROR
// (the client need not send the rest; RFC 9113 8.1), as net/http's
// server does, and endResponseLocked reports that the caller must send
// that RST_STREAM after the response.
func (c *conn) endResponseLocked(st *stream) bool {
	st.respDone = true
	if st.removed {
		return false
	}
	if st.state == stateHalfClosedRemote {
		c.closeStreamLocked(st, errHandlerComplete)
		return false
	}
	st.reset = true
	c.closeStreamLocked(st, http2.StreamError{StreamID: st.id, Code: http2.ErrCodeNo})
	return true
}

// encodeHead hpack-encodes a header or trailer block; wmu is held.
func (c *conn) encodeHead(h *respHead) []byte {
	c.hbuf.Reset()
	enc := c.henc
	if h.trailing {
		for _, k := range h.trailers {
			c.encodeField(k, h.hdr[k])
		}
		return c.hbuf.Bytes()
	}
	_ = enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(h.status)})
	for _, e := range h.snap {
		c.encodeField(e.k, e.vv)
	}
	if h.ctype != "" {
		_ = enc.WriteField(hpack.HeaderField{Name: "content-type", Value: h.ctype})
	}
	if h.clen != "" {
		_ = enc.WriteField(hpack.HeaderField{Name: "content-length", Value: h.clen})
	}
	if h.date != "" {
		_ = enc.WriteField(hpack.HeaderField{Name: "date", Value: h.date})
	}
	return c.hbuf.Bytes()
}

// encodeField encodes one header's values as net/http's encodeHeaders:
// names it cannot send (non-ASCII, invalid, "Trailer:"-prefixed) and
// invalid values are left out, and Transfer-Encoding only as "trailers".
func (c *conn) encodeField(k string, vv []string) {
	lk, ok := lowerHeader(k)
	if !ok || !httpguts.ValidHeaderFieldName(lk) {
		return
	}
	isTE := lk == "transfer-encoding"
	for _, v := range vv {
		if !httpguts.ValidHeaderFieldValue(v) || isTE && v != "trailers" {
			continue
		}
		_ = c.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
	}
}

// appendData appends p as DATA frames of at most maxFrame bytes, with
// END_STREAM on the last if end.
func appendData(b []byte, id uint32, p []byte, end bool, maxFrame int) []byte {
	for {
		frag := p
		if len(frag) > maxFrame {
			frag = frag[:maxFrame]
		}
		p = p[len(frag):]
		var fl http2.Flags
		if end && len(p) == 0 {
			fl = http2.FlagDataEndStream
		}
		b = appendFrameHeader(b, len(frag), http2.FrameData, fl, id)
		b = append(b, frag...)
		if len(p) == 0 {
			return b
		}
	}
}

func bodyAllowedForStatus(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == 204, status == 304:
		return false
	}
	return true
}

// foreachHeaderElement splits a comma-separated list, as net/http's.
func foreachHeaderElement(v string, fn func(string)) {
	v = textprotoTrim(v)
	if v == "" {
		return
	}
	if !strings.Contains(v, ",") {
		fn(v)
		return
	}
	for f := range strings.SplitSeq(v, ",") {
		if f = textprotoTrim(f); f != "" {
			fn(f)
		}
	}
}

func textprotoTrim(s string) string {
	return strings.Trim(s, " \t")
}

var statusTexts = func() (t [500]string) {
	for i := range t {
		t[i] = strconv.Itoa(100 + i)
	}
	return
}()

func statusText(code int) string {
	if code >= 100 && code < 600 {
		return statusTexts[code-100]
	}
	return strconv.Itoa(code)
}

// The Date header, formatted once a second.
type dateCache struct {
	sec int64
	s   string
}

var cachedDate atomic.Pointer[dateCache]

func httpDate() string {
	now := time.Now()
	sec := now.Unix()
	if d := cachedDate.Load(); d != nil && d.sec == sec {
		return d.s
	}
	d := &dateCache{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.s
}
