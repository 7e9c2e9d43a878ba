package forward

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// readResponse reads the next response head from br, for the request out.
// The common response (HTTP/1.1, a final status that has a body, one
// Content-Length, nothing that changes the framing or the header map
// after parsing) is parsed here, straight from br's buffer, into res and
// body, which the caller owns; anything else is left to http.ReadResponse,
// which then reads the same bytes. The profile of a plaintext sidecar at
// the maximum rate had http.ReadResponse at a third of the proxy's
// allocations (textproto's reader, the transfer decoding, a LimitReader,
// a body, the Response), for a head that is nearly always the same shape.
// FuzzResponseAgreesWithNetHTTP holds the two to the same result.
func readResponse(br *bufio.Reader, out *http.Request, res *http.Response, body *lengthBody, hdr *http.Header) (*http.Response, error) {
	if parseResponse(br, out, res, body, hdr) {
		return res, nil
	}
	return http.ReadResponse(br, out)
}

// parseResponse parses the response head buffered in br into res, with
// body as its body, and consumes it. It returns false, consuming nothing,
// when the head is not whole in the buffer or not of the common kind; on
// true, res is what http.ReadResponse would return.
//
// res.Header is *hdr, emptied and filled again, or a new map that *hdr
// then keeps: the connection's, reused from response to response, since
// the engine copies a response's header entries (not the map) to the
// client's response before the connection can carry another exchange.
func parseResponse(br *bufio.Reader, out *http.Request, res *http.Response, body *lengthBody, hdrp *http.Header) bool {
	if out.Method == http.MethodHead {
		return false // a length but no body: net/http's rule
	}
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, crlfcrlf)
	if end < 0 {
		return false
	}
	line, _, _ := bytes.Cut(buf[:end+2], crlf) // end+2: through the last header line's CRLF
	// "HTTP/1.1 200" and an optional reason phrase, as ReadLine would
	// give it: no CR or other control byte inside.
	if len(line) < 12 || string(line[:9]) != "HTTP/1.1 " || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) ||
		len(line) > 12 && line[12] != ' ' || bytes.IndexByte(line, '\n') >= 0 || hasControl(line[9:]) {
		return false
	}
	code := int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return false // 1xx, 204 and 304 have no body; net/http decides those
	}

	// One string for the whole head, from the status code on; every name
	// and value is a substring.
	head := string(buf[9 : end+2])
	status, rest := head[:len(line)-9], head[len(line)-9+2:]
	lines := strings.Count(rest, "\n")
	hdr := *hdrp
	if hdr == nil {
		hdr = make(http.Header, lines)
		*hdrp = hdr
	} else {
		clear(hdr)
	}
	vals := make([]string, 0, lines)
	length, seenLength := "", false
	for rest != "" {
		var l string
		l, rest, _ = strings.Cut(rest, "\n")
		l, ok := strings.CutSuffix(l, "\r")
		if !ok || l == "" || l[0] == ' ' || l[0] == '\t' || strings.IndexByte(l, '\r') >= 0 {
			return false // a bare LF, obsolete folding, a stray CR
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || !validFieldName(name) {
			return false
		}
		value = trimOWS(value)
		if !validFieldValue(value) { // what net/textproto accepts too
			return false
		}
		key := http.CanonicalHeaderKey(name)
		switch key {
		case "Content-Length":
			if seenLength { // even when the first was empty
				return false // repeated: net/http folds or refuses
			}
			length, seenLength = value, true
		case "Transfer-Encoding", "Connection", "Trailer", "Pragma":
			// Other framing, a connection to close (net/http also drops
			// the header), trailers, Pragma's Cache-Control rewrite.
			return false
		}
		vals = append(vals, value)
		if vv, ok := hdr[key]; ok {
			hdr[key] = append(vv, value)
		} else {
			hdr[key] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	if length == "" || length[0] == '+' {
		return false // read to the connection's end, or an odd length
	}
	n, err := strconv.ParseUint(length, 10, 63)
	if err != nil {
		return false
	}
	_, _ = br.Discard(end + 4)

	*res = http.Response{
		Status:        status,
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        hdr,
		ContentLength: int64(n),
		Request:       out,
	}
	if n == 0 {
		res.Body = http.NoBody
	} else {
		*body = lengthBody{r: br, n: int64(n)}
		res.Body = body
	}
	return true
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// hasControl reports whether b holds a control byte (tab included) or DEL.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// trimOWS trims spaces and tabs at both ends, as net/textproto does.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// lengthBody is a response body of known length read from the upstream
// connection's buffered reader. It ends with io.EOF after exactly n bytes,
// and with io.ErrUnexpectedEOF if the connection ends first, as net/http's
// body does.
type lengthBody struct {
	r *bufio.Reader
	n int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if b.n <= 0 {
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Close does nothing: the exchange decides what happens to the connection.
func (b *lengthBody) Close() error { return nil }
