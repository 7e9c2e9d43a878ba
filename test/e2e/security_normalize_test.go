package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The policies the variants run against: nobody may reach /admin, nor
// /public/internal under any of payments' names, nor /public/staff without
// "x-staff: yes"; and only /public/* is allowed at all.
const normalizePolicies = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-deny, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin", "/admin/*"]
  - to:
    - operation:
        hosts: ["payments", "payments.default", "payments.default.svc", "payments.default.svc.cluster.local"]
        paths: ["/public/internal*"]
  - to:
    - operation:
        paths: ["/public/staff*"]
    when:
    - key: request.headers[x-staff]
      notValues: ["yes"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-public, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  action: ALLOW
  rules:
  - to:
    - operation:
        paths: ["/public/*"]
`

// outcome is what one raw request must get: the status and, for a request
// the app answers, the request target and host it received.
type outcome struct {
	code   int
	target string
	host   string
	// body is what a local reply must say.
	body string
}

func ok(target string) outcome { return outcome{code: http.StatusOK, target: target} }

var (
	denied     = outcome{code: http.StatusForbidden, body: rbacDenied}
	badRequest = outcome{code: http.StatusBadRequest}
)

// rawVariant is a request written byte for byte: a request line and
// headers. Host: payments:9080 is added when it sets no Host, and
// Connection: close always, unless body is set (a second request hidden
// in a body must get its chance to be read).
type rawVariant struct {
	name    string
	line    string
	headers []string
	body    string
	want    outcome
	// decode, when set, is the outcome under DECODE_AND_MERGE_SLASHES.
	decode *outcome
	// outboundOnly variants are about routing by host, which only the
	// outbound listener does (an inbound listener serves any host).
	outboundOnly bool
}

func (v rawVariant) bytes() string {
	var b strings.Builder
	b.WriteString(v.line + "\r\n")
	hasHost := false
	for _, h := range v.headers {
		if strings.HasPrefix(strings.ToLower(h), "host:") {
			hasHost = true
		}
		b.WriteString(h + "\r\n")
	}
	if !hasHost {
		b.WriteString("Host: payments:9080\r\n")
	}
	if v.body == "" {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n" + v.body)
	return b.String()
}

func normalizeVariants() []rawVariant {
	abs := func(path string) string { return "GET http://payments:9080" + path + " HTTP/1.1" }
	v := func(name, line string, want outcome, headers ...string) rawVariant {
		return rawVariant{name: name, line: line, headers: headers, want: want}
	}
	dec := func(r rawVariant, o outcome) rawVariant { r.decode = &o; return r }
	withHost := func(o outcome, host string) outcome { o.host = host; return o }
	noRoute := outcome{code: http.StatusNotFound}
	out := func(r rawVariant, host string) rawVariant {
		r.outboundOnly = true
		r.want.body = `no route for host "` + host + `"`
		return r
	}
	return []rawVariant{
		v("an allowed path reaches the app", abs("/public/a"), ok("/public/a")),
		v("the denied path is denied", abs("/admin"), denied),
		v("a path no ALLOW rule names is denied", abs("/private"), denied),
		v("origin-form reaches the app too", "GET /public/a HTTP/1.1", ok("/public/a")),

		// Slashes.
		v("a double slash before admin", abs("//admin"), denied),
		v("origin-form //admin is a path, not an authority", "GET //admin HTTP/1.1", denied),
		v("a double slash inside public is merged", abs("/public//a"), ok("/public/a")),
		v("a leading double slash is merged", abs("//public/a"), ok("/public/a")),
		v("trailing slashes after admin", abs("/admin//"), denied),

		// Dot segments.
		v("dot-dot out of public into admin", abs("/public/../admin"), denied),
		v("dot then dot-dot", abs("/public/./../admin"), denied),
		v("a dot before admin", abs("/./admin"), denied),
		v("two levels up", abs("/public/a/../../admin"), denied),
		v("above the root", abs("/../admin"), denied),
		v("far above the root", abs("/../../../../admin"), denied),
		v("a dot segment inside public", abs("/public/./a"), ok("/public/a")),
		v("dot-dot inside public", abs("/public/b/../a"), ok("/public/a")),
		v("dot-dot with parameters (Tomcat's ..;) is refused", abs("/public/..;/admin"), badRequest),
		v("a parameter on a normal segment is kept", abs("/public/a;x"), ok("/public/a;x")),

		// Percent-encoding.
		v("an encoded letter of admin", abs("/%61dmin"), denied),
		v("encoded dot-dot", abs("/public/%2e%2e/admin"), denied),
		v("encoded dot-dot, upper case", abs("/public/%2E%2E/admin"), denied),
		v("half-encoded dot-dot", abs("/public/.%2e/admin"), denied),
		v("an encoded dot segment inside public", abs("/public/%2e/a"), ok("/public/a")),
		v("encoded unreserved characters are decoded", abs("/public/%61%7e%2D"), ok("/public/a~-")),
		v("other escapes are upper-cased", abs("/public/a%3ab"), ok("/public/a%3Ab")),
		dec(v("an encoded slash inside public", abs("/public/a%2fb"), ok("/public/a%2Fb")), ok("/public/a/b")),
		dec(v("dot-dot and an encoded slash", abs("/public/..%2Fadmin"), ok("/public/..%2Fadmin")), denied),
		dec(v("encoded dot-dot and an encoded slash", abs("/public/%2e%2e%2fadmin"), ok("/public/..%2Fadmin")), denied),
		dec(v("dot-dot and an encoded backslash", abs("/public/..%5Cadmin"), ok("/public/..%5Cadmin")), denied),
		dec(v("dot-dot and a lower-case encoded backslash", abs("/public/..%5cadmin"), ok("/public/..%5Cadmin")), denied),
		v("an encoded slash before admin", abs("/%2Fadmin"), denied),
		v("double encoding is not decoded twice", abs("/public/%252e%252e/admin"), ok("/public/%252e%252e/admin")),
		v("an encoded NUL is refused", abs("/public/%00"), badRequest),
		v("an invalid escape is refused", abs("/public/%zz"), badRequest),
		v("a truncated escape is refused", abs("/public/%2"), badRequest),

		// Backslashes.
		v("raw backslashes and dot-dot", abs(`/public\..\admin`), denied),
		v("a raw backslash inside public becomes a slash", abs(`/public/a\b`), ok("/public/a/b")),
		v("a raw backslash in origin-form becomes a slash", `GET /public/a\b HTTP/1.1`, ok("/public/a/b")),
		v("origin-form raw backslashes and dot-dot", `GET /public\..\admin HTTP/1.1`, denied),
		dec(v("an encoded slash stays encoded next to a raw backslash", abs(`/public/a%2Fb\c`), ok("/public/a%2Fb/c")), ok("/public/a/b/c")),

		// Fragment and query.
		v("a fragment after admin", abs("/admin#frag"), denied),
		v("a fragment hiding dot-dots is dropped", abs("/public/a#/../../admin"), ok("/public/a")),
		v("a fragment in origin-form is dropped", "GET /public/a#/../../admin HTTP/1.1", ok("/public/a")),
		v("a fragment is not part of the path", abs("/public/a#b"), ok("/public/a")),
		v("a query that looks like an allowed path", abs("/admin?/public/a"), denied),
		v("dot-dots in the query stay in the query", abs("/public/a?x=/../admin"), ok("/public/a?x=/../admin")),
		v("escapes in the query are forwarded as sent", abs("/public/a?%2e%2e&b=%2f"), ok("/public/a?%2e%2e&b=%2f")),

		// Case.
		v("paths are case-sensitive: ADMIN is not allowed either", abs("/ADMIN"), denied),
		v("paths are case-sensitive: Public is not public", abs("/Public/a"), denied),

		// Hosts: every name of payments, in any case, with or without the port.
		v("the host-scoped deny", abs("/public/internal"), denied),
		v("an upper-case host in the URL", "GET http://PAYMENTS:9080/public/internal HTTP/1.1", denied),
		v("a mixed-case host without a port", "GET http://Payments/public/internal HTTP/1.1", denied),
		v("a mixed-case Host header with the port", "GET /public/internal HTTP/1.1", denied, "Host: PaYmEnTs:9080"),
		v("the FQDN with the port", "GET /public/internal HTTP/1.1", denied, "Host: payments.default.svc.cluster.local:9080"),
		v("the FQDN in upper case", "GET /public/internal HTTP/1.1", denied, "Host: PAYMENTS.DEFAULT.SVC.CLUSTER.LOCAL"),
		v("the namespaced name", "GET /public/internal HTTP/1.1", denied, "Host: payments.default"),
		v("the .svc name in mixed case with the port", "GET /public/internal HTTP/1.1", denied, "Host: payments.Default.Svc:9080"),
		v("the URL's host wins over the Host header", "GET http://payments:9080/public/internal HTTP/1.1", denied, "Host: elsewhere"),
		v("the host is lower-cased for the app", "GET http://PAYMENTS:9080/public/x HTTP/1.1", withHost(ok("/public/x"), "payments:9080")),
		v("a host-scoped path normalized away", abs("/public/internal/../a"), ok("/public/a")),
		out(v("a trailing dot on the host finds no route", "GET /public/internal HTTP/1.1", noRoute, "Host: payments."), "payments."),
		out(v("a trailing dot and the port find no route", "GET /public/internal HTTP/1.1", noRoute, "Host: PAYMENTS.:9080"), "payments.:9080"),
		out(v("another port finds no route", "GET /public/internal HTTP/1.1", noRoute, "Host: payments:80"), "payments:80"),
		out(v("an unknown host finds no route", "GET /public/a HTTP/1.1", noRoute, "Host: elsewhere"), "elsewhere"),
		v("two Host headers are refused", "GET /public/a HTTP/1.1", badRequest, "Host: payments:9080", "Host: payments:9080"),
		v("two different Host headers are refused", "GET /public/internal HTTP/1.1", badRequest, "Host: payments:9080", "Host: elsewhere"),

		// Headers.
		v("staff without the header", abs("/public/staff"), denied),
		v("staff with the header", abs("/public/staff"), ok("/public/staff"), "x-staff: yes"),
		v("header names are case-insensitive", abs("/public/staff"), ok("/public/staff"), "X-STAFF: yes"),
		v("header values are case-sensitive", abs("/public/staff"), denied, "x-staff: YES"),
		v("a duplicate header: yes then no", abs("/public/staff"), denied, "x-staff: yes", "x-staff: no"),
		v("a duplicate header: no then yes", abs("/public/staff"), denied, "x-staff: no", "x-staff: yes"),
		v("a duplicate header: yes twice", abs("/public/staff"), denied, "x-staff: yes", "x-staff: yes"),
		v("a list in one header", abs("/public/staff"), denied, "x-staff: yes, no"),
		v("space before the colon is refused", abs("/public/staff"), badRequest, "x-staff : yes"),
		v("a staff path normalized away", abs("/public/staff/../a"), ok("/public/a")),
		v("a staff path normalized into", abs("/public/a/../staff"), denied),
		v("differing Content-Length headers are refused", "POST http://payments:9080/public/a HTTP/1.1", badRequest,
			"Content-Length: 1", "Content-Length: 2"),

		// Methods.
		v("a lower-case method is refused", "get http://payments:9080/public/a HTTP/1.1", badRequest),
		v("an unknown method is refused", "GETS http://payments:9080/public/a HTTP/1.1", badRequest),
	}
}

// smuggle is a chunked request with a Content-Length that would end its
// body early, followed by a request for /admin: a server that reads the
// length instead of the chunks sees the second request inside the first
// one's body, or the other way round. The proxy refuses the first with 400
// and closes the connection, so neither reaches the app.
const smuggle = "POST http://payments:9080/public/a HTTP/1.1\r\nHost: payments:9080\r\n" +
	"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
	"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: payments:9080\r\nConnection: close\r\n\r\n"

// pathProblem says why a path the app received is not in normal form, or
// "" if it is.
func pathProblem(path string, decodeSlashes bool) string {
	if !strings.HasPrefix(path, "/") {
		return "not absolute"
	}
	if strings.Contains(path, "//") {
		return "a double slash"
	}
	if strings.ContainsAny(path, "\\#") {
		return `a raw \ or #`
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			return "a dot segment"
		}
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '%' {
			continue
		}
		if i+2 >= len(path) {
			return "a truncated escape"
		}
		hx := path[i+1 : i+3]
		if strings.ToUpper(hx) != hx {
			return "a lower-case escape %" + hx
		}
		var c byte
		if _, err := fmt.Sscanf(hx, "%02X", &c); err != nil {
			return "an invalid escape %" + hx
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			return "an escaped unreserved character %" + hx
		}
		if decodeSlashes && (c == '/' || c == '\\') {
			return "an escaped slash %" + hx
		}
	}
	return ""
}

// deniedByPolicy says whether normalizePolicies deny what the app
// received: the check that nothing reached the app that policy would have
// refused, whatever the variant was.
func deniedByPolicy(e echoed) string {
	path := e.Path()
	host, _, _ := strings.Cut(strings.ToLower(e.Host), ":")
	switch {
	case !strings.HasPrefix(path, "/public/"):
		return "outside /public/"
	case path == "/admin" || strings.HasPrefix(path, "/admin/"):
		return "an /admin path"
	case strings.HasPrefix(path, "/public/internal") && (host == "payments" || strings.HasPrefix(host, "payments.default")):
		return "/public/internal on a payments host"
	case strings.HasPrefix(path, "/public/staff") && !(len(e.Header["X-Staff"]) == 1 && e.Header["X-Staff"][0] == "yes"):
		return fmt.Sprintf("/public/staff with x-staff %q", e.Header["X-Staff"])
	}
	return ""
}

// TestNoRequestVariantGetsPastPolicy sends a table of path, host and
// header variants, written byte for byte, against a DENY and an ALLOW
// policy: through a client sidecar's outbound listener (to payments over
// mTLS, where the policy runs) and as plaintext straight to payments'
// inbound port; under the default path normalization and under
// DECODE_AND_MERGE_SLASHES. No variant may reach what policy denies, and
// every request the app gets is the normalized one policy judged.
func TestNoRequestVariantGetsPastPolicy(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			decode := mode == "DECODE_AND_MERGE_SLASHES"
			m := startPolicyMesh(t, "--path-normalization", mode)
			m.cp.applyAccepted(t, normalizePolicies)
			eventually(t, 10*time.Second, "the policies apply", func() error {
				if code, _, _, err := call(m.orders, "GET", "http://payments:9080/private", nil); err != nil || code != http.StatusForbidden {
					return fmt.Errorf("/private: %d %v", code, err)
				}
				return nil
			})
			entries := []struct{ name, addr string }{
				{"through the orders sidecar", m.ordersSidecar.outboundAddr},
				{"plaintext to payments' inbound port", m.payments.inboundAddr},
			}
			for i, entry := range entries {
				t.Run(entry.name, func(t *testing.T) {
					for _, v := range normalizeVariants() {
						if v.outboundOnly && i > 0 {
							continue
						}
						want := v.want
						if decode && v.decode != nil {
							want = *v.decode
						}
						before := len(m.app.received())
						res, err := rawExchange(entry.addr, v.bytes())
						if err != nil {
							t.Errorf("%s: %q: %v, want %d", v.name, v.line, err, want.code)
							continue
						}
						r := res[0]
						e, fromApp := decodeEcho(r.body)
						if r.err != nil || r.code != want.code {
							t.Errorf("%s: %q: got %s, want %d %s", v.name, v.line, r, want.code, want.target)
						}
						if !fromApp {
							if !strings.Contains(r.body, want.body) {
								t.Errorf("%s: %q: got %s, want a body saying %q", v.name, v.line, r, want.body)
							}
							if n := len(m.app.received()); n != before {
								t.Errorf("%s: %q: answered %d by a proxy, yet the app got %d requests", v.name, v.line, r.code, n-before)
							}
							continue
						}
						if want.code != http.StatusOK {
							t.Errorf("%s: %q: reached the app as %q", v.name, v.line, e.Target)
							continue
						}
						if e.Target != want.target {
							t.Errorf("%s: %q: the app got target %q, want %q", v.name, v.line, e.Target, want.target)
						}
						if want.host != "" && e.Host != want.host {
							t.Errorf("%s: %q: the app got host %q, want %q", v.name, v.line, e.Host, want.host)
						}
					}
					t.Run("a request with both Content-Length and chunked is refused", func(t *testing.T) {
						res, err := rawExchange(entry.addr, smuggle)
						if err != nil {
							t.Fatal(err)
						}
						if len(res) != 1 || res[0].code != http.StatusBadRequest ||
							!strings.Contains(res[0].body, "both Content-Length and Transfer-Encoding") {
							t.Errorf("got %v, want one 400 that names the conflicting headers", res)
						}
					})
				})
			}
			// Whatever each variant got, the app never saw a request the
			// policies deny, nor one that is not in normal form.
			seen := m.app.received()
			for _, e := range seen {
				if e.Target == "/" && e.Method == "GET" {
					continue // the start-up probes, before the policies
				}
				if why := deniedByPolicy(e); why != "" {
					t.Errorf("the app got %s %q (host %q, x-staff %q): %s, which policy denies", e.Method, e.Target, e.Host, e.Header["X-Staff"], why)
				}
				if why := pathProblem(e.Path(), decode); why != "" {
					t.Errorf("the app got %s %q: %s, not the normalized path", e.Method, e.Target, why)
				}
			}
			t.Logf("%d requests reached the app", len(seen))
		})
	}
}
