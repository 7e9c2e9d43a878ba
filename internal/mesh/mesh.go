// Package mesh is the immutable model of the whole mesh that one translation
// reads: the services and workloads the registry knows, and the routing
// policy the store holds. A Snapshot is built once per change and never
// modified afterwards, so translations may read it from many goroutines.
package mesh

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// DefaultDomainSuffix is the suffix of every mesh service's fully qualified
// name, as in Kubernetes: reviews.default.svc.cluster.local.
const DefaultDomainSuffix = "svc.cluster.local"

// Workload is one registered instance of a service: a weft-proxy and the app
// behind it.
type Workload struct {
	// ID is the proxy's xDS node ID; unique in the mesh.
	ID        string `json:"id"`
	Service   string `json:"service"`
	Namespace string `json:"namespace"`
	// ServiceAccount names the workload's identity within its namespace.
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	// ServicePort is the port clients use for the service (the "80" in reviews:80).
	ServicePort uint32 `json:"servicePort"`
	// Protocol is what the workload's app speaks on its port: ProtocolHTTP
	// (also when empty) or ProtocolTCP. It decides whether the inbound
	// listener serves HTTP requests or proxies TCP connections, and so
	// whether AuthorizationPolicy answers 403 or closes the connection.
	Protocol string `json:"protocol,omitempty"`
	// InboundAddr is the proxy's inbound listener, host:port; it is the
	// endpoint other proxies send the service's traffic to.
	InboundAddr  string `json:"inboundAddr"`
	OutboundAddr string `json:"outboundAddr,omitempty"`
	AppAddr      string `json:"appAddr"`
	AdminAddr    string `json:"adminAddr,omitempty"`
}

// The protocols a workload's port can speak.
const (
	ProtocolHTTP = "http"
	ProtocolTCP  = "tcp"
)

// IsTCP reports whether the workload's port carries opaque TCP.
func (w *Workload) IsTCP() bool { return w.Protocol == ProtocolTCP }

// Service is a mesh service: the set of workloads with the same name and
// namespace.
type Service struct {
	Name      string
	Namespace string
	// Hostname is the fully qualified name, e.g. reviews.default.svc.cluster.local.
	Hostname string
	Port     uint32
	// Workloads are the service's instances, sorted by ID.
	Workloads []*Workload
}

// VirtualService is a stored VirtualService with its identity.
type VirtualService struct {
	Name, Namespace string
	Spec            *networking.VirtualService
}

// DestinationRule is a stored DestinationRule with its identity.
type DestinationRule struct {
	Name, Namespace string
	Spec            *networking.DestinationRule
}

// PeerAuthentication is a stored PeerAuthentication with its identity.
type PeerAuthentication struct {
	Name, Namespace string
	Spec            *security.PeerAuthentication
}

// AuthorizationPolicy is a stored AuthorizationPolicy with its identity.
type AuthorizationPolicy struct {
	Name, Namespace string
	// DryRun is set by the annotation istio.io/dry-run: "true"; such a
	// policy is not enforced.
	DryRun bool
	Spec   *security.AuthorizationPolicy
}

// RequestAuthentication is a stored RequestAuthentication with its identity.
type RequestAuthentication struct {
	Name, Namespace string
	Spec            *security.RequestAuthentication
}

// Snapshot is the whole mesh at one moment. Build one with NewSnapshot.
type Snapshot struct {
	// Version changes whenever anything in the snapshot changes.
	Version          string
	DomainSuffix     string
	Services         []*Service // sorted by Hostname
	VirtualServices  []*VirtualService
	DestinationRules []*DestinationRule

	// Security holds the mesh's identity and policy settings; its zero value
	// means security is off (no CA configured), and translation then emits
	// no TLS.
	Security Security

	// The security policies, each sorted by namespace and name; set them
	// with SetPolicies.
	PeerAuthentications    []*PeerAuthentication
	AuthorizationPolicies  []*AuthorizationPolicy
	RequestAuthentications []*RequestAuthentication
	// JWKS holds the key sets the control plane fetched for
	// RequestAuthentication rules, by the URI they came from: a rule's
	// jwksUri, or the OpenID discovery URI of its issuer
	// (jwks.DiscoveryURI) when it has neither jwks nor jwksUri. A URI that
	// has not been fetched yet is absent.
	JWKS map[string]string

	byHost map[string]*Service
}

// Security is the part of the mesh model that identity and policy read.
type Security struct {
	// TrustDomain is the SPIFFE trust domain, e.g. cluster.local.
	TrustDomain string
	// TrustBundlePEM holds the CA certificates proxies trust; empty when
	// the control plane runs without a CA.
	TrustBundlePEM []byte
	// RootNamespace holds mesh-wide policy (Istio's istio-system).
	RootNamespace string
	// PathNormalization is BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES.
	PathNormalization string
}

// NewSnapshot groups workloads into services and indexes the result. It takes
// ownership of its arguments.
func NewSnapshot(version, domainSuffix string, workloads []*Workload, vss []*VirtualService, drs []*DestinationRule) *Snapshot {
	if domainSuffix == "" {
		domainSuffix = DefaultDomainSuffix
	}
	s := &Snapshot{
		Version:          version,
		DomainSuffix:     domainSuffix,
		VirtualServices:  vss,
		DestinationRules: drs,
		byHost:           map[string]*Service{},
	}
	sort.Slice(workloads, func(i, j int) bool { return workloads[i].ID < workloads[j].ID })
	for _, w := range workloads {
		host := s.FQDN(w.Service, w.Namespace)
		svc := s.byHost[host]
		if svc == nil {
			svc = &Service{Name: w.Service, Namespace: w.Namespace, Hostname: host, Port: w.ServicePort}
			s.byHost[host] = svc
			s.Services = append(s.Services, svc)
		}
		svc.Workloads = append(svc.Workloads, w)
	}
	sort.Slice(s.Services, func(i, j int) bool { return s.Services[i].Hostname < s.Services[j].Hostname })
	sortByNamespaceName(s.VirtualServices, func(v *VirtualService) (string, string) { return v.Namespace, v.Name })
	sortByNamespaceName(s.DestinationRules, func(d *DestinationRule) (string, string) { return d.Namespace, d.Name })
	return s
}

func sortByNamespaceName[T any](items []T, key func(T) (string, string)) {
	sort.Slice(items, func(i, j int) bool {
		ni, mi := key(items[i])
		nj, mj := key(items[j])
		if ni != nj {
			return ni < nj
		}
		return mi < mj
	})
}

// SetPolicies stores the security policies in s, sorted by namespace and
// name. Like NewSnapshot it takes ownership of its arguments; call it only
// while building s, before anyone reads it.
func (s *Snapshot) SetPolicies(pas []*PeerAuthentication, aps []*AuthorizationPolicy, ras []*RequestAuthentication) {
	sortByNamespaceName(pas, func(p *PeerAuthentication) (string, string) { return p.Namespace, p.Name })
	sortByNamespaceName(aps, func(p *AuthorizationPolicy) (string, string) { return p.Namespace, p.Name })
	sortByNamespaceName(ras, func(p *RequestAuthentication) (string, string) { return p.Namespace, p.Name })
	s.PeerAuthentications, s.AuthorizationPolicies, s.RequestAuthentications = pas, aps, ras
}

// DefaultRootNamespace holds mesh-wide policy when Security.RootNamespace
// is empty; it is Istio's, so that Istio's mesh-wide YAML works unchanged.
const DefaultRootNamespace = "istio-system"

// RootNamespace is the namespace whose policies apply mesh-wide.
func (s *Snapshot) RootNamespace() string {
	if s.Security.RootNamespace != "" {
		return s.Security.RootNamespace
	}
	return DefaultRootNamespace
}

// PolicyApplies reports whether a policy in namespace ns with selector sel
// applies to workload w, as Istio decides it for AuthorizationPolicy and
// RequestAuthentication: the policy is in w's namespace or in the root
// namespace (which makes it mesh-wide), and its selector matches w's
// labels. A nil or empty selector matches every workload.
// PeerAuthentication has rules of its own (see translate).
func (s *Snapshot) PolicyApplies(ns string, sel *typev1beta1.WorkloadSelector, w *Workload) bool {
	if ns != w.Namespace && ns != s.RootNamespace() {
		return false
	}
	return SelectorMatches(sel, w.Labels)
}

// SelectorMatches reports whether labels has every label of sel; a nil or
// empty selector matches anything.
func SelectorMatches(sel *typev1beta1.WorkloadSelector, labels map[string]string) bool {
	for k, v := range sel.GetMatchLabels() {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// FQDN is the fully qualified hostname of service name in namespace.
func (s *Snapshot) FQDN(name, namespace string) string {
	return fmt.Sprintf("%s.%s.%s", name, namespace, s.DomainSuffix)
}

// ResolveHost turns a host as written in a resource of namespace ns into a
// fully qualified name, the way Istio does: a short name ("reviews") is taken
// relative to ns, "reviews.prod" is taken as name.namespace, and anything
// that already ends in the domain suffix or is not a mesh name is kept.
func (s *Snapshot) ResolveHost(host, ns string) string {
	host = strings.ToLower(host)
	if strings.HasSuffix(host, "."+s.DomainSuffix) || strings.Contains(host, "*") {
		return host
	}
	switch parts := strings.Split(host, "."); len(parts) {
	case 1:
		return s.FQDN(parts[0], ns)
	case 2:
		return s.FQDN(parts[0], parts[1])
	case 3:
		if parts[2] == "svc" {
			return s.FQDN(parts[0], parts[1])
		}
	}
	return host
}

// Service returns the service with the fully qualified hostname, or nil.
func (s *Snapshot) Service(hostname string) *Service {
	return s.byHost[hostname]
}

// SpiffeID is the workload's identity in trustDomain:
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
func (w *Workload) SpiffeID(trustDomain string) string {
	return SpiffeID(trustDomain, w.Namespace, w.ServiceAccount)
}

// SpiffeID builds spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>;
// an empty service account is "default".
func SpiffeID(trustDomain, namespace, serviceAccount string) string {
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}
