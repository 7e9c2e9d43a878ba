package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// pair returns a wrapped client connection and the server side of it.
func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := Listener{ln}.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return Wrap(c), s
}

func TestWrapsTCPOnLinux(t *testing.T) {
	c, s := pair(t)
	_, cRaw := c.(*Conn)
	_, sRaw := s.(*Conn)
	if want := runtime.GOOS == "linux"; cRaw != want || sRaw != want {
		t.Fatalf("wrapped: dialled %v, accepted %v; want %v", cRaw, sRaw, want)
	}
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Fatal("the wrapped connection lost CloseWrite")
	}
}

func TestReadWriteEOF(t *testing.T) {
	c, s := pair(t)
	msg := []byte("hello, mesh")
	if n, err := c.Write(msg); n != len(msg) || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(s, buf); err != nil || !bytes.Equal(buf, msg) {
		t.Fatalf("read %q, %v", buf, err)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	s.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "pong" {
		t.Fatalf("read to EOF: %q, %v", got, err)
	}
}

// TestLargeWriteWaitsForTheReader writes far more than the socket buffers
// hold: the write must wait in the poller (EAGAIN) and finish as the peer
// reads, with every byte in order.
func TestLargeWriteWaitsForTheReader(t *testing.T) {
	c, s := pair(t)
	checkLargeWrite(t, c, s, c.Write)
}

// checkLargeWrite writes more than the sockets hold from c with write and
// checks that s reads all of it.
func checkLargeWrite(t *testing.T, c, s net.Conn, write func([]byte) (int, error)) {
	t.Helper()
	big := make([]byte, 16<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	done := make(chan error, 1)
	go func() {
		n, err := write(big)
		if err == nil && n != len(big) {
			err = errors.New("short write")
		}
		c.(interface{ CloseWrite() error }).CloseWrite()
		done <- err
	}()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(big))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestDeadlinesAndClose(t *testing.T) {
	c, _ := pair(t)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	readErr := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the read wait in the poller; the test holds either way
	c.Close()
	if err := <-readErr; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed connection: %v", err)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed connection: %v", err)
	}
}

func TestResetIsAnError(t *testing.T) {
	c, s := pair(t)
	s.(interface{ SetLinger(int) error }).SetLinger(0)
	s.Close() // RST
	var err error
	for range 100 {
		if _, err = c.Write([]byte("x")); err != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write after a reset: %v", err)
	}
}

// TestReadWriteAllocateNothing: a sidecar makes about six reads and writes
// a request, so a Read or Write that allocates is garbage on every one.
func TestReadWriteAllocateNothing(t *testing.T) {
	c, s := pair(t)
	if _, ok := c.(*Conn); !ok {
		t.Skip("raw reads and writes are Linux's only")
	}
	msg := []byte("ping")
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a write and a read each way allocated %v times, want 0", allocs)
	}
}
