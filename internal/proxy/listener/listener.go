// Package listener runs weft-proxy's inbound and outbound HTTP listeners.
//
// Both listeners use the same server stack: HTTP/1.1 (including
// absolute-form request targets, so applications can point http_proxy at the
// outbound listener) and cleartext HTTP/2 with prior knowledge (h2c), on one
// port. What a listener does with a request is its handler's business, which
// the forwarding engine provides.
package listener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is one listener: a bound socket and the HTTP server on it.
type Server struct {
	name string
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger
}

// New returns a server for the already bound ln that hands every request
// to h. log is the listener's component logger.
func New(name string, ln net.Listener, h http.Handler, log *slog.Logger) *Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge; no Upgrade: h2c dance
	srv := &http.Server{
		Handler:   h,
		Protocols: &protocols,
		// Bound the time a client may take to send request headers, so
		// idle half-open connections cannot pin goroutines forever.
		ReadHeaderTimeout: 30 * time.Second,
		// Applications keep pools to their sidecar; closing idle
		// connections early only makes them reconnect. Envoy's default.
		IdleTimeout: time.Hour,
		// "OPTIONS *" is the upstream's to answer, not ours.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return &Server{name: name, ln: ln, srv: srv, log: log}
}

// Name is the listener's name, "outbound" or "inbound".
func (s *Server) Name() string { return s.name }

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts connections until Shutdown or Close. It returns nil when
// the server was shut down, the accept error otherwise.
func (s *Server) Serve() error {
	s.log.Info("listening", "addr", s.ln.Addr().String())
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
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
