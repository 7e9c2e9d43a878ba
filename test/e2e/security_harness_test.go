package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// This file holds what the security tests share: an app that echoes what
// reached it, an apply that insists every proxy accepted the result, a raw
// HTTP/1.1 client that sends request targets byte for byte, and an mTLS
// client holding an SVID of its own from the mesh CA.

// echoed is what an echo backend received, as it reports it in its
// response body.
type echoed struct {
	Backend string `json:"backend"`
	Method  string `json:"method"`
	Host    string `json:"host"`
	// Target is the request target exactly as it arrived (RequestURI).
	Target string              `json:"target"`
	Header map[string][]string `json:"header"`
}

// Path is the target without its query.
func (e echoed) Path() string {
	p, _, _ := strings.Cut(e.Target, "?")
	return p
}

// echoBackend is an app that answers every request with a JSON echoed and
// keeps a record of every request it got.
type echoBackend struct {
	addr, name string
	mu         sync.Mutex
	seen       []echoed
}

func startEchoBackend(t *testing.T, name string) *echoBackend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &echoBackend{addr: l.Addr().String(), name: name}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			e := echoed{Backend: name, Method: r.Method, Host: r.Host, Target: r.RequestURI, Header: r.Header.Clone()}
			b.mu.Lock()
			b.seen = append(b.seen, e)
			b.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Backend", name)
			json.NewEncoder(w).Encode(e)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return b
}

// received returns a copy of what the backend got so far.
func (b *echoBackend) received() []echoed {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]echoed(nil), b.seen...)
}

// decodeEcho reads an echo backend's answer; ok is false when the body is
// not one (a local reply of a proxy).
func decodeEcho(body string) (echoed, bool) {
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Backend == "" {
		return echoed{}, false
	}
	return e, true
}

// applyAccepted applies YAML and fails the test unless every connected
// proxy ACKed every xDS type at the resulting version or later, and none
// ever NACKed anything: a NACKed policy leaves the old one serving, and the
// test would silently judge the old configuration.
func (cp *controlPlane) applyAccepted(t *testing.T, yaml string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cp.api.Apply(ctx, []byte(yaml))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	cp.waitAccepted(t, resp.Revision)
}

// deleteAccepted deletes one resource, as applyAccepted applies.
func (cp *controlPlane) deleteAccepted(t *testing.T, kind, namespace, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cp.api.Delete(ctx, kind, namespace, name)
	if err != nil {
		t.Fatalf("delete %s %s/%s: %v", kind, namespace, name, err)
	}
	rev := resp.Revision
	if rev == 0 {
		// The API does not say which revision a delete made (see
		// TestDeleteAnswersWithItsRevision): write something that
		// changes no proxy's configuration and wait for that, which
		// comes after the delete.
		rev = cp.fence(t)
	}
	cp.waitAccepted(t, rev)
}

// fence writes a resource that applies to no workload and returns its
// revision: once proxies have it, they have every change before it.
func (cp *controlPlane) fence(t *testing.T) int64 {
	t.Helper()
	cp.mu.Lock()
	cp.fences++
	n := cp.fences
	cp.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cp.api.Apply(ctx, []byte(fmt.Sprintf(`
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: fence, namespace: e2e-fence, labels: {seq: "%d"}}
spec: {}
`, n)))
	if err != nil || resp.Revision == 0 {
		t.Fatalf("apply the fence: revision %d, %v", resp.Revision, err)
	}
	return resp.Revision
}

// waitAccepted waits until every proxy has answered revision rev and
// fails the test if any answer was a NACK.
func (cp *controlPlane) waitAccepted(t *testing.T, rev int64) {
	t.Helper()
	cp.waitAnswered(t, rev)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	proxies, err := cp.api.Proxies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range proxies {
		for typ, ts := range p.XDS {
			if ts.NackVersion != "" || ts.NackMessage != "" {
				t.Fatalf("%s NACKed %s version %s: %s", p.ID, typ, ts.NackVersion, ts.NackMessage)
			}
		}
		for _, typ := range []string{"CDS", "EDS", "LDS", "RDS"} {
			if v, _ := strconv.ParseInt(p.XDS[typ].Acked, 10, 64); v < rev {
				t.Fatalf("%s ACKed %s version %q, want %d or later", p.ID, typ, p.XDS[typ].Acked, rev)
			}
		}
	}
}

// rawResult is the answer to one raw request: the status and body, or the
// error that ended the exchange (refused, reset, closed without answer).
type rawResult struct {
	code int
	body string
	err  error
}

func (r rawResult) String() string {
	if r.err != nil {
		return "error " + r.err.Error()
	}
	return fmt.Sprintf("%d %q", r.code, r.body)
}

// rawExchange writes raw to a new connection to addr and reads every
// response until the connection ends (or 3s of silence).
func rawExchange(addr, raw string) ([]rawResult, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		return nil, err
	}
	br := bufio.NewReader(conn)
	var out []rawResult
	for len(out) < 4 {
		if len(out) > 0 {
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if len(out) == 0 {
				return nil, err
			}
			break
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, rawResult{code: resp.StatusCode, body: string(b), err: err})
		if resp.Close {
			break
		}
	}
	return out, nil
}

// plainClient sends requests straight to addr (a sidecar's inbound
// listener), over plaintext, one new connection per request.
func plainClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

// meshIdentity is an SVID the test holds itself, issued by the mesh CA for
// a token, as a sidecar's identity agent gets one: it lets the test be an
// mTLS peer of a sidecar's inbound listener.
type meshIdentity struct {
	ca       securityv1alpha1.IstioCertificateServiceClient
	token    string
	spiffeID string
	roots    *x509.CertPool

	mu   sync.Mutex
	cert *tls.Certificate
}

// newMeshIdentity gets a first SVID for namespace/serviceAccount from cp's
// CA.
func newMeshIdentity(t *testing.T, cp *controlPlane, namespace, serviceAccount string) *meshIdentity {
	t.Helper()
	tok, err := os.ReadFile(cp.tokenFile(t, namespace, serviceAccount))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile(cp.trustBundleFile(t))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("trust bundle holds no certificate")
	}
	id := &meshIdentity{ca: caClient(t, cp), token: strings.TrimSpace(string(tok)), roots: roots,
		spiffeID: "spiffe://cluster.local/ns/" + namespace + "/sa/" + serviceAccount}
	if err := id.renew(); err != nil {
		t.Fatalf("SVID for %s: %v", id.spiffeID, err)
	}
	return id
}

// renew replaces the SVID with a new one, with a new key.
func (id *meshIdentity) renew() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	u, _ := url.Parse(id.spiffeID)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+id.token)
	resp, err := id.ca.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
	})
	if err != nil {
		return err
	}
	cert := &tls.Certificate{PrivateKey: key}
	for _, c := range resp.GetCertChain() {
		b, _ := pem.Decode([]byte(c))
		if b == nil {
			return errors.New("certificate chain: not PEM")
		}
		cert.Certificate = append(cert.Certificate, b.Bytes)
	}
	if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
		return err
	}
	id.mu.Lock()
	id.cert = cert
	id.mu.Unlock()
	return nil
}

// renewIfHalfGone renews the SVID once half of its lifetime has passed.
func (id *meshIdentity) renewIfHalfGone() error {
	id.mu.Lock()
	leaf := id.cert.Leaf
	id.mu.Unlock()
	if time.Until(leaf.NotAfter) > leaf.NotAfter.Sub(leaf.NotBefore)/2 {
		return nil
	}
	return id.renew()
}

func (id *meshIdentity) current() *tls.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.cert
}

// client returns an HTTP client that talks mTLS to a sidecar's inbound
// listener, one new connection (and full handshake) per request, and
// accepts only a server whose SVID verifies against the trust bundle and
// names serverID. Each server leaf it accepts is passed to seen, if not
// nil.
func (id *meshIdentity) client(serverID string, seen func(*x509.Certificate)) *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: id.tlsConfig(serverID, seen), DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
}

// tlsConfig is the client TLS configuration of client: the SVID as client
// certificate, and only a server named serverID accepted.
func (id *meshIdentity) tlsConfig(serverID string, seen func(*x509.Certificate)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return id.current(), nil
		},
		// SVIDs carry no DNS name: verify the chain and the URI SAN here.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			if len(certs) == 0 {
				return errors.New("server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: id.roots, Intermediates: inter,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return err
			}
			if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != serverID {
				return fmt.Errorf("server identity %v, want %s", certs[0].URIs, serverID)
			}
			if seen != nil {
				seen(certs[0])
			}
			return nil
		},
	}
}

// stats reads a sidecar's /stats into a map.
func (s *sidecar) stats() (map[string]int64, error) {
	resp, err := http.Get("http://" + s.adminAdr + "/stats")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	m := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		m[name] = n
	}
	return m, sc.Err()
}
