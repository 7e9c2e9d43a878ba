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
	r  direction // Read's
	w  direction // Write's
}

// direction is one direction's call state: one call at a time, its buffer
// and its results, and the callback made once in Wrap.
type direction struct {
	mu    sync.Mutex
	buf   []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// call runs fn through rc's Read or Write (run) with buf set to p, and
// returns the count and errno fn left.
func (d *direction) call(p []byte, run func(func(fd uintptr) bool) error) (int, syscall.Errno, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf, d.n, d.errno = p, 0, 0
	err := run(d.fn)
	d.buf = nil
	return d.n, d.errno, err
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
	rw.r.fn = rw.readOnce
	rw.w.fn = rw.writeAll
	return rw
}

// TCP returns the connection it wraps.
func (c *Conn) TCP() *net.TCPConn { return c.TCPConn }

func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, errno, err := c.r.call(p, c.rc.Read)
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

// readOnce is the RawConn.Read callback: one read into r.buf, false (wait
// for the poller) on EAGAIN.
func (c *Conn) readOnce(fd uintptr) bool {
	p := c.r.buf
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		c.r.n, c.r.errno = int(r), e
		return true
	}
}

func (c *Conn) Write(p []byte) (int, error) {
	n, errno, err := c.w.call(p, c.rc.Write)
	if err == nil && errno != 0 {
		err = errno
	}
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// writeAll is the RawConn.Write callback: writes until w.buf is out or an
// error, false (wait for the poller) on EAGAIN.
func (c *Conn) writeAll(fd uintptr) bool {
	p := c.w.buf
	for c.w.n < len(p) {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[c.w.n])), uintptr(len(p)-c.w.n))
		switch e {
		case 0:
			c.w.n += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.w.errno = e
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
