//go:build linux || darwin || freebsd || netbsd || openbsd

package forward

import (
	"crypto/tls"
	"syscall"
)

// alive reports whether an idle connection is still worth sending a
// request on: the upstream has not closed it and, in plaintext, has sent
// nothing unasked. One non-blocking peek at the socket. (Over TLS, bytes
// on an idle connection may be a session ticket, so only a close counts.)
func (pc *h1Conn) alive() bool {
	c := pc.conn
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var (
		b    [1]byte
		n    int
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait: EAGAIN is the answer
	})
	switch {
	case err != nil:
		return false
	case rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK:
		return true // nothing to read: idle, as it should be
	case rerr != nil:
		return false
	case n == 0:
		return false // the upstream closed it
	default:
		return pc.tls
	}
}
