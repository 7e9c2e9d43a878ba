//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package forward

// peeker is unused here.
type peeker struct{}

// alive cannot peek at the socket here; a connection the upstream closed
// is found by the request sent on it, which is then retried.
func (pc *h1Conn) alive() bool { return true }
