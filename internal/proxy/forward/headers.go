package forward

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 plus the
// legacy ones proxies still see. They describe one connection, so they are
// never relayed to the next hop.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer", // the transport writes its own from Request.Trailer / the server from announced trailers
	"Transfer-Encoding",
	"Upgrade",
}

// Shared, read-only header values: assigning them avoids allocating a new
// slice per request. Nothing in net/http writes into a value slice.
var (
	teTrailers = []string{"trailers"}
	emptyValue = []string{""}
	textPlain  = []string{"text/plain"}
	trueValue  = []string{"true"}
	nosniff    = []string{"nosniff"}
)

// removeHopByHop deletes hop-by-hop headers from h in place, including the
// ones the Connection header names. On requests, "TE: trailers" survives:
// it tells the upstream the client understands trailers (gRPC needs it).
func removeHopByHop(h http.Header, request bool) {
	keepTE := request && containsToken(h["Te"], "trailers")
	for _, v := range h["Connection"] {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if name = textproto.TrimString(name); name != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
	if keepTE {
		h["Te"] = teTrailers
	}
}

// containsToken reports whether a comma-separated header holds token,
// ignoring case and parameters' absence (";q=" forms count as a match).
func containsToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			t, _, _ = strings.Cut(t, ";")
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}
