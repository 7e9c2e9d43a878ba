// Package cpbench measures weft's control plane at scale (issue 4, point
// 4): it starts the real `weft control-plane` as a separate process, opens
// real ADS streams to it over TLS with tokens, each acting as a weft-proxy
// that ACKs every response, and measures the initial full push, the time
// from one change to every proxy's ACK, and the control plane's memory and
// CPU. The command is bench/cp/cmd/cpbench; docs/PERFORMANCE.md says how
// the figures are taken.
package cpbench

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/weft-mesh/weft/internal/apiclient"
)

// Size is a mesh to simulate.
type Size struct {
	// Proxies is how many simulated proxies keep their ADS stream open and
	// are measured.
	Proxies int `json:"proxies"`
	// Services is how many mesh services there are.
	Services int `json:"services"`
	// Endpoints is how many workloads are registered in all, the proxies
	// included; each service gets Endpoints/Services of them.
	Endpoints int `json:"endpoints"`
	// Namespaces spreads the services over this many namespaces.
	Namespaces int `json:"namespaces"`
}

// Sizes are the modes: issue 4's quick and full sizes, and 1000-proxies,
// the full number of proxies on the quick mesh (every endpoint a proxy),
// which measures the latency target at 1,000 proxies where the full size
// cannot run.
var Sizes = map[string]Size{
	"quick":        {Proxies: 100, Services: 100, Endpoints: 1000, Namespaces: 10},
	"1000-proxies": {Proxies: 1000, Services: 100, Endpoints: 1000, Namespaces: 10},
	"full":         {Proxies: 1000, Services: 1000, Endpoints: 10000, Namespaces: 10},
}

// Config is one run.
type Config struct {
	Mode string // quick, full or custom: names the results file and the doc block
	Size Size
	// AllLive makes every endpoint a live, measured proxy (Proxies is then
	// Endpoints) instead of registering Endpoints-Proxies workloads
	// through streams that close again.
	AllLive bool
	// EndpointChanges and ConfigChanges are how many changes of each kind
	// are measured, one after the other.
	EndpointChanges, ConfigChanges int
	// Weft is the weft binary; Root the repository, which ResultsDir and
	// Doc are relative to. An empty Doc leaves the documentation alone.
	Weft, Root, ResultsDir, Doc string
	// Command is how the run was started, for the record.
	Command string
	// Profile records the control plane with perf during the initial push.
	Profile bool
	// Keep keeps the temporary directory (control plane log, data, perf).
	Keep bool
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Grace is the control plane's --registration-grace: it must outlast
	// the run, since the endpoint-only workloads exist only through it.
	Grace time.Duration
	// MaxRSSMiB stops the run when the control plane's RSS passes it, so
	// that a control plane that cannot fit does not take the machine down.
	MaxRSSMiB float64
	// FullEDS makes the simulated proxies not declare the client feature
	// com.github.weft-mesh.partial-sotw, as weft-proxies before it did:
	// every EDS response then carries every endpoint set.
	FullEDS bool
	Out     io.Writer
}

// BudgetError says that a run stopped at its time bound or memory guard:
// the machine (or the budget) could not hold the size, and the result
// says how far it got.
type BudgetError struct{ Reason string }

func (e *BudgetError) Error() string { return "stopped: " + e.Reason }

// bench is the state of one run.
type bench struct {
	cfg      Config
	res      *Result
	dir      string
	cp       *process
	xdsAddr  string
	api      *apiclient.Client
	tokens   map[string]string // namespace/sa -> token
	proxyCtx context.Context
	stop     context.CancelFunc
	wg       sync.WaitGroup
	conns    []*grpc.ClientConn
	proxies  []*simProxy // the measured ones
	proxyErr atomic.Pointer[error]
	maxRSS   atomic.Int64 // highest VmRSS the sampler saw, KiB
	start    time.Time
	abort    context.CancelCauseFunc

	registered atomic.Int64 // endpoint-only workloads registered
	marker     atomic.Int64 // the initial push's revision, once applied
	perf       *perfRecorder
	tlMu       sync.Mutex
	timeline   []Sample
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Out, "cpbench %6.1fs  %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// Run runs one benchmark. It returns the result even when it fails part
// way, with Incomplete saying where; the caller writes it either way.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	sz := cfg.Size
	if cfg.AllLive {
		sz.Proxies = sz.Endpoints
	}
	if sz.Services < 1 || sz.Proxies < 1 || sz.Endpoints < sz.Services || sz.Endpoints < sz.Proxies || sz.Namespaces < 1 {
		return nil, fmt.Errorf("size %+v: want at least one service and proxy, endpoints >= services and >= proxies", sz)
	}
	cfg.Size = sz
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, &BudgetError{Reason: fmt.Sprintf("the run's time bound of %s passed", cfg.Timeout)})
	defer cancel()
	b := &bench{cfg: cfg, start: time.Now(), tokens: map[string]string{}, abort: abort}
	b.res = &Result{
		Date: b.start.UTC(), Mode: cfg.Mode, Command: cfg.Command, Machine: describeMachine(),
		Size: sz, AllLive: cfg.AllLive, EndpointOnly: sz.Endpoints - sz.Proxies,
	}
	err := b.run(ctx)
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(err, cause) {
		var be *BudgetError
		if errors.As(cause, &be) {
			err = fmt.Errorf("%w (%v)", cause, err)
		}
	}
	b.cleanup()
	b.res.DurationS = time.Since(b.start).Seconds()
	if err != nil {
		b.res.Incomplete = err.Error()
		var be *BudgetError
		if errors.As(err, &be) {
			b.res.Stopped = be.Reason
		}
	}
	b.res.Targets = targets(b.res)
	return b.res, err
}

func (b *bench) run(ctx context.Context) error {
	var err error
	if b.dir, err = os.MkdirTemp("", "cpbench-"); err != nil {
		return err
	}
	if err := b.startControlPlane(ctx); err != nil {
		return err
	}
	b.proxyCtx, b.stop = context.WithCancel(ctx)
	go b.sample(b.proxyCtx)

	idle, err := readProc(b.cp.pid())
	if err != nil {
		return err
	}
	b.res.Memory.IdleRSSMiB = mib(idle.RSSKiB)
	measured0 := b.snapshotCPU()
	defer b.finish(measured0)

	live, parked, extras := makeWorkloads(b.cfg.Size, b.cfg.EndpointChanges)
	if err := b.createTokens(ctx, append(append(live, parked...), extras...)); err != nil {
		return err
	}
	pool, err := b.trustBundle(ctx)
	if err != nil {
		return err
	}

	// Endpoint-only workloads: a real ADS stream each registers the
	// workload and closes; --registration-grace keeps the registration.
	if len(parked) > 0 {
		b.logf("registering %d endpoint-only workloads", len(parked))
		ph, err := b.registerParked(ctx, parked, pool)
		b.res.Register = ph
		if err != nil {
			return err
		}
		b.logf("registered %d endpoint-only workloads in %.1fs (control plane CPU %.1fs)", ph.Count, ph.Seconds, ph.CPUSeconds)
	}

	// The measured proxies: each on its own TLS connection, as real
	// proxies are. The profile covers their connection and the initial
	// push: both are pushes of the whole mesh to every connected proxy.
	if b.cfg.Profile {
		if b.perf, err = startPerf(b.cp.pid(), filepath.Join(b.dir, "perf.data")); err != nil {
			b.res.ProfileNote = err.Error()
			b.logf("no profile: %v", err)
		}
	}
	if s, err := readProc(b.cp.pid()); err == nil {
		b.res.Memory.BeforeProxiesRSSMiB = mib(s.RSSKiB)
	}
	b.logf("connecting %d proxies", len(live))
	firstDial := time.Now()
	if err := b.connectLive(ctx, live, pool); err != nil {
		return err
	}
	b.logf("all %d proxies registered in %.1fs (control plane CPU %.1fs)", len(live), b.res.Connect.Seconds, b.res.Connect.CPUSeconds)
	// Cold start: until the last push the registrations caused is ACKed.
	if _, err := b.settle(ctx, 0); err != nil {
		return err
	}
	b.res.InitialPush.FromFirstDialS = b.lastAck().Sub(firstDial).Seconds()

	// Full push: one apply that changes CDS, EDS, LDS and RDS of every
	// proxy, measured until each proxy ACKed all of them.
	ch, lat, err := b.measureChange(ctx, "full push", live[len(live)-1], func() (int64, error) {
		rev, err := b.apply(ctx, fullPushYAML(live[len(live)-1]))
		b.marker.Store(rev)
		return rev, err
	})
	b.stopPerf("while the proxies connected and during the full push")
	ip := summarize(lat)
	b.res.InitialPush = InitialPush{Revision: ch.Version, Types: ch.Types, Latency: ip, FromFirstDialS: b.res.InitialPush.FromFirstDialS, CPUSeconds: ch.CPUSeconds,
		ProxyBytes: ch.ProxyBytes, CPWriteBytes: ch.CPWriteBytes}
	if err != nil {
		return err
	}
	b.logf("full push (%s): all %d proxies ACKed revision %d in %.2fs (p50 %.2fs; control plane CPU %.1fs)",
		strings.Join(ch.Types, ", "), len(b.proxies), ch.Version, ip.MaxMS/1000, ip.P50MS/1000, ch.CPUSeconds)

	// Steady state.
	v := ch.Version
	if err := b.measureSteady(ctx); err != nil {
		return err
	}
	b.res.PushSize = pushSize(b.proxies[0])

	// Changes, one at a time, each after the mesh has settled.
	var epLat, cfgLat []time.Duration
	for i := 0; i < max(b.cfg.EndpointChanges, b.cfg.ConfigChanges); i++ {
		if i < b.cfg.EndpointChanges {
			ch, lat, err := b.endpointChange(ctx, extras[i], v, pool)
			b.res.Changes = append(b.res.Changes, ch)
			if err != nil {
				return err
			}
			epLat = append(epLat, lat...)
			b.logf("endpoint change %d (%s): p50 %.0fms p99 %.0fms max %.0fms, control plane CPU %.1fs, %s to the proxies",
				i+1, ch.Service, ch.Latency.P50MS, ch.Latency.P99MS, ch.Latency.MaxMS, ch.CPUSeconds, bytesLabel(int(ch.ProxyBytes)))
			if v, err = b.settle(ctx, ch.Version); err != nil {
				return err
			}
		}
		if i < b.cfg.ConfigChanges {
			ch, lat, err := b.configChange(ctx, i, live[i%len(live)])
			b.res.Changes = append(b.res.Changes, ch)
			if err != nil {
				return err
			}
			cfgLat = append(cfgLat, lat...)
			b.logf("config change %d (%s): p50 %.0fms p99 %.0fms max %.0fms, control plane CPU %.1fs, %s to the proxies",
				i+1, ch.Service, ch.Latency.P50MS, ch.Latency.P99MS, ch.Latency.MaxMS, ch.CPUSeconds, bytesLabel(int(ch.ProxyBytes)))
			if v, err = b.settle(ctx, ch.Version); err != nil {
				return err
			}
		}
	}
	b.res.EndpointChange = summarize(epLat)
	b.res.ConfigChange = summarize(cfgLat)

	return nil
}

// finish records the end state of the control plane and the machine,
// however far the run got.
func (b *bench) finish(measured0 cpuMark) {
	if end, err := readProc(b.cp.pid()); err == nil {
		b.res.Memory.FinalRSSMiB = mib(end.RSSKiB)
		b.res.Memory.PeakRSSMiB = mib(end.HWMKiB)
		b.res.CPU.TotalSeconds = end.CPU
	}
	measured1 := b.snapshotCPU()
	if self, err := readProc(os.Getpid()); err == nil {
		b.res.Load = LoadGen{CPUSeconds: measured1.self - measured0.self, PeakRSSMiB: mib(self.HWMKiB)}
	}
	if wall := measured1.at.Sub(measured0.at).Seconds(); wall > 0 {
		other := (measured1.busy - measured0.busy) - (measured1.cp - measured0.cp) - (measured1.self - measured0.self)
		b.res.OtherCPUs = max(0, other/wall)
	}
	p := Progress{EndpointOnlyRegistered: int(b.registered.Load()), Proxies: len(b.proxies), ProxiesRegistered: b.countRegistered()}
	if rev := b.marker.Load(); rev > 0 {
		p.InitialPushStarted = true
		for _, sp := range b.proxies {
			if sp.maxAcked.Load() >= rev {
				p.ProxiesAckedAll++
			}
		}
	}
	b.res.Progress = p
	b.tlMu.Lock()
	b.res.Timeline = b.timeline
	b.tlMu.Unlock()
}

func (b *bench) stopPerf(window string) {
	if b.perf == nil {
		return
	}
	prof, err := b.perf.stop(b.cfg.Out)
	b.perf = nil
	if err != nil {
		b.res.ProfileNote = err.Error()
		return
	}
	prof.Window = window
	b.res.Profile = prof
}

// cpuMark is CPU time so far: the control plane's, the harness's, and the
// machine's busy time, all in seconds.
type cpuMark struct {
	at             time.Time
	cp, self, busy float64
}

func (b *bench) snapshotCPU() cpuMark {
	m := cpuMark{at: time.Now()}
	if s, err := readProc(b.cp.pid()); err == nil {
		m.cp = s.CPU
		b.maxRSS.Store(max(b.maxRSS.Load(), s.RSSKiB))
	}
	if s, err := readProc(os.Getpid()); err == nil {
		m.self = s.CPU
	}
	m.busy, _ = machineBusy()
	return m
}

// sample follows the control plane's RSS until ctx ends, keeps a
// timeline every 2 s, and stops the run if the RSS passes the guard.
func (b *bench) sample(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := readProc(b.cp.pid())
		if err != nil {
			continue
		}
		b.maxRSS.Store(max(b.maxRSS.Load(), s.RSSKiB))
		if b.cfg.MaxRSSMiB > 0 && mib(s.RSSKiB) > b.cfg.MaxRSSMiB {
			b.abort(&BudgetError{Reason: fmt.Sprintf("the control plane's RSS reached %.0f MiB, past the guard of %.0f MiB (-max-rss)", mib(s.RSSKiB), b.cfg.MaxRSSMiB)})
		}
		if s.At.Sub(last) >= 2*time.Second {
			last = s.At
			connected := b.countRegistered()
			b.tlMu.Lock()
			if len(b.timeline) < 2000 {
				b.timeline = append(b.timeline, Sample{T: s.At.Sub(b.start).Seconds(), RSSMiB: mib(s.RSSKiB), CPUSeconds: s.CPU,
					EndpointOnly: int(b.registered.Load()), Proxies: connected})
			}
			b.tlMu.Unlock()
		}
	}
}

// proxiesSoFar returns the measured proxies started so far.
func (b *bench) proxiesSoFar() []*simProxy {
	b.tlMu.Lock()
	defer b.tlMu.Unlock()
	return b.proxies
}

func (b *bench) startControlPlane(ctx context.Context) error {
	var err error
	if b.xdsAddr, err = freeAddr(); err != nil {
		return err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	dataDir := filepath.Join(b.dir, "data")
	args := []string{"control-plane", "--data-dir", dataDir, "--xds-addr", b.xdsAddr, "--http-addr", httpAddr,
		"--registration-grace", b.cfg.Grace.String()}
	b.res.ControlPlane = CPInfo{Binary: b.cfg.Weft, Args: args, Commit: gitCommit(ctx, b.cfg.Root)}
	runDir := filepath.Join(b.dir, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return err
	}
	if b.cp, err = startProcess("control plane", filepath.Join(b.dir, "control-plane.log"),
		[]string{"WEFT_RUNTIME_DIR=" + runDir}, b.cfg.Weft, args...); err != nil {
		return err
	}
	b.logf("control plane pid %d: %s %s", b.cp.pid(), b.cfg.Weft, strings.Join(args, " "))
	b.api = apiclient.New("http://" + httpAddr)
	if err := waitUntil(ctx, b.cp, 60*time.Second, 50*time.Millisecond, "the control plane's API", func() (bool, error) {
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return b.api.Healthy(hctx) == nil, nil
	}); err != nil {
		return err
	}
	token, err := apiclient.ReadToken(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return err
	}
	b.api = apiclient.New("http://"+httpAddr, apiclient.WithToken(token))
	return nil
}

// createTokens makes one token per namespace and service account, as
// `weft token create` does, eight at a time.
func (b *bench) createTokens(ctx context.Context, ws []workload) error {
	var keys []string
	seen := map[string]bool{}
	for _, w := range ws {
		k := w.Namespace + "/" + w.ServiceAccount
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	toks := make([]string, len(keys))
	err := forEach(ctx, len(keys), 8, func(ctx context.Context, i int) error {
		ns, sa, _ := strings.Cut(keys[i], "/")
		tok, err := b.api.CreateToken(ctx, apiclient.TokenRequest{Namespace: ns, ServiceAccount: sa, TTL: "6h"})
		if err != nil {
			return fmt.Errorf("create token for %s: %w", keys[i], err)
		}
		toks[i] = tok.Token
		return nil
	})
	for i, k := range keys {
		b.tokens[k] = toks[i]
	}
	b.logf("created %d tokens", len(keys))
	return err
}

func (b *bench) tokenFor(w workload) string { return b.tokens[w.Namespace+"/"+w.ServiceAccount] }

// trustBundle is `weft ca root`: the pool the proxies verify the xDS
// port's certificate against.
func (b *bench) trustBundle(ctx context.Context) (*x509.CertPool, error) {
	tb, err := b.api.TrustBundle(ctx)
	if err != nil {
		return nil, fmt.Errorf("get the trust bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(tb.PEM)) {
		return nil, errors.New("the trust bundle holds no PEM certificate")
	}
	return pool, nil
}

// registerParked registers ws through short ADS streams, 64 at a time,
// multiplexed over 8 connections.
func (b *bench) registerParked(ctx context.Context, ws []workload, pool *x509.CertPool) (Phase, error) {
	conns := make([]*grpc.ClientConn, 8)
	for i := range conns {
		c, err := dial(b.xdsAddr, pool)
		if err != nil {
			return Phase{}, err
		}
		conns[i] = c
		b.conns = append(b.conns, c)
	}
	m0 := b.snapshotCPU()
	done := &b.registered
	err := forEach(ctx, len(ws), 64, func(ctx context.Context, i int) error {
		p := b.newProxy(ws[i])
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := p.run(sctx, conns[i%len(conns)], true); err != nil {
			return err
		}
		select {
		case <-p.first:
		default:
			return fmt.Errorf("register %s: the stream ended before the first response", ws[i].ID)
		}
		if n := done.Add(1); n%1000 == 0 {
			b.logf("  %d registered", n)
		}
		return nil
	})
	m1 := b.snapshotCPU()
	for _, c := range conns {
		c.Close()
	}
	b.conns = b.conns[:len(b.conns)-len(conns)]
	return Phase{Count: int(done.Load()), Seconds: m1.at.Sub(m0.at).Seconds(), CPUSeconds: m1.cp - m0.cp}, err
}

// connectLive starts the measured proxies, each on its own connection,
// dialling 50 at a time, and waits until every one has had its first
// response (and is therefore registered).
func (b *bench) connectLive(ctx context.Context, ws []workload, pool *x509.CertPool) error {
	m0 := b.snapshotCPU()
	defer func() {
		m1 := b.snapshotCPU()
		b.res.Connect = Phase{Count: b.countRegistered(), Seconds: m1.at.Sub(m0.at).Seconds(), CPUSeconds: m1.cp - m0.cp}
	}()
	sem := make(chan struct{}, 50)
	for _, w := range ws {
		conn, err := dial(b.xdsAddr, pool)
		if err != nil {
			return err
		}
		b.conns = append(b.conns, conn)
		p := b.newProxy(w)
		b.tlMu.Lock()
		b.proxies = append(b.proxies, p)
		b.tlMu.Unlock()
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		go func() {
			select {
			case <-p.first:
			case <-ctx.Done():
			}
			<-sem
		}()
		b.startProxy(p, conn)
		if err := b.failed(); err != nil {
			return err
		}
	}
	return waitUntil(ctx, b.cp, time.Until(deadlineOf(ctx)), 10*time.Millisecond, "every proxy's first response", func() (bool, error) {
		if err := b.failed(); err != nil {
			return false, err
		}
		return b.countRegistered() == len(ws), nil
	})
}

// countRegistered counts the measured proxies that have had their first
// response, and are therefore registered.
func (b *bench) countRegistered() int {
	n := 0
	for _, p := range b.proxiesSoFar() {
		select {
		case <-p.first:
			n++
		default:
		}
	}
	return n
}

func (b *bench) startProxy(p *simProxy, conn *grpc.ClientConn) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := p.run(b.proxyCtx, conn, false); err != nil {
			b.proxyErr.CompareAndSwap(nil, &err)
		}
	}()
}

func (b *bench) failed() error {
	if e := b.proxyErr.Load(); e != nil {
		return *e
	}
	return nil
}

// waitAny waits until every measured proxy has ACKed version v or later
// of some type.
func (b *bench) waitAny(ctx context.Context, v int64, what string) error {
	err := waitUntil(ctx, b.cp, time.Until(deadlineOf(ctx)), 10*time.Millisecond, what, func() (bool, error) {
		if err := b.failed(); err != nil {
			return false, err
		}
		for _, p := range b.proxies {
			if p.maxAcked.Load() < v {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		waiting := 0
		for _, p := range b.proxies {
			if p.maxAcked.Load() < v {
				waiting++
			}
		}
		return fmt.Errorf("%w (%d of %d proxies had not ACKed revision %d)", err, waiting, len(b.proxies), v)
	}
	return nil
}

// latencies returns, for every proxy that reached version v (see
// simProxy.reachedAt), how long after since it did, the versions it
// first ACKed, and the types that got a new version on any proxy.
func (b *bench) latencies(v int64, since time.Time) ([]time.Duration, map[int64]int, []string) {
	var out []time.Duration
	versions := map[int64]int{}
	seen := map[string]bool{}
	for _, p := range b.proxies {
		if r, ok := p.reachedAt(v); ok {
			out = append(out, r.At.Sub(since))
			versions[r.Version]++
			for _, t := range r.Types {
				seen[t] = true
			}
		}
	}
	var types []string
	for _, t := range TypeNames {
		if seen[t] {
			types = append(types, t)
		}
	}
	return out, versions, types
}

// lastAck is when any proxy last ACKed anything.
func (b *bench) lastAck() time.Time {
	var last time.Time
	for _, p := range b.proxies {
		if t := p.lastAckTime(); t.After(last) {
			last = t
		}
	}
	return last
}

// settle waits until every proxy has ACKed all five types, a version at
// least min of some type, and nothing for two seconds; it returns the
// highest version ACKed.
func (b *bench) settle(ctx context.Context, min int64) (int64, error) {
	var v int64
	err := waitUntil(ctx, b.cp, time.Until(deadlineOf(ctx)), 50*time.Millisecond, "the mesh to settle", func() (bool, error) {
		if err := b.failed(); err != nil {
			return false, err
		}
		v = -1
		for _, p := range b.proxies {
			m := p.maxAcked.Load()
			if m < min || p.typesAcked.Load() < numTypes {
				return false, nil
			}
			v = max(v, m)
		}
		return time.Since(b.lastAck()) >= 2*time.Second, nil
	})
	return v, err
}

// measureChange makes one change with do, which returns its revision,
// waits until every proxy has ACKed it and the mesh has settled, and
// measures each proxy's delay from just before do.
func (b *bench) measureChange(ctx context.Context, kind string, w workload, do func() (int64, error)) (Change, []time.Duration, error) {
	ch := Change{Kind: kind, Service: w.Namespace + "/" + w.Service}
	bytes0, wchar0 := b.proxyBytes(), b.cpWriteBytes()
	m0 := b.snapshotCPU()
	rev, err := do()
	if err != nil {
		return ch, nil, err
	}
	if err = b.waitAny(ctx, rev, "every proxy to ACK the "+kind); err == nil {
		_, err = b.settle(ctx, rev)
	}
	m1 := b.snapshotCPU()
	ch.ProxyBytes, ch.CPWriteBytes = b.proxyBytes()-bytes0, b.cpWriteBytes()-wchar0
	lat, versions, types := b.latencies(rev, m0.at)
	ch.Latency, ch.CPUSeconds, ch.WallS = summarize(lat), m1.cp-m0.cp, b.lastAck().Sub(m0.at).Seconds()
	ch.Version, ch.Versions, ch.Types = lowest(versions), len(versions), types
	return ch, lat, err
}

// measureSteady records the control plane's CPU use and RSS with every
// proxy connected and nothing changing.
func (b *bench) measureSteady(ctx context.Context) error {
	const window = 3 * time.Second
	s0, err := readProc(b.cp.pid())
	if err != nil {
		return err
	}
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	s1, err := readProc(b.cp.pid())
	if err != nil {
		return err
	}
	b.res.CPU.SteadyCores = (s1.CPU - s0.CPU) / s1.At.Sub(s0.At).Seconds()
	b.res.CPU.SteadyWindowS = s1.At.Sub(s0.At).Seconds()
	b.res.Memory.SteadyRSSMiB = mib(s1.RSSKiB)
	b.res.Memory.PeakBeforeChangesMiB = mib(s1.HWMKiB)
	b.logf("steady state: control plane RSS %.0f MiB (peak so far %.0f MiB), CPU %.3f cores", mib(s1.RSSKiB), mib(s1.HWMKiB), b.res.CPU.SteadyCores)
	return nil
}

// endpointChange starts one more workload of an existing service, a new
// endpoint for every proxy, and measures until every measured proxy has
// ACKed it. Nothing else writes the store meanwhile, so the first version
// newer than base is the one with the endpoint. The new workload's stream
// is closed afterwards (its registration stays), so the number of proxies
// pushed to stays the same.
func (b *bench) endpointChange(ctx context.Context, w workload, base int64, pool *x509.CertPool) (Change, []time.Duration, error) {
	conn, err := dial(b.xdsAddr, pool)
	if err != nil {
		return Change{Kind: "endpoint"}, nil, err
	}
	defer conn.Close()
	if err := connectNow(ctx, conn); err != nil {
		return Change{Kind: "endpoint"}, nil, err
	}
	p := b.newProxy(w)
	pctx, cancel := context.WithCancel(b.proxyCtx)
	defer cancel()
	done := make(chan error, 1)
	ch, lat, err := b.measureChange(ctx, "endpoint", w, func() (int64, error) {
		go func() { done <- p.run(pctx, conn, false) }()
		return base + 1, nil
	})
	cancel()
	if perr := <-done; err == nil && perr != nil {
		err = perr
	}
	return ch, lat, err
}

// configChange applies a DestinationRule with a subset to one service (a
// new cluster and endpoint set for every proxy) and measures until every
// proxy has ACKed the revision the API answered.
func (b *bench) configChange(ctx context.Context, i int, w workload) (Change, []time.Duration, error) {
	return b.measureChange(ctx, "config", w, func() (int64, error) {
		return b.apply(ctx, destinationRuleYAML(w, i))
	})
}

func lowest(m map[int64]int) int64 {
	var lo int64 = -1
	for v := range m {
		if lo < 0 || v < lo {
			lo = v
		}
	}
	return lo
}

// apply applies YAML through the API and returns the store revision.
func (b *bench) apply(ctx context.Context, yaml string) (int64, error) {
	resp, err := b.api.Apply(ctx, []byte(yaml))
	if err != nil {
		return 0, fmt.Errorf("apply: %w", err)
	}
	if resp.Revision == 0 {
		return 0, fmt.Errorf("apply changed nothing: %+v", resp.Results)
	}
	return resp.Revision, nil
}

// connectNow connects conn and waits until it is ready, so that a
// measurement does not include the TLS handshake.
func connectNow(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn.Connect()
	for s := conn.GetState(); s != connectivity.Ready; s = conn.GetState() {
		if !conn.WaitForStateChange(ctx, s) {
			return fmt.Errorf("connect to the control plane: still %s: %w", s, context.Cause(ctx))
		}
	}
	return nil
}

// cleanup stops the proxies and the control plane and removes the
// temporary directory unless Keep.
func (b *bench) cleanup() {
	b.stopPerf("from the first proxy's connection until the run stopped")
	if b.stop != nil {
		b.stop()
	}
	for _, c := range b.conns {
		c.Close()
	}
	b.wg.Wait()
	if b.cp != nil {
		if s, err := readProc(b.cp.pid()); err == nil {
			b.maxRSS.Store(max(b.maxRSS.Load(), s.RSSKiB))
		}
		b.cp.stop(syscall.SIGTERM, 15*time.Second)
	}
	b.res.Memory.SampledMaxRSSMiB = mib(b.maxRSS.Load())
	if b.dir == "" {
		return
	}
	if b.cfg.Keep {
		b.logf("kept %s", b.dir)
		return
	}
	os.RemoveAll(b.dir)
}

func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(time.Hour)
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// forEach calls fn(i) for i in [0, n), at most width at a time, and
// returns the first error; after one, no new calls start.
func forEach(ctx context.Context, n, width int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	sem := make(chan struct{}, width)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return first
}

// gitCommit names the commit of the repository at root, if git can tell.
func gitCommit(ctx context.Context, root string) string {
	if root == "" {
		return ""
	}
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	commit := strings.TrimSpace(string(out))
	if diff, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--", "internal", "cmd", "go.mod", "go.sum").Output(); err == nil && len(strings.TrimSpace(string(diff))) > 0 {
		commit += "+changes"
	}
	return commit
}

// newProxy is a simulated proxy for w, declaring what weft-proxy declares
// unless the run simulates older proxies (Config.FullEDS).
func (b *bench) newProxy(w workload) *simProxy {
	p := newSimProxy(w, b.tokenFor(w))
	if b.cfg.FullEDS {
		p.features = nil
	}
	return p
}

// proxyBytes is what the measured proxies have received so far, in gRPC
// message bytes.
func (b *bench) proxyBytes() int64 {
	var n int64
	for _, p := range b.proxiesSoFar() {
		n += p.recvBytes.Load()
	}
	return n
}

// cpWriteBytes is what the control plane has written so far with write
// system calls (/proc/PID/io wchar: TLS records to the proxies, and its
// store's writes); -1 when it cannot be read.
func (b *bench) cpWriteBytes() int64 {
	n, err := readWchar(b.cp.pid())
	if err != nil {
		return -1
	}
	return n
}
