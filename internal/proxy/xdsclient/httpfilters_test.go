package xdsclient

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	jwtpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-mesh/weft/internal/proxy/filter"
	"github.com/weft-mesh/weft/internal/proxy/internal/xdstest"
	"github.com/weft-mesh/weft/internal/proxy/normalize"
)

const hcmInboundPath = "listener inbound: filter_chains[0].filters[0].typed_config."

func anyPolicy() *rbacpb.Policy {
	return &rbacpb.Policy{
		Permissions: []*rbacpb.Permission{{Rule: &rbacpb.Permission_Any{Any: true}}},
		Principals:  []*rbacpb.Principal{{Identifier: &rbacpb.Principal_Any{Any: true}}},
	}
}

func rbacOf(action rbacpb.RBAC_Action) *hcmpb.HttpFilter {
	return xdstest.RBACFilter(&rbacpb.RBAC{Action: action, Policies: map[string]*rbacpb.Policy{"p": anyPolicy()}})
}

// decodeInbound decodes the listeners with the inbound HCM mutated and
// returns the inbound listener's chain.
func decodeInbound(t *testing.T, mutate func(*hcmpb.HttpConnectionManager)) (*filter.Chain, error) {
	t.Helper()
	h := xdstest.HCM("inbound")
	mutate(h)
	res, err := decode(TypeListener, anys(xdstest.Listeners()[0], xdstest.Listener("inbound", "127.0.0.1:15006", h)))
	if err != nil {
		return nil, err
	}
	return res.(map[string]*Listener)["inbound"].HTTPFilters, nil
}

func TestDecodeHTTPFilters(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(*hcmpb.HttpConnectionManager)
		wantNames []string
		wantNorm  normalize.Options
		wantErr   string
	}{
		{"only the router: no filters, BASE normalization", func(*hcmpb.HttpConnectionManager) {}, nil, normalize.Base, ""},
		{"jwt_authn and the three RBAC filters run in order", func(h *hcmpb.HttpConnectionManager) {
			xdstest.WithFilters(h, xdstest.JWTFilter(jwtConfig()), rbacOf(rbacpb.RBAC_LOG), rbacOf(rbacpb.RBAC_DENY), rbacOf(rbacpb.RBAC_ALLOW))
		}, []string{"envoy.filters.http.jwt_authn", "envoy.filters.http.rbac", "envoy.filters.http.rbac", "envoy.filters.http.rbac"}, normalize.Base, ""},
		{"an unknown optional filter between them is skipped", func(h *hcmpb.HttpConnectionManager) {
			xdstest.WithFilters(h, rbacOf(rbacpb.RBAC_DENY), faultFilter(true))
		}, []string{"envoy.filters.http.rbac"}, normalize.Base, ""},
		{"RBAC before jwt_authn is refused: it would not see the claims", func(h *hcmpb.HttpConnectionManager) {
			xdstest.WithFilters(h, rbacOf(rbacpb.RBAC_DENY), xdstest.JWTFilter(jwtConfig()))
		}, nil, normalize.Options{},
			hcmInboundPath + `http_filters[1]: filter "envoy.filters.http.jwt_authn" must come before "envoy.filters.http.rbac": weft runs jwt_authn, then rbac, then the router`},
		{"an RBAC config the proxy cannot enforce is NACKed with its full path", func(h *hcmpb.HttpConnectionManager) {
			p := anyPolicy()
			p.Principals = nil
			xdstest.WithFilters(h, xdstest.RBACFilter(&rbacpb.RBAC{Action: rbacpb.RBAC_DENY, Policies: map[string]*rbacpb.Policy{"deny-admin": p}}))
		}, nil, normalize.Options{},
			hcmInboundPath + `http_filters[0].typed_config.rules.policies["deny-admin"].principals: at least one principal is required`},
		{"a disabled filter is refused (no per-route config to enable it)", func(h *hcmpb.HttpConnectionManager) {
			f := rbacOf(rbacpb.RBAC_DENY)
			f.Disabled = true
			xdstest.WithFilters(h, f)
		}, nil, normalize.Options{}, hcmInboundPath + "http_filters[0].disabled: not supported"},
		{"MERGE_SLASHES", func(h *hcmpb.HttpConnectionManager) { xdstest.WithNormalization(h, xdstest.NormalizeMergeSlashes) },
			nil, normalize.MergeSlashes, ""},
		{"DECODE_AND_MERGE_SLASHES", func(h *hcmpb.HttpConnectionManager) {
			xdstest.WithNormalization(h, xdstest.NormalizeDecodeAndMergeSlashes)
		},
			nil, normalize.DecodeAndMergeSlashes, ""},
		{"REJECT_REQUEST for escaped slashes", func(h *hcmpb.HttpConnectionManager) {
			h.PathWithEscapedSlashesAction = hcmpb.HttpConnectionManager_REJECT_REQUEST
		}, nil, normalize.Options{EscapedSlashes: normalize.RejectEscapedSlashes}, ""},
		{"normalize_path false is refused", func(h *hcmpb.HttpConnectionManager) { h.NormalizePath = wrapperspb.Bool(false) },
			nil, normalize.Options{}, hcmInboundPath + "normalize_path: false not supported: weft always normalizes paths before routing and policy"},
		{"UNESCAPE_AND_REDIRECT is refused", func(h *hcmpb.HttpConnectionManager) {
			h.PathWithEscapedSlashesAction = hcmpb.HttpConnectionManager_UNESCAPE_AND_REDIRECT
		}, nil, normalize.Options{},
			hcmInboundPath + "path_with_escaped_slashes_action: UNESCAPE_AND_REDIRECT not supported, want KEEP_UNCHANGED, UNESCAPE_AND_FORWARD or REJECT_REQUEST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decodeInbound(t, tt.mutate)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v\nwant  %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range c.Filters() {
				names = append(names, f.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.wantNames, ",") {
				t.Errorf("filters %v, want %v", names, tt.wantNames)
			}
			b, _ := json.Marshal(c)
			want, _ := json.Marshal(tt.wantNorm)
			if !strings.Contains(string(b), `"normalize":`+string(want)) {
				t.Errorf("chain %s, want normalization %s", b, want)
			}
		})
	}
}

// TestAuthzGoldensAreAccepted decodes every HTTP filter list the control
// plane's authorization translation produces (internal/translate's
// goldens) in an inbound connection manager: the proxy must accept and
// compile all of them. It is the filter half of the contract in
// docs/xds.md, checked from both sides.
func TestAuthzGoldensAreAccepted(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(translateGoldens, "authz", "*.golden.json"))
	if len(files) == 0 {
		t.Skip("no authz goldens found")
	}
	for _, f := range files {
		t.Run(strings.ReplaceAll(strings.TrimSuffix(filepath.Base(f), ".golden.json"), "_", " "), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var list []json.RawMessage
			if err := json.Unmarshal(raw, &list); err != nil {
				t.Fatal(err)
			}
			var filters []*hcmpb.HttpFilter
			for _, r := range list {
				hf := new(hcmpb.HttpFilter)
				if err := protojson.Unmarshal(r, hf); err != nil {
					t.Fatal(err)
				}
				filters = append(filters, hf)
			}
			c, err := decodeInbound(t, func(h *hcmpb.HttpConnectionManager) { xdstest.WithFilters(h, filters...) })
			if err != nil {
				t.Fatalf("NACK: %v", err)
			}
			if got := len(c.Filters()); got != len(filters) {
				t.Errorf("%d filters compiled, want %d", got, len(filters))
			}
		})
	}
}

// testJWKS is one P-256 public key.
const testJWKS = `{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"k1",` +
	`"x":"YnGQKxeF1BPxB0Jv7Ths14HDzTqq52CWGty2VNU33Rc","y":"xTBGHGEUq5iUXje4bqK1CGbas3ZsHLmZT1g0cBUfpWI"}]}`

func jwtConfig() *jwtpb.JwtAuthentication {
	return &jwtpb.JwtAuthentication{
		Providers: map[string]*jwtpb.JwtProvider{"origins-0": {
			Issuer: "https://issuer.example.com",
			JwksSourceSpecifier: &jwtpb.JwtProvider_LocalJwks{LocalJwks: &corepb.DataSource{
				Specifier: &corepb.DataSource_InlineString{InlineString: testJWKS}}},
			PayloadInMetadata: "payload",
		}},
		Rules: []*jwtpb.RequirementRule{{
			Match: &routepb.RouteMatch{PathSpecifier: &routepb.RouteMatch_Prefix{Prefix: "/"}},
			RequirementType: &jwtpb.RequirementRule_Requires{Requires: &jwtpb.JwtRequirement{
				RequiresType: &jwtpb.JwtRequirement_ProviderName{ProviderName: "origins-0"}}},
		}},
	}
}
