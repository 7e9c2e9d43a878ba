// Package strmatch is Envoy's StringMatcher, compiled once and evaluated on
// the request path without allocating. Route header matchers and RBAC
// policies share it, so both read a header value the same way.
package strmatch

import (
	"net/http"
	"regexp"
	"strings"
)

// Kind is how a Matcher compares.
type Kind uint8

// The kinds of Envoy's StringMatcher.
const (
	Exact Kind = iota
	Prefix
	Suffix
	Contains
	Regex
)

// Matcher is one compiled StringMatcher. The zero value matches exactly "".
type Matcher struct {
	kind       Kind
	ignoreCase bool
	value      string // lower-cased for a case-insensitive Contains
	re         *regexp.Regexp
}

// New returns a matcher of kind Exact, Prefix, Suffix or Contains.
func New(kind Kind, value string, ignoreCase bool) Matcher {
	if kind == Contains && ignoreCase {
		value = strings.ToLower(value)
	}
	return Matcher{kind: kind, value: value, ignoreCase: ignoreCase}
}

// NewRegex returns a matcher for re, which must already be anchored as the
// caller wants (Envoy's safe_regex matches the whole value).
func NewRegex(re *regexp.Regexp) Matcher {
	return Matcher{kind: Regex, re: re}
}

// Kind says how m compares.
func (m *Matcher) Kind() Kind { return m.kind }

// Value is the string m compares with (empty for a regex).
func (m *Matcher) Value() string { return m.value }

// Match reports whether v matches.
func (m *Matcher) Match(v string) bool {
	switch m.kind {
	case Exact:
		if m.ignoreCase {
			return strings.EqualFold(v, m.value)
		}
		return v == m.value
	case Prefix:
		if m.ignoreCase {
			return len(v) >= len(m.value) && strings.EqualFold(v[:len(m.value)], m.value)
		}
		return strings.HasPrefix(v, m.value)
	case Suffix:
		if m.ignoreCase {
			return len(v) >= len(m.value) && strings.EqualFold(v[len(v)-len(m.value):], m.value)
		}
		return strings.HasSuffix(v, m.value)
	case Contains:
		if m.ignoreCase {
			return containsFold(v, m.value)
		}
		return strings.Contains(v, m.value)
	}
	return m.re.MatchString(v)
}

// containsFold reports whether lower (already lower-cased) occurs in s,
// ignoring ASCII case, without allocating.
func containsFold(s, lower string) bool {
	n := len(lower)
	for i := 0; i+n <= len(s); i++ {
		if strings.EqualFold(s[i:i+n], lower) {
			return true
		}
	}
	return false
}

// HeaderValue is the value Envoy's header matchers compare: the header's
// values joined with ",", and found false when the header is absent. key
// must be in canonical form.
func HeaderValue(h http.Header, key string) (string, bool) {
	switch vs := h[key]; len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	default:
		return strings.Join(vs, ","), true
	}
}
