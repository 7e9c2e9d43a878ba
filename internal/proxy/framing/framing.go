// Package framing refuses HTTP/1.x requests whose framing is ambiguous,
// which net/http cannot do by itself.
//
// A request with both Content-Length and Transfer-Encoding is the classic
// request-smuggling vector: two parsers that pick different headers see
// different message boundaries. net/http reads such a request as chunked
// and deletes Content-Length before any handler runs (RFC 9112 section
// 6.3 allows that), so a handler cannot tell it ever had one. weft refuses
// the request instead, as issue 3 asks and as RFC 9112 says it "ought to"
// be handled: as an error.
//
// Conn sits between the socket and net/http. It follows the connection's
// message framing exactly as net/http does (head, then a body of
// Content-Length bytes or of chunks, then the next head) and inspects every
// request head before net/http reads a byte of it. A head with conflicting
// framing never reaches net/http: Conn hands it a stand-in request in its
// place, marked with a per-connection secret in MarkerHeader, and ends the
// stream there. The listener's handler recognises the stand-in with
// Rejection and answers 400 with the reason; requests pipelined before the
// bad one are answered first, in order, because net/http reads the
// stand-in only after them.
//
// Whatever Conn cannot parse, net/http cannot either (Conn accepts a
// superset of what net/http accepts and agrees with it on every length);
// a chunked body Conn cannot follow makes Read fail, which closes the
// connection. Bodies of known length pass through without a copy; only
// request heads and chunk lines are buffered or scanned.
package framing

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"time"
)

// MarkerHeader is the header that marks the stand-in for a refused request.
const MarkerHeader = "X-Weft-Framing-Rejected"

// maxHead bounds a request head, as net/http's default MaxHeaderBytes (1
// MiB) plus the 4 KiB it allows on top. A longer head is passed through
// untouched: net/http answers it with 431 and closes the connection.
const maxHead = 1<<20 + 4096

// maxChunkLine is net/http's limit for a chunk-size line.
const maxChunkLine = 4096

// ReasonConflictingFraming is the reason for refusing a request with
// both Content-Length and Transfer-Encoding.
const ReasonConflictingFraming = "both Content-Length and Transfer-Encoding: the message framing is ambiguous"

type state uint8

const (
	stateHead        state = iota // reading a request head
	stateBody                     // remaining bytes of a Content-Length body
	stateChunkLine                // reading a chunk-size line
	stateChunkData                // remaining bytes of a chunk's data
	stateChunkCRLF                // the CRLF after a chunk's data
	stateTrailer                  // trailer lines, up to an empty line
	statePassthrough              // HTTP/2 prior knowledge, or a head too long: no more HTTP/1 framing
	stateRejected                 // the stand-in was handed over; the stream ends
)

// errFraming is returned by Read when a chunked body cannot be followed.
// net/http, which reads the same bytes, fails on it too.
var errFraming = errors.New("framing: malformed chunked body")

// Conn is a server-side HTTP/1.x connection that refuses requests with
// ambiguous framing. Reads are not safe for concurrent use, as for any
// net.Conn read by one HTTP server.
type Conn struct {
	net.Conn

	state state
	n     int64  // bytes left in stateBody, stateChunkData, stateChunkCRLF
	buf   []byte // backs in
	in    []byte // read from the socket, not yet handed over
	out   []byte // bytes decided on, handed to the reader before anything else
	line  []byte // partial chunk or trailer line
	first bool   // the next head is the connection's first
	// lastPost: the last head was a POST's, so net/http skips line
	// endings before the next.
	lastPost bool

	mu     sync.Mutex
	marker string // the stand-in's secret, once a request was refused
	reason string

	// onHead, when set (by tests), is called with every head decide sees.
	onHead func(head []byte)
}

// NewConn wraps c, the server side of an HTTP/1.x connection (or of a
// cleartext one that may turn out to be HTTP/2 with prior knowledge).
func NewConn(c net.Conn) *Conn {
	return &Conn{Conn: c, first: true}
}

// Rejection reports whether marker, the value of MarkerHeader on a request
// read from c, is the secret of c's stand-in, and if so why the real
// request was refused. A client cannot forge it: the secret is random and
// made only when a request is refused.
func (c *Conn) Rejection(marker string) (reason string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.marker == "" || marker != c.marker {
		return "", false
	}
	return c.reason, true
}

// CloseWrite half-closes the connection when the socket supports it, so
// that net/http (and the listener's 400) can send a response and a FIN
// before the socket closes, as they do on a bare TCP connection.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Drain reads and discards what the client still sends, straight from the
// socket, until it closes or d passes. A server that closes a socket with
// unread data makes the kernel send a reset, which can destroy the
// response before the client reads it.
func (c *Conn) Drain(d time.Duration) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(d))
	_, _ = io.Copy(io.Discard, c.Conn)
}

// Read hands net/http the connection's bytes, request heads only once they
// are complete and checked.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		switch c.state {
		case stateRejected:
			return 0, io.EOF
		case stateHead:
			if err := c.readHead(); err != nil {
				return 0, err
			}
			continue
		case statePassthrough:
			return c.readRaw(p)
		case stateBody:
			n, err := c.readRaw(p[:min(int64(len(p)), c.n)])
			c.n -= int64(n)
			if c.n == 0 {
				c.state = stateHead
			}
			return n, err
		default: // the chunked states
			return c.readChunked(p)
		}
	}
}

// readRaw reads into p from what is buffered, or else from the socket.
func (c *Conn) readRaw(p []byte) (int, error) {
	if len(c.in) > 0 {
		n := copy(p, c.in)
		c.in = c.in[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// readHead buffers a whole request head, checks it and queues it (or its
// stand-in) in c.out, setting the state for what follows it.
func (c *Conn) readHead() error {
	scanned := 0
	for {
		// After a POST, net/http skips up to four CR or LF bytes before
		// the next request line (RFC 9112 section 2.2's tolerance for
		// clients that send a CRLF after the body).
		skip := 0
		if c.lastPost {
			for skip < min(len(c.in), 4) && (c.in[skip] == '\r' || c.in[skip] == '\n') {
				skip++
			}
		}
		if end := HeadEnd(c.in[skip:], max(scanned-skip, 0)); end >= 0 {
			head := c.in[:skip+end]
			c.in = c.in[skip+end:]
			c.decide(head, skip)
			return nil
		}
		if len(c.in) > maxHead {
			// net/http refuses it with 431 and closes the connection.
			c.out, c.in = c.in, nil
			c.state = statePassthrough
			return nil
		}
		// Lines already scanned need no second look; back up over a
		// partial line ending.
		scanned = max(len(c.in)-3, 0)
		if err := c.fill(); err != nil {
			if len(c.in) > 0 && (err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF)) {
				// A truncated head: net/http sees it and its EOF.
				c.out, c.in = c.in, nil
				c.state = statePassthrough
				return nil
			}
			return err
		}
	}
}

// fill reads more from the socket into c.in.
func (c *Conn) fill() error {
	if len(c.in) == 0 {
		// Nothing buffered is still needed (c.out is empty too): start
		// over at the front of the buffer.
		c.in = c.buf[:0]
	}
	if len(c.in) == cap(c.in) {
		// Move what is left to the front of the buffer, or of a bigger
		// one when it is more than half full.
		if len(c.in) >= cap(c.buf)/2 {
			c.buf = make([]byte, 0, max(2*len(c.in), 4096))
		}
		c.in = c.buf[:copy(c.buf[:cap(c.buf)], c.in)]
	}
	n, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
	c.in = c.in[:len(c.in)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// HeadEnd returns the length of the head at the start of b, through the
// empty line that ends it, or -1 if b holds no whole head yet. Lines end in
// LF with an optional CR before it, as net/textproto reads them. An empty
// first line is a head of its own, which net/http refuses. The search
// starts at from, a position known to precede the end.
func HeadEnd(b []byte, from int) int {
	for i := from; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		lf := i + j
		i = lf + 1
		switch {
		case lf == 0, lf == 1 && b[0] == '\r':
			return i
		case b[lf-1] == '\n', b[lf-1] == '\r' && lf >= 2 && b[lf-2] == '\n':
			return i
		}
	}
}

// decide checks one request head, which starts after skip bytes of line
// endings net/http ignores, and queues it or its stand-in.
func (c *Conn) decide(head []byte, skip int) {
	if c.onHead != nil {
		c.onHead(head[skip:])
	}
	first := c.first
	c.first = false
	h := parseHead(head[skip:])
	c.lastPost = h.post
	switch {
	case h.malformed:
		// net/http refuses it and closes the connection.
		c.out = head
		c.state = statePassthrough
	case first && h.prefaceH2:
		// HTTP/2 with prior knowledge: net/http checks the rest of the
		// preface and serves HTTP/2 frames from here on.
		c.out = head
		c.state = statePassthrough
	case h.transferEncoding && h.contentLength:
		c.refuse(ReasonConflictingFraming)
	case h.chunked:
		c.out = head
		c.state = stateChunkLine
	case h.length > 0:
		c.out = head
		c.n = h.length
		c.state = stateBody
	case h.length < 0:
		// A Content-Length net/http refuses (answering 400 and closing):
		// nothing after this head is HTTP/1 framing we can follow.
		c.out = head
		c.state = statePassthrough
	default:
		c.out = head
		c.state = stateHead
	}
}

// refuse replaces the head being decided with the stand-in and ends the
// stream after it.
func (c *Conn) refuse(reason string) {
	var secret [16]byte
	_, _ = rand.Read(secret[:]) // never fails (crypto/rand)
	marker := hex.EncodeToString(secret[:])
	c.mu.Lock()
	c.marker, c.reason = marker, reason
	c.mu.Unlock()
	c.out = []byte("GET / HTTP/1.1\r\nHost: refused.weft.invalid\r\nConnection: close\r\n" +
		MarkerHeader + ": " + marker + "\r\n\r\n")
	c.in = nil
	c.state = stateRejected
}

// readChunked hands over chunked body bytes, following the chunk framing
// to find where the body, trailers included, ends.
func (c *Conn) readChunked(p []byte) (int, error) {
	fromBuffer := len(c.in) > 0
	var src []byte
	if fromBuffer {
		src = c.in[:min(len(c.in), len(p))]
	} else {
		n, err := c.Conn.Read(p)
		if n == 0 {
			return 0, err
		}
		src = p[:n]
	}
	used, err := c.scanChunked(src)
	if err != nil {
		return 0, err
	}
	if fromBuffer {
		copy(p, c.in[:used])
		c.in = c.in[used:]
	} else if used < len(src) {
		// The body ended inside this read: the rest is the next head's.
		c.in = append(c.in[:0], src[used:]...)
	}
	return used, nil
}

// scanChunked advances the chunked states over b and returns how many
// bytes of b belong to the body; fewer than len(b) only when the body ends.
func (c *Conn) scanChunked(b []byte) (int, error) {
	i := 0
	for i < len(b) {
		switch c.state {
		case stateChunkData:
			k := int(min(int64(len(b)-i), c.n))
			i += k
			c.n -= int64(k)
			if c.n == 0 {
				c.state = stateChunkCRLF
				c.n = 2
			}
		case stateChunkCRLF:
			want := "\r\n"[2-c.n]
			if b[i] != want {
				return 0, errFraming
			}
			i++
			c.n--
			if c.n == 0 {
				c.state = stateChunkLine
			}
		case stateChunkLine, stateTrailer:
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				c.line = append(c.line, b[i:]...)
				if len(c.line) > maxHead {
					return 0, errFraming
				}
				i = len(b)
				continue
			}
			c.line = append(c.line, b[i:i+j+1]...)
			i += j + 1
			line := c.line
			c.line = c.line[:0]
			if c.state == stateTrailer {
				if isEmptyLine(line) {
					c.state = stateHead
					return i, nil
				}
				continue
			}
			size, err := chunkSize(line)
			if err != nil {
				return 0, err
			}
			if size == 0 {
				c.state = stateTrailer
			} else {
				c.state = stateChunkData
				c.n = size
			}
		default:
			return i, nil
		}
	}
	return i, nil
}

// isEmptyLine reports whether line (LF included) is empty, as
// net/textproto reads lines.
func isEmptyLine(line []byte) bool {
	return len(line) == 1 || (len(line) == 2 && line[0] == '\r')
}

// chunkSize parses a chunk-size line (CRLF included) with net/http's
// rules: CRLF and no other CR, at most 4096 bytes, trailing spaces and an
// extension after ';' ignored, 1 to 16 hex digits.
func chunkSize(line []byte) (int64, error) {
	if len(line) < 2 || line[len(line)-2] != '\r' || bytes.IndexByte(line, '\r') != len(line)-2 {
		return 0, errFraming
	}
	line = line[:len(line)-2]
	if len(line) >= maxChunkLine {
		return 0, errFraming
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 16 {
		return 0, errFraming
	}
	var n uint64
	for _, b := range line {
		var d byte
		switch {
		case '0' <= b && b <= '9':
			d = b - '0'
		case 'a' <= b && b <= 'f':
			d = b - 'a' + 10
		case 'A' <= b && b <= 'F':
			d = b - 'A' + 10
		default:
			return 0, errFraming
		}
		n = n<<4 | uint64(d)
	}
	if n > 1<<62 {
		return 0, errFraming
	}
	return int64(n), nil
}

// head is what framing needs of a request head.
type head struct {
	malformed        bool  // no request line: net/http refuses the head
	post             bool  // the method is POST
	prefaceH2        bool  // "PRI * HTTP/2.0", HTTP/2's connection preface
	transferEncoding bool  // a Transfer-Encoding header, whatever its value
	contentLength    bool  // a Content-Length header, whatever its value
	chunked          bool  // the body is chunked, as net/http reads it
	length           int64 // the Content-Length body's length; -1 if net/http refuses the value
}

// parseHead reads the framing of a request head (request line, header
// lines, the empty line) as net/http does. A line that starts with a space
// or tab continues the previous one and names no header.
func parseHead(b []byte) head {
	var h head
	requestLine, rest, _ := bytes.Cut(b, []byte{'\n'})
	requestLine = bytes.TrimSuffix(requestLine, []byte{'\r'})
	if len(requestLine) == 0 {
		h.malformed = true
		return h
	}
	if string(requestLine) == "PRI * HTTP/2.0" && isEmptyLine(rest) {
		h.prefaceH2 = true
		return h
	}
	h.post = bytes.HasPrefix(requestLine, []byte("POST "))
	var clValue []byte
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			h.transferEncoding = true
		case bytes.EqualFold(name, []byte("Content-Length")):
			value = bytes.Trim(bytes.TrimSuffix(value, []byte{'\r'}), " \t")
			if h.contentLength && !bytes.Equal(value, clValue) {
				h.length = -1 // differing values: net/http refuses them
			}
			if !h.contentLength {
				h.contentLength = true
				clValue = value
				h.length = parseLength(value)
			}
		}
	}
	h.chunked = h.transferEncoding && atLeastHTTP11(requestLine)
	return h
}

// parseLength parses a Content-Length value as net/http does, or returns
// -1 for one it refuses.
func parseLength(v []byte) int64 {
	if len(v) == 0 {
		return -1
	}
	var n int64
	for _, b := range v {
		if b < '0' || b > '9' || n > (math.MaxInt64-9)/10 {
			return -1
		}
		n = n*10 + int64(b-'0')
	}
	return n
}

// atLeastHTTP11 reports whether the request line's version is HTTP/1.1 or
// later; net/http ignores Transfer-Encoding on HTTP/1.0 requests.
func atLeastHTTP11(requestLine []byte) bool {
	i := bytes.LastIndexByte(requestLine, ' ')
	proto := requestLine[i+1:]
	if len(proto) != len("HTTP/1.1") || !bytes.HasPrefix(proto, []byte("HTTP/")) || proto[6] != '.' {
		return false
	}
	major, minor := proto[5], proto[7]
	return major > '1' || (major == '1' && minor >= '1')
}
