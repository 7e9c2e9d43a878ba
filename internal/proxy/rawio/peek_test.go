//go:build unix

package rawio

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// peekFD peeks at c's socket through its RawConn, as the liveness check does.
func peekFD(t *testing.T, c net.Conn) (int, syscall.Errno, byte) {
	t.Helper()
	tc, ok := c.(*net.TCPConn)
	if rc, isRaw := c.(*Conn); isRaw {
		tc, ok = rc.TCP(), true
	}
	if !ok {
		t.Fatalf("not a TCP connection: %T", c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var (
		b     [1]byte
		n     int
		errno syscall.Errno
	)
	if err := rc.Read(func(fd uintptr) bool { n, errno = Peek(fd, &b); return true }); err != nil {
		t.Fatal(err)
	}
	return n, errno, b[0]
}

func TestPeekSaysIdleDataAndClose(t *testing.T) {
	c, s := pair(t)

	if n, errno, _ := peekFD(t, c); errno != syscall.EAGAIN {
		t.Fatalf("idle connection: n=%d errno=%v, want EAGAIN", n, errno)
	}

	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, errno, b := peekFD(t, c)
		if errno == 0 {
			if n != 1 || b != 'x' {
				t.Fatalf("peek after a write: n=%d byte=%q", n, b)
			}
			break
		}
		if errno != syscall.EAGAIN || time.Now().After(deadline) {
			t.Fatalf("peek after a write: errno=%v", errno)
		}
		time.Sleep(time.Millisecond)
	}
	buf := make([]byte, 4)
	if n, err := c.Read(buf); n != 1 || err != nil || buf[0] != 'x' {
		t.Fatalf("the peeked byte was not left in the socket: read %d %q, %v", n, buf[:n], err)
	}

	s.Close()
	for {
		n, errno, _ := peekFD(t, c)
		if errno == 0 && n == 0 {
			break // the peer closed: what the liveness check looks for
		}
		if errno != syscall.EAGAIN || time.Now().After(deadline) {
			t.Fatalf("peek after the peer closed: n=%d errno=%v, want 0 bytes", n, errno)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("read after close: %v, want EOF", err)
	}
}
