package xdsclient

import (
	"maps"

	"github.com/weft-mesh/weft/internal/proxy/route"
)

// How accepted responses change what the client holds.
//
// The xDS protocol's state-of-the-world variant treats Listener and
// Cluster apart from the other types: an LDS or CDS response carries every
// resource of its type, and a resource left out is deleted. A
// RouteConfiguration or ClusterLoadAssignment response may carry only some
// resources; those left out are unchanged, and one is deleted only when no
// listener (for routes) or cluster (for endpoints) refers to it any more
// (envoyproxy/envoy api-docs/xds_protocol.rst, "Grouping Resources into
// Responses" and "Deleting Resources"). So:
//
//   - CDS, LDS and SDS responses replace the set of their type.
//   - EDS and RDS responses are laid over the set the client holds: each
//     resource in the response replaces the one of its name or is added.
//     The response is validated as a whole first (decode): a response
//     with any invalid resource changes nothing.
//   - An accepted CDS response drops the endpoint sets no EDS cluster of
//     it names (by eds_cluster_config.service_name), and an accepted LDS
//     response drops the route configurations no listener names in its
//     rds.route_config_name.
//
// Only CDS and LDS responses drop anything. What they drop is part of the
// EDS or RDS version the client accepted, so until the next EDS or RDS
// response the client no longer says, on a new stream, that it holds that
// version (resumeVersion). An endpoint set that arrives
// before its cluster (the server sent EDS of a newer snapshot before that
// snapshot's CDS, or the proxy NACKed that CDS) is kept until the next
// accepted CDS response decides. Dropping it when an EDS response is
// accepted instead would drop what the server knows it sent and will not
// send again while it is unchanged: weft's control plane models what each
// proxy holds by exactly these rules (internal/xds, heldSet).

// install makes set, a decoded and valid response of type t, part of what
// the client holds, and returns how many resources of the type that t's
// resources refer to were dropped as no longer referred to.
func (c *Client) install(t Type, set any) (dropped int) {
	switch t {
	case TypeEndpoints:
		old, _ := c.sets[t].(map[string]*Endpoints)
		c.sets[t] = overlay(old, set.(map[string]*Endpoints))
	case TypeRoute:
		old, _ := c.sets[t].(map[string]*route.Table)
		c.sets[t] = overlay(old, set.(map[string]*route.Table))
	case TypeCluster:
		c.sets[t] = set
		if eps, ok := c.sets[TypeEndpoints].(map[string]*Endpoints); ok {
			c.sets[TypeEndpoints], dropped = keepOnly(eps, endpointRefs(set.(map[string]*Cluster)))
			c.trimmed[TypeEndpoints] = c.trimmed[TypeEndpoints] || dropped > 0
		}
	case TypeListener:
		c.sets[t] = set
		if rts, ok := c.sets[TypeRoute].(map[string]*route.Table); ok {
			c.sets[TypeRoute], dropped = keepOnly(rts, routeRefs(set.(map[string]*Listener)))
			c.trimmed[TypeRoute] = c.trimmed[TypeRoute] || dropped > 0
		}
	default:
		c.sets[t] = set
	}
	if t == TypeEndpoints || t == TypeRoute {
		// The server that sent it knows what the client dropped before
		// (internal/xds models it), so what the client holds is the
		// response's version again.
		c.trimmed[t] = false
	}
	return dropped
}

// resumeVersion is the version_info of the first request of type t on a
// new stream: the version whose resources the client holds, so that a
// server that has that version current need not send it again. After an
// accepted CDS or LDS response dropped endpoint sets or routes, the client
// no longer holds its last EDS or RDS version, only part of it, and says
// it holds none: a server (perhaps another control-plane replica, behind
// the one that sent the CDS response) at that version, whose clusters
// still use what was dropped, would otherwise send nothing, and the
// cluster would have no endpoints until they next changed.
func (c *Client) resumeVersion(t Type) string {
	if c.trimmed[t] {
		return ""
	}
	return c.ackedVersion(t)
}

// overlay returns a new map holding old's entries replaced or added to by
// update's. old is not modified: it may be in use (Resources).
func overlay[T any](old, update map[string]T) map[string]T {
	if len(old) == 0 {
		return update
	}
	if len(update) == 0 {
		return old
	}
	out := make(map[string]T, len(old)+len(update))
	maps.Copy(out, old)
	maps.Copy(out, update)
	return out
}

// keepOnly returns set without the entries refs does not name, and how
// many it dropped. set is not modified; when nothing is dropped it is
// returned as it is.
func keepOnly[T any](set map[string]T, refs map[string]bool) (map[string]T, int) {
	dropped := 0
	for name := range set {
		if !refs[name] {
			dropped++
		}
	}
	if dropped == 0 {
		return set, 0
	}
	out := make(map[string]T, len(set)-dropped)
	for name, v := range set {
		if refs[name] {
			out[name] = v
		}
	}
	return out, dropped
}

// endpointRefs are the endpoint sets the EDS clusters of cs use.
func endpointRefs(cs map[string]*Cluster) map[string]bool {
	refs := make(map[string]bool, len(cs))
	for _, c := range cs {
		if c.Type == ClusterEDS {
			refs[c.ServiceName] = true
		}
	}
	return refs
}

// routeRefs are the route configurations the listeners of ls take from
// RDS (inline ones are not RDS resources).
func routeRefs(ls map[string]*Listener) map[string]bool {
	refs := make(map[string]bool, len(ls))
	for _, l := range ls {
		if l.InlineRoutes == nil && l.RouteConfigName != "" {
			refs[l.RouteConfigName] = true
		}
	}
	return refs
}

// setLen is the number of resources in one type's set.
func setLen(set any) int {
	switch s := set.(type) {
	case map[string]*Cluster:
		return len(s)
	case map[string]*Endpoints:
		return len(s)
	case map[string]*Listener:
		return len(s)
	case map[string]*route.Table:
		return len(s)
	case map[string]*Secret:
		return len(s)
	}
	return 0
}
