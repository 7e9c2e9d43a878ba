// Package h2server is weft-proxy's own HTTP/2 server loop: it serves a
// whole HTTP/2 connection (TLS with ALPN h2, or cleartext with prior
// knowledge) and calls an http.Handler for every stream, as net/http's
// HTTP/2 server does, at a fraction of its cost per request.
//
// Why not net/http's: HTTP/2 cannot be handed over mid-connection, so a
// loop of our own must be a complete server. net/http's runs three
// goroutines per connection and stream (a reader, a serve goroutine that
// owns all state, a handler per stream), passes every frame from the
// reader to the serve goroutine and every response write from the handler
// to it and back, writes a response's HEADERS and DATA as separate
// flushes, and returns connection window every 4 KiB of body read. Here:
//
//   - One reader goroutine per connection reads frames (x/net/http2's
//     Framer and hpack decoder, so frame and header-block parsing, header
//     validation and the header-list limit are x/net's) and applies them
//     to the connection's state under one mutex. It never writes to the
//     socket: what it must send (SETTINGS and PING acks, WINDOW_UPDATE,
//     RST_STREAM, GOAWAY) is queued and written by whichever goroutine
//     writes next, or by a small writer goroutine woken for the purpose,
//     so a peer that stops reading cannot stop us reading.
//   - Each stream's handler runs on a goroutine of its own. Its response
//     writer encodes HEADERS and writes them together with the DATA of a
//     body written before the handler returns (or at Flush), with
//     END_STREAM, and any control frames queued meanwhile, in one write
//     under the connection's write mutex: one system call per common
//     response, and no hand-off to another goroutine.
//   - Receive windows are large (4 MiB per stream, 16 MiB per connection
//     by default) and returned in half-window steps as the handler reads
//     the body, so WINDOW_UPDATE frames are rare, while a handler that
//     stops reading still bounds what a connection buffers.
//
// Semantics follow net/http's HTTP/2 server (RFC 9113): SETTINGS, PING,
// GOAWAY (graceful on Shutdown, with an error code on protocol errors),
// RST_STREAM both ways, flow control both ways, CONTINUATION, PRIORITY
// (checked, otherwise ignored), MAX_CONCURRENT_STREAMS (a stream over it
// is refused with REFUSED_STREAM, which clients retry), request bodies
// streamed full duplex, request and response trailers (declared with
// the Trailer header or set with http.TrailerPrefix), Flush, 1xx and
// 100-continue, Content-Length checks, malformed requests refused with
// RST_STREAM(PROTOCOL_ERROR) or a 400 exactly where net/http does, the
// request's context cancelled when its stream is reset or the connection
// ends, and panics handled as net/http does (http.ErrAbortHandler resets
// the stream quietly). Server push and extended CONNECT are not offered.
package h2server

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the Server's zero fields.
const (
	DefaultMaxConcurrentStreams = 250
	DefaultStreamWindow         = 4 << 20
	DefaultConnWindow           = 16 << 20
	// maxReadFrameSize is the SETTINGS_MAX_FRAME_SIZE we announce, as
	// net/http's server does.
	maxReadFrameSize = 1 << 20
	// prefaceTimeout bounds the wait for the client preface when no
	// ReadHeaderTimeout is set, as net/http's server.
	prefaceTimeout = 10 * time.Second
	// goAwayTimeout is how long a connection that sent GOAWAY waits for
	// the peer to close before closing it.
	goAwayTimeout = time.Second
)

// Server serves HTTP/2 connections. Set the fields before the first
// ServeConn and do not change them after.
type Server struct {
	// Handler serves every stream.
	Handler http.Handler
	// MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS
	// announced and enforced; zero means DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// StreamWindow and ConnWindow are the receive windows announced for
	// each stream and for the connection; zero means the defaults.
	StreamWindow, ConnWindow int32
	// MaxHeaderBytes bounds a request's header list as
	// http.Server.MaxHeaderBytes does; zero means
	// http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the wait for the client's connection
	// preface; IdleTimeout closes (with GOAWAY) a connection without
	// streams for that long. Zero means none (the preface is then
	// bounded by 10 s, as in net/http).
	ReadHeaderTimeout, IdleTimeout time.Duration
	// Log gets one line per handler panic and per connection error, as
	// http.Server's ErrorLog; nil means slog.Default().
	Log *slog.Logger

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown atomic.Bool // set under mu
	wg       sync.WaitGroup
	workers  workerPool
}

// ServeConn serves nc, whose client preface has not been read yet, until
// the connection ends, and closes it. ctx is the connection's context:
// every request's context derives from it. tlsState, when not nil, is
// the connection's TLS state, given to requests with scheme https as
// Request.TLS.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn, tlsState *tls.ConnectionState) {
	c := newConn(s, ctx, nc, tlsState)
	if !s.track(c) {
		nc.Close()
		c.release()
		return
	}
	defer s.untrack(c)
	c.serve()
}

// ServeTLSConn serves a *tls.Conn whose handshake is done and whose ALPN
// protocol is h2.
func (s *Server) ServeTLSConn(ctx context.Context, tc *tls.Conn) {
	cs := tc.ConnectionState()
	s.ServeConn(ctx, tc, &cs)
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

// Shutdown sends GOAWAY on every connection (ServeConn refuses new ones
// from now on), lets the streams in flight finish, closes each connection
// once it has none, and waits until all are closed or ctx ends, when it
// returns ctx's error and leaves the rest to Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown.Store(true)
	for c := range s.conns {
		c.startGracefulShutdown()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.workers.close()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes every connection at once, cancelling the requests in
// flight, and refuses new ones.
func (s *Server) Close() {
	s.mu.Lock()
	s.shutdown.Store(true)
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.workers.close()
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

func (s *Server) maxStreams() uint32 {
	if s.MaxConcurrentStreams > 0 {
		return s.MaxConcurrentStreams
	}
	return DefaultMaxConcurrentStreams
}

func (s *Server) streamWindow() int32 {
	if s.StreamWindow > 0 {
		return s.StreamWindow
	}
	return DefaultStreamWindow
}

func (s *Server) connWindow() int32 {
	if s.ConnWindow > 0 {
		return s.ConnWindow
	}
	return DefaultConnWindow
}

// maxHeaderListSize is what net/http's server announces:
// MaxHeaderBytes plus the 4 KiB its HTTP/1 reader allows on top.
func (s *Server) maxHeaderListSize() uint32 {
	n := s.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	return uint32(n + 4096)
}
