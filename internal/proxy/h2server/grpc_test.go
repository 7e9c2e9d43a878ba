package h2server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// TestGRPC serves grpc-go's server (as an http.Handler) with the own
// loop and calls it with grpc-go's client, over h2c and TLS: unary,
// server streaming, bidirectional streaming, and an error status (all
// carried in trailers).
func TestGRPC(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "h2c"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			gs := grpc.NewServer()
			hs := health.NewServer()
			hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
			healthpb.RegisterHealthServer(gs, hs)
			reflection.Register(gs)
			t.Cleanup(gs.Stop)
			ts := newTestServer(t, gs, useTLS)

			creds := insecure.NewCredentials()
			if useTLS {
				creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
			}
			cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()

			hc := healthpb.NewHealthClient(cc)
			res, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
			if err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("unary: %v, %v", res, err)
			}
			if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
				t.Fatalf("unary error: %v, want NotFound", err)
			}

			wctx, wcancel := context.WithCancel(ctx)
			w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{Service: "svc"})
			if err != nil {
				t.Fatal(err)
			}
			if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("server streaming: %v, %v", m, err)
			}
			hs.SetServingStatus("svc", healthpb.HealthCheckResponse_NOT_SERVING)
			if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Fatalf("server streaming, second message: %v, %v", m, err)
			}
			wcancel()
			if _, err := w.Recv(); status.Code(err) != codes.Canceled {
				t.Fatalf("after cancel: %v", err)
			}

			rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if err := rs.Send(&reflectionpb.ServerReflectionRequest{
					MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
				}); err != nil {
					t.Fatal(err)
				}
				m, err := rs.Recv()
				if err != nil || len(m.GetListServicesResponse().GetService()) < 2 {
					t.Fatalf("bidi message %d: %v, %v", i, m, err)
				}
			}
			if err := rs.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := rs.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("bidi end: %v", err)
			}
		})
	}
}
