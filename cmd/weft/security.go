package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/apiclient"
)

func newTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make the tokens proxies prove their identity with",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newTokenCreateCmd())
	return cmd
}

func newTokenCreateCmd() *cobra.Command {
	var req apiclient.TokenRequest
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "create --namespace NS --service-account SA [--ttl D]",
		Short: "Print a token that proves spiffe://<trust-domain>/ns/NS/sa/SA to the control plane",
		Long: `create asks the control plane for a token (an ES256 JWT it signs) that
proves one workload identity, and prints it. Give it to the proxy with
weft-proxy --token-file FILE: the proxy can then connect as that namespace
and service account only, and obtain a certificate for that identity only.
Anyone holding the token can do the same, so keep it like a password.`,
		Args: cobra.NoArgs,
	}
	client := serverFlag(cmd)
	f := cmd.Flags()
	f.StringVarP(&req.Namespace, "namespace", "n", "", "namespace of the workload (required)")
	f.StringVar(&req.ServiceAccount, "service-account", "default", "service account of the workload")
	f.DurationVar(&ttl, "ttl", 0, "how long the token is valid (default 720h, at most 8784h)")
	cmd.MarkFlagRequired("namespace")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if ttl < 0 {
			return errors.New("--ttl must be positive")
		}
		if ttl > 0 {
			req.TTL = ttl.String()
		}
		tok, err := client().CreateToken(cmd.Context(), req)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), tok.Token)
		fmt.Fprintf(cmd.ErrOrStderr(), "token for %s, valid until %s\n", tok.Identity, tok.ExpiresAt.UTC().Format(time.RFC3339))
		return nil
	}
	return cmd
}

func newCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "The mesh certificate authority",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newCARootCmd())
	return cmd
}

func newCARootCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "root",
		Short: "Print the trust bundle (PEM): what weft-proxy --ca-file needs",
		Long: `root prints the mesh CA's root certificate(s), PEM. Proxies verify the
control plane with it (weft-proxy --ca-file), and the CLI verifies an https
API with it (--ca-file). With --data-dir it reads the file the control plane
writes there (DATA-DIR/ca.pem) instead of asking the API.`,
		Args: cobra.NoArgs,
	}
	client := serverFlag(cmd)
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "read the trust bundle from this control plane data directory instead of the API")
	pre := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if dataDir != "" {
			return nil // no API needed
		}
		return pre(c, args)
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if dataDir != "" {
			b, err := os.ReadFile(filepath.Join(dataDir, apiclient.TrustBundleFile))
			if err != nil {
				return fmt.Errorf("read the trust bundle: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		}
		tb, err := client().TrustBundle(cmd.Context())
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(cmd.OutOrStdout(), tb.PEM)
		return err
	}
	return cmd
}
