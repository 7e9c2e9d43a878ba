// Package rawio gives the sidecar's TCP connections reads and writes that
// skip the Go runtime's system-call bookkeeping.
//
// Every read and write of a net.TCPConn goes through syscall.Syscall,
// which tells the scheduler that the goroutine may block: the P is marked
// as in a system call, and sysmon, the runtime's monitor thread, is woken
// from its deep sleep if it was in one, resets its polling interval to
// 20 µs and takes the P away from a call that lasts longer than that. A
// sidecar's sockets are non-blocking, so its reads and writes never block
// (a read with nothing to read returns EAGAIN, and the goroutine waits in
// the runtime's poller), but each burst of requests still set sysmon
// polling every 20 µs for a millisecond and more: strace showed 1.9
// nanosleep calls and 0.65 futex calls per request on a sidecar at 1000
// requests per second, against none for nginx, and a throwaway epoll loop
// in Go (one goroutine, no scheduler on the data path) cost as much CPU
// per request as the whole sidecar for that reason. Conn issues the same
// read and write system calls raw, through syscall.RawConn, so only the
// poller waits are the scheduler's business. Peek does the same for the
// HTTP/1.1 pool's liveness check of an idle upstream connection: one
// call of syscall.Recvfrom per request is enough to keep waking sysmon
// (perf trace at 1000 req/s: 1.5 nanosleep per request with raw reads and
// writes but the peek through syscall.Recvfrom, 0.03 with all three raw,
// and 3.4 context switches per request down to 1.3-2.0).
package rawio

import (
	"net"
	"os"
)

// Enabled says whether the sidecar uses raw reads and writes: yes unless
// the environment variable WEFT_PROXY_RAWIO is "off", for measurements
// and as an escape hatch.
// It is read once, at start-up, not on every dial and accept.
func Enabled() bool { return enabled }

var enabled = os.Getenv("WEFT_PROXY_RAWIO") != "off"

// Listener wraps the TCP connections its Listener accepts with Wrap.
type Listener struct{ net.Listener }

func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
