package route

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Error is a route configuration error: the field path, in xDS
// RouteConfiguration field names, and the reason.
type Error struct {
	Path   string
	Reason string
}

func (e *Error) Error() string { return e.Path + ": " + e.Reason }

func errorf(path, format string, args ...any) error {
	return &Error{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// Table is a compiled route configuration. It is immutable and safe for
// concurrent use.
type Table struct {
	spec   ConfigSpec
	vhosts []*VirtualHost

	// Lookup structures, all keyed by lower-cased domain text.
	exact    map[string]*VirtualHost
	suffixes wildcards // "*suffix" domains, keyed by suffix
	prefixes wildcards // "prefix*" domains, keyed by prefix
	star     *VirtualHost
}

// wildcards holds wildcard domains grouped by the length of their fixed
// part, so a lookup probes one map per distinct length, longest first,
// instead of scanning every domain.
type wildcards struct {
	lengths []int // distinct fixed-part lengths, descending
	byText  map[string]*VirtualHost
}

func (w *wildcards) add(text string, vh *VirtualHost) {
	if w.byText == nil {
		w.byText = make(map[string]*VirtualHost)
	}
	w.byText[text] = vh
	if !slices.Contains(w.lengths, len(text)) {
		w.lengths = append(w.lengths, len(text))
		slices.SortFunc(w.lengths, func(a, b int) int { return b - a })
	}
}

// Compile validates spec and builds its lookup table and matchers. Errors
// are *Error values naming the offending field.
func Compile(spec ConfigSpec) (*Table, error) {
	t := &Table{spec: spec, exact: make(map[string]*VirtualHost)}
	seen := make(map[string]int) // lower-cased domain -> virtual host index
	for i, vs := range spec.VirtualHosts {
		path := fmt.Sprintf("virtual_hosts[%d]", i)
		vh, err := compileVirtualHost(vs, path)
		if err != nil {
			return nil, err
		}
		if len(vs.Domains) == 0 {
			return nil, errorf(path+".domains", "at least one domain is required")
		}
		for j, d := range vs.Domains {
			dpath := fmt.Sprintf("%s.domains[%d]", path, j)
			ld := strings.ToLower(d)
			if prev, dup := seen[ld]; dup {
				return nil, errorf(dpath, "duplicate domain %q (also in virtual_hosts[%d])", d, prev)
			}
			seen[ld] = i
			switch {
			case ld == "":
				return nil, errorf(dpath, "empty domain")
			case ld == "*":
				t.star = vh
			case strings.Count(ld, "*") > 1:
				return nil, errorf(dpath, "domain %q has more than one wildcard", d)
			case ld[0] == '*':
				t.suffixes.add(ld[1:], vh)
			case ld[len(ld)-1] == '*':
				t.prefixes.add(ld[:len(ld)-1], vh)
			case strings.Contains(ld, "*"):
				return nil, errorf(dpath, "wildcard in %q must be at the start or the end", d)
			default:
				t.exact[ld] = vh
			}
		}
		t.vhosts = append(t.vhosts, vh)
	}
	return t, nil
}

// Name is the route configuration's name.
func (t *Table) Name() string { return t.spec.Name }

// Spec returns the configuration the table was compiled from. The caller
// must not modify it.
func (t *Table) Spec() ConfigSpec { return t.spec }

// VirtualHosts returns the table's virtual hosts in configuration order.
func (t *Table) VirtualHosts() []*VirtualHost { return t.vhosts }

// MarshalJSON prints the table as its spec, for config dumps.
func (t *Table) MarshalJSON() ([]byte, error) { return json.Marshal(t.spec) }

// Lookup returns the virtual host for a request host (the Host header or
// :authority, port included as sent), or nil. Matching is case-insensitive:
// exact domains first, then the longest "*suffix", then the longest
// "prefix*", then "*". A wildcard matches at least one character.
func (t *Table) Lookup(host string) *VirtualHost {
	h := lowerASCII(host)
	if vh, ok := t.exact[h]; ok {
		return vh
	}
	for _, n := range t.suffixes.lengths {
		if n < len(h) {
			if vh, ok := t.suffixes.byText[h[len(h)-n:]]; ok {
				return vh
			}
		}
	}
	for _, n := range t.prefixes.lengths {
		if n < len(h) {
			if vh, ok := t.prefixes.byText[h[:n]]; ok {
				return vh
			}
		}
	}
	return t.star
}

// Clusters calls yield with every cluster name any route of t may pick, for
// consistency checks; names may repeat.
func (t *Table) Clusters(yield func(string)) {
	for _, vh := range t.vhosts {
		for i := range vh.routes {
			a := &vh.routes[i].action
			if len(a.weighted) == 0 {
				yield(a.cluster)
				continue
			}
			for _, w := range a.weighted {
				yield(w.Name)
			}
		}
	}
}

// lowerASCII lower-cases s without allocating when it already is, which is
// the common case for hosts.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// VirtualHost is a compiled virtual host: its routes in match order.
type VirtualHost struct {
	name   string
	routes []Route
}

// Name is the virtual host's name.
func (v *VirtualHost) Name() string { return v.name }

// Routes returns the virtual host's routes in match order.
func (v *VirtualHost) Routes() []Route { return v.routes }

// Match returns the first route whose match holds for req, or nil.
func (v *VirtualHost) Match(req *Request) *Route {
	for i := range v.routes {
		if v.routes[i].matches(req) {
			return &v.routes[i]
		}
	}
	return nil
}

func compileVirtualHost(vs VirtualHostSpec, path string) (*VirtualHost, error) {
	vh := &VirtualHost{name: vs.Name, routes: make([]Route, 0, len(vs.Routes))}
	for j, rs := range vs.Routes {
		r, err := compileRoute(rs, fmt.Sprintf("%s.routes[%d]", path, j))
		if err != nil {
			return nil, err
		}
		vh.routes = append(vh.routes, r)
	}
	return vh, nil
}
