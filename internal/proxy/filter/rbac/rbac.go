// Package rbac is weft-proxy's envoy.filters.http.rbac: Envoy's RBAC HTTP
// filter (envoy.extensions.filters.http.rbac.v3.RBAC) for the subset
// docs/xds.md lists, which is what Istio generates for
// AuthorizationPolicy.
//
// A filter's policies are compiled once, when the listener is decoded,
// into matcher trees (precompiled strings, regexes, CIDRs); a request only
// walks them. What the compiler does not know is a decode error, so the
// listener is NACKed and the previous configuration keeps serving: a
// policy is never evaluated as "no match" because a field was not
// understood.
//
// Semantics, as Envoy's:
//   - rules.action ALLOW: the request passes if some policy matches,
//     otherwise 403 "RBAC: access denied" (no policies: every request is
//     denied). DENY: 403 if some policy matches. LOG (Istio's AUDIT):
//     never denies; a match is logged.
//   - rules unset: the filter enforces nothing.
//   - shadow_rules: evaluated and logged (at debug level), never enforced.
//   - a policy matches when any of its permissions and any of its
//     principals match.
package rbac

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttppb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-mesh/weft/internal/proxy/filter"
)

func init() { filter.Register(filter.RBACURL, Build) }

// Denied is the reply to a request the policies deny, as Envoy words it.
var Denied = &filter.Reply{Status: http.StatusForbidden, Body: "RBAC: access denied"}

// Filter is a compiled RBAC filter.
type Filter struct {
	rules  *engine // nil: nothing enforced
	shadow *engine // nil: nothing logged
}

var _ filter.Filter = (*Filter)(nil)

// engine is a compiled RBAC message: an action and its policies, sorted
// by name (as Envoy's map is) so logs name the same policy every time.
type engine struct {
	action   rbacpb.RBAC_Action
	policies []policy
}

type policy struct {
	name        string
	permissions orMatcher
	principals  orMatcher
}

// Build compiles an envoy.extensions.filters.http.rbac.v3.RBAC typed
// config. It is the filter's registered builder.
func Build(cfg *anypb.Any) (filter.Filter, error) {
	m := new(rbachttppb.RBAC)
	if err := filter.Unmarshal(cfg, filter.RBACURL, m); err != nil {
		return nil, err
	}
	return Compile(m)
}

// Compile compiles an RBAC filter configuration.
func Compile(m *rbachttppb.RBAC) (*Filter, error) {
	// The stat prefixes and per-rule stats only name counters.
	if err := filter.OnlyFields(m, "rules", "rules_stat_prefix", "shadow_rules", "shadow_rules_stat_prefix", "track_per_rule_stats"); err != nil {
		return nil, err
	}
	f := &Filter{}
	if m.GetRules() != nil {
		e, err := compileEngine(m.GetRules())
		if err != nil {
			return nil, filter.At("rules", err)
		}
		f.rules = e
	}
	if m.GetShadowRules() != nil {
		e, err := compileEngine(m.GetShadowRules())
		if err != nil {
			return nil, filter.At("shadow_rules", err)
		}
		f.shadow = e
	}
	return f, nil
}

func compileEngine(r *rbacpb.RBAC) (*engine, error) {
	if err := filter.OnlyFields(r, "action", "policies"); err != nil {
		return nil, err
	}
	e := &engine{action: r.GetAction()}
	switch e.action {
	case rbacpb.RBAC_ALLOW, rbacpb.RBAC_DENY, rbacpb.RBAC_LOG:
	default:
		return nil, errorf("action", "%s not supported, want ALLOW, DENY or LOG", e.action)
	}
	names := make([]string, 0, len(r.GetPolicies()))
	for name := range r.GetPolicies() {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p, err := compilePolicy(r.GetPolicies()[name])
		if err != nil {
			return nil, at(fmt.Sprintf("policies[%q]", name), err)
		}
		p.name = name
		e.policies = append(e.policies, p)
	}
	return e, nil
}

func compilePolicy(p *rbacpb.Policy) (policy, error) {
	if p == nil {
		return policy{}, errorf("", "required")
	}
	// condition, checked_condition and cel_config (CEL) are refused here.
	if err := filter.OnlyFields(p, "permissions", "principals"); err != nil {
		return policy{}, err
	}
	if len(p.GetPermissions()) == 0 {
		return policy{}, errorf("permissions", "at least one permission is required")
	}
	if len(p.GetPrincipals()) == 0 {
		return policy{}, errorf("principals", "at least one principal is required")
	}
	var out policy
	for i, perm := range p.GetPermissions() {
		m, err := compilePermission(perm)
		if err != nil {
			return policy{}, at(fmt.Sprintf("permissions[%d]", i), err)
		}
		out.permissions = append(out.permissions, m)
	}
	for i, pr := range p.GetPrincipals() {
		m, err := compilePrincipal(pr)
		if err != nil {
			return policy{}, at(fmt.Sprintf("principals[%d]", i), err)
		}
		out.principals = append(out.principals, m)
	}
	return out, nil
}

// match returns the name of the first policy (by name) that matches req.
func (e *engine) match(req *filter.Request) (string, bool) {
	for i := range e.policies {
		p := &e.policies[i]
		if p.permissions.match(req) && p.principals.match(req) {
			return p.name, true
		}
	}
	return "", false
}

// Decode enforces the filter's rules on req.
func (f *Filter) Decode(req *filter.Request) *filter.Reply {
	if f.shadow != nil {
		name, matched := f.shadow.match(req)
		if req.Log.Enabled(req.HTTP.Context(), slog.LevelDebug) {
			req.Log.Debug("rbac shadow rules", "action", f.shadow.action.String(), "matched", matched, "policy", name,
				"principal", req.Peer().SpiffeID, "method", req.HTTP.Method, "path", req.Path)
		}
	}
	if f.rules == nil {
		return nil
	}
	name, matched := f.rules.match(req)
	switch f.rules.action {
	case rbacpb.RBAC_ALLOW:
		if !matched {
			f.logDenied(req, "")
			return Denied
		}
	case rbacpb.RBAC_DENY:
		if matched {
			f.logDenied(req, name)
			return Denied
		}
	default: // LOG
		if matched {
			req.Log.Info("rbac audit", "policy", name, "principal", req.Peer().SpiffeID, "method", req.HTTP.Method,
				"host", req.HTTP.Host, "path", req.Path)
		}
	}
	return nil
}

// logDenied logs a denial at debug level: the DENY policy that matched, or
// none for an ALLOW filter that no policy matched. (The check keeps a
// denial free of allocations when debug logs are off.)
func (f *Filter) logDenied(req *filter.Request, policy string) {
	if req.Log.Enabled(req.HTTP.Context(), slog.LevelDebug) {
		req.Log.Debug("rbac: access denied", "action", f.rules.action.String(), "policy", policy,
			"principal", req.Peer().SpiffeID, "method", req.HTTP.Method, "path", req.Path)
	}
}

// MarshalJSON shows the filter's actions and policy names in config dumps.
func (f *Filter) MarshalJSON() ([]byte, error) {
	type summary struct {
		Action   string   `json:"action"`
		Policies []string `json:"policies"`
	}
	sum := func(e *engine) *summary {
		if e == nil {
			return nil
		}
		s := &summary{Action: e.action.String(), Policies: []string{}}
		for _, p := range e.policies {
			s.Policies = append(s.Policies, p.name)
		}
		return s
	}
	return json.Marshal(struct {
		Rules  *summary `json:"rules,omitempty"`
		Shadow *summary `json:"shadow_rules,omitempty"`
	}{sum(f.rules), sum(f.shadow)})
}
