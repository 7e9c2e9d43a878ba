package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
)

// Errors of SignCSR, for the RPC edge to map to status codes.
var (
	// ErrBadCSR means the CSR is malformed or asks for something the CA
	// never signs.
	ErrBadCSR = errors.New("invalid CSR")
	// ErrWrongIdentity means the CSR asks for an identity other than the
	// caller's.
	ErrWrongIdentity = errors.New("CSR identity differs from the caller's")
)

// maxCSR bounds the size of a CSR the CA parses.
const maxCSR = 64 << 10

// SVID is one issued workload certificate.
type SVID struct {
	// ChainPEM is the leaf, then the intermediates, then the root, each PEM.
	ChainPEM []string
	Leaf     *x509.Certificate
}

// SignCSR signs a PEM CSR into an SVID for id. The CSR's only SAN must be
// the URI SAN of id's SPIFFE ID (ErrWrongIdentity otherwise), and its key
// ECDSA (P-256 or P-384) or RSA (2048 bits or more). The certificate
// carries that URI SAN only, whatever else the CSR asks for, is valid for
// ttl clamped to [MinWorkloadCertTTL, the configured TTL] (zero means the
// configured TTL) and never past the CA's own expiry.
func (a *Authority) SignCSR(csrPEM []byte, id Identity, ttl time.Duration) (*SVID, error) {
	if id.TrustDomain != a.td {
		return nil, fmt.Errorf("%w: identity %s is not in trust domain %s", ErrWrongIdentity, id, a.td)
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	want := id.SpiffeID()
	if len(csr.URIs) != 1 || csr.URIs[0].String() != want {
		got := make([]string, len(csr.URIs))
		for i, u := range csr.URIs {
			got[i] = u.String()
		}
		return nil, fmt.Errorf("%w: the CSR asks for URI SAN %v but the token proves %s; a proxy can only obtain a certificate for the identity its token names", ErrWrongIdentity, got, want)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, fmt.Errorf("%w: the CSR may hold only the URI SAN %s, it also asks for DNS names, IPs or email addresses", ErrBadCSR, want)
	}
	if ttl <= 0 || ttl > a.ttl {
		ttl = a.ttl
	}
	ttl = max(ttl, MinWorkloadCertTTL)
	now := a.now()
	notAfter := now.Add(ttl)
	if notAfter.After(a.notAfter) {
		notAfter = a.notAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("the CA certificate expired at %s: rotate it (docs/security.md)", a.notAfter.UTC().Format(time.RFC3339))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, csr.PublicKey, a.signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	chain := append([]string{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}, a.chainPEM...)
	return &SVID{ChainPEM: chain, Leaf: leaf}, nil
}

func parseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) > maxCSR {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadCSR, len(b), maxCSR)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: want a PEM CERTIFICATE REQUEST block", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%w: ECDSA curve %s not accepted, want P-256 or P-384", ErrBadCSR, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: RSA key of %d bits, want 2048 or more", ErrBadCSR, k.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("%w: key type %T not accepted, want ECDSA or RSA", ErrBadCSR, csr.PublicKey)
	}
	return csr, nil
}

// servingValidity is the lifetime of the control plane's own TLS
// certificates; they are reissued at half of it.
const servingValidity = 24 * time.Hour

// issueServing issues a TLS server certificate for hosts (DNS names and
// IP addresses) with a fresh ECDSA P-256 key.
func (a *Authority) issueServing(hosts []string, validity time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate serving key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := a.now()
	notAfter := now.Add(validity)
	if notAfter.After(a.notAfter) {
		notAfter = a.notAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{a.td}, CommonName: "weft-control-plane"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if !tmpl.NotAfter.After(now) {
		return nil, fmt.Errorf("the CA certificate expired at %s", a.notAfter.UTC().Format(time.RFC3339))
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.signer)
	if err != nil {
		return nil, fmt.Errorf("sign serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	for _, p := range a.chainPEM[:len(a.chainPEM)-len(a.roots)] { // intermediates, without the root
		block, _ := pem.Decode([]byte(p))
		c.Certificate = append(c.Certificate, block.Bytes)
	}
	return c, nil
}

// ServingCerts hands out the control plane's TLS server certificate for a
// fixed set of names, issuing a new one once the current one is past half
// its lifetime. Safe for concurrent use.
type ServingCerts struct {
	a     *Authority
	hosts []string

	mu      sync.Mutex
	cur     *tls.Certificate
	renewAt time.Time
}

// ServingCerts returns a rotating source of serving certificates whose
// SANs are hosts (DNS names or IPs; unspecified IPs are skipped).
func (a *Authority) ServingCerts(hosts []string) (*ServingCerts, error) {
	s := &ServingCerts{a: a, hosts: hosts}
	if _, err := s.GetCertificate(nil); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (s *ServingCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.a.now()
	if s.cur != nil && now.Before(s.renewAt) {
		return s.cur, nil
	}
	c, err := s.a.issueServing(s.hosts, servingValidity)
	if err != nil {
		if s.cur != nil && now.Before(s.cur.Leaf.NotAfter) {
			s.a.log.Error("reissuing the serving certificate failed; keeping the current one", "err", err)
			return s.cur, nil
		}
		return nil, err
	}
	if s.cur != nil {
		s.a.log.Info("serving certificate rotated", "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	s.cur = c
	s.renewAt = now.Add(c.Leaf.NotAfter.Sub(now) / 2)
	return c, nil
}

// TLSConfig is a TLS 1.3 server config presenting the rotating certificate.
func (s *ServingCerts) TLSConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: s.GetCertificate, NextProtos: nextProtos}
}
