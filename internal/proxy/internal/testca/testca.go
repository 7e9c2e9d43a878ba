// Package testca is a throwaway SPIFFE certificate authority for
// weft-proxy's tests: an ECDSA P-256 root, an intermediate, and X.509-SVIDs
// issued from it, plus an identity.Source whose certificate a test can swap
// to exercise rotation. Nothing here is for production use.
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/identity"
)

// CA is a root and an intermediate that issues leaves.
type CA struct {
	Root         *x509.Certificate
	rootKey      *ecdsa.PrivateKey
	Intermediate *x509.Certificate
	interKey     *ecdsa.PrivateKey
}

var serial atomic.Int64

func key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, tmpl, parent *x509.Certificate, pub, priv any) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// New makes a CA named name with a root and an intermediate valid for a day.
func New(t testing.TB, name string) *CA {
	t.Helper()
	now := time.Now()
	ca := &CA{rootKey: key(t), interKey: key(t)}
	root := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{Organization: []string{name}, CommonName: name + " root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	ca.Root = sign(t, root, root, &ca.rootKey.PublicKey, ca.rootKey)
	inter := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{Organization: []string{name}, CommonName: name + " intermediate"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	ca.Intermediate = sign(t, inter, ca.Root, &ca.interKey.PublicKey, ca.rootKey)
	return ca
}

// BundlePEM is the trust bundle: the root, PEM-encoded.
func (ca *CA) BundlePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})
}

// Pool is the trust bundle as a pool.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// Issue returns an X.509-SVID for spiffeID valid from now for ttl, with
// the intermediate in its chain, as the mesh CA issues them.
func (ca *CA) Issue(t testing.TB, spiffeID string, ttl time.Duration) *tls.Certificate {
	t.Helper()
	u, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	k := key(t)
	now := time.Now()
	leaf := sign(t, &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{Organization: []string{"weft"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}, ca.Intermediate, &k.PublicKey, ca.interKey)
	return &tls.Certificate{
		Certificate: [][]byte{leaf.Raw, ca.Intermediate.Raw},
		PrivateKey:  k,
		Leaf:        leaf,
	}
}

// Source is an identity.Source whose certificate tests set and swap.
type Source struct {
	cert atomic.Pointer[tls.Certificate]
}

// NewSource returns a Source holding c (which may be nil).
func NewSource(c *tls.Certificate) *Source {
	s := &Source{}
	s.cert.Store(c)
	return s
}

// Certificate implements identity.Source.
func (s *Source) Certificate() *tls.Certificate { return s.cert.Load() }

// Set replaces the certificate, as a renewal does.
func (s *Source) Set(c *tls.Certificate) { s.cert.Store(c) }

var _ identity.Source = (*Source)(nil)
