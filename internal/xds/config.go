package xds

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-mesh/weft/internal/mesh"
	"github.com/weft-mesh/weft/internal/translate"
)

// The xDS types, indexes into TypeNames and proxyState.xds, in push order.
const (
	cds = iota
	eds
	lds
	rds
	sds
	numTypes
)

func typeIndex(url string) int {
	for i, t := range TypeNames {
		if t.URL == url {
			return i
		}
	}
	return -1
}

// resourceSet is a list of resources of one type, marshalled once into the
// Anys that go into responses, and a digest of their bytes that tells
// whether a proxy's configuration of that type changed. It never changes
// once built and is shared by every proxy it is part of: the streams
// marshal their responses from the same Anys, which only copies bytes.
type resourceSet struct {
	names []string
	anys  []*anypb.Any
	// entries are the anys as they appear in a DiscoveryResponse on the
	// wire (field 2, length, the Any): responses are sent from these bytes
	// without encoding them again (see codec.go). Each Any's Value is a
	// slice of its entry, so the bytes exist once.
	entries [][]byte
	digest  [sha256.Size]byte
}

// marshalSet marshals rs, deterministically, so that equal resources have
// equal bytes and equal digests.
func marshalSet(typeURL string, rs []types.Resource) (*resourceSet, error) {
	set := &resourceSet{names: make([]string, len(rs)), anys: make([]*anypb.Any, len(rs)), entries: make([][]byte, len(rs))}
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for i, r := range rs {
		b, err := opts.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", cachev3.GetResourceName(r), err)
		}
		set.names[i] = cachev3.GetResourceName(r)
		set.entries[i], set.anys[i] = responseEntry(typeURL, b)
		// Length-prefixed, so that no two lists hash the same bytes.
		fmt.Fprintf(h, "%d:%s%d:", len(set.names[i]), set.names[i], len(b))
		h.Write(b)
	}
	h.Sum(set.digest[:0])
	return set, nil
}

// digestOf combines the digests of the parts of one proxy's configuration
// of one type.
func digestOf(parts []*resourceSet) [sha256.Size]byte {
	if len(parts) == 1 {
		return parts[0].digest
	}
	h := sha256.New()
	for _, p := range parts {
		h.Write(p.digest[:])
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// meshConfig is one mesh snapshot translated for the whole mesh: the
// resources every proxy shares, marshalled once, and the outbound routes
// of each namespace, built and marshalled the first time a proxy of the
// namespace needs them. Proxies' own resources are added by Server.push.
type meshConfig struct {
	gen     uint64 // Server.gen when published; higher is newer
	version string // the snapshot's version, a store revision
	shared  *translate.Shared
	// clusters, endpoints and secrets are shared by every proxy.
	clusters, endpoints, secrets *resourceSet

	mu     sync.Mutex
	routes map[string]*namespaceRoutes
}

type namespaceRoutes struct {
	once sync.Once
	set  *resourceSet
	err  error
}

// newMeshConfig translates and marshals the shared part of snap.
func newMeshConfig(snap *mesh.Snapshot) (*meshConfig, error) {
	sh, err := translate.NewShared(snap)
	if err != nil {
		return nil, err
	}
	// Every endpoint set a cluster names must be there; the per-proxy
	// resources refer only to fixed names (the outbound and inbound
	// route configurations) that each proxy always gets.
	cs, err := cachev3.NewSnapshot(snap.Version, map[resource.Type][]types.Resource{
		resource.ClusterType:  sh.Clusters,
		resource.EndpointType: sh.Endpoints,
	})
	if err == nil {
		err = cs.Consistent()
	}
	if err != nil {
		return nil, fmt.Errorf("inconsistent snapshot: %w", err)
	}
	mc := &meshConfig{version: snap.Version, shared: sh, routes: map[string]*namespaceRoutes{}}
	if mc.clusters, err = marshalSet(resource.ClusterType, sh.Clusters); err != nil {
		return nil, err
	}
	if mc.endpoints, err = marshalSet(resource.EndpointType, sh.Endpoints); err != nil {
		return nil, err
	}
	if mc.secrets, err = marshalSet(resource.SecretType, sh.Secrets); err != nil {
		return nil, err
	}
	return mc, nil
}

// outboundRoutes returns the outbound routes of the proxies in namespace,
// built once per snapshot however many proxies ask, from any goroutine.
func (mc *meshConfig) outboundRoutes(namespace string) (*resourceSet, error) {
	mc.mu.Lock()
	nr := mc.routes[namespace]
	if nr == nil {
		nr = &namespaceRoutes{}
		mc.routes[namespace] = nr
	}
	mc.mu.Unlock()
	nr.once.Do(func() {
		nr.set, nr.err = marshalSet(resource.RouteType, []types.Resource{mc.shared.OutboundRoutes(namespace)})
	})
	return nr.set, nr.err
}

// proxyConfig is everything one proxy is sent, by type: each type is the
// concatenation of its parts, shared ones and the proxy's own.
func (mc *meshConfig) proxyConfig(w *mesh.Workload) ([numTypes][]*resourceSet, error) {
	var out [numTypes][]*resourceSet
	own, err := mc.shared.ProxyResources(w)
	if err != nil {
		return out, err
	}
	listeners, err := marshalSet(resource.ListenerType, own.Listeners)
	if err != nil {
		return out, err
	}
	inboundCluster, err := marshalSet(resource.ClusterType, []types.Resource{own.InboundCluster})
	if err != nil {
		return out, err
	}
	inboundRoutes, err := marshalSet(resource.RouteType, own.InboundRouteResources())
	if err != nil {
		return out, err
	}
	outboundRoutes, err := mc.outboundRoutes(w.Namespace)
	if err != nil {
		return out, err
	}
	// The same resources, in the same order, as translate.Translate.
	out[cds] = []*resourceSet{inboundCluster, mc.clusters}
	out[eds] = []*resourceSet{mc.endpoints}
	out[lds] = []*resourceSet{listeners}
	out[rds] = []*resourceSet{outboundRoutes, inboundRoutes}
	out[sds] = []*resourceSet{mc.secrets}
	return out, nil
}

// typeState is what the server holds of one proxy's configuration of one
// type, and what the proxy did with it. Guarded by Server.mu.
type typeState struct {
	// ready is set once the proxy has a configuration of this type.
	ready bool
	parts []*resourceSet
	// digest identifies the content of parts.
	digest [sha256.Size]byte
	// version is the xDS version of parts: the store revision of the
	// snapshot in which this proxy's configuration of this type last
	// changed. It only grows, also across restarts, and does not move
	// when a snapshot leaves this type as it was, so nothing is resent.
	version string
	// meshVersion is the newest snapshot parts are current for.
	meshVersion string
	// watch is the proxy's open request for this type, parked until the
	// version differs from the one it holds.
	watch *watch

	// What happened on the stream, in xDS versions.
	sent, acked, nackVersion, nackMessage string
}

// watch is one open request of a stream: answer it once, on ch.
type watch struct {
	req *discoverygrpc.DiscoveryRequest
	sub cachev3.Subscription
	ch  chan cachev3.Response
}

// response answers one request with a configuration. Its resources may be
// shared with other responses: nobody modifies them.
type response struct {
	req       *discoverygrpc.DiscoveryRequest
	version   string
	resources []*anypb.Any
	entries   [][]byte // resources' wire entries, in the same order
}

var _ cachev3.Response = (*response)(nil)

// GetDiscoveryResponse returns a new message each time: the server sets
// the nonce on it.
func (r *response) GetDiscoveryResponse() (*discoverygrpc.DiscoveryResponse, error) {
	out := &discoverygrpc.DiscoveryResponse{VersionInfo: r.version, TypeUrl: r.req.GetTypeUrl(), Resources: r.resources}
	rememberEntries(out, r.entries)
	return out, nil
}

func (r *response) GetRequest() *discoverygrpc.DiscoveryRequest { return r.req }
func (r *response) GetVersion() (string, error)                 { return r.version, nil }
func (r *response) GetResponseVersion() string                  { return r.version }

// GetReturnedResources is nil: the cache does not track what each stream
// returned; every response is the complete set of its type.
func (r *response) GetReturnedResources() map[string]string { return nil }
func (r *response) GetContext() context.Context             { return context.Background() }

// resources lists what w asked for of ts: everything for a wildcard
// subscription (weft-proxy's), otherwise the resources it names.
func (ts *typeState) resources(w *watch) ([]*anypb.Any, [][]byte) {
	if len(ts.parts) == 1 && w.sub.IsWildcard() {
		return ts.parts[0].anys, ts.parts[0].entries
	}
	n := 0
	for _, p := range ts.parts {
		n += len(p.anys)
	}
	out := make([]*anypb.Any, 0, n)
	entries := make([][]byte, 0, n)
	var names map[string]struct{}
	if !w.sub.IsWildcard() {
		names = w.sub.SubscribedResources()
	}
	for _, p := range ts.parts {
		if names == nil {
			out = append(out, p.anys...)
			entries = append(entries, p.entries...)
			continue
		}
		for i, name := range p.names {
			if _, ok := names[name]; ok {
				out = append(out, p.anys[i])
				entries = append(entries, p.entries[i])
			}
		}
	}
	return out, entries
}
