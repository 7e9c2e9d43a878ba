package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/weft-mesh/weft/internal/ca"
	"github.com/weft-mesh/weft/internal/mesh"
	"github.com/weft-mesh/weft/internal/store"
)

// secureServer is an xDS server with the CA, over TLS with tokens, as the
// control plane runs it.
type secureServer struct {
	ca   *ca.Authority
	srv  *Server
	addr string
	conn *grpc.ClientConn
}

func startSecureServer(t *testing.T) *secureServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := store.OpenEmbedded(ctx, store.EmbeddedOptions{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authority, err := ca.Open(ctx, st, ca.Options{})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := authority.ServingCerts([]string{"weft-control-plane", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	s := New(sctx, Options{
		Registrar:     &recordingRegistrar{},
		Authenticator: authority,
		ServerOptions: []grpc.ServerOption{grpc.Creds(credentials.NewTLS(certs.TLSConfig("h2")))},
	})
	securityv1alpha1.RegisterIstioCertificateServiceServer(s, ca.NewService(authority, nil))
	s.Update(mesh.NewSnapshot("1", "", nil, nil, nil))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: authority.Roots(), ServerName: "weft-control-plane",
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Stop()
		stop()
	})
	return &secureServer{ca: authority, srv: s, addr: lis.Addr().String(), conn: conn}
}

func (s *secureServer) token(t *testing.T, ns, sa string) string {
	t.Helper()
	tok, _, err := s.ca.IssueToken(ca.Identity{Namespace: ns, ServiceAccount: sa}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func withToken(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// openADS opens a stream with token as a proxy of service account sa and
// returns the status of its first answer (OK when it got a response).
func (s *secureServer) openADS(t *testing.T, tok, sa string) *grpcstatus.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(s.conn).StreamAggregatedResources(withToken(ctx, tok))
	if err != nil {
		return grpcstatus.Convert(err)
	}
	md := map[string]any{
		"service": "orders", "namespace": "default", "service_port": 8080,
		"inbound_addr": "127.0.0.1:16006", "outbound_addr": "127.0.0.1:16001", "app_addr": "127.0.0.1:8080",
	}
	if sa != "" {
		md["service_account"] = sa
	}
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: node(t, "sidecar~orders-1.default", md), TypeUrl: resource.ListenerType}); err != nil {
		_, err = stream.Recv()
		return grpcstatus.Convert(err)
	}
	_, err = stream.Recv()
	return grpcstatus.Convert(err)
}

func csr(t *testing.T, spiffeID string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(spiffeID)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestADSAndCARequireAMatchingToken(t *testing.T) {
	s := startSecureServer(t)
	orders := s.token(t, "default", "orders")
	other := startSecureServer(t) // another mesh: its tokens are forgeries here
	forged := other.token(t, "default", "orders")

	for _, tt := range []struct {
		name     string
		token    string
		sa       string
		wantCode codes.Code
		wantMsg  string
	}{
		{"a stream with a token for its identity gets config", orders, "orders", codes.OK, ""},
		{"a stream without a token is unauthenticated", "", "orders", codes.Unauthenticated, "no token"},
		{"a stream with a token of another mesh is unauthenticated", forged, "orders", codes.Unauthenticated, "forged"},
		{"a token for sa/orders cannot open a stream as sa/payments", orders, "payments", codes.PermissionDenied,
			`the token proves spiffe://cluster.local/ns/default/sa/orders but the node metadata claims namespace "default", service account "payments"`},
		{"a node without a service account is sa/default", orders, "", codes.PermissionDenied, `service account "default"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := s.openADS(t, tt.token, tt.sa)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Fatalf("got %v: %s; want %v containing %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
		})
	}

	client := securityv1alpha1.NewIstioCertificateServiceClient(s.conn)
	for _, tt := range []struct {
		name     string
		token    string
		csrFor   string
		wantCode codes.Code
		wantMsg  string
	}{
		{"a CSR for the token's identity is signed", orders, "spiffe://cluster.local/ns/default/sa/orders", codes.OK, ""},
		{"a CSR for sa/payments with a token for sa/orders is refused", orders, "spiffe://cluster.local/ns/default/sa/payments", codes.PermissionDenied,
			"the CSR asks for URI SAN [spiffe://cluster.local/ns/default/sa/payments] but the token proves spiffe://cluster.local/ns/default/sa/orders"},
		{"a CSR without a token is unauthenticated", "", "spiffe://cluster.local/ns/default/sa/orders", codes.Unauthenticated, "no token"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := client.CreateCertificate(withToken(ctx, tt.token), &securityv1alpha1.IstioCertificateRequest{Csr: csr(t, tt.csrFor)})
			st := grpcstatus.Convert(err)
			if st.Code() != tt.wantCode || !strings.Contains(st.Message(), tt.wantMsg) {
				t.Fatalf("got %v: %s; want %v containing %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode != codes.OK {
				return
			}
			chain := resp.GetCertChain()
			if len(chain) != 2 || chain[1] != string(s.ca.TrustBundlePEM()) {
				t.Fatalf("chain of %d certificates; want the leaf and the root", len(chain))
			}
		})
	}

	t.Run("delta xDS is refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(s.conn).DeltaAggregatedResources(withToken(ctx, orders))
		if err == nil {
			_, err = stream.Recv()
		}
		if st := grpcstatus.Convert(err); st.Code() != codes.Unimplemented {
			t.Fatalf("got %v, want Unimplemented", st)
		}
	})

	t.Run("the status shows the proven identity", func(t *testing.T) {
		// The first subtest's proxy may already be gone; connect one and look.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(s.conn).StreamAggregatedResources(withToken(ctx, orders))
		if err != nil {
			t.Fatal(err)
		}
		n := node(t, "sidecar~orders-2.default", map[string]any{
			"service": "orders", "namespace": "default", "service_account": "orders", "service_port": 8080,
			"inbound_addr": "127.0.0.1:16006", "outbound_addr": "127.0.0.1:16001", "app_addr": "127.0.0.1:8080",
		})
		if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: n, TypeUrl: resource.ListenerType}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatal(err)
		}
		for _, p := range s.srv.Status() {
			if p.ID == "sidecar~orders-2.default" {
				if p.Identity != "spiffe://cluster.local/ns/default/sa/orders" || p.ServiceAccount != "orders" {
					t.Fatalf("status: identity %q, service account %q", p.Identity, p.ServiceAccount)
				}
				return
			}
		}
		t.Fatalf("proxy not in status %+v", s.srv.Status())
	})

	t.Run("a plaintext client cannot talk to the TLS port", func(t *testing.T) {
		conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(withToken(ctx, orders),
			&securityv1alpha1.IstioCertificateRequest{Csr: csr(t, "spiffe://cluster.local/ns/default/sa/orders")})
		if st := grpcstatus.Convert(err); st.Code() != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", st)
		}
	})
}
