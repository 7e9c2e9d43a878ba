package config

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

// Validate checks a resource against the rules weft shares with Istio's own
// validation, beyond what the schema says:
//
//   - a VirtualService has at least one host, and no empty one;
//   - every route destination (http, tcp, tls) names a host;
//   - the weights of a route with several destinations sum to 100, and a
//     single destination's weight is 0 or 100; no weight is negative;
//   - every http route does something: route, redirect, directResponse or
//     delegate;
//   - every regex in a StringMatch (uri, scheme, method, authority, headers,
//     queryParams, withoutHeaders, corsPolicy.allowOrigins) compiles as
//     RE2, the syntax Envoy and weft-proxy both use;
//   - timeouts are not negative, and ports are at most 65535;
//   - a DestinationRule has a host, and its subsets have distinct names;
//   - a PeerAuthentication's portLevelMtls has a selector and real ports;
//   - an AuthorizationPolicy uses only what weft-proxy enforces (no CUSTOM
//     action, no targetRef, only the supported `when` keys), in Istio's
//     value forms (exact, "prefix*", "*suffix", "*"), with valid IPs,
//     CIDRs and ports;
//   - a RequestAuthentication's rules have an issuer and one source of
//     keys: a JWK Set that parses, or an http(s) jwksUri.
//
// Validate reports every problem it finds, as Errors sorted by field path.
// Parse calls it for each resource; Decode does not, so that a rule added
// later cannot make stored resources unreadable.
func Validate(r *Resource) error {
	if errs := validate(r); len(errs) > 0 {
		return errs
	}
	return nil
}

func validate(r *Resource) Errors {
	el := &errorList{resource: r.String()}
	want := newSpec(r.Kind)
	switch {
	case want == nil:
		el.add("kind", "unknown kind %q, want one of %s", r.Kind, kindList())
		return el.errs
	case r.Spec == nil || !r.Spec.ProtoReflect().IsValid():
		el.add("spec", "required")
		return el.errs
	case proto.MessageName(r.Spec) != proto.MessageName(want):
		el.add("spec", "want a %s, got a %s", proto.MessageName(want), proto.MessageName(r.Spec))
		return el.errs
	}
	checkAnnotations(el, r)
	rangeMessages(r.Spec.ProtoReflect(), "spec", func(m protoreflect.Message, path string) {
		switch x := m.Interface().(type) {
		case *networking.VirtualService:
			checkHosts(el, x.GetHosts(), path+".hosts")
		case *networking.HTTPRoute:
			checkHTTPRoute(el, x, path)
		case *networking.TCPRoute:
			checkWeights(el, path+".route", weightsOf(x.GetRoute()))
		case *networking.TLSRoute:
			checkWeights(el, path+".route", weightsOf(x.GetRoute()))
		case *networking.HTTPRouteDestination:
			if x.GetDestination() == nil {
				el.add(path+".destination", "required")
			}
		case *networking.RouteDestination:
			if x.GetDestination() == nil {
				el.add(path+".destination", "required")
			}
		case *networking.Destination:
			if strings.TrimSpace(x.GetHost()) == "" {
				el.add(path+".host", "required")
			} else {
				checkHostChars(el, x.GetHost(), path+".host")
			}
		case *networking.PortSelector:
			if x.GetNumber() > 65535 {
				el.add(path+".number", "invalid port %d, want 1 to 65535", x.GetNumber())
			}
		case *networking.StringMatch:
			if re, ok := x.GetMatchType().(*networking.StringMatch_Regex); ok {
				if _, err := regexp.Compile(re.Regex); err != nil {
					el.add(path+".regex", "%s", regexError(err))
				}
			}
		case *networking.DestinationRule:
			checkDestinationRule(el, x, path)
		case *security.PeerAuthentication:
			checkPeerAuthentication(el, x, path)
		case *security.AuthorizationPolicy:
			checkAuthorizationPolicy(el, x, path)
		case *security.RequestAuthentication:
			checkRequestAuthentication(el, x, path)
		}
	})
	slices.SortStableFunc(el.errs, func(a, b FieldError) int { return comparePaths(a.Path, b.Path) })
	return el.errs
}

func checkHosts(el *errorList, hosts []string, path string) {
	if len(hosts) == 0 {
		el.add(path, "required")
	}
	for i, h := range hosts {
		if strings.TrimSpace(h) == "" {
			el.add(fmt.Sprintf("%s[%d]", path, i), "empty host")
		} else {
			checkHostChars(el, h, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// checkHostChars refuses hosts with spaces or control characters: no DNS
// name has them, and they would not survive the YAML and xDS round trips.
func checkHostChars(el *errorList, host, path string) {
	for _, c := range host {
		if c <= ' ' || c == 0x7f {
			el.add(path, "invalid host %q: spaces and control characters are not allowed", host)
			return
		}
	}
}

func checkHTTPRoute(el *errorList, x *networking.HTTPRoute, path string) {
	if len(x.GetRoute()) == 0 && x.GetRedirect() == nil && x.GetDirectResponse() == nil && x.GetDelegate() == nil {
		el.add(path, "nothing to do: want one of route, redirect, directResponse, delegate")
	}
	checkWeights(el, path+".route", weightsOf(x.GetRoute()))
	if x.GetTimeout() != nil && x.GetTimeout().AsDuration() < 0 {
		el.add(path+".timeout", "must not be negative")
	}
}

// weighted is what HTTPRouteDestination and RouteDestination share.
type weighted interface{ GetWeight() int32 }

func weightsOf[T weighted](dests []T) []int32 {
	ws := make([]int32, len(dests))
	for i, d := range dests {
		ws[i] = d.GetWeight()
	}
	return ws
}

// checkWeights applies Istio's weight rules. The sum error names the last
// weight, where an operator adding up the column finds the total.
func checkWeights(el *errorList, path string, weights []int32) {
	var sum int64
	negative := false
	for i, w := range weights {
		if w < 0 {
			el.add(fmt.Sprintf("%s[%d].weight", path, i), "must not be negative, got %d", w)
			negative = true
		}
		sum += int64(w)
	}
	switch {
	case negative || len(weights) == 0:
	case len(weights) == 1:
		// One destination takes all the traffic whatever its weight says;
		// anything but "unset" or 100 suggests a destination is missing.
		if w := weights[0]; w != 0 && w != 100 {
			el.add(path+"[0].weight", "the only destination has weight %d, want 0 or 100", w)
		}
	case sum != 100:
		el.add(fmt.Sprintf("%s[%d].weight", path, len(weights)-1), "weights sum to %d, want 100", sum)
	}
}

// checkClientTLS allows the TLS settings sidecars enforce: mode DISABLE or
// ISTIO_MUTUAL. Anything else would fail translation for every proxy, so
// it is refused here, where the operator sees it.
func checkClientTLS(el *errorList, tls *networking.ClientTLSSettings, path string) {
	if tls == nil {
		return
	}
	switch tls.GetMode() {
	case networking.ClientTLSSettings_DISABLE, networking.ClientTLSSettings_ISTIO_MUTUAL:
	default:
		el.add(path+".mode", "mode %s is not supported yet: want ISTIO_MUTUAL or DISABLE", tls.GetMode())
	}
	only := &networking.ClientTLSSettings{Mode: tls.GetMode()}
	if !proto.Equal(only, tls) {
		el.add(path, "only mode is supported; certificates, SNI and SAN settings are not")
	}
}

func checkTrafficPolicyTLS(el *errorList, tp *networking.TrafficPolicy, path string) {
	if tp == nil {
		return
	}
	checkClientTLS(el, tp.GetTls(), path+".tls")
	for i, pl := range tp.GetPortLevelSettings() {
		checkClientTLS(el, pl.GetTls(), fmt.Sprintf("%s.portLevelSettings[%d].tls", path, i))
	}
}

func checkDestinationRule(el *errorList, x *networking.DestinationRule, path string) {
	checkTrafficPolicyTLS(el, x.GetTrafficPolicy(), path+".trafficPolicy")
	for i, sub := range x.GetSubsets() {
		checkTrafficPolicyTLS(el, sub.GetTrafficPolicy(), fmt.Sprintf("%s.subsets[%d].trafficPolicy", path, i))
	}
	if strings.TrimSpace(x.GetHost()) == "" {
		el.add(path+".host", "required")
	} else {
		checkHostChars(el, x.GetHost(), path+".host")
	}
	first := map[string]int{}
	for i, s := range x.GetSubsets() {
		p := fmt.Sprintf("%s.subsets[%d].name", path, i)
		name := s.GetName()
		if name == "" {
			el.add(p, "required")
			continue
		}
		if j, dup := first[name]; dup {
			el.add(p, "duplicate subset %q, first at subsets[%d]", name, j)
			continue
		}
		first[name] = i
	}
}

func regexError(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid regex: %s: %q", se.Code, se.Expr)
	}
	return "invalid regex: " + err.Error()
}

// rangeMessages calls visit for m and every message set inside it, depth
// first in field declaration order, with each one's field path in JSON
// names ("spec.http[0].match[1].headers[end-user]").
func rangeMessages(m protoreflect.Message, path string, visit func(m protoreflect.Message, path string)) {
	visit(m, path)
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		p := joinField(path, fd.JSONName())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			mp := m.Get(fd).Map()
			for _, k := range mapKeys(mp) {
				rangeMessages(mp.Get(k).Message(), p+"["+k.String()+"]", visit)
			}
		case fd.IsList():
			if fd.Message() == nil {
				continue
			}
			list := m.Get(fd).List()
			for j := range list.Len() {
				rangeMessages(list.Get(j).Message(), fmt.Sprintf("%s[%d]", p, j), visit)
			}
		case fd.Message() != nil:
			rangeMessages(m.Get(fd).Message(), p, visit)
		}
	}
}

// mapKeys returns a map's keys in a stable order.
func mapKeys(mp protoreflect.Map) []protoreflect.MapKey {
	keys := make([]protoreflect.MapKey, 0, mp.Len())
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return cmp.Compare(a.String(), b.String()) })
	return keys
}

// comparePaths orders field paths as they appear in a document: runs of
// digits compare as numbers, so http[2] comes before http[10].
func comparePaths(a, b string) int {
	for a != "" && b != "" {
		da, db := leadingDigits(a), leadingDigits(b)
		if da != "" && db != "" {
			na, _ := strconv.Atoi(da)
			nb, _ := strconv.Atoi(db)
			if c := cmp.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if c := cmp.Compare(a[0], b[0]); c != 0 {
			return c
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && i < 9 && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}
