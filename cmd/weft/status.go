package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/apiclient"
)

// xdsTypes are the columns of proxy-status, in push order.
var xdsTypes = []string{"CDS", "EDS", "LDS", "RDS", "SDS"}

func newProxyStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "proxy-status",
		Short: "List connected proxies and, per xDS type, the version sent, ACKed or NACKed",
		Args:  cobra.NoArgs,
	}
	client := serverFlag(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "yaml or json (default: a table)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		proxies, err := client().Proxies(cmd.Context())
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if output != "" {
			return printObject(out, output, map[string]any{"items": proxies})
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PROXY\tSERVICE\tNAMESPACE\tLABELS\tADDRESS\tCDS\tEDS\tLDS\tRDS\tSDS")
		var nacks []string
		for _, p := range proxies {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s", p.ID, p.Service, p.Namespace, formatLabels(p.Labels), p.Address)
			for _, t := range xdsTypes {
				fmt.Fprintf(tw, "\t%s", syncState(p.XDS[t]))
				if ts := p.XDS[t]; ts != nil && ts.NackMessage != "" {
					nacks = append(nacks, fmt.Sprintf("%s %s NACKed version %s: %s", p.ID, t, ts.NackVersion, ts.NackMessage))
				}
			}
			fmt.Fprintln(tw)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(nacks) > 0 {
			fmt.Fprintln(out, "\nLast NACKs:")
			for _, n := range nacks {
				fmt.Fprintln(out, "  "+n)
			}
		}
		return nil
	}
	return cmd
}

// syncState summarises one type: SYNCED when the proxy ACKed what was sent,
// NACKED when it rejected the latest, STALE while an answer is pending.
func syncState(ts *apiclient.TypeStatus) string {
	switch {
	case ts == nil || ts.Sent == "":
		return "NOT SENT"
	case ts.NackMessage != "" && ts.NackVersion == ts.Sent:
		return fmt.Sprintf("NACKED (%s, acked %s)", ts.Sent, orNone(ts.Acked))
	case ts.Acked == ts.Sent:
		return "SYNCED (" + ts.Sent + ")"
	default:
		return fmt.Sprintf("STALE (sent %s, acked %s)", ts.Sent, orNone(ts.Acked))
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
