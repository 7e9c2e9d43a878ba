package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	networking "istio.io/api/networking/v1alpha3"
)

// httpProtocolOptionsKey is the typed_extension_protocol_options key of
// a cluster's HTTP protocol options.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// keepsHTTP1 reports whether c's DestinationRule asks that HTTP/1.1
// requests stay HTTP/1.1 between sidecars (connectionPool.http
// h2UpgradePolicy DO_NOT_UPGRADE; the subset's setting wins over the
// rule's). weft's default, unlike Istio's, is to upgrade: mTLS between
// sidecars is HTTP/2, one multiplexed connection per endpoint, whatever
// the app speaks.
func keepsHTTP1(c outboundCluster) bool {
	if c.rule == nil {
		return false
	}
	policy := c.rule.Spec.GetTrafficPolicy().GetConnectionPool().GetHttp().GetH2UpgradePolicy()
	if c.subset >= 0 {
		if p := c.rule.Spec.GetSubsets()[c.subset].GetTrafficPolicy().GetConnectionPool().GetHttp().GetH2UpgradePolicy(); p != networking.ConnectionPoolSettings_HTTPSettings_DEFAULT {
			policy = p
		}
	}
	return policy == networking.ConnectionPoolSettings_HTTPSettings_DO_NOT_UPGRADE
}

// keepDownstreamProtocol makes cl send each request with the protocol it
// arrived in (HTTP/1.1 or HTTP/2), as Envoy's use_downstream_protocol_config.
func keepDownstreamProtocol(cl *clusterv3.Cluster) error {
	opts, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		},
	})
	if err != nil {
		return err
	}
	cl.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsKey: opts}
	return nil
}
