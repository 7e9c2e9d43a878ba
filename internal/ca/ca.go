// Package ca is the mesh's certificate authority and token issuer. It owns
// the CA key (a root it creates and keeps in the store, or an intermediate
// the operator provides in files), signs workload CSRs into SPIFFE X.509
// SVIDs, issues the control plane's own serving certificates, and signs and
// verifies the bearer tokens (ES256 JWTs) that prove a proxy's identity.
//
// Keys live in the store under /weft/ca/ so that restarts and replicas
// sharing an etcd cluster use one root and one token key: the first
// process to start creates them in a transaction, every later one reads
// them.
package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"time"

	"github.com/weft-mesh/weft/internal/store"
)

// Store keys of the CA's state.
const (
	Prefix       = "/weft/ca/"
	rootCertKey  = Prefix + "root/cert.pem"
	rootKeyKey   = Prefix + "root/key.pem"
	tokenKeyKey  = Prefix + "token/key.pem"
	rootValidity = 10 * 365 * 24 * time.Hour
)

// Defaults and bounds of Options.
const (
	DefaultTrustDomain     = "cluster.local"
	DefaultWorkloadCertTTL = 24 * time.Hour
	MinWorkloadCertTTL     = time.Minute
	// clockSkew backdates NotBefore so that a peer whose clock is slightly
	// behind accepts a fresh certificate.
	clockSkew = 30 * time.Second
)

// Options configure an Authority. The zero value of each field means its
// default.
type Options struct {
	// TrustDomain is the SPIFFE trust domain; default cluster.local.
	TrustDomain string
	// WorkloadCertTTL is the lifetime of workload SVIDs; default 24h, at
	// least 1m. An SVID never outlives the CA certificate that signs it.
	WorkloadCertTTL time.Duration
	// CertFile, KeyFile and ChainFile, all three or none, make the
	// authority an intermediate CA signed by the operator's own root:
	// CertFile is the intermediate's certificate (PEM), KeyFile its private
	// key (PEM: PKCS#8, EC or PKCS#1), and ChainFile the certificates from
	// the intermediate's issuer up to and including the root (PEM; the
	// intermediate itself may come first). The root is then the trust
	// bundle. With none set, the authority uses its own root from the
	// store, creating it on first start.
	CertFile, KeyFile, ChainFile string
	Logger                       *slog.Logger
	// Now is the clock; nil means time.Now. For tests.
	Now func() time.Time
}

// Authority is the mesh CA. It is immutable after Open and safe for
// concurrent use.
type Authority struct {
	td     string
	ttl    time.Duration
	now    func() time.Time
	log    *slog.Logger
	signer crypto.Signer
	// cert signs SVIDs; chain holds its issuers up to the root (empty when
	// cert is the root); roots is the trust bundle.
	cert      *x509.Certificate
	chain     []*x509.Certificate
	roots     []*x509.Certificate
	pool      *x509.CertPool
	bundlePEM []byte
	chainPEM  []string // chain as PEM, then the roots: what follows a leaf in an answer
	notAfter  time.Time
	source    string

	tokenKey *ecdsa.PrivateKey
	tokenKID string
}

// Open returns the authority of the mesh whose state is in st.
func Open(ctx context.Context, st *store.Store, opts Options) (*Authority, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	a := &Authority{td: opts.TrustDomain, ttl: opts.WorkloadCertTTL, now: opts.Now, log: opts.Logger}
	if opts.CertFile != "" {
		if err := a.loadFiles(opts.CertFile, opts.KeyFile, opts.ChainFile); err != nil {
			return nil, err
		}
	} else if err := a.loadStoredRoot(ctx, st); err != nil {
		return nil, err
	}
	if err := a.loadTokenKey(ctx, st); err != nil {
		return nil, err
	}
	a.finish()
	a.log.Info("certificate authority ready", "trust_domain", a.td, "source", a.source,
		"ca_subject", a.cert.Subject.String(), "ca_not_after", a.cert.NotAfter.UTC().Format(time.RFC3339),
		"root_fingerprint", Fingerprint(a.roots[0]), "workload_cert_ttl", a.ttl)
	if left := a.notAfter.Sub(a.now()); left < 30*24*time.Hour {
		a.log.Warn("the CA certificate expires soon; rotate it (docs/security.md)", "expires_in", left.Round(time.Hour))
	}
	return a, nil
}

func (o *Options) defaults() error {
	if o.TrustDomain == "" {
		o.TrustDomain = DefaultTrustDomain
	}
	if err := ValidateTrustDomain(o.TrustDomain); err != nil {
		return err
	}
	if o.WorkloadCertTTL == 0 {
		o.WorkloadCertTTL = DefaultWorkloadCertTTL
	}
	if o.WorkloadCertTTL < MinWorkloadCertTTL {
		return fmt.Errorf("workload certificate TTL %s is shorter than the minimum %s", o.WorkloadCertTTL, MinWorkloadCertTTL)
	}
	set := 0
	for _, f := range []string{o.CertFile, o.KeyFile, o.ChainFile} {
		if f != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return errors.New("an intermediate CA needs all of --ca-cert, --ca-key and --ca-chain")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// finish derives what answers need from the loaded certificates.
func (a *Authority) finish() {
	a.pool = x509.NewCertPool()
	for _, r := range a.roots {
		a.pool.AddCert(r)
		a.bundlePEM = append(a.bundlePEM, encodeCert(r)...)
	}
	// An answer is the leaf, then the signing certificate unless it is the
	// root, then its issuers, then the root.
	var tail []*x509.Certificate
	if !a.cert.Equal(a.roots[0]) {
		tail = append(tail, a.cert)
	}
	tail = append(append(tail, a.chain...), a.roots...)
	a.notAfter = a.cert.NotAfter
	for _, c := range tail {
		a.chainPEM = append(a.chainPEM, string(encodeCert(c)))
		if c.NotAfter.Before(a.notAfter) {
			a.notAfter = c.NotAfter
		}
	}
}

// TrustDomain is the mesh's SPIFFE trust domain.
func (a *Authority) TrustDomain() string { return a.td }

// TrustBundlePEM is the root certificate(s) every workload trusts, PEM.
func (a *Authority) TrustBundlePEM() []byte { return append([]byte(nil), a.bundlePEM...) }

// Roots is the trust bundle as a pool.
func (a *Authority) Roots() *x509.CertPool { return a.pool }

// WorkloadCertTTL is the lifetime of SVIDs.
func (a *Authority) WorkloadCertTTL() time.Duration { return a.ttl }

// loadStoredRoot reads the root from the store, creating it if no process
// has yet.
func (a *Authority) loadStoredRoot(ctx context.Context, st *store.Store) error {
	certPEM, keyPEM, err := newRoot(a.td, a.now())
	if err != nil {
		return err
	}
	kvs, created, err := st.Create(ctx, []store.Write{{Key: rootCertKey, Value: certPEM}, {Key: rootKeyKey, Value: keyPEM}})
	if err != nil {
		return fmt.Errorf("load or create the CA root: %w", err)
	}
	cert, err := parseCert(kvs[0].Value)
	if err != nil {
		return fmt.Errorf("CA root in the store (%s): %w", rootCertKey, err)
	}
	key, err := parseKey(kvs[1].Value)
	if err != nil {
		return fmt.Errorf("CA root key in the store (%s): %w", rootKeyKey, err)
	}
	if err := keyMatches(cert, key); err != nil {
		return fmt.Errorf("CA root in the store: %w", err)
	}
	if td := trustDomainOf(cert); td != "" && td != a.td {
		return fmt.Errorf("the CA root in the store is for trust domain %q, not %q: a mesh keeps its trust domain (start with --trust-domain %s, or a new store)", td, a.td, td)
	}
	a.cert, a.signer, a.roots = cert, key, []*x509.Certificate{cert}
	a.source = "store (existing root)"
	if created {
		a.source = "store (new root)"
	}
	return nil
}

// loadFiles reads an intermediate CA and its chain from the operator's files.
func (a *Authority) loadFiles(certFile, keyFile, chainFile string) error {
	read := func(flag, f string) ([]byte, error) {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		return b, nil
	}
	certPEM, err := read("--ca-cert", certFile)
	if err != nil {
		return err
	}
	keyPEM, err := read("--ca-key", keyFile)
	if err != nil {
		return err
	}
	chainPEM, err := read("--ca-chain", chainFile)
	if err != nil {
		return err
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return fmt.Errorf("--ca-cert %s: %w", certFile, err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return fmt.Errorf("--ca-cert %s: %q is not a CA certificate (basic constraints CA:TRUE)", certFile, cert.Subject)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("--ca-cert %s: key usage lacks certificate signing", certFile)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return fmt.Errorf("--ca-key %s: %w", keyFile, err)
	}
	if err := keyMatches(cert, key); err != nil {
		return fmt.Errorf("--ca-key %s: %w", keyFile, err)
	}
	chain, err := parseCerts(chainPEM)
	if err != nil {
		return fmt.Errorf("--ca-chain %s: %w", chainFile, err)
	}
	if len(chain) > 0 && chain[0].Equal(cert) {
		chain = chain[1:]
	}
	var root *x509.Certificate
	switch {
	case len(chain) > 0:
		root = chain[len(chain)-1]
		chain = chain[:len(chain)-1]
	case isSelfSigned(cert):
		root = cert // the operator handed us a root itself
	default:
		return fmt.Errorf("--ca-chain %s: holds no certificate above %q; want its issuers up to the root", chainFile, cert.Subject)
	}
	if !isSelfSigned(root) {
		return fmt.Errorf("--ca-chain %s: the last certificate, %q, is not a self-signed root", chainFile, root.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	now := a.now()
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("--ca-cert %s does not chain to the root in --ca-chain %s: %w", certFile, chainFile, err)
	}
	a.cert, a.signer, a.chain, a.roots = cert, key, chain, []*x509.Certificate{root}
	a.source = "files (intermediate " + certFile + ")"
	if cert == root {
		a.chain = nil
		a.source = "files (root " + certFile + ")"
	}
	return nil
}

func (a *Authority) loadTokenKey(ctx context.Context, st *store.Store) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate token key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("encode token key: %w", err)
	}
	kvs, _, err := st.Create(ctx, []store.Write{{Key: tokenKeyKey, Value: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}})
	if err != nil {
		return fmt.Errorf("load or create the token signing key: %w", err)
	}
	key, err := parseKey(kvs[0].Value)
	if err != nil {
		return fmt.Errorf("token key in the store (%s): %w", tokenKeyKey, err)
	}
	ek, ok := key.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return fmt.Errorf("token key in the store (%s) is not an ECDSA P-256 key", tokenKeyKey)
	}
	pub, err := x509.MarshalPKIXPublicKey(&ek.PublicKey)
	if err != nil {
		return fmt.Errorf("encode token public key: %w", err)
	}
	sum := sha256.Sum256(pub)
	a.tokenKey, a.tokenKID = ek, hex.EncodeToString(sum[:8])
	return nil
}

// newRoot makes a self-signed ECDSA P-256 root for trust domain td.
func newRoot(td string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{td}, CommonName: "weft root CA"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(rootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: td}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign CA root: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// newSerial is a random positive 128-bit serial number.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// trustDomainOf returns the trust domain of a CA certificate's spiffe://
// URI SAN, or "".
func trustDomainOf(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" && (u.Path == "" || u.Path == "/") {
			return u.Host
		}
	}
	return ""
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}

// Fingerprint is the SHA-256 of a certificate, hex: what operators compare.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func parseCert(b []byte) (*x509.Certificate, error) {
	certs, err := parseCerts(b)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs[0], nil
}

// parseCerts reads every CERTIFICATE block of b, skipping other blocks.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return out, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
}

// parseKey reads the first private key block of b: PKCS#8, SEC 1 EC or
// PKCS#1 RSA.
func parseKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key block (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			return k, nil
		case *rsa.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("unsupported CA key type %T: want ECDSA or RSA", key)
		}
	}
}

func keyMatches(c *x509.Certificate, key crypto.Signer) error {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := key.Public().(equaler); !ok || !pub.Equal(c.PublicKey) {
		return fmt.Errorf("the private key does not belong to certificate %q", c.Subject)
	}
	return nil
}
