package listener

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestPeekByte(t *testing.T) {
	t.Run("on TCP the byte stays in the socket", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err == nil {
				_, _ = c.Write([]byte("\x16hello"))
				c.Close()
			}
		}()
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, pc, err := peekByte(c)
		if err != nil || b != 0x16 || pc != c {
			t.Fatalf("peekByte = %#x, same conn %v, %v", b, pc == c, err)
		}
		all, _ := io.ReadAll(pc)
		if string(all) != "\x16hello" {
			t.Errorf("read after peek = %q", all)
		}
	})
	t.Run("elsewhere the byte is replayed", func(t *testing.T) {
		a, b := net.Pipe()
		go func() {
			_, _ = a.Write([]byte("GET /"))
			a.Close()
		}()
		first, pc, err := peekByte(b)
		if err != nil || first != 'G' {
			t.Fatalf("peekByte = %q, %v", first, err)
		}
		all, _ := io.ReadAll(pc)
		if string(all) != "GET /" {
			t.Errorf("read after peek = %q", all)
		}
	})
}
