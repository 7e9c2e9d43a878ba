package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// The demo-app flag names; AppConfig.BindFlags and AppConfig.Args agree on them.
const (
	flagAppName     = "name"
	flagAppVersion  = "version"
	flagAppListen   = "listen"
	flagAppUpstream = "upstream-service"
	flagAppProxy    = "proxy"
	flagAppTimeout  = "upstream-timeout"
)

// DefaultUpstreamTimeout bounds each upstream call of a demo app.
const DefaultUpstreamTimeout = 5 * time.Second

// AppConfig configures one demo app: a bookinfo-style HTTP service that
// answers every request with its name and version and, when it has an
// upstream, the upstream's answer.
type AppConfig struct {
	// Name is the service name the app reports, e.g. "reviews".
	Name string
	// Version is the version the app reports, e.g. "v2".
	Version string
	// Listen is the host:port the app serves HTTP on.
	Listen string
	// Upstream is the URL the app calls for every request it serves, e.g.
	// http://ratings:9080/ratings; empty for an app that calls nothing.
	Upstream string
	// Proxy is the URL of the HTTP proxy upstream calls go through: the
	// sidecar's outbound listener, e.g. http://127.0.0.1:15001. Empty calls
	// the upstream directly.
	Proxy string
	// Timeout bounds each upstream call; zero means DefaultUpstreamTimeout.
	Timeout time.Duration
}

// BindFlags registers the demo-app flags on fs, writing into c.
func (c *AppConfig) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Name, flagAppName, "", "service name the app reports (required)")
	fs.StringVar(&c.Version, flagAppVersion, "v1", "version the app reports")
	fs.StringVar(&c.Listen, flagAppListen, "127.0.0.1:9080", "host:port to serve HTTP on")
	fs.StringVar(&c.Upstream, flagAppUpstream, "", "URL to call for every request, e.g. http://ratings:9080/ratings (empty: call nothing)")
	fs.StringVar(&c.Proxy, flagAppProxy, "", "HTTP proxy URL for upstream calls: the sidecar's outbound listener (empty: call directly)")
	fs.DurationVar(&c.Timeout, flagAppTimeout, DefaultUpstreamTimeout, "timeout of each upstream call")
}

// Args returns the `weft demo-app` arguments (after the command name) that
// configure an app like c.
func (c AppConfig) Args() []string {
	args := []string{
		"--" + flagAppName, c.Name,
		"--" + flagAppVersion, c.Version,
		"--" + flagAppListen, c.Listen,
	}
	if c.Upstream != "" {
		args = append(args, "--"+flagAppUpstream, c.Upstream)
	}
	if c.Proxy != "" {
		args = append(args, "--"+flagAppProxy, c.Proxy)
	}
	if c.Timeout != 0 {
		args = append(args, "--"+flagAppTimeout, c.Timeout.String())
	}
	return args
}

// propagatedHeaders are the request headers an app copies onto its upstream
// call, as bookinfo's services do, so that traces and request IDs follow a
// request through the mesh.
var propagatedHeaders = []string{
	"X-Request-Id",
	"Traceparent", "Tracestate", "Baggage",
	"B3", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags",
	"X-Ot-Span-Context",
	"End-User",
}

// App is a demo service's HTTP handler. Every path except /healthz answers
// with a JSON object:
//
//	{"name":"reviews","version":"v2","ratings":{"name":"ratings","version":"v1"}}
//
// where the third key is the upstream service's name (the first label of
// the upstream URL's host) and its value the upstream's JSON answer. If the
// upstream call fails or answers other than 200, the app answers 502 with
// {"name":..,"version":..,"error":".."}.
type App struct {
	cfg      AppConfig
	upstream *url.URL
	key      string // the upstream's key in the answer
	client   *http.Client
	log      *slog.Logger
}

var _ http.Handler = (*App)(nil)

// NewApp validates cfg and returns its handler. log receives one line per
// failed upstream call; nil discards.
func NewApp(cfg AppConfig, log *slog.Logger) (*App, error) {
	if cfg.Name == "" {
		return nil, errors.New("demo app: --name is required")
	}
	if cfg.Version == "" {
		return nil, errors.New("demo app: --version is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultUpstreamTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &App{cfg: cfg, log: log}
	if cfg.Upstream != "" {
		u, err := url.Parse(cfg.Upstream)
		if err != nil || u.Scheme != "http" || u.Hostname() == "" {
			return nil, fmt.Errorf("demo app: --%s %q: want an http:// URL with a host", flagAppUpstream, cfg.Upstream)
		}
		a.upstream = u
		a.key, _, _ = strings.Cut(u.Hostname(), ".")
		if a.key == "name" || a.key == "version" || a.key == "error" {
			return nil, fmt.Errorf("demo app: upstream service name %q clashes with a field of the answer", a.key)
		}
		transport := &http.Transport{
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}
		if cfg.Proxy != "" {
			p, err := url.Parse(cfg.Proxy)
			if err != nil || p.Scheme != "http" || p.Host == "" {
				return nil, fmt.Errorf("demo app: --%s %q: want an http:// URL with a host", flagAppProxy, cfg.Proxy)
			}
			transport.Proxy = http.ProxyURL(p)
		}
		a.client = &http.Client{Transport: transport, Timeout: cfg.Timeout}
	}
	return a, nil
}

// ServeHTTP answers /healthz with 200 "ok" and every other request as the
// App doc says.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
		return
	}
	answer := map[string]any{"name": a.cfg.Name, "version": a.cfg.Version}
	if a.upstream != nil {
		body, err := a.callUpstream(r)
		if err != nil {
			a.log.Warn("upstream call failed", "upstream", a.upstream.String(), "err", err)
			answer["error"] = err.Error()
			writeJSON(w, http.StatusBadGateway, answer)
			return
		}
		if json.Valid(body) {
			answer[a.key] = json.RawMessage(body)
		} else {
			answer[a.key] = string(body)
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

// callUpstream calls the upstream once, with the request's propagated
// headers, and returns its body if it answered 200.
func (a *App) callUpstream(in *http.Request) ([]byte, error) {
	req, err := http.NewRequestWithContext(in.Context(), http.MethodGet, a.upstream.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", a.key, err)
	}
	for _, h := range propagatedHeaders {
		if v := in.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	req.Header.Set("User-Agent", "weft-demo-app/"+a.cfg.Name+"-"+a.cfg.Version)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling %s: %w", a.key, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s's answer: %w", a.key, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d: %s", a.key, resp.StatusCode, snippet(body))
	}
	return body, nil
}

// Close releases the app's idle upstream connections.
func (a *App) Close() {
	if a.client != nil {
		a.client.CloseIdleConnections()
	}
}

// ServeApp serves cfg's app on ln until ctx is done, then shuts down
// gracefully (waiting up to 5s for requests in flight). It closes ln.
func ServeApp(ctx context.Context, ln net.Listener, cfg AppConfig, log *slog.Logger) error {
	app, err := NewApp(cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer app.Close()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("demo app serving", "name", cfg.Name, "version", cfg.Version, "addr", ln.Addr().String(),
		"upstream", cfg.Upstream, "proxy", cfg.Proxy)
	select {
	case err := <-errc:
		return fmt.Errorf("demo app: serving: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	log.Info("demo app stopped", "name", cfg.Name, "version", cfg.Version)
	if err != nil {
		return fmt.Errorf("demo app: shutting down: %w", err)
	}
	return nil
}

// RunApp listens on cfg.Listen and serves cfg's app until ctx is done.
func RunApp(ctx context.Context, cfg AppConfig, log *slog.Logger) error {
	if _, err := NewApp(cfg, nil); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("demo app: listening: %w", err)
	}
	return ServeApp(ctx, ln, cfg, log)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// snippet is the start of body on one line, for error messages.
func snippet(body []byte) string {
	const max = 200
	s := string(bytes.TrimSpace(body))
	if len(s) > max {
		s = s[:max] + "…"
	}
	return strings.ReplaceAll(s, "\n", " ")
}
