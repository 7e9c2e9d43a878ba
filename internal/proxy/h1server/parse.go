package h1server

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/weft-mesh/weft/internal/proxy/requri"
)

// head is one request head as the loop parsed it, or the reason it must
// go to net/http instead.
type head struct {
	method, target string
	url            url.URL // copied into the request's own (response.url)
	proto11        bool
	header         http.Header
	host           string
	contentLength  int64
	close          bool // the client asked to close after the response
	wantsClose     bool // the server's reading of Connection: close
	keepAlive10    bool // an HTTP/1.0 client asked for keep-alive
}

// parseHead parses a whole request head (request line, header lines, the
// empty line) strictly. It returns false for anything the loop leaves to
// net/http: whatever net/http refuses (it answers with its own error),
// whatever needs more than a Content-Length body (Transfer-Encoding,
// Expect, Upgrade, Trailer), CONNECT and HTTP/2's preface, and whatever
// is unusual enough that agreeing with net/http byte for byte is not worth
// the code (obsolete line folding, bare LF line endings, a repeated
// Content-Length). On true, h describes the request exactly as net/http's
// server would.
//
// Every string in h is a substring of one copy of b. h.header, when not
// nil, is emptied and filled again.
func parseHead(b []byte, h *head) bool {
	if len(b) < 4 || string(b[len(b)-4:]) != "\r\n\r\n" {
		return false
	}
	s := string(b)
	line, rest, _ := strings.Cut(s, "\n")
	line, ok := strings.CutSuffix(line, "\r")
	if !ok || hasCTL(line) {
		// Controls in the request line are net/http's 400 (a CR, or a
		// control character in the target).
		return false
	}
	method, rest0, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest0, " ")
	if !ok1 || !ok2 || !validToken(method) || target == "" {
		return false
	}
	switch proto {
	case "HTTP/1.1":
		h.proto11 = true
	case "HTTP/1.0":
		h.proto11 = false
	default:
		return false // HTTP/0.9 has no version; PRI is HTTP/2.0; others are 505s
	}
	if method == http.MethodConnect || method == "PRI" {
		return false
	}
	if err := requri.Parse(&h.url, target); err != nil {
		return false
	}
	h.method, h.target = method, target

	// One value slot per line, as net/textproto sizes its map. The map is
	// the connection's, kept from its last request (serveRequest empties
	// it once the handler is done with it): a map and its table less per
	// request.
	lines := strings.Count(rest, "\n") - 1
	hdr := h.header
	if hdr == nil {
		hdr = make(http.Header, lines)
	} else {
		clear(hdr)
	}
	vals := make([]string, 0, lines)
	var hosts, lengths int
	var host, length string
	for {
		line, rest, _ = strings.Cut(rest, "\n")
		line, ok = strings.CutSuffix(line, "\r")
		if !ok {
			return false
		}
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return false // obsolete line folding
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !validToken(name) {
			// No colon, an empty name, a space before the colon, or a
			// byte no name may hold: net/http's 400.
			return false
		}
		value = trimOWS(value)
		if !validValue(value) {
			return false // NUL, CR, another control: net/http's 400
		}
		key := http.CanonicalHeaderKey(name)
		switch key {
		case "Host":
			hosts++
			host = value
			continue // net/http moves it to Request.Host
		case "Content-Length":
			lengths++
			length = value
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer":
			return false
		}
		vals = append(vals, value)
		if vv, ok := hdr[key]; ok {
			hdr[key] = append(vv, value)
		} else {
			hdr[key] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	switch {
	case hosts > 1, hosts == 0 && h.proto11, hosts == 1 && !httpguts.ValidHostHeader(host):
		return false
	}
	h.host = h.url.Host
	if h.host == "" {
		h.host = host
	}
	h.contentLength = 0
	if lengths > 1 {
		return false // differing: net/http's 400; identical: net/http folds them
	}
	if lengths == 1 {
		n, err := strconv.ParseUint(length, 10, 63)
		if err != nil || length[0] == '+' {
			return false
		}
		h.contentLength = int64(n)
	}
	// As net/http: "Pragma: no-cache" alone means "Cache-Control: no-cache".
	if p := hdr["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := hdr["Cache-Control"]; !ok {
			hdr["Cache-Control"] = []string{"no-cache"}
		}
	}
	// Request.Close as net/http sets it (the whole list), and what its
	// server then acts on (the first value, token by token).
	conn := hdr["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conn, "close")
	if h.proto11 {
		h.close = hasClose
	} else {
		h.close = hasClose || !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	}
	var first string
	if len(conn) > 0 {
		first = conn[0]
	}
	h.wantsClose = hasToken(first, "close")
	h.keepAlive10 = !h.proto11 && hasToken(first, "keep-alive")
	h.header = hdr
	return true
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

func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b == 0x7f {
			return true
		}
	}
	return false
}

// validValue reports whether a field value holds no control character
// but tab.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}

// validToken reports whether s is a non-empty RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !httpguts.IsTokenRune(rune(s[i])) {
			return false
		}
	}
	return true
}
