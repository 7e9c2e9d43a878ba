package xdstest

import (
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	jwtpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	rbachttppb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// RBACFilter is envoy.filters.http.rbac enforcing rules.
func RBACFilter(rules *rbacpb.RBAC) *hcmpb.HttpFilter {
	return &hcmpb.HttpFilter{
		Name:       "envoy.filters.http.rbac",
		ConfigType: &hcmpb.HttpFilter_TypedConfig{TypedConfig: MustAny(&rbachttppb.RBAC{Rules: rules})},
	}
}

// JWTFilter is envoy.filters.http.jwt_authn with cfg.
func JWTFilter(cfg *jwtpb.JwtAuthentication) *hcmpb.HttpFilter {
	return &hcmpb.HttpFilter{
		Name:       "envoy.filters.http.jwt_authn",
		ConfigType: &hcmpb.HttpFilter_TypedConfig{TypedConfig: MustAny(cfg)},
	}
}

// WithFilters returns h with filters before its router, in order.
func WithFilters(h *hcmpb.HttpConnectionManager, filters ...*hcmpb.HttpFilter) *hcmpb.HttpConnectionManager {
	h.HttpFilters = append(filters, h.HttpFilters...)
	return h
}

// Normalization modes of --path-normalization, as HCM fields.
const (
	NormalizeBase                  = "BASE"
	NormalizeMergeSlashes          = "MERGE_SLASHES"
	NormalizeDecodeAndMergeSlashes = "DECODE_AND_MERGE_SLASHES"
)

// WithNormalization sets h's path normalization fields to a mesh-wide
// mode, as the control plane does.
func WithNormalization(h *hcmpb.HttpConnectionManager, mode string) *hcmpb.HttpConnectionManager {
	h.NormalizePath = wrapperspb.Bool(true)
	h.MergeSlashes = mode != NormalizeBase
	if mode == NormalizeDecodeAndMergeSlashes {
		h.PathWithEscapedSlashesAction = hcmpb.HttpConnectionManager_UNESCAPE_AND_FORWARD
	} else {
		h.PathWithEscapedSlashesAction = hcmpb.HttpConnectionManager_KEEP_UNCHANGED
	}
	return h
}
