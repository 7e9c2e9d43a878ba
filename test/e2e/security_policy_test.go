package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const rbacDenied = "RBAC: access denied"

// policyMesh is payments behind a sidecar and three ways to call it: the
// orders and other sidecars (mesh mTLS as sa/orders and sa/other) and a
// plaintext client straight to its inbound port.
type policyMesh struct {
	cp                   *controlPlane
	app                  *echoBackend
	payments             *sidecar
	ordersSidecar        *sidecar
	orders, other, plain *http.Client
	inbound              string
}

func startPolicyMesh(t *testing.T, cpArgs ...string) *policyMesh {
	t.Helper()
	m := &policyMesh{cp: startControlPlane(t, 10*time.Second, cpArgs...), app: startEchoBackend(t, "payments")}
	m.payments = startSidecar(t, m.cp, "payments", "app=payments", m.app.addr)
	m.ordersSidecar = startSidecar(t, m.cp, "orders", "app=orders", startEchoBackend(t, "orders").addr)
	m.orders = m.ordersSidecar.client()
	m.other = startSidecar(t, m.cp, "other", "app=other", startEchoBackend(t, "other").addr).client()
	m.plain = plainClient()
	m.inbound = "http://" + m.payments.inboundAddr
	eventually(t, 10*time.Second, "orders and other reach payments", func() error {
		for _, c := range []*http.Client{m.orders, m.other} {
			if code, body, _, err := call(c, "GET", "http://payments:9080/", nil); err != nil || code != http.StatusOK {
				return fmt.Errorf("%d %q %v", code, body, err)
			}
		}
		return nil
	})
	return m
}

// verdict is one request and the answer it must get.
type verdict struct {
	who    string
	c      *http.Client
	method string
	target string
	code   int
}

// check sends each request and compares the answer: 200 must come from
// the app with the path asked for, 403 from the payments proxy with RBAC's
// body, and the app must not have seen a request that was refused.
func check(t *testing.T, m *policyMesh, vs []verdict) {
	t.Helper()
	for _, v := range vs {
		before := len(m.app.received())
		code, body, e, err := call(v.c, v.method, v.target, nil)
		if err != nil {
			t.Errorf("%s %s %s: %v", v.who, v.method, v.target, err)
			continue
		}
		if code != v.code {
			t.Errorf("%s %s %s: got %d %q, want %d", v.who, v.method, v.target, code, body, v.code)
			continue
		}
		switch code {
		case http.StatusOK:
			if e == nil || e.Method != v.method {
				t.Errorf("%s %s %s: 200 %q, want the app's echo of a %s", v.who, v.method, v.target, body, v.method)
			}
		case http.StatusForbidden:
			if strings.TrimSpace(body) != rbacDenied {
				t.Errorf("%s %s %s: 403 %q, want %q", v.who, v.method, v.target, body, rbacDenied)
			}
			if n := len(m.app.received()); n != before {
				t.Errorf("%s %s %s: refused, yet the app got %d requests", v.who, v.method, v.target, n-before)
			}
		}
	}
}

// TestOnlyOrdersMayCallPayments: the AuthorizationPolicy of Istio's
// documentation, with real identities from real certificates; then DENY
// over ALLOW, and namespace-wide and mesh-wide policies combined.
func TestOnlyOrdersMayCallPayments(t *testing.T) {
	t.Parallel()
	m := startPolicyMesh(t)
	tester := newMeshIdentity(t, m.cp, "default", "tester").client(paymentsID, nil)
	// The same service account name in another namespace is another
	// identity: spiffe://cluster.local/ns/prod/sa/orders.
	prod := startSidecarWith(t, m.cp, sidecarOptions{service: "orders", labels: "app=orders",
		appAddr: startEchoBackend(t, "prod-orders").addr, namespace: "prod"})
	prod.waitReady(t)
	prodOrders := prod.client()
	pay := "http://payments:9080"
	eventually(t, 10*time.Second, "prod/orders reaches payments", func() error {
		if code, body, _, err := call(prodOrders, "GET", "http://payments.default:9080/", nil); err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})

	m.cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/orders"]
`)
	t.Run("orders gets 200, another identity and plaintext get 403", func(t *testing.T) {
		check(t, m, []verdict{
			{"orders", m.orders, "GET", pay + "/", 200},
			{"orders", m.orders, "POST", pay + "/pay", 200},
			{"other", m.other, "GET", pay + "/", 403},
			{"other", m.other, "POST", pay + "/pay", 403},
			{"prod/orders", prodOrders, "GET", "http://payments.default:9080/", 403},
			{"sa/tester over mTLS", tester, "GET", "https://" + m.payments.inboundAddr + "/", 403},
			{"plaintext", m.plain, "GET", m.inbound + "/", 403},
		})
	})

	m.cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-admin, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin*"]
`)
	t.Run("DENY beats ALLOW", func(t *testing.T) {
		check(t, m, []verdict{
			{"orders", m.orders, "GET", pay + "/admin", 403},
			{"orders", m.orders, "GET", pay + "/admin/users", 403},
			{"orders", m.orders, "POST", pay + "/administrator", 403},
			{"orders", m.orders, "GET", pay + "/", 200},
			{"orders", m.orders, "GET", pay + "/pay/admin", 200},
			{"other", m.other, "GET", pay + "/admin", 403},
		})
	})

	m.cp.deleteAccepted(t, "AuthorizationPolicy", "default", "payments")
	m.cp.deleteAccepted(t, "AuthorizationPolicy", "default", "payments-admin")
	t.Run("with the policies gone everyone may call", func(t *testing.T) {
		check(t, m, []verdict{
			{"orders", m.orders, "GET", pay + "/admin", 200},
			{"other", m.other, "DELETE", pay + "/", 200},
			{"plaintext", m.plain, "GET", m.inbound + "/", 200},
		})
	})

	m.cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-delete, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to:
    - operation:
        methods: ["DELETE"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: orders-only, namespace: default}
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/orders"]
`)
	t.Run("a mesh-wide DENY and a namespace ALLOW combine", func(t *testing.T) {
		check(t, m, []verdict{
			{"orders", m.orders, "DELETE", pay + "/x", 403},
			{"orders", m.orders, "GET", pay + "/x", 200},
			{"orders", m.orders, "POST", pay + "/x", 200},
			{"other", m.other, "GET", pay + "/x", 403},
			{"other", m.other, "DELETE", pay + "/x", 403},
			{"prod/orders", prodOrders, "GET", "http://payments.default:9080/x", 403},
			{"plaintext", m.plain, "GET", m.inbound + "/x", 403},
		})
	})

	m.cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-reads, namespace: istio-system}
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/other"]
    to:
    - operation:
        methods: ["GET"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: prod}
spec:
  action: DENY
  rules: [{}]
`)
	t.Run("a mesh-wide ALLOW adds to the namespace ALLOW; another namespace's policy does nothing here", func(t *testing.T) {
		check(t, m, []verdict{
			{"other", m.other, "GET", pay + "/x", 200},
			{"other", m.other, "POST", pay + "/x", 403},
			{"orders", m.orders, "POST", pay + "/x", 200},
			{"orders", m.orders, "DELETE", pay + "/x", 403},
			{"plaintext", m.plain, "GET", m.inbound + "/x", 403},
		})
	})
}

// TestDeleteAnswersWithItsRevision: an apply answers with the store
// revision it made, so that a client can wait until every proxy has it
// (weft proxy-status, this package's apply). A delete changes the mesh
// just as much, and ApplyResponse ("answers an apply or a delete") says
// Revision is "the store revision after the change".
func TestDeleteAnswersWithItsRevision(t *testing.T) {
	t.Parallel()
	cp := startControlPlane(t, 10*time.Second)
	const doc = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: %s, namespace: default}
spec:
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/admin"]
`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	applied, err := cp.api.Apply(ctx, []byte(fmt.Sprintf(doc, "one")+"---"+fmt.Sprintf(doc, "two")))
	if err != nil || applied.Revision == 0 {
		t.Fatalf("apply: revision %d, %v", applied.Revision, err)
	}

	t.Run("DELETE /api/v1/resources/{kind}/{namespace}/{name}", func(t *testing.T) {
		resp, err := cp.api.Delete(ctx, "AuthorizationPolicy", "default", "one")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Revision <= applied.Revision {
			t.Errorf("the delete answered revision %d, want the one it made (after the apply's %d)", resp.Revision, applied.Revision)
		}
	})
	t.Run("POST /api/v1/delete", func(t *testing.T) {
		resp, err := cp.api.DeleteDocuments(ctx, []byte(fmt.Sprintf(doc, "two")))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Results) != 1 || resp.Results[0].Action != "deleted" {
			t.Fatalf("results %+v, want two deleted", resp.Results)
		}
		if resp.Revision <= applied.Revision {
			t.Errorf("the delete answered revision %d, want the one it made (after the apply's %d)", resp.Revision, applied.Revision)
		}
	})
}
