// Package controlplane is the root of `weft control-plane`: it wires the
// store, the registry, the ADS server and the HTTP API, and keeps the mesh
// model current as config and registrations change.
package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/weft-mesh/weft/internal/apiclient"
	"github.com/weft-mesh/weft/internal/ca"
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

	// TrustDomain is the mesh's SPIFFE trust domain (default cluster.local).
	// It cannot change once the CA root exists in the store.
	TrustDomain string
	// WorkloadCertTTL is the lifetime of workload certificates (default
	// 24h, at least 1m); proxies renew at half of it.
	WorkloadCertTTL time.Duration
	// CACertFile, CAKeyFile and CAChainFile, all or none, make the CA an
	// intermediate of the operator's root (see ca.Options).
	CACertFile, CAKeyFile, CAChainFile string
	// InsecureXDS serves xDS and the CA in plaintext, for tests. Tokens are
	// still required.
	InsecureXDS bool
	// RootNamespace holds mesh-wide policy (default istio-system).
	RootNamespace string
	// PathNormalization is BASE, MERGE_SLASHES (default) or
	// DECODE_AND_MERGE_SLASHES.
	PathNormalization string
	// NoLocalRecord skips recording this control plane for CLIs on the same
	// host (see apiclient.LocalRecord).
	NoLocalRecord bool

	// forceAPITLS serves the API over TLS even on loopback, for tests.
	forceAPITLS bool

	Logger *slog.Logger
	// Ready, if set, is called with the bound addresses once both servers
	// accept connections.
	Ready func(xdsAddr, httpAddr string)
}

// Run serves until ctx is done, then stops the servers and the store.
func Run(ctx context.Context, opts Options) error {
	opts.defaults()
	log := opts.Logger
	if err := opts.validateSecurity(); err != nil {
		return err
	}

	// Bind the operator's ports before anything else: a taken port fails
	// at once, and the embedded etcd, which binds ports of its own
	// choosing, cannot take one of them first. The servers close them when
	// they stop; the deferred closes cover the returns before that.
	xdsLis, err := net.Listen("tcp", opts.XDSAddr)
	if err != nil {
		return fmt.Errorf("listen for xds on %s: %w", opts.XDSAddr, err)
	}
	defer xdsLis.Close()
	httpLis, err := net.Listen("tcp", opts.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen for http api on %s: %w", opts.HTTPAddr, err)
	}
	defer httpLis.Close()

	st, err := openStore(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Close()

	authority, err := ca.Open(ctx, st, ca.Options{
		TrustDomain: opts.TrustDomain, WorkloadCertTTL: opts.WorkloadCertTTL,
		CertFile: opts.CACertFile, KeyFile: opts.CAKeyFile, ChainFile: opts.CAChainFile,
		Logger: log.With("component", "ca"),
	})
	if err != nil {
		return err
	}
	adminToken, err := ensureAdminToken(ctx, st)
	if err != nil {
		return err
	}
	var tokenFile, caFile string
	if opts.DataDir != "" {
		if tokenFile, caFile, err = writeDataFiles(opts.DataDir, adminToken, authority.TrustBundlePEM()); err != nil {
			return err
		}
	} else {
		log.Warn("no --data-dir: the admin token and trust bundle are not written to files; get them from the store")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	certs, err := authority.ServingCerts(servingHosts(xdsLis.Addr().String(), httpLis.Addr().String(), opts.XDSAddr, opts.HTTPAddr))
	if err != nil {
		return fmt.Errorf("issue the control plane's serving certificate: %w", err)
	}
	xdsOpts := xds.Options{Logger: log.With("component", "xds"), Registrar: registrar{reg: registry.New(st, opts.RegistrationGrace)}, Authenticator: authority}
	if opts.InsecureXDS {
		log.Warn("xDS and CA are served WITHOUT TLS; use only for tests", "xds", xdsLis.Addr().String())
	} else {
		xdsOpts.ServerOptions = []grpc.ServerOption{grpc.Creds(credentials.NewTLS(certs.TLSConfig("h2")))}
	}
	xdsServer := xds.New(ctx, xdsOpts)
	securityv1alpha1.RegisterIstioCertificateServiceServer(xdsServer, ca.NewService(authority, log.With("component", "ca")))
	mirror := newState(st, log.With("component", "state"), mesh.Security{
		TrustDomain:       authority.TrustDomain(),
		TrustBundlePEM:    authority.TrustBundlePEM(),
		RootNamespace:     opts.RootNamespace,
		PathNormalization: opts.PathNormalization,
	})
	go mirror.run(ctx)
	go mirror.debounce(ctx, opts.Debounce, 10*opts.Debounce, func(snap *mesh.Snapshot) {
		start := time.Now()
		xdsServer.Update(snap)
		log.Debug("pushed", "version", snap.Version, "services", len(snap.Services), "took", time.Since(start))
	})

	a := &api{log: log.With("component", "api"), store: st, state: mirror, xds: xdsServer, ca: authority, adminToken: adminToken}
	httpServer := &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// The API serves TLS unless it is reachable from this machine only.
	apiTLS := !apiclient.IsLoopbackAddr(httpLis.Addr().String()) || opts.forceAPITLS
	apiScheme := "http"
	if apiTLS {
		apiScheme = "https"
		httpServer.TLSConfig = certs.TLSConfig("h2", "http/1.1")
		httpLis = tls.NewListener(httpLis, httpServer.TLSConfig)
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
	log.Info("control plane serving", "xds", xdsLis.Addr().String(), "xds_tls", !opts.InsecureXDS,
		"http", httpLis.Addr().String(), "http_tls", apiTLS, "data_dir", opts.DataDir, "admin_token_file", tokenFile, "trust_bundle_file", caFile)
	if !opts.NoLocalRecord && tokenFile != "" {
		if path, err := apiclient.WriteLocalRecord(apiclient.LocalRecord{
			Server:   apiScheme + "://" + localAddr(httpLis.Addr().String()),
			HTTPAddr: httpLis.Addr().String(), XDSAddr: xdsLis.Addr().String(),
			DataDir: filepath.Dir(tokenFile), TokenFile: tokenFile, CAFile: caFile, PID: os.Getpid(),
		}); err != nil {
			log.Warn("could not record this control plane for local CLIs; they need --token-file", "err", err)
		} else {
			defer apiclient.RemoveLocalRecord(path, os.Getpid())
		}
	}
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
	if o.RootNamespace == "" {
		o.RootNamespace = DefaultRootNamespace
	}
	if o.PathNormalization == "" {
		o.PathNormalization = DefaultPathNormalization
	}
}

// localAddr is how a client on this machine reaches a bound address: an
// unspecified host becomes loopback.
func localAddr(bound string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
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
