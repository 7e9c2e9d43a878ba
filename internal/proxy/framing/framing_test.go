package framing

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is one request as a handler received it.
type seen struct {
	method, target, body string
	bodyErr              bool
}

func (s seen) String() string {
	return fmt.Sprintf("%s %s body=%q err=%v", s.method, s.target, s.body, s.bodyErr)
}

// server is a real net/http server on loopback that records the requests
// its handler gets, with every connection wrapped in a Conn when guard is
// set. A stand-in request gets 400 with the reason, as the proxy's
// listener answers it.
type server struct {
	ln    net.Listener
	srv   *http.Server
	mu    sync.Mutex
	reqs  []seen
	stand int // stand-ins received
	// desync lists requests whose request line is not the one the guard
	// saw at that position on the connection.
	desync []string
}

// heads is what a guarded connection's Conn decided on, in order.
type heads struct {
	mu    sync.Mutex
	lines []string
	next  int // the handler's position
}

type (
	connKey  struct{}
	headsKey struct{}
)

func newServer(t testing.TB, guard bool) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	s.srv = &http.Server{
		Protocols:         &protocols,
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       2 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if g, ok := c.(*Conn); ok {
				h := &heads{}
				g.onHead = func(b []byte) {
					line, _, _ := strings.Cut(string(b), "\n")
					h.mu.Lock()
					h.lines = append(h.lines, strings.TrimSuffix(line, "\r"))
					h.mu.Unlock()
				}
				ctx = context.WithValue(ctx, headsKey{}, h)
			}
			return context.WithValue(ctx, connKey{}, c)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if m := r.Header.Get(MarkerHeader); m != "" {
				if c, ok := r.Context().Value(connKey{}).(*Conn); ok {
					if reason, ok := c.Rejection(m); ok {
						s.mu.Lock()
						s.stand++
						s.mu.Unlock()
						w.Header().Set("Connection", "close")
						http.Error(w, reason, http.StatusBadRequest)
						return
					}
				}
			}
			if h, ok := r.Context().Value(headsKey{}).(*heads); ok {
				h.mu.Lock()
				line := r.Method + " " + r.RequestURI + " " + r.Proto
				if h.next >= len(h.lines) || h.lines[h.next] != line {
					s.mu.Lock()
					s.desync = append(s.desync, fmt.Sprintf("request %d %q: guard saw %q", h.next, line, h.lines))
					s.mu.Unlock()
				}
				h.next++
				h.mu.Unlock()
			}
			b, err := io.ReadAll(r.Body)
			s.mu.Lock()
			s.reqs = append(s.reqs, seen{r.Method, r.RequestURI, string(b), err != nil})
			s.mu.Unlock()
			fmt.Fprintf(w, "%s %s", r.Method, r.RequestURI)
		}),
		ErrorLog: nil,
	}
	s.srv.SetKeepAlivesEnabled(true)
	l := net.Listener(ln)
	if guard {
		l = guardListener{ln}
	}
	go s.srv.Serve(l) //nolint:errcheck // ends with Close
	t.Cleanup(func() { s.srv.Close() })
	return s
}

type guardListener struct{ net.Listener }

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

func (s *server) requests() ([]seen, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...), s.stand
}

// checkInSync fails t if the guard ever looked for a head where net/http
// did not find one.
func (s *server) checkInSync(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.desync {
		t.Errorf("the guard lost the framing: %s", d)
	}
}

// exchange writes raw to the server in pieces of at most chunk bytes (0:
// all at once), half-closes, and returns everything the server answered.
func exchange(t testing.TB, addr string, raw string, chunk int) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(c)
		done <- string(b)
	}()
	for rest := raw; len(rest) > 0; {
		n := len(rest)
		if chunk > 0 {
			n = min(n, chunk)
		}
		if _, err := io.WriteString(c, rest[:n]); err != nil {
			break // the server closed: it refused something
		}
		rest = rest[n:]
		if chunk > 0 {
			time.Sleep(time.Millisecond) // separate segments, not a timing assertion
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	return <-done
}

func statuses(t testing.TB, responses string) []int {
	t.Helper()
	var codes []int
	br := bufio.NewReader(strings.NewReader(responses))
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return codes
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		codes = append(codes, res.StatusCode)
	}
}

const host = "Host: a\r\n"

func TestPipelinedRequestsPassUnchanged(t *testing.T) {
	raw := "GET /1 HTTP/1.1\r\n" + host + "\r\n" +
		"POST /2 HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" +
		"PUT /3 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"POST /4 HTTP/1.1\n" + "Host: a\nContent-Length: 2\n\nhi" + // bare LF heads are legal
		"POST /5 HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + // TE is ignored on HTTP/1.0: no body
		"GET /6 HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"
	want := []seen{
		{"GET", "/1", "", false},
		{"POST", "/2", "hello", false},
		{"PUT", "/3", "abc0123456789abcdef", false},
		{"POST", "/4", "hi", false},
		{"POST", "/5", "", false},
		{"GET", "/6", "", false},
	}
	for _, chunk := range []int{0, 1, 7} {
		t.Run(fmt.Sprintf("writes of %d bytes", chunk), func(t *testing.T) {
			s := newServer(t, true)
			codes := statuses(t, exchange(t, s.ln.Addr().String(), raw, chunk))
			got, stand := s.requests()
			if fmt.Sprint(got) != fmt.Sprint(want) || stand != 0 {
				t.Errorf("handler got %v (%d stand-ins), want %v", got, stand, want)
			}
			if len(codes) != len(want) {
				t.Errorf("got %d responses %v, want %d", len(codes), codes, len(want))
			}
			s.checkInSync(t)
		})
	}
}

func TestConflictingFramingIsRefused(t *testing.T) {
	before := "POST /before HTTP/1.1\r\n" + host + "Content-Length: 3\r\n\r\nabc"
	after := "GET /admin HTTP/1.1\r\n" + host + "\r\n"
	tests := []struct{ name, head string }{
		{"Content-Length then chunked", "POST /x HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"chunked then Content-Length", "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"},
		{"lower-case names", "POST /x HTTP/1.1\r\n" + host + "transfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n"},
		{"HTTP/1.0", "POST /x HTTP/1.0\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"},
		{"an unknown coding", "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, true)
			res := exchange(t, s.ln.Addr().String(), before+tt.head+after, 0)
			codes := statuses(t, res)
			got, stand := s.requests()
			if len(got) != 1 || got[0].target != "/before" || stand != 1 {
				t.Errorf("handler got %v and %d stand-ins, want only /before and the stand-in", got, stand)
			}
			if fmt.Sprint(codes) != "[200 400]" || !strings.Contains(res, ReasonConflictingFraming) {
				t.Errorf("responses %v:\n%s\nwant 200 then 400 with the reason", codes, res)
			}
		})
	}
}

func TestWithoutGuardNetHTTPReadsChunked(t *testing.T) {
	// What the guard is for: net/http alone serves the conflicting request
	// (and whatever its framing leads it to read next). If this starts
	// failing, net/http began refusing such requests itself.
	s := newServer(t, false)
	raw := "POST /x HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
		"GET /admin HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n"
	exchange(t, s.ln.Addr().String(), raw, 0)
	got, _ := s.requests()
	if len(got) != 2 {
		t.Fatalf("net/http alone served %v", got)
	}
}

func TestForgedMarkerIsAnOrdinaryHeader(t *testing.T) {
	s := newServer(t, true)
	raw := "GET /x HTTP/1.1\r\n" + host + MarkerHeader + ": 00000000000000000000000000000000\r\nConnection: close\r\n\r\n"
	codes := statuses(t, exchange(t, s.ln.Addr().String(), raw, 0))
	got, stand := s.requests()
	if len(got) != 1 || stand != 0 || fmt.Sprint(codes) != "[200]" {
		t.Errorf("got %v, %d stand-ins, codes %v; want the request served", got, stand, codes)
	}
}

func TestMalformedChunkClosesTheConnection(t *testing.T) {
	s := newServer(t, true)
	raw := "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n" + // bare LF: net/http refuses it too
		"GET /admin HTTP/1.1\r\n" + host + "\r\n"
	exchange(t, s.ln.Addr().String(), raw, 0)
	for _, r := range must(s.requests()) {
		if r.target == "/admin" {
			t.Errorf("a request after a malformed chunk was served: %v", r)
		}
	}
}

func must[T any](v T, _ int) T { return v }

func TestHTTP2PriorKnowledgePassesThrough(t *testing.T) {
	s := newServer(t, true)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &protocols}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	for i := range 3 {
		res, err := client.Post("http://"+s.ln.Addr().String()+fmt.Sprintf("/h2/%d", i), "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.ProtoMajor != 2 || res.StatusCode != 200 {
			t.Fatalf("got %s %d, want HTTP/2 200", res.Proto, res.StatusCode)
		}
	}
	if got, _ := s.requests(); len(got) != 3 || got[2].body != "body" {
		t.Errorf("handler got %v", got)
	}
}
