package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weft-mesh/weft/internal/mesh"
	"github.com/weft-mesh/weft/internal/registry"
)

// WorkloadFromNode reads the workload a proxy describes in its xDS node
// metadata (docs/xds.md, "Node").
func WorkloadFromNode(node *corev3.Node) (*mesh.Workload, error) {
	if node == nil || node.GetId() == "" {
		return nil, fmt.Errorf("request has no node id")
	}
	md := node.GetMetadata().GetFields()
	str := func(k string) string { return md[k].GetStringValue() }
	w := &mesh.Workload{
		ID:             node.GetId(),
		Service:        str("service"),
		Namespace:      str("namespace"),
		ServiceAccount: str("service_account"),
		InboundAddr:    str("inbound_addr"),
		OutboundAddr:   str("outbound_addr"),
		AppAddr:        str("app_addr"),
		AdminAddr:      str("admin_addr"),
		Protocol:       str("service_protocol"),
	}
	if w.Namespace == "" {
		w.Namespace = "default"
	}
	if w.ServiceAccount == "" {
		w.ServiceAccount = "default"
	}
	port := md["service_port"].GetNumberValue()
	if port != float64(uint32(port)) {
		return nil, fmt.Errorf("node %s: metadata service_port %v is not a port number", w.ID, port)
	}
	w.ServicePort = uint32(port)
	if labels := md["labels"].GetStructValue().GetFields(); len(labels) > 0 {
		w.Labels = make(map[string]string, len(labels))
		for k, v := range labels {
			if _, ok := v.GetKind().(*structpb.Value_StringValue); !ok {
				return nil, fmt.Errorf("node %s: metadata labels.%s is not a string", w.ID, k)
			}
			w.Labels[k] = v.GetStringValue()
		}
	}
	if err := registry.Validate(w); err != nil {
		return nil, fmt.Errorf("node metadata: %w", err)
	}
	return w, nil
}
