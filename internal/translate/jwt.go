package translate

import (
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/emptypb"
	security "istio.io/api/security/v1beta1"

	"github.com/weft-mesh/weft/internal/jwks"
	"github.com/weft-mesh/weft/internal/mesh"
)

// JWTAuthnFilterName is the name of Envoy's JWT filter.
const JWTAuthnFilterName = "envoy.filters.http.jwt_authn"

// UnavailableJWKS stands in for a key set the control plane has not
// fetched (yet): a valid set whose one key nobody holds the private half
// of. With it, every token of the issuer is rejected (401) while requests
// without a token pass, as in Istio when it cannot fetch a jwksUri.
const UnavailableJWKS = `{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"weft-keys-unavailable",` +
	`"x":"YnGQKxeF1BPxB0Jv7Ths14HDzTqq52CWGty2VNU33Rc","y":"xTBGHGEUq5iUXje4bqK1CGbas3ZsHLmZT1g0cBUfpWI"}]}`

// defaultSpaceDelimitedClaims are split at spaces into lists in the
// metadata whatever a rule says, as Istio does, so that
// request.auth.claims[scope] matches one scope of "read write".
var defaultSpaceDelimitedClaims = []string{"permission", "scope"}

// jwtFilter returns the jwt_authn filter for the RequestAuthentications
// that apply to proxy (those of its namespace and of the root namespace
// whose selector matches it), or nil when none has a rule.
//
// Each JWT rule becomes one provider, origins-<n> in rule order. As in
// Istio, a request without a token passes (AuthorizationPolicy decides
// whether it needs one); a request whose token is invalid for every
// provider it could be for is refused with 401. The requirement is
// requires_any [provider, allow_missing] for one provider and, for
// several, requires_any [p0, p1, ..., requires_all [requires_any [p0,
// allow_missing], requires_any [p1, allow_missing], ...]]: a token must be
// valid for its provider, and tokens in the same place for different
// issuers still pass through the outer any.
func jwtFilter(snap *mesh.Snapshot, proxy *mesh.Workload) (*hcmv3.HttpFilter, error) {
	var rules []*security.JWTRule
	for _, ra := range snap.RequestAuthentications {
		if snap.PolicyApplies(ra.Namespace, ra.Spec.GetSelector(), proxy) {
			rules = append(rules, ra.Spec.GetJwtRules()...)
		}
	}
	if len(rules) == 0 {
		return nil, nil
	}
	cfg := &jwtv3.JwtAuthentication{Providers: map[string]*jwtv3.JwtProvider{}}
	var each, inner []*jwtv3.JwtRequirement
	allowMissing := &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}}
	for i, r := range rules {
		name := fmt.Sprintf("origins-%d", i)
		cfg.Providers[name] = jwtProvider(snap, r)
		byName := &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}}
		each = append(each, byName)
		inner = append(inner, requiresAny(byName, allowMissing))
	}
	req := inner[0]
	if len(inner) > 1 {
		req = requiresAny(append(each, &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAll{
			RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: inner}}})...)
	}
	cfg.Rules = []*jwtv3.RequirementRule{{
		Match:           &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		RequirementType: &jwtv3.RequirementRule_Requires{Requires: req},
	}}
	tc, err := typedConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("jwt_authn filter: %w", err)
	}
	return &hcmv3.HttpFilter{Name: JWTAuthnFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: tc}}, nil
}

func requiresAny(rs ...*jwtv3.JwtRequirement) *jwtv3.JwtRequirement {
	return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: rs}}}
}

// jwtProvider translates one JWT rule. Keys are always inline: the rule's
// jwks, or the set the control plane fetched from its jwksUri (or from its
// issuer's OpenID discovery), or UnavailableJWKS.
func jwtProvider(snap *mesh.Snapshot, r *security.JWTRule) *jwtv3.JwtProvider {
	keys := r.GetJwks()
	if keys == "" {
		uri := r.GetJwksUri()
		if uri == "" {
			uri = jwks.DiscoveryURI(r.GetIssuer())
		}
		if keys = snap.JWKS[uri]; keys == "" {
			keys = UnavailableJWKS
		}
	}
	claims := append(slices.Clone(defaultSpaceDelimitedClaims), r.GetSpaceDelimitedClaims()...)
	slices.Sort(claims)
	p := &jwtv3.JwtProvider{
		Issuer:    r.GetIssuer(),
		Audiences: r.GetAudiences(),
		JwksSourceSpecifier: &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{
			Specifier: &corev3.DataSource_InlineString{InlineString: keys}}},
		FromParams:                 r.GetFromParams(),
		Forward:                    r.GetForwardOriginalToken(),
		ForwardPayloadHeader:       r.GetOutputPayloadToHeader(),
		PayloadInMetadata:          JWTPayloadKey,
		NormalizePayloadInMetadata: &jwtv3.JwtProvider_NormalizePayload{SpaceDelimitedClaims: slices.Compact(claims)},
	}
	for _, h := range r.GetFromHeaders() {
		p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
	}
	for _, c := range r.GetOutputClaimToHeaders() {
		p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
	}
	return p
}
