package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// Defaults of AgentOptions.
const (
	DefaultMinBackoff     = time.Second
	DefaultMaxBackoff     = 30 * time.Second
	DefaultRequestTimeout = 10 * time.Second
)

// AgentOptions configure an Agent.
type AgentOptions struct {
	// Conn reaches the control plane's CA (IstioCertificateService). It is
	// the proxy's xDS connection, which carries the token on every call.
	Conn grpc.ClientConnInterface
	// TokenFile is the proxy's token (weft token create). The agent reads
	// the trust domain from its subject, spiffe://<trust-domain>/..., again
	// before every request.
	TokenFile string
	// Namespace and ServiceAccount are the workload's; the SVID's SPIFFE ID
	// is spiffe://<trust-domain>/ns/<Namespace>/sa/<ServiceAccount>.
	// ServiceAccount defaults to "default".
	Namespace, ServiceAccount string
	// MinBackoff and MaxBackoff bound the jittered exponential delay
	// between failed requests; zero means 1s and 30s.
	MinBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one certificate request; zero means 10s.
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// Agent is the proxy's identity agent. It makes a fresh ECDSA P-256 key
// for every certificate (the key stays in memory, is never written and
// never sent), asks the control plane's CA to sign a CSR for the
// workload's SPIFFE ID, and renews at half the certificate's remaining
// lifetime. If the CA cannot be reached it keeps the current certificate
// and retries with jittered backoff. Create it with NewAgent, run it with
// Run; Certificate and Status may be called from any goroutine.
type Agent struct {
	opts   AgentOptions
	log    *slog.Logger
	client securityv1alpha1.IstioCertificateServiceClient

	cert atomic.Pointer[tls.Certificate]

	mu     sync.Mutex
	status Status
}

// Status is the agent's state for /config_dump.
type Status struct {
	// SpiffeID is the identity the agent asks for; empty until the token
	// has been read.
	SpiffeID string `json:"spiffe_id"`
	// Serial (hex), NotBefore and NotAfter describe the current
	// certificate; empty before the first one.
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// IssuedAt is when the current certificate arrived; NextRenewal when
	// the agent will ask for the next one.
	IssuedAt    time.Time `json:"issued_at,omitzero"`
	NextRenewal time.Time `json:"next_renewal,omitzero"`
	// Issued counts certificates received since start.
	Issued      int       `json:"issued"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// NewAgent validates opts and returns an agent without a certificate yet.
func NewAgent(opts AgentOptions) (*Agent, error) {
	if opts.Conn == nil {
		return nil, errors.New("identity agent: no control plane connection")
	}
	if opts.TokenFile == "" {
		return nil, errors.New("identity agent: no token file")
	}
	if opts.Namespace == "" {
		return nil, errors.New("identity agent: no namespace")
	}
	if opts.ServiceAccount == "" {
		opts.ServiceAccount = "default"
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Agent{opts: opts, log: opts.Logger, client: securityv1alpha1.NewIstioCertificateServiceClient(opts.Conn)}, nil
}

// Certificate returns the current SVID and its key, or nil before the
// first one. It never blocks.
func (a *Agent) Certificate() *tls.Certificate { return a.cert.Load() }

// Status returns a copy of the agent's state.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Run obtains the first certificate and keeps renewing until ctx ends.
// It returns nil when ctx ends. Run must be called at most once.
func (a *Agent) Run(ctx context.Context) error {
	failures := 0
	var renewAt time.Time // zero: ask now
	for {
		if wait := time.Until(renewAt); wait > 0 {
			if !sleep(ctx, wait) {
				return nil
			}
		}
		next, err := a.renew(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			failures = 0
			renewAt = next
			continue
		}
		delay := backoffDelay(a.opts.MinBackoff, a.opts.MaxBackoff, failures)
		failures++
		now := time.Now()
		a.mu.Lock()
		a.status.LastError, a.status.LastErrorAt = err.Error(), now
		a.status.NextRenewal = now.Add(delay)
		a.mu.Unlock()
		if cur := a.cert.Load(); cur != nil {
			a.log.Warn("certificate renewal failed; serving with the current certificate", "err", err, "retry_in", delay,
				"expires_in", cur.Leaf.NotAfter.Sub(now).Round(time.Second))
		} else {
			a.log.Warn("could not obtain a workload certificate yet", "err", err, "retry_in", delay)
		}
		if !sleep(ctx, delay) {
			return nil
		}
	}
}

// renew obtains and installs a new certificate and returns when to renew
// it.
func (a *Agent) renew(ctx context.Context) (time.Time, error) {
	id, err := a.spiffeID()
	if err != nil {
		return time.Time{}, err
	}
	a.mu.Lock()
	a.status.SpiffeID = id.String()
	a.mu.Unlock()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return time.Time{}, fmt.Errorf("generating a key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		return time.Time{}, fmt.Errorf("making a CSR: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	resp, err := a.client.CreateCertificate(rctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("requesting a certificate for %s: %w", id, err)
	}
	cert, err := certificate(resp.GetCertChain(), key, id.String())
	if err != nil {
		return time.Time{}, fmt.Errorf("certificate from the control plane for %s: %w", id, err)
	}
	received := time.Now()
	leaf := cert.Leaf
	life := leaf.NotAfter.Sub(received)
	// Half the remaining lifetime, less up to 5% so that proxies started
	// together do not all come back at once.
	renewAt := received.Add(life/2 - time.Duration(mathrand.Int64N(int64(life/20)+1)))
	a.cert.Store(cert)
	a.mu.Lock()
	a.status.Serial = leaf.SerialNumber.Text(16)
	a.status.NotBefore, a.status.NotAfter = leaf.NotBefore, leaf.NotAfter
	a.status.IssuedAt, a.status.NextRenewal = received, renewAt
	a.status.Issued++
	a.status.LastError, a.status.LastErrorAt = "", time.Time{}
	a.mu.Unlock()
	a.log.Info("workload certificate issued", "spiffe_id", id.String(), "serial", a.status.Serial,
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "renew_in", renewAt.Sub(received).Round(time.Second))
	return renewAt, nil
}

// spiffeID is the identity to ask for: the token's trust domain, the
// workload's namespace and service account.
func (a *Agent) spiffeID() (*url.URL, error) {
	sub, err := tokenSubject(a.opts.TokenFile)
	if err != nil {
		return nil, err
	}
	rest, ok := strings.CutPrefix(sub, "spiffe://")
	td, _, _ := strings.Cut(rest, "/")
	if !ok || td == "" {
		return nil, fmt.Errorf("token file %s: subject %q is not a SPIFFE ID", a.opts.TokenFile, sub)
	}
	id := &url.URL{Scheme: "spiffe", Host: td, Path: "/ns/" + a.opts.Namespace + "/sa/" + a.opts.ServiceAccount}
	if sub != id.String() {
		// The CA will refuse; say why here too.
		a.log.Warn("the token is for another identity than this proxy's; the control plane will refuse it",
			"token_identity", sub, "proxy_identity", id.String())
	}
	return id, nil
}

// tokenSubject reads the "sub" claim of the JWT in file, without
// verifying it: the control plane does that.
func tokenSubject(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading the token file: %w", err)
	}
	parts := strings.Split(strings.TrimSpace(string(b)), ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("token file %s does not hold a JWT (weft token create prints one)", file)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("token file %s: payload: %w", file, err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("token file %s: payload: %w", file, err)
	}
	return claims.Sub, nil
}

// certificate checks an answer's chain (leaf first, root last) against the
// key and identity asked for, and builds the TLS certificate: the leaf and
// the intermediates, without the root.
func certificate(chainPEM []string, key *ecdsa.PrivateKey, spiffeID string) (*tls.Certificate, error) {
	var certs []*x509.Certificate
	for i, p := range chainPEM {
		block, _ := pem.Decode([]byte(p))
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("cert_chain[%d] is not a PEM certificate", i)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cert_chain[%d]: %w", i, err)
		}
		certs = append(certs, c)
	}
	if len(certs) < 2 {
		return nil, fmt.Errorf("cert_chain has %d certificates, want the leaf and at least the root", len(certs))
	}
	leaf := certs[0]
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("the certificate is not for the key the CSR carried")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != spiffeID {
		return nil, fmt.Errorf("the certificate is for %v, want %s", leaf.URIs, spiffeID)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(certs[len(certs)-1])
	for _, c := range certs[1 : len(certs)-1] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("the chain does not verify: %w", err)
	}
	out := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range certs[:len(certs)-1] {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, nil
}

// backoffDelay is min*2^failures capped at max, with equal jitter.
func backoffDelay(minDelay, maxDelay time.Duration, failures int) time.Duration {
	d := minDelay
	for i := 0; i < failures && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + mathrand.N(d/2+1)
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var _ Source = (*Agent)(nil)
