package cpbench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// typeURLs are the five subscriptions of a weft proxy, in the order it
// sends them (docs/xds.md, "Subscriptions").
var typeURLs = [numTypes]string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType}

// TypeNames are the short names of typeURLs, in the same order.
var TypeNames = [numTypes]string{"CDS", "EDS", "LDS", "RDS", "SDS"}

const numTypes = 5

func typeIndex(url string) int {
	for i, u := range typeURLs {
		if u == url {
			return i
		}
	}
	return -1
}

// adsMethod is the ADS stream; the simulated proxies open it by name so
// that they can receive responses without decoding their resources.
const adsMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

var adsStreamDesc = &grpc.StreamDesc{StreamName: "StreamAggregatedResources", ServerStreams: true, ClientStreams: true}

// maxMessage bounds one response; weft-proxy allows as much.
const maxMessage = 256 << 20

// response is what a simulated proxy reads of a DiscoveryResponse: the
// fields an ACK needs and the size. The resources stay undecoded bytes,
// and are dropped.
type response struct {
	Version, TypeURL, Nonce string
	Resources               int
	Bytes                   int
}

// parseResponse reads r out of an encoded DiscoveryResponse, skipping the
// resources.
func parseResponse(b []byte, r *response) error {
	*r = response{Bytes: len(b)}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("decode discovery response: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 1 || num == 2 || num == 4 || num == 5) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("decode discovery response: field %d: %w", num, protowire.ParseError(n))
			}
			switch num {
			case 1:
				r.Version = string(v)
			case 2:
				r.Resources++
			case 4:
				r.TypeURL = string(v)
			case 5:
				r.Nonce = string(v)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("decode discovery response: field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// rawCodec marshals requests as protobuf and reads responses with
// parseResponse. Its name is "proto", so the server sees ordinary gRPC.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return proto.Marshal(m)
}

func (rawCodec) Unmarshal(b []byte, v any) error {
	r, ok := v.(*response)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	return parseResponse(b, r)
}

func (rawCodec) Name() string { return "proto" }

// workload is one simulated workload: what its proxy's node metadata says.
type workload struct {
	Index                                         int
	ID, Service, Namespace, ServiceAccount        string
	ServicePort                                   int
	InboundAddr, OutboundAddr, AppAddr, AdminAddr string
}

// partialSotW is the client feature by which weft-proxy asks for EDS
// responses that carry only what changed (docs/xds.md, "Subscriptions").
const partialSotW = "com.github.weft-mesh.partial-sotw"

// node is the xDS node a weft-proxy sends for w (docs/xds.md, "Node"),
// declaring features.
func (w workload) node(features []string) (*corev3.Node, error) {
	md, err := structpb.NewStruct(map[string]any{
		"service":         w.Service,
		"namespace":       w.Namespace,
		"service_account": w.ServiceAccount,
		"labels":          map[string]any{"app": w.Service, "version": "v1"},
		"service_port":    w.ServicePort,
		"inbound_addr":    w.InboundAddr,
		"outbound_addr":   w.OutboundAddr,
		"app_addr":        w.AppAddr,
		"admin_addr":      w.AdminAddr,
	})
	if err != nil {
		return nil, fmt.Errorf("node metadata of %s: %w", w.ID, err)
	}
	return &corev3.Node{
		Id:                   w.ID,
		Cluster:              w.Service,
		Metadata:             md,
		UserAgentName:        "weft-proxy",
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "cpbench"},
		ClientFeatures:       features,
	}, nil
}

// dial returns a lazy TLS connection to the control plane's xDS port,
// verified against pool as weft-proxy verifies it.
func dial(addr string, pool *x509.CertPool) (*grpc.ClientConn, error) {
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, ServerName: "weft-control-plane"})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithUserAgent("weft-proxy/cpbench"))
	if err != nil {
		return nil, fmt.Errorf("connect to xds at %s: %w", addr, err)
	}
	return conn, nil
}

// ackEvent says that at At, a proxy ACKed Version of one type.
type ackEvent struct {
	At      time.Time
	Version int64
}

// simProxy is one simulated proxy: an ADS stream that subscribes like
// weft-proxy and ACKs every response at once. It records when it ACKed
// each version of each type.
//
// Each type has its own version: the store revision at which the proxy's
// configuration of that type last changed (docs/xds.md, "Versions"). A
// change at revision R reaches a proxy as a version R or later of each
// type it touches, and the other types are not sent again, so the proxy
// has the change once it has ACKed a version R or later of every type
// that got one; which types those are is known once the mesh has settled.
type simProxy struct {
	w     workload
	token string
	// features are the node's client features: partialSotW, as
	// weft-proxy declares it, unless the run simulates older proxies.
	features []string
	// recvBytes counts the bytes of every response received (gRPC
	// message bytes, before TLS).
	recvBytes atomic.Int64

	first     chan struct{} // closed at the first response
	firstOnce sync.Once
	// maxAcked is the highest version ACKed of any type; -1 before the
	// first ACK.
	maxAcked atomic.Int64
	// typesAcked counts the types ACKed at least once.
	typesAcked atomic.Int32

	// lastAck is when the proxy last ACKed anything, in Unix nanoseconds.
	lastAck atomic.Int64

	mu     sync.Mutex
	last   [numTypes]response
	events [numTypes][]ackEvent
}

// maxEvents bounds what one proxy remembers; a run pushes far fewer versions.
const maxEvents = 100_000

func newSimProxy(w workload, token string) *simProxy {
	p := &simProxy{w: w, token: token, first: make(chan struct{}), features: []string{partialSotW}}
	p.maxAcked.Store(-1)
	return p
}

// run opens the proxy's ADS stream on conn and ACKs responses until ctx
// ends or the stream fails. With registerOnly it subscribes to CDS, waits
// for the first response (the control plane has then registered the
// workload) and closes the stream.
func (p *simProxy) run(ctx context.Context, conn *grpc.ClientConn, registerOnly bool) error {
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.token))
	defer cancel()
	st, err := conn.NewStream(ctx, adsStreamDesc, adsMethod, grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(maxMessage))
	if err != nil {
		return p.streamErr("open ads stream", err)
	}
	node, err := p.w.node(p.features)
	if err != nil {
		return err
	}
	types := typeURLs[:]
	if registerOnly {
		types = types[:1]
	}
	for i, url := range types {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: url}
		if i == 0 {
			req.Node = node
		}
		if err := st.SendMsg(req); err != nil {
			return p.streamErr("subscribe", err)
		}
	}
	for {
		var r response
		if err := st.RecvMsg(&r); err != nil {
			return p.streamErr("receive", err)
		}
		p.recvBytes.Add(int64(r.Bytes))
		p.firstOnce.Do(func() { close(p.first) })
		if registerOnly {
			return nil
		}
		ti := typeIndex(r.TypeURL)
		if ti < 0 {
			return fmt.Errorf("proxy %s: response of unexpected type %q", p.w.ID, r.TypeURL)
		}
		v, err := strconv.ParseInt(r.Version, 10, 64)
		if err != nil {
			return fmt.Errorf("proxy %s: %s version %q is not a store revision", p.w.ID, TypeNames[ti], r.Version)
		}
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: r.TypeURL, VersionInfo: r.Version, ResponseNonce: r.Nonce}
		if err := st.SendMsg(ack); err != nil {
			return p.streamErr("ack", err)
		}
		p.acked1(ti, v, r, time.Now())
	}
}

func (p *simProxy) streamErr(doing string, err error) error {
	if status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("proxy %s: %s: %w", p.w.ID, doing, err)
}

// acked1 records that type ti was ACKed at version v at time at.
func (p *simProxy) acked1(ti int, v int64, r response, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events[ti]) == 0 {
		p.typesAcked.Add(1)
	}
	p.last[ti] = r
	p.lastAck.Store(at.UnixNano())
	if len(p.events[ti]) < maxEvents {
		p.events[ti] = append(p.events[ti], ackEvent{At: at, Version: v})
	}
	if v > p.maxAcked.Load() {
		p.maxAcked.Store(v)
	}
}

// reached says when a proxy had a change: At, when it had ACKed a version
// at least the change's of every type that got one; Types, those types;
// Version, the lowest of those versions.
type reached struct {
	At      time.Time
	Types   []string
	Version int64
}

// reachedAt returns when the proxy had first ACKed version v or later of
// every type that has one, and false if no type has one. Call it once
// the mesh has settled, when no more versions are on their way.
func (p *simProxy) reachedAt(v int64) (reached, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var r reached
	for ti, evs := range p.events {
		for _, e := range evs {
			if e.Version >= v {
				if e.At.After(r.At) {
					r.At = e.At
				}
				if len(r.Types) == 0 || e.Version < r.Version {
					r.Version = e.Version
				}
				r.Types = append(r.Types, TypeNames[ti])
				break
			}
		}
	}
	return r, len(r.Types) > 0
}

// lastResponses returns the last response of each type.
func (p *simProxy) lastResponses() [numTypes]response {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *simProxy) lastAckTime() time.Time { return time.Unix(0, p.lastAck.Load()) }
