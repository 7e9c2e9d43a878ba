package normalize

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	tests := []struct {
		name string
		in   string
		opts Options
		want string // "" with wantErr
		err  *Rejection
	}{
		{"a clean path is unchanged", "/api/v1/items", MergeSlashes, "/api/v1/items", nil},
		{"the root is unchanged", "/", MergeSlashes, "/", nil},
		{"a trailing slash is kept", "/api/", MergeSlashes, "/api/", nil},
		{"sub-delims, colon and at are kept", "/a:b@c!$&'()*+,;=", MergeSlashes, "/a:b@c!$&'()*+,;=", nil},

		{"double slashes merge by default", "/a//b///c", MergeSlashes, "/a/b/c", nil},
		{"double slashes stay in BASE", "/a//b", Base, "/a//b", nil},
		{"a leading double slash merges", "//admin", MergeSlashes, "/admin", nil},

		{"dot segments are removed", "/a/./b/../c", Base, "/a/c", nil},
		{"dot-dot cannot climb above the root", "/../../admin", Base, "/admin", nil},
		{"a trailing dot-dot leaves a slash", "/a/b/..", Base, "/a/", nil},
		{"a trailing dot leaves a slash", "/a/.", Base, "/a/", nil},
		{"encoded dots are decoded, then removed", "/public/%2e%2e/admin", MergeSlashes, "/admin", nil},
		{"mixed-case encoded dots too", "/public/%2E./admin", MergeSlashes, "/admin", nil},
		{"three dots are an ordinary segment", "/a/.../b", Base, "/a/.../b", nil},
		{"dot-dot after merged slashes climbs one real segment", "/a//../b", MergeSlashes, "/b", nil},
		{"dot-dot after an empty segment in BASE removes the empty one", "/a//../b", Base, "/a/b", nil},

		{"unreserved escapes are decoded", "/%7Euser/%41%62c", Base, "/~user/Abc", nil},
		{"reserved escapes are kept, upper-cased", "/a%3fb%23c", Base, "/a%3Fb%23c", nil},
		{"an escaped percent stays escaped (no double decoding)", "/a%252e%252e/b", MergeSlashes, "/a%252e%252e/b", nil},

		{"%2F is kept by MERGE_SLASHES", "/a%2fb", MergeSlashes, "/a%2Fb", nil},
		{"%2F is decoded and merged by DECODE_AND_MERGE_SLASHES", "/a%2F%2fb", DecodeAndMergeSlashes, "/a/b", nil},
		{"%5C is decoded to a slash by DECODE_AND_MERGE_SLASHES", "/a%5cb%5C..%5Cc", DecodeAndMergeSlashes, "/a/c", nil},
		{"%2F..%2F climbs once decoded", "/public%2F..%2Fadmin", DecodeAndMergeSlashes, "/admin", nil},
		{"%2F..%2F stays one segment when kept", "/public%2F..%2Fadmin", MergeSlashes, "/public%2F..%2Fadmin", nil},
		{"escaped slashes are refused under REJECT_REQUEST", "/a%2Fb", Options{EscapedSlashes: RejectEscapedSlashes}, "", errEscapedSlash},
		{"a raw backslash is a slash", `/a\..\admin`, Base, "/admin", nil},

		{"bytes outside pchar are escaped", "/a|b{c} d\"", Base, "/a%7Cb%7Bc%7D%20d%22", nil},
		{"UTF-8 is escaped", "/caf\xc3\xa9", Base, "/caf%C3%A9", nil},

		{"%00 is refused", "/a%00b", Base, "", errNUL},
		{"a truncated escape is refused", "/a%2", Base, "", errInvalidEscape},
		{"a non-hex escape is refused", "/a%zzb", Base, "", errInvalidEscape},
		{"a lone percent is refused", "/100%", Base, "", errInvalidEscape},
		{"a control byte is refused", "/a\x01b", Base, "", errControl},
		{"Tomcat's ..; is refused", "/public/..;/admin", MergeSlashes, "", errDotParams},
		{"encoded ..; is refused", "/public/%2e%2e;/admin", MergeSlashes, "", errDotParams},
		{"a relative path is refused", "a/b", Base, "", errNotAbsolute},
		{"an empty path is refused", "", Base, "", errNotAbsolute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Path(tt.in, tt.opts)
			if err != tt.err || got != tt.want {
				t.Fatalf("Path(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
			}
			if err == nil {
				if again, _ := Path(got, tt.opts); again != got {
					t.Errorf("not idempotent: Path(%q) = %q", got, again)
				}
			}
		})
	}
}

// readRequest parses a raw HTTP/1.1 request as the server does.
func readRequest(t *testing.T, raw string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("parsing %q: %v", raw, err)
	}
	return r
}

func TestRequest(t *testing.T) {
	tests := []struct {
		name     string
		line     string // request line, without " HTTP/1.1"
		host     string
		opts     Options
		wantPath string
		wantURI  string // what the upstream is sent; "" when refused
		wantHost string
		err      *Rejection
	}{
		{"a clean request is unchanged", "GET /a/b?x=1", "reviews", MergeSlashes, "/a/b", "/a/b?x=1", "reviews", nil},
		{"double slashes are merged in what is forwarded", "GET //a//b?x=//", "reviews", MergeSlashes, "/a/b", "/a/b?x=//", "reviews", nil},
		{"%2F is forwarded as checked when kept", "GET /a%2fb", "reviews", MergeSlashes, "/a%2Fb", "/a%2Fb", "reviews", nil},
		{"%2F is forwarded decoded when decoded", "GET /a%2fb", "reviews", DecodeAndMergeSlashes, "/a/b", "/a/b", "reviews", nil},
		{"%5C is forwarded as checked when kept", "GET /a%5Cb", "reviews", MergeSlashes, "/a%5Cb", "/a%5Cb", "reviews", nil},
		{"dot segments are gone from what is forwarded", "GET /public/../admin", "reviews", MergeSlashes, "/admin", "/admin", "reviews", nil},
		{"encoded dot segments too", "GET /public/%2e%2e/admin?q", "reviews", MergeSlashes, "/admin", "/admin?q", "reviews", nil},
		{"a fragment is dropped", "GET /admin#frag", "reviews", MergeSlashes, "/admin", "/admin", "reviews", nil},
		{"a fragment hides no query and no dot segments", "GET /public#/../admin?x=1", "reviews", MergeSlashes, "/public", "/public", "reviews", nil},
		{"a fragment after the query is dropped from the query", "GET /a?x=1#y", "reviews", MergeSlashes, "/a", "/a?x=1", "reviews", nil},
		{"an empty query is dropped", "GET /a?", "reviews", MergeSlashes, "/a", "/a", "reviews", nil},
		{"the query takes no part in path matching", "GET /a?/../b", "reviews", MergeSlashes, "/a", "/a?/../b", "reviews", nil},
		{"a mixed-case host is lower-cased", "GET /", "Reviews.Default", MergeSlashes, "/", "/", "reviews.default", nil},
		{"a host keeps its port", "GET /", "REVIEWS:80", MergeSlashes, "/", "/", "reviews:80", nil},
		{"an absolute-form target becomes origin form", "GET http://Reviews:80//x/../y?q=1", "ignored", MergeSlashes, "/y", "/y?q=1", "reviews:80", nil},
		{"an absolute-form target without path gets /", "GET http://reviews", "ignored", MergeSlashes, "/", "/", "reviews", nil},
		{"OPTIONS * is passed as is", "OPTIONS *", "reviews", MergeSlashes, "*", "*", "reviews", nil},
		{"PATCH is a known method", "PATCH /a", "reviews", MergeSlashes, "/a", "/a", "reviews", nil},

		{"a lower-case method is refused", "get /a", "reviews", MergeSlashes, "", "", "", errMethod},
		{"an unknown method is refused", "FOO /a", "reviews", MergeSlashes, "", "", "", errMethod},
		{"CONNECT gets 405", "CONNECT reviews:443", "reviews:443", MergeSlashes, "", "", "", errConnect},
		{"* with another method is refused", "GET *", "reviews", MergeSlashes, "", "", "", errAsteriskTarget},
		{"%00 is refused", "GET /a%00", "reviews", MergeSlashes, "", "", "", errNUL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := readRequest(t, tt.line+" HTTP/1.1\r\nHost: "+tt.host+"\r\n\r\n")
			path, err := Request(r, tt.opts)
			if err != tt.err {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if path != tt.wantPath || r.Host != tt.wantHost {
				t.Errorf("path %q host %q, want %q %q", path, r.Host, tt.wantPath, tt.wantHost)
			}
			// What routing reads (RequestURI) and what the upstream is
			// sent (URL.RequestURI) are the same bytes, and their path is
			// the path that was checked.
			if r.RequestURI != tt.wantURI {
				t.Errorf("RequestURI %q, want %q", r.RequestURI, tt.wantURI)
			}
			if got := r.URL.RequestURI(); got != tt.wantURI {
				t.Errorf("forwarded target %q, want %q", got, tt.wantURI)
			}
			if p, _, _ := strings.Cut(r.RequestURI, "?"); p != path {
				t.Errorf("RequestURI path %q differs from the checked path %q", p, path)
			}
		})
	}
}

func TestRequestBuiltInProcess(t *testing.T) {
	// Requests built with NewRequest have no RequestURI: the URL is the
	// source.
	r, _ := http.NewRequest("GET", "http://Reviews/a//b/%2e%2e/c?x=1#frag", nil)
	path, err := Request(r, MergeSlashes)
	if err != nil {
		t.Fatal(err)
	}
	if path != "/a/c" || r.RequestURI != "/a/c?x=1" || r.URL.RequestURI() != "/a/c?x=1" || r.Host != "reviews" {
		t.Errorf("path %q RequestURI %q URL %q host %q", path, r.RequestURI, r.URL.RequestURI(), r.Host)
	}
}

func TestRequestWithoutChangesDoesNotAllocate(t *testing.T) {
	r := readRequest(t, "GET /api/v1/items?page=2 HTTP/1.1\r\nHost: reviews:80\r\nAccept: */*\r\n\r\n")
	uri, u := r.RequestURI, *r.URL
	allocs := testing.AllocsPerRun(100, func() {
		r.RequestURI, *r.URL = uri, u
		if _, err := Request(r, MergeSlashes); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations for a request already in normal form, want 0", allocs)
	}
}

func TestEscapedPathIsTheNormalizedPath(t *testing.T) {
	// The upstream request is written from URL.EscapedPath: it must return
	// RawPath, not a re-encoding of Path.
	for _, p := range []string{"/a%2Fb", "/a%7Cb%20c", "/x%25y", "/a:b@c;d=e", "/%C3%A9"} {
		u := &url.URL{Path: unescapePath(p), RawPath: p}
		if got := u.EscapedPath(); got != p {
			t.Errorf("EscapedPath of %q = %q", p, got)
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	for _, bc := range []struct{ name, line string }{
		{"clean", "GET /api/v1/reviews/12345?page=2&size=10"},
		{"dirty", "GET /api//v1/./reviews/%2e%2e/reviews/%7E12345?page=2"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(bc.line + " HTTP/1.1\r\nHost: reviews.default:80\r\nAccept: */*\r\nUser-Agent: bench\r\n\r\n")))
			if err != nil {
				b.Fatal(err)
			}
			uri, u, host := r.RequestURI, *r.URL, r.Host
			b.ReportAllocs()
			for b.Loop() {
				r.RequestURI, *r.URL, r.Host = uri, u, host
				if _, err := Request(r, MergeSlashes); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestAbsoluteFormTargetKeepsTheClientsBytes(t *testing.T) {
	tests := []struct{ in, want string }{
		{`http://payments:9080/public/a\b`, `/public/a\b`},
		{"http://payments/public/a#/../admin", "/public/a#/../admin"},
		{"http://payments:9080", "/"},
		{"http://payments?x=1", "/?x=1"},
		{"https://h/a%2Fb", "/a%2Fb"},
	}
	for _, tt := range tests {
		got, ok := absoluteFormTarget(tt.in)
		if !ok || got != tt.want {
			t.Errorf("absoluteFormTarget(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := absoluteFormTarget("/origin/form"); ok {
		t.Error("origin form taken for absolute form")
	}
}
