// Package listener runs weft-proxy's inbound and outbound HTTP listeners.
//
// Both listeners use the same server stack: HTTP/1.1 (including
// absolute-form request targets, so applications can point http_proxy at the
// outbound listener) and cleartext HTTP/2 with prior knowledge (h2c), on one
// port. A listener with a Policy (the inbound, with security on) also
// terminates mTLS: it tells TLS from plaintext connections by their first
// byte, serves or closes each as the policy says, and speaks HTTP/2 or
// HTTP/1.1 over TLS as ALPN decides. What a listener does with a request is
// its handler's business, which the forwarding engine provides; the
// request's context carries the connection's peer.Info.
//
// HTTP/1.x is served by weft's own loop (internal/proxy/h1server) and
// HTTP/2, over TLS and h2c, by weft's own HTTP/2 server
// (internal/proxy/h2server); net/http's server takes what the HTTP/1 loop
// hands over, and everything when WEFT_PROXY_H1SERVER=off and
// WEFT_PROXY_H2SERVER=off.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/framing"
	"github.com/weft-mesh/weft/internal/proxy/h1server"
	"github.com/weft-mesh/weft/internal/proxy/h2server"
	"github.com/weft-mesh/weft/internal/proxy/peer"
	"github.com/weft-mesh/weft/internal/proxy/rawio"
)

// Server is one listener: a bound socket and the HTTP server on it.
type Server struct {
	name   string
	ln     net.Listener
	srv    *http.Server
	log    *slog.Logger
	policy func() *Policy
	det    *detector
	stats  Stats

	// own, when set, serves HTTP/1.x connections with weft's own loop
	// and hands what it does not serve to srv (see h1server).
	own     *h1server.Server
	handoff *handoffListener
	handed  sync.Map // framing.Conn handed to srv -> *peer.Info

	// own2, when set, serves HTTP/2 connections (TLS with ALPN h2, and
	// h2c with prior knowledge) with weft's own server loop (see
	// h2server) instead of srv.
	own2     *h2server.Server
	sniffing sync.Map // net.Conn being checked for the h2c preface -> struct{}

	mu       sync.Mutex
	serveLn  net.Listener // what Serve accepts from, once it runs
	stopping bool
}

// OwnHTTP1Default says whether listeners serve HTTP/1.x with weft's own
// server loop (internal/proxy/h1server) rather than net/http's. The
// environment variable WEFT_PROXY_H1SERVER ("on" or "off") overrides it,
// for measurements and as an escape hatch.
const OwnHTTP1Default = true

func ownHTTP1() bool { return envSwitch("WEFT_PROXY_H1SERVER", OwnHTTP1Default) }

// OwnHTTP2Default says whether listeners serve HTTP/2 with weft's own
// server loop (internal/proxy/h2server) rather than net/http's. The
// environment variable WEFT_PROXY_H2SERVER ("on" or "off") overrides it,
// for measurements and as an escape hatch.
const OwnHTTP2Default = true

func ownHTTP2() bool { return envSwitch("WEFT_PROXY_H2SERVER", OwnHTTP2Default) }

// envSwitch reads an on/off environment variable; anything else, or
// nothing, is def.
func envSwitch(name string, def bool) bool {
	switch os.Getenv(name) {
	case "on", "1", "true":
		return true
	case "off", "0", "false":
		return false
	}
	return def
}

// New returns a server for the already bound ln that hands every request
// to h. log is the listener's component logger.
func New(name string, ln net.Listener, h http.Handler, log *slog.Logger) *Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge; no Upgrade: h2c dance
	protocols.SetHTTP2(true)            // over TLS, when ALPN says h2
	srv := &http.Server{
		Handler:   refuseAmbiguousFraming(h),
		Protocols: &protocols,
		// Bound the time a client may take to send request headers, so
		// idle half-open connections cannot pin goroutines forever.
		ReadHeaderTimeout: 30 * time.Second,
		// Applications keep pools to their sidecar; closing idle
		// connections early only makes them reconnect. Envoy's default.
		IdleTimeout: time.Hour,
		// "OPTIONS *" is the upstream's to answer, not ours.
		DisableGeneralOptionsHandler: true,
		// A peer sidecar multiplexes all its requests to this workload
		// over one HTTP/2 connection: let concurrent uploads share more
		// than the default 1 MiB connection window.
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	s := &Server{name: name, ln: ln, srv: srv, log: log}
	srv.ConnContext = s.connContext
	s.SetOwnHTTP1(ownHTTP1())
	s.SetOwnHTTP2(ownHTTP2())
	return s
}

// SetOwnHTTP2 turns weft's own HTTP/2 server loop on or off for the
// connections accepted from now on. Call it before Serve.
func (s *Server) SetOwnHTTP2(on bool) {
	if !on {
		s.own2 = nil
		return
	}
	s.own2 = &h2server.Server{
		Handler:        s.srv.Handler,
		MaxHeaderBytes: s.srv.MaxHeaderBytes,
		// A peer sidecar multiplexes all its requests to this workload
		// over one connection: large windows, returned in large steps.
		StreamWindow:      h2server.DefaultStreamWindow,
		ConnWindow:        h2server.DefaultConnWindow,
		ReadHeaderTimeout: s.srv.ReadHeaderTimeout,
		IdleTimeout:       s.srv.IdleTimeout,
		Log:               s.log,
	}
}

// SetOwnHTTP1 turns weft's own HTTP/1.x server loop on or off for the
// connections accepted from now on. Call it before Serve.
func (s *Server) SetOwnHTTP1(on bool) {
	if !on {
		s.own = nil
		return
	}
	s.own = &h1server.Server{
		Handler:           s.srv.Handler,
		HandOff:           s.handOff,
		ReadHeaderTimeout: s.srv.ReadHeaderTimeout,
		IdleTimeout:       s.srv.IdleTimeout,
		Log:               s.log,
	}
}

// SetPolicy makes the listener classify every new connection with the
// Policy policy returns at that moment (nil means PlaintextOnly). policy is
// called once per accepted connection, from the accept loop, so it must be
// cheap and must not block: an atomic load. Call SetPolicy before Serve;
// without it every connection is served as plaintext, uninspected.
func (s *Server) SetPolicy(policy func() *Policy) { s.policy = policy }

// connContext attaches the connection's peer.Info to its context, which
// every request on the connection inherits.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framing.Conn); ok {
		ctx = context.WithValue(ctx, framingKey{}, fc)
	}
	if v, ok := s.handed.LoadAndDelete(c); ok {
		return peer.NewContext(ctx, v.(*peer.Info))
	}
	var info *peer.Info
	if s.det != nil {
		info = s.det.takeInfo(c)
	} else {
		info = addrInfo(c)
	}
	return peer.NewContext(ctx, info)
}

// Stats returns the listener's connection counters.
func (s *Server) Stats() *Stats { return &s.stats }

// WriteStats writes the listener's connection counters as "name value"
// lines, each name prefixed with prefix.
func (s *Server) WriteStats(w io.Writer, prefix string) error {
	for _, c := range []struct {
		name string
		v    uint64
	}{
		{"connections_tls", s.stats.TLS.Load()},
		{"connections_tls_resumed", s.stats.TLSResumed.Load()},
		{"connections_plaintext", s.stats.Plaintext.Load()},
		{"connections_refused_plaintext", s.stats.RefusedPlaintext.Load()},
		{"connections_refused_tls", s.stats.RefusedTLS.Load()},
		{"tls_handshake_failures", s.stats.HandshakeFailures.Load()},
	} {
		if _, err := fmt.Fprintf(w, "%s%s %d\n", prefix, c.name, c.v); err != nil {
			return err
		}
	}
	return nil
}

// Name is the listener's name, "outbound" or "inbound".
func (s *Server) Name() string { return s.name }

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts connections until Shutdown or Close. It returns nil when
// the server was shut down, the accept error otherwise.
func (s *Server) Serve() error {
	s.log.Info("listening", "addr", s.ln.Addr().String())
	accepted := s.ln
	if rawio.Enabled() {
		accepted = rawio.Listener{Listener: s.ln}
	}
	ln := net.Listener(guardedListener{accepted})
	if s.policy != nil {
		s.det = newDetector(accepted, s.policy, DefaultHandshakeTimeout, &s.stats, s.log)
		ln = s.det
		// Shutdown closes it too, unless it came before Serve.
		defer s.det.Close()
	}
	if s.own != nil || s.own2 != nil {
		return s.serveOwn(ln)
	}
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveOwn accepts from ln and serves each connection with the own loops
// that are on: HTTP/1.x with h1server, which hands over what it does not
// serve itself (h2c among it); HTTP/2 with h2server, over TLS straight
// from here and h2c once its preface is seen. What no own loop serves
// goes to net/http.
func (s *Server) serveOwn(ln net.Listener) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.serveLn = ln
	s.handoff = newHandoffListener(ln.Addr())
	s.mu.Unlock()
	srvDone := make(chan error, 1)
	go func() { srvDone <- s.srv.Serve(s.handoff) }()
	base := context.WithValue(context.Background(), http.ServerContextKey, s.srv)
	var delay time.Duration
	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !s.isStopping() {
				// As net/http does for temporary accept errors (EMFILE...).
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			break
		}
		delay = 0
		fc, ok := c.(*framing.Conn)
		if !ok {
			// HTTP/2 over TLS (ALPN h2).
			tc, isTLS := c.(*tls.Conn)
			if s.own2 == nil || !isTLS {
				s.handoff.push(c)
				continue
			}
			ctx := context.WithValue(base, http.LocalAddrContextKey, c.LocalAddr())
			ctx = s.connContext(ctx, c)
			go s.own2.ServeTLSConn(ctx, tc)
			continue
		}
		ctx := context.WithValue(base, http.LocalAddrContextKey, c.LocalAddr())
		ctx = s.connContext(ctx, fc)
		if s.own == nil {
			// No own HTTP/1 loop: look for the h2c preface here.
			go s.sniffH2(ctx, fc.Conn)
			continue
		}
		go s.own.ServeConn(ctx, fc.Conn)
	}
	if s.isStopping() {
		// Shutdown closes the hand-off listener once the own loop's
		// connections are done; srv.Serve then returns.
		if serr := <-srvDone; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			return serr
		}
		return nil
	}
	s.handoff.Close()
	<-srvDone
	return err
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// handOff takes a connection the own HTTP/1 loop does not serve; c
// replays what the loop had read. h2c goes to the own HTTP/2 loop when it
// is on, the rest to net/http.
func (s *Server) handOff(ctx context.Context, c net.Conn) {
	if s.own2 != nil {
		// Reading the rest of the preface may block: not on the
		// caller's goroutine.
		go s.sniffH2(ctx, c)
		return
	}
	s.pushToNetHTTP(ctx, c)
}

// pushToNetHTTP gives net/http a connection, read through a new framing
// guard.
func (s *Server) pushToNetHTTP(ctx context.Context, c net.Conn) {
	fc := framing.NewConn(c)
	if info, ok := peer.FromContext(ctx); ok {
		s.handed.Store(fc, info)
	}
	if !s.handoff.push(fc) {
		s.handed.Delete(fc)
	}
}

// Shutdown stops accepting connections and waits for requests in flight to
// finish, closing idle connections as they become idle. When ctx ends first
// it closes the remaining connections, aborting their requests, and returns
// ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	if s.own != nil {
		s.mu.Lock()
		s.stopping = true
		ln := s.serveLn
		s.mu.Unlock()
		if ln != nil {
			ln.Close()
		}
		// The own loop's connections first: a request in flight there
		// may still hand its connection to net/http, which must then
		// take it.
		err = s.own.Shutdown(ctx)
	}
	if s.own2 != nil {
		if s.own == nil {
			s.mu.Lock()
			s.stopping = true
			ln := s.serveLn
			s.mu.Unlock()
			if ln != nil {
				ln.Close()
			}
		}
		s.closeSniffing()
		if err == nil {
			err = s.own2.Shutdown(ctx)
		}
	}
	if err == nil {
		err = s.srv.Shutdown(ctx)
	}
	if err != nil {
		s.log.Warn("drain deadline passed; closing remaining connections", "err", err)
		if s.own != nil {
			s.own.Close()
		}
		if s.own2 != nil {
			s.own2.Close()
		}
		_ = s.srv.Close()
	}
	return err
}

// guardedListener wraps every accepted connection in a framing.Conn. The
// inbound listener's detector does the same itself, after classifying.
type guardedListener struct{ net.Listener }

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return framing.NewConn(c), nil
}

type framingKey struct{}

// refusedDrainTime bounds how long a refused connection is read (and
// discarded) after the 400, as net/http waits before closing a connection
// it answered with an error, so the client reads the response before the
// close can reset it.
const refusedDrainTime = 500 * time.Millisecond

// refuseAmbiguousFraming answers the stand-in a framing.Conn puts in place
// of a request with ambiguous framing: 400 with the reason, and the
// connection closed. Any other request goes to h, without the marker
// header (a client may send one; it means nothing then).
func refuseAmbiguousFraming(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		marker := r.Header.Get(framing.MarkerHeader)
		if marker == "" {
			h.ServeHTTP(w, r)
			return
		}
		r.Header.Del(framing.MarkerHeader)
		fc, _ := r.Context().Value(framingKey{}).(*framing.Conn)
		reason, refused := "", false
		if fc != nil {
			reason, refused = fc.Rejection(marker)
		}
		if !refused {
			h.ServeHTTP(w, r)
			return
		}
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			w.Header().Set("Connection", "close")
			http.Error(w, reason, http.StatusBadRequest)
			return
		}
		defer conn.Close()
		body := reason + "\n"
		fmt.Fprintf(buf, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"+
			"Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		if buf.Flush() == nil {
			_ = fc.CloseWrite()
			fc.Drain(refusedDrainTime)
		}
	})
}

// handoffListener is the net.Listener net/http serves when the own loop
// runs: connections arrive from the accept loop (HTTP/2 over TLS) and from
// the own loop (whatever it hands over).
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to net/http, or closes it if the listener is closed.
func (l *handoffListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		c.Close()
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

var _ net.Listener = (*handoffListener)(nil)
