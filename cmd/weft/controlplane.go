package main

import (
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/controlplane"
)

func newControlPlaneCmd() *cobra.Command {
	var opts controlplane.Options
	var etcdEndpoints, logLevel string
	cmd := &cobra.Command{
		Use:   "control-plane",
		Short: "Run the control plane: config API, registry and xDS server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if etcdEndpoints != "" {
				opts.EtcdEndpoints = strings.Split(etcdEndpoints, ",")
			}
			opts.Logger = newLogger(logLevel)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return controlplane.Run(ctx, opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", "weft-data", "directory of the embedded etcd (config survives restarts)")
	f.StringVar(&etcdEndpoints, "etcd-endpoints", "", "comma-separated client URLs of an external etcd cluster, instead of the embedded one")
	f.StringVar(&opts.XDSAddr, "xds-addr", "127.0.0.1:15010", "address of the xDS (ADS) gRPC server")
	f.StringVar(&opts.HTTPAddr, "http-addr", "127.0.0.1:15014", "address of the HTTP API")
	f.DurationVar(&opts.RegistrationGrace, "registration-grace", 10*time.Second, "how long a workload stays registered after its proxy disconnects")
	f.DurationVar(&opts.Debounce, "debounce", 100*time.Millisecond, "quiet time after a change before config is pushed")
	f.StringVar(&opts.TrustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of the mesh (fixed once the CA root exists)")
	f.DurationVar(&opts.WorkloadCertTTL, "workload-cert-ttl", 24*time.Hour, "lifetime of workload certificates, at least 1m; proxies renew at half of it")
	f.StringVar(&opts.CACertFile, "ca-cert", "", "intermediate CA certificate (PEM) signed by your own root; with --ca-key and --ca-chain")
	f.StringVar(&opts.CAKeyFile, "ca-key", "", "private key (PEM) of --ca-cert")
	f.StringVar(&opts.CAChainFile, "ca-chain", "", "certificates (PEM) from the issuer of --ca-cert up to and including your root")
	f.BoolVar(&opts.InsecureXDS, "insecure-xds", false, "serve xDS and the CA without TLS (tests only; tokens are still required)")
	f.StringVar(&opts.RootNamespace, "root-namespace", "istio-system", "namespace whose policies apply mesh-wide")
	f.StringVar(&opts.PathNormalization, "path-normalization", "MERGE_SLASHES", "request path normalization before routing and policy: BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
