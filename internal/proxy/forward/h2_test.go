package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/internal/conntest"
	"github.com/weft-mesh/weft/internal/proxy/reqctx"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Server is net/http's HTTP/2 server over TLS on loopback, counting
// the connections it accepts.
type h2Server struct {
	*httptest.Server
	conns atomic.Int64
}

func startH2Server(t *testing.T, h http.HandlerFunc, cfg *http.HTTP2Config) *h2Server {
	t.Helper()
	s := &h2Server{Server: httptest.NewUnstartedServer(h)}
	s.EnableHTTP2 = true
	s.Config.HTTP2 = cfg
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// newTestH2Client returns weft's HTTP/2 client dialling TLS with ALPN h2
// and trusting roots.
func newTestH2Client(t *testing.T, tlsCfg *tls.Config) *h2Client {
	t.Helper()
	cfg := tlsCfg.Clone()
	cfg.NextProtos = []string{"h2"}
	var fallbackProtos http.Protocols
	fallbackProtos.SetHTTP2(true)
	c := newH2Client(func(ctx context.Context, addr string) (net.Conn, error) {
		return (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
	}, &http.Transport{TLSClientConfig: cfg, Protocols: &fallbackProtos}, time.Minute)
	t.Cleanup(c.close)
	return c
}

func (s *h2Server) client(t *testing.T) *h2Client {
	return newTestH2Client(t, s.Client().Transport.(*http.Transport).TLSClientConfig)
}

func (s *h2Server) request(t *testing.T, ctx context.Context, method, path string, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequestWithContext(ctx, method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestH2Client(t *testing.T) {
	srv := startH2Server(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Method", r.Method)
			w.Header().Set("X-Proto", r.Proto)
			w.Header().Set("X-Length", strconv.FormatInt(r.ContentLength, 10))
			w.Header().Set("X-Te", r.Header.Get("Te"))
			w.Header()["X-Connection"] = r.Header["Connection"]
			_, _ = w.Write(b)
		case "/big":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			chunk := []byte(strings.Repeat("0123456789abcdef", 1024))
			for n > 0 {
				m := min(n, len(chunk))
				if _, err := w.Write(chunk[:m]); err != nil {
					return
				}
				n -= m
			}
		case "/trailers":
			w.Header().Set("Trailer", "X-Declared")
			_, _ = io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Declared", "yes")
			w.Header().Set(http.TrailerPrefix+"X-Late", "also")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		}
	}, &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10})
	c := srv.client(t)

	t.Run("a POST's headers and body arrive and its echo comes back", func(t *testing.T) {
		body := strings.Repeat("x", 1024)
		r := srv.request(t, testContext(t), "POST", "/echo", body)
		r.Header.Set("Connection", "close") // connection-specific: never sent over HTTP/2
		r.Header.Set("TE", "trailers")
		res, err := c.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(got) != body || res.StatusCode != 200 || res.ProtoMajor != 2 {
			t.Fatalf("got %d %s, %d bytes, err %v", res.StatusCode, res.Proto, len(got), err)
		}
		if h := res.Header; h.Get("X-Method") != "POST" || h.Get("X-Proto") != "HTTP/2.0" || h.Get("X-Length") != "1024" ||
			h.Get("X-Te") != "trailers" || len(h["X-Connection"]) != 0 || res.ContentLength != 1024 {
			t.Errorf("the server saw %v, content length %d", h, res.ContentLength)
		}
	})

	t.Run("a body larger than the server's stream window is sent as the window opens", func(t *testing.T) {
		body := strings.Repeat("y", maxBufferedBody)
		res, err := c.RoundTrip(srv.request(t, testContext(t), "PUT", "/echo", body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(got) != body {
			t.Fatalf("got %d bytes back, err %v", len(got), err)
		}
	})

	t.Run("a response larger than both receive windows arrives whole", func(t *testing.T) {
		n := h2ConnWindow + h2StreamWindow + 12345
		res, err := c.RoundTrip(srv.request(t, testContext(t), "GET", "/big?n="+strconv.Itoa(n), ""))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil || got != int64(n) {
			t.Fatalf("got %d of %d bytes, err %v", got, n, err)
		}
	})

	t.Run("declared and undeclared trailers are filled at the end of the body", func(t *testing.T) {
		res, err := c.RoundTrip(srv.request(t, testContext(t), "GET", "/trailers", ""))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := res.Trailer["X-Declared"]; !ok || res.Trailer.Get("X-Declared") != "" {
			t.Errorf("before the body: trailer %v, want X-Declared announced without a value", res.Trailer)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(b) != "body" || res.Trailer.Get("X-Declared") != "yes" || res.Trailer.Get("X-Late") != "also" {
			t.Errorf("got %q, err %v, trailer %v", b, err, res.Trailer)
		}
	})

	t.Run("a response without a body has an empty one", func(t *testing.T) {
		res, err := c.RoundTrip(srv.request(t, testContext(t), "GET", "/nocontent", ""))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || len(b) != 0 || res.StatusCode != 204 {
			t.Errorf("got %d %q, err %v", res.StatusCode, b, err)
		}
	})

	t.Run("concurrent requests are streams of at most HTTP2ConnsPerEndpoint connections", func(t *testing.T) {
		if n := srv.conns.Load(); n != 1 {
			t.Errorf("the requests so far, one at a time, used %d connections, want 1", n)
		}
		var wg sync.WaitGroup
		var failed atomic.Int64
		for i := range 32 {
			wg.Go(func() {
				body := strings.Repeat(strconv.Itoa(i%10), 100+i)
				res, err := c.RoundTrip(srv.request(t, testContext(t), "POST", "/echo", body))
				if err != nil {
					failed.Add(1)
					return
				}
				got, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil || string(got) != body {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		if n := srv.conns.Load(); failed.Load() != 0 || n > HTTP2ConnsPerEndpoint {
			t.Errorf("%d failed; 32 requests over %d connections, want at most %d", failed.Load(), n, HTTP2ConnsPerEndpoint)
		}
	})

	t.Run("a streamed request body goes through net/http's client", func(t *testing.T) {
		r := srv.request(t, testContext(t), "POST", "/echo", "")
		r.Body = io.NopCloser(strings.NewReader("streamed"))
		r.ContentLength = -1
		res, err := c.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "streamed" || res.Header.Get("X-Length") != "-1" {
			t.Errorf("got %q, length %s", b, res.Header.Get("X-Length"))
		}
	})
}

// TestH2ClientBodyBuffersAreNotShared: a connection hands the body
// buffers of ended streams to new ones; a response read late, after
// others came and went, still reads its own bytes, and so do responses
// closed half read.
func TestH2ClientBodyBuffersAreNotShared(t *testing.T) {
	srv := startH2Server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b)
	}, nil)
	c := srv.client(t)
	ctx := testContext(t)
	send := func(i int) (*http.Response, string) {
		n := 1000 + i*37
		if i == 0 {
			n = 3000 // the late one: a buffer the others fit in
		}
		body := strings.Repeat(string(rune('a'+i%26)), n)
		res, err := c.RoundTrip(srv.request(t, ctx, "POST", "/", body))
		if err != nil {
			t.Fatal(err)
		}
		return res, body
	}
	check := func(i int, res *http.Response, want string) {
		t.Helper()
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(got) != want {
			t.Errorf("response %d: %d bytes %.10q..., err %v; want %d bytes %.10q...", i, len(got), got, err, len(want), want)
		}
	}

	late, lateBody := send(0)
	// Wait until all of it is in, unread.
	deadline := time.Now().Add(5 * time.Second)
	for {
		cc := c.conns[srv.Listener.Addr().String()][0]
		cc.mu.Lock()
		s := late.Body.(*h2Body).s
		n := len(s.buf)
		cc.mu.Unlock()
		if n == len(lateBody) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	for i := 1; i < 40; i++ {
		wg.Go(func() {
			res, body := send(i)
			if i%3 == 0 {
				// Half read, then closed: its buffer goes back.
				buf := make([]byte, 100)
				_, _ = io.ReadFull(res.Body, buf)
				res.Body.Close()
				if string(buf) != body[:100] {
					t.Errorf("response %d begins %.10q", i, buf)
				}
				return
			}
			check(i, res, body)
		})
	}
	wg.Wait()
	check(0, late, lateBody)
}

// TestH2ClientKeepsAnEarlyResponse: a server may answer in full before
// it has read the request, and then reset the stream with NO_ERROR
// (RFC 9113 8.1); the response stands, whether it is read later or
// closed unread, and the connection gets its window back either way.
func TestH2ClientKeepsAnEarlyResponse(t *testing.T) {
	answer := strings.Repeat("early answer ", 100)
	srv := startH2Server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, answer)
	}, &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10})
	c := srv.client(t)
	ctx := testContext(t)
	// The first request waits for the server's SETTINGS: net/http's
	// server holds a client to its smaller stream window from the start.
	res, err := c.RoundTrip(srv.request(t, ctx, "GET", "/", ""))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	cc := c.conns[srv.Listener.Addr().String()][0]

	for i := range 20 {
		// More than the stream window: the body waits for window that
		// never comes, as the server reads none of it.
		res, err := c.RoundTrip(srv.request(t, ctx, "POST", "/", strings.Repeat("x", 60<<10)))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if i%2 == 0 {
			got, err := io.ReadAll(res.Body)
			if string(got) != answer || err != nil {
				t.Errorf("request %d: %d bytes, %v; want the %d-byte answer", i, len(got), err, len(answer))
			}
		}
		res.Body.Close()
		cc.mu.Lock()
		if cc.recvWindow+cc.unacked != h2ConnWindow {
			t.Errorf("request %d: window left %d + to return %d, want %d", i, cc.recvWindow, cc.unacked, h2ConnWindow)
		}
		cc.mu.Unlock()
	}
}

func TestH2ClientCancellation(t *testing.T) {
	cancelled := make(chan string, 4)
	release := make(chan struct{})
	srv := startH2Server(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hang":
			select {
			case <-r.Context().Done():
				cancelled <- "hang"
			case <-release:
			}
		case "/stream":
			w.WriteHeader(200)
			for {
				if _, err := w.Write(make([]byte, 8<<10)); err != nil {
					cancelled <- "stream"
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					cancelled <- "stream"
					return
				case <-time.After(time.Millisecond):
				}
			}
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}, nil)
	defer close(release)
	c := srv.client(t)

	// Both kinds of context: a plain one, and the reqctx.Context the
	// sidecar's servers give requests, on which the stream hangs a hook
	// instead of selecting on Done.
	for _, kind := range []struct {
		name string
		make func(t *testing.T) (context.Context, func())
	}{
		{"a context", func(t *testing.T) (context.Context, func()) {
			ctx, cancel := context.WithCancel(testContext(t))
			return ctx, cancel
		}},
		{"a server request context", func(t *testing.T) (context.Context, func()) {
			rc := new(reqctx.Context)
			rc.Init(testContext(t))
			return rc, func() { rc.Cancel(nil) }
		}},
	} {
		t.Run(kind.name+" ended before the response resets the stream", func(t *testing.T) {
			ctx, cancel := kind.make(t)
			go func() {
				time.Sleep(50 * time.Millisecond)
				cancel()
			}()
			_, err := c.RoundTrip(srv.request(t, ctx, "GET", "/hang", ""))
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			if got := <-cancelled; got != "hang" {
				t.Errorf("the server saw %q cancelled", got)
			}
		})
	}

	t.Run("closing a body before its end resets the stream", func(t *testing.T) {
		res, err := c.RoundTrip(srv.request(t, testContext(t), "GET", "/stream", ""))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(res.Body, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := <-cancelled; got != "stream" {
			t.Errorf("the server saw %q cancelled", got)
		}
	})

	t.Run("a server request context ended during the body fails the read and resets the stream", func(t *testing.T) {
		var rc reqctx.Context
		rc.Init(testContext(t))
		res, err := c.RoundTrip(srv.request(t, &rc, "GET", "/stream", ""))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if _, err := io.ReadFull(res.Body, make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		rc.Cancel(nil)
		if _, err := io.Copy(io.Discard, res.Body); !errors.Is(err, context.Canceled) {
			t.Errorf("reading on: err = %v, want context.Canceled", err)
		}
		if got := <-cancelled; got != "stream" {
			t.Errorf("the server saw %q cancelled", got)
		}
	})

	t.Run("a finished exchange leaves no hook on the server request context", func(t *testing.T) {
		var rc reqctx.Context
		rc.Init(testContext(t))
		defer rc.Cancel(nil)
		res, err := c.RoundTrip(srv.request(t, &rc, "GET", "/", ""))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if !rc.SetHook(hookFunc(func() {})) {
			t.Error("the stream's hook is still on the context after its body was closed")
		}
		rc.ClearHook()
	})

	t.Run("the connection still serves requests afterwards", func(t *testing.T) {
		res, err := c.RoundTrip(srv.request(t, testContext(t), "GET", "/", ""))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "ok" || srv.conns.Load() != 1 {
			t.Errorf("got %q over %d connections, want ok over 1", b, srv.conns.Load())
		}
	})
}

// hookFunc is a reqctx.Hook made of a function.
type hookFunc func()

func (f hookFunc) ContextCanceled() { f() }

func TestH2ClientGoAway(t *testing.T) {
	t.Run("after a GOAWAY the next request opens a new connection", func(t *testing.T) {
		srv := startH2Server(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
		c := srv.client(t)
		get := func() string {
			res, err := c.RoundTrip(srv.request(t, testContext(t), "GET", "/", ""))
			if err != nil {
				return err.Error()
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return string(b)
		}
		if got := get(); got != "ok" {
			t.Fatal(got)
		}
		// Without keep-alives net/http's server answers the next request
		// and then sends GOAWAY and closes the connection.
		srv.Config.SetKeepAlivesEnabled(false)
		if got := get(); got != "ok" {
			t.Fatal(got)
		}
		srv.Config.SetKeepAlivesEnabled(true)
		if got := get(); got != "ok" {
			t.Fatal(got)
		}
		if n := srv.conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2 (one before the GOAWAY, one after)", n)
		}
	})

	t.Run("a request above the GOAWAY's last stream is sent again on a new connection", func(t *testing.T) {
		var conns atomic.Int64
		addr, cfg := startRawH2Server(t, func(fr *http2.Framer, enc func(...string) []byte) {
			n := conns.Add(1)
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					return
				}
				h, ok := f.(*http2.MetaHeadersFrame)
				if !ok {
					continue
				}
				if n == 1 {
					// Refuse everything on the first connection.
					_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
					return
				}
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: h.StreamID, BlockFragment: enc(":status", "200", "content-length", "2"), EndHeaders: true})
				_ = fr.WriteData(h.StreamID, true, []byte("ok"))
			}
		})
		c := newTestH2Client(t, cfg)
		r, _ := http.NewRequestWithContext(testContext(t), "POST", "https://"+addr+"/", strings.NewReader("payload"))
		res, err := c.RoundTrip(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "ok" || conns.Load() != 2 {
			t.Errorf("got %q over %d connections, want ok over 2", b, conns.Load())
		}
	})
}

func TestH2ClientRejectsBadResponses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(fr *http2.Framer, id uint32, enc func(...string) []byte)
		want  string
	}{
		{"a body shorter than its content-length is an error", func(fr *http2.Framer, id uint32, enc func(...string) []byte) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(":status", "200", "content-length", "10"), EndHeaders: true})
			_ = fr.WriteData(id, true, []byte("short"))
		}, "content-length"},
		{"a body longer than its content-length is an error", func(fr *http2.Framer, id uint32, enc func(...string) []byte) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(":status", "200", "content-length", "2"), EndHeaders: true})
			_ = fr.WriteData(id, true, []byte("too long"))
		}, "content-length"},
		{"headers ending the stream before their content-length are an error", func(fr *http2.Framer, id uint32, enc func(...string) []byte) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(":status", "200", "content-length", "10"), EndHeaders: true, EndStream: true})
		}, "content-length"},
		{"a reset stream is an error", func(fr *http2.Framer, id uint32, enc func(...string) []byte) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(":status", "200"), EndHeaders: true})
			_ = fr.WriteData(id, false, []byte("part"))
			_ = fr.WriteRSTStream(id, http2.ErrCodeInternal)
		}, "INTERNAL_ERROR"},
		{"a connection closed mid-body is an error", func(fr *http2.Framer, id uint32, enc func(...string) []byte) {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(":status", "200"), EndHeaders: true})
			_ = fr.WriteData(id, false, []byte("part"))
		}, "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, cfg := startRawH2Server(t, func(fr *http2.Framer, enc func(...string) []byte) {
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					if h, ok := f.(*http2.MetaHeadersFrame); ok {
						tc.write(fr, h.StreamID, enc)
						return
					}
				}
			})
			c := newTestH2Client(t, cfg)
			r, _ := http.NewRequestWithContext(testContext(t), "POST", "https://"+addr+"/", strings.NewReader("x"))
			res, err := c.RoundTrip(r)
			if err == nil {
				_, err = io.ReadAll(res.Body)
				res.Body.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestH2ClientHealthCheck(t *testing.T) {
	defer func(after, timeout time.Duration) { h2PingAfter, h2PingTimeout = after, timeout }(h2PingAfter, h2PingTimeout)
	h2PingAfter, h2PingTimeout = 20*time.Millisecond, 20*time.Millisecond
	// A server that reads everything and answers nothing, PINGs included:
	// a peer gone without closing its connection.
	addr, cfg := startRawH2Server(t, func(fr *http2.Framer, _ func(...string) []byte) {
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	})
	c := newTestH2Client(t, cfg)
	r, _ := http.NewRequestWithContext(testContext(t), "GET", "https://"+addr+"/", nil)
	_, err := c.RoundTrip(r)
	if err == nil || !strings.Contains(err.Error(), "health PING") {
		t.Errorf("err = %v, want the connection closed for want of a PING answer", err)
	}
}

// startRawH2Server serves HTTP/2 over TLS on loopback with serve, which
// gets each connection's framer (settings exchanged) and a header block
// encoder, for responses net/http's server would never send. It returns
// the address and a client TLS configuration that trusts it.
func startRawH2Server(t *testing.T, serve func(fr *http2.Framer, enc func(kv ...string) []byte)) (string, *tls.Config) {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.EnableHTTP2 = true
	ts.StartTLS() // for its certificate and client configuration only
	cert := ts.TLS.Certificates[0]
	clientCfg := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	ts.Close()

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				preface := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(br, preface); err != nil {
					return
				}
				bw := bufio.NewWriter(conn)
				fr := http2.NewFramer(autoFlush{bw}, br)
				fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
				_ = fr.WriteSettings()
				var buf strings.Builder
				henc := hpack.NewEncoder(&buf)
				enc := func(kv ...string) []byte {
					buf.Reset()
					for i := 0; i+1 < len(kv); i += 2 {
						_ = henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
					}
					return []byte(buf.String())
				}
				go func() { <-t.Context().Done(); conn.Close() }()
				serve(fr, enc)
			})
		}
	})
	return ln.Addr().String(), clientCfg
}

// autoFlush flushes after every frame, so the raw server's frames go out
// as it writes them.
type autoFlush struct{ w *bufio.Writer }

func (a autoFlush) Write(p []byte) (int, error) {
	n, err := a.w.Write(p)
	if err == nil {
		err = a.w.Flush()
	}
	return n, err
}

func TestStatusLineIsNetHTTPs(t *testing.T) {
	for code := 100; code < 1000; code++ {
		status := strconv.Itoa(code)
		if got, want := statusLine(code, status), status+" "+http.StatusText(code); got != want {
			t.Errorf("statusLine(%d) = %q, want %q", code, got, want)
		}
	}
}

func TestH2ConnHeaderOf(t *testing.T) {
	cc := &h2Conn{}
	var vals [8]string
	h := cc.headerOf([]hpack.HeaderField{
		{Name: "x-uncommon", Value: "1"}, {Name: "content-type", Value: "text/plain"}, {Name: "x-uncommon", Value: "2"},
	}, vals[:])
	want := http.Header{"X-Uncommon": {"1", "2"}, "Content-Type": {"text/plain"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("headerOf = %v, want %v", h, want)
	}

	// An uncommon name costs nothing more than a common one once seen.
	uncommon := []hpack.HeaderField{{Name: "x-uncommon", Value: "1"}, {Name: "x-other-uncommon", Value: "2"}}
	common := []hpack.HeaderField{{Name: "content-type", Value: "1"}, {Name: "date", Value: "2"}}
	u := testing.AllocsPerRun(100, func() { cc.headerOf(uncommon, vals[:]) })
	c := testing.AllocsPerRun(100, func() { cc.headerOf(common, vals[:]) })
	if u != c {
		t.Errorf("headerOf: %v allocations for uncommon names, %v for common ones", u, c)
	}
}

// A server may enforce the stream window it announces from its first
// SETTINGS on, as net/http's does, although a client that has not seen
// them yet may send up to the protocol's default 65,535 bytes. The first
// request on a new connection, with a body larger than the server's
// window, must still go through.
func TestH2ClientWaitsForTheServersSettingsBeforeABody(t *testing.T) {
	srv := startH2Server(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, strconv.Itoa(len(b)))
	}, &http.HTTP2Config{MaxReceiveBufferPerStream: 16 << 10})
	for i := range 5 { // a new client, and so a new connection, each time
		c := srv.client(t)
		body := strings.Repeat("y", 40<<10)
		res, err := c.RoundTrip(srv.request(t, testContext(t), "POST", "/", body))
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || string(got) != strconv.Itoa(len(body)) {
			t.Fatalf("round %d: %d %q, want 200 %q", i, res.StatusCode, got, strconv.Itoa(len(body)))
		}
	}
}

// Requests sent while a write is in progress go out together with the
// next write, not one write each behind it.
func TestH2ClientRequestsDuringAWriteShareTheNextWrite(t *testing.T) {
	srv := startH2Server(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	}, nil)
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	conns := make(chan *conntest.Gated, 1)
	c := newH2Client(func(ctx context.Context, addr string) (net.Conn, error) {
		nc, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		gc := conntest.NewGated(nc)
		conns <- gc
		return gc, nil
	}, &http.Transport{TLSClientConfig: cfg}, time.Minute)
	t.Cleanup(c.close)
	send := func(body string) error {
		r := srv.request(t, testContext(t), "POST", "/", body)
		res, err := c.RoundTrip(r)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		got, err := io.ReadAll(res.Body)
		if err == nil && string(got) != body {
			err = fmt.Errorf("echoed %q, want %q", got, body)
		}
		return err
	}
	if err := send("warm-up"); err != nil {
		t.Fatal(err)
	}
	gc := <-conns
	time.Sleep(50 * time.Millisecond) // the connection's set-up frames are out
	gc.Armed.Store(true)
	const requests = 8
	errs := make(chan error, requests)
	for i := range requests {
		go func() { errs <- send(fmt.Sprintf("request %d", i)) }()
	}
	time.Sleep(100 * time.Millisecond) // all of them queued behind the held write
	close(gc.Gate)
	for range requests {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := gc.Writes.Load(); n > requests/2 {
		t.Errorf("%d requests took %d writes, want them to share a few", requests, n)
	}
	t.Logf("%d requests in %d writes", requests, gc.Writes.Load())
}
