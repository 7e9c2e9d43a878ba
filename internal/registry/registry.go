// Package registry keeps the mesh's workloads: every weft-proxy registers the
// workload it fronts when its xDS stream opens, and the registration lives in
// the store under a lease, so it survives a control-plane restart and
// disappears a grace period after the proxy is gone.
package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/weft-mesh/weft/internal/mesh"
	"github.com/weft-mesh/weft/internal/store"
)

// Prefix is where workload registrations live in the store.
const Prefix = "/weft/registry/workloads/"

// DefaultGrace is how long a workload stays registered after its proxy's
// stream is gone.
const DefaultGrace = 10 * time.Second

// Registry registers workloads in a store.
type Registry struct {
	store *store.Store
	grace time.Duration
}

// New returns a registry over s whose registrations outlive their proxy's
// stream by grace.
func New(s *store.Store, grace time.Duration) *Registry {
	if grace <= 0 {
		grace = DefaultGrace
	}
	return &Registry{store: s, grace: grace}
}

// Key is the store key of a workload's registration.
func Key(w *mesh.Workload) string {
	return Prefix + w.Namespace + "/" + w.ID
}

// IsKey reports whether a store key holds a workload registration.
func IsKey(key string) bool { return strings.HasPrefix(key, Prefix) }

// Register records w and keeps it registered until the returned lease is
// released; after that it stays for the grace period.
func (r *Registry) Register(ctx context.Context, w *mesh.Workload) (*store.Lease, error) {
	if err := Validate(w); err != nil {
		return nil, err
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode workload %s: %w", w.ID, err)
	}
	return r.store.PutLeased(ctx, Key(w), b, r.grace)
}

// Validate checks that a workload carries what the mesh needs to route to it.
func Validate(w *mesh.Workload) error {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"id", w.ID}, {"service", w.Service}, {"namespace", w.Namespace},
		{"inbound_addr", w.InboundAddr}, {"app_addr", w.AppAddr},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("workload %q: missing %s", w.ID, strings.Join(missing, ", "))
	}
	if w.ServicePort == 0 || w.ServicePort > 65535 {
		return fmt.Errorf("workload %q: service_port %d out of range", w.ID, w.ServicePort)
	}
	switch w.Protocol {
	case "", mesh.ProtocolHTTP, mesh.ProtocolTCP:
	default:
		return fmt.Errorf("workload %q: service_protocol %q is not %q or %q", w.ID, w.Protocol, mesh.ProtocolHTTP, mesh.ProtocolTCP)
	}
	return nil
}

// Decode reads a registration back from the store.
func Decode(kv store.KV) (*mesh.Workload, error) {
	var w mesh.Workload
	if err := json.Unmarshal(kv.Value, &w); err != nil {
		return nil, fmt.Errorf("decode workload %s: %w", kv.Key, err)
	}
	return &w, nil
}
