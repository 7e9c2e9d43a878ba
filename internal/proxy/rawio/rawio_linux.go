//go:build linux

package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a TCP connection whose Read and Write are raw system calls on
// the non-blocking socket, waiting in the runtime's poller on EAGAIN.
// Everything else (deadlines, Close, CloseWrite, SyscallConn) is the
// TCPConn's.
//
// The callbacks handed to syscall.RawConn are method values made once in
// Wrap, and each call's buffer and result live in the Conn, under a mutex
// per direction: a closure made per call escapes through the RawConn
// interface, and with the two results it captured that was three
// allocations on every read and every write, about 17 a request for a
// sidecar (go build -gcflags=-m; the allocation profile under make bench).
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu    sync.Mutex // one Read at a time; guards the r fields
	rbuf   []byte
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool

	wmu     sync.Mutex // one Write at a time; guards the w fields
	wbuf    []byte
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// Wrap returns c as a Conn if it is a *net.TCPConn, and c otherwise.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &Conn{TCPConn: tc, rc: rc}
	rw.readFn = rw.readOnce
	rw.writeFn = rw.writeAll
	return rw
}

// TCP returns the connection it wraps.
func (c *Conn) TCP() *net.TCPConn { return c.TCPConn }

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf = nil
	c.rmu.Unlock()
	if err == nil && errno != 0 {
		err = errno
		n = 0
	}
	if err != nil {
		return 0, c.opError("read", err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// readOnce is the RawConn.Read callback: one read into rbuf, false (wait
// for the poller) on EAGAIN.
func (c *Conn) readOnce(fd uintptr) bool {
	p := c.rbuf
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.rn, c.rerrno = int(r), e
		return true
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	c.wbuf, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	c.wbuf = nil
	c.wmu.Unlock()
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// writeAll is the RawConn.Write callback: writes until wbuf is out or an
// error, false (wait for the poller) on EAGAIN.
func (c *Conn) writeAll(fd uintptr) bool {
	p := c.wbuf
	for c.wn < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.wn])), uintptr(len(p)-c.wn))
		switch e {
		case 0:
			c.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// opError wraps err as net.TCPConn's methods do.
func (c *Conn) opError(op string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Peek is recv(fd, one byte, MSG_PEEK|MSG_DONTWAIT) as a raw system call:
// the byte is left in the socket, and EAGAIN says there is none. The
// pooled-connection liveness check makes this call once per request, so
// through syscall.Recvfrom it would wake sysmon as often as a read.
func Peek(fd uintptr, b *[1]byte) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), 0
}
