package xdsclient

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	corepb "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Version is weft-proxy's version, reported to the control plane.
var Version = "dev"

// FeaturePartialSotW is the client feature (Node.client_features) that
// tells the control plane this client treats state-of-the-world EDS and
// RDS responses as the xDS protocol says: resources left out of a response
// are unchanged, not deleted (merge.go). weft's control plane sends a
// wildcard EDS subscription only the endpoint sets that changed when the
// node declares it, and every one otherwise, as older weft-proxies expect
// (docs/xds.md, "Subscriptions"). internal/xds spells the same string.
const FeaturePartialSotW = "com.github.weft-mesh.partial-sotw"

// NodeInfo is what the proxy tells the control plane about its workload in
// DiscoveryRequest.node (docs/xds.md, "Node"). The control plane registers
// the workload from it.
type NodeInfo struct {
	// ID is the node ID; NewNodeID makes one. Empty means "make one".
	ID        string
	Service   string
	Namespace string
	// ServiceAccount names the workload's identity in its namespace; empty
	// means "default".
	ServiceAccount string
	Labels         map[string]string
	ServicePort    int
	// Protocol is the app's protocol, "http" or "tcp"; empty means http.
	Protocol string
	// The proxy's bound addresses and the application's, host:port.
	InboundAddr  string
	OutboundAddr string
	AppAddr      string
	AdminAddr    string
}

// NewNodeID returns a node ID unique to this proxy process:
// sidecar~<service>-<8 random hex>.<namespace>.
func NewNodeID(service, namespace string) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return fmt.Sprintf("sidecar~%s-%s.%s", service, hex.EncodeToString(b[:]), namespace)
}

func (n NodeInfo) proto() (*corepb.Node, error) {
	labels := make(map[string]any, len(n.Labels))
	for k, v := range n.Labels {
		labels[k] = v
	}
	md, err := structpb.NewStruct(map[string]any{
		"service":          n.Service,
		"namespace":        n.Namespace,
		"service_account":  cmp.Or(n.ServiceAccount, "default"),
		"labels":           labels,
		"service_port":     n.ServicePort,
		"service_protocol": cmp.Or(n.Protocol, "http"),
		"inbound_addr":     n.InboundAddr,
		"outbound_addr":    n.OutboundAddr,
		"app_addr":         n.AppAddr,
		"admin_addr":       n.AdminAddr,
	})
	if err != nil {
		return nil, fmt.Errorf("building node metadata: %w", err)
	}
	return &corepb.Node{
		Id:                   n.ID,
		Cluster:              n.Service,
		Metadata:             md,
		UserAgentName:        "weft-proxy",
		UserAgentVersionType: &corepb.Node_UserAgentVersion{UserAgentVersion: Version},
		ClientFeatures:       []string{FeaturePartialSotW},
	}, nil
}
