package e2e

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// trafficLog counts the requests of a load and keeps the first few
// failures for the report.
type trafficLog struct {
	total, failed, resets atomic.Int64
	mu                    sync.Mutex
	first                 []string
}

func (l *trafficLog) record(who string, code int, body string, err error) {
	l.total.Add(1)
	if err == nil && code == http.StatusOK {
		return
	}
	l.failed.Add(1)
	if err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "broken pipe")) {
		l.resets.Add(1)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.first) < 10 {
		l.first = append(l.first, fmt.Sprintf("%s %s: %d %q %v", time.Now().Format("15:04:05.000"), who, code, body, err))
	}
}

// errNotYet tells a load worker that it has nothing to send yet.
var errNotYet = errors.New("not yet")

// xfccHash is the Hash= of an x-forwarded-client-cert value.
func xfccHash(e *echoed) string {
	for _, f := range strings.Split(strings.Join(e.Header[xfcc], ";"), ";") {
		if h, ok := strings.CutPrefix(f, "Hash="); ok {
			return h
		}
	}
	return ""
}

// TestTrafficFlowsThroughCertificateRotation runs three minutes of traffic
// with one-minute certificates: the orders sidecar calls payments over its
// pooled mTLS connection, and a client with an SVID of its own opens a new
// mTLS connection to payments for every request, so that each of payments'
// certificates is presented on the wire. Once orders has renewed twice it
// starts calling ledger as well, over a connection that can only carry its
// renewed certificate. No request may fail and no connection may be reset.
func TestTrafficFlowsThroughCertificateRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("three minutes of traffic; runs without -short")
	}
	t.Parallel()
	const (
		duration   = 3 * time.Minute
		requestCap = 100000
	)
	cp := startControlPlane(t, 30*time.Second, "--workload-cert-ttl", "1m")
	payApp, ledgerApp := startEchoBackend(t, "payments"), startEchoBackend(t, "ledger")
	payments := startSidecar(t, cp, "payments", "app=payments", payApp.addr)
	ledger := startSidecar(t, cp, "ledger", "app=ledger", ledgerApp.addr)
	orders := startSidecar(t, cp, "orders", "app=orders", startEchoBackend(t, "orders").addr)
	mesh := orders.client()
	tester := newMeshIdentity(t, cp, "default", "tester")
	var serialsMu sync.Mutex
	serials := map[string]bool{} // payments' certificates seen by new connections
	direct := tester.client(paymentsID, func(c *x509.Certificate) {
		serialsMu.Lock()
		serials[c.SerialNumber.Text(16)] = true
		serialsMu.Unlock()
	})
	// Orders must not call ledger before its renewals: its first call opens
	// the connection, and a pooled connection keeps the certificate it was
	// opened with.
	eventually(t, 10*time.Second, "orders reaches payments", func() error {
		if code, body, _, err := call(mesh, "GET", "http://payments:9080/", nil); err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	_, _, first, err := call(mesh, "GET", "http://payments:9080/", nil)
	if err != nil || first == nil {
		t.Fatalf("first request: %v", err)
	}
	firstHash := xfccHash(first)
	statsBefore := map[*sidecar]map[string]int64{}
	for _, s := range []*sidecar{payments, ledger, orders} {
		if statsBefore[s], err = s.stats(); err != nil {
			t.Fatal(err)
		}
	}

	var traffic trafficLog
	var ledgerOn atomic.Bool
	ledgerHashes := map[string]bool{}
	var ledgerMu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	worker := func(who string, pause time.Duration, send func() (int, string, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for traffic.total.Load() < requestCap {
				select {
				case <-stop:
					return
				case <-time.After(pause):
				}
				code, body, err := send()
				if err == errNotYet {
					continue
				}
				traffic.record(who, code, body, err)
			}
		}()
	}
	for i := 0; i < 3; i++ {
		worker("orders→payments", 10*time.Millisecond, func() (int, string, error) {
			code, body, _, err := call(mesh, "GET", "http://payments:9080/pay", nil)
			return code, body, err
		})
	}
	worker("orders→ledger", 10*time.Millisecond, func() (int, string, error) {
		if !ledgerOn.Load() {
			return 0, "", errNotYet
		}
		code, body, e, err := call(mesh, "GET", "http://ledger:9080/entry", nil)
		if e != nil {
			ledgerMu.Lock()
			ledgerHashes[xfccHash(e)] = true
			ledgerMu.Unlock()
		}
		return code, body, err
	})
	worker("tester→payments, a new connection each", 20*time.Millisecond, func() (int, string, error) {
		if err := tester.renewIfHalfGone(); err != nil {
			return 0, "", fmt.Errorf("renewing the tester's own SVID: %w", err)
		}
		code, body, _, err := call(direct, "GET", "https://"+payments.inboundAddr+"/direct", nil)
		return code, body, err
	})

	// Watch the identities while the traffic runs.
	start := time.Now()
	issued := map[*sidecar]int{}
	ordersRenewedTwiceAt := time.Duration(0)
	for time.Since(start) < duration && traffic.total.Load() < requestCap {
		time.Sleep(time.Second)
		for _, s := range []*sidecar{payments, ledger, orders} {
			d, err := s.tryDump()
			if err != nil || d.Identity == nil {
				t.Errorf("config dump of %s: %v", s.service, err)
				continue
			}
			if d.Identity.LastError != "" {
				t.Errorf("%s: identity error %q", s.service, d.Identity.LastError)
			}
			issued[s] = d.Identity.Issued
		}
		if !ledgerOn.Load() && issued[orders] >= 3 {
			ordersRenewedTwiceAt = time.Since(start)
			ledgerOn.Store(true)
		}
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)

	serialsMu.Lock()
	nSerials := len(serials)
	serialsMu.Unlock()
	t.Logf("%s of traffic: %d requests, %d failed (%d resets); certificates issued: payments %d, ledger %d, orders %d (orders renewed twice after %s); payments presented %d certificates to new connections; ledger saw %d orders certificates",
		elapsed.Round(time.Second), traffic.total.Load(), traffic.failed.Load(), traffic.resets.Load(),
		issued[payments], issued[ledger], issued[orders], ordersRenewedTwiceAt.Round(time.Second), nSerials, len(ledgerHashes))
	if n := traffic.failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed, %d of them with a reset or closed connection; the first:\n%s",
			n, traffic.total.Load(), traffic.resets.Load(), strings.Join(traffic.first, "\n"))
	}
	for _, s := range []*sidecar{payments, ledger, orders} {
		if issued[s] < 3 {
			t.Errorf("%s: %d certificates issued, want at least two renewals", s.service, issued[s])
		}
	}
	if nSerials < 3 {
		t.Errorf("payments presented %d certificates to new connections, want its first and two renewed ones", nSerials)
	}
	if !ledgerOn.Load() || len(ledgerHashes) == 0 {
		t.Errorf("orders never called ledger with a renewed certificate")
	} else if ledgerHashes[firstHash] {
		t.Errorf("orders called ledger with its first certificate (hash %s) after renewing twice", firstHash)
	}
	for _, s := range []*sidecar{payments, ledger, orders} {
		after, err := s.stats()
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"listener.inbound.tls_handshake_failures", "listener.outbound.local_replies_total",
			"listener.outbound.upstream_failures_total", "listener.inbound.local_replies_total", "listener.inbound.upstream_failures_total"} {
			if d := after[name] - statsBefore[s][name]; d != 0 {
				t.Errorf("%s: %s went up by %d during the rotations", s.service, name, d)
			}
		}
	}
}
