// Package mtls builds the TLS configurations of weft-proxy's mesh traffic:
// the inbound listener's server side and the upstream clusters' client side,
// both TLS 1.3 only, with certificates from the identity agent and peers
// verified against the mesh trust bundle (the ROOTCA secret).
//
// SPIFFE certificates name their workload in a URI SAN and carry no DNS
// name, so Go's built-in hostname verification does not apply: peers are
// verified here, in VerifyConnection, which Go calls on every handshake,
// resumed ones included. A verified leaf is remembered per trust bundle until
// its chain expires, so a reconnect to a known peer costs no signature check.
package mtls

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/identity"
)

// maxVerified bounds the per-bundle cache of verified leaves. Peers rotate
// their certificates at half-life, so the working set is about twice the
// number of distinct peers; when full, the cache starts over.
const maxVerified = 4096

// Roots is a parsed trust bundle, immutable apart from its cache of verified
// leaves. One Roots is made per distinct bundle (see ParseRoots), and every
// TLS configuration built from the same bundle shares it.
type Roots struct {
	pool   *x509.CertPool
	certs  []*x509.Certificate
	digest [32]byte

	mu       sync.Mutex
	verified map[[32]byte]time.Time // leaf SHA-256 -> end of validity of its verified chain
}

// ParseRoots parses a PEM trust bundle: one or more CA certificates, and
// nothing else.
func ParseRoots(bundle []byte) (*Roots, error) {
	r := &Roots{pool: x509.NewCertPool(), digest: sha256.Sum256(bundle), verified: map[[32]byte]time.Time{}}
	rest := bundle
	for i := 0; ; i++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", i, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", i, err)
		}
		if !c.IsCA || !c.BasicConstraintsValid {
			return nil, fmt.Errorf("certificate %d (%s) is not a CA certificate", i, c.Subject)
		}
		r.pool.AddCert(c)
		r.certs = append(r.certs, c)
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("trailing data after the last PEM block")
	}
	if len(r.certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return r, nil
}

// Digest is the SHA-256 of the bundle as received; equal digests mean
// equal bundles.
func (r *Roots) Digest() [32]byte { return r.digest }

// MarshalJSON describes the bundle for config dumps.
func (r *Roots) MarshalJSON() ([]byte, error) {
	type cert struct {
		Subject  string    `json:"subject"`
		NotAfter time.Time `json:"not_after"`
	}
	certs := make([]cert, len(r.certs))
	for i, c := range r.certs {
		certs[i] = cert{c.Subject.String(), c.NotAfter}
	}
	return json.Marshal(struct {
		SHA256       string `json:"sha256"`
		Certificates []cert `json:"certificates"`
	}{hex.EncodeToString(r.digest[:]), certs})
}

// Peer is a verified peer certificate.
type Peer struct {
	// SpiffeID is the URI SAN of the leaf.
	SpiffeID string
	// LeafSHA256 is the SHA-256 of the leaf's DER.
	LeafSHA256 [32]byte
}

// Verify checks a peer's certificate chain, leaf first, as presented in a
// handshake: the leaf must be an X.509-SVID (exactly one URI SAN, with the
// spiffe scheme; not a CA; usable for signatures) that chains to the bundle
// at now. It returns the peer's identity.
func (r *Roots) Verify(chain []*x509.Certificate, now time.Time) (Peer, error) {
	if len(chain) == 0 {
		return Peer{}, errors.New("peer sent no certificate")
	}
	leaf := chain[0]
	p := Peer{LeafSHA256: sha256.Sum256(leaf.Raw)}
	id, err := SpiffeID(leaf)
	if err != nil {
		return Peer{}, err
	}
	p.SpiffeID = id
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return Peer{}, fmt.Errorf("certificate of %s is not valid at %s (valid %s to %s)",
			id, now.UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}

	r.mu.Lock()
	until, ok := r.verified[p.LeafSHA256]
	r.mu.Unlock()
	if ok && now.Before(until) {
		return p, nil
	}

	if leaf.IsCA {
		return Peer{}, fmt.Errorf("certificate of %s is a CA certificate", id)
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return Peer{}, fmt.Errorf("certificate of %s does not allow digital signatures", id)
	}
	opts := x509.VerifyOptions{
		Roots:       r.pool,
		CurrentTime: now,
		// X.509-SVIDs serve as client and server certificates alike; as in
		// go-spiffe, extended key usages are not constrained.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	if len(chain) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range chain[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return Peer{}, fmt.Errorf("certificate of %s does not chain to the trust bundle: %w", id, err)
	}
	until = leaf.NotAfter
	for _, c := range chains[0] {
		until = minTime(until, c.NotAfter)
	}
	r.mu.Lock()
	if len(r.verified) >= maxVerified {
		clear(r.verified)
	}
	r.verified[p.LeafSHA256] = until
	r.mu.Unlock()
	return p, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// SpiffeID returns the SPIFFE ID of an X.509-SVID: its only URI SAN, which
// must be spiffe://<trust-domain>/<path>.
func SpiffeID(cert *x509.Certificate) (string, error) {
	if len(cert.URIs) != 1 {
		return "", fmt.Errorf("certificate %q has %d URI SANs, want exactly one SPIFFE ID", cert.Subject, len(cert.URIs))
	}
	u := cert.URIs[0]
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return "", fmt.Errorf("certificate %q has URI SAN %q, not a SPIFFE ID", cert.Subject, u)
	}
	return u.String(), nil
}

// IdentityError says that an upstream's verified identity is not one the
// cluster accepts.
type IdentityError struct {
	Got  string   // the server's SPIFFE ID
	Want []string // the cluster's accepted identities
}

func (e *IdentityError) Error() string {
	if len(e.Want) == 0 {
		return "server identity " + e.Got + " is not accepted: the cluster accepts no identity"
	}
	return "server identity " + e.Got + " is not one of " + strings.Join(e.Want, ", ")
}

// errNoCertificate is returned while the identity agent has no certificate.
var errNoCertificate = errors.New("no workload certificate issued yet")

// ServerConfig returns the inbound listener's TLS configuration: TLS 1.3
// only, the proxy's current certificate from src on every handshake (so a
// rotated certificate applies to new connections), a client certificate
// required and verified against roots, ALPN alpn, and session tickets on.
//
// Build one per bundle and keep it: session tickets are encrypted with keys
// that belong to the returned *tls.Config, so a new one makes the tickets
// clients hold useless.
func ServerConfig(roots *Roots, src identity.Source, alpn []string) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		NextProtos: alpn,
		// The certificate is checked in VerifyConnection, which sees
		// resumed sessions too; Go's own verification would insist on a
		// client-auth extended key usage.
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := current(src); c != nil {
				return c, nil
			}
			return nil, errNoCertificate
		},
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := roots.Verify(cs.PeerCertificates, time.Now())
		return err
	}
	return cfg
}

// ClientConfig returns an upstream cluster's TLS configuration: TLS 1.3
// only, SNI sni, ALPN h2, the proxy's current certificate from src on every
// handshake, and the server verified against roots with a SPIFFE ID that
// must be one of sans. Sessions are cached for resumption in cache, which
// may be nil.
func ClientConfig(roots *Roots, src identity.Source, sni string, sans []string, cache tls.ClientSessionCache) *tls.Config {
	accepted := make(map[string]struct{}, len(sans))
	for _, s := range sans {
		accepted[s] = struct{}{}
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		ServerName: sni,
		// Hostname verification does not apply to SPIFFE certificates;
		// VerifyConnection below does the whole check instead.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		ClientSessionCache: cache,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := current(src); c != nil {
				return c, nil
			}
			return nil, errNoCertificate
		},
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		p, err := roots.Verify(cs.PeerCertificates, time.Now())
		if err != nil {
			return err
		}
		if _, ok := accepted[p.SpiffeID]; !ok {
			return &IdentityError{Got: p.SpiffeID, Want: sans}
		}
		return nil
	}
	return cfg
}

func current(src identity.Source) *tls.Certificate {
	if src == nil {
		return nil
	}
	return src.Certificate()
}

// LocalID remembers the SPIFFE ID of the proxy's own current certificate.
// It parses a leaf only when the certificate changed since the last call, so
// it is cheap to call per connection. The zero value is ready to use.
type LocalID struct {
	mu   sync.Mutex
	cert *tls.Certificate
	id   string
}

// Of returns the SPIFFE ID of c, or "" when c is nil or has none.
func (l *LocalID) Of(c *tls.Certificate) string {
	if c == nil {
		return ""
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c == l.cert {
		return l.id
	}
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	id := ""
	if leaf != nil {
		id, _ = SpiffeID(leaf)
	}
	l.cert, l.id = c, id
	return id
}

// ParseSpiffeID checks that s is a SPIFFE ID as weft's certificates carry
// them: spiffe://<trust-domain>/<path>.
func ParseSpiffeID(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme != "spiffe" || u.Host == "" || u.Path == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return fmt.Errorf("%q is not a SPIFFE ID, want spiffe://<trust-domain>/<path>", s)
	}
	return nil
}
