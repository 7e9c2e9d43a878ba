package mesh

import (
	"testing"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

func TestPolicyApplies(t *testing.T) {
	w := &Workload{Namespace: "default", Labels: map[string]string{"app": "payments", "version": "v1"}}
	sel := func(kv ...string) *typev1beta1.WorkloadSelector {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return &typev1beta1.WorkloadSelector{MatchLabels: m}
	}
	tests := []struct {
		name string
		root string
		ns   string
		sel  *typev1beta1.WorkloadSelector
		want bool
	}{
		{"a policy without selector applies to its namespace", "", "default", nil, true},
		{"an empty selector is no selector", "", "default", sel(), true},
		{"a matching selector applies", "", "default", sel("app", "payments"), true},
		{"every label of the selector must match", "", "default", sel("app", "payments", "version", "v2"), false},
		{"a label the workload lacks does not match", "", "default", sel("tier", "backend"), false},
		{"another namespace's policy does not apply", "", "prod", nil, false},
		{"the root namespace's policy applies mesh-wide", "", "istio-system", nil, true},
		{"and its selector still selects", "", "istio-system", sel("app", "orders"), false},
		{"the root namespace is configurable", "mesh", "istio-system", nil, false},
		{"a configured root namespace applies mesh-wide", "mesh", "mesh", sel("version", "v1"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnapshot("1", "", nil, nil, nil)
			s.Security.RootNamespace = tt.root
			if got := s.PolicyApplies(tt.ns, tt.sel, w); got != tt.want {
				t.Errorf("PolicyApplies = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSetPoliciesSorts(t *testing.T) {
	s := NewSnapshot("1", "", nil, nil, nil)
	s.SetPolicies(
		[]*PeerAuthentication{{Name: "b", Namespace: "x"}, {Name: "a", Namespace: "x"}, {Name: "z", Namespace: "a"}},
		[]*AuthorizationPolicy{{Name: "b", Namespace: "default", Spec: &security.AuthorizationPolicy{}}, {Name: "a", Namespace: "default"}},
		nil,
	)
	if got := s.PeerAuthentications[0].Namespace + "/" + s.PeerAuthentications[0].Name + " " + s.PeerAuthentications[1].Name + " " + s.PeerAuthentications[2].Name; got != "a/z a b" {
		t.Errorf("peer authentications in order %s", got)
	}
	if s.AuthorizationPolicies[0].Name != "a" {
		t.Errorf("authorization policies not sorted by name")
	}
	if s.RootNamespace() != DefaultRootNamespace {
		t.Errorf("RootNamespace() = %q, want %q", s.RootNamespace(), DefaultRootNamespace)
	}
}
