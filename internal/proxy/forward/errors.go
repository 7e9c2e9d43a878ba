package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/mtls"
)

// classify turns a failed upstream round trip into the local reply's status
// and one-line body: 504 when the route timeout fired, 503 otherwise, with
// the reason and the cluster named so an operator can act on it.
func classify(ctx context.Context, c *cluster.Cluster, timeout time.Duration, err error) (int, string) {
	name := c.Name()
	if timeout > 0 && (errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)) {
		return http.StatusGatewayTimeout, "upstream request timeout for cluster " + name + " after " + timeout.String()
	}
	var ie *mtls.IdentityError
	if errors.As(err, &ie) {
		return http.StatusServiceUnavailable, "upstream TLS error for cluster " + name + ": " + ie.Error()
	}
	var he *HandshakeError
	if errors.As(err, &he) {
		return http.StatusServiceUnavailable, "upstream TLS handshake failed for cluster " + name + ": " + oneLine(he.Err.Error())
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		reason := "connection failed"
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			reason = "connection refused"
		case op.Timeout():
			reason = "connect timeout after " + c.ConnectTimeout().String()
		case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
			reason = "no route to host"
		}
		return http.StatusServiceUnavailable, "upstream connect error for cluster " + name + ": " + reason
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return http.StatusServiceUnavailable, "upstream connection reset before response headers for cluster " + name
	}
	return http.StatusServiceUnavailable, "upstream error for cluster " + name + ": " + oneLine(err.Error())
}

// oneLine keeps an error text on one line, as local reply bodies promise.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}
