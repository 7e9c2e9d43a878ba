package main

import (
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var opts demo.Options
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a bookinfo-style mesh on loopback and watch a traffic split",
		Long: `demo starts, on 127.0.0.1 and in a temporary directory removed on exit:
the control plane; productpage, reviews v1, v2 and v3 and ratings, each a
small HTTP service behind its own weft-proxy sidecar; and a load generator
behind its own sidecar. It applies a DestinationRule and a VirtualService
that send 80% of reviews traffic to v2 and 20% to v1, sends a steady stream
of requests to productpage, and prints once a second the request rate, the
errors and which reviews version answered. It prints the weft apply commands
that change the split while it runs. Ctrl-C stops everything.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				// After the first signal, a second one ends the demo at once.
				<-ctx.Done()
				stop()
			}()
			opts.Out = cmd.OutOrStdout()
			_, err := demo.Run(ctx, opts)
			if err != nil && ctx.Err() != nil && cmd.Context().Err() == nil {
				return nil // interrupted while starting: what the user asked for
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Rate, "rate", demo.DefaultRate, "requests per second sent to productpage")
	f.DurationVar(&opts.Duration, "duration", 0, "stop after measuring traffic this long (0: run until Ctrl-C)")
	f.StringVar(&opts.ProxyBinary, "proxy-binary", "", "weft-proxy executable (default: next to weft, then on $PATH)")
	f.BoolVar(&opts.KeepDir, "keep", false, "keep the temporary directory (control-plane data, logs, YAML) on exit")
	f.DurationVar(&opts.StartTimeout, "start-timeout", 30*time.Second, "bound on each start-up step")
	return cmd
}

func newDemoAppCmd() *cobra.Command {
	var cfg demo.AppConfig
	cmd := &cobra.Command{
		Use:    "demo-app",
		Short:  "Serve one demo service (started by weft demo)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)).With("component", "demo-app")
			return demo.RunApp(ctx, cfg, log)
		},
	}
	cfg.BindFlags(cmd.Flags())
	return cmd
}
