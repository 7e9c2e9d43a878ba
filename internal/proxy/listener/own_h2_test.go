package listener

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/internal/testca"
	"github.com/weft-mesh/weft/internal/proxy/peer"
)

// TestHTTP2ServedByTheOwnLoop checks that HTTP/2 over TLS and h2c reach
// the handler through the own HTTP/2 loop when it is on (and net/http's
// when it is off), with and without the own HTTP/1 loop, and that the
// request's context carries what the listener's connection context puts
// there: the peer.Info (with the verified SPIFFE ID over mTLS), the local
// address and the http.Server.
func TestHTTP2ServedByTheOwnLoop(t *testing.T) {
	ca := testca.New(t, "cluster.local")
	serverCert := ca.Issue(t, "spiffe://cluster.local/ns/default/sa/server", time.Hour)
	clientCert := ca.Issue(t, "spiffe://cluster.local/ns/default/sa/client", time.Hour)
	serverTLS := &tls.Config{
		Certificates: []tls.Certificate{*serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		NextProtos:   []string{"h2", "http/1.1"},
		MinVersion:   tls.VersionTLS13,
	}
	for _, own1 := range []bool{true, false} {
		for _, own2 := range []bool{true, false} {
			t.Run(fmt.Sprintf("own HTTP/1 %v, own HTTP/2 %v", own1, own2), func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					info, ok := peer.FromContext(r.Context())
					_, hasLocal := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
					_, hasSrv := r.Context().Value(http.ServerContextKey).(*http.Server)
					body, _ := io.ReadAll(r.Body)
					fmt.Fprintf(w, "own=%v peer=%v tls=%v spiffe=%s local=%v srv=%v proto=%s body=%s",
						strings.HasPrefix(fmt.Sprintf("%T", w), "*h2server."), ok, ok && info.TLS, info.SpiffeID,
						hasLocal, hasSrv, r.Proto, body)
				})
				s := New("inbound", ln, h, slog.New(slog.DiscardHandler))
				s.SetOwnHTTP1(own1)
				s.SetOwnHTTP2(own2)
				s.SetPolicy(func() *Policy { return &Policy{Inspect: true, Plaintext: true, TLS: serverTLS} })
				done := make(chan struct{})
				go func() {
					defer close(done)
					if err := s.Serve(); err != nil {
						t.Errorf("serve: %v", err)
					}
				}()
				addr := ln.Addr().String()

				var h2cProtos, h2Protos http.Protocols
				h2cProtos.SetUnencryptedHTTP2(true) // prior knowledge
				h2Protos.SetHTTP2(true)
				h2c := &http.Transport{Protocols: &h2cProtos}
				h2tls := &http.Transport{Protocols: &h2Protos, TLSClientConfig: &tls.Config{
					Certificates: []tls.Certificate{*clientCert},
					// The test CA's leaves carry SPIFFE IDs, no DNS names.
					InsecureSkipVerify: true,
				}}
				for _, tc := range []struct {
					name string
					tr   *http.Transport
					url  string
					want string
				}{
					{"h2c", h2c, "http://" + addr + "/x", fmt.Sprintf("own=%v peer=true tls=false spiffe= local=true srv=true proto=HTTP/2.0 body=ping", own2)},
					{"TLS", h2tls, "https://" + addr + "/x", fmt.Sprintf("own=%v peer=true tls=true spiffe=spiffe://cluster.local/ns/default/sa/client local=true srv=true proto=HTTP/2.0 body=ping", own2)},
				} {
					res, err := (&http.Client{Transport: tc.tr}).Post(tc.url, "text/plain", strings.NewReader("ping"))
					if err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
					b, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if string(b) != tc.want {
						t.Errorf("%s: got %q\nwant %q", tc.name, b, tc.want)
					}
				}
				// HTTP/1.1 still works next to it.
				res, err := http.Post("http://"+addr+"/h1", "text/plain", strings.NewReader("ping"))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if !strings.Contains(string(b), "proto=HTTP/1.1") {
					t.Errorf("HTTP/1.1: got %q", b)
				}
				h2c.CloseIdleConnections()
				h2tls.CloseIdleConnections()
				http.DefaultTransport.(*http.Transport).CloseIdleConnections()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := s.Shutdown(ctx); err != nil {
					t.Errorf("shutdown: %v", err)
				}
				<-done
			})
		}
	}
}
