package forward

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/route"
)

// rawUpstream is an HTTP/1.1 upstream on a bare socket: serve answers each
// request on a connection (whose index it gets) with the bytes it returns,
// and closes the connection when close is true.
type rawUpstream struct {
	ln    net.Listener
	mu    sync.Mutex
	conns int
	wg    sync.WaitGroup
}

func startRawUpstream(t *testing.T, serve func(conn int, req *http.Request, body string) (resp string, close bool)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln}
	u.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			n := u.conns
			u.conns++
			u.mu.Unlock()
			u.wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					b, _ := io.ReadAll(req.Body)
					resp, closeIt := serve(n, req, string(b))
					if _, err := io.WriteString(c, resp); err != nil || closeIt {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		u.wg.Wait()
	})
	return u
}

func (u *rawUpstream) connections() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.conns
}

func TestH1Pool(t *testing.T) {
	post := func(t *testing.T, p *testProxy, body string) (int, string) {
		t.Helper()
		res, got := rawRequest(t, p.addr, "POST /x HTTP/1.1\r\nHost: up\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		return res.StatusCode, got
	}

	t.Run("a connection the upstream closed after its response is not reused, and the POST goes through", func(t *testing.T) {
		up := startRawUpstream(t, func(_ int, _ *http.Request, body string) (string, bool) {
			return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body, true
		})
		p := startProxy(t, nil)
		p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("up", "up", 0)}, clusterDef{"up", []string{up.ln.Addr().String()}}))
		for i, body := range []string{"first", "second", "third"} {
			if i > 0 {
				// Idle long enough for the liveness check, which finds the close.
				time.Sleep(peekAfter + 20*time.Millisecond)
			}
			if code, got := post(t, p, body); code != 200 || got != body {
				t.Fatalf("request %d: got %d %q, want 200 %q", i, code, got, body)
			}
		}
		if n := up.connections(); n != 3 {
			t.Errorf("upstream saw %d connections, want 3 (one per request)", n)
		}
	})

	t.Run("a connection the upstream closed right after its response is not reused either, and the POSTs go through", func(t *testing.T) {
		// Sent at once, before the liveness check would run (peekAfter):
		// the request meets the closed connection and goes again.
		up := startRawUpstream(t, func(_ int, _ *http.Request, body string) (string, bool) {
			return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body, true
		})
		p := startProxy(t, nil)
		p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("up", "up", 0)}, clusterDef{"up", []string{up.ln.Addr().String()}}))
		for i, body := range []string{"first", "second", "third", "fourth"} {
			if code, got := post(t, p, body); code != 200 || got != body {
				t.Fatalf("request %d: got %d %q, want 200 %q", i, code, got, body)
			}
		}
		if n := up.connections(); n != 4 {
			t.Errorf("upstream saw %d connections, want 4 (one per request)", n)
		}
	})

	t.Run("keep-alive connections are reused", func(t *testing.T) {
		up := startRawUpstream(t, func(_ int, _ *http.Request, body string) (string, bool) {
			return "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body, false
		})
		p := startProxy(t, nil)
		p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("up", "up", 0)}, clusterDef{"up", []string{up.ln.Addr().String()}}))
		for i := range 5 {
			if code, got := post(t, p, "hello"); code != 200 || got != "hello" {
				t.Fatalf("request %d: got %d %q", i, code, got)
			}
		}
		if n := up.connections(); n != 1 {
			t.Errorf("upstream saw %d connections, want 1", n)
		}
	})

	t.Run("bytes after a response keep its connection out of the pool", func(t *testing.T) {
		up := startRawUpstream(t, func(conn int, _ *http.Request, _ string) (string, bool) {
			// A smuggled second response rides behind the first.
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" +
				"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled", false
		})
		p := startProxy(t, nil)
		p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("up", "up", 0)}, clusterDef{"up", []string{up.ln.Addr().String()}}))
		for i := range 3 {
			if code, got := post(t, p, "x"); code != 200 || got != "ok" {
				t.Fatalf("request %d: got %d %q, want 200 \"ok\"", i, code, got)
			}
		}
		if n := up.connections(); n != 3 {
			t.Errorf("upstream saw %d connections, want 3", n)
		}
	})

	t.Run("an upstream that never answers is abandoned when the client goes away", func(t *testing.T) {
		gone := make(chan struct{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.Copy(io.Discard, c) // until the proxy closes it
			close(gone)
		}()
		p := startProxy(t, nil)
		p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("up", "up", 0)}, clusterDef{"up", []string{ln.Addr().String()}}))
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: up\r\nContent-Length: 2\r\n\r\nhi")
		time.Sleep(50 * time.Millisecond)
		c.Close()
		select {
		case <-gone:
		case <-time.After(5 * time.Second):
			t.Fatal("the proxy kept its upstream connection after the client left")
		}
	})
}

func TestAppendRequestHead(t *testing.T) {
	base := func() *http.Request {
		return &http.Request{Method: "GET", Host: "reviews", URL: &url.URL{Path: "/a b"}, Header: http.Header{}}
	}
	t.Run("a well-formed request is written in origin form with its length", func(t *testing.T) {
		r := base()
		r.Method = "POST"
		r.Header["X-A"] = []string{"1"}
		r.Header["Content-Length"] = []string{"999"} // the map never says the length
		b, err := appendRequestHead(nil, r, 3)
		want := "POST /a%20b HTTP/1.1\r\nHost: reviews\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n"
		if err != nil || string(b) != want {
			t.Errorf("got %q, %v; want %q", b, err, want)
		}
	})
	for _, tt := range []struct {
		name string
		edit func(*http.Request)
	}{
		{"a header value with CR LF is refused", func(r *http.Request) { r.Header["X-A"] = []string{"1\r\nX-Injected: 1"} }},
		{"a header name with a space is refused", func(r *http.Request) { r.Header["X A"] = []string{"1"} }},
		{"a host with LF is refused", func(r *http.Request) { r.Host = "a\nb" }},
		{"a method with a space is refused", func(r *http.Request) { r.Method = "GET /x" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.edit(r)
			if b, err := appendRequestHead(nil, r, 0); err == nil {
				t.Errorf("wrote %q, want an error", b)
			}
		})
	}
}
