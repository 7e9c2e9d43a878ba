// Package xdsclient is weft-proxy's xDS client: one ADS stream in
// state-of-the-world mode to the control plane, subscribed to clusters,
// endpoints, listeners and routes.
//
// Every response is decoded and validated into weft's own runtime types
// (this file) against the subset docs/xds.md defines, then ACKed; a response
// with anything outside that subset is NACKed as a whole, naming the
// resource and field, and the previous set of that type stays in use. Raw
// Envoy protos never leave this package.
//
// Resource errors (NACKs) are kept apart from stream errors: a bad resource
// never breaks the stream, and a broken stream never discards resources. The
// client reconnects forever with jittered exponential backoff, and the last
// good configuration keeps serving meanwhile.
package xdsclient

import (
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

// Type is one of the four resource types weft subscribes to.
type Type int

// The resource types, in subscription order.
const (
	TypeCluster   Type = iota // CDS
	TypeEndpoints             // EDS
	TypeListener              // LDS
	TypeRoute                 // RDS
	numTypes
)

// Type URLs of the resources weft understands.
const (
	ClusterURL   = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointsURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerURL  = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteURL     = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

	hcmURL    = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	routerURL = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
)

var (
	typeURLs  = [numTypes]string{ClusterURL, EndpointsURL, ListenerURL, RouteURL}
	typeNames = [numTypes]string{"CDS", "EDS", "LDS", "RDS"}
)

// String is the type's short name: CDS, EDS, LDS or RDS.
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
}

// Endpoints is a decoded ClusterLoadAssignment: the usable endpoints of one
// cluster. Endpoints whose health status is UNHEALTHY, DRAINING or TIMEOUT
// are left out.
type Endpoints struct {
	ClusterName string             `json:"cluster_name"`
	Endpoints   []cluster.Endpoint `json:"endpoints"`
}

// Resources is the client's last good set of every type. The maps are never
// modified once handed out: each accepted response replaces its type's map.
type Resources struct {
	Clusters  map[string]*Cluster     `json:"clusters"`
	Endpoints map[string]*Endpoints   `json:"endpoints"`
	Listeners map[string]*Listener    `json:"listeners"`
	Routes    map[string]*route.Table `json:"routes"`
	Versions  map[string]string       `json:"versions"` // by type short name, the ACKed version
	// Complete is true once each of the four types has been accepted at
	// least once, that is, once the proxy has a full configuration.
	Complete bool `json:"complete"`
}
