package forward

import (
	"encoding/hex"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/weft-mesh/weft/internal/proxy/peer"
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

// xfccHeader is x-forwarded-client-cert, canonical.
const xfccHeader = "X-Forwarded-Client-Cert"

// internalPrefix starts the names of weft's own headers.
const internalPrefix = "X-Weft-"

// sanitize applies the listener's trust rules to a request's headers
// before anything reads them: a client-sent x-forwarded-client-cert is
// dropped, and set from the verified peer when the listener says so;
// x-weft-* headers are dropped where they would come from another
// workload. Routing, policy and the upstream all see the result.
func sanitize(r *http.Request, l *Listener) {
	h := r.Header
	delete(h, xfccHeader)
	if l.DropInternalHeaders {
		for k := range h {
			if len(k) >= len(internalPrefix) && strings.EqualFold(k[:len(internalPrefix)], internalPrefix) {
				delete(h, k)
			}
		}
	}
	if l.SetClientCert {
		if info, ok := peer.FromContext(r.Context()); ok && info.TLS {
			// The value is the connection's, so it is made once per
			// connection: two allocations a request less.
			v, _ := info.ClientCertHeader.Load().([]string)
			if v == nil {
				v = []string{clientCertValue(info)}
				info.ClientCertHeader.Store(v)
			}
			h[xfccHeader] = v[:1:1]
		}
	}
}

// clientCertValue is the x-forwarded-client-cert Envoy's SANITIZE_SET
// with the URI sets: By=<own SPIFFE ID>;Hash=<hex SHA-256 of the peer's
// leaf>;URI=<peer SPIFFE ID>.
func clientCertValue(info *peer.Info) string {
	var b strings.Builder
	b.Grow(len("By=;Hash=;URI=") + len(info.LocalSpiffeID) + 2*len(info.LeafSHA256) + len(info.SpiffeID))
	if info.LocalSpiffeID != "" {
		b.WriteString("By=")
		b.WriteString(info.LocalSpiffeID)
		b.WriteByte(';')
	}
	b.WriteString("Hash=")
	var hx [64]byte
	hex.Encode(hx[:], info.LeafSHA256[:])
	b.Write(hx[:])
	if info.SpiffeID != "" {
		b.WriteString(";URI=")
		b.WriteString(info.SpiffeID)
	}
	return b.String()
}

// admitted reports whether the request's connection is of a kind the
// listener serves now.
func admitted(r *http.Request, l *Listener) bool {
	info, ok := peer.FromContext(r.Context())
	tls := ok && info.TLS
	return !(tls && l.RefuseTLS || !tls && l.RefusePlaintext)
}
