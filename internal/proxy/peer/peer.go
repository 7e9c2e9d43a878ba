// Package peer describes the other end of a connection a listener
// accepted: the verified identity of an mTLS peer, or only its address for
// a plaintext one. The listener attaches one Info per connection to the
// context of every request on it; HTTP filters (RBAC), the forwarding
// engine (x-forwarded-client-cert) and access logs read it from there.
package peer

import (
	"context"
	"encoding/hex"
	"net/netip"
	"sync/atomic"
)

// Info is what the proxy knows for certain about the peer of one
// connection. It is built once, when the connection is accepted (after the
// TLS handshake, if any), and never modified afterwards, so it may be read
// from any goroutine without locking.
type Info struct {
	// SpiffeID is the peer's SPIFFE ID, the URI SAN of its client
	// certificate, verified against the trust bundle (ROOTCA). Empty for a
	// plaintext connection.
	SpiffeID string
	// LeafSHA256 is the SHA-256 of the DER of the peer's leaf certificate;
	// zero for a plaintext connection.
	LeafSHA256 [32]byte
	// TLS is true when the connection is mTLS with a verified client
	// certificate. Plaintext connections (PERMISSIVE or DISABLE) have
	// TLS false and no SpiffeID.
	TLS bool
	// Resumed is true when the TLS session was resumed from a ticket (no
	// certificate exchange on this connection; the peer's certificate is
	// the one verified when the session began, checked again for expiry).
	Resumed bool
	// SNI is the server name the client asked for in its TLS ClientHello
	// (weft sidecars send the cluster name); empty for plaintext.
	SNI string
	// RemoteAddr is the peer's IP address and port as the socket sees it.
	RemoteAddr netip.AddrPort
	// LocalPort is the port the connection arrived on.
	LocalPort uint16
	// LocalSpiffeID is this proxy's own SPIFFE ID, from the certificate it
	// presented on this connection; empty for plaintext.
	LocalSpiffeID string

	// ClientCertHeader holds the forwarding engine's
	// x-forwarded-client-cert value for this connection, made from the
	// fields above on the connection's first request and shared by the
	// rest (an HTTP/2 connection's streams run concurrently, hence the
	// atomic.Value, which unlike atomic.Pointer leaves Info copyable, as
	// tests and filters copy it before first use). It holds a one-element
	// []string that goes into header maps as it is: set the header anew
	// rather than write into the slice.
	ClientCertHeader atomic.Value
}

// LeafSHA256Hex is LeafSHA256 in lower-case hex, as x-forwarded-client-cert's
// Hash= carries it; empty for plaintext.
func (i *Info) LeafSHA256Hex() string {
	if !i.TLS {
		return ""
	}
	return hex.EncodeToString(i.LeafSHA256[:])
}

type ctxKey struct{}

// NewContext returns a copy of ctx carrying info.
func NewContext(ctx context.Context, info *Info) context.Context {
	return context.WithValue(ctx, ctxKey{}, info)
}

// FromContext returns the Info a listener attached to ctx (the context of
// a request, or of its connection), or nil and false when there is none,
// as for requests that did not come through a weft listener.
func FromContext(ctx context.Context) (*Info, bool) {
	info, ok := ctx.Value(ctxKey{}).(*Info)
	return info, ok && info != nil
}
