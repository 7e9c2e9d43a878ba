package xds

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weft-mesh/weft/internal/mesh"
)

// recordingRegistrar stands in for the etcd registry, which has its own
// tests; here only the calls matter.
type recordingRegistrar struct {
	mu         sync.Mutex
	registered []string
	released   []string
}

func (r *recordingRegistrar) Register(_ context.Context, w *mesh.Workload) (func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.registered = append(r.registered, w.ID)
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.released = append(r.released, w.ID)
	}, nil
}

func node(t *testing.T, id string, md map[string]any) *corev3.Node {
	t.Helper()
	s, err := structpb.NewStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: id, Metadata: s}
}

func reviewsNode(t *testing.T) *corev3.Node {
	return node(t, "sidecar~reviews-1.default", map[string]any{
		"service": "reviews", "namespace": "default", "service_port": 9080,
		"labels":       map[string]any{"version": "v1"},
		"inbound_addr": "127.0.0.1:16006", "outbound_addr": "127.0.0.1:16001", "app_addr": "127.0.0.1:8080",
	})
}

func startServer(t *testing.T) (*Server, *recordingRegistrar, discoverygrpc.AggregatedDiscoveryServiceClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg := &recordingRegistrar{}
	s := New(ctx, Options{Registrar: reg})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Stop()
		cancel()
	})
	return s, reg, discoverygrpc.NewAggregatedDiscoveryServiceClient(conn)
}

func TestServerTracksAcksAndNacks(t *testing.T) {
	s, reg, client := startServer(t)
	s.Update(mesh.NewSnapshot("7", "", nil, nil, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := reviewsNode(t)
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: n, TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVersionInfo() != "7" || len(resp.GetResources()) != 2 {
		t.Fatalf("got version %q with %d listeners, want version 7 with inbound and outbound", resp.GetVersionInfo(), len(resp.GetResources()))
	}
	// NACK it.
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{
		Node: n, TypeUrl: resource.ListenerType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "listener inbound: not supported"},
	}); err != nil {
		t.Fatal(err)
	}

	waitFor(t, func() bool {
		st := s.Status()
		return len(st) == 1 && st[0].XDS["LDS"] != nil && st[0].XDS["LDS"].NackMessage != ""
	})
	// The rejected version is not resent: nothing arrives until the mesh
	// changes.
	resent := make(chan *discoverygrpc.DiscoveryResponse, 1)
	go func() {
		if r, err := stream.Recv(); err == nil {
			resent <- r
		}
		close(resent)
	}()
	select {
	case r := <-resent:
		t.Fatalf("the NACKed version was resent: version %q", r.GetVersionInfo())
	case <-time.After(300 * time.Millisecond):
	}
	st := s.Status()[0]
	if st.Service != "reviews" || st.Labels["version"] != "v1" || st.Address != "127.0.0.1:16006" {
		t.Errorf("status describes the wrong workload: %+v", st)
	}
	lds := st.XDS["LDS"]
	if lds.Sent != "7" || lds.Acked != "" || lds.NackVersion != "7" || lds.NackMessage != "listener inbound: not supported" {
		t.Errorf("LDS status = %+v, want sent 7, nothing acked, NACK of 7 with the message", lds)
	}

	// A snapshot that leaves the listeners as they were does not resend
	// them either, and proxy-status reports the NACK against it.
	s.Update(mesh.NewSnapshot("8", "", nil, nil, nil))
	select {
	case r := <-resent:
		t.Fatalf("unchanged listeners were resent: version %q", r.GetVersionInfo())
	case <-time.After(300 * time.Millisecond):
	}
	if lds := s.Status()[0].XDS["LDS"]; lds.Sent != "8" || lds.NackVersion != "8" {
		t.Errorf("LDS status = %+v, want the NACK reported against version 8, whose listeners are version 7's", lds)
	}

	// New listeners are sent and ACKed.
	snap := mesh.NewSnapshot("9", "", nil, nil, nil)
	snap.Security.PathNormalization = "MERGE_SLASHES"
	s.Update(snap)
	resp = <-resent
	if resp == nil {
		t.Fatal("stream closed before version 8 arrived")
	}
	if resp.GetVersionInfo() != "9" {
		t.Fatalf("got listeners version %q, want 9", resp.GetVersionInfo())
	}
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: n, TypeUrl: resource.ListenerType, VersionInfo: "9", ResponseNonce: resp.GetNonce()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.Status()[0].XDS["LDS"].Acked == "9" })

	cancel()
	waitFor(t, func() bool { return len(s.Status()) == 0 })
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.registered) != 1 || len(reg.released) != 1 {
		t.Fatalf("registered %v, released %v; want one each", reg.registered, reg.released)
	}
}

func TestServerRejectsNodesWithoutWorkload(t *testing.T) {
	_, _, client := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bad := node(t, "sidecar~x.default", map[string]any{"service": "x", "service_port": 80})
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: bad, TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if grpcstatus.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	if want := "missing inbound_addr, app_addr"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
