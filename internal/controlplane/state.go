package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	securityv1beta1 "istio.io/api/security/v1beta1"

	"github.com/weft-mesh/weft/internal/config"
	"github.com/weft-mesh/weft/internal/mesh"
	"github.com/weft-mesh/weft/internal/registry"
	"github.com/weft-mesh/weft/internal/store"
)

// ConfigPrefix is where Istio resources live in the store:
// /weft/config/<Kind>/<namespace>/<name>.
const ConfigPrefix = "/weft/config/"

// statePrefix covers everything the mesh model is built from.
const statePrefix = "/weft/"

// ConfigKey is the store key of a resource.
func ConfigKey(kind config.Kind, namespace, name string) string {
	return ConfigPrefix + string(kind) + "/" + namespace + "/" + name
}

// state mirrors the store's config and registry in memory, kept current by
// a watch, and builds mesh snapshots from it.
type state struct {
	log   *slog.Logger
	store *store.Store
	// security goes into every snapshot as is.
	security mesh.Security

	// keys fetches RequestAuthentication key sets into the store and
	// mirrors them from it.
	keys *jwksKeeper

	mu        sync.Mutex
	revision  int64
	resources map[string]*config.Resource
	workloads map[string]*mesh.Workload
	changed   chan struct{} // capacity 1: a pending "something changed"
}

func newState(s *store.Store, logger *slog.Logger, security mesh.Security) *state {
	return &state{
		log:       logger,
		store:     s,
		security:  security,
		keys:      newJWKSKeeper(s, logger.With("component", "jwks")),
		resources: map[string]*config.Resource{},
		workloads: map[string]*mesh.Workload{},
		changed:   make(chan struct{}, 1),
	}
}

// run loads the store and follows its changes until ctx is done, relisting
// whenever the watch breaks.
func (st *state) run(ctx context.Context) {
	fetching := make(chan struct{})
	go func() {
		defer close(fetching)
		st.keys.run(ctx)
	}()
	defer func() { <-fetching }()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := st.sync(ctx)
		if ctx.Err() != nil {
			return
		}
		st.log.Warn("store watch ended; relisting", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// sync lists everything, replaces the mirror, then applies watch events
// until the watch fails.
func (st *state) sync(ctx context.Context) error {
	kvs, rev, err := st.store.List(ctx, statePrefix)
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.resources = map[string]*config.Resource{}
	st.workloads = map[string]*mesh.Workload{}
	st.keys.reset()
	for _, kv := range kvs {
		st.applyLocked(store.Event{Type: store.EventPut, KV: kv})
	}
	st.revision = rev
	st.mu.Unlock()
	st.notify()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, errc := st.store.Watch(wctx, statePrefix, rev+1)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return <-errc
			}
			st.mu.Lock()
			st.applyLocked(ev)
			st.revision = max(st.revision, ev.KV.ModRevision)
			st.mu.Unlock()
			st.notify()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (st *state) applyLocked(ev store.Event) {
	key := ev.KV.Key
	switch {
	case strings.HasPrefix(key, ConfigPrefix):
		if ev.Type == store.EventDelete {
			delete(st.resources, key)
			return
		}
		r, err := config.Decode(ev.KV.Value)
		if err != nil {
			// Only validated resources are written; a bad one means someone
			// wrote the store by hand. Skip it rather than stop the mesh.
			st.log.Error("skipping undecodable resource in store", "key", key, "err", err)
			return
		}
		r.Revision = ev.KV.ModRevision
		st.resources[key] = r
	case st.keys.isKey(key):
		st.keys.apply(ev)
	case registry.IsKey(key):
		if ev.Type == store.EventDelete {
			delete(st.workloads, key)
			return
		}
		w, err := registry.Decode(ev.KV)
		if err != nil {
			st.log.Error("skipping undecodable workload in store", "key", key, "err", err)
			return
		}
		st.workloads[key] = w
	}
}

func (st *state) notify() {
	select {
	case st.changed <- struct{}{}:
	default:
	}
}

// snapshot builds the mesh model of the current mirror. Its version is the
// store revision, which only grows, also across restarts.
func (st *state) snapshot() *mesh.Snapshot {
	st.mu.Lock()
	defer st.mu.Unlock()
	workloads := make([]*mesh.Workload, 0, len(st.workloads))
	for _, w := range st.workloads {
		workloads = append(workloads, w)
	}
	var vss []*mesh.VirtualService
	var drs []*mesh.DestinationRule
	var pas []*mesh.PeerAuthentication
	var aps []*mesh.AuthorizationPolicy
	var ras []*mesh.RequestAuthentication
	for _, r := range st.resources {
		switch spec := r.Spec.(type) {
		case *networking.VirtualService:
			vss = append(vss, &mesh.VirtualService{Name: r.Name, Namespace: r.Namespace, Spec: spec})
		case *networking.DestinationRule:
			drs = append(drs, &mesh.DestinationRule{Name: r.Name, Namespace: r.Namespace, Spec: spec})
		case *securityv1beta1.PeerAuthentication:
			pas = append(pas, &mesh.PeerAuthentication{Name: r.Name, Namespace: r.Namespace, Spec: spec})
		case *securityv1beta1.AuthorizationPolicy:
			aps = append(aps, &mesh.AuthorizationPolicy{Name: r.Name, Namespace: r.Namespace, DryRun: config.DryRun(r), Spec: spec})
		case *securityv1beta1.RequestAuthentication:
			ras = append(ras, &mesh.RequestAuthentication{Name: r.Name, Namespace: r.Namespace, Spec: spec})
		}
	}
	snap := mesh.NewSnapshot(strconv.FormatInt(st.revision, 10), "", workloads, vss, drs)
	snap.Security = st.security
	snap.SetPolicies(pas, aps, ras)
	snap.JWKS = st.keys.keysFor(snap.RequestAuthentications)
	return snap
}

// Workloads lists the registered workloads sorted by namespace and ID.
func (st *state) Workloads() []*mesh.Workload {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]*mesh.Workload, 0, len(st.workloads))
	for _, w := range st.workloads {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// debounce calls publish with a fresh snapshot after changes settle: once
// no change has arrived for quiet, or at the latest maxDelay after the first
// change of a burst.
func (st *state) debounce(ctx context.Context, quiet, maxDelay time.Duration, publish func(*mesh.Snapshot)) {
	for {
		select {
		case <-st.changed:
		case <-ctx.Done():
			return
		}
		deadline := time.After(maxDelay)
		timer := time.NewTimer(quiet)
	burst:
		for {
			select {
			case <-st.changed:
				timer.Reset(quiet)
			case <-timer.C:
				break burst
			case <-deadline:
				timer.Stop()
				break burst
			case <-ctx.Done():
				timer.Stop()
				return
			}
		}
		publish(st.snapshot())
	}
}

// errNotFound marks API lookups of absent resources.
var errNotFound = errors.New("not found")

func notFound(kind config.Kind, ns, name string) error {
	return fmt.Errorf("%s %s/%s: %w", kind, ns, name, errNotFound)
}
