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
