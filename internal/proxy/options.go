package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/identity"
)

// Defaults for Options, Istio's port numbers.
const (
	DefaultNamespace      = "default"
	DefaultServiceAccount = "default"
	DefaultServicePort    = 80
	DefaultInboundAddr    = "127.0.0.1:15006"
	DefaultOutboundAddr   = "127.0.0.1:15001"
	DefaultAdminAddr      = "127.0.0.1:15000"
	DefaultDrainTimeout   = 5 * time.Second
)

// Options configure a proxy. The zero value of each optional field means
// its default.
type Options struct {
	// ControlPlane is the control plane's xDS address, host:port. Required.
	ControlPlane string
	// Service is the name of the service this proxy's workload belongs to.
	// Required.
	Service string
	// Namespace is the workload's namespace; default "default".
	Namespace string
	// ServiceAccount names the workload's identity in its namespace;
	// default "default". The proxy's SPIFFE ID is
	// spiffe://<trust-domain>/ns/<Namespace>/sa/<ServiceAccount>, and its
	// token must be for that identity.
	ServiceAccount string
	// TokenFile holds the token that proves the workload's identity to the
	// control plane (weft token create). It is sent on every call to the
	// control plane and read again for each, so it can be replaced while
	// the proxy runs. With a token the proxy obtains and renews its
	// certificate (SVID) and is ready only once it has one. Required unless
	// InsecureXDS.
	TokenFile string
	// CAFile holds the trust bundle (PEM, weft ca root) that verifies the
	// control plane's certificate. Required unless InsecureXDS.
	CAFile string
	// InsecureXDS talks to the control plane in plaintext, for tests only.
	InsecureXDS bool
	// Identity, when set, provides the proxy's certificate for mTLS
	// instead of the identity agent: for tests, which bring their own CA.
	Identity identity.Source
	// Labels are the workload's labels, used by the control plane to select
	// subsets and policies.
	Labels map[string]string
	// ServicePort is the port the service is known by in the mesh; default 80.
	ServicePort int
	// Protocol is what the app speaks on AppAddr: "http" (the default) or
	// "tcp", whose connections the inbound listener proxies as they are,
	// under the workload's PeerAuthentication and AuthorizationPolicy.
	Protocol string
	// Upstreams are TCP services the app reaches through local listeners
	// of the proxy, as Consul's upstreams: a connection to an upstream's
	// LocalAddr goes to the service over mTLS (when it runs sidecars).
	Upstreams []Upstream
	// AppAddr is where the local application listens, host:port. Inbound
	// traffic is delivered there. Required.
	AppAddr string
	// InboundAddr is where peers' traffic for this workload arrives;
	// default 127.0.0.1:15006.
	InboundAddr string
	// OutboundAddr is where the application sends its mesh traffic, as an
	// http_proxy or by host; default 127.0.0.1:15001.
	OutboundAddr string
	// AdminAddr serves /config_dump, /healthz/ready and /stats. It must be a
	// loopback address: the config dump is not for the network. Default
	// 127.0.0.1:15000.
	AdminAddr string
	// DrainTimeout bounds how long shutdown waits for requests in flight;
	// default 5s.
	DrainTimeout time.Duration
	// Logger is the root logger; each part logs with a "component" attribute.
	// Nil discards logs.
	Logger *slog.Logger
	// OnReady, if set, is called once, on a goroutine of its own, when the
	// proxy first becomes ready (as /healthz/ready says): its start-up work
	// (first configuration decoded and compiled, first certificate) is
	// behind it. weft-proxy uses it to give back the memory pages that only
	// start-up touched. It is not called if Serve ends first.
	OnReady func()
}

func (o *Options) setDefaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.ServiceAccount == "" {
		o.ServiceAccount = DefaultServiceAccount
	}
	if o.ServicePort == 0 {
		o.ServicePort = DefaultServicePort
	}
	if o.InboundAddr == "" {
		o.InboundAddr = DefaultInboundAddr
	}
	if o.OutboundAddr == "" {
		o.OutboundAddr = DefaultOutboundAddr
	}
	if o.AdminAddr == "" {
		o.AdminAddr = DefaultAdminAddr
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	var errs []error
	if o.ControlPlane == "" {
		errs = append(errs, errors.New("control plane address is required"))
	}
	if o.Service == "" {
		errs = append(errs, errors.New("service is required"))
	}
	if o.AppAddr == "" {
		errs = append(errs, errors.New("app address is required"))
	} else if err := checkHostPort(o.AppAddr); err != nil {
		errs = append(errs, fmt.Errorf("app address: %w", err))
	}
	if o.ServicePort < 1 || o.ServicePort > 65535 {
		errs = append(errs, fmt.Errorf("service port %d is not a port", o.ServicePort))
	}
	if o.Protocol != "" && o.Protocol != "http" && o.Protocol != "tcp" {
		errs = append(errs, fmt.Errorf("protocol %q: want http or tcp", o.Protocol))
	}
	if err := checkLoopback(o.AdminAddr); err != nil {
		errs = append(errs, fmt.Errorf("admin address: %w", err))
	}
	if !o.InsecureXDS {
		if o.TokenFile == "" {
			errs = append(errs, errors.New("a token file is required to talk to the control plane (--token-file; make one with weft token create), or --insecure-xds for tests"))
		}
		if o.CAFile == "" {
			errs = append(errs, errors.New("a CA file is required to verify the control plane (--ca-file; the bundle from weft ca root), or --insecure-xds for tests"))
		}
	}
	for _, f := range []struct{ what, path string }{{"token file", o.TokenFile}, {"CA file", o.CAFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.what, err))
		}
	}
	return errors.Join(errs...)
}

func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has no valid port", addr)
	}
	return nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address", addr)
	}
	return nil
}

// Upstream is one TCP service the app reaches through a local listener.
type Upstream struct {
	// Service and Namespace name the mesh service; an empty Namespace is
	// the proxy's own.
	Service, Namespace string
	// Port is the service's port.
	Port int
	// LocalAddr is where the proxy listens for the app, host:port.
	LocalAddr string
}

// ParseUpstream parses SERVICE[.NAMESPACE]:PORT=LOCAL_ADDR, for example
// db.data:5432=127.0.0.1:15432.
func ParseUpstream(s string) (Upstream, error) {
	target, local, ok := strings.Cut(s, "=")
	if !ok {
		return Upstream{}, fmt.Errorf("%q: want SERVICE[.NAMESPACE]:PORT=LOCAL_ADDR", s)
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return Upstream{}, fmt.Errorf("%q: %w", s, err)
	}
	u := Upstream{LocalAddr: local}
	u.Service, u.Namespace, _ = strings.Cut(host, ".")
	if u.Port, err = strconv.Atoi(port); err != nil || u.Port < 1 || u.Port > 65535 {
		return Upstream{}, fmt.Errorf("%q: port %q is not a port", s, port)
	}
	if u.Service == "" || strings.Contains(u.Namespace, ".") {
		return Upstream{}, fmt.Errorf("%q: want SERVICE or SERVICE.NAMESPACE before the port", s)
	}
	if err := checkHostPort(local); err != nil {
		return Upstream{}, fmt.Errorf("%q: local address: %w", s, err)
	}
	return u, nil
}

// clusterName is the name of the upstream service's cluster, as weft's
// control plane names outbound clusters (docs/xds.md, "Cluster").
func (u Upstream) clusterName(proxyNamespace string) string {
	return fmt.Sprintf("outbound|%d||%s.%s.%s", u.Port, u.Service, cmp.Or(u.Namespace, proxyNamespace), domainSuffix)
}

// domainSuffix ends every mesh service's host name (the control plane's
// mesh.DefaultDomainSuffix; the proxy does not link the control plane's
// model).
const domainSuffix = "svc.cluster.local"
