package listener

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/peer"
)

// request is one request as the handler saw it: everything the engine
// reads of it.
type request struct {
	method, target, proto, host, url string
	close                            bool
	length                           int64
	header, body                     string
	bodyErr, peer                    bool
}

// recorder is a listener whose handler records every request and answers
// in a way the target chooses, to exercise the response framing.
type recorder struct {
	srv  *Server
	addr string
	mu   sync.Mutex
	reqs []request
	own  int // requests served by the own loop's writer
}

func newRecorder(t testing.TB, own bool) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{addr: ln.Addr().String()}
	r.srv = New("test", ln, http.HandlerFunc(r.serve), slog.New(slog.DiscardHandler))
	r.srv.SetOwnHTTP1(own)
	r.srv.srv.ReadHeaderTimeout = 5 * time.Second
	if r.srv.own != nil {
		r.srv.own.ReadHeaderTimeout = 5 * time.Second
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.srv.Serve(); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return r
}

func (r *recorder) serve(w http.ResponseWriter, req *http.Request) {
	b, err := io.ReadAll(req.Body)
	keys := make([]string, 0, len(req.Header))
	for k, vv := range req.Header {
		keys = append(keys, fmt.Sprintf("%s=%q", k, vv))
	}
	slices.Sort(keys)
	_, hasPeer := peer.FromContext(req.Context())
	r.mu.Lock()
	if strings.HasPrefix(fmt.Sprintf("%T", w), "*h1server.") {
		r.own++
	}
	r.reqs = append(r.reqs, request{
		method: req.Method, target: req.RequestURI, proto: req.Proto, host: req.Host, url: req.URL.String(),
		close: req.Close, length: req.ContentLength, header: strings.Join(keys, " "),
		body: string(b), bodyErr: err != nil, peer: hasPeer,
	})
	r.mu.Unlock()
	p := req.URL.Path
	switch {
	case strings.Contains(p, "big"):
		_, _ = w.Write([]byte(strings.Repeat("0123456789", 300)))
	case strings.Contains(p, "flush"):
		_, _ = io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "b")
	case strings.Contains(p, "304"):
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotModified)
	case strings.Contains(p, "204"):
		w.WriteHeader(http.StatusNoContent)
	case strings.Contains(p, "len"):
		w.Header().Set("Content-Length", "5")
		_, _ = io.WriteString(w, "hello")
	case strings.Contains(p, "close"):
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	case strings.Contains(p, "keep"):
		w.Header().Set("Connection", "keep-alive")
		w.Header().Set("Content-Length", "2")
		_, _ = io.WriteString(w, "ok")
	case strings.Contains(p, "trailer"):
		w.Header().Set("Trailer", "X-T")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-T", "v")
	case strings.Contains(p, "early"):
		w.Header().Set("Link", "</a>")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "after hints")
	case strings.Contains(p, "html"):
		_, _ = io.WriteString(w, "<html><body>sniffed</body></html>")
	default:
		fmt.Fprintf(w, "%s %s %s", req.Method, req.RequestURI, req.Proto)
	}
}

func (r *recorder) take() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	reqs := r.reqs
	r.reqs = nil
	return reqs
}

// exchange writes raw to addr, half-closes, and returns all the server
// sent until it closed.
func exchange(t testing.TB, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(c)
		done <- string(b)
	}()
	_, _ = io.WriteString(c, raw) // fails when the server refused and closed: fine
	_ = c.(*net.TCPConn).CloseWrite()
	return <-done
}

// responseFraming is a response as a client reads it: status, the headers that
// frame it (Date aside, which differs by the second), body and trailers.
func responseFraming(raw string, reqs []request) []string {
	var out []string
	br := bufio.NewReader(strings.NewReader(raw))
	for i := 0; ; i++ {
		method := http.MethodGet
		if i < len(reqs) {
			method = reqs[i].method
		}
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			if rest, _ := io.ReadAll(br); len(rest) > 0 {
				out = append(out, fmt.Sprintf("unparsed %q", rest))
			}
			return out
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		res.Header.Del("Date")
		keys := make([]string, 0, len(res.Header))
		for k, vv := range res.Header {
			keys = append(keys, fmt.Sprintf("%s=%q", k, vv))
		}
		slices.Sort(keys)
		out = append(out, fmt.Sprintf("%s %d te=%v cl=%d close=%v %s body=%q err=%v trailer=%v",
			res.Proto, res.StatusCode, res.TransferEncoding, res.ContentLength, res.Close, strings.Join(keys, " "), b, err != nil, res.Trailer))
	}
}

// FuzzOwnLoopAgreesWithNetHTTP sends the same bytes to a listener that
// serves HTTP/1.x with weft's own loop and to one that uses net/http's
// server (both behind the framing guard), and requires the same requests
// at the handler, in the same order, and the same responses, framing
// included.
func FuzzOwnLoopAgreesWithNetHTTP(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		// The second request must not see the first's headers (the loop
		// reuses its header map).
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\nX-B: 3\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\nX-B: 4\r\n\r\n",
		"POST /len HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /big HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /keep HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /y HTTP/1.0\r\n\r\nGET /z HTTP/1.0\r\n\r\n",
		"HEAD /big HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /flush HTTP/1.1\r\nHost: a\r\n\r\nGET /trailer HTTP/1.1\r\nHost: a\r\n\r\nGET /early HTTP/1.1\r\nHost: a\r\n\r\nGET /html HTTP/1.1\r\nHost: A:80\r\n\r\n",
		"GET /close HTTP/1.1\r\nHost: a\r\n\r\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://b:8080/p?q=1 HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\r\nGET /after-crlf HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nxGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"get /lower HTTP/1.1\r\nHost: a\r\n\r\nBREW / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET /\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + strings.Repeat("x", 5000) + "\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n b\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\r\n\r\n",
	} {
		f.Add(seed)
	}
	own := newRecorder(f, true)
	plain := newRecorder(f, false)
	f.Fuzz(func(t *testing.T, raw string) {
		gotRaw := exchange(t, own.addr, raw)
		got := own.take()
		wantRaw := exchange(t, plain.addr, raw)
		want := plain.take()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("the handler saw different requests:\nown      %+v\nnet/http %+v", got, want)
		}
		if g, w := responseFraming(gotRaw, got), responseFraming(wantRaw, want); !slices.Equal(g, w) {
			t.Fatalf("different responses:\nown      %q\nnet/http %q\nraw own:\n%s\nraw net/http:\n%s", g, w, gotRaw, wantRaw)
		}
	})
}
