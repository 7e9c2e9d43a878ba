package translate

import (
	"fmt"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacnetworkv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"

	"github.com/weft-mesh/weft/internal/mesh"
)

// inboundTCPFilters are the network filters of a TCP workload's inbound
// listener, in place of the HTTP connection manager: one network RBAC
// filter per action its AuthorizationPolicies use (AUDIT, DENY, ALLOW; a
// denied connection is closed), then tcp_proxy to the app.
func inboundTCPFilters(snap *mesh.Snapshot, proxy *mesh.Workload) ([]*listenerv3.Filter, error) {
	var filters []*listenerv3.Filter
	for _, rules := range rbacRules(snap, proxy, true) {
		cfg, err := typedConfig(&rbacnetworkv3.RBAC{
			StatPrefix: "tcp.",
			Rules:      rules,
		})
		if err != nil {
			return nil, fmt.Errorf("network rbac filter for %s policies: %w", rules.Action, err)
		}
		filters = append(filters, &listenerv3.Filter{
			Name:       wellknown.RoleBasedAccessControl,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg},
		})
	}
	cfg, err := typedConfig(&tcpproxyv3.TcpProxy{
		StatPrefix:       InboundName,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: InboundClusterName(proxy.ServicePort)},
	})
	if err != nil {
		return nil, err
	}
	return append(filters, &listenerv3.Filter{
		Name:       wellknown.TCPProxy,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg},
	}), nil
}
