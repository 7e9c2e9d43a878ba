// Package normalize puts each HTTP request into one canonical form before
// the proxy routes it or applies policy to it, and rejects the requests
// that could be read two ways.
//
// It runs once per request, first thing on every listener, and edits the
// request in place: the path, the request target and the host that routing
// and the HTTP filters read are the ones written to the upstream, so what
// policy judged is, byte for byte, what the application receives. Nothing
// downstream re-derives them.
//
// What a request becomes:
//
//   - Path: the request target's path, with the fragment (anything from a
//     raw '#') dropped and the query kept apart, then
//     1. percent-escapes checked (a '%' must start two hex digits; %00 is
//     refused), escapes of unreserved characters (ALPHA, DIGIT, '-', '.',
//     '_', '~') decoded, the other escapes upper-cased, bytes that may not
//     appear in a path (RFC 3986 pchar) percent-encoded, and a raw '\'
//     turned into '/', as browsers and Envoy's normalize_path do;
//     %2F and %5C are kept, decoded to '/' or refused, per
//     Options.EscapedSlashes;
//     2. runs of '/' merged into one when Options.MergeSlashes;
//     3. "." and ".." segments removed (RFC 3986 section 5.2.4). A segment
//     "." or ".." followed by ";" (Tomcat reads "..;" as "..") is refused.
//     The result is idempotent: normalizing it again changes nothing.
//   - Query: kept as sent (minus the fragment); it takes no part in path
//     matching and is forwarded unchanged.
//   - Host: lower-cased; the port stays as the client sent it, since the
//     route table's domains carry it ("reviews" and "reviews:80" are both
//     listed). Routing, RBAC's :authority and the upstream all read this
//     one value.
//   - Method: one of GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH,
//     exactly (upper case); anything else is refused, and CONNECT gets 405.
//
// (Headers only the proxy may set, x-forwarded-client-cert and x-weft-*,
// are dropped by the forwarding engine before this runs.)
//
// What net/http already refuses before a handler runs, and so is not
// checked again here (internal/proxy/hygiene_test.go pins each down): NUL,
// CR and LF in header names and values (HTTP/1.1 and HTTP/2), control
// characters in the request target, several differing Content-Length
// values, invalid Content-Length values, transfer codings other than
// chunked, several Host headers and invalid Host values. A request with
// both Content-Length and Transfer-Encoding, which net/http would read as
// chunked, never gets here: the listener's framing guard (package
// framing) refuses it with 400.
package normalize

import (
	"net/http"
	"strings"
)

// EscapedSlashes says what to do with %2F and %5C in a path; the values
// mirror Envoy's path_with_escaped_slashes_action.
type EscapedSlashes uint8

// The actions on escaped slashes.
const (
	// KeepEscapedSlashes leaves %2F and %5C as they are (upper-cased).
	KeepEscapedSlashes EscapedSlashes = iota
	// UnescapeSlashes decodes %2F and %5C to '/' before slashes are merged
	// and dot segments removed (Istio's DECODE_AND_MERGE_SLASHES, Envoy's
	// UNESCAPE_AND_FORWARD).
	UnescapeSlashes
	// RejectEscapedSlashes refuses a request whose path holds %2F or %5C.
	RejectEscapedSlashes
)

func (e EscapedSlashes) String() string {
	switch e {
	case UnescapeSlashes:
		return "UNESCAPE_AND_FORWARD"
	case RejectEscapedSlashes:
		return "REJECT_REQUEST"
	}
	return "KEEP_UNCHANGED"
}

// Options is a listener's normalization setting, from its
// HttpConnectionManager. The zero value is Istio's BASE: RFC 3986
// normalization only.
type Options struct {
	// MergeSlashes merges runs of '/' (HCM merge_slashes).
	MergeSlashes bool `json:"merge_slashes"`
	// EscapedSlashes is what happens to %2F and %5C (HCM
	// path_with_escaped_slashes_action).
	EscapedSlashes EscapedSlashes `json:"path_with_escaped_slashes_action"`
}

// The mesh-wide modes of --path-normalization.
var (
	Base                  = Options{}
	MergeSlashes          = Options{MergeSlashes: true}
	DecodeAndMergeSlashes = Options{MergeSlashes: true, EscapedSlashes: UnescapeSlashes}
)

// MarshalJSON shows the escaped-slashes action by name in config dumps.
func (e EscapedSlashes) MarshalJSON() ([]byte, error) { return []byte(`"` + e.String() + `"`), nil }

// Rejection is why a request is refused: the status and a one-line body.
// Rejections are shared values; never modify one.
type Rejection struct {
	Status int
	Reason string
}

func (r *Rejection) Error() string { return r.Reason }

func reject(status int, reason string) *Rejection { return &Rejection{Status: status, Reason: reason} }

// The rejections. Each is allocated once.
var (
	errInvalidEscape  = reject(http.StatusBadRequest, "invalid percent-encoding in path")
	errNUL            = reject(http.StatusBadRequest, "NUL (%00) in path")
	errControl        = reject(http.StatusBadRequest, "control character in path")
	errEscapedSlash   = reject(http.StatusBadRequest, "escaped slash (%2F or %5C) in path")
	errDotParams      = reject(http.StatusBadRequest, "dot segment with parameters (\".;\" or \"..;\") in path")
	errNotAbsolute    = reject(http.StatusBadRequest, "request target is not an absolute path")
	errMethod         = reject(http.StatusBadRequest, "unknown or malformed method")
	errConnect        = reject(http.StatusMethodNotAllowed, "CONNECT is not supported")
	errAsteriskTarget = reject(http.StatusBadRequest, "request target \"*\" is only allowed with OPTIONS")
)

// Request normalizes r in place, as the package comment describes, and
// returns its normalized path (without the query), or why r is refused. A
// refused request may have been partly edited; it must not be forwarded.
//
// On success r.URL (Path, RawPath, RawQuery), r.RequestURI and r.Host
// agree with each other and with the returned path; the forwarding engine
// writes r.URL.RequestURI() upstream, which is the normalized target.
// A request that needs no change costs no allocation.
func Request(r *http.Request, o Options) (string, *Rejection) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodOptions, http.MethodTrace, http.MethodPatch:
	case http.MethodConnect:
		return "", errConnect
	default:
		return "", errMethod
	}

	target := r.RequestURI
	if target == "" || target[0] != '/' {
		// Absolute form ("GET http://reviews/x"), "*", or a request built
		// in process (RequestURI empty). net/http parsed the target.
		if target == "*" {
			if r.Method != http.MethodOptions {
				return "", errAsteriskTarget
			}
			r.Host = lowerASCII(r.Host)
			return "*", nil
		}
		if r.URL.Opaque != "" {
			return "", errNotAbsolute
		}
		if raw, ok := absoluteFormTarget(target); ok {
			// Normalize the bytes the client sent, exactly as for origin
			// form: net/http's parsed URL has re-escaped them (a raw '\'
			// becomes %5C, a '#' stays in the path as %23).
			target = raw
		} else {
			target = r.URL.EscapedPath()
			if target == "" {
				target = "/"
			}
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
		}
	}
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	path, query, hasQuery := strings.Cut(target, "?")
	np, rej := Path(path, o)
	if rej != nil {
		return "", rej
	}

	// Write the one normalized form everywhere it is read, allocating only
	// what changed. RawPath is the exact bytes to send: it is a valid
	// encoding of Path by construction (only pchar, '/' and upper-case
	// escapes), so URL.EscapedPath, which the upstream request is written
	// from, returns it unchanged.
	if np != path || target != r.RequestURI || hasQuery && query == "" {
		if query != "" {
			r.RequestURI = np + "?" + query
		} else {
			r.RequestURI = np
		}
	}
	u := r.URL
	u.Fragment, u.RawFragment = "", ""
	u.RawQuery, u.ForceQuery = query, false
	if !(u.RawPath == "" && u.Path == np) && u.RawPath != np {
		u.RawPath = np
		u.Path = unescapePath(np)
	}
	r.Host = lowerASCII(r.Host)
	return np, nil
}

// Path normalizes a request path (percent-encoded, without query or
// fragment), as the package comment describes. A path that is already
// normalized is returned as is, without allocating.
func Path(p string, o Options) (string, *Rejection) {
	if p == "" || p[0] != '/' {
		return "", errNotAbsolute
	}
	if isNormal(p, o) {
		return p, nil
	}
	buf := make([]byte, 0, len(p)+8)
	buf, rej := canonicalBytes(buf, p, o)
	if rej != nil {
		return "", rej
	}
	if o.MergeSlashes {
		buf = mergeSlashes(buf)
	}
	buf, rej = removeDotSegments(buf)
	if rej != nil {
		return "", rej
	}
	return string(buf), nil
}

// isNormal reports whether p is already in normal form, with one pass and
// no allocation: only pchar and '/', upper-case escapes of characters that
// stay escaped, no dot segment, and no "//" when merging.
func isNormal(p string, o Options) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/':
			if i+1 < len(p) {
				switch p[i+1] {
				case '/':
					if o.MergeSlashes {
						return false
					}
				case '.':
					// "/." or "/.." followed by '/', ';' or the end.
					j := i + 2
					if j < len(p) && p[j] == '.' {
						j++
					}
					if j == len(p) || p[j] == '/' || p[j] == ';' {
						return false
					}
				}
			}
		case c == '%':
			if i+2 >= len(p) || !isUpperHex(p[i+1]) || !isUpperHex(p[i+2]) {
				return false
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			if v == 0 || isUnreserved(v) || (v == '/' || v == '\\') && o.EscapedSlashes != KeepEscapedSlashes {
				return false
			}
			i += 2
		case !isPchar(c):
			return false
		}
	}
	return true
}

// canonicalBytes appends p to buf with escapes checked, unreserved escapes
// decoded, other escapes upper-cased, bytes outside pchar escaped and '\'
// turned into '/'.
func canonicalBytes(buf []byte, p string, o Options) ([]byte, *Rejection) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return nil, errInvalidEscape
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			switch {
			case v == 0:
				return nil, errNUL
			case isUnreserved(v):
				buf = append(buf, v)
			case v == '/' || v == '\\':
				switch o.EscapedSlashes {
				case UnescapeSlashes:
					buf = append(buf, '/')
				case RejectEscapedSlashes:
					return nil, errEscapedSlash
				default:
					buf = append(buf, '%', upperHex[v>>4], upperHex[v&15])
				}
			default:
				buf = append(buf, '%', upperHex[v>>4], upperHex[v&15])
			}
		case c == '\\':
			buf = append(buf, '/')
		case c == '/' || isPchar(c):
			buf = append(buf, c)
		case c < 0x20 || c == 0x7f:
			// net/http refuses these in the request line; Path may be
			// called on other input.
			return nil, errControl
		default:
			buf = append(buf, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return buf, nil
}

// mergeSlashes collapses each run of '/' in b into one, in place.
func mergeSlashes(b []byte) []byte {
	w := 0
	for r := 0; r < len(b); r++ {
		if b[r] == '/' && w > 0 && b[w-1] == '/' {
			continue
		}
		b[w] = b[r]
		w++
	}
	return b[:w]
}

// removeDotSegments applies RFC 3986 section 5.2.4 to an absolute path, in
// place (the output is never longer than the input read so far).
func removeDotSegments(b []byte) ([]byte, *Rejection) {
	out := b[:0]
	for i := 0; i < len(b); {
		// b[i] == '/': the segment runs to the next '/' or the end.
		j := i + 1
		for j < len(b) && b[j] != '/' {
			j++
		}
		seg := b[i+1 : j]
		last := j == len(b)
		switch {
		case len(seg) == 1 && seg[0] == '.':
			if last {
				out = append(out, '/')
			}
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			k := len(out) - 1
			for k >= 0 && out[k] != '/' {
				k--
			}
			out = out[:max(k, 0)]
			if last {
				out = append(out, '/')
			}
		case len(seg) >= 2 && seg[0] == '.' && (seg[1] == ';' || len(seg) >= 3 && seg[1] == '.' && seg[2] == ';'):
			return nil, errDotParams
		default:
			out = append(out, b[i:j]...)
		}
		i = j
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return out, nil
}

// unescapePath decodes every escape of a normalized path, for URL.Path.
// The path was validated, so it cannot fail.
func unescapePath(p string) string {
	if strings.IndexByte(p, '%') < 0 {
		return p
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			b = append(b, unhex(p[i+1])<<4|unhex(p[i+2]))
			i += 2
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

// lowerASCII lower-cases s without allocating when it already is
// lower-case, the common case for hosts.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// isUnreserved reports RFC 3986 unreserved characters.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isPchar reports RFC 3986 pchar characters other than pct-encoded:
// unreserved, sub-delims, ':' and '@'.
func isPchar(c byte) bool {
	if isUnreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@':
		return true
	}
	return false
}

// absoluteFormTarget returns the path, query and fragment of an
// absolute-form request target ("http://host:port/p?q#f" → "/p?q#f") as
// the client wrote them; ok is false when target is not absolute form.
func absoluteFormTarget(target string) (raw string, ok bool) {
	i := strings.Index(target, "://")
	if i <= 0 {
		return "", false
	}
	rest := target[i+3:]
	j := strings.IndexAny(rest, "/?#")
	if j < 0 {
		return "/", true
	}
	if rest[j] != '/' {
		return "/" + rest[j:], true
	}
	return rest[j:], true
}
