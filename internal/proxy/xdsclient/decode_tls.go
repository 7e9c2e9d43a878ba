package xdsclient

import (
	"fmt"
	"slices"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerpb "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsinspectorpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlspb "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/internal/proxy/mtls"
)

// This file decodes the security subset of docs/xds.md: the ROOTCA secret,
// clusters' UpstreamTlsContext, and the inbound listener's TLS and plaintext
// filter chains.

// Names and type URLs of the security contract.
const (
	// RootCASecret is the Secret holding the mesh trust bundle.
	RootCASecret = "ROOTCA"
	// DefaultSecret is the proxy's own certificate and key, which the
	// identity agent holds; the control plane only refers to it.
	DefaultSecret = "default"

	upstreamTLSURL   = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	downstreamTLSURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	tlsInspectorURL  = "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
	tlsInspectorName = "envoy.filters.listener.tls_inspector"

	alpnH2     = "h2"
	alpnHTTP11 = "http/1.1"
)

// Secrets.

func decodeSecret(s *tlspb.Secret) (*Secret, error) {
	switch s.GetName() {
	case RootCASecret:
	case DefaultSecret:
		return nil, fail("name", "%q is the proxy's own certificate, which never comes over xDS (its key never leaves the proxy)", DefaultSecret)
	default:
		return nil, fail("name", "%q not supported, want %q", s.GetName(), RootCASecret)
	}
	if err := onlyFields(s, "name", "validation_context"); err != nil {
		return nil, err
	}
	vc := s.GetValidationContext()
	if vc == nil {
		return nil, fail("validation_context", "required")
	}
	if err := onlyFields(vc, "trusted_ca"); err != nil {
		return nil, at("validation_context", err)
	}
	const p = "validation_context.trusted_ca"
	ds := vc.GetTrustedCa()
	if ds == nil {
		return nil, fail(p, "required")
	}
	if err := onlyFields(ds, "inline_bytes", "inline_string"); err != nil {
		return nil, at(p, err)
	}
	bundle := ds.GetInlineBytes()
	if ds.GetInlineString() != "" {
		bundle = []byte(ds.GetInlineString())
	}
	roots, err := mtls.ParseRoots(bundle)
	if err != nil {
		return nil, fail(p, "%v", err)
	}
	return &Secret{Name: s.GetName(), Roots: roots}, nil
}

// Shared parts of the TLS contexts.

// checkTLSParams accepts TLS 1.3 only: minimum TLSv1_3, maximum TLSv1_3
// or unset.
func checkTLSParams(p *tlspb.TlsParameters) error {
	if p == nil {
		return fail("", "required: weft-proxy speaks TLS 1.3 only, set tls_minimum_protocol_version TLSv1_3")
	}
	if err := onlyFields(p, "tls_minimum_protocol_version", "tls_maximum_protocol_version"); err != nil {
		return err
	}
	if v := p.GetTlsMinimumProtocolVersion(); v != tlspb.TlsParameters_TLSv1_3 {
		return fail("tls_minimum_protocol_version", "%s not supported, want TLSv1_3", v)
	}
	if v := p.GetTlsMaximumProtocolVersion(); v != tlspb.TlsParameters_TLSv1_3 && v != tlspb.TlsParameters_TLS_AUTO {
		return fail("tls_maximum_protocol_version", "%s not supported, want TLSv1_3", v)
	}
	return nil
}

// checkCertificateSDS accepts exactly one certificate, "default", with no
// config source: the proxy's own SVID.
func checkCertificateSDS(cs []*tlspb.SdsSecretConfig) error {
	if len(cs) != 1 {
		return fail("", "want exactly one certificate, %q, got %d", DefaultSecret, len(cs))
	}
	c := cs[0]
	if c.GetSdsConfig() != nil {
		return fail("[0].sds_config", "not supported: %q is the proxy's own certificate, referred to by name only", DefaultSecret)
	}
	if err := onlyFields(c, "name"); err != nil {
		return at("[0]", err)
	}
	if c.GetName() != DefaultSecret {
		return fail("[0].name", "%q not supported, want %q", c.GetName(), DefaultSecret)
	}
	return nil
}

// checkValidationSDS accepts the ROOTCA secret over ADS.
func checkValidationSDS(v *tlspb.SdsSecretConfig) error {
	if v == nil {
		return fail("", "required: want {name: %s, sds_config: ads}", RootCASecret)
	}
	if err := onlyFields(v, "name", "sds_config"); err != nil {
		return err
	}
	if v.GetName() != RootCASecret {
		return fail("name", "%q not supported, want %q", v.GetName(), RootCASecret)
	}
	if err := checkADS(v.GetSdsConfig()); err != nil {
		return at("sds_config", err)
	}
	return nil
}

// decodeSANs accepts URI exact matchers, each a SPIFFE ID.
func decodeSANs(dvc *tlspb.CertificateValidationContext) ([]string, error) {
	if dvc == nil {
		return []string{}, nil
	}
	if err := onlyFields(dvc, "match_typed_subject_alt_names"); err != nil {
		return nil, err
	}
	sans := make([]string, 0, len(dvc.GetMatchTypedSubjectAltNames()))
	for i, m := range dvc.GetMatchTypedSubjectAltNames() {
		p := fmt.Sprintf("match_typed_subject_alt_names[%d]", i)
		if err := onlyFields(m, "san_type", "matcher"); err != nil {
			return nil, at(p, err)
		}
		if t := m.GetSanType(); t != tlspb.SubjectAltNameMatcher_URI {
			return nil, fail(p+".san_type", "%s not supported, want URI", t)
		}
		sm := m.GetMatcher()
		if sm == nil {
			return nil, fail(p+".matcher", "required")
		}
		if err := onlyFields(sm, "exact"); err != nil {
			return nil, at(p+".matcher", err)
		}
		if err := mtls.ParseSpiffeID(sm.GetExact()); err != nil {
			return nil, fail(p+".matcher.exact", "%v", err)
		}
		if !slices.Contains(sans, sm.GetExact()) {
			sans = append(sans, sm.GetExact())
		}
	}
	return sans, nil
}

// Clusters.

// decodeUpstreamTLS decodes a cluster's transport_socket: mTLS with an
// UpstreamTlsContext as docs/xds.md describes it.
func decodeUpstreamTLS(ts *corepb.TransportSocket) (*UpstreamTLS, error) {
	if err := onlyFields(ts, "name", "typed_config"); err != nil {
		return nil, err
	}
	if ts.GetTypedConfig() == nil {
		return nil, fail("typed_config", "required: want an UpstreamTlsContext")
	}
	utc := new(tlspb.UpstreamTlsContext)
	if err := unmarshalAny(ts.GetTypedConfig(), upstreamTLSURL, utc); err != nil {
		return nil, at("typed_config", err)
	}
	out, err := decodeUpstreamTLSContext(utc)
	return out, at("typed_config", err)
}

func decodeUpstreamTLSContext(utc *tlspb.UpstreamTlsContext) (*UpstreamTLS, error) {
	if err := onlyFields(utc, "common_tls_context", "sni"); err != nil {
		return nil, err
	}
	ctx := utc.GetCommonTlsContext()
	if ctx == nil {
		return nil, fail("common_tls_context", "required")
	}
	const p = "common_tls_context"
	// Checked before the generic field check for a clearer message.
	if _, ok := ctx.GetValidationContextType().(*tlspb.CommonTlsContext_CombinedValidationContext); !ok {
		return nil, fail(p+".validation_context_type", "want combined_validation_context with the server's SPIFFE IDs and the %s secret", RootCASecret)
	}
	if err := onlyFields(ctx, "tls_params", "alpn_protocols", "tls_certificate_sds_secret_configs", "combined_validation_context"); err != nil {
		return nil, at(p, err)
	}
	if err := checkTLSParams(ctx.GetTlsParams()); err != nil {
		return nil, at(p+".tls_params", err)
	}
	if a := ctx.GetAlpnProtocols(); !slices.Equal(a, []string{alpnH2}) {
		return nil, fail(p+".alpn_protocols", "%q not supported, want [\"h2\"]: sidecars speak HTTP/2 to each other", a)
	}
	if err := checkCertificateSDS(ctx.GetTlsCertificateSdsSecretConfigs()); err != nil {
		return nil, at(p+".tls_certificate_sds_secret_configs", err)
	}
	cvc := ctx.GetCombinedValidationContext()
	const q = p + ".combined_validation_context"
	if err := onlyFields(cvc, "default_validation_context", "validation_context_sds_secret_config"); err != nil {
		return nil, at(q, err)
	}
	sans, err := decodeSANs(cvc.GetDefaultValidationContext())
	if err != nil {
		return nil, at(q+".default_validation_context", err)
	}
	if err := checkValidationSDS(cvc.GetValidationContextSdsSecretConfig()); err != nil {
		return nil, at(q+".validation_context_sds_secret_config", err)
	}
	return &UpstreamTLS{SNI: utc.GetSni(), SubjectAltNames: sans, ValidationSecret: RootCASecret}, nil
}

// Listeners.

// decodeListenerFilters accepts nothing, or exactly the tls_inspector with
// no options. It reports whether the inspector is there.
func decodeListenerFilters(fs []*listenerpb.ListenerFilter) (bool, error) {
	switch len(fs) {
	case 0:
		return false, nil
	case 1:
	default:
		return false, fail("", "want only %s, got %d filters", tlsInspectorName, len(fs))
	}
	f := fs[0]
	if err := onlyFields(f, "name", "typed_config"); err != nil {
		return false, at("[0]", err)
	}
	tc := f.GetTypedConfig()
	if tc == nil {
		if f.GetName() != tlsInspectorName {
			return false, fail("[0]", "filter %q not supported, want %s", f.GetName(), tlsInspectorName)
		}
		return true, nil
	}
	ti := new(tlsinspectorpb.TlsInspector)
	if err := unmarshalAny(tc, tlsInspectorURL, ti); err != nil {
		return false, at("[0].typed_config", err)
	}
	if err := onlyFields(ti); err != nil {
		return false, at("[0].typed_config", err)
	}
	return true, nil
}

// inspectedChains decodes the filter chains of a listener with the
// tls_inspector: one or two chains, matched by transport_protocol "tls"
// (with a DownstreamTlsContext) and "raw_buffer" (plaintext), holding the
// same network filters. It fills out's TLS and Plaintext and returns the
// index of a chain whose filters to decode.
func inspectedChains(chains []*listenerpb.FilterChain, out *Listener) (int, error) {
	if n := len(chains); n < 1 || n > 2 {
		return 0, fail("filter_chains", "want a \"tls\" chain, a \"raw_buffer\" chain or both, got %d chains", n)
	}
	for i, fc := range chains {
		p := fmt.Sprintf("filter_chains[%d]", i)
		if err := onlyFields(fc, "name", "filter_chain_match", "filters", "transport_socket"); err != nil {
			return 0, at(p, err)
		}
		m := fc.GetFilterChainMatch()
		if m == nil {
			return 0, fail(p+".filter_chain_match", "required with the tls_inspector: want transport_protocol \"tls\" or \"raw_buffer\"")
		}
		if err := onlyFields(m, "transport_protocol"); err != nil {
			return 0, at(p+".filter_chain_match", err)
		}
		switch tp := m.GetTransportProtocol(); tp {
		case "tls":
			if out.TLS != nil {
				return 0, fail(p+".filter_chain_match.transport_protocol", "a second \"tls\" chain")
			}
			if fc.GetTransportSocket() == nil {
				return 0, fail(p+".transport_socket", "required for the \"tls\" chain")
			}
			dt, err := decodeDownstreamTLS(fc.GetTransportSocket())
			if err != nil {
				return 0, at(p+".transport_socket", err)
			}
			out.TLS = dt
		case "raw_buffer":
			if out.Plaintext {
				return 0, fail(p+".filter_chain_match.transport_protocol", "a second \"raw_buffer\" chain")
			}
			if fc.GetTransportSocket() != nil {
				return 0, fail(p+".transport_socket", "not supported on the \"raw_buffer\" chain")
			}
			out.Plaintext = true
		default:
			return 0, fail(p+".filter_chain_match.transport_protocol", "%q not supported, want \"tls\" or \"raw_buffer\"", tp)
		}
	}
	if len(chains) == 2 && !slices.EqualFunc(chains[0].GetFilters(), chains[1].GetFilters(), func(a, b *listenerpb.Filter) bool { return proto.Equal(a, b) }) {
		return 0, fail("filter_chains[1].filters", "differ from filter_chains[0].filters; both chains must hold the same http_connection_manager")
	}
	return 0, nil
}

func decodeDownstreamTLS(ts *corepb.TransportSocket) (*DownstreamTLS, error) {
	if err := onlyFields(ts, "name", "typed_config"); err != nil {
		return nil, err
	}
	if ts.GetTypedConfig() == nil {
		return nil, fail("typed_config", "required: want an DownstreamTlsContext")
	}
	dtc := new(tlspb.DownstreamTlsContext)
	if err := unmarshalAny(ts.GetTypedConfig(), downstreamTLSURL, dtc); err != nil {
		return nil, at("typed_config", err)
	}
	out, err := decodeDownstreamTLSContext(dtc)
	return out, at("typed_config", err)
}

func decodeDownstreamTLSContext(dtc *tlspb.DownstreamTlsContext) (*DownstreamTLS, error) {
	if err := onlyFields(dtc, "common_tls_context", "require_client_certificate"); err != nil {
		return nil, err
	}
	if !dtc.GetRequireClientCertificate().GetValue() {
		return nil, fail("require_client_certificate", "must be true: mesh peers authenticate with their certificates")
	}
	ctx := dtc.GetCommonTlsContext()
	if ctx == nil {
		return nil, fail("common_tls_context", "required")
	}
	const p = "common_tls_context"
	if err := onlyFields(ctx, "tls_params", "alpn_protocols", "tls_certificate_sds_secret_configs",
		"validation_context_sds_secret_config", "combined_validation_context"); err != nil {
		return nil, at(p, err)
	}
	if err := checkTLSParams(ctx.GetTlsParams()); err != nil {
		return nil, at(p+".tls_params", err)
	}
	alpn := ctx.GetAlpnProtocols()
	if len(alpn) == 0 {
		return nil, fail(p+".alpn_protocols", "required: want h2 and/or http/1.1")
	}
	for i, a := range alpn {
		if a != alpnH2 && a != alpnHTTP11 || slices.Index(alpn, a) != i {
			return nil, fail(fmt.Sprintf("%s.alpn_protocols[%d]", p, i), "%q not supported, want h2 and/or http/1.1, once each", a)
		}
	}
	if err := checkCertificateSDS(ctx.GetTlsCertificateSdsSecretConfigs()); err != nil {
		return nil, at(p+".tls_certificate_sds_secret_configs", err)
	}
	switch v := ctx.GetValidationContextType().(type) {
	case *tlspb.CommonTlsContext_ValidationContextSdsSecretConfig:
		if err := checkValidationSDS(v.ValidationContextSdsSecretConfig); err != nil {
			return nil, at(p+".validation_context_sds_secret_config", err)
		}
	case *tlspb.CommonTlsContext_CombinedValidationContext:
		const q = p + ".combined_validation_context"
		cvc := v.CombinedValidationContext
		if err := onlyFields(cvc, "default_validation_context", "validation_context_sds_secret_config"); err != nil {
			return nil, at(q, err)
		}
		if dvc := cvc.GetDefaultValidationContext(); dvc != nil {
			if err := onlyFields(dvc); err != nil {
				return nil, at(q+".default_validation_context", fail("", "not supported on a listener: which peers may call is authorization's business"))
			}
		}
		if err := checkValidationSDS(cvc.GetValidationContextSdsSecretConfig()); err != nil {
			return nil, at(q+".validation_context_sds_secret_config", err)
		}
	default:
		return nil, fail(p+".validation_context_type", "required: want validation_context_sds_secret_config {name: %s}", RootCASecret)
	}
	return &DownstreamTLS{ALPN: slices.Clone(alpn), ValidationSecret: RootCASecret}, nil
}

// decodeForwardClientCert decodes the HCM's x-forwarded-client-cert
// handling: SANITIZE (the default) or SANITIZE_SET, which sets By, Hash and
// (with set_current_client_cert_details.uri) URI.
func decodeForwardClientCert(h *hcmpb.HttpConnectionManager, out *Listener) error {
	switch m := h.GetForwardClientCertDetails(); m {
	case hcmpb.HttpConnectionManager_SANITIZE:
		out.ForwardClientCert = "SANITIZE"
	case hcmpb.HttpConnectionManager_SANITIZE_SET:
		out.ForwardClientCert = "SANITIZE_SET"
	default:
		return fail("forward_client_cert_details", "%s not supported, want SANITIZE or SANITIZE_SET: a client's certificate header is never trusted", m)
	}
	if d := h.GetSetCurrentClientCertDetails(); d != nil {
		if err := onlyFields(d, "uri"); err != nil {
			return at("set_current_client_cert_details", err)
		}
		if !d.GetUri() && out.ForwardClientCert == "SANITIZE_SET" {
			return fail("set_current_client_cert_details.uri", "must be true with SANITIZE_SET")
		}
	} else if out.ForwardClientCert == "SANITIZE_SET" {
		return fail("set_current_client_cert_details", "required with SANITIZE_SET: want {uri: true}")
	}
	return nil
}
