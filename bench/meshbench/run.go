// Package meshbench is weft's benchmark harness against nginx: on loopback,
// it drives a fortio echo server through five paths (direct, two weft
// sidecars in plaintext and in mTLS, two nginx in plaintext and in TLS)
// with fortio, alternating the paths round by round, and measures
// latency at a fixed rate, maximum throughput, and each proxy process's
// CPU and memory from /proc. It writes JSON into bench/results and a
// markdown table into docs/PERFORMANCE.md.
//
// Everything it starts runs in its own process group and is stopped when
// the run ends, fails or is interrupted; its temporary directory is
// removed.
package meshbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Markers of the generated block in docs/PERFORMANCE.md.
const (
	Begin = "<!-- bench:begin -->"
	End   = "<!-- bench:end -->"
)

// connSampleEvery is how many 50 ms memory samples pass between two counts
// of the connections between the proxies (see measure).
const connSampleEvery = 20

// Options are one run's parameters.
type Options struct {
	Mode        string // "full" or "quick": names the results file
	Rounds      int
	Fixed       time.Duration // length of each fixed-rate run
	Max         time.Duration // length of each maximum-rate run
	Warmup      time.Duration // one fixed-rate run per path before the first round
	QPS         float64
	Connections int
	PayloadSize int
	// Paths limits the run to these paths (direct is always run); empty
	// means all.
	Paths []string
	// Repo is the root of the weft module.
	Repo string
	// GoBin is the go command.
	GoBin string
	// Doc, relative to Repo, receives the table when UpdateDoc is set.
	Doc       string
	UpdateDoc bool
	// ResultsDir, relative to Repo, receives <date>-<mode>.json.
	ResultsDir string
	// Command is how the run was started, for the record.
	Command string
	// KeepTemp keeps the temporary directory (configs, logs, fortio
	// files) for a post-mortem.
	KeepTemp bool
	// ProfileDir, when set, receives pprof profiles of each weft sidecar
	// (CPU during each load, and the allocations it made) fetched from
	// its admin server's /debug/pprof, named <run>-<role>.{cpu,allocs}.pprof.
	ProfileDir string
	// SidecarEnv is added to every weft sidecar's environment (KEY=value),
	// for A/B runs of runtime settings such as GOGC.
	SidecarEnv []string
	// VariantEnv, when set, adds a copy of every weft path whose sidecars
	// also get these variables (KEY=value), named "<path>+variant", with
	// services of their own: an A/B comparison within one run, the two
	// taking turns like any other paths, so that the machine's drift hits
	// both alike. The ratios then include each variant over its path.
	VariantEnv []string
	// VariantProxy, when set, is the weft-proxy binary the variant's
	// sidecars run (alone or with VariantEnv): a build of another commit,
	// to compare two versions of the code within one run.
	VariantProxy string
	Log          *slog.Logger
	// Out receives the rendered table.
	Out io.Writer
}

// Defaults returns the options of a mode: "full" (make bench, about four
// minutes) or "quick" (make bench-quick, under a minute).
func Defaults(mode string) (Options, error) {
	o := Options{Mode: mode, QPS: 1000, Connections: 16, PayloadSize: 1024,
		Doc: "docs/PERFORMANCE.md", ResultsDir: "bench/results", GoBin: "go", Out: os.Stdout}
	switch mode {
	case "full":
		o.Rounds, o.Fixed, o.Max, o.Warmup, o.UpdateDoc = 3, 8*time.Second, 4*time.Second, 2*time.Second, true
	case "quick":
		o.Rounds, o.Fixed, o.Max, o.Warmup = 1, 2500*time.Millisecond, 1500*time.Millisecond, 500*time.Millisecond
	default:
		return Options{}, fmt.Errorf("mode %q: want full or quick", mode)
	}
	return o, nil
}

// AllPaths are the paths in their nominal order.
var AllPaths = []string{"direct", "nginx", "weft-plain", "nginx-tls", "weft-mtls", "weft-mtls-h1"}

// variantSuffix marks the copy of a weft path that runs with
// Options.VariantEnv.
const variantSuffix = "+variant"

// pathOrder sorts paths in their nominal order, each variant right after
// its path.
func pathOrder(name string) int {
	base, variant := strings.CutSuffix(name, variantSuffix)
	n := 2 * slices.Index(AllPaths, base)
	if variant {
		n++
	}
	return n
}

// pathRun is a path being measured.
type pathRun struct {
	*Path
	url, host string
	procs     []procRef
	// hopPort is the port of the second proxy, whose accepted connections
	// are the ones between the two proxies; 0 for direct.
	hopPort int
}

type procRef struct {
	role string
	pid  int
	// admin is a weft sidecar's admin address, for profiles; "" otherwise.
	admin string
}

// Run measures every path and writes the results. Processes it started are
// stopped and its temporary directory is removed before it returns.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = newLogger(os.Stderr)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	log := o.Log
	want := func(name string) bool { return name == "direct" || len(o.Paths) == 0 || slices.Contains(o.Paths, name) }
	for _, p := range o.Paths {
		if !slices.Contains(AllPaths, p) {
			return nil, fmt.Errorf("unknown path %q: want some of %s", p, strings.Join(AllPaths, ", "))
		}
	}

	tmp, err := os.MkdirTemp("", "meshbench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if o.KeepTemp {
			log.Info("kept the temporary directory", "dir", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()
	ps := &processes{logDir: filepath.Join(tmp, "logs")}
	if err := os.MkdirAll(ps.logDir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		log.Info("stopping every process the harness started")
		ps.stopAll()
	}()

	rep = &Report{
		Date:    start.UTC().Format(time.RFC3339),
		Mode:    o.Mode,
		Command: o.Command,
		Machine: machine(),
		Tools:   Tools{Go: runtime.Version(), Fortio: strings.TrimPrefix(FortioVersion, "v"), Nginx: "not used"},
		Settings: Settings{QPS: o.QPS, Connections: o.Connections, PayloadBytes: o.PayloadSize,
			FixedSeconds: o.Fixed.Seconds(), MaxSeconds: o.Max.Seconds(), WarmupSecs: o.Warmup.Seconds(), Rounds: o.Rounds},
	}

	if l := rep.Machine.LoadAvg; l > 0.5*float64(rep.Machine.NProc) {
		log.Warn("the machine is busy before the run starts; every figure will be skewed", "loadavg_1m", l, "cpus", rep.Machine.NProc)
	}

	// Tools and binaries.
	log.Info("installing fortio", "version", FortioVersion, "dir", "bench/.tools")
	fortio, err := installFortio(ctx, o.GoBin, filepath.Join(o.Repo, "bench", ".tools"))
	if err != nil {
		return nil, err
	}
	var weftBin, proxyBin string
	if want("weft-plain") || want("weft-mtls") || want("weft-mtls-h1") {
		log.Info("building bin/weft and bin/weft-proxy")
		if weftBin, proxyBin, err = buildWeft(ctx, o.GoBin, o.Repo); err != nil {
			return nil, err
		}
	}
	var nginxBin string
	var nginxErr error
	if want("nginx") || want("nginx-tls") {
		if nginxBin, nginxErr = ensureNginx(ctx, log); nginxErr != nil {
			log.Warn("skipping the nginx paths", "reason", nginxErr)
		} else {
			rep.Tools.Nginx = nginxVersion(ctx, nginxBin)
		}
	}

	// The echo server.
	echoAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	echo, err := ps.start("fortio-server", fortio, "server", "-http-port", echoAddr,
		"-grpc-port", "disabled", "-redirect-port", "disabled", "-tcp-port", "disabled", "-udp-port", "disabled",
		"-ui-path", "", "-loglevel", "Warning")
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, echo, 20*time.Second, "fortio echo server at "+echoAddr, func() error {
		return echoOnce("http://"+echoAddr+"/echo", "", "ping")
	}); err != nil {
		return nil, err
	}

	// The paths.
	var paths []*pathRun
	add := func(name, title, transport string) *pathRun {
		p := &pathRun{Path: &Path{Name: name, Title: title, Transport: transport}}
		rep.Paths = append(rep.Paths, p.Path)
		paths = append(paths, p)
		return p
	}
	direct := add("direct", "direct (no proxy)", "—")
	direct.url = "http://" + echoAddr + "/echo"

	if want("nginx") || want("nginx-tls") {
		if err := setupNginx(ctx, ps, nginxBin, nginxErr, tmp, echoAddr, want, add); err != nil {
			return nil, err
		}
	}
	if want("weft-plain") || want("weft-mtls") || want("weft-mtls-h1") {
		sec, err := setupWeft(ctx, log, ps, weftBin, proxyBin, tmp, echoAddr, o.SidecarEnv, o.VariantEnv, o.VariantProxy, want, add)
		if err != nil {
			return nil, err
		}
		rep.Security = sec
	}
	if rep.Security == "" {
		rep.Security = "not measured"
	}
	// Keep the nominal order whatever the set-up order was.
	slices.SortStableFunc(paths, func(a, b *pathRun) int {
		return pathOrder(a.Name) - pathOrder(b.Name)
	})
	slices.SortStableFunc(rep.Paths, func(a, b *Path) int {
		return pathOrder(a.Name) - pathOrder(b.Name)
	})

	// Every path answers before anything is measured.
	for _, p := range paths {
		if p.Failed != "" {
			continue
		}
		if err := waitFor(ctx, nil, 20*time.Second, p.Name+" echoes a POST", func() error {
			return echoOnce(p.url, p.host, "hello through "+p.Name)
		}); err != nil {
			if p.Name == "direct" {
				return nil, err
			}
			p.Failed = err.Error()
			log.Error("path does not work; skipping it", "path", p.Name, "err", err)
		}
	}

	// Idle memory, before any load.
	for _, p := range paths {
		for _, pr := range p.procs {
			m, err := readMemory(pr.pid)
			if err != nil {
				return nil, fmt.Errorf("%s %s: read memory: %w", p.Name, pr.role, err)
			}
			p.Procs = append(p.Procs, ProcInfo{Role: pr.role, PID: pr.pid, IdleRSSKiB: m.RSSKiB})
		}
	}

	runDir := filepath.Join(tmp, "fortio")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	if o.Warmup > 0 {
		log.Info("warming up", "per_path", o.Warmup)
		for _, p := range paths {
			if p.Failed != "" {
				continue
			}
			l := o.fixedLoad(p, o.Warmup)
			l.AccessLog = false
			if _, err := runLoad(ctx, fortio, runDir, "warmup-"+p.Name, l); err != nil {
				if p.Name == "direct" {
					return nil, err
				}
				p.Failed = err.Error()
				log.Error("warm-up failed; skipping the path", "path", p.Name, "err", err)
			}
		}
	}

	if err := measureRounds(ctx, o, ps, fortio, runDir, paths); err != nil {
		return nil, err
	}

	rep.WallSeconds = time.Since(start).Seconds()
	rep.summarize()
	md := rep.Markdown()
	fmt.Fprintln(o.Out)
	fmt.Fprint(o.Out, md)

	if err := writeResults(o, rep); err != nil {
		return rep, err
	}
	if o.UpdateDoc {
		if err := updateDoc(filepath.Join(o.Repo, o.Doc), Begin, End, md); err != nil {
			return rep, err
		}
		log.Info("wrote the table", "doc", o.Doc)
	}
	return rep, nil
}

// fixedLoad is the fixed-rate load on p for d, with exact percentiles.
func (o Options) fixedLoad(p *pathRun, d time.Duration) load {
	return load{URL: p.url, Host: p.host, QPS: o.QPS, Connections: o.Connections, PayloadSize: o.PayloadSize, Duration: d, AccessLog: true}
}

// measureRounds runs the rounds: each path's fixed-rate and maximum-rate
// loads, the paths taking turns in an order that rotates every round. A
// path that fails is reported and left out of the later rounds; an error
// is returned only when direct fails or the run is interrupted.
func measureRounds(ctx context.Context, o Options, ps *processes, fortio, runDir string, paths []*pathRun) error {
	log := o.Log
	for round := range o.Rounds {
		// Rotate the order each round, so no path always runs first or
		// right after another one's maximum-rate run.
		order := slices.Clone(paths)
		k := round % len(order)
		order = append(order[k:], order[:k]...)
		var directFixed *LoadResult
		for _, p := range order {
			if p.Failed != "" {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			name := fmt.Sprintf("r%d-%s", round+1, p.Name)
			log.Info("measuring", "round", round+1, "of", o.Rounds, "path", p.Name, "fixed_rate", o.QPS)
			rd := Round{Round: round + 1}
			fm, err := measure(ctx, ps, fortio, runDir, name+"-fixed", o.fixedLoad(p, o.Fixed), p.procs, p.hopPort, o.ProfileDir)
			if err == nil {
				rd.Fixed, rd.FixedProcs, rd.HopConnections, rd.OtherCPUFixed = fm.res, fm.usage, fm.conns, fm.otherCores
				log.Info("  latency", "p50_ms", round2(fm.res.P50Ms), "p90_ms", round2(fm.res.P90Ms), "p99_ms", round2(fm.res.P99Ms),
					"errors", fm.res.Errors, "qps", round2(fm.res.ActualQPS), "other_programs_cores", round2(fm.otherCores))
				time.Sleep(300 * time.Millisecond)
				l := o.fixedLoad(p, o.Max)
				l.QPS, l.AccessLog = 0, false
				var mm measurement
				mm, err = measure(ctx, ps, fortio, runDir, name+"-max", l, p.procs, p.hopPort, o.ProfileDir)
				if err == nil {
					rd.Max, rd.MaxProcs, rd.OtherCPUMax = &mm.res, mm.usage, mm.otherCores
					rd.HopConnections = max(rd.HopConnections, mm.conns)
					log.Info("  throughput", "req_per_s", round2(mm.res.ActualQPS), "errors", mm.res.Errors, "other_programs_cores", round2(mm.otherCores))
				}
			}
			if err == nil {
				err = procsAlive(p.procs)
			}
			if err != nil {
				if p.Name == "direct" || ctx.Err() != nil {
					return err
				}
				p.Failed = err.Error()
				log.Error("path failed; skipping it from now on", "path", p.Name, "err", err)
				continue
			}
			p.Rounds = append(p.Rounds, rd)
			if p.Name == "direct" {
				directFixed = &p.Rounds[len(p.Rounds)-1].Fixed
			}
			time.Sleep(300 * time.Millisecond)
		}
		// Added latency against direct of the same round.
		for _, p := range paths {
			if len(p.Rounds) == 0 || p.Rounds[len(p.Rounds)-1].Round != round+1 || directFixed == nil {
				continue
			}
			rd := &p.Rounds[len(p.Rounds)-1]
			rd.Added = &Latency{P50: rd.Fixed.P50Ms - directFixed.P50Ms, P90: rd.Fixed.P90Ms - directFixed.P90Ms, P99: rd.Fixed.P99Ms - directFixed.P99Ms}
		}
	}

	return nil
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// measurement is one load and what happened around it.
type measurement struct {
	res   LoadResult
	usage []ProcUsage
	// conns is the most connections seen open to the path's second proxy.
	conns int
	// otherCores is the CPU, in cores, that programs the harness did not
	// start used during the run: the noise in the figures.
	otherCores float64
}

// measure runs one load and what the proxy processes used meanwhile: CPU
// from /proc/PID/stat, and peak RSS from VmHWM (reset just before) or, if
// it cannot be reset, from VmRSS sampled every 50 ms; the connections open
// to hopPort (0: not watched); and the CPU the rest of the machine used.
// With profDir set, it also saves the weft sidecars' profiles there (the
// profiles cost the sidecars some CPU: not for runs whose figures count).
func measure(ctx context.Context, ps *processes, fortio, dir, name string, l load, procs []procRef, hopPort int, profDir string) (measurement, error) {
	var m measurement
	if profDir != "" {
		defer profileDuring(profDir, name, procs, l.Duration)()
	}
	before := make([]cpuTicks, len(procs))
	hwmReset := make([]bool, len(procs))
	for i, pr := range procs {
		c, err := readCPU(pr.pid)
		if err != nil {
			return m, fmt.Errorf("%s: read CPU: %w", pr.role, err)
		}
		before[i] = c
		hwmReset[i] = resetPeakRSS(pr.pid) == nil
	}
	own := ps.pids()
	ownBefore := cpuOf(own)
	busyBefore, busyErr := readMachineBusy()
	start := time.Now()

	sampled := make([]int64, len(procs))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for tick := 0; ; tick++ {
			for i, pr := range procs {
				if mem, err := readMemory(pr.pid); err == nil {
					sampled[i] = max(sampled[i], mem.RSSKiB)
				}
			}
			// Reading /proc/net/tcp walks the kernel's whole table of
			// established sockets, which on a machine with much memory
			// is large: every 50 ms it took a tenth of this 2-core
			// machine (perf, during a maximum-rate run) and put a
			// hiccup into every path's latency. The pools it counts
			// change slowly, so once a second and once at the end
			// suffice.
			if hopPort > 0 && tick%connSampleEvery == 0 {
				m.conns = max(m.conns, connectionsTo(hopPort))
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	res, err := runLoad(ctx, fortio, dir, name, l)
	close(stop)
	wg.Wait()
	if hopPort > 0 {
		// The proxies' pools outlive the load by their idle timeout.
		m.conns = max(m.conns, connectionsTo(hopPort))
	}
	if err != nil {
		return m, err
	}
	m.res = res

	if busyAfter, err := readMachineBusy(); err == nil && busyErr == nil {
		ours := res.ClientCPUSeconds
		for pid, after := range cpuOf(own) {
			ours += after - ownBefore[pid]
		}
		m.otherCores = max(0, (float64(busyAfter-busyBefore)/clockTicks-ours)/time.Since(start).Seconds())
	}

	m.usage = make([]ProcUsage, len(procs))
	// fortio makes one untimed warm-up call per connection; the proxies
	// served them too.
	served := float64(res.Requests + int64(res.Connections))
	for i, pr := range procs {
		c, err := readCPU(pr.pid)
		if err != nil {
			return m, fmt.Errorf("%s: read CPU: %w", pr.role, err)
		}
		mem, err := readMemory(pr.pid)
		if err != nil {
			return m, fmt.Errorf("%s: read memory: %w", pr.role, err)
		}
		peak := max(sampled[i], mem.RSSKiB)
		if hwmReset[i] {
			peak = max(peak, mem.HWMKiB)
		}
		cpu := c.Seconds() - before[i].Seconds()
		m.usage[i] = ProcUsage{Role: pr.role, CPUSeconds: cpu, CPUPer1k: cpu / served * 1000, PeakRSSKiB: peak}
	}
	return m, nil
}

// procsAlive checks that every process of a path is still there.
func procsAlive(procs []procRef) error {
	for _, pr := range procs {
		if _, err := readCPU(pr.pid); err != nil {
			return fmt.Errorf("%s (pid %d) is gone: %w", pr.role, pr.pid, err)
		}
	}
	return nil
}

// setupNginx starts the two nginx pairs.
func setupNginx(ctx context.Context, ps *processes, bin string, unavailable error, tmp, echoAddr string,
	want func(string) bool, add func(name, title, transport string) *pathRun) error {
	type pair struct {
		name, title, transport string
		tls                    bool
	}
	for _, pp := range []pair{
		{"nginx", "nginx → nginx", "HTTP/1.1, keep-alive", false},
		{"nginx-tls", "nginx → TLS → nginx", "TLS 1.3, mutual, HTTP/1.1, keep-alive", true},
	} {
		if !want(pp.name) {
			continue
		}
		p := add(pp.name, pp.title, pp.transport)
		if unavailable != nil {
			p.Failed = unavailable.Error()
			continue
		}
		dir := filepath.Join(tmp, pp.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var files tlsFiles
		if pp.tls {
			var err error
			if files, err = writeTLSFiles(dir); err != nil {
				return err
			}
		}
		serverAddr, err := freeAddr()
		if err != nil {
			return err
		}
		clientAddr, err := freeAddr()
		if err != nil {
			return err
		}
		server, err := startNginx(ctx, ps, bin, pp.name+" server", nginxConf{
			Dir: filepath.Join(dir, "server"), Listen: serverAddr, Upstream: echoAddr, ServerTLS: pp.tls, TLS: files})
		if err != nil {
			return err
		}
		client, err := startNginx(ctx, ps, bin, pp.name+" client", nginxConf{
			Dir: filepath.Join(dir, "client"), Listen: clientAddr, Upstream: serverAddr, UpstreamTLS: pp.tls, TLS: files})
		if err != nil {
			return err
		}
		p.url = "http://" + client.addr + "/echo"
		p.procs = []procRef{{"client nginx worker", client.workerPID, ""}, {"server nginx worker", server.workerPID, ""}}
		p.hopPort = portOf(serverAddr)
	}
	return nil
}

// setupWeft starts the control plane and two pairs of sidecars: service
// echo, reached in mTLS (the mesh's default), and service echo-plain, whose
// DestinationRule disables TLS. It returns a description of the security
// the binaries have.
func setupWeft(ctx context.Context, log *slog.Logger, ps *processes, weftBin, proxyBin, tmp, echoAddr string, sidecarEnv, variantEnv []string,
	variantProxy string, want func(string) bool, add func(name, title, transport string) *pathRun) (string, error) {
	dir := filepath.Join(tmp, "weft")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	log.Info("starting the weft control plane")
	m, err := startControlPlane(ctx, ps, weftBin, proxyBin, dir)
	if err != nil {
		return "", err
	}
	security := "none: this weft-proxy takes no --token-file/--ca-file, so xDS is plaintext and unauthenticated"
	if m.secure {
		security = "proxies authenticate with tokens from `weft token create` and verify the control plane with `weft ca root`"
	}
	// Before any proxy connects, so their first configuration has it.
	suffixes := []string{""}
	if len(variantEnv) > 0 {
		suffixes = append(suffixes, "-b")
	}
	var rules strings.Builder
	for _, sfx := range suffixes {
		fmt.Fprintf(&rules, `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo-plain%[1]s
  namespace: default
spec:
  host: echo-plain%[1]s
  trafficPolicy:
    tls:
      mode: DISABLE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo-h1%[1]s
  namespace: default
spec:
  host: echo-h1%[1]s
  trafficPolicy:
    connectionPool:
      http:
        h2UpgradePolicy: DO_NOT_UPGRADE
---
`, sfx)
	}
	if err := m.apply(ctx, rules.String()); err != nil {
		return "", err
	}
	type pair struct {
		name, title, service string
		wantTLS              bool
		// transport describes the hop between the sidecars when the
		// client sidecar's cluster has TLS.
		transport string
		// env is added to the sidecars' environment (the variant's).
		env []string
		// bin is the sidecars' weft-proxy binary, when not the tree's
		// (the variant's).
		bin string
	}
	var variants []pair
	for _, pp := range []pair{
		{"weft-plain", "weft → weft, mTLS disabled", "echo-plain", false, "", nil, ""},
		{"weft-mtls", "weft → weft, mTLS (default)", "echo", true,
			"mTLS (TLS 1.3), HTTP/2 (ALPN h2): every request multiplexed over HTTP/2, the default", nil, ""},
		{"weft-mtls-h1", "weft → weft, mTLS, DO_NOT_UPGRADE", "echo-h1", true,
			"mTLS (TLS 1.3), HTTP/1.1 (ALPN http/1.1) as the client sent it: DestinationRule `h2UpgradePolicy: DO_NOT_UPGRADE`", nil, ""},
	} {
		if !want(pp.name) {
			continue
		}
		variants = append(variants, pp)
		if len(variantEnv) > 0 || variantProxy != "" {
			v := pp
			v.name += variantSuffix
			var what []string
			if variantProxy != "" {
				what = append(what, filepath.Base(variantProxy))
			}
			v.title += " [+" + strings.Join(append(what, variantEnv...), ",") + "]"
			v.service += "-b"
			v.env = variantEnv
			v.bin = variantProxy
			variants = append(variants, v)
		}
	}
	for _, pp := range variants {
		p := add(pp.name, pp.title, "")
		log.Info("starting sidecars", "path", pp.name, "service", pp.service)
		env := append(slices.Clone(sidecarEnv), pp.env...)
		server, err := m.startSidecar(ctx, ps, pp.name+" server sidecar", pp.service, pp.service, echoAddr, env, pp.bin)
		if err != nil {
			return "", err
		}
		client, err := m.startSidecar(ctx, ps, pp.name+" client sidecar", "bench-client-"+pp.service, "bench-client", echoAddr, env, pp.bin)
		if err != nil {
			return "", err
		}
		p.url = "http://" + client.outbound + "/echo"
		p.host = pp.service + ":9080"
		p.procs = []procRef{{"client sidecar", client.proc.pid(), client.adminAt}, {"server sidecar", server.proc.pid(), server.adminAt}}
		p.hopPort = portOf(server.inbound)
		// The client must know the server's endpoint before the transport
		// can be read off its cluster.
		if err := waitFor(ctx, client.proc, 20*time.Second, pp.name+" routes to "+pp.service, func() error {
			return echoOnce(p.url, p.host, "ping")
		}); err != nil {
			p.Failed = err.Error()
			continue
		}
		dump, err := client.configDump()
		var tls bool
		var evidence string
		if err == nil {
			tls, evidence, err = clusterTLS(dump, pp.service)
		}
		switch {
		case err != nil:
			p.Transport = "unknown (" + err.Error() + ")"
		case tls:
			// The connection count in the table tells the two apart: one
			// or a few for HTTP/2, one per concurrent request for
			// HTTP/1.1.
			p.Transport = pp.transport + "; the client sidecar's cluster has `" + evidence[strings.LastIndexByte(evidence, '.')+1:] + "`"
		case pp.wantTLS:
			p.Transport = "**plaintext**: mTLS not implemented yet (no TLS on the client sidecar's cluster)"
		default:
			p.Transport = "plaintext HTTP/1.1, keep-alive"
		}
		if tls != pp.wantTLS && err == nil {
			log.Warn("the transport is not what the path is named for", "path", pp.name, "transport", p.Transport)
		}
	}
	return security, nil
}

func portOf(addr string) int {
	_, port, _ := strings.Cut(addr, ":")
	n, _ := strconv.Atoi(port)
	return n
}

// machine describes this computer.
func machine() Machine {
	m := Machine{NProc: runtime.NumCPU(), CPUModel: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 0 {
			m.LoadAvg, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return m
}

// writeResults writes the report as JSON into ResultsDir.
func writeResults(o Options, rep *Report) error {
	dir := filepath.Join(o.Repo, o.ResultsDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	date, _, _ := strings.Cut(rep.Date, "T")
	path := filepath.Join(dir, date+"-"+o.Mode+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	o.Log.Info("wrote the results", "file", filepath.Join(o.ResultsDir, filepath.Base(path)))
	return nil
}
