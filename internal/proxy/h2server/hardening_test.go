package h2server

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// serverConn returns the Server's only connection.
func serverConn(t *testing.T, s *Server) *conn {
	t.Helper()
	for range 100 {
		s.mu.Lock()
		for c := range s.conns {
			s.mu.Unlock()
			return c
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no connection")
	return nil
}

// A handler whose DATA took send window (writeResponse's first phase) and
// then waited for the write mutex, while the peer reset its stream, gives
// up without sending: the connection send window it took is never given
// back. Each such race loses up to 128 KiB of the connection's send window
// for good; once it is gone, every response on the connection stalls.
func TestResetWhileWaitingToWriteKeepsTheSendWindow(t *testing.T) {
	t.Run("own", func(t *testing.T) {
		goA := make(chan struct{})
		aErr := make(chan error, 1)
		ts := newTestServer(t, leakHandler(goA, aErr), false)
		sendWindowLeak(t, ts.addr, goA, aErr, func() int64 {
			c := serverConn(t, ts.s)
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.sendWin
		})
	})
	t.Run("net/http", func(t *testing.T) {
		goA := make(chan struct{})
		aErr := make(chan error, 1)
		addr := newNetHTTPServer(t, leakHandler(goA, aErr), false)
		sendWindowLeak(t, addr, goA, aErr, func() int64 { return -1 })
	})
}

const bigLen = 32 << 20 // more than loopback's socket buffers
const aLen = 100 << 10

func leakHandler(goA chan struct{}, aErr chan error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write(make([]byte, bigLen))
		case "/a":
			<-goA
			_, err := w.Write(make([]byte, aLen))
			aErr <- err
		case "/c":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			_, _ = w.Write(make([]byte, n))
		}
	})
}

func sendWindowLeak(t *testing.T, addr string, goA chan struct{}, aErr chan error, serverWin func() int64) {
	rc := dialRaw(t, addr)
	const granted = 64 << 20
	if err := rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteWindowUpdate(0, granted); err != nil {
		t.Fatal(err)
	}
	get := func(path string) []string {
		return []string{":method", "GET", ":scheme", "http", ":path", path, ":authority", "a"}
	}
	rc.headers(1, true, get("/big")...)
	rc.headers(3, true, get("/a")...)
	time.Sleep(time.Second) // /big fills the socket and blocks in Write, holding wmu
	close(goA)
	time.Sleep(300 * time.Millisecond) // /a took window and waits for wmu
	if err := rc.fr.WriteRSTStream(3, http2.ErrCodeCancel); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	// Drain /big, counting every DATA byte the server sent.
	var sent int64
	for {
		f := rc.read()
		if df, ok := f.(*http2.DataFrame); ok {
			sent += int64(df.Length)
			if df.StreamID == 1 && df.StreamEnded() {
				break
			}
		}
	}
	if err := <-aErr; err == nil {
		t.Fatal("the reset stream's write succeeded")
	}
	serverView := serverWin()
	clientView := int64(initialWindow+granted) - sent
	t.Logf("connection send window: client grants %d, server thinks %d", clientView, serverView)

	// A response of exactly the window the client has granted must go
	// through.
	rc.headers(5, true, get("/c?n="+strconv.FormatInt(clientView, 10))...)
	_ = rc.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	var got int64
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			t.Fatalf("stream 5 got %d of %d bytes, then %v: the server lost %d bytes of connection send window",
				got, clientView, err, clientView-serverView)
		}
		if df, ok := f.(*http2.DataFrame); ok && df.StreamID == 5 {
			got += int64(df.Length)
			if df.StreamEnded() {
				break
			}
		}
	}
	if got != clientView {
		t.Fatalf("got %d bytes, want %d", got, clientView)
	}
}

// A connection that is still reading its preface when Shutdown starts is
// marked closing (read deadline now+1s), then serve clears the deadline
// once the preface arrives, and nothing sets it again: the connection
// stays open after its GOAWAY (idle timeout included) and Shutdown waits
// for its context.
func TestShutdownDuringThePrefaceClosesTheConnection(t *testing.T) {
	ts := newTestServer(t, http.HandlerFunc(okHandler), false, func(s *Server) { s.IdleTimeout = time.Second })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(hangGuard))
	serverConn(t, ts.s) // tracked, reading the preface
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- ts.s.Shutdown(ctx) }()
	time.Sleep(200 * time.Millisecond)
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(nc, clientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	sawGoAway := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("connection still open 3 s after Shutdown (GOAWAY seen: %v)", sawGoAway)
			}
			break
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			sawGoAway = true
		}
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// A client reset returns a stream's buffered body to the connection
// window but keeps the bytes, for as long as the handler runs or waits
// in c.unstarted. With handlers slow to notice cancellation, one
// connection holds (MaxConcurrentStreams + 4*MaxConcurrentStreams) *
// StreamWindow: 250+1000 streams * 4 MiB = 5 GiB with the listener's
// settings, against a 16 MiB connection window.
func TestResetStreamsDropTheirBodies(t *testing.T) {
	release := make(chan struct{})
	// Before any cleanup: closing the server waits for these handlers.
	defer close(release)
	ts := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release // slow to notice the reset (an upstream call, a filter...)
	}), false, func(s *Server) {
		s.MaxConcurrentStreams = 2
		s.StreamWindow = 1 << 20
		s.ConnWindow = 2 << 20
	})
	t.Cleanup(func() { ts.s.Close() })
	rc := dialRaw(t, ts.addr)
	post := []string{":method", "POST", ":scheme", "http", ":path", "/", ":authority", "a"}
	id := uint32(1)
	for range 2 { // occupy the handler slots
		rc.headers(id, false, post...)
		_ = rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		id += 2
	}
	chunk := make([]byte, 16<<10)
	for range 8 {
		rc.headers(id, false, post...)
		for range (1 << 20) / len(chunk) {
			if err := rc.fr.WriteData(id, false, chunk); err != nil {
				t.Fatal(err)
			}
		}
		_ = rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		id += 2
	}
	if err := rc.fr.WritePing(false, [8]byte{1}); err != nil {
		t.Fatal(err)
	}
	rc.until(func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() })
	c := serverConn(t, ts.s)
	c.mu.Lock()
	held := 0
	for _, st := range c.unstarted {
		held += len(st.body) - st.bodyOff
	}
	n := len(c.unstarted)
	c.mu.Unlock()
	t.Logf("%d reset streams wait to start, holding %d bytes of body; connection window %d", n, held, ts.s.ConnWindow)
	if held > int(ts.s.ConnWindow) {
		t.Errorf("reset streams hold %d bytes, more than the %d-byte connection window", held, ts.s.ConnWindow)
	}
}
