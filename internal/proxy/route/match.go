package route

import (
	"fmt"
	"github.com/weft-mesh/weft/internal/proxy/strmatch"
	"net/http"
	"net/textproto"
	"regexp"
	"strings"
)

// Request is the view of an HTTP request that matchers read. Build it once
// per request with NewRequest and pass it by pointer.
type Request struct {
	Method string
	// Host is the Host header or :authority, as sent.
	Host string
	// Path is the raw (percent-encoded) path without the query string.
	Path string
	// PathQuery is the raw path with the query string, what ":path" matches.
	PathQuery string
	Header    http.Header
}

// NewRequest builds the matcher view of r. For origin-form requests (and
// HTTP/2's :path) it slices r.RequestURI, so it allocates nothing;
// absolute-form requests ("GET http://reviews/x") and client-built requests
// fall back to r.URL.
func NewRequest(r *http.Request) Request {
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' {
		uri = r.URL.RequestURI()
	}
	path := uri
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		path = uri[:i]
	}
	return Request{Method: r.Method, Host: r.Host, Path: path, PathQuery: uri, Header: r.Header}
}

// Route is a compiled route: precompiled matchers and the action.
type Route struct {
	name    string
	path    pathMatcher
	headers []headerMatcher
	action  Action
}

// Name is the route's name, for logs.
func (r *Route) Name() string { return r.name }

// Action is what the route does with a matching request.
func (r *Route) Action() *Action { return &r.action }

func (r *Route) matches(req *Request) bool {
	if !r.path.match(req.Path) {
		return false
	}
	for i := range r.headers {
		if !r.headers[i].match(req) {
			return false
		}
	}
	return true
}

func compileRoute(rs RouteSpec, path string) (Route, error) {
	r := Route{name: rs.Name}
	pm, err := compilePath(rs.Match, path+".match")
	if err != nil {
		return Route{}, err
	}
	r.path = pm
	for k, hs := range rs.Match.Headers {
		hm, err := compileHeader(hs, fmt.Sprintf("%s.match.headers[%d]", path, k))
		if err != nil {
			return Route{}, err
		}
		r.headers = append(r.headers, hm)
	}
	a, err := compileAction(rs.Action, path+".route")
	if err != nil {
		return Route{}, err
	}
	r.action = a
	return r, nil
}

// Matcher kinds as small integers: the route walk switches on them for
// every route, and an integer compare beats a string compare.
const (
	kPrefix = iota
	kExact
	kRegex
)

type pathMatcher struct {
	kind          uint8
	value         string
	caseSensitive bool
	re            *regexp.Regexp
}

func compilePath(m MatchSpec, path string) (pathMatcher, error) {
	pm := pathMatcher{value: m.Path, caseSensitive: m.CaseSensitive}
	switch m.PathKind {
	case PathPrefix:
		pm.kind = kPrefix
	case PathExact:
		pm.kind = kExact
	case PathRegex:
		pm.kind = kRegex
		re, err := compileWhole(m.Path)
		if err != nil {
			return pathMatcher{}, errorf(path+".safe_regex.regex", "invalid RE2 expression: %v", err)
		}
		pm.re = re
	default:
		return pathMatcher{}, errorf(path, "want prefix, path or safe_regex")
	}
	return pm, nil
}

func (m *pathMatcher) match(p string) bool {
	switch m.kind {
	case kPrefix:
		if m.caseSensitive {
			return strings.HasPrefix(p, m.value)
		}
		return len(p) >= len(m.value) && strings.EqualFold(p[:len(m.value)], m.value)
	case kExact:
		if m.caseSensitive {
			return p == m.value
		}
		return strings.EqualFold(p, m.value)
	default:
		return m.re.MatchString(p)
	}
}

// Where a header matcher reads its value from.
const (
	fromHeader = iota
	fromMethod
	fromAuthority
	fromPath
)

type headerMatcher struct {
	source  int
	key     string // canonical header key, for fromHeader
	kind    StringKind
	str     strmatch.Matcher // unless kind is StringPresent
	present bool
	invert  bool
}

func compileHeader(hs HeaderMatchSpec, path string) (headerMatcher, error) {
	hm := headerMatcher{kind: hs.Kind, present: hs.Present, invert: hs.Invert}
	switch name := strings.ToLower(hs.Name); name {
	case "":
		return headerMatcher{}, errorf(path+".name", "required")
	case ":method":
		hm.source = fromMethod
	case ":authority", "host":
		// Go keeps Host out of the header map, so "host" reads r.Host too.
		hm.source = fromAuthority
	case ":path":
		hm.source = fromPath
	default:
		if name[0] == ':' {
			return headerMatcher{}, errorf(path+".name", "pseudo-header %q not supported (want :method, :authority or :path)", hs.Name)
		}
		hm.source = fromHeader
		hm.key = textproto.CanonicalMIMEHeaderKey(hs.Name)
	}
	switch hs.Kind {
	case StringExact, StringPrefix, StringSuffix, StringContains:
		hm.str = strmatch.New(stringKinds[hs.Kind], hs.Value, hs.IgnoreCase)
	case StringRegex:
		re, err := compileWhole(hs.Value)
		if err != nil {
			return headerMatcher{}, errorf(path+".string_match.safe_regex.regex", "invalid RE2 expression: %v", err)
		}
		hm.str = strmatch.NewRegex(re)
	case StringPresent:
	default:
		return headerMatcher{}, errorf(path, "unknown match kind %q", hs.Kind)
	}
	return hm, nil
}

func (m *headerMatcher) lookup(req *Request) (string, bool) {
	switch m.source {
	case fromMethod:
		return req.Method, true
	case fromAuthority:
		return req.Host, true
	case fromPath:
		return req.PathQuery, true
	}
	return strmatch.HeaderValue(req.Header, m.key)
}

func (m *headerMatcher) match(req *Request) bool {
	v, ok := m.lookup(req)
	if m.kind == StringPresent {
		return (ok == m.present) != m.invert
	}
	if !ok {
		return false
	}
	return m.str.Match(v) != m.invert
}

// stringKinds maps the route spec's kinds to the shared matcher's.
var stringKinds = map[StringKind]strmatch.Kind{
	StringExact:    strmatch.Exact,
	StringPrefix:   strmatch.Prefix,
	StringSuffix:   strmatch.Suffix,
	StringContains: strmatch.Contains,
}

// compileWhole compiles an RE2 expression that must match the whole input,
// which is what Envoy's safe_regex means.
func compileWhole(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err // report the error against the user's text, not ours
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}
