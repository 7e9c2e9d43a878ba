package xdsclient

import (
	"fmt"

	routerpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weft-mesh/weft/internal/proxy/filter"
	// The HTTP filters weft implements register themselves by type URL.
	_ "github.com/weft-mesh/weft/internal/proxy/filter/jwtauthn"
	_ "github.com/weft-mesh/weft/internal/proxy/filter/rbac"
	"github.com/weft-mesh/weft/internal/proxy/normalize"
)

// httpFilterFields are the HttpConnectionManager fields decodeHTTPFilters
// decodes: the HTTP filters and the path normalization.
var httpFilterFields = []protoreflect.Name{"http_filters", "normalize_path", "merge_slashes", "path_with_escaped_slashes_action"}

// decodeHTTPFilters decodes an HCM's http_filters and path normalization
// into out.HTTPFilters, the listener's compiled filter chain. Each filter is
// built by the builder registered for its typed_config's type URL
// (internal/proxy/filter), which compiles all its matchers now; filters
// must come in the order filter.Rank gives, the router last. An unknown
// filter is NACKed unless is_optional (then skipped, as Envoy skips
// optional filters it does not have). Errors carry field paths from the
// HCM's root.
func decodeHTTPFilters(h *hcmpb.HttpConnectionManager, out *Listener) error {
	norm, err := decodeNormalization(h)
	if err != nil {
		return err
	}
	filters, err := decodeFilterList(h.GetHttpFilters())
	if err != nil {
		return at("http_filters", err)
	}
	out.HTTPFilters = filter.NewChain(filter.ChainConfig{Normalize: norm, Filters: filters})
	return nil
}

// decodeNormalization reads normalize_path, merge_slashes and
// path_with_escaped_slashes_action. weft always normalizes paths (RFC 3986
// dot segments, unreserved escapes), so normalize_path may be unset or
// true, never false.
func decodeNormalization(h *hcmpb.HttpConnectionManager) (normalize.Options, error) {
	var o normalize.Options
	if np := h.GetNormalizePath(); np != nil && !np.GetValue() {
		return o, fail("normalize_path", "false not supported: weft always normalizes paths before routing and policy")
	}
	o.MergeSlashes = h.GetMergeSlashes()
	switch a := h.GetPathWithEscapedSlashesAction(); a {
	case hcmpb.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmpb.HttpConnectionManager_KEEP_UNCHANGED:
		o.EscapedSlashes = normalize.KeepEscapedSlashes
	case hcmpb.HttpConnectionManager_UNESCAPE_AND_FORWARD:
		o.EscapedSlashes = normalize.UnescapeSlashes
	case hcmpb.HttpConnectionManager_REJECT_REQUEST:
		o.EscapedSlashes = normalize.RejectEscapedSlashes
	default:
		return o, fail("path_with_escaped_slashes_action", "%s not supported, want KEEP_UNCHANGED, UNESCAPE_AND_FORWARD or REJECT_REQUEST", a)
	}
	return o, nil
}

// decodeFilterList builds the filters before the router.
func decodeFilterList(fs []*hcmpb.HttpFilter) ([]filter.Named, error) {
	var out []filter.Named
	last := -1 // rank of the previous filter
	for i, f := range fs {
		p := fmt.Sprintf("[%d]", i)
		url := f.GetTypedConfig().GetTypeUrl()
		if isRouter(f) {
			if i != len(fs)-1 {
				return nil, fail(p, "envoy.filters.http.router must be the last filter")
			}
			if err := onlyFields(f, "name", "typed_config", "is_optional"); err != nil {
				return nil, at(p, err)
			}
			if tc := f.GetTypedConfig(); tc != nil {
				r := new(routerpb.Router)
				if err := unmarshalAny(tc, routerURL, r); err != nil {
					return nil, at(p+".typed_config", err)
				}
				if err := onlyFields(r); err != nil {
					return nil, at(p+".typed_config", err)
				}
			}
			return out, nil
		}
		build, known := filter.Lookup(url)
		if !known {
			if f.GetIsOptional() {
				continue
			}
			return nil, fail(p, "filter %q (%s) not supported; want %s, or is_optional", f.GetName(), url, supportedFilters)
		}
		// disabled (enabled per route) and config_discovery are refused.
		if err := onlyFields(f, "name", "typed_config", "is_optional"); err != nil {
			return nil, at(p, err)
		}
		rank := filter.Rank(url)
		if rank < last {
			return nil, fail(p, "filter %q must come before %q: weft runs jwt_authn, then rbac, then the router", f.GetName(), out[len(out)-1].Name)
		}
		last = rank
		built, err := build(f.GetTypedConfig())
		if err != nil {
			return nil, at(p+".typed_config", filterError(err))
		}
		out = append(out, filter.Named{Name: f.GetName(), TypeURL: url, Filter: built})
	}
	return nil, fail("", "want envoy.filters.http.router as the last filter")
}

const supportedFilters = "envoy.filters.http.jwt_authn, envoy.filters.http.rbac and envoy.filters.http.router"

// filterError turns a builder's *filter.ConfigError into this package's
// field error, so its path joins the HCM's.
func filterError(err error) error {
	if ce, ok := err.(*filter.ConfigError); ok {
		return fail(ce.Path, "%s", ce.Reason)
	}
	return err
}

func isRouter(f *hcmpb.HttpFilter) bool {
	if tc := f.GetTypedConfig(); tc != nil {
		return tc.GetTypeUrl() == routerURL
	}
	return f.GetName() == "envoy.filters.http.router" && f.GetConfigType() == nil
}
