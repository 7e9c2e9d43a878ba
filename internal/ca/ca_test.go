package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/store"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedOptions{Dir: dir, NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// sharedStore is one embedded etcd for the tests that need no restart.
var sharedStore struct {
	once sync.Once
	st   *store.Store
	err  error
}

func testStore(t *testing.T) *store.Store {
	t.Helper()
	sharedStore.once.Do(func() {
		dir, err := os.MkdirTemp("", "weft-ca-test-")
		if err != nil {
			sharedStore.err = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		sharedStore.st, sharedStore.err = store.OpenEmbedded(ctx, store.EmbeddedOptions{Dir: dir, NoFsync: true})
	})
	if sharedStore.err != nil {
		t.Fatal(sharedStore.err)
	}
	return sharedStore.st
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedStore.st != nil {
		sharedStore.st.Close()
	}
	os.Exit(code)
}

func openCA(t *testing.T, st *store.Store, opts Options) *Authority {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := Open(ctx, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testCA is an authority with its own root in a fresh part of the shared
// store (a fresh trust domain keeps tests apart).
func testCA(t *testing.T, opts Options) *Authority {
	t.Helper()
	st := testStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Each test wants its own root: clear the CA's keys first.
	if _, err := st.Commit(ctx, []store.Write{{Key: rootCertKey, Delete: true}, {Key: rootKeyKey, Delete: true}, {Key: tokenKeyKey, Delete: true}}); err != nil {
		t.Fatal(err)
	}
	return openCA(t, st, opts)
}

func csrFor(t *testing.T, key crypto.Signer, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var orders = Identity{TrustDomain: "cluster.local", Namespace: "default", ServiceAccount: "orders"}

func verifyLeaf(t *testing.T, a *Authority, svid *SVID) {
	t.Helper()
	inter := x509.NewCertPool()
	for _, p := range svid.ChainPEM[1:] {
		c, err := parseCert([]byte(p))
		if err != nil {
			t.Fatal(err)
		}
		inter.AddCert(c)
	}
	if _, err := svid.Leaf.Verify(x509.VerifyOptions{Roots: a.Roots(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued SVID does not verify against the trust bundle: %v", err)
	}
}

func TestRootIsCreatedOnceAndKeptAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	a := openCA(t, st, Options{})
	tok, _, err := a.IssueToken(orders, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	root := a.roots[0]
	if !root.IsCA || root.NotAfter.Sub(root.NotBefore) < 9*365*24*time.Hour {
		t.Fatalf("root: CA %v, validity %s; want a CA valid for 10 years", root.IsCA, root.NotAfter.Sub(root.NotBefore))
	}
	if _, ok := root.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("root key is %T, want ECDSA", root.PublicKey)
	}
	if td := trustDomainOf(root); td != "cluster.local" {
		t.Fatalf("root trust domain %q, want cluster.local", td)
	}
	st.Close()

	st = openStore(t, dir)
	defer st.Close()
	b := openCA(t, st, Options{})
	if !bytes.Equal(a.TrustBundlePEM(), b.TrustBundlePEM()) {
		t.Fatal("the root changed across a restart")
	}
	if id, err := b.VerifyToken(tok); err != nil || id != orders {
		t.Fatalf("a token issued before the restart: %v, %v; want it valid for %s", id, err, orders)
	}

	t.Run("a restart with another trust domain is refused", func(t *testing.T) {
		_, err := Open(context.Background(), st, Options{TrustDomain: "example.org"})
		if err == nil || !strings.Contains(err.Error(), `trust domain "cluster.local", not "example.org"`) {
			t.Fatalf("got %v, want a trust domain mismatch", err)
		}
	})
}

func TestReplicasStartingTogetherAgreeOnOneRoot(t *testing.T) {
	st := testStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := st.Commit(ctx, []store.Write{{Key: rootCertKey, Delete: true}, {Key: rootKeyKey, Delete: true}, {Key: tokenKeyKey, Delete: true}}); err != nil {
		t.Fatal(err)
	}
	const n = 4
	cas := make([]*Authority, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { cas[i], errs[i] = Open(ctx, st, Options{}) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(cas[i].TrustBundlePEM(), cas[0].TrustBundlePEM()) || cas[i].tokenKID != cas[0].tokenKID {
			t.Fatalf("replica %d has another root or token key than replica 0", i)
		}
	}
}

func TestSignCSR(t *testing.T) {
	clock := newClock()
	a := testCA(t, Options{WorkloadCertTTL: time.Hour, Now: clock.Now})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dnsCSR := func() []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			URIs: []*url.URL{orders.URL()}, DNSNames: []string{"weft-control-plane"},
		}, ecKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}

	for _, tt := range []struct {
		name    string
		csr     []byte
		ttl     time.Duration
		wantErr error
		wantTTL time.Duration
	}{
		{"an ECDSA CSR for the caller's identity is signed", csrFor(t, ecKey(t), orders.SpiffeID()), 0, nil, time.Hour},
		{"an RSA CSR is signed too", csrFor(t, rsaKey, orders.SpiffeID()), 0, nil, time.Hour},
		{"a shorter requested lifetime is honoured", csrFor(t, ecKey(t), orders.SpiffeID()), 10 * time.Minute, nil, 10 * time.Minute},
		{"a longer requested lifetime is clamped to the TTL", csrFor(t, ecKey(t), orders.SpiffeID()), 48 * time.Hour, nil, time.Hour},
		{"a lifetime under a minute is raised to one", csrFor(t, ecKey(t), orders.SpiffeID()), time.Second, nil, time.Minute},
		{"a CSR for another service account is refused", csrFor(t, ecKey(t), "spiffe://cluster.local/ns/default/sa/payments"), 0, ErrWrongIdentity, 0},
		{"a CSR for another trust domain is refused", csrFor(t, ecKey(t), "spiffe://evil.org/ns/default/sa/orders"), 0, ErrWrongIdentity, 0},
		{"a CSR with two URI SANs is refused", csrFor(t, ecKey(t), orders.SpiffeID(), "spiffe://cluster.local/ns/default/sa/payments"), 0, ErrWrongIdentity, 0},
		{"a CSR without a URI SAN is refused", csrFor(t, ecKey(t)), 0, ErrWrongIdentity, 0},
		{"a CSR asking for a DNS name as well is refused", dnsCSR(), 0, ErrBadCSR, 0},
		{"an Ed25519 key is refused", csrFor(t, edKey, orders.SpiffeID()), 0, ErrBadCSR, 0},
		{"a 1024-bit RSA key is refused", csrFor(t, smallRSA, orders.SpiffeID()), 0, ErrBadCSR, 0},
		{"garbage is refused", []byte("not a csr"), 0, ErrBadCSR, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			svid, err := a.SignCSR(tt.csr, orders, tt.ttl)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			leaf := svid.Leaf
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != orders.SpiffeID() || len(leaf.DNSNames)+len(leaf.IPAddresses) > 0 {
				t.Fatalf("SANs: URIs %v DNS %v IPs %v; want only %s", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, orders.SpiffeID())
			}
			// Certificates carry whole seconds.
			if got := leaf.NotAfter.Sub(clock.Now()); got > tt.wantTTL || got <= tt.wantTTL-time.Second {
				t.Fatalf("valid for %s from now, want %s", got, tt.wantTTL)
			}
			if leaf.IsCA || len(leaf.ExtKeyUsage) != 2 {
				t.Fatalf("IsCA %v, ExtKeyUsage %v; want a leaf for client and server auth", leaf.IsCA, leaf.ExtKeyUsage)
			}
			if len(svid.ChainPEM) != 2 {
				t.Fatalf("chain has %d certificates, want leaf and root", len(svid.ChainPEM))
			}
			verifyLeaf(t, a, svid)
		})
	}

	t.Run("an SVID never outlives the CA", func(t *testing.T) {
		c := &fakeClock{t: a.notAfter.Add(-10 * time.Minute)}
		b := *a
		b.now = c.Now
		svid, err := b.SignCSR(csrFor(t, ecKey(t), orders.SpiffeID()), orders, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !svid.Leaf.NotAfter.Equal(a.notAfter.Truncate(time.Second)) {
			t.Fatalf("not after %s, want the CA's %s", svid.Leaf.NotAfter, a.notAfter)
		}
	})
}

// operatorPKI is an operator's own root and an intermediate it signed.
type operatorPKI struct {
	rootPEM, interPEM, interKeyPEM []byte
	root                           *x509.Certificate
}

func newOperatorPKI(t *testing.T) operatorPKI {
	t.Helper()
	rootKey, interKey := ecKey(t), ecKey(t)
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Operator Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "weft intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	interDER, err := x509.CreateCertificate(rand.Reader, interTmpl, root, &interKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(interKey)
	if err != nil {
		t.Fatal(err)
	}
	return operatorPKI{
		rootPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}),
		interPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: interDER}),
		interKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		root:        root,
	}
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIntermediateFromFiles(t *testing.T) {
	pki := newOperatorPKI(t)
	other := newOperatorPKI(t)
	dir := t.TempDir()
	cert := writeFile(t, dir, "ca-cert.pem", pki.interPEM)
	key := writeFile(t, dir, "ca-key.pem", pki.interKeyPEM)
	rootOnly := writeFile(t, dir, "root.pem", pki.rootPEM)
	fullChain := writeFile(t, dir, "cert-chain.pem", append(append([]byte{}, pki.interPEM...), pki.rootPEM...))

	for _, chain := range []string{rootOnly, fullChain} {
		t.Run("the operator's root is the trust bundle with chain file "+filepath.Base(chain), func(t *testing.T) {
			a := openCA(t, testStore(t), Options{CertFile: cert, KeyFile: key, ChainFile: chain})
			if !bytes.Equal(a.TrustBundlePEM(), pki.rootPEM) {
				t.Fatalf("trust bundle:\n%s\nwant the operator's root", a.TrustBundlePEM())
			}
			svid, err := a.SignCSR(csrFor(t, ecKey(t), orders.SpiffeID()), orders, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(svid.ChainPEM) != 3 || svid.ChainPEM[1] != string(pki.interPEM) || svid.ChainPEM[2] != string(pki.rootPEM) {
				t.Fatalf("chain has %d certificates, want leaf, intermediate, root", len(svid.ChainPEM))
			}
			verifyLeaf(t, a, svid)
			if !svid.Leaf.NotAfter.Before(time.Now().Add(25 * time.Hour)) {
				t.Fatalf("leaf valid until %s, want the default 24h", svid.Leaf.NotAfter)
			}
			sc, err := a.ServingCerts([]string{"weft-control-plane"})
			if err != nil {
				t.Fatal(err)
			}
			c, _ := sc.GetCertificate(nil)
			if len(c.Certificate) != 2 {
				t.Fatalf("serving chain has %d certificates, want leaf and intermediate", len(c.Certificate))
			}
		})
	}

	for _, tt := range []struct {
		name             string
		cert, key, chain string
		want             string
	}{
		{"a key of another certificate is refused", cert, writeFile(t, dir, "other-key.pem", other.interKeyPEM), rootOnly, "does not belong"},
		{"a chain to another root is refused", cert, key, writeFile(t, dir, "other-root.pem", other.rootPEM), "does not chain"},
		{"a chain without a root is refused", cert, key, writeFile(t, dir, "inter-only.pem", pki.interPEM), "holds no certificate above"},
		{"a leaf certificate is refused as a CA", writeFile(t, dir, "leaf.pem", leafPEM(t)), key, rootOnly, "not a CA certificate"},
		{"a missing file is named", filepath.Join(dir, "nope.pem"), key, rootOnly, "--ca-cert"},
		{"only some of the flags are refused", cert, "", "", "needs all of --ca-cert, --ca-key and --ca-chain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), testStore(t), Options{CertFile: tt.cert, KeyFile: tt.key, ChainFile: tt.chain})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func leafPEM(t *testing.T) []byte {
	t.Helper()
	k := ecKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"a TTL under a minute is refused", Options{WorkloadCertTTL: 30 * time.Second}, "shorter than the minimum 1m0s"},
		{"an upper-case trust domain is refused", Options{TrustDomain: "Cluster.Local"}, "trust domain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), nil, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestServingCertsRotateAtHalfLife(t *testing.T) {
	clock := newClock()
	a := testCA(t, Options{Now: clock.Now})
	sc, err := a.ServingCerts([]string{"weft-control-plane", "localhost", "127.0.0.1", "::1", "0.0.0.0", "cp.example"})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := sc.GetCertificate(nil)
	leaf := first.Leaf
	if got := strings.Join(leaf.DNSNames, ","); got != "weft-control-plane,localhost,cp.example" {
		t.Fatalf("DNS SANs %s", got)
	}
	if len(leaf.IPAddresses) != 2 {
		t.Fatalf("IP SANs %v, want 127.0.0.1 and ::1 (not the unspecified address)", leaf.IPAddresses)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.Roots(), DNSName: "weft-control-plane", CurrentTime: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	clock.Add(servingValidity/2 - time.Minute)
	if c, _ := sc.GetCertificate(nil); c != first {
		t.Fatal("reissued before half its lifetime")
	}
	clock.Add(2 * time.Minute)
	if c, _ := sc.GetCertificate(nil); c == first {
		t.Fatal("not reissued after half its lifetime")
	}
}
