package xds

import (
	"context"
	"fmt"
	"testing"

	"github.com/weft-mesh/weft/internal/mesh"
)

// benchMesh is issue 4's full size: 1,000 services in 10 namespaces,
// 10 endpoints each.
func benchMesh(version string) (*mesh.Snapshot, []*mesh.Workload) {
	var ws, proxies []*mesh.Workload
	for j := range 10000 {
		s := j % 1000
		w := &mesh.Workload{
			ID: fmt.Sprintf("sidecar~svc-%04d-%08x.bench-%d", s, j, s%10), Service: fmt.Sprintf("svc-%04d", s),
			Namespace: fmt.Sprintf("bench-%d", s%10), ServiceAccount: fmt.Sprintf("svc-%04d", s), ServicePort: 9080,
			Labels:      map[string]string{"app": fmt.Sprintf("svc-%04d", s), "version": "v1"},
			InboundAddr: fmt.Sprintf("127.%d.%d.%d:15006", 1+j/(254*254), 1+(j/254)%254, 1+j%254),
			AppAddr:     "127.0.0.1:8080", OutboundAddr: "127.0.0.1:15001",
		}
		ws = append(ws, w)
		if j < 1000 {
			proxies = append(proxies, w)
		}
	}
	snap := mesh.NewSnapshot(version, "", ws, nil, nil)
	snap.Security = mesh.Security{TrustDomain: "cluster.local", TrustBundlePEM: []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")}
	return snap, proxies
}

// BenchmarkUpdate is one snapshot pushed to 1,000 connected proxies,
// without streams: the translation and marshalling a push costs.
func BenchmarkUpdate(b *testing.B) {
	s := New(context.Background(), Options{})
	_, proxies := benchMesh("1")
	for i, w := range proxies {
		p := &proxyState{workload: w, streamID: int64(i), sentByNonce: map[string]string{}}
		s.proxies[w.ID] = p
	}
	snaps := make([]*mesh.Snapshot, b.N)
	for i := range snaps {
		snaps[i], _ = benchMesh(fmt.Sprint(i + 1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s.Update(snaps[i])
	}
}
