package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weft-mesh/weft/internal/apiclient"
)

func TestAPIRequiresTheAdminToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cp := startControlPlaneWith(t, Options{DataDir: dir, NoLocalRecord: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if fi, err := os.Stat(filepath.Join(dir, "admin.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	for _, tt := range []struct {
		name   string
		client *apiclient.Client
		ok     bool
	}{
		{"a request with the admin token is served", cp.api, true},
		{"a request without a token is refused", apiclient.New("http://" + cp.httpAddr), false},
		{"a request with another token is refused", apiclient.New("http://"+cp.httpAddr, apiclient.WithToken(cp.token+"x")), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.client.Workloads(ctx)
			var apiErr *apiclient.APIError
			switch {
			case tt.ok && err != nil:
				t.Fatal(err)
			case !tt.ok && (!errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "admin token")):
				t.Fatalf("got %v, want 401 naming the admin token", err)
			}
		})
	}
	t.Run("the health check needs no token", func(t *testing.T) {
		if err := apiclient.New("http://" + cp.httpAddr).Healthy(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("weft ca root serves the bundle written to the data dir", func(t *testing.T) {
		tb, err := cp.api.TrustBundle(ctx)
		if err != nil {
			t.Fatal(err)
		}
		file, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
		if err != nil || string(file) != tb.PEM || tb.TrustDomain != "cluster.local" {
			t.Fatalf("bundle %q (%s) vs ca.pem %q (%v)", tb.PEM, tb.TrustDomain, file, err)
		}
	})
	t.Run("a token request is validated", func(t *testing.T) {
		tok, err := cp.api.CreateToken(ctx, apiclient.TokenRequest{Namespace: "default", ServiceAccount: "orders", TTL: "1h"})
		if err != nil || tok.Identity != "spiffe://cluster.local/ns/default/sa/orders" || time.Until(tok.ExpiresAt) > time.Hour {
			t.Fatalf("token %+v, %v", tok, err)
		}
		for _, req := range []apiclient.TokenRequest{
			{Namespace: "", ServiceAccount: "orders"},
			{Namespace: "default", ServiceAccount: "Orders"},
			{Namespace: "default", ServiceAccount: "orders", TTL: "forever"},
			{Namespace: "default", ServiceAccount: "orders", TTL: "100000h"},
		} {
			if _, err := cp.api.CreateToken(ctx, req); err == nil {
				t.Errorf("token request %+v accepted", req)
			}
		}
	})

	cp.stop()
	t.Run("the admin token and the root survive a restart", func(t *testing.T) {
		again := startControlPlaneWith(t, Options{DataDir: dir, NoLocalRecord: true})
		defer again.stop()
		if again.token != cp.token {
			t.Fatal("the admin token changed")
		}
	})
}

func TestOptionsAreValidated(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"an unknown path normalization", Options{PathNormalization: "NONE"}, "--path-normalization \"NONE\""},
		{"a workload certificate TTL under a minute", Options{WorkloadCertTTL: time.Second}, "shorter than the minimum"},
		{"an invalid root namespace", Options{RootNamespace: "Istio_System"}, "--root-namespace"},
		{"an invalid trust domain", Options{TrustDomain: "Cluster Local"}, "--trust-domain"},
		{"an incomplete intermediate CA", Options{CACertFile: "ca.pem"}, "needs all of --ca-cert, --ca-key and --ca-chain"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.DataDir = t.TempDir()
			tt.opts.Logger = slog.New(slog.DiscardHandler)
			err := Run(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// adsNode is the node of a proxy for default/orders.
func adsNode(t *testing.T, sa string) *corev3.Node {
	md, err := structpb.NewStruct(map[string]any{
		"service": "orders", "namespace": "default", "service_account": sa, "service_port": 8080,
		"inbound_addr": "127.0.0.1:16006", "outbound_addr": "127.0.0.1:16001", "app_addr": "127.0.0.1:8080",
	})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: "sidecar~orders-1.default", Metadata: md}
}

// firstSecrets opens an ADS stream with token, subscribes to secrets and
// returns the first answer or the stream's error.
func firstSecrets(conn *grpc.ClientConn, node *corev3.Node, token string) (*discoverygrpc.DiscoveryResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	// A stream the server refused at once (no token) may already be over
	// when Send runs: Send then returns io.EOF and, as gRPC documents, the
	// status comes from Recv.
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resource.SecretType}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return stream.Recv()
}

func TestXDSServesTLSAndTheTrustBundle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cp := startControlPlaneWith(t, Options{DataDir: dir, TrustDomain: "example.org", NoLocalRecord: true})
	defer cp.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tb, err := cp.api.TrustBundle(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cp.api.CreateToken(ctx, apiclient.TokenRequest{Namespace: "default", ServiceAccount: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(tb.PEM))
	conn, err := grpc.NewClient(cp.xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "weft-control-plane",
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	t.Run("a proxy with its token gets ROOTCA, the trust bundle", func(t *testing.T) {
		resp, err := firstSecrets(conn, adsNode(t, "orders"), tok.Token)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetResources()) != 1 {
			t.Fatalf("%d secrets, want ROOTCA", len(resp.GetResources()))
		}
		var secret tlsv3.Secret
		if err := resp.GetResources()[0].UnmarshalTo(&secret); err != nil {
			t.Fatal(err)
		}
		got := string(secret.GetValidationContext().GetTrustedCa().GetInlineBytes())
		if secret.GetName() != "ROOTCA" || got != tb.PEM {
			t.Fatalf("secret %s holds %q, want ROOTCA with the trust bundle", secret.GetName(), got)
		}
	})
	t.Run("a proxy without a token is refused", func(t *testing.T) {
		_, err := firstSecrets(conn, adsNode(t, "orders"), "")
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("got %v, want Unauthenticated", err)
		}
	})
	t.Run("plaintext is refused", func(t *testing.T) {
		plain, err := grpc.NewClient(cp.xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		if _, err := firstSecrets(plain, adsNode(t, "orders"), tok.Token); status.Code(err) != codes.Unavailable {
			t.Fatalf("got %v, want Unavailable", err)
		}
	})
}

func TestInsecureXDSStillNeedsATokenAndAPIOffLoopbackServesTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cp := startControlPlaneWith(t, Options{DataDir: dir, InsecureXDS: true, forceAPITLS: true, NoLocalRecord: true})
	defer cp.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("the API serves TLS that the trust bundle verifies", func(t *testing.T) {
		if _, err := cp.api.Workloads(ctx); err == nil {
			t.Fatal("plain HTTP to the TLS API worked")
		}
		pool, err := apiclient.LoadCertPool(filepath.Join(dir, "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := apiclient.New("https://"+cp.httpAddr, apiclient.WithToken(cp.token)).Workloads(ctx); err == nil ||
			!strings.Contains(err.Error(), "--ca-file") {
			t.Fatalf("without the bundle: %v, want a hint to pass --ca-file", err)
		}
		api := apiclient.New("https://"+cp.httpAddr, apiclient.WithToken(cp.token), apiclient.WithRootCAs(pool))
		if _, err := api.Workloads(ctx); err != nil {
			t.Fatal(err)
		}
		cp.api = api
	})

	tok, err := cp.api.CreateToken(ctx, apiclient.TokenRequest{Namespace: "default", ServiceAccount: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(cp.xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := firstSecrets(conn, adsNode(t, "orders"), tok.Token); err != nil {
		t.Fatalf("plaintext with a token: %v", err)
	}
	if _, err := firstSecrets(conn, adsNode(t, "orders"), ""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("plaintext without a token: %v, want Unauthenticated", err)
	}
}

func TestCLIFindsALocalControlPlane(t *testing.T) {
	runtime := t.TempDir()
	t.Setenv(apiclient.EnvRuntimeDir, runtime)
	t.Setenv(apiclient.EnvTokenFile, "")
	t.Setenv(apiclient.EnvCAFile, "")
	dir := filepath.Join(t.TempDir(), "data")
	opts := Options{DataDir: dir}
	cp := startControlPlaneWith(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	records, _ := filepath.Glob(filepath.Join(runtime, "api-*.json"))
	if len(records) != 1 {
		t.Fatalf("records %v, want one", records)
	}
	if fi, err := os.Stat(records[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record mode: %v %v", fi.Mode(), err)
	}
	for _, server := range []string{"http://" + cp.httpAddr, "http://localhost:" + portOf(cp.httpAddr)} {
		c, err := apiclient.Connect(apiclient.Settings{Server: server})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Workloads(ctx); err != nil {
			t.Fatalf("%s: %v", server, err)
		}
	}
	cp.stop()
	if records, _ := filepath.Glob(filepath.Join(runtime, "api-*.json")); len(records) != 0 {
		t.Fatalf("records %v left after the control plane stopped", records)
	}
}

func portOf(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	return addr[i+1:]
}
