package h2server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/internal/leakcheck"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// rawConn is a client speaking frames directly, for what real clients
// rarely send.
type rawConn struct {
	t    *testing.T
	nc   net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

// hangGuard bounds every read so a broken server fails the test instead
// of hanging it; it is never what a test asserts.
const hangGuard = 20 * time.Second

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(hangGuard))
	rc := &rawConn{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	if _, err := io.WriteString(nc, clientPreface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The server's SETTINGS, then its connection WINDOW_UPDATE.
	f := rc.read()
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	if err := rc.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return rc
}

func (rc *rawConn) read() http2.Frame {
	rc.t.Helper()
	f, err := rc.fr.ReadFrame()
	if err != nil {
		rc.t.Fatalf("read frame: %v", err)
	}
	return f
}

// until reads frames until match says done, skipping the rest; it
// returns the matching frame.
func (rc *rawConn) until(match func(http2.Frame) bool) http2.Frame {
	rc.t.Helper()
	for {
		f := rc.read()
		if match(f) {
			return f
		}
	}
}

func (rc *rawConn) headerBlock(fields ...string) []byte {
	rc.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		_ = rc.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), rc.hbuf.Bytes()...)
}

func (rc *rawConn) headers(id uint32, end bool, fields ...string) {
	rc.t.Helper()
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.headerBlock(fields...), EndStream: end, EndHeaders: true}); err != nil {
		rc.t.Fatal(err)
	}
}

var getReq = []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "example"}

func isRST(id uint32) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		r, ok := f.(*http2.RSTStreamFrame)
		return ok && r.StreamID == id
	}
}

func isGoAway(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }

func isResponse(id uint32) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == id
	}
}

func okHandler(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	_, _ = io.WriteString(w, "ok")
}

func TestMalformedRequests(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(okHandler), false)
	for _, tc := range []struct {
		name   string
		fields []string
		status string // "" means RST_STREAM PROTOCOL_ERROR
	}{
		{"a request without :path is reset", []string{":method", "GET", ":scheme", "http", ":authority", "a"}, ""},
		{"a request with scheme ftp is reset", []string{":method", "GET", ":scheme", "ftp", ":path", "/", ":authority", "a"}, ""},
		{"an unknown pseudo-header resets", []string{":method", "GET", ":scheme", "http", ":path", "/", ":foo", "x"}, ""},
		{"a pseudo-header after a regular one resets", []string{":method", "GET", ":scheme", "http", "x-a", "b", ":path", "/"}, ""},
		{"an uppercase header name resets", []string{":method", "GET", ":scheme", "http", ":path", "/", "X-Upper", "b"}, ""},
		{"CONNECT with a path resets", []string{":method", "CONNECT", ":path", "/", ":authority", "a:443"}, ""},
		{"CONNECT without authority resets", []string{":method", "CONNECT"}, ""},
		{"userinfo in authority resets", []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "u@a"}, ""},
		{"a path that is not a request URI resets", []string{":method", "GET", ":scheme", "http", ":path", "x y"}, ""},
		{"extended CONNECT is not offered", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", "/", ":authority", "a"}, ""},
		{"a connection header is answered 400", append(append([]string{}, getReq...), "connection", "keep-alive"), "400"},
		{"TE other than trailers is answered 400", append(append([]string{}, getReq...), "te", "gzip"), "400"},
		{"TE trailers is served", append(append([]string{}, getReq...), "te", "trailers"), "200"},
		{"a plain GET is served", getReq, "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := dialRaw(t, ts.addr)
			rc.headers(1, true, tc.fields...)
			f := rc.until(func(f http2.Frame) bool {
				return isRST(1)(f) || isResponse(1)(f) || isGoAway(f)
			})
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				if tc.status != "" || f.ErrCode != http2.ErrCodeProtocol {
					t.Fatalf("got RST_STREAM %v, want status %q", f.ErrCode, tc.status)
				}
			case *http2.MetaHeadersFrame:
				if got := f.PseudoValue("status"); got != tc.status {
					t.Fatalf("got status %q, want %q", got, tc.status)
				}
			default:
				t.Fatalf("got %v", f)
			}
		})
	}
}

func TestResetCancelsTheHandler(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan struct{})
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/block" {
			return
		}
		close(started)
		<-r.Context().Done()
		close(cancelled)
	}), false)
	rc := dialRaw(t, ts.addr)
	rc.headers(1, true, ":method", "GET", ":scheme", "http", ":path", "/block")
	<-started
	if err := rc.fr.WriteRSTStream(1, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	<-cancelled
	// The connection still serves.
	rc.headers(3, true, getReq...)
	rc.until(isResponse(3))
}

func TestFlowControlViolations(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never reads the body
	}), false, func(s *Server) { s.StreamWindow = 1024; s.ConnWindow = 4096 })
	post := []string{":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a"}

	t.Run("more than the stream window resets the stream", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		rc.headers(1, false, post...)
		if err := rc.fr.WriteData(1, false, make([]byte, 1025)); err != nil {
			t.Fatal(err)
		}
		f := rc.until(func(f http2.Frame) bool { return isRST(1)(f) || isGoAway(f) }).(*http2.RSTStreamFrame)
		if f.ErrCode != http2.ErrCodeFlowControl {
			t.Fatalf("RST_STREAM %v", f.ErrCode)
		}
	})
	t.Run("more than the connection window ends the connection", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		for i := uint32(0); i < 5; i++ {
			id := 1 + 2*i
			rc.headers(id, false, post...)
			if err := rc.fr.WriteData(id, false, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		f := rc.until(isGoAway).(*http2.GoAwayFrame)
		if f.ErrCode != http2.ErrCodeFlowControl {
			t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	})
	t.Run("a WINDOW_UPDATE past 2^31-1 on the connection ends it", func(t *testing.T) {
		rc := dialRaw(t, ts.addr)
		if err := rc.fr.WriteWindowUpdate(0, 1<<31-1); err != nil {
			t.Fatal(err)
		}
		f := rc.until(isGoAway).(*http2.GoAwayFrame)
		if f.ErrCode != http2.ErrCodeFlowControl {
			t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	})
}

func TestContinuationFloodEndsTheConnection(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(okHandler), false, func(s *Server) { s.MaxHeaderBytes = 1024 })
	rc := dialRaw(t, ts.addr)
	if err := rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.headerBlock(getReq...), EndHeaders: false}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("v", 1000)
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		err = rc.fr.WriteContinuation(1, false, rc.headerBlock("x-flood", big))
	}
	// Either the writes fail because the server closed, or a GOAWAY
	// is waiting.
	for {
		f, rerr := rc.fr.ReadFrame()
		if rerr != nil {
			return // closed
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode == http2.ErrCodeNo {
				t.Fatalf("GOAWAY %v", g.ErrCode)
			}
			return
		}
		if _, ok := f.(*http2.MetaHeadersFrame); ok {
			t.Fatal("the flooded request was answered")
		}
	}
}

func TestTooManyStreamsAreRefused(t *testing.T) {
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Done()
		<-release
	}), false, func(s *Server) { s.MaxConcurrentStreams = 2 })
	rc := dialRaw(t, ts.addr)
	rc.headers(1, true, getReq...)
	rc.headers(3, true, getReq...)
	started.Wait()
	rc.headers(5, true, getReq...)
	f := rc.until(isRST(5)).(*http2.RSTStreamFrame)
	if f.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("RST_STREAM %v", f.ErrCode)
	}
	close(release)
	rc.until(isResponse(1))
}

func TestContentLengthMismatchFailsTheBody(t *testing.T) {
	errc := make(chan error, 1)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		errc <- err
	}), false)
	rc := dialRaw(t, ts.addr)
	rc.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/", "content-length", "10")
	if err := rc.fr.WriteData(1, true, []byte("short")); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "Content-Length") {
		t.Fatalf("body error %v", err)
	}
	rc.headers(3, false, ":method", "POST", ":scheme", "http", ":path", "/", "content-length", "2")
	if err := rc.fr.WriteData(3, false, []byte("long")); err != nil {
		t.Fatal(err)
	}
	f := rc.until(isRST(3)).(*http2.RSTStreamFrame)
	if f.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("RST_STREAM %v", f.ErrCode)
	}
	<-errc
}

func TestWindowIsReturnedInLargeSteps(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(okHandler), false)
	rc := dialRaw(t, ts.addr)
	rc.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/")
	// 3 MiB in 16 KiB frames, within the 4 MiB stream window.
	chunk := make([]byte, 16<<10)
	const total = 3 << 20
	for sent := 0; sent < total; sent += len(chunk) {
		if err := rc.fr.WriteData(1, sent+len(chunk) == total, chunk); err != nil {
			t.Fatal(err)
		}
	}
	updates := 0
	rc.until(func(f http2.Frame) bool {
		if _, ok := f.(*http2.WindowUpdateFrame); ok {
			updates++
		}
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamEnded()
	})
	// Half of the stream window read (2 MiB) returns it once; the
	// connection window (16 MiB) not yet. net/http would send ~768.
	if updates > 2 {
		t.Fatalf("%d WINDOW_UPDATE frames for 3 MiB", updates)
	}
}

func TestPingIsAnswered(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(okHandler), false)
	rc := dialRaw(t, ts.addr)
	data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	if err := rc.fr.WritePing(false, data); err != nil {
		t.Fatal(err)
	}
	f := rc.until(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() }).(*http2.PingFrame)
	if f.Data != data {
		t.Fatalf("ping data %v", f.Data)
	}
}

func TestShutdownIsGraceful(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "finished")
	}), false)
	rc := dialRaw(t, ts.addr)
	rc.headers(1, true, getReq...)
	<-started
	done := make(chan error, 1)
	go func() { done <- ts.s.Shutdown(context.Background()) }()
	g := rc.until(isGoAway).(*http2.GoAwayFrame)
	if g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v last %d", g.ErrCode, g.LastStreamID)
	}
	close(release)
	d := rc.until(func(f http2.Frame) bool { d, ok := f.(*http2.DataFrame); return ok && d.StreamID == 1 }).(*http2.DataFrame)
	if string(d.Data()) != "finished" || !d.StreamEnded() {
		t.Fatalf("data %q end %v", d.Data(), d.StreamEnded())
	}
	rc.nc.Close() // as a client does after GOAWAY with nothing in flight
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPeerThatNeverReads(t *testing.T) {
	writeErr := make(chan error, 1)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
	}), false)
	rc := dialRaw(t, ts.addr)
	// A window large enough that flow control never stops the handler:
	// only the socket does.
	if err := rc.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	rc.headers(1, true, getReq...)
	rc.until(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok })
	// From here on nothing is read. The reader goroutine is not stuck
	// behind the blocked writer: it still takes frames (these PINGs),
	// and Close ends everything.
	for range 100 {
		if err := rc.fr.WritePing(false, [8]byte{}); err != nil {
			t.Fatal(err)
		}
	}
	ts.s.Close()
	if err := <-writeErr; err == nil {
		t.Fatal("write succeeded")
	}
}

func TestHandlerPanics(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler)
		}
		panic("boom")
	}), false, func(s *Server) { s.Log = discardSlog })
	cl := ts.client()
	for _, p := range []string{"/abort", "/boom"} {
		_, err := cl.Get(ts.url(p))
		if err == nil || !strings.Contains(err.Error(), "INTERNAL_ERROR") {
			t.Fatalf("%s: err %v, want a stream error INTERNAL_ERROR", p, err)
		}
	}
}

func TestIdleConnectionIsClosedWithGoAway(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(okHandler), false, func(s *Server) { s.IdleTimeout = 50 * time.Millisecond })
	rc := dialRaw(t, ts.addr)
	rc.headers(1, true, getReq...)
	rc.until(isResponse(1))
	// Nothing more is sent: the server says goodbye on its own.
	g := rc.until(isGoAway).(*http2.GoAwayFrame)
	if g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v last %d", g.ErrCode, g.LastStreamID)
	}
}

func TestSilentClientIsClosed(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(okHandler), false, func(s *Server) { s.ReadHeaderTimeout = 50 * time.Millisecond })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(hangGuard))
	// The server's SETTINGS come, then the close: no preface was sent.
	if _, err := io.Copy(io.Discard, nc); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
}
