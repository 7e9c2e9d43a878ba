package rbac

import (
	"fmt"
	"github.com/weft-mesh/weft/internal/proxy/strmatch"
	"math"
	"net/netip"
	"net/textproto"
	"regexp"
	"strings"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routepb "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherpb "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/weft-mesh/weft/internal/proxy/filter"
)

// The compile functions turn Envoy's RBAC protos into matcher trees. Each
// checks every field it is given (filter.OnlyFields): what it does not
// know is an error, never a matcher that silently does not match. Errors
// carry the field path below the message they were given.

var errorf, at = filter.Errorf, filter.At

func compilePermission(p *rbacpb.Permission) (matcher, error) {
	if p == nil {
		return nil, errorf("", "required")
	}
	if err := filter.OnlyFields(p, "and_rules", "or_rules", "any", "header", "url_path", "destination_ip",
		"destination_port", "destination_port_range", "metadata", "not_rule", "requested_server_name"); err != nil {
		return nil, err
	}
	switch r := p.GetRule().(type) {
	case *rbacpb.Permission_AndRules:
		m, err := compilePermissionSet(r.AndRules)
		return andMatcher(m), at("and_rules", err)
	case *rbacpb.Permission_OrRules:
		m, err := compilePermissionSet(r.OrRules)
		return orMatcher(m), at("or_rules", err)
	case *rbacpb.Permission_Any:
		if !r.Any {
			return nil, errorf("any", "must be true")
		}
		return anyMatcher{}, nil
	case *rbacpb.Permission_Header:
		m, err := compileHeader(r.Header)
		return m, at("header", err)
	case *rbacpb.Permission_UrlPath:
		m, err := compilePath(r.UrlPath)
		return m, at("url_path", err)
	case *rbacpb.Permission_DestinationIp:
		pfx, err := compileCIDR(r.DestinationIp)
		return destinationIP(pfx), at("destination_ip", err)
	case *rbacpb.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return nil, errorf("destination_port", "%d is not a port", r.DestinationPort)
		}
		return destinationPort(r.DestinationPort), nil
	case *rbacpb.Permission_DestinationPortRange:
		pr := r.DestinationPortRange
		if err := filter.OnlyFields(pr, "start", "end"); err != nil {
			return nil, at("destination_port_range", err)
		}
		if pr.GetStart() > pr.GetEnd() {
			return nil, errorf("destination_port_range", "start %d is after end %d", pr.GetStart(), pr.GetEnd())
		}
		return destinationPortRange{start: int64(pr.GetStart()), end: int64(pr.GetEnd())}, nil
	case *rbacpb.Permission_Metadata:
		//lint:ignore SA1019 Envoy deprecated metadata for sourced_metadata, but Istio and weft's control plane emit it
		m, err := compileMetadata(r.Metadata)
		return m, at("metadata", err)
	case *rbacpb.Permission_NotRule:
		m, err := compilePermission(r.NotRule)
		return notMatcher{m}, at("not_rule", err)
	case *rbacpb.Permission_RequestedServerName:
		sm, err := compileString(r.RequestedServerName)
		return &serverName{sm}, at("requested_server_name", err)
	}
	return nil, errorf("", "want one rule")
}

func compilePermissionSet(s *rbacpb.Permission_Set) ([]matcher, error) {
	if err := filter.OnlyFields(s, "rules"); err != nil {
		return nil, err
	}
	if len(s.GetRules()) == 0 {
		return nil, errorf("rules", "at least one rule is required")
	}
	out := make([]matcher, 0, len(s.GetRules()))
	for i, r := range s.GetRules() {
		m, err := compilePermission(r)
		if err != nil {
			return nil, at(fmt.Sprintf("rules[%d]", i), err)
		}
		out = append(out, m)
	}
	return out, nil
}

func compilePrincipal(p *rbacpb.Principal) (matcher, error) {
	if p == nil {
		return nil, errorf("", "required")
	}
	if err := filter.OnlyFields(p, "and_ids", "or_ids", "any", "authenticated", "source_ip", "direct_remote_ip",
		"remote_ip", "header", "url_path", "metadata", "not_id"); err != nil {
		return nil, err
	}
	switch id := p.GetIdentifier().(type) {
	case *rbacpb.Principal_AndIds:
		m, err := compilePrincipalSet(id.AndIds)
		return andMatcher(m), at("and_ids", err)
	case *rbacpb.Principal_OrIds:
		m, err := compilePrincipalSet(id.OrIds)
		return orMatcher(m), at("or_ids", err)
	case *rbacpb.Principal_Any:
		if !id.Any {
			return nil, errorf("any", "must be true")
		}
		return anyMatcher{}, nil
	case *rbacpb.Principal_Authenticated_:
		a := id.Authenticated
		if err := filter.OnlyFields(a, "principal_name"); err != nil {
			return nil, at("authenticated", err)
		}
		m := &authenticated{}
		if a.GetPrincipalName() != nil {
			sm, err := compileString(a.GetPrincipalName())
			if err != nil {
				return nil, at("authenticated.principal_name", err)
			}
			m.name = &sm
		}
		return m, nil
	case *rbacpb.Principal_SourceIp:
		//lint:ignore SA1019 source_ip is deprecated in Envoy but still emitted by some control planes; it means direct_remote_ip.
		pfx, err := compileCIDR(id.SourceIp)
		return remoteIP(pfx), at("source_ip", err)
	case *rbacpb.Principal_DirectRemoteIp:
		pfx, err := compileCIDR(id.DirectRemoteIp)
		return remoteIP(pfx), at("direct_remote_ip", err)
	case *rbacpb.Principal_RemoteIp:
		pfx, err := compileCIDR(id.RemoteIp)
		return remoteIP(pfx), at("remote_ip", err)
	case *rbacpb.Principal_Header:
		m, err := compileHeader(id.Header)
		return m, at("header", err)
	case *rbacpb.Principal_UrlPath:
		m, err := compilePath(id.UrlPath)
		return m, at("url_path", err)
	case *rbacpb.Principal_Metadata:
		//lint:ignore SA1019 Envoy deprecated metadata for sourced_metadata, but Istio and weft's control plane emit it
		m, err := compileMetadata(id.Metadata)
		return m, at("metadata", err)
	case *rbacpb.Principal_NotId:
		m, err := compilePrincipal(id.NotId)
		return notMatcher{m}, at("not_id", err)
	}
	return nil, errorf("", "want one identifier")
}

func compilePrincipalSet(s *rbacpb.Principal_Set) ([]matcher, error) {
	if err := filter.OnlyFields(s, "ids"); err != nil {
		return nil, err
	}
	if len(s.GetIds()) == 0 {
		return nil, errorf("ids", "at least one identifier is required")
	}
	out := make([]matcher, 0, len(s.GetIds()))
	for i, id := range s.GetIds() {
		m, err := compilePrincipal(id)
		if err != nil {
			return nil, at(fmt.Sprintf("ids[%d]", i), err)
		}
		out = append(out, m)
	}
	return out, nil
}

func compileString(sm *matcherpb.StringMatcher) (stringMatcher, error) {
	if sm == nil {
		return stringMatcher{}, errorf("", "required")
	}
	if err := filter.OnlyFields(sm, "exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"); err != nil {
		return stringMatcher{}, err
	}
	ignoreCase := sm.GetIgnoreCase()
	var kind strmatch.Kind
	var value string
	switch p := sm.GetMatchPattern().(type) {
	case *matcherpb.StringMatcher_Exact:
		kind, value = strmatch.Exact, p.Exact
	case *matcherpb.StringMatcher_Prefix:
		kind, value = strmatch.Prefix, p.Prefix
	case *matcherpb.StringMatcher_Suffix:
		kind, value = strmatch.Suffix, p.Suffix
	case *matcherpb.StringMatcher_Contains:
		kind, value = strmatch.Contains, p.Contains
	case *matcherpb.StringMatcher_SafeRegex:
		re, err := compileRegex(p.SafeRegex)
		if err != nil {
			return stringMatcher{}, at("safe_regex", err)
		}
		if ignoreCase {
			// Envoy ignores ignore_case for regexes; refusing it is clearer
			// than a match that silently is case-sensitive.
			return stringMatcher{}, errorf("ignore_case", "not supported with safe_regex; use (?i) in the regex")
		}
		return strmatch.NewRegex(re), nil
	default:
		return stringMatcher{}, errorf("", "want exact, prefix, suffix, contains or safe_regex")
	}
	if kind != strmatch.Exact && value == "" {
		return stringMatcher{}, errorf("", "empty %s", [...]string{"", "prefix", "suffix", "contains"}[kind])
	}
	return strmatch.New(kind, value, ignoreCase), nil
}

// compileRegex compiles an RE2 expression that must match the whole
// input, which is what Envoy's safe_regex means.
func compileRegex(rm *matcherpb.RegexMatcher) (*regexp.Regexp, error) {
	if err := filter.OnlyFields(rm, "google_re2", "regex"); err != nil {
		return nil, err
	}
	// google_re2 is deprecated; accept it only empty (its one option is a
	// program size limit). Reflection avoids the deprecated getter.
	m := rm.ProtoReflect()
	if fd := m.Descriptor().Fields().ByName("google_re2"); m.Has(fd) {
		if err := filter.OnlyFields(m.Get(fd).Message().Interface()); err != nil {
			return nil, at("google_re2", err)
		}
	}
	if _, err := regexp.Compile(rm.GetRegex()); err != nil {
		return nil, errorf("regex", "invalid RE2 expression: %v", err)
	}
	return regexp.MustCompile(`^(?:` + rm.GetRegex() + `)$`), nil
}

func compileHeader(h *routepb.HeaderMatcher) (*headerMatcher, error) {
	if err := filter.OnlyFields(h, "name", "string_match", "present_match", "invert_match", "treat_missing_header_as_empty"); err != nil {
		return nil, err
	}
	m := &headerMatcher{invert: h.GetInvertMatch(), missingAsEmpty: h.GetTreatMissingHeaderAsEmpty()}
	switch name := strings.ToLower(h.GetName()); name {
	case "":
		return nil, errorf("name", "required")
	case ":method":
		m.source = fromMethod
	case ":authority", "host":
		m.source = fromAuthority // Go keeps Host out of the header map
	case ":path":
		m.source = fromPath
	default:
		if name[0] == ':' {
			return nil, errorf("name", "pseudo-header %q not supported (want :method, :authority or :path)", h.GetName())
		}
		m.key = textproto.CanonicalMIMEHeaderKey(h.GetName())
	}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routepb.HeaderMatcher_StringMatch:
		sm, err := compileString(s.StringMatch)
		if err != nil {
			return nil, at("string_match", err)
		}
		m.str = sm
	case *routepb.HeaderMatcher_PresentMatch:
		present := s.PresentMatch
		m.present = &present
	default:
		present := true // no specifier means "present", as in Envoy
		m.present = &present
	}
	return m, nil
}

func compilePath(p *matcherpb.PathMatcher) (*pathMatcher, error) {
	if err := filter.OnlyFields(p, "path"); err != nil {
		return nil, err
	}
	if p.GetPath() == nil {
		return nil, errorf("path", "required")
	}
	sm, err := compileString(p.GetPath())
	if err != nil {
		return nil, at("path", err)
	}
	return &pathMatcher{sm}, nil
}

func compileCIDR(c *corepb.CidrRange) (netip.Prefix, error) {
	if err := filter.OnlyFields(c, "address_prefix", "prefix_len"); err != nil {
		return netip.Prefix{}, err
	}
	addr, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, errorf("address_prefix", "%q is not an IP address", c.GetAddressPrefix())
	}
	addr = addr.Unmap()
	bits := int(c.GetPrefixLen().GetValue()) // unset is 0, as in Envoy
	if bits > addr.BitLen() {
		return netip.Prefix{}, errorf("prefix_len", "%d is longer than the address", bits)
	}
	return netip.PrefixFrom(addr, bits).Masked(), nil
}

func compileMetadata(mm *matcherpb.MetadataMatcher) (*metadataMatcher, error) {
	if err := filter.OnlyFields(mm, "filter", "path", "value", "invert"); err != nil {
		return nil, err
	}
	if mm.GetFilter() == "" {
		return nil, errorf("filter", "required")
	}
	if len(mm.GetPath()) == 0 {
		return nil, errorf("path", "at least one segment is required")
	}
	m := &metadataMatcher{namespace: mm.GetFilter(), invert: mm.GetInvert()}
	for i, seg := range mm.GetPath() {
		if err := filter.OnlyFields(seg, "key"); err != nil {
			return nil, at(fmt.Sprintf("path[%d]", i), err)
		}
		if seg.GetKey() == "" {
			return nil, errorf(fmt.Sprintf("path[%d].key", i), "required")
		}
		m.path = append(m.path, seg.GetKey())
	}
	v, err := compileValue(mm.GetValue())
	if err != nil {
		return nil, at("value", err)
	}
	m.value = v
	return m, nil
}

func compileValue(vm *matcherpb.ValueMatcher) (valueMatcher, error) {
	if vm == nil {
		return valueMatcher{}, errorf("", "required")
	}
	if err := filter.OnlyFields(vm, "null_match", "double_match", "string_match", "bool_match", "present_match",
		"list_match", "or_match"); err != nil {
		return valueMatcher{}, err
	}
	switch p := vm.GetMatchPattern().(type) {
	case *matcherpb.ValueMatcher_NullMatch_:
		if err := filter.OnlyFields(p.NullMatch); err != nil {
			return valueMatcher{}, at("null_match", err)
		}
		return valueMatcher{kind: vNull}, nil
	case *matcherpb.ValueMatcher_DoubleMatch:
		dm := p.DoubleMatch
		if err := filter.OnlyFields(dm, "range", "exact"); err != nil {
			return valueMatcher{}, at("double_match", err)
		}
		switch d := dm.GetMatchPattern().(type) {
		case *matcherpb.DoubleMatcher_Exact:
			return valueMatcher{kind: vDouble, exact: true, lo: d.Exact}, nil
		case *matcherpb.DoubleMatcher_Range:
			if err := filter.OnlyFields(d.Range, "start", "end"); err != nil {
				return valueMatcher{}, at("double_match.range", err)
			}
			lo, hi := d.Range.GetStart(), d.Range.GetEnd()
			if math.IsNaN(lo) || math.IsNaN(hi) || lo > hi {
				return valueMatcher{}, errorf("double_match.range", "want start <= end")
			}
			return valueMatcher{kind: vDouble, lo: lo, hi: hi}, nil
		}
		return valueMatcher{}, errorf("double_match", "want range or exact")
	case *matcherpb.ValueMatcher_StringMatch:
		sm, err := compileString(p.StringMatch)
		return valueMatcher{kind: vString, str: sm}, at("string_match", err)
	case *matcherpb.ValueMatcher_BoolMatch:
		return valueMatcher{kind: vBool, b: p.BoolMatch}, nil
	case *matcherpb.ValueMatcher_PresentMatch:
		return valueMatcher{kind: vPresent, b: p.PresentMatch}, nil
	case *matcherpb.ValueMatcher_ListMatch:
		lm := p.ListMatch
		if err := filter.OnlyFields(lm, "one_of"); err != nil {
			return valueMatcher{}, at("list_match", err)
		}
		child, err := compileValue(lm.GetOneOf())
		if err != nil {
			return valueMatcher{}, at("list_match.one_of", err)
		}
		return valueMatcher{kind: vList, children: []valueMatcher{child}}, nil
	case *matcherpb.ValueMatcher_OrMatch:
		om := p.OrMatch
		if err := filter.OnlyFields(om, "value_matchers"); err != nil {
			return valueMatcher{}, at("or_match", err)
		}
		if len(om.GetValueMatchers()) < 2 {
			return valueMatcher{}, errorf("or_match.value_matchers", "at least two matchers are required")
		}
		out := valueMatcher{kind: vOr}
		for i, c := range om.GetValueMatchers() {
			child, err := compileValue(c)
			if err != nil {
				return valueMatcher{}, at(fmt.Sprintf("or_match.value_matchers[%d]", i), err)
			}
			out.children = append(out.children, child)
		}
		return out, nil
	}
	return valueMatcher{}, errorf("", "want one match pattern")
}
