// Package forward is weft-proxy's HTTP forwarding engine: it routes each
// request with the current compiled configuration, picks an endpoint and
// relays the exchange, or answers locally when it cannot.
//
// It is built on net/http for now and shaped for speed: the request path
// loads the configuration with one atomic read, takes no lock, edits the
// incoming header map in place instead of copying it, copies bodies through
// pooled buffers and shares keep-alive connection pools across requests.
package forward

import (
	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/filter"
	"github.com/weft-mesh/weft/internal/proxy/route"
)

// Config is one compiled, immutable view of the proxy's configuration, the
// only thing a request reads. The proxy builds a new Config for each
// accepted xDS update and publishes it with one atomic pointer store; a
// request loads the pointer once and keeps using that Config to its end,
// even if a newer one is published meanwhile. Nothing in a published Config
// may be modified.
type Config struct {
	// Listeners by name: "outbound" and "inbound".
	Listeners map[string]*Listener `json:"listeners"`
	// Clusters by name.
	Clusters map[string]*cluster.Cluster `json:"clusters"`
}

// Listener is the routing half of one listener's configuration.
type Listener struct {
	Name string `json:"name"`
	// RouteConfigName is the route configuration the listener uses.
	RouteConfigName string `json:"route_config_name"`
	// Routes is nil while that route configuration has not arrived.
	Routes *route.Table `json:"routes"`
	// HTTP normalizes each request and runs the listener's HTTP filters
	// (jwt_authn, rbac) before it is routed; nil normalizes with the
	// defaults and runs no filter.
	HTTP *filter.Chain `json:"http"`
	// SetClientCert sets x-forwarded-client-cert on requests from mTLS
	// peers to By=<own SPIFFE ID>;Hash=<peer leaf SHA-256>;URI=<peer SPIFFE
	// ID> (Envoy's SANITIZE_SET with the URI). A client-sent
	// x-forwarded-client-cert is always dropped (SANITIZE).
	SetClientCert bool `json:"set_client_cert,omitempty"`
	// DropInternalHeaders drops client-sent headers named x-weft-*: set on
	// the inbound listener, where they would come from another workload.
	DropInternalHeaders bool `json:"drop_internal_headers,omitempty"`
	// RefusePlaintext and RefuseTLS abort requests on connections of a
	// kind the listener no longer serves (its PeerAuthentication mode
	// changed since the connection was accepted): new connections are
	// refused by the listener itself.
	RefusePlaintext bool `json:"refuse_plaintext,omitempty"`
	RefuseTLS       bool `json:"refuse_tls,omitempty"`
}

// Source gives the Config to use for a new request, or nil before the first
// one. It is called once per request, so it must be cheap and lock-free;
// *atomic.Pointer[Config] is the intended implementation.
type Source interface {
	Load() *Config
}
