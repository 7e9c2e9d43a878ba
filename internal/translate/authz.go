package translate

import (
	"fmt"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	security "istio.io/api/security/v1beta1"

	"github.com/weft-mesh/weft/internal/mesh"
)

// MTLSMode is the PeerAuthentication mode in force on one port of a
// workload.
type MTLSMode int

// The modes, as in Istio's PeerAuthentication.
const (
	MTLSPermissive MTLSMode = iota
	MTLSStrict
	MTLSDisable
)

func (m MTLSMode) String() string {
	switch m {
	case MTLSPermissive:
		return "PERMISSIVE"
	case MTLSStrict:
		return "STRICT"
	case MTLSDisable:
		return "DISABLE"
	}
	return fmt.Sprintf("MTLSMode(%d)", int(m))
}

// peerAuthenticationMode resolves the PeerAuthentication mode for port of
// proxy's workload as Istio does. Three levels may apply:
//
//   - workload: a policy in the workload's namespace (not the root
//     namespace) whose non-empty selector matches its labels;
//   - namespace: a policy in the workload's namespace without selector;
//   - mesh: a policy in the root namespace without selector.
//
// When several policies apply at one level, the oldest wins in Istio; weft
// keeps no creation time and takes the first by name. The mode is the
// mesh level's, overridden by the namespace level's, overridden by the
// workload level's, starting from PERMISSIVE; a level whose mode is UNSET
// (or absent) inherits. Finally the workload policy's portLevelMtls entry
// for port, if any, overrides (UNSET there inherits too). Policies in the
// root namespace with a selector are ignored, as in Istio.
func peerAuthenticationMode(snap *mesh.Snapshot, proxy *mesh.Workload, port uint32) MTLSMode {
	root := snap.RootNamespace()
	var meshPol, nsPol, wlPol *mesh.PeerAuthentication
	first := func(cur, p *mesh.PeerAuthentication) *mesh.PeerAuthentication {
		if cur == nil || p.Name < cur.Name {
			return p
		}
		return cur
	}
	for _, p := range snap.PeerAuthentications {
		selected := len(p.Spec.GetSelector().GetMatchLabels()) > 0
		switch {
		case !selected && p.Namespace == root:
			meshPol = first(meshPol, p)
		case !selected && p.Namespace == proxy.Namespace:
			nsPol = first(nsPol, p)
		case selected && p.Namespace == proxy.Namespace && p.Namespace != root &&
			mesh.SelectorMatches(p.Spec.GetSelector(), proxy.Labels):
			wlPol = first(wlPol, p)
		}
	}
	mode := MTLSPermissive
	for _, p := range []*mesh.PeerAuthentication{meshPol, nsPol, wlPol} {
		if p != nil {
			mode = inheritMode(mode, p.Spec.GetMtls())
		}
	}
	if wlPol != nil {
		if pm, ok := wlPol.Spec.GetPortLevelMtls()[port]; ok {
			mode = inheritMode(mode, pm)
		}
	}
	return mode
}

// inheritMode is m's mode, or parent when m is unset.
func inheritMode(parent MTLSMode, m *security.PeerAuthentication_MutualTLS) MTLSMode {
	switch m.GetMode() {
	case security.PeerAuthentication_MutualTLS_STRICT:
		return MTLSStrict
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return MTLSPermissive
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return MTLSDisable
	}
	return parent
}

// inboundHTTPFilters returns the policy filters of proxy's inbound HCM, in
// the order they run, before the router:
//
//  1. envoy.filters.http.jwt_authn, when a RequestAuthentication applies
//     (jwtFilter);
//  2. envoy.filters.http.rbac with action LOG, when an AUDIT
//     AuthorizationPolicy applies;
//  3. envoy.filters.http.rbac with action DENY, when a DENY policy applies;
//  4. envoy.filters.http.rbac with action ALLOW, when an ALLOW policy
//     applies (rbacFilters).
//
// No filter at all means every request passes. The error is only ever an
// internal one (a message that does not marshal); a policy weft cannot
// translate never fails the proxy's whole configuration (see rbacFilters).
func inboundHTTPFilters(snap *mesh.Snapshot, proxy *mesh.Workload) ([]*hcmv3.HttpFilter, error) {
	var out []*hcmv3.HttpFilter
	jwt, err := jwtFilter(snap, proxy)
	if err != nil {
		return nil, err
	}
	if jwt != nil {
		out = append(out, jwt)
	}
	rbac, err := rbacFilters(snap, proxy)
	if err != nil {
		return nil, err
	}
	return append(out, rbac...), nil
}
