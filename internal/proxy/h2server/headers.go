package h2server

import "net/http"

// commonHeaders are the header names whose lowercase wire form and
// canonical key are computed once, as net/http's HTTP/2 code keeps them.
var commonHeaders = []string{
	"accept", "accept-charset", "accept-encoding", "accept-language", "accept-ranges",
	"age", "access-control-allow-credentials", "access-control-allow-headers",
	"access-control-allow-methods", "access-control-allow-origin", "access-control-expose-headers",
	"access-control-max-age", "access-control-request-headers", "access-control-request-method",
	"allow", "authorization", "b3", "cache-control", "cdn-loop", "connection", "content-disposition",
	"content-encoding", "content-language", "content-length", "content-location", "content-range",
	"content-type", "cookie", "date", "etag", "expect", "expires", "from", "grpc-accept-encoding",
	"grpc-encoding", "grpc-message", "grpc-status", "grpc-status-details-bin", "grpc-timeout",
	"host", "if-match", "if-modified-since", "if-none-match", "if-unmodified-since",
	"keep-alive", "last-modified", "link", "location", "max-forwards", "origin", "priority",
	"proxy-authenticate", "proxy-authorization", "range", "referer", "refresh", "retry-after",
	"server", "set-cookie", "strict-transport-security", "te", "traceparent", "tracestate",
	"trailer", "transfer-encoding", "upgrade", "upgrade-insecure-requests", "user-agent", "vary",
	"via", "www-authenticate", "x-b3-parentspanid", "x-b3-sampled", "x-b3-spanid", "x-b3-traceid",
	"x-content-type-options", "x-envoy-attempt-count", "x-envoy-expected-rq-timeout-ms",
	"x-envoy-upstream-service-time", "x-forwarded-client-cert", "x-forwarded-for",
	"x-forwarded-host", "x-forwarded-proto", "x-frame-options", "x-request-id", "x-xss-protection",
}

var (
	commonCanonical = map[string]string{} // lowercase -> canonical
	commonLower     = map[string]string{} // canonical -> lowercase
)

func init() {
	for _, v := range commonHeaders {
		ck := http.CanonicalHeaderKey(v)
		commonCanonical[v] = ck
		commonLower[ck] = v
	}
}

// lowerHeader returns the HTTP/2 wire name of header key k, and false
// for a name that is not ASCII (which HTTP/2 cannot carry).
func lowerHeader(k string) (string, bool) {
	if v, ok := commonLower[k]; ok {
		return v, true
	}
	upper := false
	for i := 0; i < len(k); i++ {
		b := k[i]
		if b >= 0x80 {
			return "", false
		}
		if 'A' <= b && b <= 'Z' {
			upper = true
		}
	}
	if !upper {
		return k, true
	}
	b := []byte(k)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b), true
}
