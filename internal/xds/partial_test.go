package xds

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weft-mesh/weft/internal/mesh"
)

// servicesMesh is a mesh of services in namespace default, each with the
// given number of workloads (zero: the service is gone).
func servicesMesh(version string, workloads map[string]int) *mesh.Snapshot {
	names := make([]string, 0, len(workloads))
	for n := range workloads {
		names = append(names, n)
	}
	sort.Strings(names)
	var ws []*mesh.Workload
	for _, svc := range names {
		for i := range workloads[svc] {
			ws = append(ws, &mesh.Workload{
				ID: fmt.Sprintf("sidecar~%s-%d.default", svc, i), Service: svc, Namespace: "default", ServiceAccount: svc,
				ServicePort: 9080, InboundAddr: fmt.Sprintf("127.0.%d.%d:15006", serviceIndex(svc), i+1), AppAddr: "127.0.0.1:8080",
			})
		}
	}
	return mesh.NewSnapshot(version, "", ws, nil, nil)
}

var (
	serviceIndexMu sync.Mutex
	serviceIndexes = map[string]int{}
)

// serviceIndex numbers services from 1 in the order tests first use them,
// so that a service's workloads keep their addresses whatever else is in
// the mesh.
func serviceIndex(svc string) int {
	serviceIndexMu.Lock()
	defer serviceIndexMu.Unlock()
	i, ok := serviceIndexes[svc]
	if !ok {
		i = len(serviceIndexes) + 1
		serviceIndexes[svc] = i
	}
	return i
}

func cla(svc string) string { return "outbound|9080||" + svc + ".default.svc.cluster.local" }

// partialNode is a weft-proxy that merges EDS responses.
func partialNode(t *testing.T, id string) *corev3.Node {
	n := reviewsNode(t)
	n.Id = id
	n.ClientFeatures = []string{featurePartialSotW}
	return n
}

// subscribeAs is subscribe with a node of the test's choosing.
func subscribeAs(t *testing.T, client discoverygrpc.AggregatedDiscoveryServiceClient, n *corev3.Node, versions map[string]string) *adsClient {
	t.Helper()
	c := subscribeStream(t, client)
	for i, tn := range TypeNames {
		req := &discoverygrpc.DiscoveryRequest{TypeUrl: tn.URL, VersionInfo: versions[tn.Short]}
		if i == 0 {
			req.Node = n
		}
		if err := c.stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// claNames lists, sorted, the endpoint sets a response carries.
func claNames(t *testing.T, r *discoverygrpc.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		var m endpointv3.ClusterLoadAssignment
		if err := a.UnmarshalTo(&m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.GetClusterName())
	}
	slices.Sort(out)
	return out
}

func wantCLAs(t *testing.T, r *discoverygrpc.DiscoveryResponse, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := claNames(t, r); !slices.Equal(got, want) {
		t.Errorf("EDS version %s carries %q, want %q", r.GetVersionInfo(), got, want)
	}
}

func TestPartialEDS(t *testing.T) {
	three := map[string]int{"reviews": 2, "ratings": 1, "details": 1}

	t.Run("a new stream gets every endpoint set, then only the changed one", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := subscribeAs(t, client, partialNode(t, "sidecar~p-1.default"), nil)
		got := c.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")
		wantCLAs(t, got["EDS"], cla("reviews"), cla("ratings"), cla("details"))

		s.Update(servicesMesh("11", map[string]int{"reviews": 3, "ratings": 1, "details": 1}))
		wantCLAs(t, c.expect("11", "EDS")["EDS"], cla("reviews"))
		s.Update(servicesMesh("12", map[string]int{"reviews": 3, "ratings": 2, "details": 1}))
		wantCLAs(t, c.expect("12", "EDS")["EDS"], cla("ratings"))

		// The proxy is in sync with revision 12 for every type.
		waitFor(t, func() bool { return s.Status()[0].XDS["EDS"].Acked == "12" })
		for short, ts := range s.Status()[0].XDS {
			if ts.Sent != "12" || ts.Acked != "12" {
				t.Errorf("%s status %+v, want sent and acked 12", short, ts)
			}
		}

		// A proxy that connects holding the current versions (from an
		// earlier stream, perhaps to another control plane) is sent nothing
		// until the next change, and then every endpoint set: this stream
		// does not know which it holds.
		const id2 = "sidecar~p-2.default"
		c2 := subscribeAs(t, client, partialNode(t, id2),
			map[string]string{"CDS": "12", "EDS": "12", "LDS": "12", "RDS": "12", "SDS": "12"})
		waitFor(t, func() bool {
			for _, st := range s.Status() {
				if st.ID == id2 && len(st.XDS) == numTypes {
					return true // its five requests are in: nothing to send
				}
			}
			return false
		})
		s.Update(servicesMesh("13", map[string]int{"reviews": 3, "ratings": 2, "details": 2}))
		wantCLAs(t, c2.expect("13", "EDS")["EDS"], cla("reviews"), cla("ratings"), cla("details"))
	})

	t.Run("a removed service sends an empty EDS response; when it comes back its endpoints are sent again", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := subscribeAs(t, client, partialNode(t, "sidecar~p-1.default"), nil)
		c.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")

		s.Update(servicesMesh("11", map[string]int{"reviews": 2, "ratings": 1}))
		got := c.expect("11", "CDS", "EDS", "RDS")
		wantCLAs(t, got["EDS"])

		// The same workload again: the same bytes as in version 10, which
		// the proxy dropped with details' cluster.
		s.Update(servicesMesh("12", three))
		got = c.expect("12", "CDS", "EDS", "RDS")
		wantCLAs(t, got["EDS"], cla("details"))
	})

	t.Run("a service removed and back before EDS is answered is sent again", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := subscribeAs(t, client, partialNode(t, "sidecar~p-1.default"), nil)
		var eds *discoverygrpc.DiscoveryResponse
		for _, want := range []string{"CDS", "EDS", "LDS", "RDS", "SDS"} {
			r := c.next()
			if shortType(r.GetTypeUrl()) != want {
				t.Fatalf("got %s, want %s", shortType(r.GetTypeUrl()), want)
			}
			if want == "EDS" {
				eds = r // not answered yet: no EDS response can go out
				continue
			}
			c.ack(r)
		}
		s.Update(servicesMesh("11", map[string]int{"reviews": 2, "ratings": 1}))
		c.expect("11", "CDS", "RDS") // the proxy drops details' endpoints
		s.Update(servicesMesh("12", three))
		c.expect("12", "CDS", "RDS")
		c.ack(eds)
		wantCLAs(t, c.expect("12", "EDS")["EDS"], cla("details"))
	})

	t.Run("after a NACK of EDS the next response carries everything", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := subscribeAs(t, client, partialNode(t, "sidecar~p-1.default"), nil)
		c.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")
		s.Update(servicesMesh("11", map[string]int{"reviews": 3, "ratings": 1, "details": 1}))
		r := c.next()
		wantCLAs(t, r, cla("reviews"))
		c.nack(r, "10")
		waitFor(t, func() bool { return s.Status()[0].XDS["EDS"].NackMessage != "" })
		s.Update(servicesMesh("12", map[string]int{"reviews": 3, "ratings": 2, "details": 1}))
		wantCLAs(t, c.expect("12", "EDS")["EDS"], cla("reviews"), cla("ratings"), cla("details"))
		s.Update(servicesMesh("13", map[string]int{"reviews": 3, "ratings": 2, "details": 2}))
		wantCLAs(t, c.expect("13", "EDS")["EDS"], cla("details"))
	})

	t.Run("a proxy that does not declare the feature gets every endpoint set", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := subscribe(t, client, nil) // reviewsNode: no client features
		c.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS")
		s.Update(servicesMesh("11", map[string]int{"reviews": 3, "ratings": 1, "details": 1}))
		wantCLAs(t, c.expect("11", "EDS")["EDS"], cla("reviews"), cla("ratings"), cla("details"))
	})

	t.Run("a subscription by name gets every endpoint set it names", func(t *testing.T) {
		s, _, client := startServer(t)
		s.Update(servicesMesh("10", three))
		c := subscribeStream(t, client)
		n := partialNode(t, "sidecar~grpc-1.default")
		for _, req := range []*discoverygrpc.DiscoveryRequest{
			{Node: n, TypeUrl: resource.ClusterType},
			{TypeUrl: resource.EndpointType, ResourceNames: []string{cla("reviews"), cla("ratings")}},
		} {
			if err := c.stream.Send(req); err != nil {
				t.Fatal(err)
			}
		}
		// ACKs name the resources again, as a subscription by name must.
		ack := func(r *discoverygrpc.DiscoveryResponse, names ...string) {
			t.Helper()
			if err := c.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), VersionInfo: r.GetVersionInfo(),
				ResponseNonce: r.GetNonce(), ResourceNames: names}); err != nil {
				t.Fatal(err)
			}
		}
		ack(c.next())
		eds := c.next()
		wantCLAs(t, eds, cla("reviews"), cla("ratings"))
		ack(eds, cla("reviews"), cla("ratings"))
		s.Update(servicesMesh("11", map[string]int{"reviews": 3, "ratings": 1, "details": 1}))
		eds = c.next()
		if eds.GetVersionInfo() != "11" {
			t.Fatalf("EDS version %s, want 11", eds.GetVersionInfo())
		}
		wantCLAs(t, eds, cla("reviews"), cla("ratings"))
	})
}

func TestAnEndpointChangeSendsManyProxiesOnlyTheChangedEndpoints(t *testing.T) {
	s, _, client := startServer(t)
	workloads := map[string]int{}
	for i := range 50 {
		workloads[fmt.Sprintf("svc-%02d", i)] = 2
	}
	s.Update(servicesMesh("10", workloads))
	const proxies = 20
	var cs []*adsClient
	for i := range proxies {
		c := subscribeAs(t, client, partialNode(t, fmt.Sprintf("sidecar~p-%d.default", i)), nil)
		if got := c.expect("10", "CDS", "EDS", "LDS", "RDS", "SDS"); len(got["EDS"].GetResources()) != 50 {
			t.Fatalf("proxy %d: first EDS response carries %d endpoint sets, want 50", i, len(got["EDS"].GetResources()))
		}
		cs = append(cs, c)
	}
	for v, svc := range []string{"svc-07", "svc-31", "svc-07"} {
		workloads[svc]++
		version := fmt.Sprint(11 + v)
		s.Update(servicesMesh(version, workloads))
		for _, c := range cs {
			wantCLAs(t, c.expect(version, "EDS")["EDS"], cla(svc))
		}
	}
	waitFor(t, func() bool {
		for _, st := range s.Status() {
			if st.XDS["EDS"].Acked != "13" {
				return false
			}
		}
		return true
	})
}

func TestHeldSet(t *testing.T) {
	v1, err := newMeshConfig(servicesMesh("1", map[string]int{"a": 1, "b": 1}), nil)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := newMeshConfig(servicesMesh("2", map[string]int{"a": 1, "b": 2}), v1)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("unchanged resources share the previous snapshot's bytes", func(t *testing.T) {
		i, _ := v1.endpoints.lookup(cla("a"))
		j, _ := v2.endpoints.lookup(cla("a"))
		if &v1.endpoints.entries[i][0] != &v2.endpoints.entries[j][0] {
			t.Error("a's endpoints were marshalled anew")
		}
		i, _ = v1.endpoints.lookup(cla("b"))
		j, _ = v2.endpoints.lookup(cla("b"))
		if &v1.endpoints.entries[i][0] == &v2.endpoints.entries[j][0] {
			t.Error("b's changed endpoints share the old bytes")
		}
	})
	t.Run("clusters name the endpoint sets they use", func(t *testing.T) {
		if _, ok := v2.clusters.refs[cla("b")]; !ok || len(v2.clusters.refs) != 2 {
			t.Errorf("refs = %v", v2.clusters.refs)
		}
	})
	t.Run("what the proxy holds is left out", func(t *testing.T) {
		h := &heldSet{parts: []*resourceSet{v1.endpoints}}
		anys, _ := selectResources([]*resourceSet{v2.endpoints}, nil, h)
		if len(anys) != 1 {
			t.Fatalf("%d resources, want b's alone", len(anys))
		}
		if anys, _ := selectResources([]*resourceSet{v1.endpoints}, nil, h); len(anys) != 0 {
			t.Errorf("%d resources for what the proxy holds, want none", len(anys))
		}
	})
	t.Run("clusters sent without a service drop its endpoints", func(t *testing.T) {
		v3, err := newMeshConfig(servicesMesh("3", map[string]int{"b": 2}), v2)
		if err != nil {
			t.Fatal(err)
		}
		h := &heldSet{parts: []*resourceSet{v2.endpoints}}
		h.clustersSent([]*resourceSet{v2.clusters})
		if len(h.gone) != 0 {
			t.Fatalf("the same snapshot's clusters dropped %v", h.gone)
		}
		h.clustersSent([]*resourceSet{v3.clusters})
		if _, ok := h.gone[cla("a")]; !ok || len(h.gone) != 1 {
			t.Fatalf("gone = %v, want a's endpoints", h.gone)
		}
		anys, _ := selectResources([]*resourceSet{v2.endpoints}, nil, h)
		if len(anys) != 1 {
			t.Errorf("%d resources, want a's again", len(anys))
		}
	})
}
