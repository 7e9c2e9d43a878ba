package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// startLineEcho runs a TCP app that answers every line it reads with
// "echo: <line>", until the test ends.
func startLineEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintf(c, "echo: %s\n", sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// lineExchange connects to addr (over TLS when cfg is set), sends one
// line and returns the answer, or the error that ended the exchange: a
// denied connection is closed before any answer.
func lineExchange(addr string, cfg *tls.Config) (string, error) {
	var (
		c   net.Conn
		err error
	)
	d := &net.Dialer{Timeout: 5 * time.Second}
	if cfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "ping\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("closed before an answer: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// TestTCPWorkloadPolicies runs a TCP workload (weft-proxy --protocol tcp)
// and a client app whose sidecar declares it as an upstream, and checks
// that the inbound listener proxies connections to the app,
// that AuthorizationPolicy closes the connections it denies, and that an
// HTTP-only field makes an ALLOW rule allow nothing and a DENY rule deny
// every connection, as in Istio.
func TestTCPWorkloadPolicies(t *testing.T) {
	cp := startControlPlane(t, 10*time.Second)
	db := startSidecarWith(t, cp, sidecarOptions{service: "db", labels: "app=db", appAddr: startLineEcho(t),
		extraArgs: []string{"--protocol", "tcp"}})
	db.waitReady(t)
	const dbID = "spiffe://cluster.local/ns/default/sa/db"
	orders := newMeshIdentity(t, cp, "default", "orders").tlsConfig(dbID, nil)
	reviews := newMeshIdentity(t, cp, "default", "reviews").tlsConfig(dbID, nil)
	// An app with its own sidecar reaches db through a local upstream
	// listener; the sidecar brings the mTLS (as sa/orders).
	upstream := freeAddr(t)
	ordersSidecar := startSidecarWith(t, cp, sidecarOptions{service: "orders", labels: "app=orders", appAddr: startLineEcho(t),
		extraArgs: []string{"--upstream", "db:9080=" + upstream}})
	ordersSidecar.waitReady(t)

	type caller struct {
		name, addr string
		cfg        *tls.Config
	}
	callers := []caller{
		{"orders (mTLS)", db.inboundAddr, orders},
		{"reviews (mTLS)", db.inboundAddr, reviews},
		{"plaintext", db.inboundAddr, nil},
		{"orders' app through its sidecar", upstream, nil},
	}
	expect := func(t *testing.T, step string, want map[string]bool) {
		t.Helper()
		for _, c := range callers {
			got, err := lineExchange(c.addr, c.cfg)
			switch {
			case want[c.name] && got != "echo: ping":
				t.Errorf("%s: %s got %q, %v; want the app's echo", step, c.name, got, err)
			case !want[c.name] && err == nil:
				t.Errorf("%s: %s got %q; want the connection closed", step, c.name, got)
			}
		}
	}

	all := map[string]bool{"orders (mTLS)": true, "reviews (mTLS)": true, "plaintext": true, "orders' app through its sidecar": true}
	expect(t, "no policy (PERMISSIVE)", all)

	cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-from-orders, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/orders]}}]
`)
	ordersOnly := map[string]bool{"orders (mTLS)": true, "orders' app through its sidecar": true}
	expect(t, "ALLOW orders", ordersOnly)

	// A rule on methods cannot match a connection: it is dropped, and
	// allows nobody else.
	cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-gets, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  action: ALLOW
  rules:
  - to: [{operation: {methods: [GET]}}]
`)
	expect(t, "ALLOW orders, ALLOW GET (HTTP-only)", ordersOnly)

	// A DENY rule with an HTTP-only field denies more, never less: every
	// connection from the namespace, orders too.
	cp.applyAccepted(t, `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db-no-admin, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules:
  - from: [{source: {namespaces: [default]}}]
    to: [{operation: {paths: [/admin]}}]
`)
	expect(t, "DENY /admin (HTTP-only) from default", map[string]bool{})

	stats, err := db.stats()
	if err != nil {
		t.Fatal(err)
	}
	if stats["tcp.inbound.connections_denied"] == 0 || stats["tcp.inbound.connections_proxied"] == 0 {
		t.Errorf("stats: proxied %d, denied %d; want both counted", stats["tcp.inbound.connections_proxied"], stats["tcp.inbound.connections_denied"])
	}
	if stats, err = ordersSidecar.stats(); err != nil || stats["tcp.outbound.connections_proxied"] == 0 {
		t.Errorf("orders sidecar: tcp.outbound.connections_proxied %d (%v); want its connections counted", stats["tcp.outbound.connections_proxied"], err)
	}
}
