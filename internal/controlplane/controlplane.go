// Package controlplane is the root of `weft control-plane`: it wires the
// store, the registry, the ADS server and the HTTP API, and keeps the mesh
// model current as config and registrations change.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/weft-mesh/weft/internal/mesh"
	"github.com/weft-mesh/weft/internal/registry"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/xds"
)

// Options configures a control plane. Zero values take the defaults noted.
type Options struct {
	// DataDir holds the embedded etcd; required unless EtcdEndpoints is set.
	DataDir string
	// EtcdEndpoints selects an external etcd cluster instead.
	EtcdEndpoints []string
	// XDSAddr is where ADS is served (default 127.0.0.1:15010).
	XDSAddr string
	// HTTPAddr is where the HTTP API is served (default 127.0.0.1:15014).
	HTTPAddr string
	// RegistrationGrace is how long a workload stays registered after its
	// proxy's stream is gone (default 10s).
	RegistrationGrace time.Duration
	// Debounce is the quiet time after a change before a push (default 100ms).
	Debounce time.Duration
	// UnsafeNoFsync speeds up the embedded etcd for tests.
	UnsafeNoFsync bool
	Logger        *slog.Logger
	// Ready, if set, is called with the bound addresses once both servers
	// accept connections.
	Ready func(xdsAddr, httpAddr string)
}

// Run serves until ctx is done, then stops the servers and the store.
func Run(ctx context.Context, opts Options) error {
	opts.defaults()
	log := opts.Logger

	st, err := openStore(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Close()

	xdsLis, err := net.Listen("tcp", opts.XDSAddr)
	if err != nil {
		return fmt.Errorf("listen for xds on %s: %w", opts.XDSAddr, err)
	}
	httpLis, err := net.Listen("tcp", opts.HTTPAddr)
	if err != nil {
		xdsLis.Close()
		return fmt.Errorf("listen for http api on %s: %w", opts.HTTPAddr, err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	reg := registry.New(st, opts.RegistrationGrace)
	xdsServer := xds.New(ctx, xds.Options{Logger: log.With("component", "xds"), Registrar: registrar{reg}})
	mirror := newState(st, log.With("component", "state"))
	go mirror.run(ctx)
	go mirror.debounce(ctx, opts.Debounce, 10*opts.Debounce, func(snap *mesh.Snapshot) {
		start := time.Now()
		xdsServer.Update(snap)
		log.Debug("pushed", "version", snap.Version, "services", len(snap.Services), "took", time.Since(start))
	})

	httpServer := &http.Server{
		Handler:           (&api{log: log.With("component", "api"), store: st, state: mirror, xds: xdsServer}).handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 2)
	go func() { errc <- xdsServer.Serve(xdsLis) }()
	go func() {
		if err := httpServer.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve http api: %w", err)
			return
		}
		errc <- nil
	}()
	log.Info("control plane serving", "xds", xdsLis.Addr().String(), "http", httpLis.Addr().String(), "data_dir", opts.DataDir)
	if opts.Ready != nil {
		opts.Ready(xdsLis.Addr().String(), httpLis.Addr().String())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("control plane stopping")
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	httpServer.Shutdown(shutdownCtx)
	xdsServer.Stop()
	cancel()
	return runErr
}

func (o *Options) defaults() {
	if o.XDSAddr == "" {
		o.XDSAddr = "127.0.0.1:15010"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:15014"
	}
	if o.RegistrationGrace <= 0 {
		o.RegistrationGrace = registry.DefaultGrace
	}
	if o.Debounce <= 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func openStore(ctx context.Context, opts Options) (*store.Store, error) {
	if len(opts.EtcdEndpoints) > 0 {
		return store.OpenExternal(ctx, opts.EtcdEndpoints)
	}
	if opts.DataDir == "" {
		return nil, errors.New("no store: set --data-dir for the embedded etcd or --etcd-endpoints for a cluster")
	}
	return store.OpenEmbedded(ctx, store.EmbeddedOptions{Dir: opts.DataDir, NoFsync: opts.UnsafeNoFsync, Logger: opts.Logger})
}

// registrar adapts the registry to the xDS server's Registrar.
type registrar struct{ reg *registry.Registry }

func (r registrar) Register(ctx context.Context, w *mesh.Workload) (func(), error) {
	lease, err := r.reg.Register(ctx, w)
	if err != nil {
		return nil, err
	}
	return lease.Release, nil
}

var _ xds.Registrar = registrar{}
