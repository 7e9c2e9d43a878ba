package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/weft-mesh/weft/internal/proxy/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// testCA is an in-process IstioCertificateService that signs any CSR for
// ttl, or refuses every request with refuse.
type testCA struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer
	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey
	ttl     time.Duration

	mu       sync.Mutex
	refuse   error
	requests int
	lastURI  string
	lastAuth string
}

func newTestCA(t *testing.T, ttl time.Duration) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &testCA{root: root, rootKey: key, ttl: ttl}
}

func (c *testCA) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	md, _ := metadata.FromIncomingContext(ctx)
	c.lastAuth = strings.Join(md.Get("authorization"), ",")
	if c.refuse != nil {
		return nil, c.refuse
	}
	block, _ := pem.Decode([]byte(req.GetCsr()))
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	c.lastURI = csr.URIs[0].String()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial, NotBefore: now, NotAfter: now.Add(c.ttl), URIs: csr.URIs,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}, c.root, csr.PublicKey, c.rootKey)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &securityv1alpha1.IstioCertificateResponse{CertChain: []string{
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.root.Raw})),
	}}, nil
}

func (c *testCA) set(f func(*testCA)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f(c)
}

// serve serves ca on addr until the returned stop is called.
func serve(t *testing.T, ca *testCA, addr string) (string, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	securityv1alpha1.RegisterIstioCertificateServiceServer(s, ca)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			s.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return lis.Addr().String(), stop
}

// tokenFile writes a JWT-shaped token whose subject is sub (the agent does
// not verify signatures; the control plane does).
func tokenFile(t *testing.T, sub string) string {
	t.Helper()
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tok := enc(map[string]string{"alg": "ES256"}) + "." + enc(map[string]any{"sub": sub}) + ".c2ln"
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// runAgent starts an agent for default/orders against addr.
func runAgent(t *testing.T, addr, token string) *Agent {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer{token}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond}}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAgent(AgentOptions{
		Conn: conn, TokenFile: token, Namespace: "default", ServiceAccount: "orders",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, RequestTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		conn.Close()
	})
	return a
}

// bearer sends the token file's content, as the proxy's xDS connection
// does (xdsclient.Dial; not imported here, it imports this package).
type bearer struct{ file string }

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := os.ReadFile(b.file)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + strings.TrimSpace(string(tok))}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// waitFor polls cond every 10ms for up to timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAgentObtainsACertificateAndRenewsAtHalfLife(t *testing.T) {
	const ttl = 3 * time.Second
	ca := newTestCA(t, ttl)
	addr, _ := serve(t, ca, "127.0.0.1:0")
	token := tokenFile(t, "spiffe://example.org/ns/default/sa/orders")
	a := runAgent(t, addr, token)

	waitFor(t, 5*time.Second, "first certificate", func() bool { return a.Certificate() != nil })
	first := a.Certificate()
	issued := time.Now()
	if got := first.Leaf.URIs[0].String(); got != "spiffe://example.org/ns/default/sa/orders" {
		t.Fatalf("SVID for %s, want the token's trust domain with the proxy's namespace and service account", got)
	}
	if len(first.Certificate) != 1 {
		t.Fatalf("the TLS chain has %d certificates, want the leaf only (the root is not sent)", len(first.Certificate))
	}
	ca.set(func(c *testCA) {
		if !strings.HasPrefix(c.lastAuth, "Bearer ") {
			t.Errorf("the request carried authorization %q, want the token", c.lastAuth)
		}
	})
	st := a.Status()
	if st.Serial != first.Leaf.SerialNumber.Text(16) || st.Issued != 1 || st.SpiffeID != "spiffe://example.org/ns/default/sa/orders" {
		t.Fatalf("status %+v", st)
	}
	// Certificates carry whole seconds, so the lifetime left is under ttl.
	half := st.NotAfter.Sub(st.IssuedAt) / 2
	if d := st.NextRenewal.Sub(st.IssuedAt); d > half || d < half-half/10-time.Millisecond {
		t.Fatalf("next renewal %s after issue, want half the remaining lifetime (%s) less up to 5%% of it", d, half)
	}

	waitFor(t, 5*time.Second, "a renewed certificate", func() bool { return a.Certificate() != first })
	renewedAfter := time.Since(issued)
	if renewedAfter < half-half/10-50*time.Millisecond {
		t.Fatalf("renewed %s after issue, before half the lifetime", renewedAfter)
	}
	second := a.Certificate()
	if second.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(first.Leaf.PublicKey) {
		t.Fatal("the renewed certificate reuses the old key; want a fresh key per certificate")
	}
}

func TestAgentKeepsItsCertificateWhileTheCAIsAway(t *testing.T) {
	const ttl = 2 * time.Second
	ca := newTestCA(t, ttl)
	addr, stop := serve(t, ca, "127.0.0.1:0")
	a := runAgent(t, addr, tokenFile(t, "spiffe://cluster.local/ns/default/sa/orders"))
	waitFor(t, 5*time.Second, "first certificate", func() bool { return a.Certificate() != nil })
	first := a.Certificate()

	stop()
	// Past the renewal time and past expiry: the agent keeps what it has.
	waitFor(t, 5*time.Second, "a failed renewal", func() bool { return a.Status().LastError != "" })
	time.Sleep(ttl)
	if a.Certificate() != first {
		t.Fatal("the agent dropped or replaced its certificate while the CA was away")
	}

	// The CA comes back on the same address: the agent renews.
	serve(t, ca, addr)
	waitFor(t, 10*time.Second, "renewal after the CA is back", func() bool { return a.Certificate() != first })
	if st := a.Status(); st.LastError != "" || st.Issued < 2 {
		t.Fatalf("status after renewal %+v, want the error cleared", st)
	}
}

func TestAgentReportsARefusal(t *testing.T) {
	ca := newTestCA(t, time.Minute)
	ca.refuse = status.Error(codes.PermissionDenied, "the CSR asks for URI SAN [spiffe://cluster.local/ns/default/sa/orders] but the token proves spiffe://cluster.local/ns/default/sa/payments")
	addr, _ := serve(t, ca, "127.0.0.1:0")
	a := runAgent(t, addr, tokenFile(t, "spiffe://cluster.local/ns/default/sa/payments"))
	waitFor(t, 5*time.Second, "a refusal in the status", func() bool { return strings.Contains(a.Status().LastError, "PermissionDenied") })
	if a.Certificate() != nil {
		t.Fatal("a certificate without the CA's consent")
	}
	var n int
	ca.set(func(c *testCA) { n = c.requests })
	waitFor(t, 5*time.Second, "retries", func() bool {
		var m int
		ca.set(func(c *testCA) { m = c.requests })
		return m > n
	})
}

func TestAgentChecksTheAnswer(t *testing.T) {
	ca := newTestCA(t, time.Minute)
	other := newTestCA(t, time.Minute)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wrongKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafFor := func(signer *testCA, pub any, uri string) string {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		if uri != "" {
			p, _ := url.Parse(uri)
			tmpl.URIs = append(tmpl.URIs, p)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.root, pub, signer.rootKey)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	rootPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.root.Raw}))
	const id = "spiffe://cluster.local/ns/default/sa/orders"
	for _, tt := range []struct {
		name  string
		chain []string
		want  string
	}{
		{"a good chain is taken", []string{leafFor(ca, &key.PublicKey, id), rootPEM}, ""},
		{"a certificate for another key is refused", []string{leafFor(ca, &wrongKey.PublicKey, id), rootPEM}, "not for the key"},
		{"a certificate for another identity is refused", []string{leafFor(ca, &key.PublicKey, "spiffe://cluster.local/ns/default/sa/payments"), rootPEM}, "want " + id},
		{"a chain that does not verify is refused", []string{leafFor(other, &key.PublicKey, id), rootPEM}, "does not verify"},
		{"a leaf alone is refused", []string{leafFor(ca, &key.PublicKey, id)}, "at least the root"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := certificate(tt.chain, key, id)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
