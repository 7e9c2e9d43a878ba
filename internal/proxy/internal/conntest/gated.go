// Package conntest has net.Conn wrappers for tests of the sidecar's
// connection code.
package conntest

import (
	"net"
	"sync/atomic"
)

// Gated counts its writes once Armed is set, and holds the first of them
// until Gate is closed: a test can keep a write in progress and see what
// queues behind it.
type Gated struct {
	net.Conn
	Armed  atomic.Bool
	Writes atomic.Int32
	Gate   chan struct{}
}

// NewGated wraps c, unarmed, with an open gate channel.
func NewGated(c net.Conn) *Gated { return &Gated{Conn: c, Gate: make(chan struct{})} }

func (c *Gated) Write(p []byte) (int, error) {
	if c.Armed.Load() && c.Writes.Add(1) == 1 {
		<-c.Gate
	}
	return c.Conn.Write(p)
}
