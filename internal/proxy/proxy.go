// Package proxy is weft-proxy's root: it wires the xDS client, the
// compiled runtime configuration, the forwarding engine, the inbound and
// outbound listeners and the admin server together.
//
// Configuration flows one way. Each response the xDS client accepts is
// compiled into one immutable forward.Config and published with a single
// atomic pointer store; requests load the pointer once, so requests in
// flight finish on the configuration they started with. While the control
// plane is unreachable, the last published configuration keeps serving.
package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/forward"
	"github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/proxy/listener"
	"github.com/weft-mesh/weft/internal/proxy/mtls"
	"github.com/weft-mesh/weft/internal/proxy/tcpproxy"
	"github.com/weft-mesh/weft/internal/proxy/xdsclient"
)

// Proxy is one running sidecar. Create it with New, then call Serve once.
type Proxy struct {
	opts Options
	log  *slog.Logger

	// cfg is what requests read: nil until the first full configuration.
	cfg atomic.Pointer[forward.Config]
	// dump is what /config_dump shows about the last compile.
	dump     atomic.Pointer[compiled]
	draining atomic.Bool

	transports *forward.Transports
	engine     *forward.Engine
	conn       *grpc.ClientConn // to the control plane: xDS and CA
	xds        *xdsclient.Client
	// agent is the identity agent; nil when the proxy has no token (only
	// possible with InsecureXDS), and then the proxy has no certificate.
	agent    *identity.Agent
	outbound *listener.Server
	inbound  *listener.Server
	admin    *http.Server
	adminLn  net.Listener

	// Owned by the xDS client's goroutine (apply).
	clusters map[string]builtCluster
	// sec is the compiled security state (compile.go); inboundPolicy is
	// what the inbound listener reads per connection.
	sec           security
	inboundPolicy atomic.Pointer[listener.Policy]
	// tcpStats counts a TCP workload's inbound connections.
	tcpStats tcpproxy.Stats

	// upstreams are the app's TCP upstreams (Options.Upstreams), bound.
	upstreams []upstreamListener
	// roots is the trust bundle of the last compile, for upstream mTLS;
	// tcpSessions caches their TLS sessions for resumption.
	roots       atomic.Pointer[mtls.Roots]
	tcpSessions tls.ClientSessionCache
	tcpOutStats tcpproxy.Stats
}

// upstreamListener is one bound upstream listener and its forwarder.
type upstreamListener struct {
	ln  net.Listener
	out *tcpproxy.Outbound
}

// Addrs are the addresses a proxy is bound to.
type Addrs struct {
	Outbound string
	Inbound  string
	Admin    string
}

// Run starts a proxy with opts and serves until ctx ends, then drains and
// returns nil. It returns an error if the proxy cannot start or a listener
// fails.
func Run(ctx context.Context, opts Options) error {
	p, err := New(opts)
	if err != nil {
		return err
	}
	return p.Serve(ctx)
}

// New validates opts, binds the outbound, inbound and admin sockets (so
// that ":0" addresses are resolved and reported to the control plane) and
// returns the proxy, not yet serving. The sockets are released by Serve;
// to release them without serving, call Serve with a cancelled context.
func New(opts Options) (*Proxy, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("invalid options: %w", err)
	}
	p := &Proxy{opts: opts, log: opts.Logger.With("component", "proxy"), transports: forward.NewTransports()}
	if opts.InsecureXDS {
		p.log.Warn("xDS and CA are dialled WITHOUT TLS; use only for tests", "control_plane", opts.ControlPlane)
	}
	conn, err := xdsclient.Dial(opts.ControlPlane, xdsclient.DialConfig{Insecure: opts.InsecureXDS, CAFile: opts.CAFile, TokenFile: opts.TokenFile})
	if err != nil {
		return nil, err
	}
	p.conn = conn
	if opts.TokenFile != "" {
		if p.agent, err = identity.NewAgent(identity.AgentOptions{
			Conn: conn, TokenFile: opts.TokenFile, Namespace: opts.Namespace, ServiceAccount: opts.ServiceAccount,
			Logger: opts.Logger.With("component", "identity"),
		}); err != nil {
			conn.Close()
			return nil, err
		}
	}
	p.engine = forward.New(&p.cfg, opts.Logger.With("component", "forward"))

	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
		conn.Close()
	}
	for _, addr := range []string{opts.OutboundAddr, opts.InboundAddr, opts.AdminAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("binding %s: %w", addr, err)
		}
		lns = append(lns, ln)
	}
	for _, u := range opts.Upstreams {
		ln, err := net.Listen("tcp", u.LocalAddr)
		if err != nil {
			for _, up := range p.upstreams {
				up.ln.Close()
			}
			closeAll()
			return nil, fmt.Errorf("binding upstream %s.%s:%d at %s: %w", u.Service, cmp.Or(u.Namespace, opts.Namespace), u.Port, u.LocalAddr, err)
		}
		p.upstreams = append(p.upstreams, upstreamListener{ln: ln, out: &tcpproxy.Outbound{
			Cluster: u.clusterName(opts.Namespace), Resolve: p.resolveTCP,
			Log: opts.Logger.With("component", "tcpproxy", "upstream", u.LocalAddr), Stats: &p.tcpOutStats,
		}})
	}
	p.tcpSessions = tls.NewLRUClientSessionCache(64)
	p.outbound = listener.New("outbound", lns[0], p.engine.Handler("outbound"), opts.Logger.With("component", "listener", "listener", "outbound"))
	p.inbound = listener.New("inbound", lns[1], p.engine.Handler("inbound"), opts.Logger.With("component", "listener", "listener", "inbound"))
	p.inbound.SetPolicy(p.inboundPolicy.Load)
	p.adminLn = lns[2]
	p.admin = p.newAdminServer()

	xds, err := xdsclient.New(xdsclient.Options{
		ControlPlane: opts.ControlPlane,
		Conn:         conn,
		Node: xdsclient.NodeInfo{
			Service:        opts.Service,
			Namespace:      opts.Namespace,
			ServiceAccount: opts.ServiceAccount,
			Labels:         opts.Labels,
			ServicePort:    opts.ServicePort,
			Protocol:       opts.Protocol,
			InboundAddr:    lns[1].Addr().String(),
			OutboundAddr:   lns[0].Addr().String(),
			AppAddr:        opts.AppAddr,
			AdminAddr:      lns[2].Addr().String(),
		},
		OnUpdate: p.apply,
		Logger:   opts.Logger.With("component", "xdsclient"),
	})
	if err != nil {
		closeAll()
		return nil, err
	}
	p.xds = xds
	return p, nil
}

// Addrs returns the bound addresses.
func (p *Proxy) Addrs() Addrs {
	return Addrs{Outbound: p.outbound.Addr().String(), Inbound: p.inbound.Addr().String(), Admin: p.adminLn.Addr().String()}
}

// NodeID is the xDS node ID the proxy identifies itself with.
func (p *Proxy) NodeID() string { return p.xds.NodeID() }

// Identity is the proxy's certificate source for TLS: the identity agent,
// or nil when the proxy runs without a token (InsecureXDS only). Its
// Certificate is nil until the first SVID arrives.
func (p *Proxy) Identity() identity.Source {
	if p.opts.Identity != nil {
		return p.opts.Identity
	}
	if p.agent == nil {
		return nil
	}
	return p.agent
}

// Serve runs the listeners, the admin server and the xDS client until ctx
// ends, then drains: it stops accepting, lets requests in flight finish for
// up to Options.DrainTimeout, aborts the rest, and returns nil. If a
// listener fails, Serve drains the others and returns the error.
func (p *Proxy) Serve(ctx context.Context) error {
	// The xDS client outlives ctx until draining is over, so the config
	// stays current for the requests still in flight.
	xdsCtx, stopXDS := context.WithCancel(context.WithoutCancel(ctx))
	defer stopXDS()

	var wg sync.WaitGroup
	failed := make(chan error, 4+len(p.upstreams))
	for _, s := range []*listener.Server{p.outbound, p.inbound} {
		wg.Go(func() {
			if err := s.Serve(); err != nil {
				failed <- fmt.Errorf("%s listener: %w", s.Name(), err)
			}
		})
	}
	for _, u := range p.upstreams {
		wg.Go(func() {
			if err := u.out.ServeListener(u.ln); err != nil {
				failed <- fmt.Errorf("upstream listener %s: %w", u.ln.Addr(), err)
			}
		})
	}
	wg.Go(func() {
		if err := p.admin.Serve(p.adminLn); !errors.Is(err, http.ErrServerClosed) {
			failed <- fmt.Errorf("admin server: %w", err)
		}
	})
	wg.Go(func() {
		if err := p.xds.Run(xdsCtx); err != nil {
			failed <- err
		}
	})
	if p.agent != nil {
		wg.Go(func() { _ = p.agent.Run(xdsCtx) })
	}
	if p.opts.OnReady != nil {
		wg.Go(func() { p.awaitReady(xdsCtx) })
	}
	p.log.Info("weft-proxy started", "node", p.xds.NodeID(), "control_plane", p.opts.ControlPlane,
		"outbound", p.outbound.Addr().String(), "inbound", p.inbound.Addr().String(), "admin", p.adminLn.Addr().String())

	var err error
	select {
	case <-ctx.Done():
	case err = <-failed:
		p.log.Error("shutting down after a failure", "err", err)
	}
	p.drain()
	stopXDS()
	wg.Wait()
	p.conn.Close()
	p.transports.CloseIdleConnections()
	p.log.Info("weft-proxy stopped")
	return err
}

// awaitReady calls Options.OnReady once the proxy is first ready, unless
// ctx ends before. Readiness is made by two goroutines (the xDS client's
// apply and the identity agent), so it is polled, briefly, rather than
// signalled from both.
func (p *Proxy) awaitReady(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready, _ := p.readiness(); ready {
			p.opts.OnReady()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// drain stops the listeners gracefully within the drain timeout, then the
// admin server.
func (p *Proxy) drain() {
	p.draining.Store(true)
	for _, u := range p.upstreams {
		u.ln.Close()
	}
	p.log.Info("draining", "timeout", p.opts.DrainTimeout, "in_flight", p.engine.InFlight())
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range []*listener.Server{p.outbound, p.inbound} {
		wg.Go(func() { _ = s.Shutdown(ctx) })
	}
	wg.Wait()

	// Connections closed at the deadline abort their requests at once; give
	// those handlers a moment to return so nothing outlives Serve.
	for deadline := time.Now().Add(time.Second); p.engine.InFlight() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}

	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	if err := p.admin.Shutdown(actx); err != nil {
		_ = p.admin.Close()
	}
}

// resolveTCP finds an upstream's cluster in the current configuration,
// with the TLS configuration for its endpoints: mTLS with the server's
// SPIFFE ID checked, and no application protocol (the bytes are the
// app's own).
func (p *Proxy) resolveTCP(name string) (*cluster.Cluster, *tls.Config, error) {
	cfg := p.cfg.Load()
	if cfg == nil {
		return nil, nil, errors.New("no configuration from the control plane yet")
	}
	c := cfg.Clusters[name]
	if c == nil {
		return nil, nil, fmt.Errorf("cluster %s not received: is the service in the mesh?", name)
	}
	t := c.TLS()
	if t == nil {
		return c, nil, nil
	}
	roots := p.roots.Load()
	if roots == nil {
		return nil, nil, errors.New("trust bundle " + xdsclient.RootCASecret + " not received")
	}
	tc := mtls.ClientConfig(roots, p.Identity(), t.SNI, t.SubjectAltNames, p.tcpSessions)
	tc.NextProtos = nil
	return c, tc, nil
}
