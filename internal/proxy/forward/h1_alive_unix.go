//go:build linux || darwin || freebsd || netbsd || openbsd

package forward

import (
	"crypto/tls"
	"syscall"

	"github.com/weft-mesh/weft/internal/proxy/rawio"
)

// peeker looks at an idle connection's socket without reading from it.
// It is built once per connection so that the check allocates nothing.
type peeker struct {
	rc    syscall.RawConn
	fn    func(fd uintptr) bool
	buf   [1]byte
	n     int
	errno syscall.Errno
}

func newPeeker(pc *h1Conn) *peeker {
	c := pc.conn
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &peeker{rc: rc}
	p.fn = func(fd uintptr) bool {
		p.n, p.errno = rawio.Peek(fd, &p.buf)
		return true // never wait: EAGAIN is the answer
	}
	return p
}

// alive reports whether an idle connection is still worth sending a
// request on: the upstream has not closed it and, in plaintext, has sent
// nothing unasked. One non-blocking peek at the socket. (Over TLS, bytes
// on an idle connection may be a session ticket, so only a close counts.)
func (pc *h1Conn) alive() bool {
	if pc.peek == nil {
		pc.peek = newPeeker(pc)
		if pc.peek == nil {
			return true
		}
	}
	p := pc.peek
	err := p.rc.Read(p.fn)
	switch {
	case err != nil:
		return false
	case p.errno == syscall.EAGAIN || p.errno == syscall.EWOULDBLOCK:
		return true // nothing to read: idle, as it should be
	case p.errno != 0:
		return false
	case p.n == 0:
		return false // the upstream closed it
	default:
		return pc.tls
	}
}
