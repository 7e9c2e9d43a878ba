package rawio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestWriteThenWaitReturnsOnceThereIsAReply(t *testing.T) {
	c, s := pair(t)
	w := c.(*Conn)
	done := make(chan error, 1)
	go func() {
		_, err := w.WriteThenWait([]byte("ping"))
		done <- err
	}()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("the peer read %q, %v", buf, err)
	}
	select {
	case err := <-done:
		t.Fatalf("WriteThenWait returned (%v) before any reply", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v after the wait", buf, err)
	}
}

// A reply that comes back at once, before a wait begun after the write
// could start, must still end the wait: the readiness is armed before the
// write. Were it lost, an exchange would hang to its deadline. Several
// pairs at once keep the runtime's poller busy on other threads, which is
// what loses a readiness armed too late (a naive version, writing first,
// failed this test).
func TestWriteThenWaitSeesAnImmediateReply(t *testing.T) {
	const pairs, exchanges = 8, 1000
	errs := make(chan error, pairs)
	for range pairs {
		c, s := pair(t)
		w := c.(*Conn)
		go func() { _, _ = io.Copy(s, s) }() // echo
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		go func() {
			msg := []byte("ping-ping")
			buf := make([]byte, len(msg))
			for i := range exchanges {
				if _, err := w.WriteThenWait(msg); err != nil {
					errs <- fmt.Errorf("exchange %d: %w", i, err)
					return
				}
				if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, msg) {
					errs <- fmt.Errorf("exchange %d: read %q, %w", i, buf, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range pairs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriteThenWaitErrors(t *testing.T) {
	t.Run("a read deadline ends the wait, and the read that follows reports it", func(t *testing.T) {
		c, s := pair(t)
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := c.(*Conn).WriteThenWait([]byte("ping")); n != 4 || err != nil {
			t.Fatalf("WriteThenWait: %d, %v; want 4 and no error", n, err)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read after the wait: %v, want a deadline error", err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("the peer read %q, %v", buf, err)
		}
	})

	t.Run("a read deadline already past still lets the write go out", func(t *testing.T) {
		c, s := pair(t)
		_ = c.SetReadDeadline(time.Now().Add(-time.Second))
		if n, err := c.(*Conn).WriteThenWait([]byte("ping")); n != 4 || err != nil {
			t.Fatalf("WriteThenWait: %d, %v; want 4 and no error", n, err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("the peer read %q, %v", buf, err)
		}
	})

	t.Run("closing the connection during the wait ends it", func(t *testing.T) {
		c, _ := pair(t)
		done := make(chan error, 1)
		go func() {
			_, err := c.(*Conn).WriteThenWait([]byte("ping"))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond) // let it wait; the test holds either way
		c.Close()
		if err := <-done; err != nil {
			t.Fatalf("WriteThenWait: %v; want the write's success", err)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	})

	t.Run("a closed connection is a write error", func(t *testing.T) {
		c, _ := pair(t)
		c.Close()
		if _, err := c.(*Conn).WriteThenWait([]byte("ping")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("WriteThenWait on a closed connection: %v", err)
		}
	})
}

// More than the socket takes at once: the rest goes as Write sends it,
// and all of it arrives.
func TestWriteThenWaitLargeWrite(t *testing.T) {
	c, s := pair(t)
	checkLargeWrite(t, c, s, c.(*Conn).WriteThenWait)
}

func TestWriteThenWaitAllocatesNothing(t *testing.T) {
	c, s := pair(t)
	w := c.(*Conn)
	go func() { _, _ = io.Copy(s, s) }() // echo; its buffer is made before the count
	msg := []byte("ping")
	buf := make([]byte, len(msg))
	exchange := func() {
		if _, err := w.WriteThenWait(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	exchange()
	if allocs := testing.AllocsPerRun(200, exchange); allocs != 0 {
		t.Fatalf("an exchange allocated %v times, want 0", allocs)
	}
}
