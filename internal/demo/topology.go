// Package demo runs weft's demo: a bookinfo-style mesh of real processes on
// loopback. Run starts a control plane, the demo services (productpage,
// reviews v1/v2/v3 and ratings, each a `weft demo-app` process behind its own
// weft-proxy), a load generator behind its own weft-proxy, applies Istio
// routing for reviews and prints per-second traffic statistics until it is
// stopped. The demo app itself (App, RunApp) lives here too.
package demo

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Namespace is the namespace every demo workload registers in.
const Namespace = "default"

// ServicePort is the port clients use for every demo service, as in Istio's
// bookinfo: http://reviews:9080/.
const ServicePort = 9080

// LoadgenService is the service name of the load generator's workload: the
// demo process itself, behind its own weft-proxy.
const LoadgenService = "loadgen"

// EntryURL is what the load generator requests, through its sidecar.
var EntryURL = serviceURL("productpage", "/productpage")

// SplitService is the service whose traffic split the demo shows; the
// productpage response names the version of it that answered.
const SplitService = "reviews"

// Workload is one demo workload: a service version whose app runs behind its
// own sidecar.
type Workload struct {
	Service string
	Version string
	// Upstream is the URL the app calls, through its sidecar, for every
	// request it serves; empty for a service that calls nothing.
	Upstream string
}

// Name is the workload's name in output and log file names: "reviews-v2".
func (w Workload) Name() string { return w.Service + "-" + w.Version }

// Labels are the workload's labels, as Istio's bookinfo sets them; the
// DestinationRule's subsets select on "version".
func (w Workload) Labels() map[string]string {
	return map[string]string{"app": w.Service, "version": w.Version}
}

// labelsFlag formats the labels as weft-proxy's --labels value: "app=reviews,version=v2".
func (w Workload) labelsFlag() string {
	labels := w.Labels()
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, ",")
}

// Topology lists the demo's application workloads, callers first. Each runs
// as `weft demo-app` behind its own weft-proxy.
var Topology = []Workload{
	{Service: "productpage", Version: "v1", Upstream: serviceURL(SplitService, "/reviews")},
	{Service: "reviews", Version: "v1"},
	{Service: "reviews", Version: "v2", Upstream: serviceURL("ratings", "/ratings")},
	{Service: "reviews", Version: "v3", Upstream: serviceURL("ratings", "/ratings")},
	{Service: "ratings", Version: "v1"},
}

// Loadgen is the load generator's workload; it has no app process, only a
// sidecar (and a stub app address served by the demo process).
var Loadgen = Workload{Service: LoadgenService, Version: "v1"}

// SplitVersions lists the versions of SplitService in the topology, sorted.
func SplitVersions() []string {
	var versions []string
	for _, w := range Topology {
		if w.Service == SplitService {
			versions = append(versions, w.Version)
		}
	}
	sort.Strings(versions)
	return versions
}

// serviceURL is the URL of a mesh service as an app addresses it through its
// sidecar: the short service name and the service port.
func serviceURL(service, path string) string {
	u := url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", service, ServicePort), Path: path}
	return u.String()
}
