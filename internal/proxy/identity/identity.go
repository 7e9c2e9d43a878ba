// Package identity is weft-proxy's identity agent: it keeps the workload's
// private key, obtains its SPIFFE SVID from the control plane's CA with a
// CSR, renews it at half its lifetime, and hands the current certificate to
// the TLS code of the listeners and upstream transports.
package identity

import "crypto/tls"

// Source provides the proxy's current SVID. Implementations are safe for
// concurrent use; TLS handshakes call Certificate on every new connection,
// so it must be cheap (an atomic load) and never block on the network.
type Source interface {
	// Certificate returns the current certificate chain and private key, or
	// nil while none has been issued yet.
	Certificate() *tls.Certificate
}
