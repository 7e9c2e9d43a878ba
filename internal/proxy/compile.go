package proxy

import (
	"crypto/tls"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/forward"
	"github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/proxy/listener"
	"github.com/weft-mesh/weft/internal/proxy/mtls"
	"github.com/weft-mesh/weft/internal/proxy/tcpproxy"
	"github.com/weft-mesh/weft/internal/proxy/xdsclient"
)

// compiled is the result of one compile, kept for the config dump.
type compiled struct {
	Config *forward.Config `json:"config"`
	// Inbound is how the inbound listener treats new connections.
	Inbound inboundDump `json:"inbound_connections"`
	// Secrets are the secrets in use (the trust bundle), described.
	Secrets    map[string]*xdsclient.Secret `json:"secrets"`
	Versions   map[string]string            `json:"versions"`
	Warnings   []string                     `json:"warnings"`
	CompiledAt time.Time                    `json:"compiled_at"`
}

// inboundDump describes the inbound listener's connection policy.
type inboundDump struct {
	// Inspect is true when connections are told apart by their first byte.
	Inspect bool `json:"inspect"`
	// TLS and Plaintext say which connections are served.
	TLS       bool `json:"tls"`
	Plaintext bool `json:"plaintext"`
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
	if missing := res.MissingSecrets(); len(missing) > 0 {
		// As Envoy keeps a cluster warming until its secrets arrive: the
		// previous configuration serves until then (SDS follows RDS in
		// the same push, so this lasts a moment).
		p.log.Info("waiting for secrets before applying the configuration", "missing", missing, "versions", res.Versions)
		return
	}
	first := p.cfg.Load() == nil
	cfg, inbound, warnings := p.compile(res)
	// The listener policy first: a connection accepted from now on is
	// classified as the new configuration says.
	p.inboundPolicy.Store(inbound)
	p.cfg.Store(cfg)
	p.dump.Store(&compiled{
		Config:  cfg,
		Inbound: inboundDump{Inspect: inbound.Inspect, TLS: inbound.TLS != nil, Plaintext: inbound.Plaintext},
		Secrets: res.Secrets, Versions: res.Versions, Warnings: warnings, CompiledAt: time.Now(),
	})
	for _, w := range warnings {
		p.log.Warn("inconsistent configuration", "problem", w)
	}
	if first {
		p.log.Info("first full configuration received; ready", "versions", res.Versions)
	}
}

// compile builds the runtime configuration and the inbound listener's
// connection policy. It cannot fail: everything was validated when
// decoded, and apply checked that the secrets referred to are there.
// References that do not resolve (a route to a cluster not sent, a listener
// whose route configuration has not arrived) are reported as warnings and
// answered at request time with a 503 naming them, as Envoy does.
func (p *Proxy) compile(res xdsclient.Resources) (*forward.Config, *listener.Policy, []string) {
	cfg := &forward.Config{
		Listeners: make(map[string]*forward.Listener, len(res.Listeners)),
		Clusters:  make(map[string]*cluster.Cluster, len(res.Clusters)),
	}
	warnings := []string{}
	id := p.Identity()
	var roots *mtls.Roots
	if s := res.Secrets[xdsclient.RootCASecret]; s != nil {
		roots = p.sec.roots(s.Roots)
	}
	p.roots.Store(roots)

	built := make(map[string]builtCluster, len(res.Clusters))
	for name, spec := range res.Clusters {
		eps := spec.Endpoints
		if spec.Type == xdsclient.ClusterEDS {
			eps = nil
			if a := res.Endpoints[spec.ServiceName]; a != nil {
				eps = a.Endpoints
			}
		}
		var (
			rt   http.RoundTripper
			opts []cluster.Option
		)
		switch {
		case spec.TLS != nil && roots == nil:
			// apply holds back configurations with missing secrets; never
			// fall back to plaintext if one slips through.
			rt = forward.Unavailable("trust bundle " + xdsclient.RootCASecret + " not received")
			opts = append(opts, cluster.WithTLS(&cluster.TLS{SNI: spec.TLS.SNI, SubjectAltNames: spec.TLS.SubjectAltNames}))
		case spec.TLS != nil:
			rt = p.transports.ForTLS(spec.ConnectTimeout, forward.UpstreamTLS{
				Roots: roots, Identity: id, SNI: spec.TLS.SNI, SubjectAltNames: spec.TLS.SubjectAltNames,
				KeepHTTP1: spec.TLS.KeepHTTP1,
			})
			opts = append(opts, cluster.WithTLS(&cluster.TLS{SNI: spec.TLS.SNI, SubjectAltNames: spec.TLS.SubjectAltNames}))
		default:
			rt = p.transports.For(spec.ConnectTimeout)
		}
		// The same transport means the same connect timeout and TLS
		// settings.
		if prev, ok := p.clusters[name]; ok && prev.c.Transport() == rt && slices.Equal(prev.c.Endpoints(), eps) {
			built[name] = prev
			cfg.Clusters[name] = prev.c
			continue
		}
		c := cluster.New(name, spec.ConnectTimeout, eps, rt, opts...)
		built[name] = builtCluster{connectTimeout: spec.ConnectTimeout, c: c}
		cfg.Clusters[name] = c
	}
	p.clusters = built
	p.transports.Sweep()

	inbound := listener.PlaintextOnly
	if l := res.Listeners["inbound"]; l != nil {
		inbound = &listener.Policy{Inspect: l.InspectTLS, Plaintext: l.Plaintext, Identity: id}
		if l.TLS != nil && roots != nil { // without roots (see apply), TLS connections are closed
			inbound.TLS = p.sec.serverConfig(roots, id, l.TLS.ALPN)
		}
		if l.TCP != nil {
			in := &tcpproxy.Inbound{
				RBAC: l.TCP.RBAC, Cluster: cfg.Clusters[l.TCP.Cluster], ClusterName: l.TCP.Cluster,
				Log: p.log.With("component", "tcpproxy"), Stats: &p.tcpStats,
			}
			inbound.TCP = in.Serve
			if in.Cluster == nil {
				warnings = append(warnings, fmt.Sprintf("listener inbound: tcp_proxy cluster %s not received", l.TCP.Cluster))
			}
		}
	}

	for name, l := range res.Listeners {
		if l.TCP != nil {
			continue // connections go to inbound.TCP, never to the HTTP engine
		}
		fl := &forward.Listener{
			Name: name, RouteConfigName: l.RouteConfigName, Routes: l.InlineRoutes,
			SetClientCert:       l.ForwardClientCert == "SANITIZE_SET",
			DropInternalHeaders: name == "inbound",
			RefusePlaintext:     l.InspectTLS && !l.Plaintext,
			RefuseTLS:           l.InspectTLS && l.TLS == nil,
			HTTP:                l.HTTPFilters,
		}
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
	return cfg, inbound, warnings
}

// security is the TLS state compile keeps from one update to the next, so
// that an update that changes nothing about TLS changes nothing for it:
// the parsed trust bundle (with its cache of verified peers) and the
// inbound listener's TLS configuration, whose session ticket keys clients'
// resumable sessions depend on. Owned by the xDS client's goroutine.
type security struct {
	bundle    *mtls.Roots
	server    *tls.Config
	serverKey serverKey
}

type serverKey struct {
	roots    [32]byte
	identity identity.Source
	alpn     string
}

// roots returns the bundle in use if r is the same bundle, r otherwise.
func (s *security) roots(r *mtls.Roots) *mtls.Roots {
	if s.bundle == nil || s.bundle.Digest() != r.Digest() {
		s.bundle = r
	}
	return s.bundle
}

// serverConfig returns the inbound TLS configuration, the previous one
// when nothing it is built from changed.
func (s *security) serverConfig(roots *mtls.Roots, id identity.Source, alpn []string) *tls.Config {
	k := serverKey{roots.Digest(), id, fmt.Sprint(alpn)}
	if s.server == nil || s.serverKey != k {
		s.server, s.serverKey = mtls.ServerConfig(roots, id, alpn), k
	}
	return s.server
}
