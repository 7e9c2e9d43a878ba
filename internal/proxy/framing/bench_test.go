package framing

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
)

// loopConn serves the same bytes forever, as a client sending one request
// after another on a keep-alive connection.
type loopConn struct {
	net.Conn
	data string
	off  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.off:])
	c.off = (c.off + n) % len(c.data)
	return n, nil
}

// BenchmarkRequest reads one fortio-style 1 KiB POST per iteration with
// net/http's request parser, through a Conn and without one: the
// difference is what the guard costs a request.
func BenchmarkRequest(b *testing.B) {
	req := "POST /echo HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: fortio.org/fortio-1.68.2\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024)
	for _, guarded := range []bool{false, true} {
		name := "net/http"
		if guarded {
			name = "guarded"
		}
		b.Run(name, func(b *testing.B) {
			var c net.Conn = &loopConn{data: req}
			if guarded {
				c = NewConn(c)
			}
			br := bufio.NewReader(c)
			body := make([]byte, 1024)
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			for b.Loop() {
				r, err := http.ReadRequest(br)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.Body.Read(body); err != nil && err.Error() != "EOF" {
					b.Fatal(err)
				}
				r.Body.Close()
			}
		})
	}
}
