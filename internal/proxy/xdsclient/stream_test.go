package xdsclient

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
)

// endingServer is an ADS server whose every stream sends two responses
// and then ends, as a control plane that goes away between two responses.
type endingServer struct {
	discoverypb.UnimplementedAggregatedDiscoveryServiceServer
	streams atomic.Int32
}

func (s *endingServer) StreamAggregatedResources(stream discoverypb.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	s.streams.Add(1)
	if _, err := stream.Recv(); err != nil {
		return err
	}
	for i, r := range []struct {
		url string
		res *anypb.Any
	}{
		{ClusterURL, xdstest.MustAny(xdstest.EDSCluster(reviews))},
		{EndpointsURL, xdstest.MustAny(xdstest.LoadAssignment(reviews, "10.0.0.1:80"))},
	} {
		if err := stream.Send(&discoverypb.DiscoveryResponse{TypeUrl: r.url, VersionInfo: "1", Nonce: string(rune('a' + i)),
			Resources: []*anypb.Any{r.res}}); err != nil {
			return err
		}
	}
	return status.Error(codes.Unavailable, "going away")
}

func TestClientReconnectsWhenTheStreamEndsWhileAResponseWaits(t *testing.T) {
	// The client reads the second response while it applies the first;
	// the ACK of the first then fails, as the stream has ended. The client
	// must still see the stream's end and open another.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &endingServer{}
	g := grpc.NewServer()
	discoverypb.RegisterAggregatedDiscoveryServiceServer(g, srv)
	go g.Serve(lis)
	defer g.Stop()

	c, err := New(Options{
		ControlPlane: lis.Addr().String(),
		Node:         NodeInfo{Service: "productpage", Namespace: "default", InboundAddr: "127.0.0.1:15006", AppAddr: "127.0.0.1:9080"},
		// Applying takes a while: the second response and the end of the
		// stream arrive meanwhile.
		OnUpdate:   func(Resources) { time.Sleep(50 * time.Millisecond) },
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(5 * time.Second)
	for srv.streams.Load() < 3 {
		if time.Now().After(deadline) {
			st := c.Status()
			t.Fatalf("%d streams opened in 5s, want 3: the client is stuck (connected %v, streams %d)", srv.streams.Load(), st.Connected, st.StreamsOpen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// eofStream is an ADS stream whose Send fails with io.EOF while its Recv
// does not return, as grpc-go's can after a retried attempt on a
// connection that was cut.
type eofStream struct {
	grpc.ClientStream
	ctx context.Context
}

func (s *eofStream) Send(*discoverypb.DiscoveryRequest) error { return io.EOF }
func (s *eofStream) Recv() (*discoverypb.DiscoveryResponse, error) {
	<-s.ctx.Done()
	return nil, s.ctx.Err()
}

type eofADS struct {
	discoverypb.AggregatedDiscoveryServiceClient
}

func (eofADS) StreamAggregatedResources(ctx context.Context, _ ...grpc.CallOption) (discoverypb.AggregatedDiscoveryService_StreamAggregatedResourcesClient, error) {
	return &eofStream{ctx: ctx}, nil
}

func TestClientGivesUpAStreamWhoseSendFailsAndRecvHangs(t *testing.T) {
	c, err := New(Options{ControlPlane: "127.0.0.1:1",
		Node: NodeInfo{Service: "productpage", Namespace: "default", InboundAddr: "127.0.0.1:15006", AppAddr: "127.0.0.1:9080"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = c.runStream(ctx, eofADS{})
	if ctx.Err() != nil {
		t.Fatalf("runStream returned only when its context ended, after %v: the client would never reconnect", time.Since(start))
	}
	if !errors.Is(err, io.EOF) {
		t.Errorf("runStream: %v, want io.EOF", err)
	}
}
