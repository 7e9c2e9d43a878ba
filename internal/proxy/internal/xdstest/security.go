package xdstest

import (
	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlspb "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The security resources of docs/xds.md, as the control plane sends them.

// RootCA is the ROOTCA secret holding bundle.
func RootCA(bundle []byte) *tlspb.Secret {
	return &tlspb.Secret{
		Name: "ROOTCA",
		Type: &tlspb.Secret_ValidationContext{ValidationContext: &tlspb.CertificateValidationContext{
			TrustedCa: &corepb.DataSource{Specifier: &corepb.DataSource_InlineBytes{InlineBytes: bundle}},
		}},
	}
}

// TLS13 are TLS parameters allowing TLS 1.3 only.
func TLS13() *tlspb.TlsParameters {
	return &tlspb.TlsParameters{
		TlsMinimumProtocolVersion: tlspb.TlsParameters_TLSv1_3,
		TlsMaximumProtocolVersion: tlspb.TlsParameters_TLSv1_3,
	}
}

// DefaultCertificate refers to the proxy's own certificate.
func DefaultCertificate() []*tlspb.SdsSecretConfig {
	return []*tlspb.SdsSecretConfig{{Name: "default"}}
}

// RootCARef refers to the ROOTCA secret over ADS.
func RootCARef() *tlspb.SdsSecretConfig {
	return &tlspb.SdsSecretConfig{Name: "ROOTCA", SdsConfig: ADS()}
}

// UpstreamTLSContext is the UpstreamTlsContext of a mesh cluster whose
// servers may have the SPIFFE IDs sans.
func UpstreamTLSContext(sni string, sans ...string) *tlspb.UpstreamTlsContext {
	matchers := make([]*tlspb.SubjectAltNameMatcher, len(sans))
	for i, s := range sans {
		matchers[i] = &tlspb.SubjectAltNameMatcher{
			SanType: tlspb.SubjectAltNameMatcher_URI,
			Matcher: &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: s}},
		}
	}
	return &tlspb.UpstreamTlsContext{
		Sni: sni,
		CommonTlsContext: &tlspb.CommonTlsContext{
			TlsParams:                      TLS13(),
			AlpnProtocols:                  []string{"h2"},
			TlsCertificateSdsSecretConfigs: DefaultCertificate(),
			ValidationContextType: &tlspb.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlspb.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlspb.CertificateValidationContext{MatchTypedSubjectAltNames: matchers},
				ValidationContextSdsSecretConfig: RootCARef(),
			}},
		},
	}
}

// WithUpstreamTLS sets c's transport socket to mTLS with ctx.
func WithUpstreamTLS(c *clusterpb.Cluster, ctx *tlspb.UpstreamTlsContext) *clusterpb.Cluster {
	c.TransportSocket = &corepb.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corepb.TransportSocket_TypedConfig{TypedConfig: MustAny(ctx)},
	}
	return c
}

// MTLSCluster is an EDS cluster reached over mTLS, its servers having the
// SPIFFE IDs sans.
func MTLSCluster(name string, sans ...string) *clusterpb.Cluster {
	return WithUpstreamTLS(EDSCluster(name), UpstreamTLSContext(name, sans...))
}

// DownstreamTLSContext is the inbound listener's DownstreamTlsContext.
func DownstreamTLSContext() *tlspb.DownstreamTlsContext {
	return &tlspb.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlspb.CommonTlsContext{
			TlsParams:                      TLS13(),
			AlpnProtocols:                  []string{"h2", "http/1.1"},
			TlsCertificateSdsSecretConfigs: DefaultCertificate(),
			ValidationContextType:          &tlspb.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: RootCARef()},
		},
	}
}

// Modes of the inbound listener, as PeerAuthentication sets them.
const (
	Strict     = "STRICT"
	Permissive = "PERMISSIVE"
	Disable    = "DISABLE"
)

// SecureHCM is HCM with x-forwarded-client-cert set from the verified
// peer (SANITIZE_SET with the URI).
func SecureHCM(routeName string) *hcmpb.HttpConnectionManager {
	h := HCM(routeName)
	h.ForwardClientCertDetails = hcmpb.HttpConnectionManager_SANITIZE_SET
	h.SetCurrentClientCertDetails = &hcmpb.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	return h
}

// InboundMTLS is the inbound listener at addr under mode: the tls_inspector,
// and a "tls" chain (unless DISABLE) and a "raw_buffer" chain (unless
// STRICT), both holding hcm.
func InboundMTLS(addr, mode string, hcm *hcmpb.HttpConnectionManager) *listenerpb.Listener {
	filters := []*listenerpb.Filter{{
		Name:       "envoy.filters.network.http_connection_manager",
		ConfigType: &listenerpb.Filter_TypedConfig{TypedConfig: MustAny(hcm)},
	}}
	l := &listenerpb.Listener{
		Name:    "inbound",
		Address: SocketAddress(addr),
		ListenerFilters: []*listenerpb.ListenerFilter{{
			Name:       "envoy.filters.listener.tls_inspector",
			ConfigType: &listenerpb.ListenerFilter_TypedConfig{TypedConfig: MustAny(&tlsinspectorpb.TlsInspector{})},
		}},
	}
	if mode != Disable {
		l.FilterChains = append(l.FilterChains, &listenerpb.FilterChain{
			Name:             "inbound-tls",
			FilterChainMatch: &listenerpb.FilterChainMatch{TransportProtocol: "tls"},
			TransportSocket: &corepb.TransportSocket{
				Name:       "envoy.transport_sockets.tls",
				ConfigType: &corepb.TransportSocket_TypedConfig{TypedConfig: MustAny(DownstreamTLSContext())},
			},
			Filters: filters,
		})
	}
	if mode != Strict {
		l.FilterChains = append(l.FilterChains, &listenerpb.FilterChain{
			Name:             "inbound-plaintext",
			FilterChainMatch: &listenerpb.FilterChainMatch{TransportProtocol: "raw_buffer"},
			Filters:          filters,
		})
	}
	return l
}
