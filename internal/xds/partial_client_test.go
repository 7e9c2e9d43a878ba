package xds

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-mesh/weft/internal/proxy/xdsclient"
)

// Partial EDS with weft-proxy's own xDS client (internal/proxy/xdsclient)
// on the other end: whatever the order of changes, streams and control
// planes, the client ends up holding the endpoints the control plane
// means it to.

// switchboard forwards TCP connections to one of several servers, and can
// cut every connection it forwards, as a network or a failover would.
type switchboard struct {
	lis    net.Listener
	mu     sync.Mutex
	target string
	conns  []net.Conn
}

func newSwitchboard(t *testing.T, target string) *switchboard {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sb := &switchboard{lis: lis, target: target}
	t.Cleanup(func() { lis.Close(); sb.cut() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			sb.mu.Lock()
			target := sb.target
			sb.mu.Unlock()
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			sb.mu.Lock()
			sb.conns = append(sb.conns, c, up)
			sb.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return sb
}

func (sb *switchboard) addr() string { return sb.lis.Addr().String() }

// point sends new connections to target and cuts the current ones.
func (sb *switchboard) point(target string) {
	sb.mu.Lock()
	sb.target = target
	sb.mu.Unlock()
	sb.cut()
}

func (sb *switchboard) cut() {
	sb.mu.Lock()
	conns := sb.conns
	sb.conns = nil
	sb.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// listenServer starts a Server on loopback and returns its address.
func listenServer(t *testing.T) (*Server, string) {
	t.Helper()
	return listenServerWith(t, Options{})
}

func listenServerWith(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := New(ctx, opts)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(func() { s.Stop(); cancel() })
	return s, lis.Addr().String()
}

// proxyClient is a weft-proxy's xDS client and the last configuration it
// applied.
type proxyClient struct {
	c    *xdsclient.Client
	mu   sync.Mutex
	last xdsclient.Resources
}

func startProxyClient(t *testing.T, addr string) *proxyClient {
	t.Helper()
	pc := &proxyClient{}
	c, err := xdsclient.New(xdsclient.Options{
		ControlPlane: addr,
		Node: xdsclient.NodeInfo{
			Service: "productpage", Namespace: "default", ServicePort: 9080,
			InboundAddr: "127.0.0.1:15006", OutboundAddr: "127.0.0.1:15001", AppAddr: "127.0.0.1:9080", AdminAddr: "127.0.0.1:15000",
		},
		OnUpdate: func(r xdsclient.Resources) {
			pc.mu.Lock()
			pc.last = r
			pc.mu.Unlock()
		},
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	pc.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return pc
}

// routing lists, sorted, "<cluster> -> <endpoints>" for every outbound
// EDS cluster the client holds: where its proxy would send requests.
func (pc *proxyClient) routing() []string {
	pc.mu.Lock()
	r := pc.last
	pc.mu.Unlock()
	var out []string
	for name, c := range r.Clusters {
		if c.Type != xdsclient.ClusterEDS {
			continue
		}
		var addrs []string
		if e := r.Endpoints[c.ServiceName]; e != nil {
			for _, ep := range e.Endpoints {
				addrs = append(addrs, ep.Address)
			}
		}
		slices.Sort(addrs)
		out = append(out, fmt.Sprintf("%s -> %v", name, addrs))
	}
	slices.Sort(out)
	return out
}

// wantRouting is routing for servicesMesh(_, workloads).
func wantRouting(workloads map[string]int) []string {
	var out []string
	for svc, n := range workloads {
		if n == 0 {
			continue
		}
		var addrs []string
		for i := range n {
			addrs = append(addrs, fmt.Sprintf("127.0.%d.%d:15006", serviceIndex(svc), i+1))
		}
		sort.Strings(addrs)
		out = append(out, fmt.Sprintf("%s -> %v", cla(svc), addrs))
	}
	slices.Sort(out)
	return out
}

// converges waits until pc routes as workloads say, and stays so.
func (pc *proxyClient) converges(t *testing.T, workloads map[string]int) {
	t.Helper()
	want := wantRouting(workloads)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := pc.routing()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			st := pc.c.Status()
			t.Logf("client %s: connected %v, streams %d, last error %q", st.NodeID, st.Connected, st.StreamsOpen, st.LastError)
			for _, ts := range st.Types {
				t.Logf("  %s received %s acked %s nonce %s resources %d nack %q", ts.Type, ts.VersionReceived, ts.VersionAcked, ts.Nonce, ts.Resources, ts.LastNACK)
			}
			t.Fatalf("the proxy routes\n  %q\nwant\n  %q", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPartialEDSWithWeftProxyClient(t *testing.T) {
	t.Run("random changes, with streams cut now and then, end with the endpoints of the last snapshot", func(t *testing.T) {
		s, addr := listenServer(t)
		randomChanges(t, s, addr, 1, nil)
	})
	t.Run("random changes, some of them NACKed, end with the endpoints of the last snapshot", func(t *testing.T) {
		var corrupt atomic.Bool
		var corrupted atomic.Int32
		corrupt.Store(true)
		rng := rand.New(rand.NewPCG(3, 4))
		var rngMu sync.Mutex
		s, addr := listenServerWith(t, Options{ServerOptions: []grpc.ServerOption{grpc.ChainStreamInterceptor(
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
				return handler(srv, &corruptingStream{ServerStream: ss, corrupt: func() bool {
					rngMu.Lock()
					defer rngMu.Unlock()
					if corrupt.Load() && rng.IntN(6) == 0 {
						corrupted.Add(1)
						return true
					}
					return false
				}})
			})}})
		randomChanges(t, s, addr, 2, func() { corrupt.Store(false) })
		if corrupted.Load() == 0 {
			t.Error("no response was NACKed")
		}
	})
}

// randomChanges makes random changes to the services four proxies see,
// cutting their connections now and then, and checks that they end up
// routing to the endpoints that exist. Before the last change it calls
// last.
func randomChanges(t *testing.T, s *Server, addr string, seed uint64, last func()) {
	t.Helper()
	sb := newSwitchboard(t, addr)
	rng := rand.New(rand.NewPCG(seed, 2))
	svcs := []string{"sa", "sb", "sc", "sd", "se"}
	workloads := map[string]int{"sa": 1, "sb": 2, "sc": 1}
	version := 100
	s.Update(servicesMesh(fmt.Sprint(version), workloads))
	var pcs []*proxyClient
	for range 4 {
		pcs = append(pcs, startProxyClient(t, sb.addr()))
	}
	converge := func() {
		t.Helper()
		for _, pc := range pcs {
			pc.converges(t, workloads)
		}
	}
	if last == nil {
		converge()
	}
	for round := range 300 {
		svc := svcs[rng.IntN(len(svcs))]
		workloads[svc] = rng.IntN(3) // 0: the service is gone
		version++
		s.Update(servicesMesh(fmt.Sprint(version), workloads))
		if rng.IntN(15) == 0 {
			sb.cut()
		}
		if rng.IntN(4) == 0 {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
		if round%25 == 24 && last == nil {
			converge()
		}
	}
	if last != nil {
		// A NACKed version is not sent again: a change to every type
		// after the last NACK brings the proxies up to date.
		last()
		workloads["sz"]++
		version++
		s.Update(servicesMesh(fmt.Sprint(version), workloads))
	}
	converge()
}

// corruptingStream adds an invalid resource to some CDS and EDS responses,
// which weft-proxy then NACKs.
type corruptingStream struct {
	grpc.ServerStream
	corrupt func() bool
}

func (c *corruptingStream) SendMsg(m any) error {
	r, ok := m.(*discoverygrpc.DiscoveryResponse)
	if !ok || (r.GetTypeUrl() != resource.EndpointType && r.GetTypeUrl() != resource.ClusterType) || !c.corrupt() {
		return c.ServerStream.SendMsg(m)
	}
	// A copy: the original's resources go out pre-encoded (codec.go).
	bad := proto.Clone(r).(*discoverygrpc.DiscoveryResponse)
	var res proto.Message
	if r.GetTypeUrl() == resource.ClusterType {
		res = &clusterv3.Cluster{Name: "bad", LbPolicy: clusterv3.Cluster_MAGLEV}
	} else {
		res = &endpointv3.ClusterLoadAssignment{ClusterName: "bad", Policy: &endpointv3.ClusterLoadAssignment_Policy{}}
	}
	a, err := anypb.New(res)
	if err != nil {
		return err
	}
	bad.Resources = append(bad.Resources, a)
	return c.ServerStream.SendMsg(bad)
}

// failEDS is a server option that ends a stream instead of sending it an
// EDS response of the given version, and calls lost, as a connection lost
// between two responses would.
func failEDS(version string, lost func()) Options {
	return Options{ServerOptions: []grpc.ServerOption{grpc.ChainStreamInterceptor(
		func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, &failingStream{ServerStream: ss, version: version, lost: lost})
		})}}
}

type failingStream struct {
	grpc.ServerStream
	version string
	lost    func()
}

func (f *failingStream) SendMsg(m any) error {
	if r, ok := m.(*discoverygrpc.DiscoveryResponse); ok && r.GetTypeUrl() == resource.EndpointType && r.GetVersionInfo() == f.version {
		f.lost()
		return status.Error(codes.Unavailable, "connection lost")
	}
	return f.ServerStream.SendMsg(m)
}

func TestPartialEDSAcrossControlPlanes(t *testing.T) {
	t.Run("a proxy that dropped endpoints with a cluster and moves to a control plane that still has the cluster gets them again", func(t *testing.T) {
		// Control plane a is one change ahead of b, and loses the proxy
		// between the CDS and the EDS response of that change.
		var sb *switchboard
		b, bAddr := listenServer(t)
		a, aAddr := listenServerWith(t, failEDS("11", func() { sb.point(bAddr) }))
		both := map[string]int{"sa": 1, "sb": 1}
		a.Update(servicesMesh("10", both))
		b.Update(servicesMesh("10", both))
		sb = newSwitchboard(t, aAddr)
		pc := startProxyClient(t, sb.addr())
		pc.converges(t, both)

		a.Update(servicesMesh("11", map[string]int{"sa": 1}))
		// b has not seen 11 (or saw it coalesced with the change that
		// brought sb back as it was): it serves 10.
		waitFor(t, func() bool { return len(b.Status()) == 1 })
		b.Update(servicesMesh("12", both))
		pc.converges(t, both)
	})
}
