package xds

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
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

	// refs, for a set of clusters, are the endpoint sets (EDS service
	// names) its EDS clusters use.
	refs map[string]struct{}
	// coveredBy, when set, is a set of clusters whose refs name every
	// resource of this one (the endpoint sets of a consistent snapshot).
	coveredBy *resourceSet

	indexOnce sync.Once
	index     map[string]int // names' positions, built on first lookup
}

// lookup returns the position of the resource called name.
func (rs *resourceSet) lookup(name string) (int, bool) {
	rs.indexOnce.Do(func() {
		rs.index = make(map[string]int, len(rs.names))
		for i, n := range rs.names {
			rs.index[n] = i
		}
	})
	i, ok := rs.index[name]
	return i, ok
}

// marshalSet marshals rs, deterministically, so that equal resources have
// equal bytes and equal digests.
func marshalSet(typeURL string, rs []types.Resource) (*resourceSet, error) {
	return marshalShared(typeURL, rs, nil)
}

// marshalShared is marshalSet, except that a resource whose bytes are
// those of the resource of the same name in prev (the previous snapshot's
// set) shares prev's entry: memory holds one copy, and a stream that
// compares what a proxy holds with what it should (heldSet) compares
// equal pointers.
func marshalShared(typeURL string, rs []types.Resource, prev *resourceSet) (*resourceSet, error) {
	set := &resourceSet{names: make([]string, len(rs)), anys: make([]*anypb.Any, len(rs)), entries: make([][]byte, len(rs))}
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for i, r := range rs {
		b, err := opts.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("marshal %s: %w", cachev3.GetResourceName(r), err)
		}
		set.names[i] = cachev3.GetResourceName(r)
		if j, ok := prevIndex(prev, set.names[i]); ok && bytes.Equal(prev.anys[j].GetValue(), b) {
			set.entries[i], set.anys[i] = prev.entries[j], prev.anys[j]
		} else {
			set.entries[i], set.anys[i] = responseEntry(typeURL, b)
		}
		if c, ok := r.(*clusterv3.Cluster); ok && c.GetType() == clusterv3.Cluster_EDS {
			if set.refs == nil {
				set.refs = map[string]struct{}{}
			}
			set.refs[cmp.Or(c.GetEdsClusterConfig().GetServiceName(), c.GetName())] = struct{}{}
		}
		// Length-prefixed, so that no two lists hash the same bytes.
		fmt.Fprintf(h, "%d:%s%d:", len(set.names[i]), set.names[i], len(b))
		h.Write(b)
	}
	h.Sum(set.digest[:0])
	return set, nil
}

func prevIndex(prev *resourceSet, name string) (int, bool) {
	if prev == nil {
		return 0, false
	}
	return prev.lookup(name)
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

// newMeshConfig translates and marshals the shared part of snap. prev,
// the previous snapshot's, may be nil; unchanged resources share its
// bytes.
func newMeshConfig(snap *mesh.Snapshot, prev *meshConfig) (*meshConfig, error) {
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
	var prevClusters, prevEndpoints *resourceSet
	if prev != nil {
		prevClusters, prevEndpoints = prev.clusters, prev.endpoints
	}
	if mc.clusters, err = marshalShared(resource.ClusterType, sh.Clusters, prevClusters); err != nil {
		return nil, err
	}
	if mc.endpoints, err = marshalShared(resource.EndpointType, sh.Endpoints, prevEndpoints); err != nil {
		return nil, err
	}
	// Consistent (above): every endpoint set is one a cluster uses.
	mc.endpoints.coveredBy = mc.clusters
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
	// req is the last request of this type read on the proxy's stream
	// (onStreamRequest); CreateWatch serves only that one, so that a
	// request of a stream the proxy has replaced, read late, never takes
	// the place of the new stream's.
	req *discoverygrpc.DiscoveryRequest
	// held is what the proxy holds of this type, for the types whose
	// responses may leave out what it holds (partial.go); nil when the
	// server does not know, and the next response carries everything.
	held *heldSet
	// answered is what the responses sent on this stream answered (see
	// watch.wants); nil before the first.
	answered *answeredSet

	// What happened on the stream, in xDS versions.
	sent, acked, nackVersion, nackMessage string
}

// has says whether the configuration holds a resource called name.
func (ts *typeState) has(name string) bool {
	for _, p := range ts.parts {
		if _, ok := p.lookup(name); ok {
			return true
		}
	}
	return false
}

// watch is one open request of a stream: answer it once, on ch.
type watch struct {
	req *discoverygrpc.DiscoveryRequest
	ch  chan cachev3.Response
	// wildcard is set when the request subscribes to every resource;
	// otherwise names are those it subscribes to (never nil).
	wildcard bool
	names    map[string]struct{}
}

// response answers one request with a configuration: the parts of the
// proxy's configuration of the type when it was made, and their version.
// Which resources of them it carries is decided when the stream sends it
// (GetDiscoveryResponse), in the order the proxy will read them: all that
// the request subscribes to, or, when partial, only those the proxy does
// not hold already (partial.go). Its resources may be shared with other
// responses: nobody modifies them.
type response struct {
	s       *Server
	p       *proxyState // nil in tests of a response alone
	ti      int
	req     *discoverygrpc.DiscoveryRequest
	version string
	parts   []*resourceSet
	// names are the resources subscribed to; nil for a wildcard
	// subscription.
	names map[string]struct{}
	// partial is set when the response may leave out what the proxy
	// holds (partialAllowed).
	partial bool
}

var _ cachev3.Response = (*response)(nil)

// GetDiscoveryResponse returns the message to send. The ADS server calls
// it once per response, from the stream's goroutine, just before it sends
// it; a response dropped unsent (its stream ended) is never built, so
// what the server records of the proxy's state (heldSet) is what went on
// the stream, in stream order.
func (r *response) GetDiscoveryResponse() (*discoverygrpc.DiscoveryResponse, error) {
	resources, entries := r.content()
	out := &discoverygrpc.DiscoveryResponse{VersionInfo: r.version, TypeUrl: r.req.GetTypeUrl(), Resources: resources}
	rememberEntries(out, entries)
	return out, nil
}

func (r *response) GetRequest() *discoverygrpc.DiscoveryRequest { return r.req }
func (r *response) GetVersion() (string, error)                 { return r.version, nil }
func (r *response) GetResponseVersion() string                  { return r.version }

// GetReturnedResources is nil: go-control-plane's server keeps it for its
// own caches only; weft's tracks what each proxy holds itself (heldSet).
func (r *response) GetReturnedResources() map[string]string { return nil }
func (r *response) GetContext() context.Context             { return context.Background() }
