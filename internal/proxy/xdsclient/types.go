// Package xdsclient is weft-proxy's xDS client: one ADS stream in
// state-of-the-world mode to the control plane, subscribed to clusters,
// endpoints, listeners, routes and secrets.
//
// Every response is decoded and validated into weft's own runtime types
// (this file) against the subset docs/xds.md defines, then ACKed; a response
// with anything outside that subset is NACKed as a whole, naming the
// resource and field, and the previous set of that type stays in use. An
// accepted CDS, LDS or SDS response replaces its type's set; an accepted EDS
// or RDS response is laid over it, as the protocol's state-of-the-world
// rules say (merge.go). Raw Envoy protos never leave this package.
//
// Resource errors (NACKs) are kept apart from stream errors: a bad resource
// never breaks the stream, and a broken stream never discards resources. The
// client reconnects forever with jittered exponential backoff, and the last
// good configuration keeps serving meanwhile.
package xdsclient

import (
	"slices"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/filter"
	"github.com/weft-mesh/weft/internal/proxy/filter/rbac"
	"github.com/weft-mesh/weft/internal/proxy/mtls"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

// Type is one of the resource types weft subscribes to.
type Type int

// The resource types, in subscription order.
const (
	TypeCluster   Type = iota // CDS
	TypeEndpoints             // EDS
	TypeListener              // LDS
	TypeRoute                 // RDS
	TypeSecret                // SDS
	numTypes
)

// numCoreTypes are the types a configuration needs to be complete; secrets
// are needed only when a cluster or listener refers to one.
const numCoreTypes = TypeSecret

// Type URLs of the resources weft understands.
const (
	ClusterURL   = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointsURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerURL  = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteURL     = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	SecretURL    = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

	hcmURL      = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	tcpProxyURL = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	routerURL   = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
)

var (
	typeURLs  = [numTypes]string{ClusterURL, EndpointsURL, ListenerURL, RouteURL, SecretURL}
	typeNames = [numTypes]string{"CDS", "EDS", "LDS", "RDS", "SDS"}
)

// String is the type's short name: CDS, EDS, LDS, RDS or SDS.
func (t Type) String() string { return typeNames[t] }

// URL is the type's type URL.
func (t Type) URL() string { return typeURLs[t] }

func typeOf(url string) (Type, bool) {
	for t, u := range typeURLs {
		if u == url {
			return Type(t), true
		}
	}
	return 0, false
}

// Listener is a decoded Listener: which route configuration it uses.
type Listener struct {
	// Name is "outbound" or "inbound".
	Name string `json:"name"`
	// RouteConfigName names the RDS route configuration, or the inline one.
	RouteConfigName string `json:"route_config_name"`
	// InlineRoutes is set when the listener carries its route configuration
	// inline instead of naming one from RDS.
	InlineRoutes *route.Table `json:"inline_routes,omitempty"`

	// InspectTLS is set when the listener has the tls_inspector listener
	// filter: each connection is classified as TLS or plaintext by its
	// first byte, and served by the matching filter chain, if any.
	InspectTLS bool `json:"inspect_tls,omitempty"`
	// TLS is the filter chain for TLS connections (transport_protocol
	// "tls"); nil when the listener has none.
	TLS *DownstreamTLS `json:"tls,omitempty"`
	// Plaintext is true when the listener serves plaintext connections:
	// a listener without tls_inspector has one plaintext chain; with it,
	// only if it has a "raw_buffer" chain.
	Plaintext bool `json:"plaintext"`
	// ForwardClientCert is how x-forwarded-client-cert is treated on
	// requests: "SANITIZE" (Envoy's default: drop it) or "SANITIZE_SET"
	// (drop it and, for mTLS peers, set it from the verified peer).
	ForwardClientCert string `json:"forward_client_cert"`
	// HTTPFilters is the listener's compiled HTTP processing, from its
	// HCM: path normalization, then jwt_authn and rbac filters in order
	// (decoded in httpfilters.go).
	HTTPFilters *filter.Chain `json:"http_filters"`
	// TCP is set when the listener proxies TCP connections instead of
	// serving HTTP (a TCP workload's inbound listener); the HTTP fields
	// above are then empty.
	TCP *TCPProxy `json:"tcp,omitempty"`
}

// TCPProxy is a decoded chain of network filters: network RBAC filters,
// then tcp_proxy.
type TCPProxy struct {
	// Cluster is where tcp_proxy sends each connection.
	Cluster string `json:"cluster"`
	// RBAC are the network RBAC filters, in the order they run; a
	// connection any of them denies is closed.
	RBAC []*rbac.Filter `json:"rbac,omitempty"`
}

// UpstreamTLS is a cluster's decoded UpstreamTlsContext: mTLS to every
// endpoint of the cluster.
type UpstreamTLS struct {
	// SNI is the server name sent; weft's control plane sends the cluster
	// name.
	SNI string `json:"sni"`
	// SubjectAltNames are the SPIFFE IDs (URI SANs, matched exactly) a
	// server may have. An empty list accepts no server.
	SubjectAltNames []string `json:"subject_alt_names"`
	// ValidationSecret names the Secret holding the trust bundle; always
	// ROOTCA.
	ValidationSecret string `json:"validation_secret"`
	// KeepHTTP1 sends HTTP/1.1 requests as HTTP/1.1 (ALPN http/1.1)
	// instead of multiplexing every request over HTTP/2, the default: the
	// cluster's use_downstream_protocol_config (DestinationRule
	// h2UpgradePolicy DO_NOT_UPGRADE).
	KeepHTTP1 bool `json:"keep_http1,omitempty"`
}

// DownstreamTLS is a listener's decoded DownstreamTlsContext: TLS 1.3,
// client certificate required and verified against ValidationSecret.
type DownstreamTLS struct {
	// ALPN are the application protocols offered, in order of preference:
	// h2 and/or http/1.1.
	ALPN []string `json:"alpn"`
	// ValidationSecret names the Secret holding the trust bundle; always
	// ROOTCA.
	ValidationSecret string `json:"validation_secret"`
}

// Secret is a decoded Secret. The only secret the control plane sends is
// ROOTCA, a trust bundle; the proxy's own certificate ("default") never
// comes over xDS.
type Secret struct {
	Name string `json:"name"`
	// Roots is the parsed trust bundle.
	Roots *mtls.Roots `json:"trusted_ca"`
}

// ClusterType is how a cluster gets its endpoints.
type ClusterType string

// Cluster types.
const (
	ClusterEDS    ClusterType = "EDS"    // from the ClusterLoadAssignment named ServiceName
	ClusterStatic ClusterType = "STATIC" // inline in the cluster
)

// Cluster is a decoded Cluster.
type Cluster struct {
	Name string      `json:"name"`
	Type ClusterType `json:"type"`
	// ServiceName is the ClusterLoadAssignment to use, for EDS clusters.
	ServiceName    string        `json:"service_name,omitempty"`
	ConnectTimeout time.Duration `json:"connect_timeout"`
	// Endpoints are the inline endpoints of a STATIC cluster.
	Endpoints []cluster.Endpoint `json:"endpoints,omitempty"`
	// TLS is set when requests to the cluster go over mTLS (and HTTP/2).
	TLS *UpstreamTLS `json:"tls,omitempty"`
}

// Endpoints is a decoded ClusterLoadAssignment: the usable endpoints of one
// cluster. Endpoints whose health status is UNHEALTHY, DRAINING or TIMEOUT
// are left out.
type Endpoints struct {
	ClusterName string             `json:"cluster_name"`
	Endpoints   []cluster.Endpoint `json:"endpoints"`
}

// Resources is the client's last good set of every type. The maps are never
// modified once handed out: each accepted response installs new maps.
// Endpoints and Routes hold every resource of their type received and
// still referred to, not only those of the last response: EDS and RDS
// responses may carry only what changed (merge.go).
type Resources struct {
	Clusters  map[string]*Cluster     `json:"clusters"`
	Endpoints map[string]*Endpoints   `json:"endpoints"`
	Listeners map[string]*Listener    `json:"listeners"`
	Routes    map[string]*route.Table `json:"routes"`
	Secrets   map[string]*Secret      `json:"secrets"`
	Versions  map[string]string       `json:"versions"` // by type short name, the ACKed version
	// Complete is true once each of clusters, endpoints, listeners and
	// routes has been accepted at least once, that is, once the proxy has a
	// full configuration. Secrets do not count: a configuration that refers
	// to one the proxy does not have is held back by the proxy until it
	// arrives (see MissingSecrets).
	Complete bool `json:"complete"`
}

// MissingSecrets lists, sorted, the secrets that clusters or listeners
// refer to and that have not been received, each as "<secret> (for
// <cluster or listener>)" naming the first referrer in name order. The proxy
// holds back a configuration with missing secrets, as Envoy keeps a cluster
// warming until its secrets arrive.
func (r Resources) MissingSecrets() []string {
	need := map[string]string{} // secret -> first referrer
	refer := func(secret, who string) {
		if _, ok := r.Secrets[secret]; ok {
			return
		}
		if prev, ok := need[secret]; !ok || who < prev {
			need[secret] = who
		}
	}
	for name, c := range r.Clusters {
		if c.TLS != nil {
			refer(c.TLS.ValidationSecret, "cluster "+name)
		}
	}
	for name, l := range r.Listeners {
		if l.TLS != nil {
			refer(l.TLS.ValidationSecret, "listener "+name)
		}
	}
	out := make([]string, 0, len(need))
	for s, who := range need {
		out = append(out, s+" (for "+who+")")
	}
	slices.Sort(out)
	return out
}
