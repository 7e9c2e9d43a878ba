package rbac

import (
	"fmt"

	rbacpb "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttppb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	rbacnetworkpb "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weft-mesh/weft/internal/proxy/filter"
)

// NetworkURL is the type URL of Envoy's network RBAC filter, which guards
// a TCP workload's connections.
const NetworkURL = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"

// CompileNetwork compiles an envoy.filters.network.rbac configuration:
// the same rules as the HTTP filter, evaluated once per connection with
// the connection's attributes only. A matcher that needs a request
// (header, url_path, metadata) cannot be evaluated there and is a decode
// error; weft's control plane never sends one (it translates HTTP-only
// policy fields for TCP workloads as Istio does).
func CompileNetwork(m *rbacnetworkpb.RBAC) (*Filter, error) {
	if err := filter.OnlyFields(m, "rules", "stat_prefix", "shadow_rules", "shadow_rules_stat_prefix"); err != nil {
		return nil, err
	}
	for _, r := range []struct {
		field string
		rules *rbacpb.RBAC
	}{{"rules", m.GetRules()}, {"shadow_rules", m.GetShadowRules()}} {
		if r.rules == nil {
			continue
		}
		if path := requestField(r.rules.ProtoReflect(), ""); path != "" {
			return nil, errorf(r.field+path, "needs an HTTP request; a network RBAC filter sees connections only")
		}
	}
	return Compile(httpEquivalent(m))
}

// requestField returns the path of the first header, url_path or
// metadata matcher in m, or "".
func requestField(m protoreflect.Message, path string) string {
	found := ""
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch fd.Name() {
		case "header", "url_path", "metadata":
			if fd.ContainingMessage().FullName() == "envoy.config.rbac.v3.Permission" ||
				fd.ContainingMessage().FullName() == "envoy.config.rbac.v3.Principal" {
				found = p
				return false
			}
		}
		switch {
		case fd.IsMap() && fd.MapValue().Kind() == protoreflect.MessageKind:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				found = requestField(mv.Message(), fmt.Sprintf("%s[%q]", p, k.String()))
				return found == ""
			})
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := 0; i < v.List().Len() && found == ""; i++ {
				found = requestField(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
			found = requestField(v.Message(), p)
		}
		return found == ""
	})
	return found
}

// httpEquivalent is the HTTP filter configuration with m's rules, which
// Compile knows.
func httpEquivalent(m *rbacnetworkpb.RBAC) *rbachttppb.RBAC {
	return &rbachttppb.RBAC{Rules: m.GetRules(), ShadowRules: m.GetShadowRules()}
}

// AllowConnection enforces the filter's rules on a TCP connection:
// conn carries only the connection's attributes (filter.NewConnRequest).
// It reports false when the connection must be closed.
func (f *Filter) AllowConnection(conn *filter.Request) bool {
	return f.Decode(conn) == nil
}
