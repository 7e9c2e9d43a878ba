package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
)

// rawExchange writes raw bytes to addr and reads one response.
func rawExchange(t *testing.T, addr, raw string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", raw, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// TestAmbiguousRequestsAreRefused sends, over a real outbound listener,
// the requests issue 3 calls ambiguous. Some are refused by net/http before
// the proxy's handler runs (the test pins that down, so an upgrade that
// changes it is caught); the rest by the proxy's normalization.
func TestAmbiguousRequestsAreRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The upstream says what framing it received.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s cl=%d te=%v clh=%q body=%q", r.Method, r.RequestURI, r.ContentLength, r.TransferEncoding, r.Header["Content-Length"], b)
	}))
	defer echo.Close()
	w := newWorld(t)
	s := w.snapshot()
	s.Endpoints[0] = xdstest.LoadAssignment(reviewsV1, addrOf(echo))
	w.srv.Push(t, "1", s)
	w.waitVersion(ctx, t, "1")

	const head = "Host: reviews\r\nConnection: close\r\n"
	tests := []struct {
		name string
		raw  string
		code int
		body string // prefix
	}{
		// net/http refuses these (HTTP/1.1).
		{"NUL in a header value (net/http)", "GET / HTTP/1.1\r\n" + head + "X-A: a\x00b\r\n\r\n", 400, ""},
		{"CR in a header value (net/http)", "GET / HTTP/1.1\r\n" + head + "X-A: a\rb\r\n\r\n", 400, ""},
		{"NUL in a header name (net/http)", "GET / HTTP/1.1\r\n" + head + "X-\x00A: b\r\n\r\n", 400, ""},
		{"a space before the colon (net/http)", "GET / HTTP/1.1\r\n" + head + "X-A : b\r\n\r\n", 400, ""},
		{"two differing Content-Length (net/http)", "POST / HTTP/1.1\r\n" + head + "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, ""},
		{"a Content-Length list (net/http)", "POST / HTTP/1.1\r\n" + head + "Content-Length: 3, 4\r\n\r\nabcd", 400, ""},
		{"a signed Content-Length (net/http)", "POST / HTTP/1.1\r\n" + head + "Content-Length: +3\r\n\r\nabc", 400, ""},
		{"a transfer coding other than chunked (net/http)", "POST / HTTP/1.1\r\n" + head + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, ""},
		{"two Host headers (net/http)", "GET / HTTP/1.1\r\nHost: reviews\r\nHost: ratings\r\n\r\n", 400, ""},
		{"a control character in the target (net/http)", "GET /a\x01b HTTP/1.1\r\n" + head + "\r\n", 400, ""},
		// The proxy refuses these.
		{"a lower-case method", "get / HTTP/1.1\r\n" + head + "\r\n", 400, "unknown or malformed method"},
		{"an unknown method", "BREW / HTTP/1.1\r\n" + head + "\r\n", 400, "unknown or malformed method"},
		{"CONNECT", "CONNECT reviews:443 HTTP/1.1\r\n" + head + "\r\n", 405, "CONNECT is not supported"},
		{"%00 in the path", "GET /a%00 HTTP/1.1\r\n" + head + "\r\n", 400, "NUL (%00) in path"},
		{"an invalid escape in the path", "GET /a%2 HTTP/1.1\r\n" + head + "\r\n", 400, ""},
		// Identical duplicates are one value.
		{"identical Content-Length values are one", "PUT / HTTP/1.1\r\n" + head + "Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 200,
			`PUT / cl=3 te=[] clh=["3"] body="abc"`},
		// net/http would read this as chunked, dropping Content-Length;
		// the listener's framing guard refuses it before net/http sees it.
		{"Content-Length with chunked", "PUT / HTTP/1.1\r\n" + head + "Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400,
			"both Content-Length and Transfer-Encoding"},
		{"Content-Length with another coding", "PUT / HTTP/1.1\r\n" + head + "Transfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc", 400,
			"both Content-Length and Transfer-Encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := rawExchange(t, w.addrs.Outbound, tt.raw)
			if code != tt.code || !strings.HasPrefix(body, tt.body) {
				t.Errorf("got %d %q, want %d %q...", code, body, tt.code, tt.body)
			}
		})
	}
}

// TestAmbiguousHTTP2HeadersAreRefused sends HTTP/2 (h2c) requests whose
// header fields HTTP/1.1 could not even carry: net/http's HTTP/2 server
// resets the stream (PROTOCOL_ERROR) or answers 400 before the proxy sees
// them.
func TestAmbiguousHTTP2HeadersAreRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := newWorld(t)
	w.srv.Push(t, "1", w.snapshot())
	w.waitVersion(ctx, t, "1")

	tests := []struct {
		name    string
		headers [][2]string
		want    string // "reset" or a status
	}{
		{"a well-formed request is served", nil, "200"},
		{"NUL in a value", [][2]string{{"x-a", "a\x00b"}}, "reset"},
		{"CR in a value", [][2]string{{"x-a", "a\rb"}}, "reset"},
		{"LF in a value", [][2]string{{"x-a", "a\nb"}}, "reset"},
		{"an upper-case name", [][2]string{{"X-A", "b"}}, "reset"},
		{"a connection-specific header is net/http's 400", [][2]string{{"transfer-encoding", "chunked"}}, "400"},
		{"a lower-case method is the proxy's 400", [][2]string{{":method", "get"}}, "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h2Request(t, w.addrs.Outbound, tt.headers); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// h2Request sends one GET / to host reviews over h2c with prior knowledge,
// with extra (or overriding pseudo-) header fields written as given, and
// returns the response status or "reset".
func h2Request(t *testing.T, addr string, extra [][2]string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	fields := [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "reviews"}, {":path", "/"}}
	for _, e := range extra {
		replaced := false
		for i := range fields {
			if fields[i][0] == e[0] {
				fields[i][1], replaced = e[1], true
			}
		}
		if !replaced {
			fields = append(fields, e)
		}
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.RSTStreamFrame:
			return "reset"
		case *http2.GoAwayFrame:
			return "reset"
		case *http2.MetaHeadersFrame:
			return f.PseudoValue("status")
		}
	}
}
