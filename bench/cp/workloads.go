package cpbench

import "fmt"

// makeWorkloads lays out the simulated mesh: endpoint j belongs to service
// j mod Services, so every service gets Endpoints/Services of them. The
// first Proxies endpoints are the live, measured proxies (one per service
// while Proxies <= Services); the rest are endpoint-only. extras are
// further workloads of existing services, one per endpoint change.
func makeWorkloads(sz Size, changes int) (live, parked, extras []workload) {
	for j := 0; j < sz.Endpoints; j++ {
		w := newWorkload(sz, j, j%sz.Services)
		if j < sz.Proxies {
			live = append(live, w)
		} else {
			parked = append(parked, w)
		}
	}
	for k := 0; k < changes; k++ {
		extras = append(extras, newWorkload(sz, sz.Endpoints+k, (k*7+3)%sz.Services))
	}
	return live, parked, extras
}

// newWorkload is endpoint j of service s. Every workload has its own
// loopback address (127.a.b.c, never dialled) and weft's usual ports; its
// service account is its service's name, so each service has its own
// identity and token.
func newWorkload(sz Size, j, s int) workload {
	svc := fmt.Sprintf("svc-%04d", s)
	ns := fmt.Sprintf("bench-%d", s%sz.Namespaces)
	host := fmt.Sprintf("127.%d.%d.%d", 1+j/(254*254), 1+(j/254)%254, 1+j%254)
	return workload{
		Index:          j,
		ID:             fmt.Sprintf("sidecar~%s-%08x.%s", svc, j, ns),
		Service:        svc,
		Namespace:      ns,
		ServiceAccount: svc,
		ServicePort:    9080,
		InboundAddr:    host + ":15006",
		OutboundAddr:   host + ":15001",
		AppAddr:        host + ":8080",
		AdminAddr:      host + ":15000",
	}
}

// fullPushYAML is one apply that changes four of the five types of every
// proxy's configuration, so that every proxy is sent its whole
// configuration but the ROOTCA secret again: a mesh-wide
// PeerAuthentication (STRICT: the inbound listener loses its plaintext
// chain; LDS), and for w's service a DestinationRule subset (a new
// cluster and endpoint set; CDS, EDS) and a VirtualService routing to it
// (RDS).
func fullPushYAML(w workload) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: cpbench-full-push
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: cpbench-full-push
  namespace: %[1]s
spec:
  host: %[2]s.%[1]s.svc.cluster.local
  subsets:
  - name: full-push
    labels:
      version: v1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: cpbench-full-push
  namespace: %[1]s
spec:
  hosts:
  - %[2]s.%[1]s.svc.cluster.local
  http:
  - route:
    - destination:
        host: %[2]s.%[1]s.svc.cluster.local
        subset: full-push
`, w.Namespace, w.Service)
}

// destinationRuleYAML is config change i: a DestinationRule giving w's
// service a subset, which adds one cluster and one endpoint set to every
// proxy's configuration.
func destinationRuleYAML(w workload, i int) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: cpbench-%d
  namespace: %s
spec:
  host: %s.%s.svc.cluster.local
  subsets:
  - name: v1
    labels:
      version: v1
`, i, w.Namespace, w.Service, w.Namespace)
}

// pushSize is what one proxy is sent per push: resources and bytes of the
// last response of each type.
func pushSize(p *simProxy) []TypeSize {
	var out []TypeSize
	for i, r := range p.lastResponses() {
		out = append(out, TypeSize{Type: TypeNames[i], Resources: r.Resources, Bytes: r.Bytes})
	}
	return out
}
