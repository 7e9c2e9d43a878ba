package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const (
	xfcc = "X-Forwarded-Client-Cert"
	// spoofedXFCC is what a client sends to pass for another workload.
	spoofedXFCC = "URI=spiffe://evil"
)

// call sends one request and returns the status, the body and, when the
// body is the echo backend's, what the app received.
func call(c *http.Client, method, target string, header http.Header) (int, string, *echoed, error) {
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		return 0, "", nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	code, body, err := do(c, req)
	if err != nil {
		return 0, "", nil, err
	}
	if e, ok := decodeEcho(body); ok {
		return code, body, &e, nil
	}
	return code, body, nil, nil
}

func do(c *http.Client, req *http.Request) (int, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// wantVerifiedXFCC checks that the app got exactly one client certificate
// header, the one the inbound proxy sets from the verified peer, and none
// of what the client sent.
func wantVerifiedXFCC(t *testing.T, e *echoed, by, uri, hash string) {
	t.Helper()
	got := e.Header[xfcc]
	if len(got) != 1 {
		t.Fatalf("the app got %d %s headers %q, want one", len(got), xfcc, got)
	}
	prefix := "By=" + by + ";Hash="
	suffix := ";URI=" + uri
	v := got[0]
	if !strings.HasPrefix(v, prefix) || !strings.HasSuffix(v, suffix) {
		t.Fatalf("the app got %s %q, want %s<hash>%s", xfcc, v, prefix, suffix)
	}
	h := strings.TrimSuffix(strings.TrimPrefix(v, prefix), suffix)
	if _, err := hex.DecodeString(h); err != nil || len(h) != 64 || strings.ToLower(h) != h {
		t.Fatalf("the app got Hash=%q, want 64 lower-case hex digits", h)
	}
	if hash != "" && h != hash {
		t.Fatalf("the app got Hash=%s, want the SHA-256 of the peer's leaf %s", h, hash)
	}
	noSpoof(t, e)
}

// noSpoof fails the test if anything the app got carries the spoofed
// identity.
func noSpoof(t *testing.T, e *echoed) {
	t.Helper()
	for k, vv := range e.Header {
		for _, v := range vv {
			if strings.Contains(v, "evil") {
				t.Fatalf("the app got the client's spoofed header %s: %q", k, v)
			}
		}
	}
}

// TestPeerAuthenticationAndTheVerifiedClientCert runs payments under each
// PeerAuthentication mode and calls it three ways: through the orders
// sidecar (mesh mTLS), as a plaintext client straight to its inbound port,
// and as an mTLS client holding an SVID of its own. Every client sends a
// spoofed x-forwarded-client-cert; the app only ever sees the one its
// proxy derived from a verified certificate.
func TestPeerAuthenticationAndTheVerifiedClientCert(t *testing.T) {
	t.Parallel()
	cp := startControlPlane(t, 10*time.Second)
	app := startEchoBackend(t, "payments")
	payments := startSidecar(t, cp, "payments", "app=payments", app.addr)
	orders := startSidecar(t, cp, "orders", "app=orders", startEchoBackend(t, "orders").addr)
	mesh := orders.client()
	tester := newMeshIdentity(t, cp, "default", "tester")
	direct := tester.client(paymentsID, nil)
	testerHash := func() string {
		h := sha256.Sum256(tester.current().Certificate[0])
		return hex.EncodeToString(h[:])
	}
	plain := plainClient()
	inbound := "http://" + payments.inboundAddr + "/"
	inboundTLS := "https://" + payments.inboundAddr + "/"
	spoof := http.Header{xfcc: {spoofedXFCC}}
	eventually(t, 10*time.Second, "orders reaches payments", func() error {
		code, body, _, err := call(mesh, "GET", "http://payments:9080/", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})

	meshAnswers := func(t *testing.T) *echoed {
		t.Helper()
		code, body, e, err := call(mesh, "GET", "http://payments:9080/", spoof)
		if err != nil || code != http.StatusOK || e == nil {
			t.Fatalf("through the orders sidecar: %d %q %v, want 200 from the app", code, body, err)
		}
		return e
	}
	plainAnswers := func(t *testing.T) *echoed {
		t.Helper()
		code, body, e, err := call(plain, "GET", inbound, spoof)
		if err != nil || code != http.StatusOK || e == nil {
			t.Fatalf("plaintext to the inbound port: %d %q %v, want 200 from the app", code, body, err)
		}
		return e
	}
	directAnswers := func(t *testing.T) *echoed {
		t.Helper()
		code, body, e, err := call(direct, "GET", inboundTLS, spoof)
		if err != nil || code != http.StatusOK || e == nil {
			t.Fatalf("mTLS as sa/tester to the inbound port: %d %q %v, want 200 from the app", code, body, err)
		}
		return e
	}
	refused := func(t *testing.T, c *http.Client, target, who string) {
		t.Helper()
		for i := 0; i < 5; i++ {
			code, body, _, err := call(c, "GET", target, spoof)
			if err == nil {
				t.Fatalf("%s, attempt %d: answered %d %q, want the connection refused", who, i, code, body)
			}
		}
	}

	t.Run("PERMISSIVE by default: a mesh call carries the verified caller, not the spoofed one", func(t *testing.T) {
		e := meshAnswers(t)
		wantVerifiedXFCC(t, e, paymentsID, ordersID, "")
	})
	t.Run("PERMISSIVE by default: plaintext is accepted and carries no client cert at all", func(t *testing.T) {
		e := plainAnswers(t)
		if v, ok := e.Header[xfcc]; ok {
			t.Fatalf("the app got %s %q on a plaintext request, want none", xfcc, v)
		}
		noSpoof(t, e)
	})
	t.Run("PERMISSIVE by default: an mTLS peer is named by the certificate it presented", func(t *testing.T) {
		e := directAnswers(t)
		wantVerifiedXFCC(t, e, paymentsID, tester.spiffeID, testerHash())
	})

	// A plaintext keep-alive connection opened under PERMISSIVE.
	keepAlive := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	if code, _, _, err := call(keepAlive, "GET", inbound, nil); err != nil || code != http.StatusOK {
		t.Fatalf("plaintext keep-alive request: %d %v", code, err)
	}
	before, err := payments.stats()
	if err != nil {
		t.Fatal(err)
	}
	cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: payments, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  mtls: {mode: STRICT}
`)
	t.Run("STRICT refuses a plaintext client", func(t *testing.T) {
		refused(t, plain, inbound, "plaintext to the inbound port")
		after, err := payments.stats()
		if err != nil {
			t.Fatal(err)
		}
		const refusedStat = "listener.inbound.connections_refused_plaintext"
		if after[refusedStat] < before[refusedStat]+5 {
			t.Fatalf("%s went from %d to %d, want 5 more", refusedStat, before[refusedStat], after[refusedStat])
		}
	})
	t.Run("STRICT ends a plaintext connection accepted under PERMISSIVE", func(t *testing.T) {
		code, body, _, err := call(keepAlive, "GET", inbound, nil)
		if err == nil {
			t.Fatalf("request on the old keep-alive connection: %d %q, want it aborted", code, body)
		}
	})
	t.Run("STRICT serves mesh mTLS with the verified caller", func(t *testing.T) {
		wantVerifiedXFCC(t, meshAnswers(t), paymentsID, ordersID, "")
		wantVerifiedXFCC(t, directAnswers(t), paymentsID, tester.spiffeID, testerHash())
	})

	cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: payments, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  mtls: {mode: DISABLE}
`)
	t.Run("DISABLE refuses mTLS, and the mesh client follows it to plaintext", func(t *testing.T) {
		refused(t, direct, inboundTLS, "mTLS to the inbound port")
		e := meshAnswers(t)
		if v, ok := e.Header[xfcc]; ok {
			t.Fatalf("the app got %s %q over a plaintext hop, want none", xfcc, v)
		}
		noSpoof(t, e)
		plainAnswers(t)
	})

	cp.deleteAccepted(t, "PeerAuthentication", "default", "payments")
	t.Run("with the policy gone PERMISSIVE is back", func(t *testing.T) {
		if e := plainAnswers(t); e.Header[xfcc] != nil {
			t.Fatalf("plaintext request got %s %q", xfcc, e.Header[xfcc])
		}
		wantVerifiedXFCC(t, meshAnswers(t), paymentsID, ordersID, "")
		wantVerifiedXFCC(t, directAnswers(t), paymentsID, tester.spiffeID, testerHash())
	})

	// Mesh-wide STRICT, and a workload that opts back into PERMISSIVE on
	// its port.
	cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
`)
	t.Run("a mesh-wide STRICT applies to payments", func(t *testing.T) {
		refused(t, plain, inbound, "plaintext to the inbound port")
		wantVerifiedXFCC(t, meshAnswers(t), paymentsID, ordersID, "")
	})
	cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: payments-legacy, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  mtls: {mode: UNSET}
  portLevelMtls:
    9080: {mode: PERMISSIVE}
`)
	t.Run("a workload's portLevelMtls overrides the mesh-wide STRICT", func(t *testing.T) {
		plainAnswers(t)
		refused(t, plainClient(), "http://"+orders.inboundAddr+"/", "plaintext to orders' inbound port (still STRICT)")
	})
}
