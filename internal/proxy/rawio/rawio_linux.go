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

	// WriteThenWait's state, under w.mu: its callback, and how often it
	// ran (0: the read never began; more than 1: it wrote and waited).
	wtFn    func(fd uintptr) bool
	wtCalls int
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
	rw.wtFn = rw.writeThenWaitOnce
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

// WriteThenWait writes p, as Write does, and then waits until the
// connection has something to read (or has ended, or its read deadline
// passed), without reading it: the caller reads next. It is for a request
// whose reply comes on the same connection, where a read right after the
// write would nearly always find nothing (EAGAIN) and cost a system call
// before the goroutine parks. An error of the wait is not reported; the
// read that follows meets it.
//
// The write is made from inside syscall.RawConn.Read's callback, after the
// poller has begun the read. That order is what makes it safe: the poller
// forgets a connection's readiness when a read begins, so a wait begun
// after the write could miss a reply that arrived in between and never
// wake (docs/PERFORMANCE.md, "waiting for the response before the first
// read"). When the socket takes only part of p, the rest goes as Write
// sends it, and there is no wait.
//
// For the same reason, whatever arrived since the last read and before
// the call is forgotten too: the wait would not end for it. So the call is
// only for a connection whose peer sends nothing unasked, as an HTTP/1.1
// server between a response and the next request (a close it makes then
// is answered by a reset when the request arrives, which ends the wait).
// A server's wait for its client's next request is not such a case: the
// client may pipeline a request or half-close meanwhile (FuzzOwnLoop-
// AgreesWithNetHTTP hung on both when h1server tried it).
func (c *Conn) WriteThenWait(p []byte) (int, error) {
	c.w.mu.Lock()
	c.w.buf, c.w.n, c.w.errno = p, 0, 0
	c.wtCalls = 0
	_ = c.rc.Read(c.wtFn)
	n, errno, calls := c.w.n, c.w.errno, c.wtCalls
	c.w.buf = nil
	c.w.mu.Unlock()
	switch {
	case errno != 0:
		return n, c.opError("write", errno)
	case calls == 0:
		// The read could not begin (closed, or past its deadline):
		// nothing was written; Write reports the connection's state.
		return c.Write(p)
	case n < len(p):
		m, err := c.Write(p[n:])
		return n + m, err
	}
	return n, nil
}

// writeThenWaitOnce is WriteThenWait's RawConn.Read callback: the first
// call writes w.buf and asks to wait unless the write stopped short; the
// next, after the wait, ends it.
func (c *Conn) writeThenWaitOnce(fd uintptr) bool {
	c.wtCalls++
	if c.wtCalls > 1 {
		return true // readable now, or woken for another reason: the read will tell
	}
	c.writeAll(fd)
	// Wait unless the socket is full or the write failed.
	return c.w.n < len(c.w.buf) || c.w.errno != 0
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
