package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weft-mesh/weft/internal/freeport"
)

// Options configures Run. The zero value runs the demo until ctx is done,
// with this executable as weft and output discarded.
type Options struct {
	// WeftBinary is the weft executable, run as `weft control-plane` and
	// `weft demo-app`. Empty means the running executable.
	WeftBinary string
	// ProxyBinary is the weft-proxy executable. Empty means weft-proxy next
	// to the running executable, else next to WeftBinary, else on $PATH.
	ProxyBinary string
	// Out receives the demo's progress and statistics; nil discards them.
	Out io.Writer
	// Duration is how long to measure traffic once routing follows the
	// initial split; Run then stops everything and returns the stats of
	// that period. Zero runs until ctx is done.
	Duration time.Duration
	// Rate is the number of requests per second sent to productpage; zero
	// means 50.
	Rate int
	// KeepDir keeps the temporary directory (control-plane data, logs, the
	// YAML files) instead of removing it on exit.
	KeepDir bool
	// StartTimeout bounds each start-up step: control plane ready, every
	// app and sidecar ready, every workload registered, routing following
	// the split. Zero means 30s.
	StartTimeout time.Duration
	// StopTimeout is how long a process has after SIGTERM before it is
	// killed (the control plane gets twice as long). Zero means 5s.
	StopTimeout time.Duration
}

// DefaultRate is the load generator's rate when Options.Rate is zero.
const DefaultRate = 50

// ApplyServerFlag is the `weft apply` flag naming the control plane's HTTP
// API; the demo prints commands that use it.
const ApplyServerFlag = "--server"

// logTailLines is how many lines of a failed process's log the demo prints.
const logTailLines = 20

// convergeWindow is how many consecutive answers must follow the split
// before the demo starts measuring.
const convergeWindow = 20

// Run runs the demo: it starts the control plane, the demo apps with their
// sidecars and the load generator's sidecar as child processes on loopback,
// in a temporary directory it removes on exit; applies the reviews
// DestinationRule and InitialSplit; sends Options.Rate requests per second
// to productpage through the load generator's sidecar; and, once answers
// follow the split, prints one line of statistics per second.
//
// Run stops when ctx is done or Options.Duration has passed, and returns the
// statistics of the measured period (from the first printed second on), with
// a nil error. It stops early with an *ExitError if a child process exits,
// after printing the end of that process's log, and with another error if
// start-up fails or times out (or ctx is done before measuring began). In
// every case it first stops the load, then SIGTERMs the children (sidecars
// and apps, then the control plane), kills those that do not exit in time,
// and removes the temporary directory.
func Run(ctx context.Context, opts Options) (Stats, error) {
	r, err := newRunner(opts)
	if err != nil {
		return Stats{}, err
	}
	r.dir, err = os.MkdirTemp("", "weft-demo-")
	if err != nil {
		return Stats{}, fmt.Errorf("demo: creating temporary directory: %w", err)
	}
	defer r.removeDir()
	defer r.api.CloseIdleConnections()
	r.logDir = filepath.Join(r.dir, "logs")
	if err := os.Mkdir(r.logDir, 0o755); err != nil {
		return Stats{}, fmt.Errorf("demo: %w", err)
	}

	runCtx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	r.sup = &supervisor{logDir: r.logDir, fail: fail}
	stats, err := r.run(runCtx)
	exit := r.reportExit(runCtx)
	r.shutdown()
	if exit != nil {
		return stats, fmt.Errorf("demo: %w", exit)
	}
	if err != nil && ctx.Err() != nil {
		return stats, fmt.Errorf("demo: stopped while starting: %w", context.Cause(ctx))
	}
	if err != nil {
		return stats, fmt.Errorf("demo: %w", err)
	}
	return stats, nil
}

// instance is one running workload: its addresses and processes.
type instance struct {
	Workload
	app, inbound, outbound, admin string // host:port
	appProc, proxyProc            *child // appProc is nil for the load generator
}

// runner holds one Run's state.
type runner struct {
	opts        Options
	out         io.Writer
	weft, proxy string
	dir, logDir string
	sup         *supervisor
	api         *http.Client

	xdsAddr, httpAddr string
	cp                *child
	// dataDir is the control plane's; it writes admin.token and ca.pem
	// there. adminToken authorizes the demo's API calls.
	dataDir      string
	adminToken   string
	instances    []*instance // Topology in order, then Loadgen
	stopStub     func()      // stops the load generator's stub app
	stopLoad     func()      // stops the load and waits for it
	exitReported bool        // reportExit has printed
}

func newRunner(opts Options) (*runner, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Rate == 0 {
		opts.Rate = DefaultRate
	}
	if opts.Rate < 0 {
		return nil, fmt.Errorf("demo: rate %d: want a positive number of requests per second", opts.Rate)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 5 * time.Second
	}
	weft, proxy, err := findBinaries(opts.WeftBinary, opts.ProxyBinary)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	r := &runner{
		opts:  opts,
		out:   opts.Out,
		weft:  weft,
		proxy: proxy,
	}
	// Its own transport, without $http_proxy, closed when Run returns; it
	// sends the admin token to the control plane's API, and only there.
	r.api = &http.Client{Transport: &apiAuth{r: r, next: &http.Transport{MaxIdleConnsPerHost: 16}}, Timeout: 5 * time.Second}
	return r, nil
}

// apiAuth adds the control plane's admin token to requests for its API.
type apiAuth struct {
	r    *runner
	next *http.Transport
}

func (a *apiAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	if a.r.adminToken != "" && req.URL.Host == a.r.httpAddr {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+a.r.adminToken)
	}
	return a.next.RoundTrip(req)
}

func (a *apiAuth) CloseIdleConnections() { a.next.CloseIdleConnections() }

// findBinaries resolves the weft and weft-proxy executables.
func findBinaries(weft, proxy string) (string, string, error) {
	self, selfErr := os.Executable()
	if weft == "" {
		if selfErr != nil {
			return "", "", fmt.Errorf("finding the weft executable: %w", selfErr)
		}
		weft = self
	}
	weft, err := exec.LookPath(weft)
	if err != nil {
		return "", "", fmt.Errorf("weft executable: %w", err)
	}
	if proxy != "" {
		p, err := exec.LookPath(proxy)
		if err != nil {
			return "", "", fmt.Errorf("weft-proxy executable: %w", err)
		}
		return weft, p, nil
	}
	name := "weft-proxy"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	var looked []string
	for _, near := range []string{self, weft} {
		if near == "" {
			continue
		}
		dir := filepath.Dir(near)
		if slices.Contains(looked, dir) {
			continue
		}
		looked = append(looked, dir)
		candidate := filepath.Join(dir, name)
		if p, err := exec.LookPath(candidate); err == nil {
			return weft, p, nil
		}
	}
	if p, err := exec.LookPath("weft-proxy"); err == nil {
		return weft, p, nil
	}
	return "", "", fmt.Errorf("weft-proxy not found in %s or on $PATH: build it with make build", strings.Join(looked, " or "))
}

func (r *runner) run(ctx context.Context) (Stats, error) {
	fate := "removed on exit"
	if r.opts.KeepDir {
		fate = "kept on exit"
	}
	fmt.Fprintf(r.out, "weft demo: control-plane data, logs and YAML in %s (%s)\n", r.dir, fate)
	if err := r.layout(); err != nil {
		return Stats{}, err
	}
	if err := r.step(ctx, "starting the control plane", r.startControlPlane); err != nil {
		return Stats{}, err
	}
	what := fmt.Sprintf("starting %d demo apps and %d sidecars", len(Topology), len(r.instances))
	if err := r.step(ctx, what, r.startWorkloads); err != nil {
		return Stats{}, err
	}
	what = fmt.Sprintf("waiting for %d workloads to register", len(r.instances))
	if err := r.step(ctx, what, r.waitRegistered); err != nil {
		return Stats{}, err
	}
	what = fmt.Sprintf("applying the %s DestinationRule and VirtualService (%s)", SplitService, InitialSplit)
	if err := r.step(ctx, what, r.applyInitial); err != nil {
		return Stats{}, err
	}
	counter := NewCounter()
	r.startLoad(ctx, counter)
	what = fmt.Sprintf("sending %d req/s to %s through the %s sidecar; waiting until answers follow the split", r.opts.Rate, EntryURL, LoadgenService)
	if err := r.step(ctx, what, func(ctx context.Context) (string, error) { return r.waitFollows(ctx, counter) }); err != nil {
		return Stats{}, err
	}
	r.printBanner()
	return r.measure(ctx, counter), nil
}

// reportExit prints, once, which child exited unexpectedly, if one did,
// and the end of its log; it returns that child's *ExitError, or nil.
func (r *runner) reportExit(ctx context.Context) *ExitError {
	var exit *ExitError
	if !errors.As(context.Cause(ctx), &exit) {
		return nil
	}
	if !r.exitReported {
		r.exitReported = true
		fmt.Fprintf(r.out, "\nweft demo: %v\n", exit)
		printTail(r.out, exit.Name, exit.LogPath, logTailLines)
		if !r.opts.KeepDir {
			fmt.Fprintf(r.out, "(the demo removes %s on exit; weft demo --keep keeps it)\n", r.dir)
		}
	}
	return exit
}

// stepError is a start-up failure of one process, whose log Run shows.
type stepError struct {
	proc *child
	err  error
}

func (e *stepError) Error() string { return e.proc.name + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// step prints what, runs fn and prints its outcome on the same line.
func (r *runner) step(ctx context.Context, what string, fn func(context.Context) (string, error)) error {
	fmt.Fprintf(r.out, "%s ... ", what)
	start := time.Now()
	detail, err := fn(ctx)
	if err == nil {
		fmt.Fprintf(r.out, "%s (%.1fs)\n", detail, time.Since(start).Seconds())
		return nil
	}
	fmt.Fprintln(r.out, "failed")
	if ctx.Err() != nil {
		return err // stopped, or a process exited: Run reports that
	}
	fmt.Fprintf(r.out, "%v\n", err)
	var se *stepError
	if errors.As(err, &se) {
		printTail(r.out, se.proc.name, se.proc.logPath, logTailLines)
	}
	if !r.opts.KeepDir {
		fmt.Fprintf(r.out, "(the demo removes %s on exit; weft demo --keep keeps it)\n", r.dir)
	}
	return err
}

// layout allocates every address.
func (r *runner) layout() error {
	workloads := append(append([]Workload(nil), Topology...), Loadgen)
	addrs, err := freeAddrs(2 + 4*len(workloads))
	if err != nil {
		return err
	}
	r.xdsAddr, r.httpAddr, addrs = addrs[0], addrs[1], addrs[2:]
	for _, w := range workloads {
		r.instances = append(r.instances, &instance{
			Workload: w,
			app:      addrs[0], inbound: addrs[1], outbound: addrs[2], admin: addrs[3],
		})
		addrs = addrs[4:]
	}
	return nil
}

// freeAddrs returns n distinct loopback addresses for the demo's processes
// to bind, from a port range nothing else takes meanwhile (see freeport).
func freeAddrs(n int) ([]string, error) {
	addrs := make([]string, 0, n)
	for range n {
		addr, err := freeport.Addr()
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

func (r *runner) httpURL() string { return "http://" + r.httpAddr }

func (r *runner) startControlPlane(ctx context.Context) (string, error) {
	dataDir := filepath.Join(r.dir, "control-plane")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return "", err
	}
	r.dataDir = dataDir
	cp, err := r.sup.start("control plane", "control-plane", r.weft, "control-plane",
		"--data-dir", dataDir,
		"--xds-addr", r.xdsAddr,
		"--http-addr", r.httpAddr,
		"--registration-grace", "10s",
	)
	if err != nil {
		return "", err
	}
	r.cp = cp
	if err := r.waitHTTP(ctx, cp, r.httpURL()+"/healthz", time.Now().Add(r.opts.StartTimeout)); err != nil {
		return "", err
	}
	// Written before the API serves.
	tok, err := os.ReadFile(r.adminTokenFile())
	if err != nil {
		return "", &stepError{proc: cp, err: fmt.Errorf("reading the admin token: %w", err)}
	}
	r.adminToken = strings.TrimSpace(string(tok))
	return fmt.Sprintf("ready: HTTP API %s, xDS %s (TLS)", r.httpURL(), r.xdsAddr), nil
}

func (r *runner) adminTokenFile() string { return filepath.Join(r.dataDir, "admin.token") }

// trustBundleFile is the trust bundle the control plane writes, what
// weft ca root prints.
func (r *runner) trustBundleFile() string { return filepath.Join(r.dataDir, "ca.pem") }

// tokenFile asks the control plane for a token for the demo namespace and
// serviceAccount (as weft token create does) and writes it to a file.
func (r *runner) tokenFile(ctx context.Context, serviceAccount string) (string, error) {
	body := fmt.Sprintf(`{"namespace":%q,"serviceAccount":%q}`, Namespace, serviceAccount)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.httpURL()+"/api/v1/tokens", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.api.Do(req)
	if err != nil {
		return "", fmt.Errorf("creating a token for %s: %w", serviceAccount, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("creating a token for %s: %w", serviceAccount, err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &tok) != nil || tok.Token == "" {
		return "", fmt.Errorf("creating a token for %s: status %d: %s", serviceAccount, resp.StatusCode, snippet(b))
	}
	dir := filepath.Join(r.dir, "tokens")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f := filepath.Join(dir, serviceAccount+".token")
	if err := os.WriteFile(f, []byte(tok.Token+"\n"), 0o600); err != nil {
		return "", err
	}
	return f, nil
}

func (r *runner) startWorkloads(ctx context.Context) (string, error) {
	for _, in := range r.instances {
		if in.Service == LoadgenService {
			if err := r.startStub(in); err != nil {
				return "", err
			}
		} else {
			cfg := AppConfig{
				Name:     in.Service,
				Version:  in.Version,
				Listen:   in.app,
				Upstream: in.Upstream,
				Proxy:    "http://" + in.outbound,
			}
			p, err := r.sup.start(in.Name()+" app", in.Name()+"-app", r.weft, append([]string{"demo-app"}, cfg.Args()...)...)
			if err != nil {
				return "", err
			}
			in.appProc = p
		}
		token, err := r.tokenFile(ctx, in.Service)
		if err != nil {
			return "", &stepError{proc: r.cp, err: err}
		}
		p, err := r.sup.start(in.Name()+" sidecar", in.Name()+"-sidecar", r.proxy,
			"--control-plane", r.xdsAddr,
			"--service", in.Service,
			"--namespace", Namespace,
			"--service-account", in.Service,
			"--token-file", token,
			"--ca-file", r.trustBundleFile(),
			"--labels", in.labelsFlag(),
			"--service-port", strconv.Itoa(ServicePort),
			"--app-addr", in.app,
			"--inbound-addr", in.inbound,
			"--outbound-addr", in.outbound,
			"--admin-addr", in.admin,
		)
		if err != nil {
			return "", err
		}
		in.proxyProc = p
	}
	deadline := time.Now().Add(r.opts.StartTimeout)
	for _, in := range r.instances {
		if in.appProc != nil {
			if err := r.waitHTTP(ctx, in.appProc, "http://"+in.app+"/healthz", deadline); err != nil {
				return "", err
			}
		}
		if err := r.waitHTTP(ctx, in.proxyProc, "http://"+in.admin+"/healthz/ready", deadline); err != nil {
			return "", err
		}
	}
	return "ready", nil
}

// startStub serves the load generator's app address from this process, so
// that its sidecar's inbound side has something real behind it.
func (r *runner) startStub(in *instance) error {
	ln, err := net.Listen("tcp", in.app)
	if err != nil {
		return fmt.Errorf("listening for the %s app: %w", in.Service, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ServeApp(ctx, ln, AppConfig{Name: in.Service, Version: in.Version}, nil)
	}()
	r.stopStub = func() { cancel(); <-done }
	return nil
}

// waitHTTP polls url until it answers 200, proc exits, ctx is done or the
// deadline passes.
func (r *runner) waitHTTP(ctx context.Context, proc *child, url string, deadline time.Time) error {
	err := poll(ctx, deadline, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := r.api.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, snippet(body))
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return &stepError{proc: proc, err: fmt.Errorf("not ready: %w", err)}
	}
	return err
}

// poll calls check every 100ms until it returns nil, ctx is done (it then
// returns ctx's cause) or the deadline passes (it then returns check's last
// error).
func poll(ctx context.Context, deadline time.Time, check func(context.Context) error) error {
	start := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %s: %w", time.Since(start).Round(100*time.Millisecond), err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// workloadList is the part of GET /api/v1/workloads the demo reads.
type workloadList struct {
	Items []struct {
		Service   string            `json:"service"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"items"`
}

func (r *runner) waitRegistered(ctx context.Context) (string, error) {
	var missing []string
	err := poll(ctx, time.Now().Add(r.opts.StartTimeout), func(ctx context.Context) error {
		var list workloadList
		if err := r.getJSON(ctx, "/api/v1/workloads", &list); err != nil {
			return err
		}
		missing = missing[:0]
		for _, in := range r.instances {
			found := false
			for _, it := range list.Items {
				if it.Service == in.Service && it.Labels["version"] == in.Version && (it.Namespace == "" || it.Namespace == Namespace) {
					found = true
					break
				}
			}
			if !found {
				missing = append(missing, in.Name())
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s/api/v1/workloads lists %d of %d workloads; missing: %s",
				r.httpURL(), len(r.instances)-len(missing), len(r.instances), strings.Join(missing, ", "))
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		return "", &stepError{proc: r.cp, err: err}
	}
	return "all registered", err
}

func (r *runner) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.httpURL()+path, nil)
	if err != nil {
		return err
	}
	resp, err := r.api.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", path, resp.StatusCode, snippet(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: decoding: %w", path, err)
	}
	return nil
}

// writeConfigFiles writes the DestinationRule and every split as YAML files
// in the demo's directory.
func (r *runner) writeConfigFiles() error {
	files := map[string]string{DestinationRuleFile: DestinationRuleYAML()}
	for _, s := range append([]Split{InitialSplit}, OtherSplits...) {
		files[s.File] = s.VirtualServiceYAML()
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return nil
}

func (r *runner) applyInitial(ctx context.Context) (string, error) {
	if err := r.writeConfigFiles(); err != nil {
		return "", err
	}
	res, err := apply(ctx, r.api, r.httpURL(), InitialConfigYAML())
	if err != nil {
		return "", &stepError{proc: r.cp, err: err}
	}
	return res, nil
}

// applyResponse is the control plane's answer to POST /api/v1/apply.
// Warnings and errors are kept raw: describeFinding reads them.
type applyResponse struct {
	Results []struct {
		Kind      string `json:"kind"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
		Action    string `json:"action"`
	} `json:"results"`
	Warnings []json.RawMessage `json:"warnings"`
	Errors   []json.RawMessage `json:"errors"`
}

// apply posts yaml to the control plane's apply API and describes the
// outcome: "DestinationRule default/reviews created, VirtualService
// default/reviews created".
func apply(ctx context.Context, client *http.Client, base, yaml string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/apply", strings.NewReader(yaml))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("applying config: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("applying config: reading answer: %w", err)
	}
	var ar applyResponse
	jsonErr := json.Unmarshal(body, &ar)
	if resp.StatusCode != http.StatusOK {
		if jsonErr != nil || len(ar.Errors) == 0 {
			return "", fmt.Errorf("applying config: status %d: %s", resp.StatusCode, snippet(body))
		}
		msgs := make([]string, len(ar.Errors))
		for i, e := range ar.Errors {
			msgs[i] = describeFinding(e)
		}
		return "", fmt.Errorf("control plane rejected the config: %s", strings.Join(msgs, "; "))
	}
	if jsonErr != nil {
		return "", fmt.Errorf("applying config: decoding answer: %w", jsonErr)
	}
	parts := make([]string, 0, len(ar.Results)+len(ar.Warnings))
	for _, res := range ar.Results {
		parts = append(parts, fmt.Sprintf("%s %s/%s %s", res.Kind, res.Namespace, res.Name, res.Action))
	}
	for _, w := range ar.Warnings {
		parts = append(parts, "warning: "+describeFinding(w))
	}
	return strings.Join(parts, ", "), nil
}

// describeFinding renders one error or warning of an apply answer: a JSON
// string as is; an object as its message if that names the resource, path
// and reason, else as "resource: path: reason: message" without empty or
// repeated parts; anything else as JSON.
func describeFinding(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	// encoding/json matches keys case-insensitively: "reason" and "Reason" alike.
	var f struct{ Resource, Path, Reason, Message string }
	if json.Unmarshal(raw, &f) == nil {
		if f.Message != "" && strings.Contains(f.Message, f.Resource) && strings.Contains(f.Message, f.Path) && strings.Contains(f.Message, f.Reason) {
			return f.Message // already says it all
		}
		var parts []string
		for _, p := range []string{f.Resource, f.Path, f.Reason, f.Message} {
			if p != "" && !slices.Contains(parts, p) {
				parts = append(parts, p)
			}
		}
		if len(parts) > 0 {
			return strings.Join(parts, ": ")
		}
	}
	return string(bytes.TrimSpace(raw))
}

func (r *runner) loadgen() *instance { return r.instances[len(r.instances)-1] }

// startLoad starts the load generator; r.stopLoad stops it.
func (r *runner) startLoad(ctx context.Context, counter *Counter) {
	proxyURL := &url.URL{Scheme: "http", Host: r.loadgen().outbound}
	transport := &http.Transport{
		Proxy:               http.ProxyURL(proxyURL),
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	load := &Load{
		Client:  &http.Client{Transport: transport, Timeout: 5 * time.Second},
		URL:     EntryURL,
		Key:     SplitService,
		Rate:    r.opts.Rate,
		Counter: counter,
	}
	loadCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		load.Run(loadCtx)
	}()
	r.stopLoad = func() {
		cancel()
		<-done
		transport.CloseIdleConnections()
	}
}

func (r *runner) waitFollows(ctx context.Context, counter *Counter) (string, error) {
	err := poll(ctx, time.Now().Add(r.opts.StartTimeout), func(context.Context) error {
		recent := counter.Recent(convergeWindow)
		if Follows(recent, convergeWindow, InitialSplit) {
			return nil
		}
		return fmt.Errorf("the last %d answers: %s", len(recent), describeOutcomes(recent, counter.Snapshot().LastError))
	})
	if err != nil {
		return "", fmt.Errorf("answers do not follow the split %s: %w", InitialSplit, err)
	}
	return "they do", nil
}

// describeOutcomes counts outcomes: "v1 4, v2 12, failed 4 (last error: ...)".
func describeOutcomes(outcomes []string, lastError string) string {
	if len(outcomes) == 0 {
		return "none yet"
	}
	counts := map[string]int{}
	for _, o := range outcomes {
		counts[o]++
	}
	var parts []string
	for _, v := range SplitVersions() {
		if counts[v] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", v, counts[v]))
		}
	}
	if n := counts[""]; n > 0 {
		parts = append(parts, fmt.Sprintf("failed %d (last error: %s)", n, lastError))
	}
	return strings.Join(parts, ", ")
}

func (r *runner) printBanner() {
	w := r.out
	api := r.httpURL()
	fmt.Fprintf(w, "\nweft demo is running.\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  control plane\tHTTP API %s   xDS %s\n", api, r.xdsAddr)
	fmt.Fprintf(tw, "  admin token\t%s (weft finds it; curl needs it)\n", r.adminTokenFile())
	fmt.Fprintf(tw, "  registry\tcurl -H \"Authorization: Bearer $(cat %s)\" %s/api/v1/workloads\n", r.adminTokenFile(), api)
	fmt.Fprintf(tw, "  try it\tcurl -x http://%s %s\n", r.loadgen().outbound, EntryURL)
	fmt.Fprintf(tw, "  policy\tcurl -x http://%s http://ratings:%d/   # 403: only reviews may call ratings (AuthorizationPolicy ratings-readers)\n", r.loadgen().outbound, ServicePort)
	fmt.Fprintf(tw, "  logs\t%s%c\n", r.logDir, filepath.Separator)
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  workload\tlabels\tapp\tsidecar inbound\toutbound\tadmin\n")
	for _, in := range r.instances {
		app := in.app
		if in.appProc == nil {
			app += " (stub)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", in.Service, in.labelsFlag(), app, in.inbound, in.outbound, in.admin)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nChange the %s split (applied now: %s):\n", SplitService, InitialSplit.File)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range append(append([]Split(nil), OtherSplits...), InitialSplit) {
		fmt.Fprintf(tw, "  %s apply %s %s -f %s\t# %s\n", r.weftCommand(), ApplyServerFlag, api, filepath.Join(r.dir, s.File), s)
	}
	tw.Flush()
	fmt.Fprintf(w, "  or without the CLI: curl -sS -H \"Authorization: Bearer $(cat %s)\" -H 'Content-Type: application/yaml' --data-binary @FILE %s/api/v1/apply\n", r.adminTokenFile(), api)
	if r.opts.Duration > 0 {
		fmt.Fprintf(w, "Measuring for %s; Ctrl-C stops earlier.\n\n", r.opts.Duration)
	} else {
		fmt.Fprintf(w, "Press Ctrl-C to stop.\n\n")
	}
}

// measure prints one line of stats per second until ctx is done or
// Options.Duration has passed, then stops the load and returns the stats of
// the whole period.
func (r *runner) measure(ctx context.Context, counter *Counter) Stats {
	versions := SplitVersions()
	begin := counter.Snapshot()
	prev := begin
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var end <-chan time.Time
	if r.opts.Duration > 0 {
		timer := time.NewTimer(r.opts.Duration)
		defer timer.Stop()
		end = timer.C
	}
loop:
	for rows := 0; ; rows++ {
		if rows%30 == 0 {
			fmt.Fprintln(r.out, formatHeader(versions))
		}
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case now := <-ticker.C:
			cur := counter.Snapshot()
			fmt.Fprintln(r.out, formatRow(now, cur.Sub(prev), versions))
			prev = cur
		}
	}
	r.reportExit(ctx)
	r.stopLoad()
	total := counter.Snapshot().Sub(begin)
	fmt.Fprintf(r.out, "total: %s\n", total)
	return total
}

// formatHeader is the header of the per-second table for the given versions.
func formatHeader(versions []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s  %6s  %6s ", "time", "req/s", "errors")
	for _, v := range versions {
		fmt.Fprintf(&b, " %5s", v)
	}
	fmt.Fprintf(&b, "   (share of %s answers)", SplitService)
	return b.String()
}

// formatRow is one line of the per-second table: the time, the rate, the
// errors and each version's share of successful answers, then the last
// error if there were errors.
func formatRow(t time.Time, s Stats, versions []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-8s  %6.0f  %6d ", t.Format("15:04:05"), s.Rate(), s.Errors)
	for _, v := range versions {
		if s.Successes() == 0 {
			fmt.Fprintf(&b, " %5s", "-")
			continue
		}
		fmt.Fprintf(&b, " %4.0f%%", 100*s.Share(v))
	}
	if s.Errors > 0 && s.LastError != "" {
		msg := s.LastError
		if len(msg) > 120 {
			msg = msg[:120] + "…"
		}
		fmt.Fprintf(&b, "   last error: %s", msg)
	}
	return b.String()
}

// shutdown stops the load, then every process (sidecars and apps first, the
// control plane last), then the load generator's stub app.
func (r *runner) shutdown() {
	if r.stopLoad != nil {
		r.stopLoad()
		r.stopLoad = func() {}
	}
	r.sup.beginStop()
	var others []*child
	for _, c := range r.sup.started() {
		if c != r.cp {
			others = append(others, c)
		}
	}
	if n := len(others); n > 0 || r.cp != nil {
		if r.cp != nil {
			n++
		}
		fmt.Fprintf(r.out, "stopping %s ... ", plural(n, "process", "processes"))
		killed := stop(others, r.opts.StopTimeout)
		if r.cp != nil {
			killed = append(killed, stop([]*child{r.cp}, 2*r.opts.StopTimeout)...)
		}
		if len(killed) > 0 {
			fmt.Fprintf(r.out, "done; killed after the timeout: %s\n", strings.Join(killed, ", "))
		} else {
			fmt.Fprintln(r.out, "done")
		}
	}
	if r.stopStub != nil {
		r.stopStub()
	}
}

// plural is "1 process" or "2 processes".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func (r *runner) removeDir() {
	if r.opts.KeepDir {
		fmt.Fprintf(r.out, "kept %s\n", r.dir)
		return
	}
	if err := os.RemoveAll(r.dir); err != nil {
		fmt.Fprintf(r.out, "removing %s: %v\n", r.dir, err)
		return
	}
	fmt.Fprintf(r.out, "removed %s\n", r.dir)
}

// weftCommand is how the user can run the weft binary the demo runs: its
// bare name when $PATH finds that same file, else its path.
func (r *runner) weftCommand() string {
	if found, err := exec.LookPath("weft"); err == nil {
		if a, b := absPath(found), absPath(r.weft); a == b {
			return "weft"
		}
	}
	if rel, err := filepath.Rel(mustGetwd(), r.weft); err == nil && !strings.HasPrefix(rel, "..") {
		return "./" + rel
	}
	return r.weft
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func mustGetwd() string {
	wd, _ := os.Getwd()
	return wd
}
