//go:build unix

package listener

import (
	"errors"
	"io"
	"net"
	"syscall"
)

var errNoPeek = errors.New("peek not supported")

// peekTCP reads the first byte of a TCP connection without consuming it
// (recv with MSG_PEEK), waiting for it through the runtime's poller, so the
// connection stays a plain *net.TCPConn for the HTTP server.
func peekTCP(c *net.TCPConn) (byte, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, errNoPeek
	}
	var (
		buf  [1]byte
		n    int
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
			if rerr != syscall.EINTR {
				break
			}
		}
		return rerr != syscall.EAGAIN // false: wait until readable, then call again
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return buf[0], nil
}
