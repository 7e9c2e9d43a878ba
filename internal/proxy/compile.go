package proxy

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/forward"
	"github.com/weft-mesh/weft/internal/proxy/xdsclient"
)

// compiled is the result of one compile, kept for the config dump.
type compiled struct {
	Config     *forward.Config   `json:"config"`
	Versions   map[string]string `json:"versions"`
	Warnings   []string          `json:"warnings"`
	CompiledAt time.Time         `json:"compiled_at"`
}

// builtCluster remembers what a runtime cluster was built from, so the
// next compile can reuse it (and its round-robin position) when nothing
// about it changed.
type builtCluster struct {
	connectTimeout time.Duration
	c              *cluster.Cluster
}

// apply is the xDS client's OnUpdate: it compiles the last good resources
// into a new runtime configuration and publishes it. It runs on the xDS
// client's goroutine, one update at a time.
func (p *Proxy) apply(res xdsclient.Resources) {
	if !res.Complete {
		// Serving a partial configuration (clusters but no routes yet)
		// would turn into 404s that a moment later would have succeeded;
		// the "no configuration yet" 503 is the honest answer until then.
		return
	}
	first := p.cfg.Load() == nil
	cfg, warnings := p.compile(res)
	p.cfg.Store(cfg)
	p.dump.Store(&compiled{Config: cfg, Versions: res.Versions, Warnings: warnings, CompiledAt: time.Now()})
	for _, w := range warnings {
		p.log.Warn("inconsistent configuration", "problem", w)
	}
	if first {
		p.log.Info("first full configuration received; ready", "versions", res.Versions)
	}
}

// compile builds the runtime configuration. It cannot fail: everything was
// validated when decoded. References that do not resolve (a route to a
// cluster not sent, a listener whose route configuration has not arrived)
// are reported as warnings and answered at request time with a 503 naming
// them, as Envoy does.
func (p *Proxy) compile(res xdsclient.Resources) (*forward.Config, []string) {
	cfg := &forward.Config{
		Listeners: make(map[string]*forward.Listener, len(res.Listeners)),
		Clusters:  make(map[string]*cluster.Cluster, len(res.Clusters)),
	}
	warnings := []string{}

	built := make(map[string]builtCluster, len(res.Clusters))
	for name, spec := range res.Clusters {
		eps := spec.Endpoints
		if spec.Type == xdsclient.ClusterEDS {
			eps = nil
			if a := res.Endpoints[spec.ServiceName]; a != nil {
				eps = a.Endpoints
			}
		}
		if prev, ok := p.clusters[name]; ok && prev.connectTimeout == spec.ConnectTimeout && slices.Equal(prev.c.Endpoints(), eps) {
			built[name] = prev
			cfg.Clusters[name] = prev.c
			continue
		}
		c := cluster.New(name, spec.ConnectTimeout, eps, p.transports.For(spec.ConnectTimeout))
		built[name] = builtCluster{connectTimeout: spec.ConnectTimeout, c: c}
		cfg.Clusters[name] = c
	}
	p.clusters = built

	for name, l := range res.Listeners {
		fl := &forward.Listener{Name: name, RouteConfigName: l.RouteConfigName, Routes: l.InlineRoutes}
		if fl.Routes == nil {
			fl.Routes = res.Routes[l.RouteConfigName]
		}
		cfg.Listeners[name] = fl
		if fl.Routes == nil {
			warnings = append(warnings, fmt.Sprintf("listener %s: route configuration %q not received", name, l.RouteConfigName))
			continue
		}
		missing := map[string]bool{}
		fl.Routes.Clusters(func(c string) {
			if cfg.Clusters[c] == nil {
				missing[c] = true
			}
		})
		for _, c := range slices.Sorted(maps.Keys(missing)) {
			warnings = append(warnings, fmt.Sprintf("route %s: cluster %s not received", fl.Routes.Name(), c))
		}
	}
	slices.Sort(warnings)
	return cfg, warnings
}
