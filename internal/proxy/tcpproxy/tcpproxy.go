// Package tcpproxy proxies opaque TCP connections. Inbound, for a TCP
// workload: the network RBAC filters judge each connection once, by what
// the listener verified about it (the peer's SPIFFE ID, addresses, SNI); a
// denied connection is closed, an allowed one is joined to a new
// connection to the app. Outbound, for an app's declared upstreams: each
// connection to a local listener is joined to a connection to the
// service, over mTLS when the service runs sidecars. Bytes are copied both
// ways until both sides are done.
package tcpproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/cluster"
	"github.com/weft-mesh/weft/internal/proxy/filter"
	"github.com/weft-mesh/weft/internal/proxy/filter/rbac"
	"github.com/weft-mesh/weft/internal/proxy/peer"
)

// Stats are the inbound TCP proxy's counters.
type Stats struct {
	Proxied      atomic.Uint64 // connections joined to the app
	Denied       atomic.Uint64 // connections closed by RBAC
	ConnectFails atomic.Uint64 // connections closed because the app could not be reached
}

// Inbound proxies one listener's connections to one cluster (the app).
// It is immutable; a new configuration makes a new Inbound, and
// connections keep the one they were accepted with.
type Inbound struct {
	// RBAC are the network RBAC filters, in order.
	RBAC []*rbac.Filter
	// Cluster is the app's cluster; nil (not received yet) closes every
	// connection.
	Cluster *cluster.Cluster
	// ClusterName names it in logs, also when it is nil.
	ClusterName string
	Log         *slog.Logger
	Stats       *Stats
}

// Serve handles one accepted connection, already classified (and, for
// TLS, handshaken) by the listener, whose verified attributes are info.
// It returns when the connection is closed.
func (in *Inbound) Serve(c net.Conn, info *peer.Info) {
	defer c.Close()
	req := filter.NewConnRequest(info, c.LocalAddr(), in.Log)
	for _, f := range in.RBAC {
		if !f.AllowConnection(req) {
			in.Stats.Denied.Add(1)
			in.Log.Debug("rbac: connection denied", "remote", info.RemoteAddr.String(), "principal", info.SpiffeID)
			return
		}
	}
	if in.Cluster == nil {
		in.Stats.ConnectFails.Add(1)
		in.Log.Warn("connection closed: cluster not received", "cluster", in.ClusterName)
		return
	}
	connect(c, in.Cluster, in.ClusterName, nil, in.Log, in.Stats)
}

// connect joins c to a new connection to one of cl's endpoints (round
// robin), over TLS when tlsCfg is set, counting the outcome in stats.
func connect(c net.Conn, cl *cluster.Cluster, name string, tlsCfg *tls.Config, log *slog.Logger, stats *Stats) {
	ep, ok := cl.Pick()
	if !ok {
		stats.ConnectFails.Add(1)
		log.Warn("connection closed: cluster has no endpoint", "cluster", name)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cl.ConnectTimeout())
	var (
		up  net.Conn
		err error
	)
	if tlsCfg != nil {
		up, err = (&tls.Dialer{Config: tlsCfg}).DialContext(ctx, "tcp", ep.Address)
	} else {
		up, err = (&net.Dialer{}).DialContext(ctx, "tcp", ep.Address)
	}
	cancel()
	if err != nil {
		stats.ConnectFails.Add(1)
		log.Warn("connection closed: endpoint unreachable", "cluster", name, "endpoint", ep.Address, "err", err)
		return
	}
	defer up.Close()
	stats.Proxied.Add(1)
	Join(c, up)
}

// Join copies bytes between a and b in both directions until each side
// has finished sending: when one side's reads end, the other side's
// writes are closed (a half-close, so a client that shuts down its
// sending side still gets the whole answer). It returns when both
// directions are done; the caller closes a and b.
func Join(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Go(func() { pipe(b, a) })
	pipe(a, b)
	wg.Wait()
}

// pipe copies from src to dst, then closes dst's sending side, or, when
// the copy failed (a reset), both connections so the other direction
// ends too.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		// A reset on one side: nothing more can cross in either
		// direction. Unblock the other copy now.
		_ = src.SetDeadline(time.Now())
		_ = dst.SetDeadline(time.Now())
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = dst.SetDeadline(time.Now())
}

// Resolver finds a cluster in the proxy's current configuration, with the
// TLS configuration to reach its endpoints (nil for plaintext). It
// returns an error saying why when the cluster cannot be used.
type Resolver func(cluster string) (*cluster.Cluster, *tls.Config, error)

// Outbound forwards the connections an app opens to a local listener to
// one mesh service's cluster: over mTLS, with the server's SPIFFE ID
// checked, when the service runs sidecars; in plaintext otherwise.
type Outbound struct {
	// Cluster names the service's cluster.
	Cluster string
	Resolve Resolver
	Log     *slog.Logger
	Stats   *Stats
}

// ServeListener accepts connections on ln until it is closed, serving
// each in a goroutine of its own.
func (o *Outbound) ServeListener(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		go o.Serve(c)
	}
}

// Serve forwards one connection and returns when it is closed.
func (o *Outbound) Serve(c net.Conn) {
	defer c.Close()
	cl, tlsCfg, err := o.Resolve(o.Cluster)
	if err != nil {
		o.Stats.ConnectFails.Add(1)
		o.Log.Warn("connection closed", "cluster", o.Cluster, "err", err)
		return
	}
	connect(c, cl, o.Cluster, tlsCfg, o.Log, o.Stats)
}
