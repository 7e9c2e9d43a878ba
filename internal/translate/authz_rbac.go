package translate

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"

	"github.com/weft-mesh/weft/internal/mesh"
)

// This file translates AuthorizationPolicies into Envoy RBAC filters the
// way Istio does (pilot/pkg/security/authz), so that the same policy gives
// the same verdicts: one policy per rule, named
// ns[<namespace>]-policy[<name>]-rule[<index>]; a rule matches when any of
// its `from` sources matches (principals) and any of its `to` operations
// matches (permissions); within a source or an operation every field set
// must match, and a field matches when any of its values does and none of
// its not-values does. `when` conditions join every source (for peer and
// request attributes) or every operation (for destination attributes).

// JWTMetadataNamespace and JWTPayloadKey locate a verified JWT's claims in
// a request's dynamic metadata: the jwt_authn filter writes the payload of
// the token it verified, as a Struct, under JWTPayloadKey in the
// JWTMetadataNamespace namespace (JwtProvider.payload_in_metadata), and the
// RBAC metadata matchers read request.auth.* from there, as Istio's do.
const (
	JWTMetadataNamespace = "envoy.filters.http.jwt_authn"
	JWTPayloadKey        = "payload"
)

// rbacFilters returns the RBAC filters of the AuthorizationPolicies that
// apply to proxy: one with action LOG for AUDIT policies, one for DENY, one
// for ALLOW, in that order, each only when a policy of its action applies.
//
// Istio's semantics follow from Envoy's: a DENY filter denies a request any
// of its policies match; an ALLOW filter denies a request none of its
// policies match, so ALLOW policies that exist but do not match deny, and
// an ALLOW policy without rules (spec: {}) denies everything, while one
// with an empty rule (rules: [{}]) allows everything. Policies marked
// istio.io/dry-run are not enforced.
//
// Validation keeps out everything the proxy cannot evaluate. Should a
// stored policy hold something untranslatable anyway (written before a
// rule existed, or by hand), translation fails closed: an ALLOW rule is
// dropped (allowing less), and in a DENY or AUDIT rule the condition is
// taken as matching (denying more).
func rbacFilters(snap *mesh.Snapshot, proxy *mesh.Workload) ([]*hcmv3.HttpFilter, error) {
	var out []*hcmv3.HttpFilter
	for _, rules := range rbacRules(snap, proxy, false) {
		cfg, err := typedConfig(&rbacfilterv3.RBAC{Rules: rules})
		if err != nil {
			return nil, fmt.Errorf("rbac filter for %s policies: %w", rules.Action, err)
		}
		out = append(out, &hcmv3.HttpFilter{
			Name:       wellknown.HTTPRoleBasedAccessControl,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg},
		})
	}
	return out, nil
}

// rbacRules translates the AuthorizationPolicies that apply to proxy into
// one RBAC per action present, in the order they are enforced: AUDIT,
// DENY, ALLOW. For a TCP workload (tcp set) a connection has no HTTP
// attributes, so, as Istio does, a rule that needs one (hosts, methods,
// paths, requestPrincipals, request.* conditions) is dropped from an ALLOW
// policy and, in DENY and AUDIT policies, the HTTP-only value is taken as
// matching: the policy allows less and denies more, never the other way.
func rbacRules(snap *mesh.Snapshot, proxy *mesh.Workload, tcp bool) []*rbacv3.RBAC {
	byAction := map[security.AuthorizationPolicy_Action]*rbacv3.RBAC{}
	for _, p := range snap.AuthorizationPolicies {
		if p.DryRun || !snap.PolicyApplies(p.Namespace, p.Spec.GetSelector(), proxy) {
			continue
		}
		action := p.Spec.GetAction()
		var envoyAction rbacv3.RBAC_Action
		switch action {
		case security.AuthorizationPolicy_ALLOW:
			envoyAction = rbacv3.RBAC_ALLOW
		case security.AuthorizationPolicy_DENY:
			envoyAction = rbacv3.RBAC_DENY
		case security.AuthorizationPolicy_AUDIT:
			envoyAction = rbacv3.RBAC_LOG
		default:
			// CUSTOM is rejected by validation; without the external
			// authorizer it names, deny what its rules select.
			action, envoyAction = security.AuthorizationPolicy_DENY, rbacv3.RBAC_DENY
		}
		rules := byAction[action]
		if rules == nil {
			rules = &rbacv3.RBAC{Action: envoyAction, Policies: map[string]*rbacv3.Policy{}}
			byAction[action] = rules
		}
		for i, r := range p.Spec.GetRules() {
			b := &ruleBuilder{failClosed: envoyAction != rbacv3.RBAC_ALLOW, namespace: p.Namespace, port: proxy.ServicePort, tcp: tcp}
			policy := b.policy(r)
			if policy == nil {
				continue
			}
			rules.Policies[fmt.Sprintf("ns[%s]-policy[%s]-rule[%d]", p.Namespace, p.Name, i)] = policy
		}
	}
	var out []*rbacv3.RBAC
	for _, action := range []security.AuthorizationPolicy_Action{security.AuthorizationPolicy_AUDIT, security.AuthorizationPolicy_DENY, security.AuthorizationPolicy_ALLOW} {
		if rules := byAction[action]; rules != nil {
			out = append(out, rules)
		}
	}
	return out
}

// ruleBuilder translates one rule of one policy.
type ruleBuilder struct {
	// failClosed is set for DENY and AUDIT rules: an untranslatable value
	// then matches rather than dropping the rule.
	failClosed bool
	// namespace is the policy's, for serviceAccounts without one.
	namespace string
	// port is the workload's port, which ports and destination.port are
	// compared with here rather than in the proxy.
	port uint32
	// dropped is set when an ALLOW rule cannot be translated.
	dropped bool
	// tcp is set for a TCP workload: HTTP-only values cannot be
	// evaluated (see rbacRules).
	tcp bool
}

// errHTTPOnly is the translation error of an HTTP-only value on a TCP
// workload.
var errHTTPOnly = errors.New("an HTTP attribute, which a TCP connection does not have")

// httpOnly returns match, or for a TCP workload a matcher that always
// fails, so the value is dropped or taken as matching as matchValues says.
func httpOnly[M any](b *ruleBuilder, match func(string) (M, error)) func(string) (M, error) {
	if !b.tcp {
		return match
	}
	return func(string) (M, error) {
		var zero M
		return zero, errHTTPOnly
	}
}

// attr is one field or condition of a rule: the values it takes, the
// values it must not take, and how one value becomes a matcher.
type attr[M any] struct {
	values, notValues []string
	match             func(v string) (M, error)
}

// policy returns the Envoy policy of rule r, or nil if it is dropped.
func (b *ruleBuilder) policy(r *security.Rule) *rbacv3.Policy {
	var whenPrincipals []attr[*rbacv3.Principal]
	var whenPermissions []attr[*rbacv3.Permission]
	for _, c := range r.GetWhen() {
		pr, pe, ok := b.conditionAttr(c)
		switch {
		case pr != nil:
			whenPrincipals = append(whenPrincipals, *pr)
		case pe != nil:
			whenPermissions = append(whenPermissions, *pe)
		case !ok && !b.failClosed:
			return nil
		}
		// An unknown key in a DENY or AUDIT rule is left out, which
		// makes the rule match more.
	}

	p := &rbacv3.Policy{}
	for _, from := range r.GetFrom() {
		ids := b.principals(append(b.sourceAttrs(from.GetSource()), whenPrincipals...))
		p.Principals = append(p.Principals, principalAnd(ids))
	}
	if len(r.GetFrom()) == 0 {
		p.Principals = append(p.Principals, principalAnd(b.principals(whenPrincipals)))
	}
	for _, to := range r.GetTo() {
		rules := b.permissions(append(b.operationAttrs(to.GetOperation()), whenPermissions...))
		p.Permissions = append(p.Permissions, permissionAnd(rules))
	}
	if len(r.GetTo()) == 0 {
		p.Permissions = append(p.Permissions, permissionAnd(b.permissions(whenPermissions)))
	}
	if b.dropped {
		return nil
	}
	return p
}

// sourceAttrs lists the fields of a source in Istio's order.
func (b *ruleBuilder) sourceAttrs(s *security.Source) []attr[*rbacv3.Principal] {
	return []attr[*rbacv3.Principal]{
		{s.GetPrincipals(), s.GetNotPrincipals(), principalMatcher},
		{s.GetRequestPrincipals(), s.GetNotRequestPrincipals(), httpOnly(b, requestPrincipalMatcher)},
		{s.GetNamespaces(), s.GetNotNamespaces(), namespaceMatcher},
		{s.GetServiceAccounts(), s.GetNotServiceAccounts(), b.serviceAccountMatcher},
		{s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks(), remoteIPMatcher},
		{s.GetIpBlocks(), s.GetNotIpBlocks(), directRemoteIPMatcher},
	}
}

// operationAttrs lists the fields of an operation in Istio's order.
func (b *ruleBuilder) operationAttrs(o *security.Operation) []attr[*rbacv3.Permission] {
	return []attr[*rbacv3.Permission]{
		{o.GetHosts(), o.GetNotHosts(), httpOnly(b, hostMatcher)},
		{o.GetMethods(), o.GetNotMethods(), httpOnly(b, methodMatcher)},
		{o.GetPaths(), o.GetNotPaths(), httpOnly(b, pathMatcher)},
		{o.GetPorts(), o.GetNotPorts(), b.portMatcher},
	}
}

// conditionAttr sorts a `when` condition to the principal side (peer and
// request attributes) or the permission side (destination attributes).
// ok is false for a key weft does not know.
func (b *ruleBuilder) conditionAttr(c *security.Condition) (pr *attr[*rbacv3.Principal], pe *attr[*rbacv3.Permission], ok bool) {
	key, vs, nvs := c.GetKey(), c.GetValues(), c.GetNotValues()
	principal := func(m func(string) (*rbacv3.Principal, error)) (*attr[*rbacv3.Principal], *attr[*rbacv3.Permission], bool) {
		return &attr[*rbacv3.Principal]{vs, nvs, m}, nil, true
	}
	permission := func(m func(string) (*rbacv3.Permission, error)) (*attr[*rbacv3.Principal], *attr[*rbacv3.Permission], bool) {
		return nil, &attr[*rbacv3.Permission]{vs, nvs, m}, true
	}
	switch {
	case key == "source.ip":
		return principal(directRemoteIPMatcher)
	case key == "remote.ip":
		return principal(remoteIPMatcher)
	case key == "source.namespace":
		return principal(namespaceMatcher)
	case key == "source.principal":
		return principal(principalMatcher)
	case key == "request.auth.principal":
		return principal(httpOnly(b, requestPrincipalMatcher))
	case key == "request.auth.audiences":
		return principal(httpOnly(b, claimMatcher([]string{"aud"})))
	case key == "request.auth.presenter":
		return principal(httpOnly(b, claimMatcher([]string{"azp"})))
	case strings.HasPrefix(key, "request.auth.claims["):
		names, ok := bracketNames(strings.TrimPrefix(key, "request.auth.claims"))
		if !ok {
			return nil, nil, false
		}
		return principal(httpOnly(b, claimMatcher(names)))
	case strings.HasPrefix(key, "request.headers["):
		names, ok := bracketNames(strings.TrimPrefix(key, "request.headers"))
		if !ok || len(names) != 1 {
			return nil, nil, false
		}
		name := strings.ToLower(names[0])
		return principal(httpOnly(b, func(v string) (*rbacv3.Principal, error) {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: istioHeaderMatcher(name, v)}}, nil
		}))
	case key == "destination.port":
		return permission(b.portMatcher)
	case key == "connection.sni":
		return permission(func(v string) (*rbacv3.Permission, error) {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: stringMatcher(v)}}, nil
		})
	}
	return nil, nil, false
}

// bracketNames reads "[a]" or "[a][b]".
func bracketNames(s string) ([]string, bool) {
	var names []string
	for s != "" {
		if s[0] != '[' {
			return nil, false
		}
		end := strings.IndexByte(s, ']')
		if end <= 1 {
			return nil, false
		}
		names = append(names, s[1:end])
		s = s[end+1:]
	}
	return names, len(names) > 0
}

// principals turns attributes into the and-list of one source: for each
// attribute set, the or of its values, and the not of the or of its
// not-values. An empty list is [any].
func (b *ruleBuilder) principals(attrs []attr[*rbacv3.Principal]) []*rbacv3.Principal {
	var out []*rbacv3.Principal
	for _, a := range attrs {
		if or := matchValues(b, a.values, a.match, true, principalAny); len(or) > 0 {
			out = append(out, &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: or}}})
		}
		if or := matchValues(b, a.notValues, a.match, false, principalAny); len(or) > 0 {
			out = append(out, &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: or}}}}})
		}
	}
	if len(out) == 0 {
		out = append(out, principalAny())
	}
	return out
}

// permissions is principals for the operation side.
func (b *ruleBuilder) permissions(attrs []attr[*rbacv3.Permission]) []*rbacv3.Permission {
	var out []*rbacv3.Permission
	for _, a := range attrs {
		if or := matchValues(b, a.values, a.match, true, permissionAny); len(or) > 0 {
			out = append(out, &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: or}}})
		}
		if or := matchValues(b, a.notValues, a.match, false, permissionAny); len(or) > 0 {
			out = append(out, &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: or}}}}})
		}
	}
	if len(out) == 0 {
		out = append(out, permissionAny())
	}
	return out
}

// matchValues matches each value. A value that cannot be matched drops an
// ALLOW rule; in a DENY or AUDIT rule it matches anything when it is a
// value (positive) and is left out when it is a not-value, so that the
// rule matches more, never less.
func matchValues[M any](b *ruleBuilder, vs []string, match func(string) (M, error), positive bool, anyM func() M) []M {
	var out []M
	for _, v := range vs {
		m, err := match(v)
		switch {
		case err == nil:
			out = append(out, m)
		case !b.failClosed:
			b.dropped = true
		case positive:
			out = append(out, anyM())
		}
	}
	return out
}

func principalAny() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func permissionAny() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

func principalAnd(ids []*rbacv3.Principal) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: ids}}}
}

func permissionAnd(rules []*rbacv3.Permission) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: rules}}}
}

// Matchers for one value.

// stringMatcher is Istio's StringMatcher: "*" is any non-empty value,
// "*x" a suffix, "x*" a prefix, anything else exact.
func stringMatcher(v string) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return regexMatcher(".+")
	case strings.HasPrefix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}}
	case strings.HasSuffix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v[:len(v)-1]}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}}
}

func regexMatcher(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

// principalMatcher matches the peer's SPIFFE ID: Istio's principal values
// leave out the "spiffe://" the certificate's URI SAN has.
func principalMatcher(v string) (*rbacv3.Principal, error) {
	const prefix = "spiffe://"
	switch {
	case v == "*":
		return authenticated(regexMatcher(".+")), nil
	case strings.HasPrefix(v, "*"):
		return authenticated(regexMatcher(regexp.QuoteMeta(prefix) + ".*" + regexp.QuoteMeta(v[1:]))), nil
	case strings.HasSuffix(v, "*"):
		return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: prefix + v[:len(v)-1]}}), nil
	}
	return authenticated(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: prefix + v}}), nil
}

// namespaceMatcher matches peers whose SPIFFE ID names the namespace.
func namespaceMatcher(v string) (*rbacv3.Principal, error) {
	return authenticated(regexMatcher(".*/ns/" + wildcardRegex(v) + "/.*")), nil
}

// serviceAccountMatcher matches "<sa>" (in the policy's namespace) or
// "<ns>/<sa>", as Istio does.
func (b *ruleBuilder) serviceAccountMatcher(v string) (*rbacv3.Principal, error) {
	ns, sa, ok := strings.Cut(v, "/")
	if !ok {
		ns, sa = b.namespace, v
	}
	if ns == "" || sa == "" || strings.ContainsAny(v, "*") {
		return nil, fmt.Errorf("invalid service account %q", v)
	}
	return authenticated(regexMatcher("spiffe://.+/ns/" + regexp.QuoteMeta(ns) + "/(.+/|)sa/" + regexp.QuoteMeta(sa) + "(/.+)?")), nil
}

// wildcardRegex quotes v for a regex, with each "*" matching anything.
func wildcardRegex(v string) string {
	parts := strings.Split(v, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return strings.Join(parts, ".*")
}

func cidr(v string) (*corev3.CidrRange, error) {
	var p netip.Prefix
	if a, err := netip.ParseAddr(v); err == nil {
		p = netip.PrefixFrom(a, a.BitLen())
	} else if p, err = netip.ParsePrefix(v); err != nil {
		return nil, fmt.Errorf("invalid IP or CIDR %q", v)
	}
	p = p.Masked()
	return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, nil
}

// directRemoteIPMatcher matches the address of the peer of the connection
// (ipBlocks, source.ip).
func directRemoteIPMatcher(v string) (*rbacv3.Principal, error) {
	c, err := cidr(v)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: c}}, nil
}

// remoteIPMatcher matches the original client's address
// (remoteIpBlocks, remote.ip).
func remoteIPMatcher(v string) (*rbacv3.Principal, error) {
	c, err := cidr(v)
	if err != nil {
		return nil, err
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: c}}, nil
}

// requestPrincipalMatcher matches "<iss>/<sub>" of the verified JWT, with
// Istio's wildcards: "*" (any token), "<iss>/*", "*/<sub>", "*<suffix>" and
// "<prefix>*". The issuer is what comes before the last "/", since issuers
// are often URLs.
func requestPrincipalMatcher(v string) (*rbacv3.Principal, error) {
	anyValue := regexMatcher(".+")
	i := strings.LastIndexByte(v, '/')
	iss, sub := v, ""
	if i >= 0 {
		iss, sub = v[:i], v[i+1:]
	}
	var mIss, mSub *matcherv3.StringMatcher
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	switch {
	case v == "*":
		mIss, mSub = anyValue, anyValue
	case strings.HasPrefix(v, "*"):
		if i >= 0 {
			if iss == "*" {
				mIss = anyValue
			} else {
				mIss = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: iss[1:]}}
			}
			mSub = exact(sub)
		} else {
			mIss = anyValue
			mSub = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}}
		}
	case strings.HasSuffix(v, "*"):
		if i >= 0 {
			mIss = exact(iss)
			if sub == "*" {
				mSub = anyValue
			} else {
				mSub = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: sub[:len(sub)-1]}}
			}
		} else {
			mIss = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v[:len(v)-1]}}
			mSub = anyValue
		}
	default:
		mIss, mSub = exact(iss), exact(sub)
	}
	return principalAnd([]*rbacv3.Principal{
		claimString([]string{"iss"}, mIss),
		claimString([]string{"sub"}, mSub),
	}), nil
}

// claimString matches a claim that is a string.
func claimString(path []string, m *matcherv3.StringMatcher) *rbacv3.Principal {
	return metadataPrincipal(payloadMatcher(path, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}}))
}

// metadataPrincipal matches dynamic metadata. Envoy deprecates metadata
// for sourced_metadata, whose default source is the same dynamic
// metadata; weft keeps Istio's field, which every Envoy still reads and
// weft-proxy implements.
func metadataPrincipal(m *matcherv3.MetadataMatcher) *rbacv3.Principal {
	//lint:ignore SA1019 Istio's and weft-proxy's field; see above
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: m}}
}

// claimMatcher matches a claim (at a path of nested names) that is v, or
// that is a list holding v, as Istio's request.auth.claims does.
func claimMatcher(path []string) func(string) (*rbacv3.Principal, error) {
	return func(v string) (*rbacv3.Principal, error) {
		str := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: stringMatcher(v)}}
		return metadataPrincipal(payloadMatcher(path,
			&matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: []*matcherv3.ValueMatcher{
				{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: str}}}},
				str,
			}}}})), nil
	}
}

func payloadMatcher(path []string, v *matcherv3.ValueMatcher) *matcherv3.MetadataMatcher {
	m := &matcherv3.MetadataMatcher{Filter: JWTMetadataNamespace, Value: v}
	for _, k := range append([]string{JWTPayloadKey}, path...) {
		m.Path = append(m.Path, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: k}})
	}
	return m
}

// istioHeaderMatcher is Istio's: "*" means present, "*x" a suffix, "x*" a
// prefix, anything else the exact value; case matters.
func istioHeaderMatcher(name, v string) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(v)}}
}

// hostMatcher matches the request's host (:authority) case-insensitively.
// A value without a port also matches the host with any port, because
// weft routes reviews and reviews:9080 alike and policy must judge them
// alike: "reviews" matches "Reviews" and "reviews:9080", "*.example.com"
// matches "api.example.com:8443". A value with a port matches that port
// only.
func hostMatcher(v string) (*rbacv3.Permission, error) {
	const name = ":authority"
	header := func(m *matcherv3.StringMatcher) (*rbacv3.Permission, error) {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
			Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: m}}}}, nil
	}
	switch {
	case v == "*":
		return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
			Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}}}, nil
	case strings.HasSuffix(v, "*"):
		// A prefix matches whatever port follows.
		return header(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v[:len(v)-1]}, IgnoreCase: true})
	case hostHasPort(v):
		if strings.HasPrefix(v, "*") {
			return header(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}, IgnoreCase: true})
		}
		return header(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}, IgnoreCase: true})
	case strings.HasPrefix(v, "*"):
		return header(regexMatcher("(?i).*" + regexp.QuoteMeta(v[1:]) + "(:[0-9]+)?"))
	}
	return header(regexMatcher("(?i)" + regexp.QuoteMeta(v) + "(:[0-9]+)?"))
}

// hostHasPort reports whether a host value names a port: "a:80", "[::1]:80".
func hostHasPort(v string) bool {
	return strings.LastIndexByte(v, ':') > strings.LastIndexByte(v, ']')
}

func methodMatcher(v string) (*rbacv3.Permission, error) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: istioHeaderMatcher(":method", v)}}, nil
}

// pathMatcher matches the path without its query, after the proxy's
// normalization.
func pathMatcher(v string) (*rbacv3.Permission, error) {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: stringMatcher(v)}}}}, nil
}

// portMatcher decides ports and destination.port here, as Istio does for
// its waypoints: a sidecar's inbound listener serves one workload port, so
// a port value either is that port (any) or can never match (not any).
// The proxy need not know which port a request was for, and no listener
// port can be mistaken for it.
func (b *ruleBuilder) portMatcher(v string) (*rbacv3.Permission, error) {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("invalid port %q", v)
	}
	if uint32(n) == b.port {
		return permissionAny(), nil
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: permissionAny()}}, nil
}
