package forward

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/reqctx"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

// TestH2ResetAbandonsTheH1Upstream: an HTTP/2 client resetting its
// stream (RST_STREAM) interrupts the proxy's blocked read of the HTTP/1.1
// upstream's response, and the proxy's next request on a fresh upstream
// connection is served.
func TestH2ResetAbandonsTheH1Upstream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	gone := make(chan struct{}, 4)
	var wg sync.WaitGroup
	defer wg.Wait()
	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if req.URL.Path == "/hang" {
						_, _ = io.Copy(io.Discard, br) // never answers; until the proxy closes
						gone <- struct{}{}
						return
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
		}
	}()
	p := startProxy(t, nil)
	p.src.Store(p.config(t, []route.VirtualHostSpec{simpleVhost("up", "up", 0)}, clusterDef{"up", []string{ln.Addr().String()}}))

	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	get := func(ctx context.Context, path string) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+p.addr+path, nil)
		req.Host = "up"
		res, err := cl.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	for i := range 3 {
		if got, err := get(context.Background(), "/ok"); got != "ok" || err != nil {
			t.Fatalf("request %d: %q, %v", i, got, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := get(ctx, "/hang"); errc <- err }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("cancelled request: %v", err)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy kept waiting on its upstream after the client reset the stream")
	}
	for i := range 5 {
		if got, err := get(context.Background(), "/ok"); got != "ok" || err != nil {
			t.Fatalf("request %d after the reset: %q, %v", i, got, err)
		}
	}
}

// An exchange goes back to the pool only when its context hook never ran:
// a hook that ran late could otherwise touch the next request's exchange.
func TestExchangeIsRecycledOnlyWhenItsHookNeverRan(t *testing.T) {
	for _, c := range []struct {
		name     string
		cancel   bool
		recycled bool
	}{
		{"an exchange whose context stayed live is recycled", false, true},
		{"an exchange whose context was cancelled is left to the collector", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			x := getExchange()
			x.hookConn = a
			x.watch = reqctx.WatchContext(ctx, x)
			if c.cancel {
				cancel()
				deadline := time.Now().Add(5 * time.Second)
				for !x.cancelled.Load() && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			x.abort()
			putExchange(x)
			if recycled := x.hookConn == nil; recycled != c.recycled {
				t.Errorf("recycled = %v, want %v", recycled, c.recycled)
			}
		})
	}
}
