package listener

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/framing"
	"github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/proxy/mtls"
	"github.com/weft-mesh/weft/internal/proxy/peer"
)

// DefaultHandshakeTimeout bounds how long a new connection may take to send
// its first byte and, for TLS, to complete the handshake.
const DefaultHandshakeTimeout = 10 * time.Second

// tlsRecordHandshake is the first byte of every TLS connection: a
// handshake record carrying the ClientHello. No HTTP/1.x method and no
// HTTP/2 preface starts with it.
const tlsRecordHandshake = 0x16

// Policy says how a listener treats each new connection: the inbound
// listener's filter chains, compiled. A connection is classified when it
// is accepted, with the policy in force at that moment; established
// connections keep the policy they were accepted with.
type Policy struct {
	// Inspect classifies each connection as TLS or plaintext by its first
	// byte (the tls_inspector). When false, every connection is plaintext
	// and served as such.
	Inspect bool
	// TLS, when set, terminates TLS connections with this configuration
	// (client certificates verified); when nil, TLS connections are
	// closed.
	TLS *tls.Config
	// Identity is the proxy's own certificate source, for the local
	// SPIFFE ID recorded in peer.Info.
	Identity identity.Source
	// Plaintext serves plaintext connections; when false they are closed.
	Plaintext bool
	// TCP, when set, takes every connection the policy serves instead of
	// the HTTP server (a TCP workload's inbound listener), with what the
	// listener verified about it. It owns the connection and returns when
	// the connection is done.
	TCP func(c net.Conn, info *peer.Info)
}

// PlaintextOnly is the policy of a listener without TLS: every connection
// is served as plaintext, without inspection.
var PlaintextOnly = &Policy{Plaintext: true}

// Stats are a listener's connection counters.
type Stats struct {
	TLS               atomic.Uint64 // TLS connections served
	TLSResumed        atomic.Uint64 // of those, resumed sessions (no full handshake)
	Plaintext         atomic.Uint64 // plaintext connections served
	RefusedPlaintext  atomic.Uint64 // plaintext connections closed by policy (STRICT)
	RefusedTLS        atomic.Uint64 // TLS connections closed by policy (DISABLE)
	HandshakeFailures atomic.Uint64 // TLS handshakes that failed (bad or unverified client certificate, timeout, ...)
}

// detector is a net.Listener that classifies each accepted connection in
// its own goroutine (peek, TLS handshake) and hands the connections the
// policy allows to the HTTP server. TLS connections are handed over as
// *tls.Conn, handshake done, so net/http sees TLS and negotiates HTTP/2 by
// ALPN.
type detector struct {
	inner   net.Listener
	policy  func() *Policy
	timeout time.Duration
	log     *slog.Logger
	stats   *Stats
	local   mtls.LocalID

	ready chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu      sync.Mutex
	pending map[net.Conn]struct{} // being classified; closed by Close
	tcp     map[net.Conn]struct{} // served by a Policy's TCP handler; closed by Close
	infos   sync.Map              // net.Conn handed over -> *peer.Info, taken by the server's ConnContext
}

func newDetector(inner net.Listener, policy func() *Policy, timeout time.Duration, stats *Stats, log *slog.Logger) *detector {
	d := &detector{
		inner: inner, policy: policy, timeout: timeout, stats: stats, log: log,
		ready:   make(chan net.Conn),
		errc:    make(chan error, 1),
		done:    make(chan struct{}),
		pending: map[net.Conn]struct{}{},
		tcp:     map[net.Conn]struct{}{},
	}
	d.wg.Go(d.acceptLoop)
	return d
}

func (d *detector) Accept() (net.Conn, error) {
	select {
	case c := <-d.ready:
		return c, nil
	case err := <-d.errc:
		return nil, err
	case <-d.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, closes the connections still being classified
// and waits for the goroutines classifying them.
func (d *detector) Close() error {
	var err error
	d.once.Do(func() {
		close(d.done)
		err = d.inner.Close()
		d.mu.Lock()
		for c := range d.pending {
			c.Close()
		}
		for c := range d.tcp {
			c.Close()
		}
		d.mu.Unlock()
		d.wg.Wait()
	})
	return err
}

func (d *detector) Addr() net.Addr { return d.inner.Addr() }

func (d *detector) acceptLoop() {
	var delay time.Duration
	for {
		c, err := d.inner.Accept()
		if err != nil {
			select {
			case <-d.done:
				return
			default:
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// As net/http does for temporary accept errors (EMFILE...).
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				d.log.Warn("accept failed; retrying", "err", err, "retry_in", delay)
				select {
				case <-time.After(delay):
					continue
				case <-d.done:
					return
				}
			}
			d.errc <- err
			return
		}
		delay = 0
		pol := d.policy()
		if pol == nil {
			pol = PlaintextOnly
		}
		if !pol.Inspect {
			if !pol.Plaintext {
				d.stats.RefusedPlaintext.Add(1)
				c.Close()
				continue
			}
			d.stats.Plaintext.Add(1)
			if pol.TCP != nil {
				d.serveTCP(pol, c, addrInfo(c))
				continue
			}
			d.handOver(framing.NewConn(c), nil)
			continue
		}
		d.mu.Lock()
		d.pending[c] = struct{}{}
		d.mu.Unlock()
		d.wg.Go(func() { d.classify(c, pol) })
	}
}

// classify peeks at the first byte of c and serves, upgrades or closes it
// as pol says.
func (d *detector) classify(c net.Conn, pol *Policy) {
	served := false
	defer func() {
		d.mu.Lock()
		delete(d.pending, c)
		d.mu.Unlock()
		if !served {
			c.Close()
		}
	}()
	_ = c.SetDeadline(time.Now().Add(d.timeout))
	first, pc, err := peekByte(c)
	if err != nil {
		d.log.Debug("connection closed before its first byte", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	if first != tlsRecordHandshake {
		if !pol.Plaintext {
			d.stats.RefusedPlaintext.Add(1)
			d.log.Debug("plaintext connection refused: mTLS is required", "remote", c.RemoteAddr().String())
			return
		}
		_ = c.SetDeadline(time.Time{})
		d.stats.Plaintext.Add(1)
		if pol.TCP != nil {
			served = d.serveTCP(pol, pc, addrInfo(c))
			return
		}
		served = d.handOver(framing.NewConn(pc), nil)
		return
	}
	if pol.TLS == nil {
		d.stats.RefusedTLS.Add(1)
		d.log.Debug("TLS connection refused: this listener serves plaintext only", "remote", c.RemoteAddr().String())
		return
	}
	tc := tls.Server(pc, pol.TLS)
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	err = tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		d.stats.HandshakeFailures.Add(1)
		d.log.Debug("TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	d.stats.TLS.Add(1)
	info := d.tlsInfo(tc, pol)
	if info.Resumed {
		d.stats.TLSResumed.Add(1)
	}
	if pol.TCP != nil {
		served = d.serveTCP(pol, tc, info)
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		// HTTP/2 frames every message itself: nothing to guard, and
		// net/http must see the *tls.Conn to serve HTTP/2 on it.
		served = d.handOver(tc, info)
		return
	}
	served = d.handOver(framing.NewConn(tc), info)
}

// serveTCP gives c to the policy's TCP handler in a goroutine of its own,
// closing it with the listener. It reports false if the listener closed
// first.
func (d *detector) serveTCP(pol *Policy, c net.Conn, info *peer.Info) bool {
	d.mu.Lock()
	select {
	case <-d.done:
		d.mu.Unlock()
		c.Close()
		return false
	default:
	}
	d.tcp[c] = struct{}{}
	d.mu.Unlock()
	go func() {
		defer func() {
			d.mu.Lock()
			delete(d.tcp, c)
			d.mu.Unlock()
		}()
		pol.TCP(c, info)
	}()
	return true
}

// handOver gives c to the HTTP server, with info for its ConnContext; nil
// info means plaintext. It reports false if the listener closed first.
func (d *detector) handOver(c net.Conn, info *peer.Info) bool {
	if info != nil {
		d.infos.Store(c, info)
	}
	select {
	case d.ready <- c:
		return true
	case <-d.done:
		d.infos.Delete(c)
		c.Close()
		return false
	}
}

func (d *detector) tlsInfo(tc *tls.Conn, pol *Policy) *peer.Info {
	cs := tc.ConnectionState()
	info := addrInfo(tc)
	info.TLS = true
	info.SNI = cs.ServerName
	info.Resumed = cs.DidResume
	if len(cs.PeerCertificates) > 0 {
		// Verified in the handshake (VerifyConnection), so these cannot
		// fail here.
		info.SpiffeID, _ = mtls.SpiffeID(cs.PeerCertificates[0])
		info.LeafSHA256 = sha256.Sum256(cs.PeerCertificates[0].Raw)
	}
	if pol.Identity != nil {
		info.LocalSpiffeID = d.local.Of(pol.Identity.Certificate())
	}
	return info
}

// takeInfo returns the peer info recorded for c when it was classified, or
// the plaintext info of its addresses.
func (d *detector) takeInfo(c net.Conn) *peer.Info {
	if v, ok := d.infos.LoadAndDelete(c); ok {
		return v.(*peer.Info)
	}
	return addrInfo(c)
}

func addrInfo(c net.Conn) *peer.Info {
	info := &peer.Info{}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		info.RemoteAddr = a.AddrPort()
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		info.LocalPort = uint16(a.Port)
	}
	return info
}

var _ net.Listener = (*detector)(nil)
