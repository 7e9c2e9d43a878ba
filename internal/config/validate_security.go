package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/weft-mesh/weft/internal/jwks"
)

// The rules below keep one promise: a policy weft accepts is one weft-proxy
// enforces exactly. A field or condition the proxy cannot evaluate is an
// error here, never silently dropped, because an ALLOW rule missing a
// condition allows too much and a DENY rule missing one denies too little.

func checkSelector(el *errorList, sel *typev1beta1.WorkloadSelector, path string) {
	for _, k := range sortedKeys(sel.GetMatchLabels()) {
		if strings.TrimSpace(k) == "" {
			el.add(path+".matchLabels["+k+"]", "empty label name")
		}
	}
}

func checkTargetRefs(el *errorList, ref *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference, path string) {
	const reason = "not supported: weft applies policies to workloads by selector"
	if ref != nil {
		el.add(path+".targetRef", reason)
	}
	if len(refs) > 0 {
		el.add(path+".targetRefs", reason)
	}
}

// PeerAuthentication.

func checkPeerAuthentication(el *errorList, x *security.PeerAuthentication, path string) {
	checkSelector(el, x.GetSelector(), path+".selector")
	if len(x.GetPortLevelMtls()) == 0 {
		return
	}
	if len(x.GetSelector().GetMatchLabels()) == 0 {
		el.add(path+".portLevelMtls", "requires a workload selector: port numbers are the ports of the selected workloads")
	}
	ports := make([]uint32, 0, len(x.GetPortLevelMtls()))
	for p := range x.GetPortLevelMtls() {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	for _, p := range ports {
		if p == 0 || p > 65535 {
			el.add(fmt.Sprintf("%s.portLevelMtls[%d]", path, p), "invalid port %d, want 1 to 65535", p)
		}
	}
}

// AuthorizationPolicy.

func checkAuthorizationPolicy(el *errorList, x *security.AuthorizationPolicy, path string) {
	checkSelector(el, x.GetSelector(), path+".selector")
	checkTargetRefs(el, x.GetTargetRef(), x.GetTargetRefs(), path)
	if x.GetAction() == security.AuthorizationPolicy_CUSTOM {
		el.add(path+".action", "CUSTOM is not supported, want ALLOW, DENY or AUDIT")
	}
	if x.GetProvider() != nil {
		el.add(path+".provider", "not supported: it goes with action CUSTOM")
	}
	for i, r := range x.GetRules() {
		rp := fmt.Sprintf("%s.rules[%d]", path, i)
		for j, from := range r.GetFrom() {
			checkSource(el, from.GetSource(), fmt.Sprintf("%s.from[%d].source", rp, j))
		}
		for j, to := range r.GetTo() {
			checkOperation(el, to.GetOperation(), fmt.Sprintf("%s.to[%d].operation", rp, j))
		}
		for j, c := range r.GetWhen() {
			checkCondition(el, c, fmt.Sprintf("%s.when[%d]", rp, j))
		}
	}
}

func checkSource(el *errorList, s *security.Source, path string) {
	if s == nil {
		el.add(path, "required")
		return
	}
	if isEmpty(s) {
		el.add(path, "empty: set at least one field")
		return
	}
	checkValues(el, path+".principals", s.GetPrincipals(), checkPrincipal)
	checkValues(el, path+".notPrincipals", s.GetNotPrincipals(), checkPrincipal)
	checkValues(el, path+".requestPrincipals", s.GetRequestPrincipals(), checkWildcard)
	checkValues(el, path+".notRequestPrincipals", s.GetNotRequestPrincipals(), checkWildcard)
	checkValues(el, path+".namespaces", s.GetNamespaces(), checkNamespace)
	checkValues(el, path+".notNamespaces", s.GetNotNamespaces(), checkNamespace)
	checkValues(el, path+".serviceAccounts", s.GetServiceAccounts(), checkServiceAccount)
	checkValues(el, path+".notServiceAccounts", s.GetNotServiceAccounts(), checkServiceAccount)
	checkValues(el, path+".ipBlocks", s.GetIpBlocks(), checkIPBlock)
	checkValues(el, path+".notIpBlocks", s.GetNotIpBlocks(), checkIPBlock)
	checkValues(el, path+".remoteIpBlocks", s.GetRemoteIpBlocks(), checkIPBlock)
	checkValues(el, path+".notRemoteIpBlocks", s.GetNotRemoteIpBlocks(), checkIPBlock)
	if len(s.GetServiceAccounts())+len(s.GetNotServiceAccounts()) > 0 &&
		len(s.GetPrincipals())+len(s.GetNotPrincipals())+len(s.GetNamespaces())+len(s.GetNotNamespaces()) > 0 {
		el.add(path+".serviceAccounts", "conflicts with principals and namespaces: set serviceAccounts in a source of its own, as Istio requires")
	}
	const reason = "not supported: write the trust domain in principals instead"
	if len(s.GetTrustDomains()) > 0 {
		el.add(path+".trustDomains", reason)
	}
	if len(s.GetNotTrustDomains()) > 0 {
		el.add(path+".notTrustDomains", reason)
	}
}

func checkOperation(el *errorList, o *security.Operation, path string) {
	if o == nil {
		el.add(path, "required")
		return
	}
	if isEmpty(o) {
		el.add(path, "empty: set at least one field")
		return
	}
	checkValues(el, path+".hosts", o.GetHosts(), checkWildcard)
	checkValues(el, path+".notHosts", o.GetNotHosts(), checkWildcard)
	checkValues(el, path+".ports", o.GetPorts(), checkPort)
	checkValues(el, path+".notPorts", o.GetNotPorts(), checkPort)
	checkValues(el, path+".methods", o.GetMethods(), checkMethod)
	checkValues(el, path+".notMethods", o.GetNotMethods(), checkMethod)
	checkValues(el, path+".paths", o.GetPaths(), checkPath)
	checkValues(el, path+".notPaths", o.GetNotPaths(), checkPath)
}

// ConditionKeys lists the `when` keys weft enforces, as they are written;
// <name> stands for a header or claim name in brackets.
var ConditionKeys = []string{
	"request.headers[<name>]", "source.ip", "remote.ip", "source.namespace", "source.principal",
	"request.auth.principal", "request.auth.audiences", "request.auth.presenter",
	"request.auth.claims[<name>]", "destination.port", "connection.sni",
}

func checkCondition(el *errorList, c *security.Condition, path string) {
	key := c.GetKey()
	if len(c.GetValues())+len(c.GetNotValues()) == 0 {
		el.add(path, "want values or notValues")
	}
	var check func(string) string
	switch {
	case key == "":
		el.add(path+".key", "required")
		return
	case strings.HasPrefix(key, "request.headers"):
		name, err := bracketed(strings.TrimPrefix(key, "request.headers"), false)
		switch {
		case err != "":
			el.add(path+".key", "%s", err)
			return
		case !validHeaderName(name[0]):
			el.add(path+".key", "invalid header name %q", name[0])
			return
		}
		check = checkWildcard
	case strings.HasPrefix(key, "request.auth.claims"):
		if _, err := bracketed(strings.TrimPrefix(key, "request.auth.claims"), true); err != "" {
			el.add(path+".key", "%s", err)
			return
		}
		check = checkWildcard
	case key == "source.ip", key == "remote.ip":
		check = checkIPBlock
	case key == "source.namespace":
		check = checkNamespace
	case key == "source.principal":
		check = checkPrincipal
	case key == "request.auth.principal", key == "request.auth.audiences", key == "request.auth.presenter", key == "connection.sni":
		check = checkWildcard
	case key == "destination.port":
		check = checkPort
	case key == "destination.ip" || strings.HasPrefix(key, "experimental."):
		el.add(path+".key", "%q is not supported, want one of %s", key, strings.Join(ConditionKeys, ", "))
		return
	default:
		el.add(path+".key", "unknown key %q, want one of %s", key, strings.Join(ConditionKeys, ", "))
		return
	}
	checkValues(el, path+".values", c.GetValues(), check)
	checkValues(el, path+".notValues", c.GetNotValues(), check)
}

// bracketed reads "[name]", or with nested "[a][b]...", as Istio's keys
// write header and claim names.
func bracketed(s string, nested bool) ([]string, string) {
	const want = "want a name in brackets, as in request.headers[x-user] or request.auth.claims[groups]"
	var names []string
	for s != "" {
		if s[0] != '[' {
			return nil, want
		}
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return nil, want
		}
		name := s[1:end]
		if name == "" || strings.ContainsAny(name, "[") {
			return nil, want
		}
		names = append(names, name)
		s = s[end+1:]
	}
	switch {
	case len(names) == 0:
		return nil, want
	case len(names) > 1 && !nested:
		return nil, "want one name in brackets"
	}
	return names, ""
}

// checkValues applies check to each value, adding its reason as an error.
func checkValues(el *errorList, path string, values []string, check func(string) string) {
	for i, v := range values {
		p := fmt.Sprintf("%s[%d]", path, i)
		if v == "" {
			el.add(p, "empty value")
			continue
		}
		if reason := check(v); reason != "" {
			el.add(p, "%s", reason)
		}
	}
}

// checkWildcard enforces Istio's value forms: exact, "prefix*", "*suffix"
// or "*" alone (present). A "*" anywhere else would be matched as a
// literal star, which is never what was meant.
func checkWildcard(v string) string {
	if v == "*" {
		return ""
	}
	if n := strings.Count(v, "*"); n > 1 || (n == 1 && !strings.HasPrefix(v, "*") && !strings.HasSuffix(v, "*")) {
		return fmt.Sprintf(`%q: "*" may only be the whole value, its first character or its last`, v)
	}
	return ""
}

func checkPrincipal(v string) string {
	if strings.HasPrefix(strings.ToLower(v), "spiffe://") {
		return fmt.Sprintf(`%q: write principals without "spiffe://", as <trust-domain>/ns/<namespace>/sa/<service-account>`, v)
	}
	return checkWildcard(v)
}

func checkNamespace(v string) string {
	if strings.Contains(v, "/") {
		return fmt.Sprintf("%q: a namespace has no /", v)
	}
	return checkWildcard(v)
}

func checkServiceAccount(v string) string {
	if strings.Contains(v, "*") {
		return fmt.Sprintf("%q: service accounts take no wildcards", v)
	}
	if ns, sa, ok := strings.Cut(v, "/"); ok && (ns == "" || sa == "" || strings.Contains(sa, "/")) {
		return fmt.Sprintf("%q: want <service-account> or <namespace>/<service-account>", v)
	}
	return ""
}

func checkIPBlock(v string) string {
	if _, err := netip.ParseAddr(v); err == nil {
		return ""
	}
	if _, err := netip.ParsePrefix(v); err == nil {
		return ""
	}
	return fmt.Sprintf("%q: want an IP address or a CIDR block such as 10.0.0.0/8", v)
}

func checkPort(v string) string {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 || n > 65535 {
		return fmt.Sprintf("invalid port %q, want 1 to 65535", v)
	}
	return ""
}

func checkMethod(v string) string {
	if strings.ToUpper(v) != v {
		return fmt.Sprintf("%q: methods are case-sensitive and weft-proxy refuses lower-case ones; write %q", v, strings.ToUpper(v))
	}
	return checkWildcard(v)
}

func checkPath(v string) string {
	switch {
	case strings.ContainsAny(v, "{}"):
		return fmt.Sprintf("%q: path templates ({*}, {**}) are not supported", v)
	case strings.ContainsAny(v, "?#"):
		return fmt.Sprintf("%q: paths are matched without the query and fragment; remove what follows ? or #", v)
	case v != "*" && !strings.HasPrefix(v, "*") && !strings.HasPrefix(v, "/"):
		return fmt.Sprintf("%q: a path starts with /", v)
	}
	return checkWildcard(v)
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// RequestAuthentication.

func checkRequestAuthentication(el *errorList, x *security.RequestAuthentication, path string) {
	checkSelector(el, x.GetSelector(), path+".selector")
	checkTargetRefs(el, x.GetTargetRef(), x.GetTargetRefs(), path)
	for i, r := range x.GetJwtRules() {
		checkJWTRule(el, r, fmt.Sprintf("%s.jwtRules[%d]", path, i))
	}
}

func checkJWTRule(el *errorList, r *security.JWTRule, path string) {
	if strings.TrimSpace(r.GetIssuer()) == "" {
		el.add(path+".issuer", "required")
	}
	switch {
	case r.GetJwks() != "" && r.GetJwksUri() != "":
		el.add(path+".jwksUri", "conflicts with jwks: set only one of jwks, jwksUri")
	case r.GetJwks() != "":
		if _, err := jwks.Parse([]byte(r.GetJwks())); err != nil {
			el.add(path+".jwks", "invalid JWK Set: %v", err)
		}
	case r.GetJwksUri() != "":
		u, err := url.Parse(r.GetJwksUri())
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			el.add(path+".jwksUri", "want an http or https URL, got %s", describe(r.GetJwksUri()))
		}
	}
	for j, h := range r.GetFromHeaders() {
		if !validHeaderName(h.GetName()) {
			p := fmt.Sprintf("%s.fromHeaders[%d].name", path, j)
			if h.GetName() == "" {
				el.add(p, "required")
			} else {
				el.add(p, "invalid header name %q", h.GetName())
			}
		}
	}
	for j, q := range r.GetFromParams() {
		if q == "" {
			el.add(fmt.Sprintf("%s.fromParams[%d]", path, j), "empty value")
		}
	}
	if h := r.GetOutputPayloadToHeader(); h != "" && !validHeaderName(h) {
		el.add(path+".outputPayloadToHeader", "invalid header name %q", h)
	}
	for j, c := range r.GetOutputClaimToHeaders() {
		p := fmt.Sprintf("%s.outputClaimToHeaders[%d]", path, j)
		switch {
		case c.GetHeader() == "":
			el.add(p+".header", "required")
		case !validHeaderName(c.GetHeader()):
			el.add(p+".header", "invalid header name %q", c.GetHeader())
		}
		if c.GetClaim() == "" {
			el.add(p+".claim", "required")
		}
	}
	if t := r.GetTimeout(); t != nil && t.AsDuration() <= 0 {
		el.add(path+".timeout", "must be positive")
	}
	checkValues(el, path+".spaceDelimitedClaims", r.GetSpaceDelimitedClaims(), func(string) string { return "" })
}

// isEmpty reports whether no field of m is set.
func isEmpty(m proto.Message) bool { return proto.Size(m) == 0 }

// DryRunAnnotation marks an AuthorizationPolicy that Istio evaluates
// without enforcing it.
const DryRunAnnotation = "istio.io/dry-run"

// DryRun reports whether r is an AuthorizationPolicy marked
// istio.io/dry-run: "true". weft does not enforce such a policy, as Istio
// does not; unlike Istio it does not report what the policy would have
// done either (Analyze says so).
func DryRun(r *Resource) bool {
	if r.Kind != KindAuthorizationPolicy {
		return false
	}
	dry, _ := strconv.ParseBool(r.Annotations[DryRunAnnotation])
	return dry
}

func checkAnnotations(el *errorList, r *Resource) {
	if v, ok := r.Annotations[DryRunAnnotation]; ok && r.Kind == KindAuthorizationPolicy {
		if _, err := strconv.ParseBool(v); err != nil {
			el.add("metadata.annotations["+DryRunAnnotation+"]", "want \"true\" or \"false\", got %s", describe(v))
		}
	}
}

// securityFindings reports what a security resource will not do although
// it parses: a dry-run policy is not enforced, and a JWT rule without keys
// rejects every token of its issuer.
func securityFindings(r *Resource) []Finding {
	var out []Finding
	add := func(path, msg string) {
		out = append(out, Finding{Resource: r.String(), Path: path, Message: msg, Severity: SeverityWarning})
	}
	if DryRun(r) {
		add("metadata.annotations["+DryRunAnnotation+"]", "dry run: this policy is not enforced, and weft does not report what it would decide yet")
	}
	if ra, ok := r.Spec.(*security.RequestAuthentication); ok {
		for i, rule := range ra.GetJwtRules() {
			if rule.GetJwks() == "" && rule.GetJwksUri() == "" && jwks.DiscoveryURI(rule.GetIssuer()) == "" {
				add(fmt.Sprintf("spec.jwtRules[%d]", i), "no keys (no jwks, no jwksUri, and the issuer is not a URL to discover them from): every token of this issuer is rejected with 401")
			}
		}
	}
	return out
}
