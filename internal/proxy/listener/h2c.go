package listener

import (
	"context"
	"net"
	"time"
)

// h2Preface is HTTP/2's client connection preface.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// sniffH2 reads the start of a cleartext connection c and serves it with
// the own HTTP/2 loop if it is HTTP/2's preface (h2c with prior
// knowledge), or gives it to net/http otherwise, as net/http's own check
// for the preface does (it too reads the whole preface, or up to the
// first byte that differs). ctx is the connection's context.
func (s *Server) sniffH2(ctx context.Context, c net.Conn) {
	s.sniffing.Store(c, struct{}{})
	d := s.srv.ReadHeaderTimeout
	if d <= 0 {
		d = DefaultHandshakeTimeout
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	var buf [len(h2Preface)]byte
	n := 0
	var err error
	for n < len(buf) && string(buf[:n]) == h2Preface[:n] {
		var k int
		k, err = c.Read(buf[n:])
		n += k
		if err != nil {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	s.sniffing.Delete(c)
	pc := &prefixConn{Conn: c, pending: append([]byte(nil), buf[:n]...)}
	if n == len(buf) && string(buf[:]) == h2Preface {
		s.own2.ServeConn(ctx, pc, nil)
		return
	}
	if err != nil && n == 0 {
		c.Close()
		return
	}
	s.pushToNetHTTP(ctx, pc)
}

// closeSniffing closes the connections still being checked for the
// preface; Shutdown calls it, as they serve nothing yet.
func (s *Server) closeSniffing() {
	s.sniffing.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
}

// prefixConn reads pending, then the connection.
type prefixConn struct {
	net.Conn
	pending []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the socket, when it can.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
