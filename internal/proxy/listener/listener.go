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
package listener

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/framing"
	"github.com/weft-mesh/weft/internal/proxy/peer"
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
	return s
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
	ln := net.Listener(guardedListener{s.ln})
	if s.policy != nil {
		s.det = newDetector(s.ln, s.policy, DefaultHandshakeTimeout, &s.stats, s.log)
		ln = s.det
		// Shutdown closes it too, unless it came before Serve.
		defer s.det.Close()
	}
	if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting connections and waits for requests in flight to
// finish, closing idle connections as they become idle. When ctx ends first
// it closes the remaining connections, aborting their requests, and returns
// ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.log.Warn("drain deadline passed; closing remaining connections", "err", err)
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
