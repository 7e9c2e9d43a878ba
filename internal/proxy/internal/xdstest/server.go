// Package xdstest runs a real go-control-plane ADS server on loopback for
// weft-proxy's tests, and builds the xDS resources docs/xds.md describes.
// Like grpc-go's e2e harness it is a thin wrapper: the server, the snapshot
// cache and the ordered ADS mode are go-control-plane's own.
package xdstest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverypb "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Server is an ADS server with a snapshot cache shared by every node, which
// records every DiscoveryRequest it receives.
type Server struct {
	Addr  string
	cache cachev3.SnapshotCache
	grpc  *grpc.Server
	done  chan struct{}

	mu       sync.Mutex
	requests []*discoverypb.DiscoveryRequest
	changed  chan struct{} // closed and replaced on every new request
}

// anyNode makes all proxies share one snapshot, so tests need not know
// the random node ID before the proxy connects.
type anyNode struct{}

func (anyNode) ID(*corepb.Node) string { return "any" }

// NewServer starts a server on addr ("127.0.0.1:0" for an ephemeral port)
// and stops it at the end of the test.
func NewServer(t testing.TB, addr string) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("xdstest: listen: %v", err)
	}
	s := &Server{
		Addr:    ln.Addr().String(),
		cache:   cachev3.NewSnapshotCache(true, anyNode{}, nil),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	callbacks := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoverypb.DiscoveryRequest) error {
			s.mu.Lock()
			s.requests = append(s.requests, proto.Clone(req).(*discoverypb.DiscoveryRequest))
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
			return nil
		},
	}
	// The server's context only bounds its internal loops; Stop ends the
	// streams.
	xds := serverv3.NewServer(context.Background(), s.cache, callbacks, sotw.WithOrderedADS())
	s.grpc = grpc.NewServer()
	discoverypb.RegisterAggregatedDiscoveryServiceServer(s.grpc, xds)
	go func() {
		defer close(s.done)
		_ = s.grpc.Serve(ln)
	}()
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server at once, ending every stream; it is idempotent.
func (s *Server) Stop() {
	s.grpc.Stop()
	<-s.done
}

// Snapshot is one version of everything the server sends.
type Snapshot struct {
	Clusters  []types.Resource
	Endpoints []types.Resource
	Listeners []types.Resource
	Routes    []types.Resource
	// Secrets are always sent, even when empty, as weft's control plane
	// does.
	Secrets []types.Resource
}

// Push installs snap as version for every node.
func (s *Server) Push(t testing.TB, version string, snap Snapshot) {
	t.Helper()
	sn, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ClusterType:  snap.Clusters,
		resource.EndpointType: snap.Endpoints,
		resource.ListenerType: snap.Listeners,
		resource.RouteType:    snap.Routes,
		resource.SecretType:   snap.Secrets,
	})
	if err != nil {
		t.Fatalf("xdstest: snapshot: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.cache.SetSnapshot(ctx, "any", sn); err != nil {
		t.Fatalf("xdstest: set snapshot: %v", err)
	}
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []*discoverypb.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoverypb.DiscoveryRequest(nil), s.requests...)
}

// WaitRequest waits until a received request satisfies match and returns
// it. It fails the test when ctx ends first.
func (s *Server) WaitRequest(ctx context.Context, t testing.TB, what string, match func(*discoverypb.DiscoveryRequest) bool) *discoverypb.DiscoveryRequest {
	t.Helper()
	for {
		s.mu.Lock()
		for _, r := range s.requests {
			if match(r) {
				s.mu.Unlock()
				return r
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("xdstest: no request %s: %v", what, ctx.Err())
			return nil
		}
	}
}

// IsNACK matches a NACK of typeURL whose message is msg.
func IsNACK(typeURL, msg string) func(*discoverypb.DiscoveryRequest) bool {
	return func(r *discoverypb.DiscoveryRequest) bool {
		return r.GetTypeUrl() == typeURL && r.GetErrorDetail() != nil && r.GetErrorDetail().GetMessage() == msg
	}
}

// IsACK matches an ACK of typeURL at version.
func IsACK(typeURL, version string) func(*discoverypb.DiscoveryRequest) bool {
	return func(r *discoverypb.DiscoveryRequest) bool {
		return r.GetTypeUrl() == typeURL && r.GetErrorDetail() == nil && r.GetResponseNonce() != "" && r.GetVersionInfo() == version
	}
}

// String describes a request for failure messages.
func String(r *discoverypb.DiscoveryRequest) string {
	return fmt.Sprintf("{type %s version %q nonce %q error %q}", r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage())
}
