// Package e2e runs weft as a user does: the real weft and weft-proxy
// binaries as processes, real HTTP backends on loopback sockets, and the CLI
// against the control plane's API. Nothing of weft's own is mocked.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/apiclient"
	"github.com/weft-mesh/weft/internal/freeport"
)

// binDir holds the weft and weft-proxy binaries TestMain builds.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "weft-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// Control planes record themselves for local CLIs; keep those records
	// in the test's own directory.
	os.Setenv(apiclient.EnvRuntimeDir, filepath.Join(dir, "run"))
	for _, b := range []string{"weft", "weft-proxy"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b), "github.com/weft-mesh/weft/cmd/"+b)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", b, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address for a process to bind, from a port
// range nothing else takes meanwhile (see freeport).
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// process is a child process whose output is kept for failure reports.
type process struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startProcess(t *testing.T, name, bin string, args ...string) *process {
	t.Helper()
	p := &process{t: t, name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, bin), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, lastLines(p.out.String(), 40))
		}
	})
	return p
}

// stop sends sig and waits for the process to exit, killing it after 10s.
func (p *process) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// controlPlane is a running `weft control-plane`.
type controlPlane struct {
	*process
	dataDir, xdsAddr, httpAddr string
	grace                      time.Duration
	api                        *apiclient.Client
	// extraArgs are added to the control plane's command line.
	extraArgs []string

	// credsDir holds the tokens and the trust bundle made for sidecars.
	credsDir string
	mu       sync.Mutex
	tokens   map[string]string // "ns/sa" -> token file
	caFile   string
	fences   int // fences written, see fence
}

func startControlPlane(t *testing.T, grace time.Duration, extraArgs ...string) *controlPlane {
	t.Helper()
	cp := &controlPlane{dataDir: t.TempDir(), xdsAddr: freeAddr(t), httpAddr: freeAddr(t), grace: grace,
		extraArgs: extraArgs, credsDir: t.TempDir(), tokens: map[string]string{}}
	cp.start(t)
	return cp
}

func (cp *controlPlane) start(t *testing.T) {
	t.Helper()
	cp.process = startProcess(t, "control-plane", "weft", append([]string{"control-plane",
		"--data-dir", cp.dataDir, "--xds-addr", cp.xdsAddr, "--http-addr", cp.httpAddr,
		"--registration-grace", cp.grace.String(), "--log-level", "debug"}, cp.extraArgs...)...)
	eventually(t, 60*time.Second, "control plane healthy", func() error {
		select {
		case <-cp.done:
			t.Fatalf("control plane exited:\n%s", cp.out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return apiclient.New("http://" + cp.httpAddr).Healthy(ctx)
	})
	// The control plane writes its admin token before it serves.
	token, err := apiclient.ReadToken(cp.adminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	cp.api = apiclient.New("http://"+cp.httpAddr, apiclient.WithToken(token))
}

// adminTokenFile is where the control plane writes its admin token.
func (cp *controlPlane) adminTokenFile() string { return filepath.Join(cp.dataDir, "admin.token") }

// weft runs the CLI against cp, with its admin token, and returns its
// combined output and error.
func (cp *controlPlane) weft(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return cp.weftEnv(t, stdin, []string{"WEFT_TOKEN_FILE=" + cp.adminTokenFile()}, args...)
}

// weftEnv runs the CLI against cp with env added to the environment.
func (cp *controlPlane) weftEnv(t *testing.T, stdin string, env []string, args ...string) (string, error) {
	t.Helper()
	stdout, stderr, err := cp.weftOut(t, stdin, env, args...)
	return stderr + stdout, err
}

// weftOut runs the CLI against cp and returns its standard output and
// standard error apart.
func (cp *controlPlane) weftOut(t *testing.T, stdin string, env []string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "weft"), args...)
	cmd.Env = append(append(os.Environ(), "WEFT_SERVER=http://"+cp.httpAddr), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// tokenFile returns a file holding a token for namespace/serviceAccount,
// made once with `weft token create` and the admin token.
func (cp *controlPlane) tokenFile(t *testing.T, namespace, serviceAccount string) string {
	t.Helper()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	key := namespace + "/" + serviceAccount
	if f, ok := cp.tokens[key]; ok {
		return f
	}
	out, stderr, err := cp.weftOut(t, "", []string{"WEFT_TOKEN_FILE=" + cp.adminTokenFile()},
		"token", "create", "--namespace", namespace, "--service-account", serviceAccount)
	if err != nil {
		t.Fatalf("weft token create: %v\n%s%s", err, stderr, out)
	}
	f := filepath.Join(cp.credsDir, namespace+"-"+serviceAccount+".token")
	if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	cp.tokens[key] = f
	return f
}

// trustBundleFile returns a file holding `weft ca root`.
func (cp *controlPlane) trustBundleFile(t *testing.T) string {
	t.Helper()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.caFile != "" {
		return cp.caFile
	}
	out, stderr, err := cp.weftOut(t, "", []string{"WEFT_TOKEN_FILE=" + cp.adminTokenFile()}, "ca", "root")
	if err != nil || !strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Fatalf("weft ca root: %v\n%s%s", err, stderr, out)
	}
	cp.caFile = filepath.Join(cp.credsDir, "ca.pem")
	if err := os.WriteFile(cp.caFile, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return cp.caFile
}

// apply applies YAML through the API, fails the test if it is refused, and
// waits until every connected proxy has answered (ACKed or NACKed) the
// version that carries it.
func (cp *controlPlane) apply(t *testing.T, yaml string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cp.api.Apply(ctx, []byte(yaml))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	cp.waitAnswered(t, resp.Revision)
}

// waitAnswered waits until every connected proxy has answered a version of
// every xDS type at or after revision rev.
func (cp *controlPlane) waitAnswered(t *testing.T, rev int64) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("proxies answer version %d", rev), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		proxies, err := cp.api.Proxies(ctx)
		if err != nil {
			return err
		}
		for _, p := range proxies {
			for _, typ := range []string{"CDS", "EDS", "LDS", "RDS"} {
				ts := p.XDS[typ]
				if ts == nil {
					return fmt.Errorf("%s has no %s yet", p.ID, typ)
				}
				answered := ts.Acked
				if ts.NackVersion == ts.Sent {
					answered = ts.Sent
				}
				if v, _ := strconv.ParseInt(answered, 10, 64); v < rev {
					return fmt.Errorf("%s answered %s version %q, want %d or later", p.ID, typ, answered, rev)
				}
			}
		}
		return nil
	})
}

// sidecar is a running weft-proxy.
type sidecar struct {
	*process
	service                             string
	inboundAddr, outboundAddr, adminAdr string
}

// startSidecar runs a weft-proxy for service (with the service account of
// the same name, in namespace default) in front of appAddr, with a token
// and the trust bundle over TLS, and waits until it has its first config
// and certificate.
func startSidecar(t *testing.T, cp *controlPlane, service, labels, appAddr string) *sidecar {
	t.Helper()
	s := startSidecarWith(t, cp, sidecarOptions{service: service, labels: labels, appAddr: appAddr})
	s.waitReady(t)
	return s
}

// sidecarOptions say how to start a weft-proxy; empty fields take the
// defaults of startSidecar.
type sidecarOptions struct {
	service, labels, appAddr string
	serviceAccount           string
	// namespace is the workload's namespace; empty means default.
	namespace string
	// tokenFile overrides the token made for the service account.
	tokenFile string
	extraArgs []string
}

// startSidecarWith starts a weft-proxy without waiting for it.
func startSidecarWith(t *testing.T, cp *controlPlane, o sidecarOptions) *sidecar {
	t.Helper()
	if o.serviceAccount == "" {
		o.serviceAccount = o.service
	}
	if o.namespace == "" {
		o.namespace = "default"
	}
	if o.tokenFile == "" {
		o.tokenFile = cp.tokenFile(t, o.namespace, o.serviceAccount)
	}
	s := &sidecar{service: o.service, inboundAddr: freeAddr(t), outboundAddr: freeAddr(t), adminAdr: freeAddr(t)}
	args := []string{"--control-plane", cp.xdsAddr, "--service", o.service, "--service-port", "9080",
		"--namespace", o.namespace, "--service-account", o.serviceAccount, "--token-file", o.tokenFile, "--ca-file", cp.trustBundleFile(t),
		"--app-addr", o.appAddr, "--inbound-addr", s.inboundAddr, "--outbound-addr", s.outboundAddr,
		"--admin-addr", s.adminAdr, "--log-level", "debug"}
	if o.labels != "" {
		args = append(args, "--labels", o.labels)
	}
	args = append(args, o.extraArgs...)
	s.process = startProcess(t, "weft-proxy "+o.service+" "+o.labels, "weft-proxy", args...)
	return s
}

// waitReady waits until the sidecar has its first config and certificate.
func (s *sidecar) waitReady(t *testing.T) {
	t.Helper()
	service := s.service
	eventually(t, 30*time.Second, "sidecar "+service+" ready", func() error {
		select {
		case <-s.done:
			t.Fatalf("sidecar %s exited:\n%s", service, s.out.String())
		default:
		}
		resp, err := http.Get("http://" + s.adminAdr + "/healthz/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		return nil
	})
}

// client returns an HTTP client that sends every request through s's
// outbound listener as its HTTP proxy, as an app with http_proxy set does.
func (s *sidecar) client() *http.Client {
	proxyURL := &url.URL{Scheme: "http", Host: s.outboundAddr}
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), MaxIdleConnsPerHost: 64},
		Timeout:   10 * time.Second,
	}
}

// backend is a demo app: it answers every request with its name.
type backend struct {
	addr string
	name string
}

// startBackend serves HTTP on a loopback port, answering "<name>" and echoing
// the request path in a header so tests can see what arrived.
func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		io.WriteString(w, name)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &backend{addr: l.Addr().String(), name: name}
}

// get sends one GET and returns the status and body.
func get(c *http.Client, target string, header http.Header) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		return 0, "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// eventually retries f until it succeeds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
