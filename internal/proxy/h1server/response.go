package h1server

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/reqctx"
	"golang.org/x/net/http/httpguts"
)

// bufferBeforeChunking is how much body net/http's server holds before it
// commits to a framing: a handler that finishes within it gets a
// Content-Length, one that writes more (or flushes) is chunked. The same
// here, so that both servers frame the same response alike.
const bufferBeforeChunking = 2048

// largeWrite is the size from which a body write goes to the socket
// beside the buffer (one writev) rather than being copied into it.
const largeWrite = 4 << 10

// flushAt is the buffered size at which the response is written out.
const flushAt = 16 << 10

// sniffLen is how much of the body http.DetectContentType looks at.
const sniffLen = 512

// response is the http.ResponseWriter of one request. The status line and
// the handler's headers are serialized at WriteHeader (so that later
// changes to the map do not show, as net/http promises, without cloning
// the map); the framing headers are decided, as net/http decides them,
// when the first body bytes go out or the handler returns.
type response struct {
	c      *conn
	body   *body // the request's
	header http.Header

	status        int
	wroteHeader   bool // a final status was set
	headDone      bool // the framing headers and the blank line are in c.out
	handlerDone   bool
	chunking      bool
	closeAfter    bool
	isHEAD        bool
	proto11       bool
	wantsClose    bool // HTTP/1.1 with Connection: close
	contentLength int64
	written       int64

	wants10KeepAlive bool

	// What the handler's map held at WriteHeader, for the framing
	// decisions; these keys are not serialized with the rest.
	clVals, teVals, connVals, ctVals []string
	hasConn, hasCT, hasDate          bool
	contentEncoding                  string
	hasTrailers                      bool
	trailers                         []string
}

// request is what serveRequest gives a handler that may outlive it: the
// request, its URL, its context and its body, in one allocation.
type request struct {
	req  http.Request
	url  url.URL // req.URL
	ctx  reqctx.Context
	body body
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
)

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		return // superfluous, as net/http ignores it
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	c := w.c
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational: sent at once, the final response follows.
		c.out = w.appendStatusLine(c.out, code)
		for k, vv := range w.header {
			if k == "Content-Length" || k == "Transfer-Encoding" {
				continue
			}
			c.out = appendField(c.out, k, vv)
		}
		c.out = append(c.out, "\r\n"...)
		c.flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.header["Content-Length"]; len(cl) > 0 {
		v, err := strconv.ParseInt(cl[0], 10, 64)
		if err == nil && v >= 0 {
			w.contentLength = v
		} else {
			delete(w.header, "Content-Length")
		}
	}
	c.out = w.appendStatusLine(c.out, code)
	for k, vv := range w.header {
		switch k {
		case "Content-Length":
			w.clVals = vv
			continue
		case "Transfer-Encoding":
			w.teVals = vv
			continue
		case "Connection":
			w.connVals, w.hasConn = vv, true
			continue
		case "Content-Type":
			w.ctVals, w.hasCT = vv, true
			continue
		case "Date":
			w.hasDate = true
		case "Content-Encoding":
			if len(vv) > 0 {
				w.contentEncoding = vv[0]
			}
		case "Trailer":
			w.hasTrailers = true
			for _, v := range vv {
				for _, t := range strings.Split(v, ",") {
					t = http.CanonicalHeaderKey(strings.TrimSpace(t))
					if t != "" && httpguts.ValidTrailerHeader(t) {
						w.trailers = append(w.trailers, t)
					}
				}
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			w.hasTrailers = true
			continue
		}
		c.out = appendField(c.out, k, vv)
	}
}

func (w *response) appendStatusLine(b []byte, code int) []byte {
	if w.proto11 {
		b = append(b, "HTTP/1.1 "...)
	} else {
		b = append(b, "HTTP/1.0 "...)
	}
	if text := http.StatusText(code); text != "" {
		b = strconv.AppendInt(b, int64(code), 10)
		b = append(b, ' ')
		b = append(b, text...)
		return append(b, "\r\n"...)
	}
	return fmt.Appendf(b, "%03d status code %d\r\n", code, code)
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength != -1 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	c := w.c
	if c.werr != nil {
		return 0, c.werr
	}
	if !w.headDone {
		if len(c.pre)+len(p) <= bufferBeforeChunking {
			c.pre = append(c.pre, p...)
			return len(p), nil
		}
		// net/http decides on the buffered body topped up with p, or on
		// p alone when nothing was buffered; the framing does not depend
		// on it here (more than 2 KiB is chunked), the sniffed type does.
		sniff := c.pre
		if len(sniff) < sniffLen {
			var buf [sniffLen]byte
			n := copy(buf[:], c.pre)
			n += copy(buf[n:], p)
			sniff = buf[:n]
		}
		w.writeHead(sniff)
		if len(c.pre) > 0 {
			w.emit(c.pre)
			c.pre = c.pre[:0]
		}
	}
	w.emit(p)
	if c.werr != nil {
		return 0, c.werr
	}
	return len(p), nil
}

func (w *response) WriteString(s string) (int, error) {
	// The common case (http.Error, fmt.Fprint) is small: copy it in
	// without a conversion.
	if !w.headDone && w.wroteHeader && len(w.c.pre)+len(s) <= bufferBeforeChunking && bodyAllowedForStatus(w.status) &&
		(w.contentLength == -1 || w.written+int64(len(s)) <= w.contentLength) && w.c.werr == nil {
		w.written += int64(len(s))
		w.c.pre = append(w.c.pre, s...)
		return len(s), nil
	}
	return w.Write([]byte(s))
}

// commitPre decides the framing with what the handler wrote so far and
// moves that body into the output.
func (w *response) commitPre() {
	c := w.c
	w.writeHead(c.pre)
	if len(c.pre) > 0 {
		w.emit(c.pre)
	}
	c.pre = c.pre[:0]
}

// emit appends body bytes in the response's framing.
func (w *response) emit(p []byte) {
	c := w.c
	if w.isHEAD {
		return // as net/http: a HEAD response's body is eaten
	}
	if w.chunking {
		c.out = strconv.AppendInt(c.out, int64(len(p)), 16)
		c.out = append(c.out, "\r\n"...)
	}
	if len(p) >= largeWrite {
		c.writeWith(p)
	} else {
		c.out = append(c.out, p...)
	}
	if w.chunking {
		c.out = append(c.out, "\r\n"...)
	}
	if len(c.out) >= flushAt {
		c.flush()
	}
}

// Flush writes out what is buffered, headers included.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports a write error (for
// http.ResponseController).
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headDone {
		w.commitPre()
	}
	w.c.flush()
	return w.c.werr
}

// EnableFullDuplex is what the loop always does: reading the request body
// stays possible while the response is written.
func (w *response) EnableFullDuplex() error { return nil }

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.rdl = t
	return w.c.nc.SetReadDeadline(t)
}

func (w *response) SetWriteDeadline(t time.Time) error { return w.c.nc.SetWriteDeadline(t) }

// finish completes the response after the handler returned and writes it
// out.
func (w *response) finish() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	c := w.c
	if !w.headDone {
		w.commitPre()
	}
	if w.chunking {
		c.out = append(c.out, "0\r\n"...)
		for k, vv := range w.header {
			if kk, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				c.out = appendField(c.out, kk, vv)
			}
		}
		for _, k := range w.trailers {
			c.out = appendField(c.out, k, w.header[k])
		}
		c.out = append(c.out, "\r\n"...)
	}
	if !w.isHEAD && w.contentLength != -1 && bodyAllowedForStatus(w.status) && w.contentLength != w.written {
		// Fewer bytes than the Content-Length said: the client would
		// read the next response as the rest of this one.
		w.closeAfter = true
	}
	c.flush()
}

// writeHead appends the framing headers, as net/http's server decides
// them (chunkWriter.writeHeader), and the blank line. p is the body
// written so far.
func (w *response) writeHead(p []byte) {
	w.headDone = true
	c := w.c
	code := w.status
	keepAlives := !c.s.shuttingDown()
	te := first(w.teVals)
	hasTE := te != ""
	bodyOK := bodyAllowedForStatus(code)

	setCL := int64(-1)
	if w.handlerDone && !w.hasTrailers && !hasTE && bodyOK && len(w.clVals) == 0 && (!w.isHEAD || len(p) > 0) {
		w.contentLength = int64(len(p))
		setCL = int64(len(p))
	}
	connFirst := first(w.connVals)
	if w.wants10KeepAlive && keepAlives && first(w.clVals) != "" && connFirst == "keep-alive" {
		w.closeAfter = false
	}
	hasCL := w.contentLength != -1
	setConn := ""
	if w.wants10KeepAlive && (w.isHEAD || hasCL || !bodyOK) {
		if !w.hasConn {
			setConn = "keep-alive"
		}
	} else if !w.proto11 || w.wantsClose {
		w.closeAfter = true
	}
	if connFirst == "close" || !keepAlives {
		w.closeAfter = true
	}
	delConn, delCL, delTE, delCT := false, false, false, false
	if w.handlerDone && w.body != nil && !w.closeAfter && w.body.remaining() > maxDrain {
		// Too much unread body to discard: close, and say so.
		w.closeAfter = true
		delConn, setConn = true, "close"
	}
	setCT := ""
	if bodyOK {
		if !w.hasCT && w.contentEncoding == "" && !hasTE && len(p) > 0 {
			setCT = http.DetectContentType(p)
		}
	} else {
		delCL, delTE = true, true
		if code == http.StatusNotModified {
			delCT = true
		}
	}
	if hasCL && hasTE && te != "identity" {
		delCL, hasCL = true, false
	}
	setTE := ""
	switch {
	case w.isHEAD || !bodyOK || code == http.StatusNoContent:
		delTE = true
	case hasCL:
		delTE = true
	case w.proto11:
		if hasTE && te == "identity" {
			w.chunking = false
			w.closeAfter = true
			delTE = true
		} else {
			w.chunking = true
			setTE = "chunked"
			if hasTE && te == "chunked" {
				delTE = true
			}
		}
	default:
		// HTTP/1.0 without a length: the end of the body is the end of
		// the connection.
		w.closeAfter = true
		delTE = true
	}
	if w.chunking {
		delCL = true
	}
	if w.closeAfter && !hasToken(connFirst, "close") && !(code == http.StatusSwitchingProtocols && len(w.header["Upgrade"]) > 0) {
		delConn = true
		if w.proto11 {
			setConn = "close"
		}
	}
	b := c.out
	if !delCL {
		b = appendField(b, "Content-Length", w.clVals)
	}
	if !delTE {
		b = appendField(b, "Transfer-Encoding", w.teVals)
	}
	if !delConn {
		b = appendField(b, "Connection", w.connVals)
	}
	if !delCT {
		b = appendField(b, "Content-Type", w.ctVals)
	}
	if setCT != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, setCT...)
		b = append(b, "\r\n"...)
	}
	if setConn != "" {
		b = append(b, "Connection: "...)
		b = append(b, setConn...)
		b = append(b, "\r\n"...)
	}
	if setTE != "" {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if !w.hasDate {
		b = append(b, "Date: "...)
		b = appendDate(b)
		b = append(b, "\r\n"...)
	}
	if setCL >= 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, setCL, 10)
		b = append(b, "\r\n"...)
	}
	c.out = append(b, "\r\n"...)
}

func first(vv []string) string {
	if len(vv) == 0 {
		return ""
	}
	return vv[0]
}

// hasToken reports whether token occurs in v, ASCII case-insensitively,
// between spaces, tabs, commas or the ends: net/http's test for
// "Connection: close" and "keep-alive" (looser than splitting the list).
func hasToken(v, token string) bool {
	for i := 0; i+len(token) <= len(v); i++ {
		if i > 0 && !isTokenBoundary(v[i-1]) {
			continue
		}
		if end := i + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[i:i+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

func bodyAllowedForStatus(code int) bool {
	switch {
	case code >= 100 && code <= 199, code == http.StatusNoContent, code == http.StatusNotModified:
		return false
	}
	return true
}

// appendField appends one header line per value, as net/http writes
// them: a name that is not a token is dropped, CR and LF in a value become
// spaces and the value is trimmed, so that no handler can split the
// response.
func appendField(b []byte, k string, vv []string) []byte {
	if len(vv) == 0 || !httpguts.ValidHeaderFieldName(k) {
		return b
	}
	for _, v := range vv {
		b = append(b, k...)
		b = append(b, ": "...)
		b = appendValue(b, v)
		b = append(b, "\r\n"...)
	}
	return b
}

func appendValue(b []byte, v string) []byte {
	clean := true
	for i := 0; i < len(v); i++ {
		if v[i] == '\r' || v[i] == '\n' {
			clean = false
			break
		}
	}
	if !clean {
		v = strings.Map(func(r rune) rune {
			if r == '\r' || r == '\n' {
				return ' '
			}
			return r
		}, v)
	}
	return append(b, strings.Trim(v, " \t\r\n")...)
}

// flush writes c.out to the connection.
func (c *conn) flush() {
	if len(c.out) == 0 {
		return
	}
	if c.werr == nil {
		_, c.werr = c.nc.Write(c.out)
	}
	c.out = c.out[:0]
}

// writeWith writes c.out and then p, in one writev where the connection
// allows it.
func (c *conn) writeWith(p []byte) {
	if c.werr == nil {
		c.bufs[0], c.bufs[1] = c.out, p
		bufs := net.Buffers(c.bufs[:])
		_, c.werr = bufs.WriteTo(c.nc)
		c.bufs[0], c.bufs[1] = nil, nil
	}
	c.out = c.out[:0]
}

// The Date header changes once a second: format it once a second.
type dateEntry struct {
	sec int64
	b   []byte
}

var dateCache atomic.Pointer[dateEntry]

func appendDate(b []byte) []byte {
	now := time.Now()
	d := dateCache.Load()
	if d == nil || d.sec != now.Unix() {
		d = &dateEntry{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
		dateCache.Store(d)
	}
	return append(b, d.b...)
}
