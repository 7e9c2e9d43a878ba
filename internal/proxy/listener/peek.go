package listener

import (
	"io"
	"net"
)

// peekByte returns the first byte c will read, and the connection to read
// it from: c itself when the byte could be peeked without consuming it (a
// TCP socket, with MSG_PEEK), or a wrapper that replays it. It honours c's
// read deadline.
func peekByte(c net.Conn) (byte, net.Conn, error) {
	tc, ok := c.(*net.TCPConn)
	if rc, isRaw := c.(interface{ TCP() *net.TCPConn }); isRaw {
		tc, ok = rc.TCP(), true
	}
	if ok {
		b, err := peekTCP(tc)
		if err != errNoPeek {
			return b, c, err
		}
	}
	var buf [1]byte
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return 0, nil, err
	}
	return buf[0], &replayConn{Conn: c, first: buf[0], pending: true}, nil
}

// replayConn is a connection whose first byte was read already.
type replayConn struct {
	net.Conn
	first   byte
	pending bool
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.pending && len(p) > 0 {
		c.pending = false
		p[0] = c.first
		if len(p) == 1 {
			return 1, nil
		}
		n, err := c.Conn.Read(p[1:])
		if err != nil && n == 0 {
			// The replayed byte is data; the error comes again on the
			// next read.
			return 1, nil
		}
		return n + 1, err
	}
	return c.Conn.Read(p)
}
