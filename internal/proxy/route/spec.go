// Package route holds weft-proxy's compiled route tables: virtual host lookup
// by host, precompiled request matchers and the route actions they select.
//
// A Table is built once per configuration update with Compile and is
// immutable afterwards, so any number of requests may read it concurrently
// without locks. The specs in this file are the plain-data input to Compile;
// the xDS client fills them from RouteConfiguration resources, tests fill them
// by hand, and config dumps print them.
package route

import (
	"encoding/json"
	"time"
)

// ConfigSpec is one route configuration: an ordered list of virtual hosts.
type ConfigSpec struct {
	Name         string            `json:"name"`
	VirtualHosts []VirtualHostSpec `json:"virtual_hosts"`
}

// VirtualHostSpec is a set of domains and the routes tried, in order, for
// requests whose host matches one of them.
type VirtualHostSpec struct {
	Name string `json:"name"`
	// Domains are matched case-insensitively against the request's host,
	// port included. Besides exact names, "*" alone, "*suffix" and "prefix*"
	// are accepted, with Envoy's precedence: exact, then the longest suffix
	// wildcard, then the longest prefix wildcard, then "*".
	Domains []string    `json:"domains"`
	Routes  []RouteSpec `json:"routes"`
}

// RouteSpec is one route: a match and the action taken when it holds.
type RouteSpec struct {
	// Name is kept for logs and config dumps only.
	Name   string     `json:"name,omitempty"`
	Match  MatchSpec  `json:"match"`
	Action ActionSpec `json:"action"`
}

// PathKind says how MatchSpec.Path is compared with the request path.
type PathKind string

// Path match kinds.
const (
	PathPrefix PathKind = "prefix" // the request path starts with Path
	PathExact  PathKind = "path"   // the request path equals Path
	PathRegex  PathKind = "regex"  // Path, an RE2 expression, matches the whole request path
)

// MatchSpec is a route's match. All conditions must hold. The path compared
// is the request's raw (still percent-encoded) path without the query string.
type MatchSpec struct {
	PathKind PathKind `json:"path_kind"`
	Path     string   `json:"path"`
	// CaseSensitive applies to prefix and exact path matches (not regexes),
	// as in Envoy. Decoders default it to true.
	CaseSensitive bool              `json:"case_sensitive"`
	Headers       []HeaderMatchSpec `json:"headers,omitempty"`
}

// StringKind says how a header value is compared.
type StringKind string

// Header match kinds.
const (
	StringExact    StringKind = "exact"
	StringPrefix   StringKind = "prefix"
	StringSuffix   StringKind = "suffix"
	StringContains StringKind = "contains"
	StringRegex    StringKind = "regex"   // whole-value RE2 match
	StringPresent  StringKind = "present" // Present says whether the header must be there or absent
)

// HeaderMatchSpec matches one request header. The pseudo-headers ":method",
// ":authority" (also spelled "host") and ":path" (path and query) match the
// request line. A header sent several times is matched against its values
// joined with ",", as Envoy does.
type HeaderMatchSpec struct {
	Name  string     `json:"name"`
	Kind  StringKind `json:"kind"`
	Value string     `json:"value,omitempty"`
	// IgnoreCase applies to exact, prefix, suffix and contains.
	IgnoreCase bool `json:"ignore_case,omitempty"`
	// Present is the wanted presence for Kind StringPresent.
	Present bool `json:"present,omitempty"`
	// Invert negates the result. A missing header fails every value match
	// whether inverted or not (Envoy's rule); only a presence match can be
	// satisfied by a missing header.
	Invert bool `json:"invert,omitempty"`
}

// ActionSpec routes to one cluster, or to one of several by weight.
type ActionSpec struct {
	// Cluster is the target when WeightedClusters is empty.
	Cluster          string            `json:"cluster,omitempty"`
	WeightedClusters []WeightedCluster `json:"weighted_clusters,omitempty"`
	// Timeout bounds the whole upstream exchange, from sending the request
	// to the end of the response body. Zero means no timeout.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// WeightedCluster is one target of a weighted action; a cluster is picked
// with probability Weight / (sum of all weights).
type WeightedCluster struct {
	Name   string `json:"name"`
	Weight uint32 `json:"weight"`
}

// MarshalJSON prints the timeout as a duration string ("1.5s") in config
// dumps rather than nanoseconds.
func (a ActionSpec) MarshalJSON() ([]byte, error) {
	out := struct {
		Cluster          string            `json:"cluster,omitempty"`
		WeightedClusters []WeightedCluster `json:"weighted_clusters,omitempty"`
		Timeout          string            `json:"timeout,omitempty"`
	}{Cluster: a.Cluster, WeightedClusters: a.WeightedClusters}
	if a.Timeout > 0 {
		out.Timeout = a.Timeout.String()
	}
	return json.Marshal(out)
}
