package translate

import (
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/weft-mesh/weft/internal/mesh"
)

// Names of the secrets of docs/xds.md.
const (
	// RootCASecret is the trust bundle, sent over SDS.
	RootCASecret = "ROOTCA"
	// DefaultSecret is the proxy's own certificate, which the proxy holds
	// itself; resources only refer to it by name.
	DefaultSecret = "default"
)

// Names of the inbound listener's filter chains.
const (
	inboundTLSChain       = "inbound-tls"
	inboundPlaintextChain = "inbound-plaintext"
)

// securityOn reports whether the control plane runs a CA, and so whether
// sidecars talk mTLS.
func securityOn(snap *mesh.Snapshot) bool { return len(snap.Security.TrustBundlePEM) > 0 }

// rootCASecret is the ROOTCA secret: the trust bundle, PEM.
func rootCASecret(snap *mesh.Snapshot) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: RootCASecret,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: snap.Security.TrustBundlePEM}},
		}},
	}
}

func tls13() *tlsv3.TlsParameters {
	return &tlsv3.TlsParameters{
		TlsMinimumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
		TlsMaximumProtocolVersion: tlsv3.TlsParameters_TLSv1_3,
	}
}

func defaultCertificate() []*tlsv3.SdsSecretConfig {
	return []*tlsv3.SdsSecretConfig{{Name: DefaultSecret}}
}

func rootCARef() *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: RootCASecret, SdsConfig: adsSource()}
}

func tlsTransportSocket(m proto.Message) (*corev3.TransportSocket, error) {
	a, err := typedConfig(m)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a},
	}, nil
}

// upstreamTLS is the transport socket of an mTLS cluster: TLS 1.3, ALPN
// h2, the proxy's certificate, and servers verified against ROOTCA with
// one of the SPIFFE IDs sans.
func upstreamTLS(cluster string, sans []string) (*corev3.TransportSocket, error) {
	matchers := make([]*tlsv3.SubjectAltNameMatcher, len(sans))
	for i, s := range sans {
		matchers[i] = &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}},
		}
	}
	return tlsTransportSocket(&tlsv3.UpstreamTlsContext{
		Sni: cluster,
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      tls13(),
			AlpnProtocols:                  []string{"h2"},
			TlsCertificateSdsSecretConfigs: defaultCertificate(),
			ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: matchers},
				ValidationContextSdsSecretConfig: rootCARef(),
			}},
		},
	})
}

// downstreamTLS is the transport socket of the inbound listener's tls
// chain: TLS 1.3, a client certificate required and verified against
// ROOTCA, ALPN h2 and http/1.1.
func downstreamTLS() (*corev3.TransportSocket, error) {
	return tlsTransportSocket(&tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsParams:                      tls13(),
			AlpnProtocols:                  []string{"h2", "http/1.1"},
			TlsCertificateSdsSecretConfigs: defaultCertificate(),
			ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: rootCARef()},
		},
	})
}

// tlsInspector is the listener filter that tells TLS from plaintext.
func tlsInspector() (*listenerv3.ListenerFilter, error) {
	a, err := typedConfig(&tlsinspectorv3.TlsInspector{})
	if err != nil {
		return nil, err
	}
	return &listenerv3.ListenerFilter{
		Name:       wellknown.TlsInspector,
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: a},
	}, nil
}

// inboundChains are the inbound listener's filter chains under mode, both
// holding the same network filters: "tls" unless DISABLE, "raw_buffer"
// unless STRICT.
func inboundChains(mode MTLSMode, filters []*listenerv3.Filter) ([]*listenerv3.FilterChain, error) {
	var chains []*listenerv3.FilterChain
	if mode != MTLSDisable {
		ts, err := downstreamTLS()
		if err != nil {
			return nil, err
		}
		chains = append(chains, &listenerv3.FilterChain{
			Name:             inboundTLSChain,
			FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "tls"},
			TransportSocket:  ts,
			Filters:          filters,
		})
	}
	if mode != MTLSStrict {
		chains = append(chains, &listenerv3.FilterChain{
			Name:             inboundPlaintextChain,
			FilterChainMatch: &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"},
			Filters:          filters,
		})
	}
	return chains, nil
}

// setClientCertDetails makes the HCM replace any client-sent
// x-forwarded-client-cert with the verified peer's.
func setClientCertDetails(h *hcmv3.HttpConnectionManager) {
	h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
	h.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
}

// pathNormalization sets the HCM's path normalization from the mesh-wide
// setting; empty leaves the HCM as it is.
func pathNormalization(h *hcmv3.HttpConnectionManager, setting string) error {
	switch setting {
	case "":
		return nil
	case "BASE":
		h.NormalizePath = wrapperspb.Bool(true)
	case "MERGE_SLASHES":
		h.NormalizePath = wrapperspb.Bool(true)
		h.MergeSlashes = true
	case "DECODE_AND_MERGE_SLASHES":
		h.NormalizePath = wrapperspb.Bool(true)
		h.MergeSlashes = true
		h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
	default:
		return fmt.Errorf("path normalization %q: want BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES", setting)
	}
	return nil
}

// clusterSANs are the distinct SPIFFE IDs of a cluster's endpoints,
// sorted.
func (t *translation) clusterSANs(endpoints []*mesh.Workload) []string {
	sans := make([]string, 0, 1)
	for _, w := range endpoints {
		id := w.SpiffeID(t.snap.Security.TrustDomain)
		if !slices.Contains(sans, id) {
			sans = append(sans, id)
		}
	}
	slices.Sort(sans)
	return sans
}

// clusterMTLS decides whether a cluster is reached over mTLS. With
// security on it is, unless the DestinationRule's TLS settings for the
// cluster say DISABLE, or they say nothing and every endpoint's own
// PeerAuthentication disables mTLS on its port (Istio's auto mTLS). TLS
// settings are resolved as Istio merges traffic policies: the rule's, then
// its port-level settings for the service port, then the subset's, then
// the subset's port-level settings; the last one set wins.
func (t *translation) clusterMTLS(c outboundCluster) (bool, error) {
	if !securityOn(t.snap) {
		return false, nil
	}
	var settings *networking.ClientTLSSettings
	path := ""
	if dr := c.rule; dr != nil {
		consider := func(tp *networking.TrafficPolicy, p string) {
			if tls := tp.GetTls(); tls != nil {
				settings, path = tls, p+".tls"
			}
			for i, pls := range tp.GetPortLevelSettings() {
				if pls.GetPort().GetNumber() == c.svc.Port && pls.GetTls() != nil {
					settings, path = pls.GetTls(), fmt.Sprintf("%s.portLevelSettings[%d].tls", p, i)
				}
			}
		}
		consider(dr.Spec.GetTrafficPolicy(), "spec.trafficPolicy")
		if c.subset >= 0 {
			consider(dr.Spec.GetSubsets()[c.subset].GetTrafficPolicy(), fmt.Sprintf("spec.subsets[%d].trafficPolicy", c.subset))
		}
		if settings != nil {
			if err := checkClientTLS(settings); err != nil {
				return false, fmt.Errorf("DestinationRule %s/%s: %s.%w", dr.Namespace, dr.Name, path, err)
			}
			return settings.GetMode() == networking.ClientTLSSettings_ISTIO_MUTUAL, nil
		}
	}
	if len(c.endpoints) == 0 {
		return true, nil
	}
	for _, w := range c.endpoints {
		if t.endpointMode(w) != MTLSDisable {
			return true, nil
		}
	}
	return false, nil
}

// checkClientTLS accepts the modes weft enforces between sidecars: mesh
// mTLS (ISTIO_MUTUAL) or plaintext (DISABLE), with nothing else set.
func checkClientTLS(s *networking.ClientTLSSettings) error {
	switch m := s.GetMode(); m {
	case networking.ClientTLSSettings_DISABLE, networking.ClientTLSSettings_ISTIO_MUTUAL:
	default:
		return fmt.Errorf("mode: %s not supported, want ISTIO_MUTUAL or DISABLE", m)
	}
	switch {
	case s.GetClientCertificate() != "", s.GetPrivateKey() != "", s.GetCaCertificates() != "", s.GetCredentialName() != "", s.GetCaCrl() != "":
		return fmt.Errorf("certificates: not supported; mesh mTLS uses the workload's own certificate")
	case len(s.GetSubjectAltNames()) > 0:
		return fmt.Errorf("subjectAltNames: not supported; the server identities are those of the service's workloads")
	case s.GetSni() != "":
		return fmt.Errorf("sni: not supported")
	case s.GetInsecureSkipVerify() != nil:
		return fmt.Errorf("insecureSkipVerify: not supported")
	}
	return nil
}

// endpointMode is the PeerAuthentication mode of a workload's service
// port, remembered for the rest of the translation.
func (t *translation) endpointMode(w *mesh.Workload) MTLSMode {
	if m, ok := t.modes[w.ID]; ok {
		return m
	}
	if t.modes == nil {
		t.modes = map[string]MTLSMode{}
	}
	m := t.policy.mtlsMode(t.snap, w, w.ServicePort)
	t.modes[w.ID] = m
	return m
}

// outboundClusterResource is the CDS resource of one outbound cluster.
func (t *translation) outboundClusterResource(c outboundCluster) (*clusterv3.Cluster, error) {
	cl := edsCluster(c.name)
	mtls, err := t.clusterMTLS(c)
	if err != nil || !mtls {
		return cl, err
	}
	if cl.TransportSocket, err = upstreamTLS(c.name, t.clusterSANs(c.endpoints)); err != nil {
		return nil, err
	}
	if keepsHTTP1(c) {
		if err := keepDownstreamProtocol(cl); err != nil {
			return nil, err
		}
	}
	return cl, nil
}
