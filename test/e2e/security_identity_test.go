package e2e

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
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// proxyDump is the part of a weft-proxy's /config_dump these tests read.
type proxyDump struct {
	Ready bool `json:"ready"`
	XDS   struct {
		LastError string `json:"last_stream_error"`
	} `json:"xds"`
	Identity *struct {
		SpiffeID  string    `json:"spiffe_id"`
		Serial    string    `json:"serial"`
		NotAfter  time.Time `json:"not_after"`
		Issued    int       `json:"issued"`
		LastError string    `json:"last_error"`
	} `json:"identity"`
}

func (s *sidecar) dump(t *testing.T) proxyDump {
	t.Helper()
	d, err := s.tryDump()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (s *sidecar) tryDump() (proxyDump, error) {
	var d proxyDump
	resp, err := http.Get("http://" + s.adminAdr + "/config_dump")
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&d)
	return d, err
}

// caClient is a gRPC client of cp's CA over TLS, verified with the trust
// bundle, as a proxy dials it.
func caClient(t *testing.T, cp *controlPlane) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	pem, err := os.ReadFile(cp.trustBundleFile(t))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	conn, err := grpc.NewClient(cp.xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "weft-control-plane",
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return securityv1alpha1.NewIstioCertificateServiceClient(conn)
}

// requestSVID sends a CSR for spiffeID with the token in tokenFile.
func requestSVID(t *testing.T, c securityv1alpha1.IstioCertificateServiceClient, tokenFile, spiffeID string) (*securityv1alpha1.IstioCertificateResponse, error) {
	t.Helper()
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(spiffeID)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(string(tok)))
	return c.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})),
	})
}

// forge rewrites the token's subject to spiffeID and keeps its signature,
// as someone holding one token might try for another identity.
func forge(t *testing.T, tokenFile, spiffeID string) string {
	t.Helper()
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSpace(string(b)), ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["sub"] = spiffeID
	payload, _ = json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	f := filepath.Join(t.TempDir(), "forged.token")
	if err := os.WriteFile(f, []byte(strings.Join(parts, ".")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

const (
	ordersID   = "spiffe://cluster.local/ns/default/sa/orders"
	paymentsID = "spiffe://cluster.local/ns/default/sa/payments"
)

// TestATokenProvesOneIdentityOnly: a token for sa/orders cannot obtain an
// SVID for sa/payments, and expired or forged tokens are refused, each with
// an error that says why.
func TestATokenProvesOneIdentityOnly(t *testing.T) {
	t.Parallel()
	cp := startControlPlane(t, 10*time.Second)
	app := startBackend(t, "payments")
	orders := cp.tokenFile(t, "default", "orders")
	ca := caClient(t, cp)

	// Made now, expired by the time it is used below (the control plane
	// allows 5s of clock skew).
	out, stderr, err := cp.weftOut(t, "", []string{"WEFT_TOKEN_FILE=" + cp.adminTokenFile()},
		"token", "create", "--namespace", "default", "--service-account", "orders", "--ttl", "1s")
	if err != nil {
		t.Fatalf("weft token create --ttl 1s: %v\n%s", err, stderr)
	}
	expired := filepath.Join(t.TempDir(), "expired.token")
	if err := os.WriteFile(expired, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	expiresAt := time.Now().Add(time.Second)

	t.Run("the token's own identity gets an SVID from the CA", func(t *testing.T) {
		resp, err := requestSVID(t, ca, orders, ordersID)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetCertChain()); n != 2 {
			t.Fatalf("chain of %d certificates, want leaf and root", n)
		}
	})

	t.Run("a token for sa/orders cannot obtain an SVID for sa/payments", func(t *testing.T) {
		_, err := requestSVID(t, ca, orders, paymentsID)
		st := status.Convert(err)
		want := "the CSR asks for URI SAN [" + paymentsID + "] but the token proves " + ordersID
		if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), want) {
			t.Fatalf("got %v: %s; want PermissionDenied: %s", st.Code(), st.Message(), want)
		}
	})

	t.Run("a proxy for sa/payments with the sa/orders token never gets config or a certificate", func(t *testing.T) {
		s := startSidecarWith(t, cp, sidecarOptions{service: "payments", appAddr: app.addr, serviceAccount: "payments", tokenFile: orders})
		eventually(t, 20*time.Second, "both refusals reported", func() error {
			d, err := s.tryDump()
			if err != nil {
				return err
			}
			if d.Identity == nil || !strings.Contains(d.Identity.LastError, "PermissionDenied") || !strings.Contains(d.Identity.LastError, "the token proves "+ordersID) {
				return fmt.Errorf("identity status %+v", d.Identity)
			}
			if !strings.Contains(d.XDS.LastError, "PermissionDenied") || !strings.Contains(d.XDS.LastError, `service account "payments"`) {
				return fmt.Errorf("xDS error %q", d.XDS.LastError)
			}
			return nil
		})
		d := s.dump(t)
		if d.Ready || d.Identity.Serial != "" {
			t.Fatalf("ready %v with certificate %q, want neither", d.Ready, d.Identity.Serial)
		}
	})

	t.Run("a forged token is refused", func(t *testing.T) {
		forged := forge(t, orders, paymentsID)
		_, err := requestSVID(t, ca, forged, paymentsID)
		st := status.Convert(err)
		if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "forged") {
			t.Fatalf("got %v: %s; want Unauthenticated naming a forgery", st.Code(), st.Message())
		}
		s := startSidecarWith(t, cp, sidecarOptions{service: "payments", appAddr: app.addr, serviceAccount: "payments", tokenFile: forged})
		eventually(t, 20*time.Second, "the proxy reports the refusal", func() error {
			d, err := s.tryDump()
			if err != nil {
				return err
			}
			if !strings.Contains(d.XDS.LastError, "Unauthenticated") || !strings.Contains(d.XDS.LastError, "forged") {
				return fmt.Errorf("xDS error %q", d.XDS.LastError)
			}
			return nil
		})
	})

	t.Run("an expired token is refused", func(t *testing.T) {
		time.Sleep(time.Until(expiresAt.Add(6 * time.Second)))
		_, err := requestSVID(t, ca, expired, ordersID)
		st := status.Convert(err)
		if st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), "expired at") || !strings.Contains(st.Message(), "weft token create") {
			t.Fatalf("got %v: %s; want Unauthenticated saying it expired", st.Code(), st.Message())
		}
		s := startSidecarWith(t, cp, sidecarOptions{service: "orders", appAddr: app.addr, serviceAccount: "orders", tokenFile: expired})
		eventually(t, 20*time.Second, "the proxy reports the refusal", func() error {
			d, err := s.tryDump()
			if err != nil {
				return err
			}
			if !strings.Contains(d.XDS.LastError, "expired at") {
				return fmt.Errorf("xDS error %q", d.XDS.LastError)
			}
			return nil
		})
	})

	t.Run("the API refuses the CLI without the admin token", func(t *testing.T) {
		out, err := cp.weftEnv(t, "", []string{"WEFT_TOKEN_FILE=", "WEFT_RUNTIME_DIR=" + t.TempDir()}, "get", "workloads")
		if err == nil || !strings.Contains(out, "admin token") {
			t.Fatalf("weft get workloads without a token: %v\n%s", err, out)
		}
	})
}

// TestControlPlaneRestartKeepsTheRootAndProxiesRenew restarts the control
// plane under a proxy with one-minute certificates: the root is the same
// afterwards, and the proxy renews its certificate from the restarted CA.
func TestControlPlaneRestartKeepsTheRootAndProxiesRenew(t *testing.T) {
	t.Parallel()
	cp := startControlPlane(t, 30*time.Second, "--workload-cert-ttl", "1m")
	app := startBackend(t, "orders")
	s := startSidecar(t, cp, "orders", "", app.addr)
	first := s.dump(t).Identity
	if first == nil || first.SpiffeID != ordersID || first.Serial == "" {
		t.Fatalf("identity %+v, want a certificate for %s", first, ordersID)
	}
	if life := time.Until(first.NotAfter); life > time.Minute+time.Second {
		t.Fatalf("certificate valid for %s, want at most --workload-cert-ttl 1m", life)
	}
	rootBefore, err := os.ReadFile(cp.trustBundleFile(t))
	if err != nil {
		t.Fatal(err)
	}

	cp.stop(syscall.SIGTERM)
	cp.start(t)
	out, stderr, err := cp.weftOut(t, "", []string{"WEFT_TOKEN_FILE=" + cp.adminTokenFile()}, "ca", "root")
	if err != nil {
		t.Fatalf("weft ca root: %v\n%s", err, stderr)
	}
	if out != string(rootBefore) {
		t.Fatalf("the root changed across the restart:\nbefore %s\nafter  %s", rootBefore, out)
	}

	// Renewal comes at about half of the minute.
	eventually(t, 60*time.Second, "the proxy renews from the restarted control plane", func() error {
		d, err := s.tryDump()
		if err != nil {
			return err
		}
		if d.Identity.Serial == first.Serial || d.Identity.Issued < 2 {
			return fmt.Errorf("still serial %s (issued %d, last error %q)", d.Identity.Serial, d.Identity.Issued, d.Identity.LastError)
		}
		return nil
	})
	if d := s.dump(t); !d.Ready || d.Identity.LastError != "" {
		t.Fatalf("after renewal: ready %v, last error %q", d.Ready, d.Identity.LastError)
	}
}
