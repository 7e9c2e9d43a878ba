package meshbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// httpc is the harness's own HTTP client: never through an http_proxy
// from the environment, always bounded.
var httpc = &http.Client{
	Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4},
	Timeout:   5 * time.Second,
}

// proxyBuildFlags are the go build flags of weft-proxy, as the Makefile's
// PROXY_BUILD_FLAGS (with CGO_ENABLED=0): its memory depends on them, so the
// harness measures the binary `make build` makes.
var proxyBuildFlags = []string{"-trimpath", "-tags", "grpcnotrace", "-ldflags", "-s -w"}

// buildWeft builds bin/weft and bin/weft-proxy in repo, as `make build`
// does.
func buildWeft(ctx context.Context, goBin, repo string) (weft, proxy string, err error) {
	for _, b := range []string{"weft", "weft-proxy"} {
		args := []string{"build", "-o", filepath.Join("bin", b)}
		if b == "weft-proxy" {
			args = append(args, proxyBuildFlags...)
		}
		cmd := exec.CommandContext(ctx, goBin, append(args, "./cmd/"+b)...)
		cmd.Dir = repo
		if b == "weft-proxy" {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("build %s: %w\n%s", b, err, lastLines(string(out), 30))
		}
	}
	return filepath.Join(repo, "bin", "weft"), filepath.Join(repo, "bin", "weft-proxy"), nil
}

// weftMesh is a control plane and the sidecars of the two weft paths.
type weftMesh struct {
	weftBin, proxyBin string
	dir               string
	cp                *process
	dataDir           string
	xdsAddr, httpAddr string
	// adminTokenFile is DATA-DIR/admin.token once the control plane
	// guards its API with a token; empty before that.
	adminTokenFile string
	// secure is set when weft-proxy takes --token-file and --ca-file
	// (every weft since issue 3; older ones are still measured, without).
	secure bool
	caFile string
	// tokens are the token files made so far, by service account.
	tokens map[string]string
}

// startControlPlane starts `weft control-plane` and waits until it is
// healthy.
func startControlPlane(ctx context.Context, ps *processes, weftBin, proxyBin, dir string) (*weftMesh, error) {
	m := &weftMesh{weftBin: weftBin, proxyBin: proxyBin, dir: dir, dataDir: filepath.Join(dir, "cp-data"), tokens: map[string]string{}}
	var err error
	if m.xdsAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	if m.httpAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	m.cp, err = ps.startEnv("control-plane", m.env(), weftBin, "control-plane",
		"--data-dir", m.dataDir, "--xds-addr", m.xdsAddr, "--http-addr", m.httpAddr, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	err = waitFor(ctx, m.cp, 60*time.Second, "control plane healthy at http://"+m.httpAddr+"/healthz", func() error {
		resp, err := httpc.Get("http://" + m.httpAddr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The control plane writes its admin token before it serves; the CLI
	// uses it for everything below, as the end-to-end tests do.
	if tok := filepath.Join(m.dataDir, "admin.token"); fileExists(tok) {
		m.adminTokenFile = tok
	}
	help, _ := exec.CommandContext(ctx, proxyBin, "-h").CombinedOutput()
	m.secure = bytes.Contains(help, []byte("-token-file")) && bytes.Contains(help, []byte("-ca-file"))
	if m.secure {
		if m.adminTokenFile == "" {
			return nil, fmt.Errorf("weft-proxy takes --token-file, but the control plane wrote no %s", filepath.Join(m.dataDir, "admin.token"))
		}
		root, err := m.weft(ctx, "", "ca", "root")
		if err != nil {
			return nil, err
		}
		if !strings.Contains(root, "BEGIN CERTIFICATE") {
			return nil, fmt.Errorf("weft ca root printed no certificate:\n%s", root)
		}
		m.caFile = filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(m.caFile, []byte(root), 0o644); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// tokenFile returns a file holding a token for default/serviceAccount,
// made once with `weft token create`.
func (m *weftMesh) tokenFile(ctx context.Context, serviceAccount string) (string, error) {
	if f, ok := m.tokens[serviceAccount]; ok {
		return f, nil
	}
	tok, err := m.weft(ctx, "", "token", "create", "--namespace", "default", "--service-account", serviceAccount)
	if err != nil {
		return "", err
	}
	f := filepath.Join(m.dir, "default-"+serviceAccount+".token")
	if err := os.WriteFile(f, []byte(tok), 0o600); err != nil {
		return "", err
	}
	m.tokens[serviceAccount] = f
	return f, nil
}

// env is the environment of the control plane and the CLI: the record a
// control plane writes about itself for CLIs on the same host stays in the
// harness's temporary directory, and the CLI is told where the API and its
// admin token are.
func (m *weftMesh) env() []string {
	env := []string{"WEFT_RUNTIME_DIR=" + filepath.Join(m.dir, "run"), "WEFT_SERVER=http://" + m.httpAddr}
	if m.adminTokenFile != "" {
		env = append(env, "WEFT_TOKEN_FILE="+m.adminTokenFile)
	}
	return env
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// weft runs the CLI against the control plane and returns its standard
// output.
func (m *weftMesh) weft(ctx context.Context, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, m.weftBin, args...)
	cmd.Env = append(os.Environ(), m.env()...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("weft %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// apply runs `weft apply -f -` with yaml.
func (m *weftMesh) apply(ctx context.Context, yaml string) error {
	_, err := m.weft(ctx, yaml, "apply", "-f", "-")
	return err
}

// sidecar is one running weft-proxy.
type sidecar struct {
	proc                       *process
	service                    string
	inbound, outbound, adminAt string
}

// startSidecar runs a weft-proxy for service (with identity namespace
// "default" and service account sa) in front of appAddr, and waits until
// it has its first configuration. env is added to its environment; bin,
// when set, is the binary to run instead of the tree's.
func (m *weftMesh) startSidecar(ctx context.Context, ps *processes, name, service, sa, appAddr string, env []string, bin string) (*sidecar, error) {
	if bin == "" {
		bin = m.proxyBin
	}
	s := &sidecar{service: service}
	for _, a := range []*string{&s.inbound, &s.outbound, &s.adminAt} {
		var err error
		if *a, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	args := []string{"--control-plane", m.xdsAddr, "--service", service, "--service-port", "9080", "--namespace", "default",
		"--app-addr", appAddr, "--inbound-addr", s.inbound, "--outbound-addr", s.outbound,
		"--admin-addr", s.adminAt, "--labels", "app=" + service, "--log-level", "warn"}
	if m.secure {
		tokFile, err := m.tokenFile(ctx, sa)
		if err != nil {
			return nil, err
		}
		args = append(args, "--service-account", sa, "--token-file", tokFile, "--ca-file", m.caFile)
	}
	var err error
	if s.proc, err = ps.startEnv(name, env, bin, args...); err != nil {
		return nil, err
	}
	err = waitFor(ctx, s.proc, 30*time.Second, name+" ready", func() error {
		resp, err := httpc.Get("http://" + s.adminAt + "/healthz/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// configDump fetches a sidecar's /config_dump.
func (s *sidecar) configDump() ([]byte, error) {
	resp, err := httpc.Get("http://" + s.adminAt + "/config_dump")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("config_dump: %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// clusterTLS reports, from a client sidecar's /config_dump, whether its
// cluster for service carries TLS: a key naming tls or a transport socket,
// anywhere in the cluster's entry, with a non-empty value. evidence names
// the key. An error means the cluster is not in the dump.
func clusterTLS(dump []byte, service string) (tls bool, evidence string, err error) {
	var d struct {
		Compiled *struct {
			Config struct {
				Clusters map[string]json.RawMessage `json:"clusters"`
			} `json:"config"`
		} `json:"compiled"`
	}
	if err := json.Unmarshal(dump, &d); err != nil {
		return false, "", fmt.Errorf("parse config dump: %w", err)
	}
	if d.Compiled == nil {
		return false, "", errors.New("config dump: no compiled configuration yet")
	}
	var names []string
	for name := range d.Compiled.Config.Clusters {
		if strings.HasPrefix(name, "outbound|") && strings.Contains(name, "|"+service+".") {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return false, "", fmt.Errorf("config dump: no outbound cluster for %s", service)
	}
	sort.Strings(names)
	for _, name := range names {
		var v any
		if err := json.Unmarshal(d.Compiled.Config.Clusters[name], &v); err != nil {
			return false, "", fmt.Errorf("config dump: cluster %s: %w", name, err)
		}
		if path := findTLSKey(v, name); path != "" {
			return true, path, nil
		}
	}
	return false, "", nil
}

// findTLSKey returns the path of the first key under v that names TLS or a
// transport socket and holds something, or "".
func findTLSKey(v any, path string) string {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			lk := strings.ToLower(k)
			if (strings.Contains(lk, "tls") || strings.Contains(lk, "transport_socket") || strings.Contains(lk, "transportsocket")) && nonEmpty(v[k]) {
				return path + "." + k
			}
			if p := findTLSKey(v[k], path+"."+k); p != "" {
				return p
			}
		}
	case []any:
		for i, e := range v {
			if p := findTLSKey(e, fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

func nonEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case string:
		return v != "" && !strings.EqualFold(v, "disable") && !strings.EqualFold(v, "plaintext") && !strings.EqualFold(v, "none")
	case map[string]any:
		return len(v) > 0
	case []any:
		return len(v) > 0
	default:
		return true
	}
}

// echoOnce POSTs body to url with host as the Host header and checks that
// the fortio server echoed it back, which proves the path works end to end.
func echoOnce(url, host, body string) error {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	if host != "" {
		req.Host = host
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(got) != body {
		return fmt.Errorf("POST %s (Host %q): %s, body %.200q, want 200 and the echo %q", url, host, resp.Status, got, body)
	}
	return nil
}

// logger is the harness's progress log.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
