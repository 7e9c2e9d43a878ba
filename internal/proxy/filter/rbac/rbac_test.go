package rbac

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	xdscorepb "github.com/cncf/xds/go/xds/core/v3"
	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttppb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typepb "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-mesh/weft/internal/proxy/filter"
	"github.com/weft-mesh/weft/internal/proxy/normalize"
	"github.com/weft-mesh/weft/internal/proxy/peer"
)

// Builders for the protos, so tables read as policies.

func exact(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Exact{Exact: s}}
}
func prefix(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Prefix{Prefix: s}}
}
func suffix(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Suffix{Suffix: s}}
}
func contains(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Contains{Contains: s}}
}
func regex(s string) *matcherpb.StringMatcher {
	return &matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_SafeRegex{SafeRegex: &matcherpb.RegexMatcher{Regex: s}}}
}
func ignoreCase(m *matcherpb.StringMatcher) *matcherpb.StringMatcher { m.IgnoreCase = true; return m }

func header(name string, m *matcherpb.StringMatcher) *routepb.HeaderMatcher {
	return &routepb.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: m}}
}
func present(name string, p bool) *routepb.HeaderMatcher {
	return &routepb.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routepb.HeaderMatcher_PresentMatch{PresentMatch: p}}
}
func inverted(h *routepb.HeaderMatcher) *routepb.HeaderMatcher { h.InvertMatch = true; return h }

func cidr(addr string, bits uint32) *corepb.CidrRange {
	return &corepb.CidrRange{AddressPrefix: addr, PrefixLen: wrapperspb.UInt32(bits)}
}

func permHeader(h *routepb.HeaderMatcher) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_Header{Header: h}}
}
func permPath(m *matcherpb.StringMatcher) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_UrlPath{UrlPath: &matcherpb.PathMatcher{Rule: &matcherpb.PathMatcher_Path{Path: m}}}}
}
func permPort(p uint32) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationPort{DestinationPort: p}}
}
func permAny() *rbacpb.Permission { return &rbacpb.Permission{Rule: &rbacpb.Permission_Any{Any: true}} }
func permNot(p *rbacpb.Permission) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_NotRule{NotRule: p}}
}
func permAnd(ps ...*rbacpb.Permission) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_AndRules{AndRules: &rbacpb.Permission_Set{Rules: ps}}}
}
func permOr(ps ...*rbacpb.Permission) *rbacpb.Permission {
	return &rbacpb.Permission{Rule: &rbacpb.Permission_OrRules{OrRules: &rbacpb.Permission_Set{Rules: ps}}}
}

func principalName(m *matcherpb.StringMatcher) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Authenticated_{Authenticated: &rbacpb.Principal_Authenticated{PrincipalName: m}}}
}
func principalAny() *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Any{Any: true}}
}
func principalNot(p *rbacpb.Principal) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_NotId{NotId: p}}
}
func principalAnd(ps ...*rbacpb.Principal) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_AndIds{AndIds: &rbacpb.Principal_Set{Ids: ps}}}
}
func principalOr(ps ...*rbacpb.Principal) *rbacpb.Principal {
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_OrIds{OrIds: &rbacpb.Principal_Set{Ids: ps}}}
}

func metadata(v *matcherpb.ValueMatcher, path ...string) *matcherpb.MetadataMatcher {
	m := &matcherpb.MetadataMatcher{Filter: "envoy.filters.http.jwt_authn", Value: v}
	for _, k := range append([]string{"payload"}, path...) {
		m.Path = append(m.Path, &matcherpb.MetadataMatcher_PathSegment{Segment: &matcherpb.MetadataMatcher_PathSegment_Key{Key: k}})
	}
	return m
}
func principalMeta(m *matcherpb.MetadataMatcher) *rbacpb.Principal {
	//lint:ignore SA1019 Envoy deprecated metadata for sourced_metadata, but Istio and weft's control plane emit it
	return &rbacpb.Principal{Identifier: &rbacpb.Principal_Metadata{Metadata: m}}
}
func valString(m *matcherpb.StringMatcher) *matcherpb.ValueMatcher {
	return &matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_StringMatch{StringMatch: m}}
}
func valList(m *matcherpb.ValueMatcher) *matcherpb.ValueMatcher {
	return &matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_ListMatch{ListMatch: &matcherpb.ListMatcher{
		MatchPattern: &matcherpb.ListMatcher_OneOf{OneOf: m}}}}
}
func valOr(ms ...*matcherpb.ValueMatcher) *matcherpb.ValueMatcher {
	return &matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_OrMatch{OrMatch: &matcherpb.OrMatcher{ValueMatchers: ms}}}
}

// allow is an ALLOW filter of one policy.
func allow(perm *rbacpb.Permission, princ *rbacpb.Principal) *rbachttppb.RBAC {
	return &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW, Policies: map[string]*rbacpb.Policy{
		"p": {Permissions: []*rbacpb.Permission{perm}, Principals: []*rbacpb.Principal{princ}},
	}}}
}

// reqSpec describes a request as it reaches the filter.
type reqSpec struct {
	method, target, host string
	header               http.Header
	peer                 *peer.Info
	meta                 map[string]any // jwt_authn payload
}

var orders = &peer.Info{
	TLS: true, SpiffeID: "spiffe://cluster.local/ns/default/sa/orders", SNI: "outbound|80||payments.default.svc.cluster.local",
	RemoteAddr: netip.MustParseAddrPort("10.1.2.3:41000"), LocalPort: 9080,
}

var plaintext = &peer.Info{RemoteAddr: netip.MustParseAddrPort("192.168.7.9:5000"), LocalPort: 9080}

func (s reqSpec) build(t testing.TB) *filter.Request {
	t.Helper()
	if s.method == "" {
		s.method = "GET"
	}
	if s.target == "" {
		s.target = "/"
	}
	r := httptest.NewRequest(s.method, s.target, nil)
	r.RequestURI = s.target
	if s.host != "" {
		r.Host = s.host
	}
	for k, vs := range s.header {
		r.Header[k] = vs
	}
	p := s.peer
	if p == nil {
		p = orders
	}
	ctx := peer.NewContext(r.Context(), p)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, &net.TCPAddr{IP: net.ParseIP("10.9.8.7"), Port: int(p.LocalPort)})
	r = r.WithContext(ctx)
	path, rej := normalize.Request(r, normalize.MergeSlashes)
	if rej != nil {
		t.Fatalf("normalizing %s: %v", s.target, rej)
	}
	req := filter.NewRequest(r, path)
	if s.meta != nil {
		req.SetMetadata("envoy.filters.http.jwt_authn", map[string]any{"payload": s.meta})
	}
	return req
}

func compile(t testing.TB, m *rbachttppb.RBAC) *Filter {
	t.Helper()
	f, err := Compile(m)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return f
}

func TestPermissions(t *testing.T) {
	tests := []struct {
		name string
		perm *rbacpb.Permission
		req  reqSpec
		want bool
	}{
		{"any matches everything", permAny(), reqSpec{}, true},

		{"an exact header matches its value", permHeader(header("x-team", exact("blue"))), reqSpec{header: http.Header{"X-Team": {"blue"}}}, true},
		{"an exact header is case-sensitive", permHeader(header("x-team", exact("blue"))), reqSpec{header: http.Header{"X-Team": {"Blue"}}}, false},
		{"ignore_case makes it case-insensitive", permHeader(header("x-team", ignoreCase(exact("blue")))), reqSpec{header: http.Header{"X-Team": {"BLUE"}}}, true},
		{"a header name is case-insensitive", permHeader(header("X-TEAM", exact("blue"))), reqSpec{header: http.Header{"X-Team": {"blue"}}}, true},
		{"a prefix header", permHeader(header("x-team", prefix("bl"))), reqSpec{header: http.Header{"X-Team": {"blue"}}}, true},
		{"a suffix header", permHeader(header("x-team", suffix("ue"))), reqSpec{header: http.Header{"X-Team": {"blue"}}}, true},
		{"a contains header", permHeader(header("x-team", contains("lu"))), reqSpec{header: http.Header{"X-Team": {"blue"}}}, true},
		{"contains with ignore_case", permHeader(header("x-team", ignoreCase(contains("LU")))), reqSpec{header: http.Header{"X-Team": {"bLue"}}}, true},
		{"a regex header matches the whole value", permHeader(header("x-team", regex("b.*"))), reqSpec{header: http.Header{"X-Team": {"blue"}}}, true},
		{"a regex does not match a part", permHeader(header("x-team", regex("lu"))), reqSpec{header: http.Header{"X-Team": {"blue"}}}, false},
		{"a header sent twice is matched joined with a comma", permHeader(header("x-team", exact("blue,red"))), reqSpec{header: http.Header{"X-Team": {"blue", "red"}}}, true},
		{"a header sent twice does not match one of its values alone", permHeader(header("x-team", exact("red"))), reqSpec{header: http.Header{"X-Team": {"blue", "red"}}}, false},
		{"a missing header fails a string match", permHeader(header("x-team", exact(""))), reqSpec{}, false},
		{"a missing header fails an inverted string match too", permHeader(inverted(header("x-team", exact("blue")))), reqSpec{}, false},
		{"an inverted match holds for another value", permHeader(inverted(header("x-team", exact("blue")))), reqSpec{header: http.Header{"X-Team": {"red"}}}, true},
		{"treat_missing_header_as_empty matches a missing header as empty", permHeader(&routepb.HeaderMatcher{Name: "x-team",
			HeaderMatchSpecifier: &routepb.HeaderMatcher_StringMatch{StringMatch: exact("")}, TreatMissingHeaderAsEmpty: true}), reqSpec{}, true},
		{"present_match true holds when present", permHeader(present("x-team", true)), reqSpec{header: http.Header{"X-Team": {""}}}, true},
		{"present_match true fails when missing", permHeader(present("x-team", true)), reqSpec{}, false},
		{"present_match false holds when missing", permHeader(present("x-team", false)), reqSpec{}, true},
		{"inverted present_match true holds when missing", permHeader(inverted(present("x-team", true))), reqSpec{}, true},
		{"no specifier means present", permHeader(&routepb.HeaderMatcher{Name: "x-team"}), reqSpec{header: http.Header{"X-Team": {"x"}}}, true},
		{":method matches the method", permHeader(header(":method", exact("POST"))), reqSpec{method: "POST"}, true},
		{":authority matches the normalized host", permHeader(header(":authority", exact("payments:9080"))), reqSpec{host: "PAYMENTS:9080"}, true},
		{"host is :authority", permHeader(header("host", exact("payments"))), reqSpec{host: "payments"}, true},
		{"Istio's host regex matches with any port", permHeader(header(":authority", regex("(?i)payments(:[0-9]+)?"))), reqSpec{host: "Payments:9080"}, true},
		{":path matches the normalized path with its query", permHeader(header(":path", exact("/a/b?x=1"))), reqSpec{target: "/a//./b?x=1"}, true},

		{"url_path matches the normalized path", permPath(exact("/admin")), reqSpec{target: "/public/../admin"}, true},
		{"url_path ignores the query", permPath(exact("/admin")), reqSpec{target: "/admin?x=/y"}, true},
		{"url_path sees merged slashes", permPath(prefix("/admin/")), reqSpec{target: "//admin//users"}, true},
		{"url_path sees decoded dots", permPath(prefix("/admin")), reqSpec{target: "/x/%2e%2e/admin"}, true},
		{"url_path is case-sensitive", permPath(exact("/admin")), reqSpec{target: "/ADMIN"}, false},
		{"url_path ignore_case", permPath(ignoreCase(exact("/admin"))), reqSpec{target: "/ADMIN"}, true},

		{"destination_port matches the local port", permPort(9080), reqSpec{}, true},
		{"destination_port of another port", permPort(80), reqSpec{}, false},
		{"destination_port_range is half-open: start", &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationPortRange{
			DestinationPortRange: &typepb.Int32Range{Start: 9080, End: 9081}}}, reqSpec{}, true},
		{"destination_port_range is half-open: end", &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationPortRange{
			DestinationPortRange: &typepb.Int32Range{Start: 9000, End: 9080}}}, reqSpec{}, false},
		{"destination_ip", &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationIp{DestinationIp: cidr("10.9.0.0", 16)}}, reqSpec{}, true},
		{"destination_ip elsewhere", &rbacpb.Permission{Rule: &rbacpb.Permission_DestinationIp{DestinationIp: cidr("10.8.0.0", 16)}}, reqSpec{}, false},
		{"requested_server_name matches the SNI", &rbacpb.Permission{Rule: &rbacpb.Permission_RequestedServerName{
			RequestedServerName: suffix(".default.svc.cluster.local")}}, reqSpec{}, true},
		{"requested_server_name of a plaintext peer is empty", &rbacpb.Permission{Rule: &rbacpb.Permission_RequestedServerName{
			RequestedServerName: prefix("outbound")}}, reqSpec{peer: plaintext}, false},
		//lint:ignore SA1019 Envoy deprecated metadata for sourced_metadata, but Istio and weft's control plane emit it
		{"a metadata permission", &rbacpb.Permission{Rule: &rbacpb.Permission_Metadata{Metadata: metadata(valString(exact("alice")), "sub")}},
			reqSpec{meta: map[string]any{"sub": "alice"}}, true},

		{"not_rule inverts", permNot(permPath(prefix("/admin"))), reqSpec{target: "/public"}, true},
		{"not_rule inverts a match", permNot(permPath(prefix("/admin"))), reqSpec{target: "/admin"}, false},
		{"and_rules needs all", permAnd(permPath(prefix("/admin")), permHeader(header(":method", exact("GET")))), reqSpec{target: "/admin", method: "POST"}, false},
		{"and_rules holds when all do", permAnd(permPath(prefix("/admin")), permHeader(header(":method", exact("GET")))), reqSpec{target: "/admin"}, true},
		{"or_rules needs one", permOr(permPath(prefix("/admin")), permHeader(header(":method", exact("POST")))), reqSpec{target: "/x", method: "POST"}, true},
		{"or_rules fails when none do", permOr(permPath(prefix("/admin")), permHeader(header(":method", exact("POST")))), reqSpec{target: "/x"}, false},
		{"Istio's notPaths: and of not", permAnd(permNot(permOr(permPath(prefix("/admin")), permPath(exact("/debug"))))),
			reqSpec{target: "/debug"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := compile(t, allow(tt.perm, principalAny()))
			got := f.Decode(tt.req.build(t)) == nil
			if got != tt.want {
				t.Errorf("matched = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPrincipals(t *testing.T) {
	claims := map[string]any{
		"iss":    "https://issuer.example.com",
		"sub":    "alice",
		"aud":    []any{"payments", "orders"},
		"groups": []any{"admins", "devs"},
		"scope":  "read",
		"n":      float64(42),
		"ok":     true,
		"nested": map[string]any{"team": "blue"},
		"none":   nil,
	}
	meta := func(v *matcherpb.ValueMatcher, path ...string) *rbacpb.Principal {
		return principalMeta(metadata(v, path...))
	}
	tests := []struct {
		name  string
		princ *rbacpb.Principal
		req   reqSpec
		want  bool
	}{
		{"any", principalAny(), reqSpec{peer: plaintext}, true},
		{"authenticated.principal_name is the peer's SPIFFE ID", principalName(exact("spiffe://cluster.local/ns/default/sa/orders")), reqSpec{}, true},
		{"another SPIFFE ID does not match", principalName(exact("spiffe://cluster.local/ns/default/sa/payments")), reqSpec{}, false},
		{"Istio's namespace regex", principalName(regex(".*/ns/default/.*")), reqSpec{}, true},
		{"a plaintext peer is never authenticated", principalName(regex(".*")), reqSpec{peer: plaintext}, false},
		{"authenticated without a name matches any mTLS peer", &rbacpb.Principal{Identifier: &rbacpb.Principal_Authenticated_{
			Authenticated: &rbacpb.Principal_Authenticated{}}}, reqSpec{}, true},
		{"direct_remote_ip in range", &rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.1.0.0", 16)}}, reqSpec{}, true},
		{"direct_remote_ip out of range", &rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.2.0.0", 16)}}, reqSpec{}, false},
		{"direct_remote_ip of one address", &rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.1.2.3", 32)}}, reqSpec{}, true},
		{"remote_ip is the connection's address (no trusted XFF hop)", &rbacpb.Principal{Identifier: &rbacpb.Principal_RemoteIp{RemoteIp: cidr("192.168.0.0", 16)}},
			reqSpec{peer: plaintext, header: http.Header{"X-Forwarded-For": {"10.1.2.3"}}}, true},
		{"an IPv4 range does not match an IPv6 peer", &rbacpb.Principal{Identifier: &rbacpb.Principal_RemoteIp{RemoteIp: cidr("0.0.0.0", 0)}},
			reqSpec{peer: &peer.Info{RemoteAddr: netip.MustParseAddrPort("[2001:db8::1]:1")}}, false},
		{"an IPv4-mapped peer matches an IPv4 range", &rbacpb.Principal{Identifier: &rbacpb.Principal_RemoteIp{RemoteIp: cidr("10.1.0.0", 16)}},
			reqSpec{peer: &peer.Info{RemoteAddr: netip.MustParseAddrPort("[::ffff:10.1.2.3]:1")}}, true},
		{"a header principal", &rbacpb.Principal{Identifier: &rbacpb.Principal_Header{Header: header("x-team", exact("blue"))}},
			reqSpec{header: http.Header{"X-Team": {"blue"}}}, true},
		{"a url_path principal", &rbacpb.Principal{Identifier: &rbacpb.Principal_UrlPath{UrlPath: &matcherpb.PathMatcher{
			Rule: &matcherpb.PathMatcher_Path{Path: exact("/a")}}}}, reqSpec{target: "/b/../a"}, true},

		{"a metadata string", meta(valString(exact("alice")), "sub"), reqSpec{meta: claims}, true},
		{"a metadata string of another value", meta(valString(exact("bob")), "sub"), reqSpec{meta: claims}, false},
		{"a metadata list holds one of its values", meta(valList(valString(exact("devs"))), "groups"), reqSpec{meta: claims}, true},
		{"a list matcher does not match a string", meta(valList(valString(exact("read"))), "scope"), reqSpec{meta: claims}, false},
		{"Istio's claim matcher (list or string) on a string", meta(valOr(valList(valString(exact("read"))), valString(exact("read"))), "scope"),
			reqSpec{meta: claims}, true},
		{"Istio's claim matcher (list or string) on a list", meta(valOr(valList(valString(exact("orders"))), valString(exact("orders"))), "aud"),
			reqSpec{meta: claims}, true},
		{"a nested claim", meta(valString(exact("blue")), "nested", "team"), reqSpec{meta: claims}, true},
		{"a number", meta(&matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_DoubleMatch{DoubleMatch: &matcherpb.DoubleMatcher{
			MatchPattern: &matcherpb.DoubleMatcher_Exact{Exact: 42}}}}, "n"), reqSpec{meta: claims}, true},
		{"a number range", meta(&matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_DoubleMatch{DoubleMatch: &matcherpb.DoubleMatcher{
			MatchPattern: &matcherpb.DoubleMatcher_Range{Range: &typepb.DoubleRange{Start: 40, End: 42}}}}}, "n"), reqSpec{meta: claims}, false},
		{"a bool", meta(&matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_BoolMatch{BoolMatch: true}}, "ok"), reqSpec{meta: claims}, true},
		{"a null", meta(&matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_NullMatch_{NullMatch: &matcherpb.ValueMatcher_NullMatch{}}}, "none"),
			reqSpec{meta: claims}, true},
		{"present_match on a present claim", meta(&matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_PresentMatch{PresentMatch: true}}, "sub"),
			reqSpec{meta: claims}, true},
		{"present_match on a missing claim", meta(&matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_PresentMatch{PresentMatch: true}}, "missing"),
			reqSpec{meta: claims}, false},
		{"without a token there is no metadata", meta(valString(exact("alice")), "sub"), reqSpec{}, false},
		{"an inverted metadata matcher holds without a token", principalMeta(func() *matcherpb.MetadataMatcher {
			m := metadata(valString(exact("alice")), "sub")
			m.Invert = true
			return m
		}()), reqSpec{}, true},
		{"a path through a non-object is missing", meta(valString(exact("x")), "sub", "deeper"), reqSpec{meta: claims}, false},

		{"not_id inverts", principalNot(principalName(exact("spiffe://cluster.local/ns/default/sa/evil"))), reqSpec{}, true},
		{"and_ids needs all", principalAnd(principalName(prefix("spiffe://")), meta(valString(exact("alice")), "sub")), reqSpec{}, false},
		{"and_ids: Istio's request principal iss/sub", principalAnd(meta(valString(exact("https://issuer.example.com")), "iss"), meta(valString(exact("alice")), "sub")),
			reqSpec{meta: claims}, true},
		{"or_ids needs one", principalOr(principalName(exact("nobody")), principalAny()), reqSpec{}, true},
		{"or_ids fails when none do", principalOr(principalName(exact("nobody")), principalName(exact("nobody else"))), reqSpec{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := compile(t, allow(permAny(), tt.princ))
			got := f.Decode(tt.req.build(t)) == nil
			if got != tt.want {
				t.Errorf("matched = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestActions(t *testing.T) {
	adminPolicy := map[string]*rbacpb.Policy{"no-admin": {
		Permissions: []*rbacpb.Permission{permPath(prefix("/admin"))}, Principals: []*rbacpb.Principal{principalAny()}}}
	tests := []struct {
		name   string
		config *rbachttppb.RBAC
		target string
		denied bool
	}{
		{"ALLOW denies what no policy matches", &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW, Policies: adminPolicy}}, "/public", true},
		{"ALLOW passes what a policy matches", &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW, Policies: adminPolicy}}, "/admin", false},
		{"ALLOW without policies denies everything", &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW}}, "/", true},
		{"DENY denies what a policy matches", &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: adminPolicy}}, "/admin/x", true},
		{"DENY passes the rest", &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: adminPolicy}}, "/public", false},
		{"DENY catches a path that only normalization reveals", &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: adminPolicy}}, "/public/%2E%2e//admin", true},
		{"LOG (AUDIT) never denies", &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_LOG, Policies: adminPolicy}}, "/admin", false},
		{"without rules nothing is enforced", &rbachttppb.RBAC{}, "/admin", false},
		{"shadow rules are never enforced", &rbachttppb.RBAC{ShadowRules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: adminPolicy}}, "/admin", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := compile(t, tt.config)
			rep := f.Decode(reqSpec{target: tt.target}.build(t))
			if (rep != nil) != tt.denied {
				t.Fatalf("denied = %v, want %v", rep != nil, tt.denied)
			}
			if rep != nil && (rep.Status != 403 || rep.Body != "RBAC: access denied") {
				t.Errorf("reply %d %q, want 403 \"RBAC: access denied\"", rep.Status, rep.Body)
			}
		})
	}
}

// TestUnknownIsRefused proves the fail-closed promise: whatever the
// compiler does not know is a decode error (a NACK), never a matcher that
// quietly does not match.
func TestUnknownIsRefused(t *testing.T) {
	policy := func(p *rbacpb.Policy) *rbachttppb.RBAC {
		return &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: map[string]*rbacpb.Policy{"p": p}}}
	}
	withPerm := func(perm *rbacpb.Permission) *rbachttppb.RBAC {
		return policy(&rbacpb.Policy{Permissions: []*rbacpb.Permission{perm}, Principals: []*rbacpb.Principal{principalAny()}})
	}
	withPrinc := func(pr *rbacpb.Principal) *rbachttppb.RBAC {
		return policy(&rbacpb.Policy{Permissions: []*rbacpb.Permission{permAny()}, Principals: []*rbacpb.Principal{pr}})
	}
	tests := []struct {
		name   string
		config *rbachttppb.RBAC
		want   string
	}{
		{"a CEL condition", policy(&rbacpb.Policy{Permissions: []*rbacpb.Permission{permAny()}, Principals: []*rbacpb.Principal{principalAny()},
			Condition: nil, CelConfig: &corepb.CelExpressionConfig{}}), `rules.policies["p"].cel_config: not supported`},
		{"a policy without principals", policy(&rbacpb.Policy{Permissions: []*rbacpb.Permission{permAny()}}),
			`rules.policies["p"].principals: at least one principal is required`},
		{"the matcher API", &rbachttppb.RBAC{Matcher: nil, ShadowRulesStatPrefix: "x", Rules: &rbacpb.RBAC{
			AuditLoggingOptions: &rbacpb.RBAC_AuditLoggingOptions{}}}, "rules.audit_logging_options: not supported"},
		{"a uri_template permission", withPerm(&rbacpb.Permission{Rule: &rbacpb.Permission_UriTemplate{UriTemplate: &corepb.TypedExtensionConfig{}}}),
			`rules.policies["p"].permissions[0].uri_template: not supported`},
		{"an empty and_rules", withPerm(permAnd()), `rules.policies["p"].permissions[0].and_rules.rules: at least one rule is required`},
		{"any false", withPerm(&rbacpb.Permission{Rule: &rbacpb.Permission_Any{Any: false}}), `rules.policies["p"].permissions[0].any: must be true`},
		{"a pseudo-header other than method, authority and path", withPerm(permHeader(header(":scheme", exact("https")))),
			`rules.policies["p"].permissions[0].header.name: pseudo-header ":scheme" not supported (want :method, :authority or :path)`},
		//lint:ignore SA1019 the test is that the deprecated field is refused
		{"a deprecated exact_match header", withPerm(permHeader(&routepb.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routepb.HeaderMatcher_ExactMatch{ExactMatch: "y"}})),
			`rules.policies["p"].permissions[0].header.exact_match: not supported`},
		{"a range header", withPerm(permHeader(&routepb.HeaderMatcher{Name: "x", HeaderMatchSpecifier: &routepb.HeaderMatcher_RangeMatch{RangeMatch: &typepb.Int64Range{}}})),
			`rules.policies["p"].permissions[0].header.range_match: not supported`},
		{"an invalid regex", withPerm(permPath(regex("("))),
			"rules.policies[\"p\"].permissions[0].url_path.path.safe_regex.regex: invalid RE2 expression: error parsing regexp: missing closing ): `(`"},
		{"ignore_case on a regex", withPerm(permPath(ignoreCase(regex("a")))),
			`rules.policies["p"].permissions[0].url_path.path.ignore_case: not supported with safe_regex; use (?i) in the regex`},
		{"an empty prefix", withPerm(permPath(prefix(""))), `rules.policies["p"].permissions[0].url_path.path: empty prefix`},
		{"a string matcher extension", withPerm(permPath(&matcherpb.StringMatcher{MatchPattern: &matcherpb.StringMatcher_Custom{Custom: &xdscorepb.TypedExtensionConfig{}}})),
			`rules.policies["p"].permissions[0].url_path.path.custom: not supported`},
		{"a bad CIDR", withPrinc(&rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.0.0", 8)}}),
			`rules.policies["p"].principals[0].direct_remote_ip.address_prefix: "10.0.0" is not an IP address`},
		{"a CIDR longer than its address", withPrinc(&rbacpb.Principal{Identifier: &rbacpb.Principal_DirectRemoteIp{DirectRemoteIp: cidr("10.0.0.0", 33)}}),
			`rules.policies["p"].principals[0].direct_remote_ip.prefix_len: 33 is longer than the address`},
		{"filter_state", withPrinc(&rbacpb.Principal{Identifier: &rbacpb.Principal_FilterState{FilterState: &matcherpb.FilterStateMatcher{}}}),
			`rules.policies["p"].principals[0].filter_state: not supported`},
		{"metadata without a path", withPrinc(principalMeta(&matcherpb.MetadataMatcher{Filter: "f", Value: valString(exact("x"))})),
			`rules.policies["p"].principals[0].metadata.path: at least one segment is required`},
		{"a nested unknown", withPrinc(principalNot(principalOr(principalAny(), &rbacpb.Principal{Identifier: &rbacpb.Principal_Custom{
			Custom: &corepb.TypedExtensionConfig{}}}))), `rules.policies["p"].principals[0].not_id.or_ids.ids[1].custom: not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.config)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error %v\nwant %s", err, tt.want)
			}
		})
	}
}

// realisticPolicy is an Istio-shaped pair of filters for a payments
// workload: DENY writes to /admin from outside the namespace, ALLOW
// orders and the ingress gateway to GET and POST under /api with a JWT
// from the right issuer, and health checks from anyone.
func realisticPolicy() (deny, allowF *rbachttppb.RBAC) {
	methods := permOr(permHeader(header(":method", exact("GET"))), permHeader(header(":method", exact("POST"))))
	deny = &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: map[string]*rbacpb.Policy{
		"ns[default]-policy[no-admin]-rule[0]": {
			Permissions: []*rbacpb.Permission{permAnd(permOr(permPath(prefix("/admin/")), permPath(exact("/admin"))),
				permNot(permHeader(header(":method", exact("GET")))))},
			Principals: []*rbacpb.Principal{principalAnd(principalNot(principalOr(principalName(regex(".*/ns/default/.*")))))},
		},
	}}}
	allowF = &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_ALLOW, Policies: map[string]*rbacpb.Policy{
		"ns[default]-policy[health]-rule[0]": {
			Permissions: []*rbacpb.Permission{permAnd(permOr(permPath(exact("/healthz")), permPath(exact("/ready"))))},
			Principals:  []*rbacpb.Principal{principalAny()},
		},
		"ns[default]-policy[payments]-rule[0]": {
			Permissions: []*rbacpb.Permission{permAnd(
				permOr(permHeader(header(":authority", regex("(?i)payments(:[0-9]+)?"))), permHeader(header(":authority", regex("(?i)payments\\.default(:[0-9]+)?")))),
				methods,
				permOr(permPath(prefix("/api/")), permPath(exact("/api"))),
				permOr(permPort(9080), permPort(8080)),
			)},
			Principals: []*rbacpb.Principal{principalAnd(
				principalOr(principalName(exact("spiffe://cluster.local/ns/default/sa/orders")),
					principalName(exact("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"))),
				principalAnd(principalMeta(metadata(valString(exact("https://issuer.example.com")), "iss")), principalMeta(metadata(valString(prefix("")), "sub"))),
			)},
		},
	}}}
	// prefix("") is refused; make the sub matcher a presence check.
	allowF.Rules.Policies["ns[default]-policy[payments]-rule[0]"].Principals[0].GetAndIds().Ids[1].GetAndIds().Ids[1] =
		principalMeta(metadata(&matcherpb.ValueMatcher{MatchPattern: &matcherpb.ValueMatcher_PresentMatch{PresentMatch: true}}, "sub"))
	return deny, allowF
}

func TestRealisticPolicy(t *testing.T) {
	d, a := realisticPolicy()
	deny, allowF := compile(t, d), compile(t, a)
	claims := map[string]any{"iss": "https://issuer.example.com", "sub": "alice"}
	tests := []struct {
		name string
		req  reqSpec
		want bool // allowed
	}{
		{"orders with a token may POST to the API", reqSpec{method: "POST", target: "/api/pay", host: "payments:9080", meta: claims}, true},
		{"orders without a token may not", reqSpec{method: "POST", target: "/api/pay", host: "payments:9080"}, false},
		{"a plaintext peer may not", reqSpec{method: "POST", target: "/api/pay", host: "payments", peer: plaintext, meta: claims}, false},
		{"health checks pass from anyone", reqSpec{target: "/healthz", peer: plaintext}, true},
		{"DELETE is not allowed", reqSpec{method: "DELETE", target: "/api/pay", host: "payments", meta: claims}, false},
		{"another host is not allowed", reqSpec{target: "/api/pay", host: "evil", meta: claims}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req.build(t)
			got := deny.Decode(req) == nil && allowF.Decode(req) == nil
			if got != tt.want {
				t.Errorf("allowed = %v, want %v", got, tt.want)
			}
		})
	}
}

func BenchmarkRBAC(b *testing.B) {
	d, a := realisticPolicy()
	deny, allowF := compile(b, d), compile(b, a)
	claims := map[string]any{"iss": "https://issuer.example.com", "sub": "alice"}
	for _, bc := range []struct {
		name string
		req  reqSpec
	}{
		{"allowed", reqSpec{method: "POST", target: "/api/v1/payments/12345", host: "payments.default:9080", meta: claims,
			header: http.Header{"Content-Type": {"application/json"}, "Accept": {"*/*"}}}},
		{"denied", reqSpec{method: "DELETE", target: "/admin/users", host: "payments", peer: plaintext}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := bc.req.build(b)
			b.ReportAllocs()
			for b.Loop() {
				if deny.Decode(req) == nil {
					_ = allowF.Decode(req)
				}
			}
		})
	}
}
