package xdsclient

import (
	"fmt"

	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacnetworkpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxypb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/weft-mesh/weft/internal/proxy/filter/rbac"
)

// decodeTCPFilters decodes the network filters of a TCP chain (chain is
// its index): envoy.filters.network.rbac filters, then tcp_proxy last.
func decodeTCPFilters(chain int, filters []*listenerpb.Filter) (*TCPProxy, error) {
	out := &TCPProxy{}
	for i, f := range filters {
		path := fmt.Sprintf("filter_chains[%d].filters[%d]", chain, i)
		if err := onlyFields(f, "name", "typed_config"); err != nil {
			return nil, at(path, err)
		}
		if i == len(filters)-1 {
			tp := new(tcpproxypb.TcpProxy)
			if err := unmarshalAny(f.GetTypedConfig(), tcpProxyURL, tp); err != nil {
				return nil, at(path+".typed_config", err)
			}
			if err := onlyFields(tp, "stat_prefix", "cluster"); err != nil {
				return nil, at(path+".typed_config", err)
			}
			if tp.GetCluster() == "" {
				return nil, fail(path+".typed_config.cluster", "required")
			}
			out.Cluster = tp.GetCluster()
			return out, nil
		}
		m := new(rbacnetworkpb.RBAC)
		if err := unmarshalAny(f.GetTypedConfig(), rbac.NetworkURL, m); err != nil {
			return nil, at(path+".typed_config", fmt.Errorf("%w (before tcp_proxy only envoy.filters.network.rbac is supported)", err))
		}
		rf, err := rbac.CompileNetwork(m)
		if err != nil {
			return nil, at(path+".typed_config", err)
		}
		out.RBAC = append(out.RBAC, rf)
	}
	return nil, fail(fmt.Sprintf("filter_chains[%d].filters", chain), "want tcp_proxy last")
}
