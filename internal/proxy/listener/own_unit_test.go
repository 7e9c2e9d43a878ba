package listener

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialRaw opens a connection to addr with a test deadline.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

func readResponse(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	res, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading a body: %v", err)
	}
	return res, string(b)
}

func TestOwnLoopServesTheCommonCases(t *testing.T) {
	r := newRecorder(t, true)
	tests := []struct {
		name, raw string
		want      []string // per response: "status body", in order
		closes    bool     // the server closes after the last
	}{
		{"pipelined requests are answered in order",
			"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
			[]string{"200 GET /1 HTTP/1.1", "200 POST /2 HTTP/1.1", "200 GET /3 HTTP/1.1"}, false},
		{"Connection: close ends the connection",
			"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n",
			[]string{"200 GET /1 HTTP/1.1"}, true},
		{"HTTP/1.0 closes unless keep-alive",
			"GET /keep HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /1 HTTP/1.0\r\n\r\nGET /never HTTP/1.0\r\n\r\n",
			[]string{"200 ok", "200 GET /1 HTTP/1.0"}, true},
		{"HEAD has no body", "HEAD /big HTTP/1.1\r\nHost: a\r\n\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
			[]string{"200 ", "200 GET /1 HTTP/1.1"}, false},
		{"304 and 204 have no body", "GET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
			[]string{"304 ", "204 ", "200 GET /1 HTTP/1.1"}, false},
		{"a flushed response is chunked", "GET /flush HTTP/1.1\r\nHost: a\r\n\r\n", []string{"200 ab"}, false},
		{"a large response is chunked", "GET /big HTTP/1.1\r\nHost: a\r\n\r\n", []string{"200 " + strings.Repeat("0123456789", 300)}, false},
		{"a chunked request body goes to net/http",
			"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
			[]string{"200 GET /1 HTTP/1.1", "200 POST /2 HTTP/1.1", "200 GET /3 HTTP/1.1"}, false},
		{"conflicting framing is the guard's 400",
			"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
			[]string{"200 GET /1 HTTP/1.1", "400 both Content-Length and Transfer-Encoding: the message framing is ambiguous\n"}, true},
		{"a head over 4 KiB is net/http's", "GET /1 HTTP/1.1\r\nHost: a\r\nX-Long: " + strings.Repeat("x", 5000) + "\r\n\r\n",
			[]string{"200 GET /1 HTTP/1.1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, br := dialRaw(t, r.addr)
			if _, err := io.WriteString(c, tt.raw); err != nil {
				t.Fatal(err)
			}
			reqs := strings.Split(tt.raw, "\r\n\r\n")
			for i, want := range tt.want {
				method := "GET"
				if strings.HasPrefix(reqs[min(i, len(reqs)-1)], "HEAD") {
					method = "HEAD"
				}
				res, body := readResponse(t, br, method)
				if got := res.Status[:3] + " " + body; got != want {
					t.Errorf("response %d: got %q, want %q", i, got, want)
				}
			}
			if tt.closes {
				if n, err := br.ReadByte(); err != io.EOF {
					t.Errorf("the connection stays open (%v, %v)", n, err)
				}
			}
		})
	}
	r.take()
	if r.own == 0 {
		t.Error("the own loop served no request")
	}
}

func TestOwnLoopRecoversHandlerPanics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New("test", ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		_, _ = io.WriteString(w, "ok")
	}), slog.New(slog.DiscardHandler))
	s.SetOwnHTTP1(true)
	go s.Serve() //nolint:errcheck // ends with Shutdown
	defer s.Shutdown(context.Background())

	c, br := dialRaw(t, ln.Addr().String())
	_, _ = io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /panic HTTP/1.1\r\nHost: a\r\n\r\nGET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := readResponse(t, br, "GET"); body != "ok" {
		t.Fatalf("got %q", body)
	}
	if _, err := http.ReadResponse(br, nil); err == nil {
		t.Fatal("a response after the panic; want the connection closed")
	}
	// The server still serves others.
	c2, br2 := dialRaw(t, ln.Addr().String())
	_, _ = io.WriteString(c2, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := readResponse(t, br2, "GET"); body != "ok" {
		t.Fatalf("got %q", body)
	}
}

// TestOwnLoopCancelsWhenTheClientLeaves: a handler that waits (on its
// upstream, say) sees its context end when the client closes.
func TestOwnLoopCancelsWhenTheClientLeaves(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	cancelled := make(chan struct{})
	s := New("test", ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		close(started)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(15 * time.Second):
		}
	}), slog.New(slog.DiscardHandler))
	s.SetOwnHTTP1(true)
	go s.Serve() //nolint:errcheck // ends with Shutdown
	defer s.Shutdown(context.Background())

	c, _ := dialRaw(t, ln.Addr().String())
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
	<-started
	c.Close()
	select {
	case <-cancelled:
	case <-time.After(15 * time.Second):
		t.Fatal("the request's context did not end when the client left")
	}
}

// TestOwnLoopShutdown: Shutdown waits for a request in flight on either
// path, closes idle connections, and the in-flight requests complete.
func TestOwnLoopShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	release := make(chan struct{})
	s := New("test", ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			wg.Done()
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}), slog.New(slog.DiscardHandler))
	s.SetOwnHTTP1(true)
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()

	addr := ln.Addr().String()
	idle, idleBR := dialRaw(t, addr)
	_, _ = io.WriteString(idle, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	readResponse(t, idleBR, "GET")
	own, ownBR := dialRaw(t, addr)
	_, _ = io.WriteString(own, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	// A chunked body makes the loop hand the connection to net/http.
	handed, handedBR := dialRaw(t, addr)
	_, _ = io.WriteString(handed, "POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	wg.Wait()

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	if _, err := idleBR.ReadByte(); err != io.EOF {
		t.Errorf("the idle connection was not closed: %v", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with requests in flight", err)
	default:
	}
	close(release)
	for _, br := range []*bufio.Reader{ownBR, handedBR} {
		if _, body := readResponse(t, br, "GET"); body != "done" {
			t.Errorf("in-flight request got %q", body)
		}
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	_ = own
	_ = handed
}

// Shutdown while keep-alive clients send request after request: a
// connection is closed only between a response and the next request, so
// every request the handler served has its whole response at the client.
// (The loop writes a response as it begins to wait for the next request,
// and marks the connection idle for Shutdown only once it is written.)
func TestOwnLoopShutdownCutsNoResponse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	served := map[string]int{} // by client address
	total := 0
	many := make(chan struct{})
	s := New("test", ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served[r.RemoteAddr]++
		total++
		if total == 200 {
			close(many)
		}
		mu.Unlock()
		_, _ = io.WriteString(w, "done")
	}), slog.New(slog.DiscardHandler))
	s.SetOwnHTTP1(true)
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve() }()

	const clients, maxRequests = 8, 5000
	var wg sync.WaitGroup
	got := make([]int, clients)
	addrs := make([]string, clients)
	for i := range clients {
		c, br := dialRaw(t, ln.Addr().String())
		addrs[i] = c.LocalAddr().String()
		wg.Go(func() {
			for range maxRequests {
				if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
					return
				}
				res, err := http.ReadResponse(br, &http.Request{Method: "GET"})
				if err != nil {
					return // closed between responses, as Shutdown may
				}
				b, err := io.ReadAll(res.Body)
				if err != nil || string(b) != "done" {
					t.Errorf("client %d: a cut response: %q, %v", i, b, err)
					return
				}
				got[i]++
			}
		})
	}
	select {
	case <-many:
	case <-time.After(15 * time.Second):
		t.Fatal("the clients got nowhere")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wg.Wait()
	if err := <-serveErr; err != nil {
		t.Errorf("Serve: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, a := range addrs {
		if served[a] != got[i] {
			t.Errorf("client %d: the handler served %d requests, the client got %d responses", i, served[a], got[i])
		}
	}
}

// What the client sends while a handler runs (a pipelined request, or the
// end of its side of the connection) is served or seen once the response
// is out, not left waiting: a wait for the next request that skipped the
// read would miss what had arrived before it began.
func TestOwnLoopSeesWhatArrivedDuringTheHandler(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New("test", ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // the client's next bytes arrive meanwhile
		_, _ = io.WriteString(w, r.URL.Path)
	}), slog.New(slog.DiscardHandler))
	s.SetOwnHTTP1(true)
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-served
	})

	t.Run("a request pipelined during the handler is served", func(t *testing.T) {
		c, br := dialRaw(t, ln.Addr().String())
		_, _ = io.WriteString(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
		time.Sleep(20 * time.Millisecond)
		_, _ = io.WriteString(c, "GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
		for _, want := range []string{"/first", "/second"} {
			if _, body := readResponse(t, br, "GET"); body != want {
				t.Fatalf("got %q, want %q", body, want)
			}
		}
	})

	t.Run("a half-close during the handler closes the connection after the response", func(t *testing.T) {
		c, br := dialRaw(t, ln.Addr().String())
		_, _ = io.WriteString(c, "GET /only HTTP/1.1\r\nHost: a\r\n\r\n")
		_ = c.(*net.TCPConn).CloseWrite()
		if _, body := readResponse(t, br, "GET"); body != "/only" {
			t.Fatalf("got %q", body)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after the response: %v, want the server's close", err)
		}
	})
}
