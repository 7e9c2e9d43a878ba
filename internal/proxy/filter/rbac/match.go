package rbac

import (
	"github.com/weft-mesh/weft/internal/proxy/strmatch"
	"net/netip"

	"github.com/weft-mesh/weft/internal/proxy/filter"
)

// matcher is one compiled node of a permission or principal tree. Nodes
// are immutable; match reads only the request.
type matcher interface {
	match(req *filter.Request) bool
}

type anyMatcher struct{}

func (anyMatcher) match(*filter.Request) bool { return true }

type andMatcher []matcher

func (m andMatcher) match(req *filter.Request) bool {
	for _, c := range m {
		if !c.match(req) {
			return false
		}
	}
	return true
}

type orMatcher []matcher

func (m orMatcher) match(req *filter.Request) bool {
	for _, c := range m {
		if c.match(req) {
			return true
		}
	}
	return false
}

type notMatcher struct{ m matcher }

func (m notMatcher) match(req *filter.Request) bool { return !m.m.match(req) }

// Kinds of string comparison, Envoy's StringMatcher.
// stringMatcher is a compiled Envoy StringMatcher.
type stringMatcher = strmatch.Matcher

// Where a header matcher reads its value.
const (
	fromHeader = iota
	fromMethod
	fromAuthority
	fromPath // :path, the normalized target with its query
)

// headerMatcher is a compiled route.v3.HeaderMatcher with Envoy's
// semantics: values of a header sent several times are joined with ","; a
// missing header fails every string match, with or without invert, unless
// treat_missing_header_as_empty; present_match compares presence.
type headerMatcher struct {
	source         uint8
	key            string // canonical, for fromHeader
	present        *bool  // present_match, or nil for a string match
	str            stringMatcher
	invert         bool
	missingAsEmpty bool
}

func (m *headerMatcher) lookup(req *filter.Request) (string, bool) {
	r := req.HTTP
	switch m.source {
	case fromMethod:
		return r.Method, true
	case fromAuthority:
		return r.Host, true
	case fromPath:
		return r.RequestURI, true
	}
	return strmatch.HeaderValue(r.Header, m.key)
}

func (m *headerMatcher) match(req *filter.Request) bool {
	v, ok := m.lookup(req)
	if m.present != nil {
		return (ok == *m.present) != m.invert
	}
	if !ok {
		if !m.missingAsEmpty {
			return false
		}
		v = ""
	}
	return m.str.Match(v) != m.invert
}

// pathMatcher is url_path: the normalized path, without the query.
type pathMatcher struct{ str stringMatcher }

func (m *pathMatcher) match(req *filter.Request) bool { return m.str.Match(req.Path) }

type destinationPort uint32

func (m destinationPort) match(req *filter.Request) bool {
	return uint32(req.Peer().LocalPort) == uint32(m)
}

// destinationPortRange is [start, end), as Envoy's Int32Range.
type destinationPortRange struct{ start, end int64 }

func (m destinationPortRange) match(req *filter.Request) bool {
	p := int64(req.Peer().LocalPort)
	return m.start <= p && p < m.end
}

type destinationIP netip.Prefix

func (m destinationIP) match(req *filter.Request) bool {
	ap, ok := req.LocalAddr()
	return ok && netip.Prefix(m).Contains(ap.Addr().Unmap())
}

// remoteIP matches the downstream connection's address. weft trusts no
// x-forwarded-for hop, so remote_ip and direct_remote_ip (and the
// deprecated source_ip) are the same address, as in Envoy with
// xff_num_trusted_hops 0.
type remoteIP netip.Prefix

func (m remoteIP) match(req *filter.Request) bool {
	a := req.Peer().RemoteAddr.Addr()
	return a.IsValid() && netip.Prefix(m).Contains(a.Unmap())
}

type serverName struct{ str stringMatcher }

func (m *serverName) match(req *filter.Request) bool { return m.str.Match(req.Peer().SNI) }

// authenticated matches an mTLS peer with a verified certificate, by its
// principal name: the URI SAN, its SPIFFE ID. Without principal_name it
// matches any authenticated peer.
type authenticated struct{ name *stringMatcher }

func (m *authenticated) match(req *filter.Request) bool {
	p := req.Peer()
	if !p.TLS {
		return false
	}
	return m.name == nil || m.name.Match(p.SpiffeID)
}

// metadataMatcher matches a value in the dynamic metadata an earlier
// filter recorded (jwt_authn's payload), walking path through nested
// objects. A missing value matches only when inverted.
type metadataMatcher struct {
	namespace string
	path      []string
	value     valueMatcher
	invert    bool
}

func (m *metadataMatcher) match(req *filter.Request) bool {
	var v any
	found := false
	if md := req.Metadata(m.namespace); md != nil {
		v, found = md, true
		for _, k := range m.path {
			obj, ok := v.(map[string]any)
			if !ok {
				found = false
				break
			}
			if v, found = obj[k]; !found {
				break
			}
		}
	}
	return m.value.matches(v, found) != m.invert
}

// Kinds of value comparison, Envoy's ValueMatcher.
const (
	vNull = iota
	vDouble
	vString
	vBool
	vPresent
	vList
	vOr
)

// valueMatcher is a compiled Envoy ValueMatcher over JSON-like values
// (nil, float64, string, bool, []any, map[string]any).
type valueMatcher struct {
	kind     uint8
	str      stringMatcher
	b        bool    // bool_match, present_match
	exact    bool    // double: exact rather than range
	lo, hi   float64 // double: exact value in lo, or [lo, hi)
	children []valueMatcher
}

func (m *valueMatcher) matches(v any, found bool) bool {
	if !found {
		return false // Envoy: an absent value matches no pattern
	}
	switch m.kind {
	case vNull:
		return v == nil
	case vDouble:
		f, ok := v.(float64)
		if !ok {
			return false
		}
		if m.exact {
			return f == m.lo
		}
		return m.lo <= f && f < m.hi
	case vString:
		s, ok := v.(string)
		return ok && m.str.Match(s)
	case vBool:
		b, ok := v.(bool)
		return ok && b == m.b
	case vPresent:
		return m.b // found, and present_match false matches nothing, as in Envoy
	case vList:
		l, ok := v.([]any)
		if !ok {
			return false
		}
		for _, e := range l {
			if m.children[0].matches(e, true) {
				return true
			}
		}
		return false
	}
	for i := range m.children { // vOr
		if m.children[i].matches(v, true) {
			return true
		}
	}
	return false
}
