package config

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Finding is something an operator should know about a resource that is
// not an error: weft accepted it, but it will not do all it says.
type Finding struct {
	Resource string `json:"resource"` // "VirtualService default/reviews"
	Path     string `json:"path"`     // "spec.http[0].retries"
	Message  string `json:"message"`  // "not enforced yet"
	Severity string `json:"severity"` // "warning"
}

// String reads "warning: VirtualService default/reviews: spec.http[0].retries: not enforced yet".
func (f Finding) String() string {
	return fmt.Sprintf("%s: %s: %s: %s", f.Severity, f.Resource, f.Path, f.Message)
}

// SeverityWarning marks a finding that does not stop a resource being applied.
const SeverityWarning = "warning"

// enforced lists, per kind, the spec fields weft enforces, as paths of JSON
// names without indices or map keys. A path whose children are also listed
// is a container: its own presence is fine and each child is judged on its
// own. A path with no children listed is enforced with everything under it.
//
// Everything else is accepted, stored and returned unchanged, so that Istio
// YAML applies as-is, but Analyze reports it. Beware http[].retries in
// particular: it is translated to an xDS retry_policy, which weft-proxy
// currently NACKs, so a proxy that receives a route configuration carrying
// it rejects the whole update and keeps serving its last good routes.
var enforced = map[Kind]map[string]bool{
	KindVirtualService: set(
		"hosts",
		"http",
		"http.name",
		"http.match",
		"http.match.name",
		"http.match.uri",
		"http.match.method",
		"http.match.headers",
		"http.match.ignoreUriCase",
		"http.route",
		"http.route.destination",
		"http.route.destination.host",
		"http.route.destination.subset",
		"http.route.destination.port",
		"http.route.destination.port.number",
		"http.route.weight",
		"http.timeout",
	),
	KindDestinationRule: set(
		"host",
		"subsets",
		"subsets.name",
		"subsets.labels",
		// TLS mode (ISTIO_MUTUAL or DISABLE) is enforced at every level;
		// Validate refuses the other TLS settings.
		"trafficPolicy",
		"trafficPolicy.tls",
		"trafficPolicy.portLevelSettings",
		"trafficPolicy.portLevelSettings.port",
		"trafficPolicy.portLevelSettings.tls",
		"subsets.trafficPolicy",
		"subsets.trafficPolicy.tls",
		"subsets.trafficPolicy.portLevelSettings",
		"subsets.trafficPolicy.portLevelSettings.port",
		"subsets.trafficPolicy.portLevelSettings.tls",
		// Whether HTTP/1.1 stays HTTP/1.1 between sidecars.
		"trafficPolicy.connectionPool",
		"trafficPolicy.connectionPool.http",
		"trafficPolicy.connectionPool.http.h2UpgradePolicy",
		"subsets.trafficPolicy.connectionPool",
		"subsets.trafficPolicy.connectionPool.http",
		"subsets.trafficPolicy.connectionPool.http.h2UpgradePolicy",
	),
	KindPeerAuthentication: set(
		"selector",
		"mtls",
		"portLevelMtls",
	),
	// Everything an AuthorizationPolicy may hold is enforced: what weft
	// cannot enforce (CUSTOM, targetRef, trustDomains, unknown when keys)
	// is rejected by Validate instead, because an unenforced condition
	// would make a policy allow more or deny less than it says.
	KindAuthorizationPolicy: set(
		"selector",
		"rules",
		"action",
	),
	KindRequestAuthentication: set(
		"selector",
		"jwtRules",
		"jwtRules.issuer",
		"jwtRules.audiences",
		"jwtRules.jwksUri",
		"jwtRules.jwks",
		"jwtRules.fromHeaders",
		"jwtRules.fromParams",
		"jwtRules.outputPayloadToHeader",
		"jwtRules.outputClaimToHeaders",
		"jwtRules.forwardOriginalToken",
		"jwtRules.timeout",
		"jwtRules.spaceDelimitedClaims",
	),
}

func set(paths ...string) map[string]bool {
	m := make(map[string]bool, len(paths))
	for _, p := range paths {
		m[p] = true
	}
	return m
}

// Analyze reports, for each resource, every field that is set but that weft
// does not enforce yet, as a warning with the field's path. The findings
// come in the order of rs, and within a resource sorted by path, as Errors
// are. Resources of unknown kinds or without a spec are
// skipped; Validate reports those.
func Analyze(rs []*Resource) []Finding {
	var findings []Finding
	for _, r := range rs {
		known := enforced[r.Kind]
		if known == nil || r.Spec == nil || !r.Spec.ProtoReflect().IsValid() {
			continue
		}
		var paths []string
		unenforced(r.Spec.ProtoReflect(), "spec", "", known, func(path string) { paths = append(paths, path) })
		var rf []Finding
		for _, p := range paths {
			rf = append(rf, Finding{
				Resource: r.String(),
				Path:     p,
				Message:  "not enforced yet",
				Severity: SeverityWarning,
			})
		}
		rf = append(rf, securityFindings(r)...)
		slices.SortStableFunc(rf, func(a, b Finding) int { return comparePaths(a.Path, b.Path) })
		findings = append(findings, rf...)
	}
	return findings
}

// unenforced calls report for each field set in m that is not enforced,
// without descending into it: one finding for a whole retries block, not
// one per retry setting. path is the field path with indices; schema the
// same without them, as in the enforced table.
func unenforced(m protoreflect.Message, path, schema string, known map[string]bool, report func(path string)) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		p := joinField(path, fd.JSONName())
		s := joinField(schema, fd.JSONName())
		switch {
		case !known[s]:
			report(p)
		case !hasChildren(known, s):
			// Enforced with everything under it.
		case fd.IsList() && fd.Message() != nil:
			list := m.Get(fd).List()
			for j := range list.Len() {
				unenforced(list.Get(j).Message(), fmt.Sprintf("%s[%d]", p, j), s, known, report)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			mp := m.Get(fd).Map()
			for _, k := range mapKeys(mp) {
				unenforced(mp.Get(k).Message(), p+"["+k.String()+"]", s, known, report)
			}
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			unenforced(m.Get(fd).Message(), p, s, known, report)
		}
	}
}

func hasChildren(known map[string]bool, schema string) bool {
	for k := range known {
		if strings.HasPrefix(k, schema+".") {
			return true
		}
	}
	return false
}
