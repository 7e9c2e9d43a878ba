package rbac

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttppb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-mesh/weft/internal/proxy/filter"
	"github.com/weft-mesh/weft/internal/proxy/normalize"
	"github.com/weft-mesh/weft/internal/proxy/peer"
)

// FuzzRBACMatch drives policy matching with untrusted requests (and
// untrusted configurations). For any request the proxy accepts:
//   - a DENY on the prefix /admin is never bypassed: a request it lets
//     through has a normalized path outside /admin;
//   - the decision depends on the request's meaning, not its spelling:
//     sending the normalized path, and the host in upper case, gets the
//     same decision;
//   - nothing panics, and any configuration that compiles evaluates.
func FuzzRBACMatch(f *testing.F) {
	for _, s := range []struct{ target, host, value string }{
		{"/admin", "payments", ""},
		{"/public/../admin/x", "Payments:9080", "1"},
		{"//admin//x", "payments", "a,b"},
		{"/public/%2e%2e/%61dmin", "PAYMENTS", ""},
		{`/a\..\admin`, "payments.default", "x"},
		{"/api/v1/payments?next=/admin", "payments:8080", "application/json"},
		{"/admin#frag", "evil", ""},
	} {
		f.Add(s.target, s.host, s.value, []byte(nil))
	}
	d, a := realisticPolicy()
	cfg, _ := proto.Marshal(a)
	f.Add("/api/x", "payments", "", cfg)

	deny, allowF := compile(f, d), compile(f, a)
	noAdmin := compile(f, &rbachttppb.RBAC{Rules: &rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: map[string]*rbacpb.Policy{
		"no-admin": {Permissions: []*rbacpb.Permission{permPath(prefix("/admin"))}, Principals: []*rbacpb.Principal{principalAny()}},
	}}})
	f.Fuzz(func(t *testing.T, target, host, value string, config []byte) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RequestURI, r.Host = target, host
		r.Header["X-Value"] = []string{value}
		r = r.WithContext(peer.NewContext(r.Context(), orders))
		path, rej := normalize.Request(r, normalize.MergeSlashes)
		if rej != nil {
			return
		}
		decide := func(r *http.Request, path string) (bool, *filter.Request) {
			req := filter.NewRequest(r, path)
			req.SetMetadata("envoy.filters.http.jwt_authn", map[string]any{"payload": map[string]any{"iss": "https://issuer.example.com", "sub": value}})
			return deny.Decode(req) == nil && allowF.Decode(req) == nil, req
		}
		allowed, req := decide(r, path)
		if noAdmin.Decode(req) == nil && strings.HasPrefix(path, "/admin") {
			t.Fatalf("target %q (path %q) passed a DENY on /admin", target, path)
		}

		// The same request, spelled in normal form with an upper-case host.
		r2 := httptest.NewRequest("GET", "/", nil)
		r2.RequestURI, r2.Host = r.RequestURI, strings.ToUpper(host)
		r2.Header["X-Value"] = []string{value}
		r2 = r2.WithContext(r.Context())
		path2, rej := normalize.Request(r2, normalize.MergeSlashes)
		if rej != nil || path2 != path {
			t.Fatalf("normal form %q of %q normalizes to %q, %v", r.RequestURI, target, path2, rej)
		}
		if again, _ := decide(r2, path2); again != allowed {
			t.Fatalf("target %q host %q: allowed %v, but %v in normal form", target, host, allowed, again)
		}

		if len(config) > 0 {
			m := new(rbachttppb.RBAC)
			if proto.Unmarshal(config, m) != nil {
				return
			}
			if cf, err := Compile(m); err == nil {
				cf.Decode(req)
			}
		}
	})
}
