package h2server

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/weft-mesh/weft/internal/proxy/internal/conntest"
)

// Responses that end while a write is in progress go out together with
// the next write, not one write each behind it.
func TestResponsesEndingDuringAWriteShareTheNextWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const streams = 8
	var handled sync.WaitGroup
	handled.Add(streams)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer handled.Done()
		_, _ = io.WriteString(w, "ok")
	})}
	conns := make(chan *conntest.Gated, 1)
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		gc := conntest.NewGated(c)
		conns <- gc
		s.ServeConn(context.Background(), gc, nil)
	}()
	defer func() { <-served }()
	defer s.Close()

	rc := dialRaw(t, ln.Addr().String())
	gc := <-conns
	// Let the server's answers to the connection's set-up go out first.
	time.Sleep(50 * time.Millisecond)
	gc.Armed.Store(true)
	for i := range streams {
		rc.headers(uint32(2*i+1), true, getReq...)
	}
	handled.Wait()
	time.Sleep(100 * time.Millisecond) // the last responses are queued after their handlers return
	close(gc.Gate)

	got := 0
	for got < streams {
		if df, ok := rc.read().(*http2.DataFrame); ok && df.StreamEnded() {
			got++
		}
	}
	if n := gc.Writes.Load(); n > streams/2 {
		t.Errorf("%d responses took %d writes, want them to share a few", streams, n)
	}
	t.Logf("%d responses in %d writes", streams, gc.Writes.Load())
}
