// Package h1server is weft-proxy's own HTTP/1.1 server loop for the
// common request: a head of up to 4 KiB in CRLF lines, a body of known
// length or none. It serves such requests on the connection's goroutine
// with no other goroutine taking part, writes each response (status line,
// headers and a small body) in one write, and reuses per-connection
// buffers; net/http's server, for the same request, reads in a background
// goroutine to notice a client leaving, clones the response header map
// and flushes headers and body separately.
//
// Everything else is net/http's: at the first request the loop does not
// take (chunked bodies, Expect: 100-continue, Upgrade, HTTP/2's preface,
// trailers, CONNECT, heads over 4 KiB, anything malformed), it hands the
// connection, with the bytes it has read replayed first, to HandOff, which
// gives it to the listener's http.Server for the rest of the connection.
// Malformed requests are therefore refused by net/http itself, with its
// own status and text, and the loop never needs its own error responses.
//
// Responses follow net/http's rules for framing (Content-Length added
// when the handler finishes within 2 KiB, chunked otherwise, none for HEAD,
// 1xx, 204 and 304), keep-alive and Connection: close, HTTP/1.0, Date and
// Content-Type sniffing; a differential fuzz test holds the two to the
// same requests and the same framing.
//
// Two differences, both on purpose:
//   - The loop is always full duplex: it never discards the unread
//     request body when the response starts (net/http does unless
//     ResponseController.EnableFullDuplex was called, which weft's engine
//     always calls); the unread rest, up to 256 KiB, is discarded after
//     the handler returns, or the connection is closed.
//   - A client that goes away is noticed only for requests that run
//     longer than WatchDelay: only then does a goroutine read the idle
//     connection and cancel the request's context when the client closes
//     it. net/http starts that read for every request, at the price of a
//     goroutine hand-off each; for a request that ends within a few
//     milliseconds, noticing the client left saves nothing.
package h1server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// WatchDelay is how long a request runs before the loop starts watching
// its connection for the client going away.
const WatchDelay = 10 * time.Millisecond

// maxDrain is how much of an unread request body the loop discards after
// the handler to keep the connection, as net/http's server.
const maxDrain = 256 << 10

// readBufferSize is the per-connection read buffer, and so the longest
// head the loop serves itself.
const readBufferSize = 4 << 10

// Server serves HTTP/1.x connections with the loop. Set the fields before
// the first ServeConn and do not change them after.
type Server struct {
	// Handler serves every request the loop takes.
	Handler http.Handler
	// HandOff takes over a connection the loop does not serve (further):
	// c replays the bytes the loop read, then reads the socket; ctx is
	// the connection's context, as passed to ServeConn. HandOff owns c.
	// It is called on the connection's goroutine and must not block on
	// the connection.
	HandOff func(ctx context.Context, c net.Conn)
	// ReadHeaderTimeout bounds the time from a request's first byte to
	// the end of its head; IdleTimeout the wait for the next request
	// (and for the first). Zero means none, as in http.Server.
	ReadHeaderTimeout, IdleTimeout time.Duration
	// Log gets one debug line per handler panic, as http.Server's
	// ErrorLog would; nil means slog.Default().
	Log *slog.Logger

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown atomic.Bool // set under mu; read without it
	wg       sync.WaitGroup
}

// ServeConn serves c until it closes, fails, ends by protocol or is handed
// off, and then returns. ctx is the connection's context: every request's
// context derives from it. It closes c unless it handed it off.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	c := newConn(s, ctx, nc)
	if !s.track(c) {
		nc.Close()
		return
	}
	defer s.untrack(c)
	c.serve()
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Server) shuttingDown() bool { return s.shutdown.Load() }

// Shutdown makes every connection close after the request it is serving
// (ServeConn refuses new ones from now on), closes the idle ones, and
// waits until all are done or ctx ends, when it returns ctx's error and
// leaves the rest to Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown.Store(true)
	for c := range s.conns {
		c.closeIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes every connection at once, aborting the requests in flight,
// and refuses new ones.
func (s *Server) Close() {
	s.mu.Lock()
	s.shutdown.Store(true)
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
}

// errHandedOff ends a connection's loop after HandOff took it.
var errHandedOff = errors.New("connection handed to net/http")

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
