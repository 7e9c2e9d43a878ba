package jwtauthn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/weft-mesh/weft/internal/proxy/filter"
	"github.com/weft-mesh/weft/internal/proxy/normalize"
)

const issuer = "https://issuer.example.com"

// now is the fixed time of every test.
var now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type testKey struct {
	kid    string
	priv   crypto.Signer
	method jwt.SigningMethod
}

var (
	keysOnce               sync.Once
	rsaKey, ecKey, rsaKey2 testKey
	otherRSA               testKey // not in the JWKS
)

func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		r1, _ := rsa.GenerateKey(rand.Reader, 2048)
		r2, _ := rsa.GenerateKey(rand.Reader, 2048)
		r3, _ := rsa.GenerateKey(rand.Reader, 2048)
		e1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		rsaKey = testKey{"rsa-1", r1, jwt.SigningMethodRS256}
		rsaKey2 = testKey{"rsa-2", r2, jwt.SigningMethodRS256}
		ecKey = testKey{"ec-1", e1, jwt.SigningMethodES256}
		otherRSA = testKey{"rsa-1", r3, jwt.SigningMethodRS256} // same kid as rsaKey
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwks renders public keys as a JWKS.
func jwks(ks ...testKey) string {
	var out []map[string]string
	for _, k := range ks {
		switch pub := k.priv.Public().(type) {
		case *rsa.PublicKey:
			out = append(out, map[string]string{"kty": "RSA", "kid": k.kid, "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())})
		case *ecdsa.PublicKey:
			raw, _ := pub.Bytes()
			out = append(out, map[string]string{"kty": "EC", "kid": k.kid, "crv": "P-256", "alg": "ES256",
				"x": b64(raw[1:33]), "y": b64(raw[33:])})
		}
	}
	b, _ := json.Marshal(map[string]any{"keys": out})
	return string(b)
}

// sign makes a token with claims; kid "" leaves it out.
func sign(t testing.TB, k testKey, method jwt.SigningMethod, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"iss": issuer, "sub": "alice", "aud": "payments", "exp": float64(now.Add(time.Hour).Unix()),
		"iat": float64(now.Add(-time.Minute).Unix())}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// istioLike is the configuration Istio generates for one JWT rule:
// requires_any [provider, allow_missing] on every path.
func istioLike(p *jwtpb.JwtProvider) *jwtpb.JwtAuthentication {
	return &jwtpb.JwtAuthentication{
		Providers: map[string]*jwtpb.JwtProvider{"origins-0": p},
		Rules: []*jwtpb.RequirementRule{{
			Match:           &routepb.RouteMatch{PathSpecifier: &routepb.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtpb.RequirementRule_Requires{Requires: anyOf(byName("origins-0"), allowMissing())},
		}},
		BypassCorsPreflight: true,
	}
}

func byName(n string) *jwtpb.JwtRequirement {
	return &jwtpb.JwtRequirement{RequiresType: &jwtpb.JwtRequirement_ProviderName{ProviderName: n}}
}
func allowMissing() *jwtpb.JwtRequirement {
	return &jwtpb.JwtRequirement{RequiresType: &jwtpb.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}}
}
func anyOf(rs ...*jwtpb.JwtRequirement) *jwtpb.JwtRequirement {
	return &jwtpb.JwtRequirement{RequiresType: &jwtpb.JwtRequirement_RequiresAny{RequiresAny: &jwtpb.JwtRequirementOrList{Requirements: rs}}}
}
func allOf(rs ...*jwtpb.JwtRequirement) *jwtpb.JwtRequirement {
	return &jwtpb.JwtRequirement{RequiresType: &jwtpb.JwtRequirement_RequiresAll{RequiresAll: &jwtpb.JwtRequirementAndList{Requirements: rs}}}
}

func newProvider(iss, keys string) *jwtpb.JwtProvider {
	return &jwtpb.JwtProvider{
		Issuer:              iss,
		Audiences:           []string{"payments", "https://api.example.com/"},
		JwksSourceSpecifier: &jwtpb.JwtProvider_LocalJwks{LocalJwks: &corepb.DataSource{Specifier: &corepb.DataSource_InlineString{InlineString: keys}}},
		PayloadInMetadata:   "payload",
	}
}

func build(t testing.TB, m *jwtpb.JwtAuthentication) *Filter {
	t.Helper()
	f, err := Compile(m)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	f.now = func() time.Time { return now }
	return f
}

func request(t testing.TB, method, target string, h http.Header) *filter.Request {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	r.RequestURI = target
	for k, v := range h {
		r.Header[k] = v
	}
	path, rej := normalize.Request(r, normalize.MergeSlashes)
	if rej != nil {
		t.Fatal(rej)
	}
	return filter.NewRequest(r, path)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestVerification(t *testing.T) {
	keys(t)
	f := build(t, istioLike(newProvider(issuer, jwks(rsaKey, rsaKey2, ecKey))))
	valid := sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(nil))
	tests := []struct {
		name   string
		header http.Header
		want   string // "" passes, else the 401 body
	}{
		{"a valid RS256 token passes", bearer(valid), ""},
		{"a valid ES256 token passes", bearer(sign(t, ecKey, jwt.SigningMethodES256, "ec-1", claims(nil))), ""},
		{"a valid PS256 token passes", bearer(sign(t, rsaKey2, jwt.SigningMethodPS256, "rsa-2", claims(nil))), ""},
		{"RS512 on an RSA key without alg passes", bearer(sign(t, rsaKey2, jwt.SigningMethodRS512, "rsa-2", claims(nil))), ""},
		{"a missing token passes (allow_missing)", nil, ""},
		{"another auth scheme is no token", http.Header{"Authorization": {"Basic YWxpY2U6eA=="}}, ""},
		{"the Bearer scheme is case-insensitive", http.Header{"Authorization": {"bearer " + valid}}, ""},
		{"an expired token is refused", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"exp": float64(now.Add(-2 * time.Minute).Unix())}))),
			"Jwt is expired"},
		{"a token expired within the clock skew passes", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"exp": float64(now.Add(-30 * time.Second).Unix())}))),
			""},
		{"a token not yet valid is refused", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"nbf": float64(now.Add(5 * time.Minute).Unix())}))),
			"Jwt not yet valid"},
		{"a wrong issuer is refused", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"iss": "https://evil.example.com"}))),
			"Jwt issuer is not configured"},
		{"no issuer is refused", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"iss": nil}))),
			"Jwt issuer is not configured"},
		{"a wrong audience is refused", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"aud": "orders"}))),
			"Audiences in Jwt are not allowed"},
		{"one allowed audience in a list passes", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"aud": []any{"orders", "payments"}}))),
			""},
		{"audiences compare without scheme and trailing slash", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"aud": "http://api.example.com"}))),
			""},
		{"a signature by another key is refused", bearer(sign(t, otherRSA, jwt.SigningMethodRS256, "rsa-1", claims(nil))),
			"Jwt verification fails"},
		{"a tampered payload is refused", bearer(tamper(valid)), "Jwt verification fails"},
		{"alg none is refused", bearer(noneToken(claims(nil))), "Jwt header [alg] is not supported"},
		{"HS256 is refused", bearer(hmacToken(t, claims(nil))), "Jwt header [alg] is not supported"},
		{"an unknown kid is refused", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-9", claims(nil))),
			"Jwks doesn't have key to match kid or alg from Jwt"},
		{"a kid whose key does not fit the alg is refused", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "ec-1", claims(nil))),
			"Jwks doesn't have key to match kid or alg from Jwt"},
		{"without a kid every key that fits is tried", bearer(sign(t, rsaKey2, jwt.SigningMethodRS256, "", claims(nil))), ""},
		{"a token that is not three sections is refused", bearer("abc.def"), "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{"a token that is not base64url JSON is refused", bearer("abc.def.ghi"), "Jwt is malformed: header, payload or signature is not valid base64url JSON"},
		{"two tokens must both verify", http.Header{"Authorization": {"Bearer " + valid, "Bearer " + tamper(valid)}}, "Jwt verification fails"},
		{"a bad token in the query is refused too", http.Header{"X-Target": {"?access_token=" + tamper(valid)}}, "Jwt verification fails"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := "/api"
			if q := tt.header["X-Target"]; q != nil {
				target += q[0]
			}
			rep := f.Decode(request(t, "GET", target, tt.header))
			switch {
			case tt.want == "" && rep != nil:
				t.Fatalf("refused: %d %q", rep.Status, rep.Body)
			case tt.want != "" && rep == nil:
				t.Fatalf("passed, want 401 %q", tt.want)
			case rep != nil && (rep.Status != 401 || rep.Body != tt.want):
				t.Fatalf("got %d %q, want 401 %q", rep.Status, rep.Body, tt.want)
			case rep != nil && rep.Header.Get("WWW-Authenticate") != `Bearer error="invalid_token"`:
				t.Errorf("WWW-Authenticate = %q", rep.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// tamper changes the payload's sub without re-signing.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), `"alice"`, `"admin"`, 1))
	return parts[0] + "." + b64(payload) + "." + parts[2]
}

func noneToken(c jwt.MapClaims) string {
	s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
	return s
}

func hmacToken(t testing.TB, c jwt.MapClaims) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCachedTokensAreCheckedForTimeAgain(t *testing.T) {
	keys(t)
	f := build(t, istioLike(newProvider(issuer, jwks(rsaKey))))
	tok := sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"exp": float64(now.Add(time.Minute).Unix())}))
	if rep := f.Decode(request(t, "GET", "/", bearer(tok))); rep != nil {
		t.Fatalf("refused: %+v", rep)
	}
	if f.providers[0].cache.get(tok) == nil {
		t.Fatal("a verified token was not cached")
	}
	if f.providers[0].cache.get(tamper(tok)) != nil {
		t.Fatal("a tampered token hit the cache")
	}
	f.now = func() time.Time { return now.Add(3 * time.Minute) }
	if rep := f.Decode(request(t, "GET", "/", bearer(tok))); rep == nil || rep.Body != "Jwt is expired" {
		t.Errorf("a cached token past its exp: %+v, want 401 \"Jwt is expired\"", rep)
	}
}

func TestRequiredToken(t *testing.T) {
	keys(t)
	m := istioLike(newProvider(issuer, jwks(rsaKey)))
	m.Rules[0].RequirementType = &jwtpb.RequirementRule_Requires{Requires: byName("origins-0")}
	f := build(t, m)
	if rep := f.Decode(request(t, "GET", "/", nil)); rep == nil || rep.Status != 401 || rep.Body != "Jwt is missing" {
		t.Errorf("without a token: %+v, want 401 \"Jwt is missing\"", rep)
	}
}

func TestSuccessEditsTheRequest(t *testing.T) {
	keys(t)
	p := newProvider(issuer, jwks(rsaKey))
	p.ForwardPayloadHeader = "x-jwt-payload"
	p.ClaimToHeaders = []*jwtpb.JwtClaimToHeader{{HeaderName: "x-jwt-sub", ClaimName: "sub"}, {HeaderName: "x-jwt-team", ClaimName: "org.team"},
		{HeaderName: "x-jwt-groups", ClaimName: "groups"}}
	p.NormalizePayloadInMetadata = &jwtpb.JwtProvider_NormalizePayload{SpaceDelimitedClaims: []string{"scope"}}
	f := build(t, istioLike(p))
	tok := sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{
		"scope": "read write", "org": map[string]any{"team": "blue"}, "groups": []any{"a", "b"}, "evil": "x\r\nX-Injected: 1"}))

	t.Run("the token is removed, payload and claims are set, metadata holds the claims", func(t *testing.T) {
		req := request(t, "GET", "/api", http.Header{"Authorization": {"Bearer " + tok}, "X-Jwt-Sub": {"spoofed"}})
		if rep := f.Decode(req); rep != nil {
			t.Fatalf("refused: %+v", rep)
		}
		h := req.HTTP.Header
		if _, ok := h["Authorization"]; ok {
			t.Error("the token was forwarded; forward is false")
		}
		if got, want := h.Get("X-Jwt-Payload"), strings.Split(tok, ".")[1]; got != want {
			t.Errorf("x-jwt-payload = %q, want the token's payload %q", got, want)
		}
		if h.Get("X-Jwt-Sub") != "alice" || h.Get("X-Jwt-Team") != "blue" || h.Get("X-Jwt-Groups") != "a,b" {
			t.Errorf("claim headers: %v", h)
		}
		meta := req.Metadata(MetadataNamespace)
		payload, _ := meta["payload"].(map[string]any)
		if payload["sub"] != "alice" || !reflect.DeepEqual(payload["scope"], []any{"read", "write"}) {
			t.Errorf("metadata = %v", meta)
		}
	})
	t.Run("output headers a client sends are removed even without a token", func(t *testing.T) {
		req := request(t, "GET", "/api", http.Header{"X-Jwt-Payload": {"eyJzdWIiOiJhZG1pbiJ9"}, "X-Jwt-Sub": {"admin"}})
		if rep := f.Decode(req); rep != nil {
			t.Fatalf("refused: %+v", rep)
		}
		if len(req.HTTP.Header) != 0 {
			t.Errorf("headers left: %v", req.HTTP.Header)
		}
		if req.Metadata(MetadataNamespace) != nil {
			t.Error("metadata without a token")
		}
	})
	t.Run("forward keeps the token", func(t *testing.T) {
		p.Forward = true
		defer func() { p.Forward = false }()
		f := build(t, istioLike(p))
		req := request(t, "GET", "/api", bearer(tok))
		if rep := f.Decode(req); rep != nil || req.HTTP.Header.Get("Authorization") == "" {
			t.Errorf("reply %+v, authorization %q", rep, req.HTTP.Header.Get("Authorization"))
		}
	})
	t.Run("a token in the query is removed from what is forwarded", func(t *testing.T) {
		req := request(t, "GET", "/api?a=1&access_token="+tok+"&b=2", nil)
		if rep := f.Decode(req); rep != nil {
			t.Fatalf("refused: %+v", rep)
		}
		if req.HTTP.RequestURI != "/api?a=1&b=2" || req.HTTP.URL.RequestURI() != "/api?a=1&b=2" {
			t.Errorf("RequestURI %q, URL %q", req.HTTP.RequestURI, req.HTTP.URL.RequestURI())
		}
	})
}

func TestLocations(t *testing.T) {
	keys(t)
	p := newProvider(issuer, jwks(rsaKey))
	p.FromHeaders = []*jwtpb.JwtHeader{{Name: "x-jwt-assertion"}, {Name: "x-auth", ValuePrefix: "Token "}}
	p.FromParams = []string{"jwt"}
	f := build(t, istioLike(p))
	tok := sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(nil))
	bad := tamper(tok)
	tests := []struct {
		name   string
		target string
		header http.Header
		passes bool
	}{
		{"a header without prefix holds the whole token", "/", http.Header{"X-Jwt-Assertion": {bad}}, false},
		{"a header with a prefix", "/", http.Header{"X-Auth": {"Token " + bad}}, false},
		{"a query parameter", "/?jwt=" + bad, nil, false},
		{"the default Authorization is not read when locations are set", "/", bearer(bad), true},
		{"nor is access_token", "/?access_token=" + bad, nil, true},
		{"a valid token in a configured header", "/", http.Header{"X-Jwt-Assertion": {tok}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := f.Decode(request(t, "GET", tt.target, tt.header))
			if (rep == nil) != tt.passes {
				t.Errorf("passes = %v (%+v), want %v", rep == nil, rep, tt.passes)
			}
		})
	}
}

// TestSeveralProviders runs Istio's requirement for two rules: a token
// valid for either passes, one that is invalid or of an unknown issuer is
// refused, and none passes.
func TestSeveralProviders(t *testing.T) {
	keys(t)
	const issuerB = "https://b.example.com"
	m := &jwtpb.JwtAuthentication{
		Providers: map[string]*jwtpb.JwtProvider{"origins-0": newProvider(issuer, jwks(rsaKey)), "origins-1": newProvider(issuerB, jwks(ecKey))},
		Rules: []*jwtpb.RequirementRule{{
			Match: &routepb.RouteMatch{PathSpecifier: &routepb.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtpb.RequirementRule_Requires{Requires: anyOf(byName("origins-0"), byName("origins-1"),
				allOf(anyOf(byName("origins-0"), allowMissing()), anyOf(byName("origins-1"), allowMissing())))},
		}},
	}
	f := build(t, m)
	tests := []struct {
		name string
		h    http.Header
		want string
	}{
		{"a token of the first issuer", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(nil))), ""},
		{"a token of the second issuer", bearer(sign(t, ecKey, jwt.SigningMethodES256, "ec-1", claims(map[string]any{"iss": issuerB}))), ""},
		{"no token", nil, ""},
		{"a token of the second issuer signed with the first's key", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"iss": issuerB}))),
			"Jwks doesn't have key to match kid or alg from Jwt"},
		{"a token of an unknown issuer", bearer(sign(t, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(map[string]any{"iss": "https://c.example.com"}))),
			"Jwt issuer is not configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := f.Decode(request(t, "GET", "/", tt.h))
			got := ""
			if rep != nil {
				got = rep.Body
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCORSPreflightBypass(t *testing.T) {
	keys(t)
	m := istioLike(newProvider(issuer, jwks(rsaKey)))
	m.Rules[0].RequirementType = &jwtpb.RequirementRule_Requires{Requires: byName("origins-0")}
	f := build(t, m)
	pre := request(t, "OPTIONS", "/", http.Header{"Origin": {"https://app"}, "Access-Control-Request-Method": {"POST"}})
	if rep := f.Decode(pre); rep != nil {
		t.Errorf("a CORS preflight was refused: %+v", rep)
	}
	if rep := f.Decode(request(t, "OPTIONS", "/", nil)); rep == nil {
		t.Error("a plain OPTIONS without a token passed a required provider")
	}
}

func TestUnknownIsRefused(t *testing.T) {
	keys(t)
	good := func() *jwtpb.JwtProvider { return newProvider(issuer, jwks(rsaKey)) }
	tests := []struct {
		name string
		edit func(*jwtpb.JwtAuthentication)
		want string
	}{
		{"remote JWKS", func(m *jwtpb.JwtAuthentication) {
			m.Providers["origins-0"].JwksSourceSpecifier = &jwtpb.JwtProvider_RemoteJwks{RemoteJwks: &jwtpb.RemoteJwks{}}
		}, `providers["origins-0"].remote_jwks: not supported`},
		{"a JWKS from a file", func(m *jwtpb.JwtAuthentication) {
			m.Providers["origins-0"].GetLocalJwks().Specifier = &corepb.DataSource_Filename{Filename: "/x"}
		}, `providers["origins-0"].local_jwks.filename: not supported`},
		{"a JWKS that is not one", func(m *jwtpb.JwtAuthentication) {
			m.Providers["origins-0"].GetLocalJwks().Specifier = &corepb.DataSource_InlineString{InlineString: "{"}
		}, `providers["origins-0"].local_jwks: not a JWKS: unexpected end of JSON input`},
		{"a symmetric key", func(m *jwtpb.JwtAuthentication) {
			m.Providers["origins-0"].GetLocalJwks().Specifier = &corepb.DataSource_InlineString{InlineString: `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`}
		}, `providers["origins-0"].local_jwks: keys[0]: kty "oct" not supported, want RSA or EC`},
		{"no issuer", func(m *jwtpb.JwtAuthentication) { m.Providers["origins-0"].Issuer = "" }, `providers["origins-0"].issuer: required`},
		{"subjects", func(m *jwtpb.JwtAuthentication) {
			m.Providers["origins-0"].Subjects = nil
			m.Providers["origins-0"].FromCookies = []string{"c"}
		}, `providers["origins-0"].from_cookies: not supported`},
		{"an unknown provider in a requirement", func(m *jwtpb.JwtAuthentication) {
			m.Rules[0].RequirementType = &jwtpb.RequirementRule_Requires{Requires: byName("nobody")}
		}, `rules[0].requires.provider_name: no provider "nobody"`},
		{"allow_missing_or_failed", func(m *jwtpb.JwtAuthentication) {
			m.Rules[0].RequirementType = &jwtpb.RequirementRule_Requires{Requires: &jwtpb.JwtRequirement{
				RequiresType: &jwtpb.JwtRequirement_AllowMissingOrFailed{AllowMissingOrFailed: &emptypb.Empty{}}}}
		}, `rules[0].requires.allow_missing_or_failed: not supported`},
		{"per-route requirements", func(m *jwtpb.JwtAuthentication) {
			m.RequirementMap = map[string]*jwtpb.JwtRequirement{"r": byName("origins-0")}
		}, `requirement_map: not supported`},
		{"a rule matching headers", func(m *jwtpb.JwtAuthentication) {
			m.Rules[0].Match.Headers = []*routepb.HeaderMatcher{{Name: "x"}}
		}, `rules[0].match.headers: not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := istioLike(good())
			tt.edit(m)
			_, err := Compile(m)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v\nwant %s", err, tt.want)
			}
		})
	}
}

func BenchmarkJWT(b *testing.B) {
	keys(b)
	f := build(b, istioLike(newProvider(issuer, jwks(rsaKey, ecKey))))
	for _, bc := range []struct {
		name string
		tok  string
	}{
		{"none", ""},
		{"RS256", sign(b, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(nil))},
		{"ES256", sign(b, ecKey, jwt.SigningMethodES256, "ec-1", claims(nil))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			r := httptest.NewRequest("GET", "/api", nil)
			for b.Loop() {
				if bc.tok != "" {
					r.Header["Authorization"] = []string{"Bearer " + bc.tok}
				}
				if rep := f.Decode(filter.NewRequest(r, "/api")); rep != nil {
					b.Fatal(rep.Body)
				}
			}
		})
	}
}

// BenchmarkJWTVerify is the cost of a token the cache does not hold: one
// signature check.
func BenchmarkJWTVerify(b *testing.B) {
	keys(b)
	f := build(b, istioLike(newProvider(issuer, jwks(rsaKey, ecKey))))
	for _, bc := range []struct {
		name string
		tok  string
	}{
		{"RS256", sign(b, rsaKey, jwt.SigningMethodRS256, "rsa-1", claims(nil))},
		{"ES256", sign(b, ecKey, jwt.SigningMethodES256, "ec-1", claims(nil))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.providers[0].verifyFully(bc.tok, now); err != nil {
					b.Fatal(err.reason)
				}
			}
		})
	}
}
