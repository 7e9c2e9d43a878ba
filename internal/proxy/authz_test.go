package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clusterpb "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
	"github.com/weft-mesh/weft/internal/proxy/normalize"
)

// Policies as Istio would emit them for the payments workload.

func pathPrefix(p string) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_UrlPath{UrlPath: &matcherpb.PathMatcher{Rule: &matcherpb.PathMatcher_Path{
		Path: &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Prefix{Prefix: p}}}}}}
}

func headerPresent(name string) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_Header{Header: &routepb.HeaderMatcher{
		Name: name, HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: true}}}}
}

func hostIs(regex string) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_Header{Header: &routepb.HeaderMatcher{
		Name: ":authority", HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: &matcherpb.StringMatcher{
			MatchPattern: &matcherpb.StringMatcher_SafeRegex{SafeRegex: &matcherpb.RegexMatcher{Regex: regex}}}}}}}
}

func anyone() []*rbacpb.Principal {
	return []*rbacpb.Principal{{Identifier: &rbacpb.Principal_Any{Any: true}}}
}

func subIs(sub string) *rbacpb.Principal {
	//lint:ignore SA1019 Envoy deprecated metadata for sourced_metadata, but Istio and weft's control plane emit it
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Metadata{Metadata: &matcherpb.MetadataMatcher{
		Filter: "envoy.filters.http.jwt_authn",
		Path: []*matcherpb.MetadataMatcher_PathSegment{
			{Segment: &matcherpb.MetadataMatcher_PathSegment_Key{Key: "payload"}},
			{Segment: &matcherpb.MetadataMatcher_PathSegment_Key{Key: "sub"}},
		},
		Value: &matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_StringMatch{StringMatch: &matcherpb.StringMatcher{
			MatchPattern: &matcherpb.StringMatcher_Exact{Exact: sub}}}},
	}}}
}

// policySnapshot is w's standard snapshot with an inbound connection
// manager that normalizes per mode and runs: jwt_authn (tokens of
// issuer "https://issuer.test" signed with key), a DENY filter (anything
// under /admin, or with an x-debug header), and an ALLOW filter (host
// payments with any port; /public for anyone, /private for a token with
// sub alice).
func (w *world) policySnapshot(mode string, key *ecdsa.PublicKey) xdstest.Snapshot {
	s := w.snapshot()
	raw, _ := key.Bytes()
	jwks := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":%q,"y":%q}]}`,
		base64.RawURLEncoding.EncodeToString(raw[1:33]), base64.RawURLEncoding.EncodeToString(raw[33:]))
	jwtCfg := &jwtpb.JwtAuthentication{
		Providers: map[string]*jwtpb.JwtProvider{"origins-0": {
			Issuer:               "https://issuer.test",
			JwksSourceSpecifier:  &jwtpb.JwtProvider_LocalJwks{LocalJwks: &corepb.DataSource{Specifier: &corepb.DataSource_InlineString{InlineString: jwks}}},
			PayloadInMetadata:    "payload",
			ForwardPayloadHeader: "x-jwt-payload",
		}},
		Rules: []*jwtpb.RequirementRule{{
			Match: &routepb.RouteMatch{PathSpecifier: &routepb.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtpb.RequirementRule_Requires{Requires: &jwtpb.JwtRequirement{RequiresType: &jwtpb.JwtRequirement_RequiresAny{
				RequiresAny: &jwtpb.JwtRequirementOrList{Requirements: []*jwtpb.JwtRequirement{
					{RequiresType: &jwtpb.JwtRequirement_ProviderName{ProviderName: "origins-0"}},
					{RequiresType: &jwtpb.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}},
				}}}}},
		}},
	}
	deny := &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: map[string]*rbacpb.Policy{
		"ns[default]-policy[no-admin]-rule[0]": {Permissions: []*rbacpb.Permission{pathPrefix("/admin")}, Principals: anyone()},
		"ns[default]-policy[no-debug]-rule[0]": {Permissions: []*rbacpb.Permission{headerPresent("x-debug")}, Principals: anyone()},
	}}
	payments := hostIs("(?i)payments(:[0-9]+)?")
	allow := &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW, Policies: map[string]*rbacpb.Policy{
		"ns[default]-policy[public]-rule[0]": {
			Permissions: []*rbacpb.Permission{{Rule: &rbacpb.Permission_AndRules{AndRules: &rbacpb.Permission_Set{Rules: []*rbacpb.Permission{
				payments, pathPrefix("/public/")}}}}},
			Principals: anyone(),
		},
		"ns[default]-policy[private]-rule[0]": {
			Permissions: []*rbacpb.Permission{{Rule: &rbacpb.Permission_AndRules{AndRules: &rbacpb.Permission_Set{Rules: []*rbacpb.Permission{
				payments, pathPrefix("/private/")}}}}},
			Principals: []*rbacpb.Principal{subIs("alice")},
		},
	}}
	hcm := xdstest.WithNormalization(xdstest.HCM("inbound"), mode)
	xdstest.WithFilters(hcm, xdstest.JWTFilter(jwtCfg), xdstest.RBACFilter(deny), xdstest.RBACFilter(allow))
	s.Listeners = []types.Resource{s.Listeners[0], xdstest.Listener("inbound", "127.0.0.1:15006", hcm)}
	return s
}

// rawGet sends one HTTP/1.1 request exactly as written (net/http's client
// would clean some of these targets) and returns the status and body.
func rawGet(t *testing.T, addr, target, host string, headers ...string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", target, host)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// TestPolicySeesWhatTheAppReceives runs path, host and header variants
// through a real proxy configured over xDS with DENY and ALLOW policies:
// no variant reaches a path policy denies, and what the app receives is
// exactly what policy judged (the app echoes the target and host it got).
func TestPolicySeesWhatTheAppReceives(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	token := func(sub string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": "https://issuer.test", "sub": sub,
			"exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	const denied, badRequest = "403 RBAC: access denied\n", "400 "
	type variant struct {
		name    string
		target  string
		host    string
		headers []string
		// want is "403 ..." or "400 ..." (a prefix of the local reply) or,
		// for a request that reaches the app, the target and host it must
		// receive.
		want string
	}
	common := []variant{
		{"a plain public path", "/public/a", "payments", nil, "/public/a payments"},
		{"a plain admin path is denied", "/admin/users", "payments", nil, denied},
		{"double slashes cannot hide admin", "//admin//users", "payments", nil, denied},
		{"dot-dot cannot climb into admin", "/public/../admin/users", "payments", nil, denied},
		{"encoded dot-dot cannot climb into admin", "/public/%2e%2e/admin/users", "payments", nil, denied},
		{"mixed-case encoded dots neither", "/public/%2E%2e/admin", "payments", nil, denied},
		{"a backslash is a slash", `/public\..\admin`, "payments", nil, denied},
		{"a fragment cannot hide admin", "/admin#/public/x", "payments", nil, denied},
		{"a fragment is not forwarded", "/public/a#/../../admin", "payments", nil, "/public/a payments"},
		{"dot segments inside public are resolved before the app sees them", "/public/x/../y", "payments", nil, "/public/y payments"},
		{"unreserved escapes are decoded before the app sees them", "/public/%7Euser", "payments", nil, "/public/~user payments"},
		{"the query is not the path", "/public/a?next=/admin", "payments", nil, "/public/a?next=/admin payments"},
		{"a mixed-case host is allowed and forwarded lower-cased", "/public/a", "PayMents", nil, "/public/a payments"},
		{"a host with a port is allowed", "/public/a", "payments:9080", nil, "/public/a payments:9080"},
		{"another host is not", "/public/a", "evil", nil, denied},
		{"a path outside every ALLOW policy is denied", "/other", "payments", nil, denied},
		{"a header DENY holds whatever its case", "/public/a", "payments", []string{"X-DEBUG: 1"}, denied},
		{"a header DENY holds when it is sent twice", "/public/a", "payments", []string{"x-debug: 1", "x-debug: 2"}, denied},
		{"%00 is refused", "/public/a%00", "payments", nil, badRequest + "NUL (%00) in path"},
		{"an invalid escape is refused", "/public/%zz", "payments", nil, "400 "},
		{"Tomcat's ..; is refused", "/public/..;/admin", "payments", nil, badRequest + "dot segment"},
		{"a private path needs a token", "/private/x", "payments", nil, denied},
		{"a private path with alice's token passes", "/private/x", "payments", []string{"Authorization: Bearer " + token("alice")}, "/private/x payments"},
		{"a private path with bob's token is denied", "/private/x", "payments", []string{"Authorization: Bearer " + token("bob")}, denied},
		{"a forged token is refused", "/public/a", "payments", []string{"Authorization: Bearer " + token("alice") + "x"}, "401 Jwt verification fails"},
	}
	modes := []struct {
		mode     string
		variants []variant
	}{
		{xdstest.NormalizeMergeSlashes, append(common,
			variant{"%2F stays one segment and is forwarded as checked", "/public/a%2f..%2fadmin", "payments", nil, "/public/a%2F..%2Fadmin payments"},
			variant{"%5C too", "/public/a%5c..%5cadmin", "payments", nil, "/public/a%5C..%5Cadmin payments"},
		)},
		{xdstest.NormalizeDecodeAndMergeSlashes, append(common,
			variant{"%2F..%2F is decoded and cannot climb into admin", "/public/a%2f..%2f..%2fadmin", "payments", nil, denied},
			variant{"%5C..%5C neither", "/public/a%5C..%5C..%5Cadmin", "payments", nil, denied},
			variant{"%2F is forwarded decoded as checked", "/public/a%2Fb", "payments", nil, "/public/a/b payments"},
		)},
	}
	w := newWorld(t)
	for i, m := range modes {
		version := fmt.Sprint(i + 1)
		w.srv.Push(t, version, w.policySnapshot(m.mode, &key.PublicKey))
		w.waitVersion(ctx, t, version)
		t.Run(m.mode, func(t *testing.T) {
			for _, v := range m.variants {
				t.Run(v.name, func(t *testing.T) {
					code, body := rawGet(t, w.addrs.Inbound, v.target, v.host, v.headers...)
					got := fmt.Sprintf("%d %s", code, body)
					if strings.HasPrefix(v.want, "/") {
						// The app answers "app GET <target> <host>".
						if want := "200 app GET " + v.want; got != want {
							t.Fatalf("got %q, want %q", got, want)
						}
						target, _, _ := strings.Cut(strings.TrimPrefix(got, "200 app GET "), " ")
						path, _, _ := strings.Cut(target, "?")
						if strings.HasPrefix(path, "/admin") {
							t.Fatalf("the app received %q, under a denied path", target)
						}
						opts := normalize.MergeSlashes
						if m.mode == xdstest.NormalizeDecodeAndMergeSlashes {
							opts = normalize.DecodeAndMergeSlashes
						}
						if again, _ := normalize.Path(path, opts); again != path {
							t.Fatalf("the app received %q, which is not what policy saw (%q)", path, again)
						}
						return
					}
					if !strings.HasPrefix(got, v.want) {
						t.Fatalf("got %q, want %q...", got, v.want)
					}
				})
			}
		})
	}

	t.Run("a verified token is replaced by its payload for the app", func(t *testing.T) {
		seen := make(chan http.Header, 1)
		app := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { seen <- r.Header.Clone() }))
		defer app.Close()
		s := w.policySnapshot(xdstest.NormalizeMergeSlashes, &key.PublicKey)
		for i, c := range s.Clusters {
			if c.(*clusterpb.Cluster).GetName() == xdstest.InboundCluster(80) {
				s.Clusters[i] = xdstest.StaticCluster(xdstest.InboundCluster(80), addrOf(app))
			}
		}
		w.srv.Push(t, "headers", s)
		w.waitVersion(ctx, t, "headers")

		tok := token("alice")
		code, _ := rawGet(t, w.addrs.Inbound, "/private/x", "payments", "Authorization: Bearer "+tok, "X-Jwt-Payload: forged")
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		h := <-seen
		if h.Get("Authorization") != "" || h.Get("X-Jwt-Payload") != strings.Split(tok, ".")[1] {
			t.Errorf("the app saw Authorization %q and x-jwt-payload %q", h.Get("Authorization"), h.Get("X-Jwt-Payload"))
		}
	})
}
