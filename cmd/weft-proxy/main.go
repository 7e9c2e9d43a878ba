// Command weft-proxy is weft's sidecar: it takes its configuration from the
// control plane over xDS and forwards the application's outbound traffic and
// its peers' inbound traffic.
//
//	weft-proxy --control-plane ADDR --service NAME [--namespace NS] [--labels k=v,...]
//	    [--service-account SA] --token-file FILE --ca-file FILE [--insecure-xds]
//	    [--service-port N] [--protocol http|tcp] --app-addr HOST:PORT [--inbound-addr ADDR]
//	    [--upstream SERVICE[.NAMESPACE]:PORT=LOCAL_ADDR ...]
//	    [--outbound-addr ADDR] [--admin-addr ADDR] [--log-level LEVEL]
//
// SIGINT or SIGTERM stops accepting connections, drains requests in flight
// (bounded) and exits 0.
//
// The binary is kept small: the standard flag package, no Kubernetes and no
// etcd in its dependencies.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/weft-mesh/weft/internal/proxy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main without the exit, for tests: it returns the exit code.
func run(args []string, stderr io.Writer) int {
	opts, level, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "weft-proxy:", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts.Logger = logger
	// Give back the executable's pages that flag parsing and package
	// initialisation touched, and again once ready, those of the rest of
	// start-up (first configuration, first certificate): the proxy's RSS
	// is then what it serves with (trim_linux.go).
	trimExecutable()
	opts.OnReady = trimExecutable

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := proxy.Run(ctx, opts); err != nil {
		logger.Error("weft-proxy failed", "err", err)
		return 1
	}
	return 0
}

// parseFlags parses the command line into proxy options. The flag names
// are a contract with injectors and operators' scripts: do not rename them.
func parseFlags(args []string, output io.Writer) (proxy.Options, slog.Level, error) {
	var (
		opts   proxy.Options
		labels string
		level  = slog.LevelInfo
	)
	fs := flag.NewFlagSet("weft-proxy", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&opts.ControlPlane, "control-plane", "", "control plane xDS address, host:port (required)")
	fs.StringVar(&opts.Service, "service", "", "name of this workload's service (required)")
	fs.StringVar(&opts.Namespace, "namespace", proxy.DefaultNamespace, "namespace of the workload")
	fs.StringVar(&labels, "labels", "", "workload labels, k=v,k2=v2")
	fs.StringVar(&opts.ServiceAccount, "service-account", proxy.DefaultServiceAccount, "service account of the workload: its identity is spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>")
	fs.StringVar(&opts.TokenFile, "token-file", "", "file holding the token that proves the workload's identity (weft token create); re-read on every reconnect (required unless --insecure-xds)")
	fs.StringVar(&opts.CAFile, "ca-file", "", "trust bundle (PEM) that verifies the control plane (weft ca root; required unless --insecure-xds)")
	fs.BoolVar(&opts.InsecureXDS, "insecure-xds", false, "talk to the control plane without TLS (tests only)")
	fs.IntVar(&opts.ServicePort, "service-port", proxy.DefaultServicePort, "port the service is known by in the mesh")
	fs.StringVar(&opts.Protocol, "protocol", "http", "what the app speaks: http, or tcp (connections proxied as they are; AuthorizationPolicy closes denied ones)")
	fs.Func("upstream", "a TCP service the app reaches at a local address, SERVICE[.NAMESPACE]:PORT=LOCAL_ADDR (repeatable)", func(s string) error {
		u, err := proxy.ParseUpstream(s)
		if err != nil {
			return err
		}
		opts.Upstreams = append(opts.Upstreams, u)
		return nil
	})
	fs.StringVar(&opts.AppAddr, "app-addr", "", "address the application listens on, host:port (required)")
	fs.StringVar(&opts.InboundAddr, "inbound-addr", proxy.DefaultInboundAddr, "inbound listener address (mesh -> app)")
	fs.StringVar(&opts.OutboundAddr, "outbound-addr", proxy.DefaultOutboundAddr, "outbound listener address (app -> mesh)")
	fs.StringVar(&opts.AdminAddr, "admin-addr", proxy.DefaultAdminAddr, "admin address, loopback only")
	fs.TextVar(&level, "log-level", level, "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return proxy.Options{}, 0, err
	}
	if fs.NArg() > 0 {
		return proxy.Options{}, 0, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"--control-plane", opts.ControlPlane}, {"--service", opts.Service}, {"--app-addr", opts.AppAddr},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if !opts.InsecureXDS {
		for _, f := range []struct{ name, v string }{{"--token-file", opts.TokenFile}, {"--ca-file", opts.CAFile}} {
			if f.v == "" {
				missing = append(missing, f.name)
			}
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("missing required flags: %s", strings.Join(missing, ", "))
		if !opts.InsecureXDS && (opts.TokenFile == "" || opts.CAFile == "") {
			msg += " (the token comes from weft token create and the CA file from weft ca root; --insecure-xds, for tests only, needs neither)"
		}
		return proxy.Options{}, 0, errors.New(msg)
	}
	l, err := parseLabels(labels)
	if err != nil {
		return proxy.Options{}, 0, fmt.Errorf("--labels: %w", err)
	}
	opts.Labels = l
	return opts, level, nil
}

// parseLabels parses "k=v,k2=v2". Empty means no labels.
func parseLabels(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := make(map[string]string)
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("label %q given twice", k)
		}
		out[k] = v
	}
	return out, nil
}
