// Package jwtauthn is weft-proxy's envoy.filters.http.jwt_authn: Envoy's
// JWT authentication filter
// (envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication) for the
// subset Istio generates from RequestAuthentication, with inline JWKS only
// (the control plane fetches jwksUri and inlines it).
//
// For each request, the first rule whose path match holds gives the
// requirement; tokens are taken from each provider's locations and
// verified (issuer, exp and nbf with the provider's clock skew, audiences,
// then the signature with a key chosen by kid and alg). A request without
// a token passes where the requirement allows it (Istio's
// {provider OR allow_missing}); a request with an invalid token gets 401
// with a one-line reason, as Envoy words it ("Jwt is expired", ...). A
// verified token's claims are recorded as metadata under
// "envoy.filters.http.jwt_authn", key payload_in_metadata, for RBAC's
// metadata matchers (Istio's request.auth.principal, request.auth.claims);
// the token is removed from the request unless forward is set; the payload
// and claims are written to forward_payload_header and claim_to_headers.
//
// Those output headers are removed from every request first, whatever its
// token: only the proxy sets them, so an application can trust them.
package jwtauthn

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-mesh/weft/internal/proxy/filter"
)

func init() { filter.Register(filter.JWTAuthnURL, Build) }

// MetadataNamespace is where verified payloads are recorded, as Envoy's
// jwt_authn does: Metadata(MetadataNamespace)[payload_in_metadata] is the
// token's claims (a JSON object decoded to map[string]any).
const MetadataNamespace = "envoy.filters.http.jwt_authn"

// DefaultClockSkew is the tolerance on exp and nbf when a provider does
// not set clock_skew_seconds, Envoy's default.
const DefaultClockSkew = 60 * time.Second

// Filter is a compiled jwt_authn filter.
type Filter struct {
	providers  []*provider // by name
	rules      []rule
	bypassCORS bool
	strip      bool // strip_failure_response
	// outputs are the headers any provider writes, removed from every
	// request before verification.
	outputs []string
	now     func() time.Time
}

var _ filter.Filter = (*Filter)(nil)

type rule struct {
	prefix   bool
	path     string
	requires *requirement // nil: no verification on these paths
}

// provider is a compiled JwtProvider.
type provider struct {
	index          int
	name           string
	issuer         string
	audiences      []string // sanitized
	keys           []key
	forward        bool
	headers        []headerLocation
	params         []string
	payloadHeader  string // canonical; "" for none
	padPayload     bool
	metadataKey    string
	claimHeaders   []claimHeader
	skew           time.Duration
	requireExpires bool
	// spaceDelimited are claims split at spaces into lists in the
	// metadata (normalize_payload_in_metadata), so that a policy on
	// "scope" matches one scope of "read write".
	spaceDelimited []string
	// cache holds tokens this provider verified; nil for none.
	cache *tokenCache
}

type headerLocation struct {
	key    string // canonical header name
	prefix string
}

type claimHeader struct {
	header string   // canonical
	path   []string // claim name split at '.'
}

// Build compiles an envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
// typed config. It is the filter's registered builder.
func Build(cfg *anypb.Any) (filter.Filter, error) {
	m := new(jwtpb.JwtAuthentication)
	if err := filter.Unmarshal(cfg, filter.JWTAuthnURL, m); err != nil {
		return nil, err
	}
	return Compile(m)
}

// Compile compiles a jwt_authn configuration.
func Compile(m *jwtpb.JwtAuthentication) (*Filter, error) {
	if err := filter.OnlyFields(m, "providers", "rules", "bypass_cors_preflight", "strip_failure_response", "stat_prefix"); err != nil {
		return nil, err
	}
	f := &Filter{bypassCORS: m.GetBypassCorsPreflight(), strip: m.GetStripFailureResponse(), now: time.Now}
	names := make([]string, 0, len(m.GetProviders()))
	for n := range m.GetProviders() {
		names = append(names, n)
	}
	slices.Sort(names)
	byName := make(map[string]*provider, len(names))
	for i, n := range names {
		p, err := compileProvider(m.GetProviders()[n])
		if err != nil {
			return nil, filter.At(fmt.Sprintf("providers[%q]", n), err)
		}
		p.index, p.name = i, n
		f.providers = append(f.providers, p)
		byName[n] = p
		if p.payloadHeader != "" && !slices.Contains(f.outputs, p.payloadHeader) {
			f.outputs = append(f.outputs, p.payloadHeader)
		}
		for _, c := range p.claimHeaders {
			if !slices.Contains(f.outputs, c.header) {
				f.outputs = append(f.outputs, c.header)
			}
		}
	}
	for i, r := range m.GetRules() {
		cr, err := compileRule(r, byName)
		if err != nil {
			return nil, filter.At(fmt.Sprintf("rules[%d]", i), err)
		}
		f.rules = append(f.rules, cr)
	}
	return f, nil
}

func compileRule(r *jwtpb.RequirementRule, byName map[string]*provider) (rule, error) {
	if err := filter.OnlyFields(r, "match", "requires"); err != nil {
		return rule{}, err
	}
	var out rule
	mt := r.GetMatch()
	if mt == nil {
		return rule{}, filter.Errorf("match", "required")
	}
	if err := filter.OnlyFields(mt, "prefix", "path"); err != nil {
		return rule{}, filter.At("match", err)
	}
	switch ps := mt.GetPathSpecifier().(type) {
	case *routepb.RouteMatch_Prefix:
		out.prefix, out.path = true, ps.Prefix
	case *routepb.RouteMatch_Path:
		out.path = ps.Path
	default:
		return rule{}, filter.Errorf("match", "want prefix or path")
	}
	if r.GetRequires() != nil {
		req, err := compileRequirement(r.GetRequires(), byName)
		if err != nil {
			return rule{}, filter.At("requires", err)
		}
		out.requires = req
	}
	return out, nil
}

func compileProvider(p *jwtpb.JwtProvider) (*provider, error) {
	// jwt_cache_config only tunes a cache; clear_route_cache is what weft
	// always does (routing runs after the filters).
	if err := filter.OnlyFields(p, "issuer", "audiences", "require_expiration", "forward", "from_headers", "from_params",
		"forward_payload_header", "pad_forward_payload_header", "payload_in_metadata", "clock_skew_seconds",
		"jwt_cache_config", "claim_to_headers", "clear_route_cache", "local_jwks", "normalize_payload_in_metadata"); err != nil {
		return nil, err
	}
	if np := p.GetNormalizePayloadInMetadata(); np != nil {
		if err := filter.OnlyFields(np, "space_delimited_claims"); err != nil {
			return nil, filter.At("normalize_payload_in_metadata", err)
		}
	}
	out := &provider{
		issuer:         p.GetIssuer(),
		forward:        p.GetForward(),
		params:         p.GetFromParams(),
		padPayload:     p.GetPadForwardPayloadHeader(),
		metadataKey:    p.GetPayloadInMetadata(),
		skew:           DefaultClockSkew,
		requireExpires: p.GetRequireExpiration(),
		spaceDelimited: p.GetNormalizePayloadInMetadata().GetSpaceDelimitedClaims(),
		cache:          newTokenCache(),
	}
	if out.issuer == "" {
		return nil, filter.Errorf("issuer", "required")
	}
	for _, a := range p.GetAudiences() {
		out.audiences = append(out.audiences, sanitizeAudience(a))
	}
	if p.ClockSkewSeconds != 0 {
		out.skew = time.Duration(p.GetClockSkewSeconds()) * time.Second
	}
	if p.GetLocalJwks() == nil {
		return nil, filter.Errorf("local_jwks", "required (remote_jwks is not supported: the control plane inlines the JWKS)")
	}
	text, err := dataSource(p.GetLocalJwks())
	if err != nil {
		return nil, filter.At("local_jwks", err)
	}
	if out.keys, err = parseJWKS(text); err != nil {
		return nil, filter.Errorf("local_jwks", "%v", err)
	}
	for i, h := range p.GetFromHeaders() {
		if err := filter.OnlyFields(h, "name", "value_prefix"); err != nil {
			return nil, filter.At(fmt.Sprintf("from_headers[%d]", i), err)
		}
		if !httpguts.ValidHeaderFieldName(h.GetName()) {
			return nil, filter.Errorf(fmt.Sprintf("from_headers[%d].name", i), "%q is not a header name", h.GetName())
		}
		out.headers = append(out.headers, headerLocation{key: textproto.CanonicalMIMEHeaderKey(h.GetName()), prefix: h.GetValuePrefix()})
	}
	for i, q := range out.params {
		if q == "" {
			return nil, filter.Errorf(fmt.Sprintf("from_params[%d]", i), "empty")
		}
	}
	if len(out.headers) == 0 && len(out.params) == 0 {
		// Envoy's default locations.
		out.headers = []headerLocation{{key: "Authorization", prefix: "Bearer "}}
		out.params = []string{"access_token"}
	}
	if h := p.GetForwardPayloadHeader(); h != "" {
		if !httpguts.ValidHeaderFieldName(h) {
			return nil, filter.Errorf("forward_payload_header", "%q is not a header name", h)
		}
		out.payloadHeader = textproto.CanonicalMIMEHeaderKey(h)
	}
	for i, c := range p.GetClaimToHeaders() {
		path := fmt.Sprintf("claim_to_headers[%d]", i)
		if err := filter.OnlyFields(c, "header_name", "claim_name"); err != nil {
			return nil, filter.At(path, err)
		}
		if !httpguts.ValidHeaderFieldName(c.GetHeaderName()) {
			return nil, filter.Errorf(path+".header_name", "%q is not a header name", c.GetHeaderName())
		}
		if c.GetClaimName() == "" {
			return nil, filter.Errorf(path+".claim_name", "required")
		}
		out.claimHeaders = append(out.claimHeaders, claimHeader{
			header: textproto.CanonicalMIMEHeaderKey(c.GetHeaderName()),
			path:   strings.Split(c.GetClaimName(), "."),
		})
	}
	return out, nil
}

func dataSource(ds *corepb.DataSource) (string, error) {
	if err := filter.OnlyFields(ds, "inline_string", "inline_bytes"); err != nil {
		return "", err
	}
	switch s := ds.GetSpecifier().(type) {
	case *corepb.DataSource_InlineString:
		return s.InlineString, nil
	case *corepb.DataSource_InlineBytes:
		return string(s.InlineBytes), nil
	}
	return "", filter.Errorf("", "want inline_string or inline_bytes")
}

// sanitizeAudience drops a scheme and a trailing slash, as Envoy compares
// audiences ("https://api.example.com/" is "api.example.com").
func sanitizeAudience(a string) string {
	a = strings.TrimPrefix(strings.TrimPrefix(a, "http://"), "https://")
	return strings.TrimSuffix(a, "/")
}

// Decode authenticates req.
func (f *Filter) Decode(req *filter.Request) *filter.Reply {
	h := req.HTTP.Header
	for _, k := range f.outputs {
		delete(h, k)
	}
	if f.bypassCORS && req.HTTP.Method == http.MethodOptions && len(h["Origin"]) > 0 && len(h["Access-Control-Request-Method"]) > 0 {
		return nil
	}
	var rq *requirement
	for i := range f.rules {
		r := &f.rules[i]
		if r.prefix && strings.HasPrefix(req.Path, r.path) || !r.prefix && req.Path == r.path {
			rq = r.requires
			break
		}
	}
	if rq == nil {
		return nil
	}
	ev := evaluation{f: f, req: req, now: f.now()}
	res := ev.eval(rq)
	switch res.kind {
	case missing:
		return f.failure(errMissing)
	case failed:
		return f.failure(res.err)
	}
	ev.apply()
	return nil
}

func (f *Filter) failure(e *authError) *filter.Reply {
	if f.strip {
		return e.stripped
	}
	return e.reply
}

// authError is why a token is refused, as Envoy words it.
type authError struct {
	reason   string
	reply    *filter.Reply
	stripped *filter.Reply
}

var wwwAuthenticate = http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`}}

func newAuthError(reason string) *authError {
	return &authError{
		reason:   reason,
		reply:    &filter.Reply{Status: http.StatusUnauthorized, Body: reason, Header: wwwAuthenticate},
		stripped: &filter.Reply{Status: http.StatusUnauthorized},
	}
}

// The failures, each allocated once.
var (
	errMissing      = newAuthError("Jwt is missing")
	errSections     = newAuthError("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections")
	errMalformed    = newAuthError("Jwt is malformed: header, payload or signature is not valid base64url JSON")
	errAlg          = newAuthError("Jwt header [alg] is not supported")
	errIssuer       = newAuthError("Jwt issuer is not configured")
	errExpired      = newAuthError("Jwt is expired")
	errNotYetValid  = newAuthError("Jwt not yet valid")
	errNoExpiration = newAuthError("Jwt has no exp claim, which this provider requires")
	errTimeClaim    = newAuthError("Jwt exp or nbf is not a number")
	errAudience     = newAuthError("Audiences in Jwt are not allowed")
	errNoKey        = newAuthError("Jwks doesn't have key to match kid or alg from Jwt")
	errSignature    = newAuthError("Jwt verification fails")
)

// token is one token found in a request, and where.
type token struct {
	raw   string
	param string // query parameter name, or "" for a header
	key   string // header key, for a header
}

// verified is a token that verified, with its claims.
type verified struct {
	p      *provider
	tok    token
	claims map[string]any
}

var parser = jwt.NewParser()

// verify checks one token against provider p. A token p verified before
// is only checked for time (exp, nbf) again.
func (p *provider) verify(raw string, now time.Time) (map[string]any, *authError) {
	if claims := p.cache.get(raw); claims != nil {
		if e := p.checkTime(claims, now); e != nil {
			return nil, e
		}
		return claims, nil
	}
	claims, e := p.verifyFully(raw, now)
	if e == nil {
		p.cache.put(raw, claims)
	}
	return claims, e
}

func (p *provider) verifyFully(raw string, now time.Time) (map[string]any, *authError) {
	if strings.Count(raw, ".") != 2 {
		return nil, errSections
	}
	claims := jwt.MapClaims{}
	t, _, err := parser.ParseUnverified(raw, claims)
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, errMalformed
	case err != nil || t.Method == nil:
		return nil, errAlg
	}
	alg := t.Method.Alg()
	if !supportedAlgs[alg] {
		return nil, errAlg
	}
	if iss, _ := claims["iss"].(string); iss != p.issuer {
		return nil, errIssuer
	}
	if e := p.checkTime(claims, now); e != nil {
		return nil, e
	}
	if len(p.audiences) > 0 && !p.audienceAllowed(claims["aud"]) {
		return nil, errAudience
	}
	kid, _ := t.Header["kid"].(string)
	signing := raw[:strings.LastIndexByte(raw, '.')]
	found := false
	for i := range p.keys {
		k := &p.keys[i]
		if kid != "" && k.kid != kid || !k.fits(alg) {
			continue
		}
		found = true
		if t.Method.Verify(signing, t.Signature, k.pub) == nil {
			return claims, nil
		}
	}
	if !found {
		return nil, errNoKey
	}
	return nil, errSignature
}

func (p *provider) checkTime(claims jwt.MapClaims, now time.Time) *authError {
	sec := float64(now.Unix())
	skew := p.skew.Seconds()
	if v, ok := claims["exp"]; ok {
		exp, isNum := v.(float64)
		if !isNum {
			return errTimeClaim
		}
		if sec > exp+skew {
			return errExpired
		}
	} else if p.requireExpires {
		return errNoExpiration
	}
	if v, ok := claims["nbf"]; ok {
		nbf, isNum := v.(float64)
		if !isNum {
			return errTimeClaim
		}
		if sec+skew < nbf {
			return errNotYetValid
		}
	}
	return nil
}

func (p *provider) audienceAllowed(aud any) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(p.audiences, sanitizeAudience(a))
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && slices.Contains(p.audiences, sanitizeAudience(s)) {
				return true
			}
		}
	}
	return false
}

// extract returns the tokens in p's locations: each header value with the
// location's prefix (compared ignoring case, as auth schemes are), then
// each query parameter value.
func (p *provider) extract(r *http.Request, out []token) []token {
	for _, loc := range p.headers {
		for _, v := range r.Header[loc.key] {
			if len(v) < len(loc.prefix) || !strings.EqualFold(v[:len(loc.prefix)], loc.prefix) {
				continue
			}
			if t := strings.TrimSpace(v[len(loc.prefix):]); t != "" {
				out = append(out, token{raw: t, key: loc.key})
			}
		}
	}
	if len(p.params) > 0 && r.URL.RawQuery != "" {
		for _, name := range p.params {
			if !strings.Contains(r.URL.RawQuery, name+"=") {
				continue
			}
			q, _ := url.ParseQuery(r.URL.RawQuery) // keeps what parses
			for _, v := range q[name] {
				if v != "" {
					out = append(out, token{raw: v, param: name})
				}
			}
		}
	}
	return out
}

// Outcomes of a requirement.
const (
	ok = iota
	missing
	failed
)

type result struct {
	kind int
	err  *authError
}

// requirement is a compiled JwtRequirement.
type requirement struct {
	provider     *provider // provider_name, provider_and_audiences
	audiences    []string  // provider_and_audiences: replaces the provider's
	any, all     []*requirement
	allowMissing bool // allow_missing, or an allow_missing entry of requires_any
}

func compileRequirement(r *jwtpb.JwtRequirement, byName map[string]*provider) (*requirement, error) {
	if err := filter.OnlyFields(r, "provider_name", "provider_and_audiences", "requires_any", "requires_all", "allow_missing"); err != nil {
		return nil, err
	}
	lookup := func(path, name string) (*provider, error) {
		p := byName[name]
		if p == nil {
			return nil, filter.Errorf(path, "no provider %q", name)
		}
		return p, nil
	}
	switch t := r.GetRequiresType().(type) {
	case *jwtpb.JwtRequirement_ProviderName:
		p, err := lookup("provider_name", t.ProviderName)
		return &requirement{provider: p}, err
	case *jwtpb.JwtRequirement_ProviderAndAudiences:
		pa := t.ProviderAndAudiences
		if err := filter.OnlyFields(pa, "provider_name", "audiences"); err != nil {
			return nil, filter.At("provider_and_audiences", err)
		}
		p, err := lookup("provider_and_audiences.provider_name", pa.GetProviderName())
		if err != nil {
			return nil, err
		}
		out := &requirement{provider: p, audiences: []string{}}
		for _, a := range pa.GetAudiences() {
			out.audiences = append(out.audiences, sanitizeAudience(a))
		}
		return out, nil
	case *jwtpb.JwtRequirement_RequiresAny:
		out := &requirement{}
		for i, c := range t.RequiresAny.GetRequirements() {
			if _, ok := c.GetRequiresType().(*jwtpb.JwtRequirement_AllowMissing); ok {
				out.allowMissing = true
				continue
			}
			cr, err := compileRequirement(c, byName)
			if err != nil {
				return nil, filter.At(fmt.Sprintf("requires_any.requirements[%d]", i), err)
			}
			out.any = append(out.any, cr)
		}
		if len(out.any) == 0 {
			return nil, filter.Errorf("requires_any.requirements", "want at least one requirement besides allow_missing")
		}
		return out, nil
	case *jwtpb.JwtRequirement_RequiresAll:
		out := &requirement{}
		for i, c := range t.RequiresAll.GetRequirements() {
			cr, err := compileRequirement(c, byName)
			if err != nil {
				return nil, filter.At(fmt.Sprintf("requires_all.requirements[%d]", i), err)
			}
			out.all = append(out.all, cr)
		}
		if len(out.all) == 0 {
			return nil, filter.Errorf("requires_all.requirements", "want at least one requirement")
		}
		return out, nil
	case *jwtpb.JwtRequirement_AllowMissing:
		// Alone: any provider's valid token, or none; an invalid one fails.
		out := &requirement{allowMissing: true}
		for _, p := range byName {
			out.any = append(out.any, &requirement{provider: p})
		}
		slices.SortFunc(out.any, func(a, b *requirement) int { return a.provider.index - b.provider.index })
		return out, nil
	}
	return nil, filter.Errorf("", "want provider_name, provider_and_audiences, requires_any, requires_all or allow_missing")
}

// evaluation is one request's pass through a requirement tree. Each
// provider's tokens are verified at most once.
type evaluation struct {
	f   *Filter
	req *filter.Request
	now time.Time
	// memo holds each provider's result once it found tokens, by
	// provider index: seen bit i, result memo[i] (for the first 8).
	seen uint64
	memo [8]result
	more map[int]result // past the first 8
	ok   []verified
	buf  [2]token
}

func (ev *evaluation) remembered(i int) (result, bool) {
	if i < len(ev.memo) {
		return ev.memo[i], ev.seen&(1<<i) != 0
	}
	r, ok := ev.more[i]
	return r, ok
}

func (ev *evaluation) remember(i int, r result) {
	if i < len(ev.memo) {
		ev.memo[i], ev.seen = r, ev.seen|1<<i
		return
	}
	if ev.more == nil {
		ev.more = make(map[int]result)
	}
	ev.more[i] = r
}

func (ev *evaluation) eval(r *requirement) result {
	switch {
	case r.provider != nil:
		return ev.provider(r.provider, r.audiences)
	case r.all != nil:
		for _, c := range r.all {
			if res := ev.eval(c); res.kind != ok {
				return res
			}
		}
		return result{kind: ok}
	}
	// requires_any (with or without allow_missing).
	var firstFail *authError
	for _, c := range r.any {
		res := ev.eval(c)
		switch res.kind {
		case ok:
			return res
		case failed:
			// A provider that had the token's issuer but refused it says
			// more than one that did not know the issuer.
			if firstFail == nil || firstFail == errIssuer && res.err != errIssuer {
				firstFail = res.err
			}
		}
	}
	switch {
	case firstFail != nil:
		return result{kind: failed, err: firstFail}
	case r.allowMissing:
		return result{kind: ok}
	}
	return result{kind: missing}
}

// provider verifies every token in p's locations: all must verify.
// audiences, when not nil, replace the provider's.
func (ev *evaluation) provider(p *provider, audiences []string) result {
	if audiences == nil {
		if res, seen := ev.remembered(p.index); seen {
			return res
		}
	}
	pp := p
	if audiences != nil {
		c := *p
		c.audiences, c.cache = audiences, nil // the cache holds tokens checked against p's audiences
		pp = &c
	}
	toks := p.extract(ev.req.HTTP, ev.buf[:0])
	res := result{kind: missing}
	if len(toks) > 0 {
		res = result{kind: ok}
		start := len(ev.ok)
		for _, t := range toks {
			claims, err := pp.verify(t.raw, ev.now)
			if err != nil {
				res = result{kind: failed, err: err}
				ev.ok = ev.ok[:start]
				break
			}
			ev.ok = append(ev.ok, verified{p: p, tok: t, claims: claims})
		}
	}
	if audiences == nil && res.kind != missing {
		// Only a provider that found tokens is worth remembering.
		ev.remember(p.index, res)
	}
	return res
}

// apply does what verified tokens do to the request: metadata, output
// headers, and removing the token unless forwarded.
func (ev *evaluation) apply() {
	if len(ev.ok) == 0 {
		return
	}
	r := ev.req.HTTP
	var meta map[string]any
	var params []string
	for _, v := range ev.ok {
		p := v.p
		if p.metadataKey != "" {
			if meta == nil {
				meta = make(map[string]any, 1)
			}
			meta[p.metadataKey] = p.metadataPayload(v.claims)
		}
		if p.payloadHeader != "" {
			payload := v.tok.raw[strings.IndexByte(v.tok.raw, '.')+1 : strings.LastIndexByte(v.tok.raw, '.')]
			if p.padPayload {
				payload += strings.Repeat("=", (4-len(payload)%4)%4)
			}
			r.Header[p.payloadHeader] = []string{payload}
		}
		for _, c := range p.claimHeaders {
			if s, ok := claimString(v.claims, c.path); ok {
				r.Header[c.header] = []string{s}
			}
		}
		if !p.forward {
			if v.tok.param != "" {
				params = append(params, v.tok.param)
			} else {
				delete(r.Header, v.tok.key)
			}
		}
	}
	if meta != nil {
		ev.req.SetMetadata(MetadataNamespace, meta)
	}
	if len(params) > 0 {
		removeParams(r, params)
	}
}

// metadataPayload is the payload as recorded in metadata: the claims, with
// the space-delimited ones split into lists. The claims are copied only
// when one is split.
func (p *provider) metadataPayload(claims map[string]any) map[string]any {
	out, copied := claims, false
	for _, name := range p.spaceDelimited {
		s, ok := claims[name].(string)
		if !ok {
			continue
		}
		if !copied {
			out, copied = maps.Clone(claims), true
		}
		fields := strings.Fields(s)
		list := make([]any, len(fields))
		for i, f := range fields {
			list[i] = f
		}
		out[name] = list
	}
	return out
}

// claimString renders a claim for a header: strings as they are, numbers
// and booleans in JSON form, lists of those joined with ",". Anything else,
// or a value a header may not carry, is left out.
func claimString(claims map[string]any, path []string) (string, bool) {
	var v any = claims
	for _, k := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = obj[k]; !ok {
			return "", false
		}
	}
	var s string
	switch c := v.(type) {
	case string:
		s = c
	case bool:
		s = strconv.FormatBool(c)
	case float64:
		s = strconv.FormatFloat(c, 'f', -1, 64)
	case []any:
		parts := make([]string, 0, len(c))
		for _, e := range c {
			switch e := e.(type) {
			case string:
				parts = append(parts, e)
			case bool, float64:
				b, _ := json.Marshal(e)
				parts = append(parts, string(b))
			default:
				return "", false
			}
		}
		s = strings.Join(parts, ",")
	default:
		return "", false
	}
	return s, httpguts.ValidHeaderFieldValue(s)
}

// removeParams removes query parameters from r, keeping the rest of the
// query byte for byte, and keeps RequestURI in step with the URL.
func removeParams(r *http.Request, names []string) {
	parts := strings.Split(r.URL.RawQuery, "&")
	kept := parts[:0]
	for _, kv := range parts {
		k, _, _ := strings.Cut(kv, "=")
		if uk, err := url.QueryUnescape(k); err == nil && slices.Contains(names, uk) {
			continue
		}
		kept = append(kept, kv)
	}
	r.URL.RawQuery = strings.Join(kept, "&")
	path, _, _ := strings.Cut(r.RequestURI, "?")
	if r.URL.RawQuery != "" {
		r.RequestURI = path + "?" + r.URL.RawQuery
	} else {
		r.RequestURI = path
	}
}

// MarshalJSON shows the providers in config dumps (never the keys).
func (f *Filter) MarshalJSON() ([]byte, error) {
	type prov struct {
		Name      string   `json:"name"`
		Issuer    string   `json:"issuer"`
		Audiences []string `json:"audiences,omitempty"`
		Keys      int      `json:"keys"`
		Forward   bool     `json:"forward"`
	}
	out := struct {
		Providers []prov `json:"providers"`
		Rules     int    `json:"rules"`
	}{Providers: []prov{}, Rules: len(f.rules)}
	for _, p := range f.providers {
		out.Providers = append(out.Providers, prov{p.name, p.issuer, p.audiences, len(p.keys), p.forward})
	}
	return json.Marshal(out)
}
