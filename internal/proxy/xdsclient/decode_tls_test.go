package xdsclient

import (
	"encoding/pem"
	"reflect"
	"testing"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlspb "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-mesh/weft/internal/proxy/internal/testca"
	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
)

const (
	reviewsID = "spiffe://cluster.local/ns/default/sa/reviews"
	ratingsID = "spiffe://cluster.local/ns/default/sa/ratings"
)

// upstream is the reviews cluster over mTLS with its context mutated.
func upstream(mutate func(*tlspb.UpstreamTlsContext)) *clusterpb.Cluster {
	ctx := xdstest.UpstreamTLSContext(reviews, reviewsID)
	mutate(ctx)
	return xdstest.WithUpstreamTLS(xdstest.EDSCluster(reviews), ctx)
}

// inboundMTLS is the PERMISSIVE inbound listener, mutated, with the
// outbound listener beside it.
func inboundMTLS(mutate func(*listenerpb.Listener)) []proto.Message {
	l := xdstest.InboundMTLS("127.0.0.1:15006", xdstest.Permissive, xdstest.SecureHCM("inbound"))
	mutate(l)
	return []proto.Message{xdstest.Listeners()[0], l}
}

// downstream mutates the DownstreamTlsContext of the inbound tls chain.
func downstream(mutate func(*tlspb.DownstreamTlsContext)) []proto.Message {
	return inboundMTLS(func(l *listenerpb.Listener) {
		ctx := xdstest.DownstreamTLSContext()
		mutate(ctx)
		l.FilterChains[0].TransportSocket.ConfigType = &corepb.TransportSocket_TypedConfig{TypedConfig: xdstest.MustAny(ctx)}
	})
}

// inboundHCM is the PERMISSIVE inbound listener with its connection
// manager (in both chains) mutated.
func inboundHCM(mutate func(*hcmpb.HttpConnectionManager)) []proto.Message {
	h := xdstest.SecureHCM("inbound")
	mutate(h)
	return []proto.Message{xdstest.Listeners()[0], xdstest.InboundMTLS("127.0.0.1:15006", xdstest.Permissive, h)}
}

func TestDecodeSecurityNACKMessages(t *testing.T) {
	ca := testca.New(t, "test")
	bundle := ca.BundlePEM()
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Issue(t, reviewsID, 3600e9).Leaf.Raw})
	const (
		utc   = "cluster " + reviews + ": transport_socket.typed_config."
		chain = "listener inbound: filter_chains[0]."
		dtc   = chain + "transport_socket.typed_config."
		hcm   = chain + "filters[0].typed_config."
	)
	tests := []struct {
		name      string
		typ       Type
		resources []proto.Message
		want      string // the NACK message; "" means accepted
	}{
		// Secrets.
		{"the ROOTCA trust bundle is accepted", TypeSecret, []proto.Message{xdstest.RootCA(bundle)}, ""},
		{"a trust bundle as an inline string is accepted", TypeSecret,
			[]proto.Message{with(xdstest.RootCA(nil), func(s *tlspb.Secret) {
				s.GetValidationContext().TrustedCa.Specifier = &corepb.DataSource_InlineString{InlineString: string(bundle)}
			})}, ""},
		{"the proxy's own certificate is never accepted from the control plane", TypeSecret,
			[]proto.Message{with(xdstest.RootCA(bundle), func(s *tlspb.Secret) { s.Name = "default" })},
			`secret default: name: "default" is the proxy's own certificate, which never comes over xDS (its key never leaves the proxy)`},
		{"a secret of another name is rejected", TypeSecret,
			[]proto.Message{with(xdstest.RootCA(bundle), func(s *tlspb.Secret) { s.Name = "other" })},
			`secret other: name: "other" not supported, want "ROOTCA"`},
		{"a certificate secret is rejected", TypeSecret,
			[]proto.Message{&tlspb.Secret{Name: "ROOTCA", Type: &tlspb.Secret_TlsCertificate{TlsCertificate: &tlspb.TlsCertificate{}}}},
			"secret ROOTCA: tls_certificate: not supported"},
		{"a trust bundle read from a file is rejected", TypeSecret,
			[]proto.Message{with(xdstest.RootCA(nil), func(s *tlspb.Secret) {
				s.GetValidationContext().TrustedCa.Specifier = &corepb.DataSource_Filename{Filename: "/etc/ca.pem"}
			})},
			"secret ROOTCA: validation_context.trusted_ca.filename: not supported"},
		{"a trust bundle that is not PEM is rejected", TypeSecret, []proto.Message{xdstest.RootCA([]byte("junk"))},
			"secret ROOTCA: validation_context.trusted_ca: trailing data after the last PEM block"},
		{"a trust bundle holding a leaf certificate is rejected", TypeSecret, []proto.Message{xdstest.RootCA(leafPEM)},
			"secret ROOTCA: validation_context.trusted_ca: certificate 0 (O=weft) is not a CA certificate"},
		{"SAN matchers in the ROOTCA secret are rejected", TypeSecret,
			[]proto.Message{with(xdstest.RootCA(bundle), func(s *tlspb.Secret) {
				s.GetValidationContext().MatchTypedSubjectAltNames = []*tlspb.SubjectAltNameMatcher{{}}
			})},
			"secret ROOTCA: validation_context.match_typed_subject_alt_names: not supported"},

		// Clusters.
		{"an mTLS cluster is accepted", TypeCluster, []proto.Message{xdstest.MTLSCluster(reviews, reviewsID, ratingsID)}, ""},
		{"an mTLS cluster with no server identity (no endpoints) is accepted", TypeCluster, []proto.Message{xdstest.MTLSCluster(reviews)}, ""},
		{"TLS 1.2 is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				c.CommonTlsContext.TlsParams.TlsMinimumProtocolVersion = tlspb.TlsParameters_TLSv1_2
			})},
			utc + "common_tls_context.tls_params.tls_minimum_protocol_version: TLSv1_2 not supported, want TLSv1_3"},
		{"TLS parameters left to defaults are rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) { c.CommonTlsContext.TlsParams = nil })},
			utc + "common_tls_context.tls_params: required: weft-proxy speaks TLS 1.3 only, set tls_minimum_protocol_version TLSv1_3"},
		{"cipher suites are rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) { c.CommonTlsContext.TlsParams.CipherSuites = []string{"AES128"} })},
			utc + "common_tls_context.tls_params.cipher_suites: not supported"},
		{"ALPN other than h2 is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) { c.CommonTlsContext.AlpnProtocols = []string{"http/1.1"} })},
			utc + `common_tls_context.alpn_protocols: ["http/1.1"] not supported, want ["h2"]: sidecars speak HTTP/2 to each other`},
		{"a DNS SAN matcher is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				c.CommonTlsContext.GetCombinedValidationContext().DefaultValidationContext.MatchTypedSubjectAltNames[0].SanType = tlspb.SubjectAltNameMatcher_DNS
			})},
			utc + "common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].san_type: DNS not supported, want URI"},
		{"a prefix SAN matcher is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				c.CommonTlsContext.GetCombinedValidationContext().DefaultValidationContext.MatchTypedSubjectAltNames[0].Matcher =
					&matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Prefix{Prefix: "spiffe://cluster.local/"}}
			})},
			utc + "common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].matcher.prefix: not supported"},
		{"a SAN that is not a SPIFFE ID is rejected", TypeCluster,
			[]proto.Message{xdstest.MTLSCluster(reviews, "https://reviews")},
			utc + `common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names[0].matcher.exact: "https://reviews" is not a SPIFFE ID, want spiffe://<trust-domain>/<path>`},
		{"the deprecated untyped SAN matchers are rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				//lint:ignore SA1019 the deprecated field is what this case sends
				c.CommonTlsContext.GetCombinedValidationContext().DefaultValidationContext.MatchSubjectAltNames = []*matcherpb.StringMatcher{{}}
			})},
			utc + "common_tls_context.combined_validation_context.default_validation_context.match_subject_alt_names: not supported"},
		{"a config source for the default certificate is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				c.CommonTlsContext.TlsCertificateSdsSecretConfigs[0].SdsConfig = xdstest.ADS()
			})},
			utc + `common_tls_context.tls_certificate_sds_secret_configs[0].sds_config: not supported: "default" is the proxy's own certificate, referred to by name only`},
		{"a certificate other than default is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) { c.CommonTlsContext.TlsCertificateSdsSecretConfigs[0].Name = "mine" })},
			utc + `common_tls_context.tls_certificate_sds_secret_configs[0].name: "mine" not supported, want "default"`},
		{"an inline certificate is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				c.CommonTlsContext.TlsCertificates = []*tlspb.TlsCertificate{{}}
			})},
			utc + "common_tls_context.tls_certificates: not supported"},
		{"a validation secret other than ROOTCA is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				c.CommonTlsContext.GetCombinedValidationContext().ValidationContextSdsSecretConfig.Name = "OTHERCA"
			})},
			utc + `common_tls_context.combined_validation_context.validation_context_sds_secret_config.name: "OTHERCA" not supported, want "ROOTCA"`},
		{"a missing ROOTCA reference is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				c.CommonTlsContext.GetCombinedValidationContext().ValidationContextSdsSecretConfig = nil
			})},
			utc + "common_tls_context.combined_validation_context.validation_context_sds_secret_config: required: want {name: ROOTCA, sds_config: ads}"},
		{"ROOTCA from another config source is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				c.CommonTlsContext.GetCombinedValidationContext().ValidationContextSdsSecretConfig.SdsConfig =
					&corepb.ConfigSource{ConfigSourceSpecifier: &corepb.ConfigSource_ApiConfigSource{ApiConfigSource: &corepb.ApiConfigSource{}}}
			})},
			utc + "common_tls_context.combined_validation_context.validation_context_sds_secret_config.sds_config.api_config_source: not supported"},
		{"validation without the server identities is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) {
				c.CommonTlsContext.ValidationContextType = &tlspb.CommonTlsContext_ValidationContextSdsSecretConfig{ValidationContextSdsSecretConfig: xdstest.RootCARef()}
			})},
			utc + "common_tls_context.validation_context_type: want combined_validation_context with the server's SPIFFE IDs and the ROOTCA secret"},
		{"renegotiation is rejected", TypeCluster,
			[]proto.Message{upstream(func(c *tlspb.UpstreamTlsContext) { c.AllowRenegotiation = true })},
			utc + "allow_renegotiation: not supported"},
		{"a downstream context on a cluster is rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) {
				c.TransportSocket = &corepb.TransportSocket{Name: "tls", ConfigType: &corepb.TransportSocket_TypedConfig{TypedConfig: xdstest.MustAny(xdstest.DownstreamTLSContext())}}
			})},
			"cluster " + reviews + ": transport_socket.typed_config: type " + downstreamTLSURL + " not supported, want " + upstreamTLSURL},
		{"mTLS to a STATIC cluster is rejected", TypeCluster,
			[]proto.Message{xdstest.WithUpstreamTLS(xdstest.StaticCluster("inbound|80||", "127.0.0.1:8080"), xdstest.UpstreamTLSContext("x", reviewsID))},
			"cluster inbound|80||: transport_socket: not supported for STATIC clusters: mTLS is for mesh endpoints, from EDS"},
		{"transport socket matches are rejected", TypeCluster,
			[]proto.Message{with(xdstest.EDSCluster(reviews), func(c *clusterpb.Cluster) {
				c.TransportSocketMatches = []*clusterpb.Cluster_TransportSocketMatch{{Name: "tlsMode-istio"}}
			})},
			"cluster " + reviews + ": transport_socket_matches: not supported"},

		// Listeners.
		{"a STRICT inbound listener is accepted", TypeListener,
			[]proto.Message{xdstest.Listeners()[0], xdstest.InboundMTLS("127.0.0.1:15006", xdstest.Strict, xdstest.SecureHCM("inbound"))}, ""},
		{"a PERMISSIVE inbound listener is accepted", TypeListener, inboundMTLS(func(*listenerpb.Listener) {}), ""},
		{"a DISABLE inbound listener is accepted", TypeListener,
			[]proto.Message{xdstest.Listeners()[0], xdstest.InboundMTLS("127.0.0.1:15006", xdstest.Disable, xdstest.SecureHCM("inbound"))}, ""},
		{"TLS chains without the tls_inspector are rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.ListenerFilters = nil }),
			"listener inbound: filter_chains: want exactly one filter chain, got 2"},
		{"a TLS chain without the tls_inspector is rejected", TypeListener,
			[]proto.Message{xdstest.Listeners()[0], with(xdstest.InboundMTLS("127.0.0.1:15006", xdstest.Strict, xdstest.SecureHCM("inbound")), func(l *listenerpb.Listener) {
				l.ListenerFilters = nil
			})},
			"listener inbound: filter_chains[0].filter_chain_match: not supported"},
		{"no filter chain at all is rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.FilterChains = nil }),
			`listener inbound: filter_chains: want a "tls" chain, a "raw_buffer" chain or both, got 0 chains`},
		{"a chain without a match is rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.FilterChains[1].FilterChainMatch = nil }),
			`listener inbound: filter_chains[1].filter_chain_match: required with the tls_inspector: want transport_protocol "tls" or "raw_buffer"`},
		{"matching on server names is rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.FilterChains[0].FilterChainMatch.ServerNames = []string{"x"} }),
			chain + "filter_chain_match.server_names: not supported"},
		{"an unknown transport protocol is rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.FilterChains[1].FilterChainMatch.TransportProtocol = "quic" }),
			`listener inbound: filter_chains[1].filter_chain_match.transport_protocol: "quic" not supported, want "tls" or "raw_buffer"`},
		{"two tls chains are rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.FilterChains[1] = l.FilterChains[0] }),
			`listener inbound: filter_chains[1].filter_chain_match.transport_protocol: a second "tls" chain`},
		{"a tls chain without a transport socket is rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.FilterChains[0].TransportSocket = nil }),
			chain + `transport_socket: required for the "tls" chain`},
		{"a raw_buffer chain with a transport socket is rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.FilterChains[1].TransportSocket = l.FilterChains[0].TransportSocket }),
			`listener inbound: filter_chains[1].transport_socket: not supported on the "raw_buffer" chain`},
		{"chains with different connection managers are rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) {
				l.FilterChains[1] = proto.Clone(l.FilterChains[1]).(*listenerpb.FilterChain)
				l.FilterChains[1].Filters[0].ConfigType = &listenerpb.Filter_TypedConfig{TypedConfig: xdstest.MustAny(xdstest.HCM("inbound"))}
			}),
			"listener inbound: filter_chains[1].filters: differ from filter_chains[0].filters; both chains must hold the same http_connection_manager"},
		{"a default filter chain is rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.DefaultFilterChain = l.FilterChains[1] }),
			"listener inbound: default_filter_chain: not supported"},
		{"tls_inspector options are rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) {
				l.ListenerFilters[0].ConfigType = &listenerpb.ListenerFilter_TypedConfig{TypedConfig: xdstest.MustAny(&tlsinspectorpb.TlsInspector{EnableJa3Fingerprinting: wrapperspb.Bool(true)})}
			}),
			"listener inbound: listener_filters[0].typed_config.enable_ja3_fingerprinting: not supported"},
		{"another listener filter is rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) {
				l.ListenerFilters = []*listenerpb.ListenerFilter{{Name: "envoy.filters.listener.original_dst"}}
			}),
			`listener inbound: listener_filters[0]: filter "envoy.filters.listener.original_dst" not supported, want envoy.filters.listener.tls_inspector`},
		{"two listener filters are rejected", TypeListener,
			inboundMTLS(func(l *listenerpb.Listener) { l.ListenerFilters = append(l.ListenerFilters, l.ListenerFilters[0]) }),
			"listener inbound: listener_filters: want only envoy.filters.listener.tls_inspector, got 2 filters"},
		{"an optional client certificate is rejected", TypeListener,
			downstream(func(c *tlspb.DownstreamTlsContext) { c.RequireClientCertificate = nil }),
			dtc + "require_client_certificate: must be true: mesh peers authenticate with their certificates"},
		{"TLS 1.2 on the inbound is rejected", TypeListener,
			downstream(func(c *tlspb.DownstreamTlsContext) {
				c.CommonTlsContext.TlsParams.TlsMaximumProtocolVersion = tlspb.TlsParameters_TLSv1_2
				c.CommonTlsContext.TlsParams.TlsMinimumProtocolVersion = tlspb.TlsParameters_TLSv1_2
			}),
			dtc + "common_tls_context.tls_params.tls_minimum_protocol_version: TLSv1_2 not supported, want TLSv1_3"},
		{"an unknown ALPN protocol is rejected", TypeListener,
			downstream(func(c *tlspb.DownstreamTlsContext) { c.CommonTlsContext.AlpnProtocols = []string{"h2", "h3"} }),
			dtc + `common_tls_context.alpn_protocols[1]: "h3" not supported, want h2 and/or http/1.1, once each`},
		{"an inbound accepting any certificate is rejected", TypeListener,
			downstream(func(c *tlspb.DownstreamTlsContext) { c.CommonTlsContext.ValidationContextType = nil }),
			dtc + "common_tls_context.validation_context_type: required: want validation_context_sds_secret_config {name: ROOTCA}"},
		{"a combined validation context without SANs is accepted on the inbound", TypeListener,
			downstream(func(c *tlspb.DownstreamTlsContext) {
				c.CommonTlsContext.ValidationContextType = &tlspb.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlspb.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext: &tlspb.CertificateValidationContext{}, ValidationContextSdsSecretConfig: xdstest.RootCARef()}}
			}), ""},
		{"SAN matchers on the inbound are rejected", TypeListener,
			downstream(func(c *tlspb.DownstreamTlsContext) {
				c.CommonTlsContext.ValidationContextType = &tlspb.CommonTlsContext_CombinedValidationContext{CombinedValidationContext: &tlspb.CommonTlsContext_CombinedCertificateValidationContext{
					DefaultValidationContext:         &tlspb.CertificateValidationContext{MatchTypedSubjectAltNames: []*tlspb.SubjectAltNameMatcher{{}}},
					ValidationContextSdsSecretConfig: xdstest.RootCARef()}}
			}),
			dtc + "common_tls_context.combined_validation_context.default_validation_context: not supported on a listener: which peers may call is authorization's business"},
		{"session ticket keys are rejected", TypeListener,
			downstream(func(c *tlspb.DownstreamTlsContext) {
				c.SessionTicketKeysType = &tlspb.DownstreamTlsContext_SessionTicketKeys{SessionTicketKeys: &tlspb.TlsSessionTicketKeys{}}
			}),
			dtc + "session_ticket_keys: not supported"},
		{"forwarding a client's certificate header is rejected", TypeListener,
			inboundHCM(func(h *hcmpb.HttpConnectionManager) {
				h.ForwardClientCertDetails = hcmpb.HttpConnectionManager_APPEND_FORWARD
			}),
			hcm + "forward_client_cert_details: APPEND_FORWARD not supported, want SANITIZE or SANITIZE_SET: a client's certificate header is never trusted"},
		{"SANITIZE_SET without the URI is rejected", TypeListener,
			inboundHCM(func(h *hcmpb.HttpConnectionManager) { h.SetCurrentClientCertDetails = nil }),
			hcm + "set_current_client_cert_details: required with SANITIZE_SET: want {uri: true}"},
		{"client certificate details other than the URI are rejected", TypeListener,
			inboundHCM(func(h *hcmpb.HttpConnectionManager) { h.SetCurrentClientCertDetails.Subject = wrapperspb.Bool(true) }),
			hcm + "set_current_client_cert_details.subject: not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode(tt.typ, anys(tt.resources...))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("decode error:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestDecodeSecurityResources(t *testing.T) {
	t.Run("an mTLS cluster keeps its SNI and server identities", func(t *testing.T) {
		set, err := decode(TypeCluster, anys(xdstest.MTLSCluster(reviews, reviewsID, ratingsID, reviewsID)))
		if err != nil {
			t.Fatal(err)
		}
		got := set.(map[string]*Cluster)[reviews].TLS
		want := &UpstreamTLS{SNI: reviews, SubjectAltNames: []string{reviewsID, ratingsID}, ValidationSecret: "ROOTCA"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("TLS = %+v, want %+v", got, want)
		}
	})
	for _, tt := range []struct {
		mode      string
		tls       bool
		plaintext bool
	}{
		{xdstest.Strict, true, false},
		{xdstest.Permissive, true, true},
		{xdstest.Disable, false, true},
	} {
		t.Run("a "+tt.mode+" inbound listener serves the chains it has", func(t *testing.T) {
			set, err := decode(TypeListener, anys(xdstest.Listeners()[0], xdstest.InboundMTLS("127.0.0.1:15006", tt.mode, xdstest.SecureHCM("inbound"))))
			if err != nil {
				t.Fatal(err)
			}
			ls := set.(map[string]*Listener)
			in := ls["inbound"]
			if !in.InspectTLS || (in.TLS != nil) != tt.tls || in.Plaintext != tt.plaintext || in.ForwardClientCert != "SANITIZE_SET" || in.RouteConfigName != "inbound" {
				t.Errorf("inbound = %+v, want inspect, tls %v, plaintext %v, SANITIZE_SET, routes inbound", in, tt.tls, tt.plaintext)
			}
			if tt.tls && !reflect.DeepEqual(in.TLS, &DownstreamTLS{ALPN: []string{"h2", "http/1.1"}, ValidationSecret: "ROOTCA"}) {
				t.Errorf("inbound TLS = %+v", in.TLS)
			}
			if out := ls["outbound"]; out.InspectTLS || out.TLS != nil || !out.Plaintext || out.ForwardClientCert != "SANITIZE" {
				t.Errorf("outbound = %+v, want plaintext only and SANITIZE", out)
			}
		})
	}
	t.Run("a configuration refers to the secrets it needs", func(t *testing.T) {
		r := Resources{
			Clusters:  map[string]*Cluster{reviews: {TLS: &UpstreamTLS{ValidationSecret: "ROOTCA"}}, "plain": {}},
			Listeners: map[string]*Listener{"inbound": {TLS: &DownstreamTLS{ValidationSecret: "ROOTCA"}}},
		}
		if got, want := r.MissingSecrets(), []string{"ROOTCA (for cluster " + reviews + ")"}; !reflect.DeepEqual(got, want) {
			t.Errorf("missing secrets = %q, want %q", got, want)
		}
		r.Secrets = map[string]*Secret{"ROOTCA": {Name: "ROOTCA"}}
		if got := r.MissingSecrets(); len(got) != 0 {
			t.Errorf("missing secrets = %q, want none", got)
		}
	})
}
