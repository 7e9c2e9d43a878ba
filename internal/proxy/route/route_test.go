package route

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func mustCompile(t testing.TB, spec ConfigSpec) *Table {
	t.Helper()
	tbl, err := Compile(spec)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tbl
}

func vhost(name string, domains ...string) VirtualHostSpec {
	return VirtualHostSpec{Name: name, Domains: domains, Routes: []RouteSpec{{
		Match:  MatchSpec{PathKind: PathPrefix, Path: "/", CaseSensitive: true},
		Action: ActionSpec{Cluster: name},
	}}}
}

func TestLookup(t *testing.T) {
	tbl := mustCompile(t, ConfigSpec{Name: "outbound", VirtualHosts: []VirtualHostSpec{
		vhost("reviews", "reviews", "reviews:80", "reviews.default.svc.cluster.local"),
		vhost("suffix-short", "*.example.com"),
		vhost("suffix-long", "*.api.example.com"),
		vhost("suffix-dash", "*-canary.example.com"),
		vhost("prefix", "ratings.*"),
		vhost("prefix-long", "ratings.default.*"),
	}})
	withStar := mustCompile(t, ConfigSpec{Name: "inbound", VirtualHosts: []VirtualHostSpec{
		vhost("exact", "exact.local"),
		vhost("star", "*"),
	}})

	tests := []struct {
		name  string
		table *Table
		host  string
		want  string // "" for no virtual host
	}{
		{"an exact domain matches", tbl, "reviews", "reviews"},
		{"an exact domain matches case-insensitively", tbl, "ReViEwS", "reviews"},
		{"a domain with a port matches the host with that port", tbl, "reviews:80", "reviews"},
		{"a host with another port does not match", tbl, "reviews:9080", ""},
		{"the fully qualified name matches", tbl, "reviews.default.svc.cluster.local", "reviews"},
		{"a suffix wildcard matches a subdomain", tbl, "www.example.com", "suffix-short"},
		{"the longest suffix wildcard wins", tbl, "v1.api.example.com", "suffix-long"},
		{"a suffix wildcard need not start at a dot", tbl, "web-canary.example.com", "suffix-dash"},
		{"a suffix wildcard matches at least one character", tbl, ".example.com", ""},
		{"a suffix wildcard does not match the bare suffix", tbl, "example.com", ""},
		{"a prefix wildcard matches", tbl, "ratings.prod", "prefix"},
		{"the longest prefix wildcard wins", tbl, "ratings.default.svc", "prefix-long"},
		{"a prefix wildcard matches hosts with ports", tbl, "ratings.default.svc:80", "prefix-long"},
		{"an unknown host matches nothing without a star", tbl, "details", ""},
		{"an empty host matches nothing without a star", tbl, "", ""},
		{"exact beats star", withStar, "exact.local", "exact"},
		{"star matches everything else", withStar, "anything:1234", "star"},
		{"star matches an empty host", withStar, "", "star"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vh := tt.table.Lookup(tt.host)
			got := ""
			if vh != nil {
				got = vh.Name()
			}
			if got != tt.want {
				t.Errorf("Lookup(%q) = %q, want %q", tt.host, got, tt.want)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	prefix := func(p string) MatchSpec { return MatchSpec{PathKind: PathPrefix, Path: p, CaseSensitive: true} }
	withHeaders := func(hs ...HeaderMatchSpec) MatchSpec {
		m := prefix("/")
		m.Headers = hs
		return m
	}
	req := func(method, target string, header ...string) *http.Request {
		r := httptest.NewRequest(method, target, nil)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Add(header[i], header[i+1])
		}
		return r
	}

	tests := []struct {
		name  string
		match MatchSpec
		req   *http.Request
		want  bool
	}{
		{"a prefix matches a longer path", prefix("/api"), req("GET", "/api/v1"), true},
		{"a prefix does not match another path", prefix("/api"), req("GET", "/ap"), false},
		{"a prefix is case-sensitive by default", prefix("/api"), req("GET", "/API/v1"), false},
		{"a case-insensitive prefix ignores case", MatchSpec{PathKind: PathPrefix, Path: "/api", CaseSensitive: false}, req("GET", "/API/v1"), true},
		{"an exact path matches only itself", MatchSpec{PathKind: PathExact, Path: "/health", CaseSensitive: true}, req("GET", "/health"), true},
		{"an exact path does not match a longer path", MatchSpec{PathKind: PathExact, Path: "/health", CaseSensitive: true}, req("GET", "/healthz"), false},
		{"an exact path ignores the query string", MatchSpec{PathKind: PathExact, Path: "/health", CaseSensitive: true}, req("GET", "/health?verbose=1"), true},
		{"a case-insensitive exact path ignores case", MatchSpec{PathKind: PathExact, Path: "/Health"}, req("GET", "/hEALTH"), true},
		{"a prefix sees the raw path, not the decoded one", prefix("/a/b"), req("GET", "/a%2Fb"), false},
		{"a regex must match the whole path", MatchSpec{PathKind: PathRegex, Path: `/items/\d+`}, req("GET", "/items/42"), true},
		{"a regex matching only part of the path fails", MatchSpec{PathKind: PathRegex, Path: `/items/\d+`}, req("GET", "/items/42/edit"), false},
		{"a regex ignores the query string", MatchSpec{PathKind: PathRegex, Path: `/items/\d+`}, req("GET", "/items/42?x=1"), true},
		{"an absolute-form target matches on its path", prefix("/x"), absoluteForm("GET", "http://reviews/x/y?q=1"), true},

		{"an exact header matches", withHeaders(HeaderMatchSpec{Name: "x-user", Kind: StringExact, Value: "jason"}), req("GET", "/", "X-User", "jason"), true},
		{"an exact header is case-sensitive", withHeaders(HeaderMatchSpec{Name: "x-user", Kind: StringExact, Value: "jason"}), req("GET", "/", "X-User", "Jason"), false},
		{"an exact header with ignore_case ignores case", withHeaders(HeaderMatchSpec{Name: "x-user", Kind: StringExact, Value: "jason", IgnoreCase: true}), req("GET", "/", "X-User", "JASON"), true},
		{"a prefix header matches", withHeaders(HeaderMatchSpec{Name: "x-v", Kind: StringPrefix, Value: "v2"}), req("GET", "/", "X-V", "v2.1"), true},
		{"a prefix header with ignore_case ignores case", withHeaders(HeaderMatchSpec{Name: "x-v", Kind: StringPrefix, Value: "v2", IgnoreCase: true}), req("GET", "/", "X-V", "V2.1"), true},
		{"a suffix header matches", withHeaders(HeaderMatchSpec{Name: "x-v", Kind: StringSuffix, Value: "-beta"}), req("GET", "/", "X-V", "v2-beta"), true},
		{"a suffix header with ignore_case ignores case", withHeaders(HeaderMatchSpec{Name: "x-v", Kind: StringSuffix, Value: "-beta", IgnoreCase: true}), req("GET", "/", "X-V", "v2-BETA"), true},
		{"a contains header matches", withHeaders(HeaderMatchSpec{Name: "user-agent", Kind: StringContains, Value: "Mobile"}), req("GET", "/", "User-Agent", "x Mobile y"), true},
		{"a contains header with ignore_case ignores case", withHeaders(HeaderMatchSpec{Name: "user-agent", Kind: StringContains, Value: "mobile", IgnoreCase: true}), req("GET", "/", "User-Agent", "x MOBILE y"), true},
		{"a regex header must match the whole value", withHeaders(HeaderMatchSpec{Name: "x-id", Kind: StringRegex, Value: `\d{3}`}), req("GET", "/", "X-Id", "1234"), false},
		{"an inverted regex header matches a non-matching value", withHeaders(HeaderMatchSpec{Name: "x-id", Kind: StringRegex, Value: `\d{3}`, Invert: true}), req("GET", "/", "X-Id", "1234"), true},
		{"a missing header fails a value match", withHeaders(HeaderMatchSpec{Name: "x-user", Kind: StringExact, Value: "jason"}), req("GET", "/"), false},
		{"a missing header fails an inverted value match too", withHeaders(HeaderMatchSpec{Name: "x-user", Kind: StringExact, Value: "jason", Invert: true}), req("GET", "/"), false},
		{"a present match holds when the header is there", withHeaders(HeaderMatchSpec{Name: "x-canary", Kind: StringPresent, Present: true}), req("GET", "/", "X-Canary", ""), true},
		{"a present match fails when the header is missing", withHeaders(HeaderMatchSpec{Name: "x-canary", Kind: StringPresent, Present: true}), req("GET", "/"), false},
		{"present false holds when the header is missing", withHeaders(HeaderMatchSpec{Name: "x-canary", Kind: StringPresent, Present: false}), req("GET", "/"), true},
		{"an inverted present match holds when the header is missing", withHeaders(HeaderMatchSpec{Name: "x-canary", Kind: StringPresent, Present: true, Invert: true}), req("GET", "/"), true},
		{"a header sent twice matches its joined values", withHeaders(HeaderMatchSpec{Name: "x-tag", Kind: StringExact, Value: "a,b"}), req("GET", "/", "X-Tag", "a", "X-Tag", "b"), true},
		{"all header matchers must hold", withHeaders(
			HeaderMatchSpec{Name: "x-a", Kind: StringExact, Value: "1"},
			HeaderMatchSpec{Name: "x-b", Kind: StringExact, Value: "2"},
		), req("GET", "/", "X-A", "1", "X-B", "3"), false},

		{":method matches the method", withHeaders(HeaderMatchSpec{Name: ":method", Kind: StringExact, Value: "POST"}), req("POST", "/"), true},
		{":method does not match another method", withHeaders(HeaderMatchSpec{Name: ":method", Kind: StringExact, Value: "POST"}), req("GET", "/"), false},
		{":authority matches the host", withHeaders(HeaderMatchSpec{Name: ":authority", Kind: StringPrefix, Value: "reviews"}), withHost(req("GET", "/"), "reviews:80"), true},
		{"host is an alias of :authority", withHeaders(HeaderMatchSpec{Name: "Host", Kind: StringExact, Value: "reviews"}), withHost(req("GET", "/"), "reviews"), true},
		{":path includes the query string", withHeaders(HeaderMatchSpec{Name: ":path", Kind: StringSuffix, Value: "?debug=1"}), req("GET", "/x?debug=1"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := mustCompile(t, ConfigSpec{VirtualHosts: []VirtualHostSpec{{
				Name: "vh", Domains: []string{"*"},
				Routes: []RouteSpec{{Name: "r", Match: tt.match, Action: ActionSpec{Cluster: "c"}}},
			}}})
			r := NewRequest(tt.req)
			got := tbl.Lookup("any").Match(&r) != nil
			if got != tt.want {
				t.Errorf("match = %v, want %v (path %q)", got, tt.want, r.Path)
			}
		})
	}
}

// absoluteForm builds a request the way the server parses
// "GET http://reviews/x HTTP/1.1": RequestURI is the absolute URI and Host
// comes from it.
func absoluteForm(method, target string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.RequestURI = target
	return r
}

func withHost(r *http.Request, host string) *http.Request {
	r.Host = host
	return r
}

func TestFirstMatchingRouteWins(t *testing.T) {
	tbl := mustCompile(t, ConfigSpec{VirtualHosts: []VirtualHostSpec{{
		Name: "vh", Domains: []string{"*"},
		Routes: []RouteSpec{
			{Name: "canary", Match: MatchSpec{PathKind: PathPrefix, Path: "/", CaseSensitive: true,
				Headers: []HeaderMatchSpec{{Name: "x-canary", Kind: StringPresent, Present: true}}}, Action: ActionSpec{Cluster: "v2"}},
			{Name: "api", Match: MatchSpec{PathKind: PathPrefix, Path: "/api", CaseSensitive: true}, Action: ActionSpec{Cluster: "api"}},
			{Name: "default", Match: MatchSpec{PathKind: PathPrefix, Path: "/", CaseSensitive: true}, Action: ActionSpec{Cluster: "v1"}},
		},
	}}})
	tests := []struct {
		name, target, canary, want string
	}{
		{"a header route listed first wins over later prefixes", "/api/x", "1", "canary"},
		{"the first prefix that holds wins", "/api/x", "", "api"},
		{"the catch-all comes last", "/other", "", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hr := httptest.NewRequest("GET", tt.target, nil)
			if tt.canary != "" {
				hr.Header.Set("X-Canary", tt.canary)
			}
			r := NewRequest(hr)
			if got := tbl.Lookup("x").Match(&r).Name(); got != tt.want {
				t.Errorf("route = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCompileRejects(t *testing.T) {
	ok := func() RouteSpec {
		return RouteSpec{Match: MatchSpec{PathKind: PathPrefix, Path: "/"}, Action: ActionSpec{Cluster: "c"}}
	}
	tests := []struct {
		name string
		spec ConfigSpec
		want string
	}{
		{"a domain listed in two virtual hosts", ConfigSpec{VirtualHosts: []VirtualHostSpec{
			{Name: "a", Domains: []string{"reviews"}},
			{Name: "b", Domains: []string{"x", "REVIEWS"}},
		}}, `virtual_hosts[1].domains[1]: duplicate domain "REVIEWS" (also in virtual_hosts[0])`},
		{"a virtual host without domains", ConfigSpec{VirtualHosts: []VirtualHostSpec{{Name: "a"}}},
			"virtual_hosts[0].domains: at least one domain is required"},
		{"a wildcard in the middle of a domain", ConfigSpec{VirtualHosts: []VirtualHostSpec{{Name: "a", Domains: []string{"a.*.com"}}}},
			`virtual_hosts[0].domains[0]: wildcard in "a.*.com" must be at the start or the end`},
		{"an invalid path regex", ConfigSpec{VirtualHosts: []VirtualHostSpec{{Name: "a", Domains: []string{"*"}, Routes: []RouteSpec{
			{Match: MatchSpec{PathKind: PathRegex, Path: "(["}, Action: ActionSpec{Cluster: "c"}},
		}}}}, "virtual_hosts[0].routes[0].match.safe_regex.regex: invalid RE2 expression"},
		{"an unsupported pseudo-header", ConfigSpec{VirtualHosts: []VirtualHostSpec{{Name: "a", Domains: []string{"*"}, Routes: []RouteSpec{
			{Match: MatchSpec{PathKind: PathPrefix, Path: "/", Headers: []HeaderMatchSpec{{Name: ":scheme", Kind: StringExact, Value: "https"}}}, Action: ActionSpec{Cluster: "c"}},
		}}}}, `virtual_hosts[0].routes[0].match.headers[0].name: pseudo-header ":scheme" not supported`},
		{"weights that sum to zero", ConfigSpec{VirtualHosts: []VirtualHostSpec{{Name: "a", Domains: []string{"*"}, Routes: []RouteSpec{
			ok(), {Match: MatchSpec{PathKind: PathPrefix, Path: "/"}, Action: ActionSpec{WeightedClusters: []WeightedCluster{{Name: "a"}, {Name: "b"}}}},
		}}}}, "virtual_hosts[0].routes[1].route.weighted_clusters: weights sum to 0, want more than 0"},
		{"a route without a cluster", ConfigSpec{VirtualHosts: []VirtualHostSpec{{Name: "a", Domains: []string{"*"}, Routes: []RouteSpec{
			{Match: MatchSpec{PathKind: PathPrefix, Path: "/"}},
		}}}}, "virtual_hosts[0].routes[0].route: want cluster or weighted_clusters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(tt.spec)
			if err == nil {
				t.Fatalf("Compile succeeded, want error %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to start with %q", err, tt.want)
			}
		})
	}
}

func TestWeightedPickFollowsWeights(t *testing.T) {
	tbl := mustCompile(t, ConfigSpec{VirtualHosts: []VirtualHostSpec{{Name: "vh", Domains: []string{"*"}, Routes: []RouteSpec{{
		Match:  MatchSpec{PathKind: PathPrefix, Path: "/"},
		Action: ActionSpec{WeightedClusters: []WeightedCluster{{Name: "v1", Weight: 10}, {Name: "v2", Weight: 30}, {Name: "v3", Weight: 60}, {Name: "off", Weight: 0}}},
	}}}}})
	a := tbl.VirtualHosts()[0].Routes()[0].Action()

	tests := []struct {
		name string
		pick func(*rand.Rand) string
	}{
		{"picks from a seeded generator follow the weights", func(r *rand.Rand) string { return a.Pick(r.Uint64()) }},
		{"picks from the runtime generator follow the weights", func(*rand.Rand) string { return a.Cluster() }},
	}
	const draws = 200_000
	want := map[string]float64{"v1": 0.10, "v2": 0.30, "v3": 0.60, "off": 0}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			got := map[string]int{}
			for range draws {
				got[tt.pick(rng)]++
			}
			for name, share := range want {
				frac := float64(got[name]) / draws
				if d := frac - share; d > 0.01 || d < -0.01 {
					t.Errorf("cluster %s got %.4f of picks, want %.2f ± 0.01", name, frac, share)
				}
			}
		})
	}
}

func TestActionTimeout(t *testing.T) {
	tbl := mustCompile(t, ConfigSpec{VirtualHosts: []VirtualHostSpec{{Name: "vh", Domains: []string{"*"}, Routes: []RouteSpec{
		{Match: MatchSpec{PathKind: PathPrefix, Path: "/"}, Action: ActionSpec{Cluster: "c", Timeout: 1500 * time.Millisecond}},
	}}}})
	if got := tbl.VirtualHosts()[0].Routes()[0].Action().Timeout(); got != 1500*time.Millisecond {
		t.Errorf("Timeout() = %v, want 1.5s", got)
	}
}

// BenchmarkRouteMatch measures the request-path cost of routing: host
// lookup plus a linear walk over 1,000 routes.
func BenchmarkRouteMatch(b *testing.B) {
	const n = 1000
	routes := make([]RouteSpec, 0, n)
	for i := range n - 1 {
		routes = append(routes, RouteSpec{
			Match:  MatchSpec{PathKind: PathPrefix, Path: fmt.Sprintf("/service-%d/", i), CaseSensitive: true},
			Action: ActionSpec{Cluster: fmt.Sprintf("c%d", i)},
		})
	}
	routes = append(routes, RouteSpec{
		Match: MatchSpec{PathKind: PathPrefix, Path: "/", CaseSensitive: true,
			Headers: []HeaderMatchSpec{{Name: "x-user", Kind: StringExact, Value: "jason"}}},
		Action: ActionSpec{Cluster: "last"},
	})
	vhosts := []VirtualHostSpec{{Name: "big", Domains: []string{"reviews", "reviews:80"}, Routes: routes}}
	for i := range n {
		vhosts = append(vhosts, vhost(fmt.Sprintf("svc-%d", i), fmt.Sprintf("svc-%d.default.svc.cluster.local", i)))
	}
	tbl := mustCompile(b, ConfigSpec{Name: "outbound", VirtualHosts: vhosts})

	cases := []struct {
		name string
		host string
		path string
		want string
	}{
		{"first of 1000 routes", "reviews", "/service-0/x", "c0"},
		{"last of 1000 routes with a header match", "reviews", "/other", "last"},
		{"host among 1000 virtual hosts", "svc-999.default.svc.cluster.local", "/", "svc-999"},
	}
	for _, c := range cases {
		hr := httptest.NewRequest("GET", c.path, nil)
		hr.Host = c.host
		hr.RequestURI = c.path
		hr.Header.Set("X-User", "jason")
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := NewRequest(hr)
				rt := tbl.Lookup(hr.Host).Match(&r)
				if rt == nil || rt.Action().Cluster() != c.want {
					b.Fatalf("routed to %v, want %s", rt, c.want)
				}
			}
		})
	}
}
