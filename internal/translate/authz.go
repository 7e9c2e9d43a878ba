package translate

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

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

// peerAuthenticationMode resolves the PeerAuthentication mode for port of
// proxy's workload: workload selector, then namespace, then mesh-wide (root
// namespace), then PERMISSIVE, with portLevelMtls overriding per port.
// (Stub until PeerAuthentication lands.)
func peerAuthenticationMode(_ *mesh.Snapshot, _ *mesh.Workload, _ uint32) MTLSMode {
	return MTLSPermissive
}

// inboundHTTPFilters returns the policy filters of the inbound HCM, in
// order, before the router: jwt_authn, then RBAC for AUDIT, DENY and ALLOW.
// (Stub until AuthorizationPolicy and RequestAuthentication land.)
func inboundHTTPFilters(_ *mesh.Snapshot, _ *mesh.Workload) ([]*hcmv3.HttpFilter, error) {
	return nil, nil
}
