package h2server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer serves h2c (prior knowledge) or TLS (ALPN h2) with an own
// Server on a loopback port.
type testServer struct {
	t    testing.TB
	s    *Server
	ln   net.Listener
	tls  *tls.Config
	wg   sync.WaitGroup
	addr string
	// connDone gets a value each time ServeConn returns, which is
	// after the connection's handlers have.
	connDone chan struct{}
}

func newTestServer(t testing.TB, h http.Handler, useTLS bool, opts ...func(*Server)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, s: &Server{Handler: h}, ln: ln, addr: ln.Addr().String(), connDone: make(chan struct{}, 1024)}
	for _, o := range opts {
		o(ts.s)
	}
	if useTLS {
		ts.tls = testTLSConfig(t)
	}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				ctx := context.WithValue(context.Background(), http.LocalAddrContextKey, c.LocalAddr())
				if ts.tls != nil {
					tc := tls.Server(c, ts.tls)
					if err := tc.Handshake(); err != nil {
						c.Close()
						return
					}
					ts.s.ServeTLSConn(ctx, tc)
					return
				}
				ts.s.ServeConn(ctx, c, nil)
				select {
				case ts.connDone <- struct{}{}:
				default:
				}
			}()
		}
	}()
	t.Cleanup(ts.close)
	return ts
}

func (ts *testServer) close() {
	ts.ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.s.Shutdown(ctx); err != nil {
		ts.s.Close()
	}
	ts.wg.Wait()
}

var (
	tlsOnce sync.Once
	tlsConf *tls.Config
)

func testTLSConfig(t testing.TB) *tls.Config {
	tlsOnce.Do(func() {
		srv := httptest.NewUnstartedServer(nil)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		tlsConf = srv.TLS.Clone()
		srv.Close()
	})
	c := tlsConf.Clone()
	c.NextProtos = []string{"h2"}
	return c
}

func (ts *testServer) client() *http.Client {
	var p http.Protocols
	tr := &http.Transport{Protocols: &p}
	if ts.tls != nil {
		p.SetHTTP2(true)
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	} else {
		p.SetUnencryptedHTTP2(true) // prior knowledge
	}
	ts.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func (ts *testServer) url(path string) string {
	if ts.tls != nil {
		return "https://" + ts.addr + path
	}
	return "http://" + ts.addr + path
}

func TestBasicRequests(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					t.Errorf("read body: %v", err)
				}
				w.Header().Set("X-Method", r.Method)
				w.Header().Set("X-Len", fmt.Sprint(len(body)))
				w.Header().Set("X-Proto", r.Proto)
				w.Header().Set("X-TLS", fmt.Sprint(r.TLS != nil))
				w.Write(body)
			})
			ts := newTestServer(t, h, useTLS)
			cl := ts.client()
			for _, size := range []int{0, 1, 1024, 5000, 100 << 10, 5 << 20} {
				body := bytes.Repeat([]byte("x"), size)
				res, err := cl.Post(ts.url("/echo"), "text/plain", bytes.NewReader(body))
				if err != nil {
					t.Fatalf("size %d: %v", size, err)
				}
				got, err := io.ReadAll(res.Body)
				res.Body.Close()
				if err != nil {
					t.Fatalf("size %d: read: %v", size, err)
				}
				if !bytes.Equal(got, body) {
					t.Fatalf("size %d: got %d bytes back", size, len(got))
				}
				if res.Header.Get("X-Proto") != "HTTP/2.0" || res.Header.Get("X-TLS") != fmt.Sprint(useTLS) {
					t.Fatalf("headers %v", res.Header)
				}
			}
			var wg sync.WaitGroup
			for i := range 32 {
				wg.Go(func() {
					res, err := cl.Get(ts.url(fmt.Sprintf("/p/%d", i)))
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				})
			}
			wg.Wait()
		})
	}
}

func TestTrailersAndFlush(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Trailer", "X-Declared")
		w.WriteHeader(200)
		w.Write([]byte("part1"))
		w.(http.Flusher).Flush()
		w.Write([]byte("part2"))
		w.Header().Set("X-Declared", "d:"+r.Trailer.Get("X-Req-Trailer"))
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	})
	ts := newTestServer(t, h, false)
	req, _ := http.NewRequest("POST", ts.url("/"), io.NopCloser(strings.NewReader("abc")))
	req.Trailer = http.Header{"X-Req-Trailer": {"rt"}}
	res, err := ts.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "part1part2" {
		t.Fatalf("body %q", b)
	}
	if res.Trailer.Get("X-Declared") != "d:rt" || res.Trailer.Get("X-Late") != "late" {
		t.Fatalf("trailers %v", res.Trailer)
	}
}

func TestContextCancelledOnReset(t *testing.T) {
	started := make(chan struct{})
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
		done <- r.Context().Err()
	})
	ts := newTestServer(t, h, false)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.url("/"), nil)
	go func() {
		<-started
		cancel()
	}()
	_, err := ts.client().Do(req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler ctx err %v", err)
	}
}

var discardLog = log.New(io.Discard, "", 0)

var discardSlog = slog.New(slog.DiscardHandler)

// TestFullDuplexStreaming is gRPC's bidirectional streaming: each
// message the client sends is answered (and flushed) before the client
// sends the next, on one stream, with trailers at the end.
func TestFullDuplexStreaming(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", useTLS), func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/grpc")
				w.Header().Set("Trailer", "Grpc-Status")
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				buf := make([]byte, 64)
				for {
					n, err := r.Body.Read(buf)
					if n > 0 {
						w.Write(append([]byte("echo:"), buf[:n]...))
						w.(http.Flusher).Flush()
					}
					if err != nil {
						break
					}
				}
				w.Header().Set("Grpc-Status", "0")
			})
			ts := newTestServer(t, h, useTLS)
			pr, pw := io.Pipe()
			req, _ := http.NewRequest("POST", ts.url("/svc/Method"), pr)
			res, err := ts.client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			for i := range 5 {
				msg := fmt.Sprintf("m%d", i)
				if _, err := pw.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				n, err := io.ReadAtLeast(res.Body, buf, len("echo:")+len(msg))
				if err != nil || string(buf[:n]) != "echo:"+msg {
					t.Fatalf("message %d: got %q, %v", i, buf[:n], err)
				}
			}
			pw.Close()
			if rest, err := io.ReadAll(res.Body); err != nil || len(rest) != 0 {
				t.Fatalf("rest %q, %v", rest, err)
			}
			res.Body.Close()
			if res.Trailer.Get("Grpc-Status") != "0" {
				t.Fatalf("trailers %v", res.Trailer)
			}
		})
	}
}

// TestConcurrentStreamsOneConnection runs many streams with bodies of
// different sizes at once on one connection, past the windows' initial
// sizes, as a peer sidecar multiplexes its requests.
func TestConcurrentStreamsOneConnection(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
		w.Write(b)
	})
	ts := newTestServer(t, h, true, func(s *Server) { s.StreamWindow = 64 << 10; s.ConnWindow = 256 << 10 })
	cl := ts.client()
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			body := bytes.Repeat([]byte{byte('a' + i)}, (i+1)*20000)
			res, err := cl.Post(ts.url("/"), "", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			got, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || !bytes.Equal(got, append(body, body...)) {
				t.Errorf("stream %d: %d bytes, %v", i, len(got), err)
			}
		})
	}
	wg.Wait()
}

// TestBodyBuffersAreNotShared: a connection hands the request body
// buffers of finished streams to new ones, but not one a goroutine the
// handler left behind may still read: what it reads later is its own
// request's bytes, whatever came in meanwhile.
func TestBodyBuffersAreNotShared(t *testing.T) {
	lates := make(chan io.ReadCloser, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/late" {
			// Wait for all of the body to be in, then leave it unread.
			for i := 0; i < 500 && r.ContentLength > 0; i++ {
				st := r.Body.(*requestBody).st
				st.c.mu.Lock()
				n := len(st.body)
				st.c.mu.Unlock()
				if int64(n) == r.ContentLength {
					break
				}
				time.Sleep(time.Millisecond)
			}
			lates <- r.Body
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	ts := newTestServer(t, h, true)
	cl := ts.client()
	body := func(i int) string { return strings.Repeat(string(rune('a'+i%26)), 1000+i*37) }

	want := strings.Repeat("z", 3000) // a buffer the others fit in
	req, _ := http.NewRequest("POST", ts.url("/late"), strings.NewReader(want))
	res, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	late := <-lates

	var wg sync.WaitGroup
	for i := 1; i < 40; i++ {
		wg.Go(func() {
			res, err := cl.Post(ts.url("/"), "", strings.NewReader(body(i)))
			if err != nil {
				t.Error(err)
				return
			}
			got, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || string(got) != body(i) {
				t.Errorf("stream %d: %d bytes %.10q..., %v", i, len(got), got, err)
			}
		})
	}
	wg.Wait()
	got, err := io.ReadAll(late)
	if string(got) != want || err != nil {
		t.Errorf("the late read got %d bytes %.20q..., %v; want its request's %d bytes", len(got), got, err, len(want))
	}
}

// TestResponseControllerDeadlines: a read deadline fails the body's
// reads, a write deadline resets the stream, as with net/http.
func TestResponseControllerDeadlines(t *testing.T) {
	readErr := make(chan error, 1)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		switch r.URL.Path {
		case "/read":
			if err := rc.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
				readErr <- err
				return
			}
			_, err := io.ReadAll(r.Body)
			readErr <- err
		case "/write":
			w.WriteHeader(200)
			rc.Flush()
			if err := rc.SetWriteDeadline(time.Now().Add(-time.Second)); err != nil {
				t.Errorf("SetWriteDeadline: %v", err)
			}
			<-r.Context().Done()
		}
	}), false)
	cl := ts.client()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", ts.url("/read"), pr)
	go func() {
		res, err := cl.Do(req)
		if err == nil {
			res.Body.Close()
		}
	}()
	if err := <-readErr; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after the deadline: %v", err)
	}
	res, err := cl.Get(ts.url("/write"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
		t.Fatalf("body after the write deadline: %v", err)
	}
}

// TestConnContextCancelsRequests: ServeConn's ctx is the parent of every
// request's context, so ending it ends the requests in flight, as it does
// with h1server and with net/http's BaseContext; its deadline and values
// are the requests' too.
func TestConnContextCancelsRequests(t *testing.T) {
	type key struct{}
	started := make(chan context.Context, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- r.Context()
		select {
		case <-r.Context().Done():
		case <-time.After(hangGuard):
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := &Server{Handler: h}
	deadline := time.Now().Add(time.Hour)
	ctx, cancel := context.WithDeadline(context.WithValue(context.Background(), key{}, "v"), deadline)
	defer cancel()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.ServeConn(ctx, c, nil)
	}()
	rc := dialRaw(t, ln.Addr().String())
	rc.headers(1, true, getReq...)
	rctx := <-started
	if got, ok := rctx.Deadline(); !ok || !got.Equal(deadline) {
		t.Errorf("request deadline %v, %v; want the connection's %v", got, ok, deadline)
	}
	if v := rctx.Value(key{}); v != "v" {
		t.Errorf("request value %v, want the connection's", v)
	}
	cancel()
	select {
	case <-rctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the request's context outlived its connection's")
	}
	rc.nc.Close()
	<-served
}
