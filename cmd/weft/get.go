package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/internal/config"
	"github.com/weft-mesh/weft/internal/mesh"
)

func newGetCmd() *cobra.Command {
	var namespace, output string
	var allNamespaces bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show resources (virtualservices, destinationrules) or registered workloads",
		Args:  cobra.RangeArgs(1, 2),
	}
	client := serverFlag(cmd)
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace (default: all for lists, default for one NAME)")
	cmd.Flags().BoolVarP(&allNamespaces, "all-namespaces", "A", false, "list in all namespaces (the default for lists)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "yaml or json (default: a table)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		out := cmd.OutOrStdout()
		if output != "" && output != "yaml" && output != "json" {
			return fmt.Errorf("--output %q: want yaml or json", output)
		}
		if k := strings.ToLower(args[0]); k == "workloads" || k == "workload" || k == "wl" {
			wls, err := client().Workloads(cmd.Context())
			if err != nil {
				return err
			}
			if output != "" {
				return printObject(out, output, map[string]any{"items": wls})
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tSERVICE\tID\tLABELS\tADDRESS\tAPP\tPROTOCOL")
			for _, w := range wls {
				if namespace != "" && w.Namespace != namespace {
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", w.Namespace, w.Service, w.ID, formatLabels(w.Labels), w.InboundAddr, w.AppAddr,
					cmp.Or(w.Protocol, mesh.ProtocolHTTP))
			}
			return tw.Flush()
		}
		kind, err := config.ParseKind(args[0])
		if err != nil {
			return err
		}
		var items []json.RawMessage
		if len(args) == 2 {
			if namespace == "" {
				namespace = "default"
			}
			obj, err := client().Get(cmd.Context(), string(kind), namespace, args[1])
			if err != nil {
				return err
			}
			items = []json.RawMessage{obj}
		} else {
			if allNamespaces {
				namespace = ""
			}
			if items, err = client().List(cmd.Context(), string(kind), namespace); err != nil {
				return err
			}
		}
		switch output {
		case "json":
			if len(args) == 2 {
				return printObject(out, output, items[0])
			}
			return printObject(out, output, map[string]any{"kind": "List", "items": items})
		case "yaml":
			for i, it := range items {
				if i > 0 {
					fmt.Fprintln(out, "---")
				}
				if err := printObject(out, output, it); err != nil {
					return err
				}
			}
			return nil
		}
		return printTable(out, kind, items)
	}
	return cmd
}

func printObject(out io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

// tableRow is what the table view reads of a stored object.
type tableRow struct {
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Spec struct {
		Hosts   []string `json:"hosts"`
		Host    string   `json:"host"`
		Subsets []struct {
			Name string `json:"name"`
		} `json:"subsets"`
		// Security policies.
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Action string            `json:"action"`
		Rules  []json.RawMessage `json:"rules"`
		Mtls   struct {
			Mode string `json:"mode"`
		} `json:"mtls"`
		JwtRules []struct {
			Issuer string `json:"issuer"`
		} `json:"jwtRules"`
	} `json:"spec"`
}

func printTable(out io.Writer, kind config.Kind, items []json.RawMessage) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	switch kind {
	case config.KindDestinationRule:
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tHOST\tSUBSETS\tREVISION")
	case config.KindVirtualService:
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tHOSTS\tREVISION")
	default:
		fmt.Fprintln(tw, "NAMESPACE\tNAME\tSELECTOR\tSUMMARY\tREVISION")
	}
	for _, it := range items {
		var r tableRow
		if err := json.Unmarshal(it, &r); err != nil {
			return err
		}
		m := r.Metadata
		switch kind {
		case config.KindDestinationRule:
			var subsets []string
			for _, s := range r.Spec.Subsets {
				subsets = append(subsets, s.Name)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Namespace, m.Name, r.Spec.Host, strings.Join(subsets, ","), m.ResourceVersion)
		case config.KindVirtualService:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Namespace, m.Name, strings.Join(r.Spec.Hosts, ","), m.ResourceVersion)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Namespace, m.Name, formatSelector(r.Spec.Selector.MatchLabels), r.summary(kind), m.ResourceVersion)
		}
	}
	return tw.Flush()
}

// summary is the one-line gist of a security policy for the table view.
func (r tableRow) summary(kind config.Kind) string {
	switch kind {
	case config.KindAuthorizationPolicy:
		action := r.Spec.Action
		if action == "" {
			action = "ALLOW"
		}
		return fmt.Sprintf("%s, %d rules", action, len(r.Spec.Rules))
	case config.KindPeerAuthentication:
		mode := r.Spec.Mtls.Mode
		if mode == "" {
			mode = "UNSET"
		}
		return "mtls " + mode
	case config.KindRequestAuthentication:
		var issuers []string
		for _, j := range r.Spec.JwtRules {
			issuers = append(issuers, j.Issuer)
		}
		return "issuers " + strings.Join(issuers, ",")
	}
	return ""
}

func formatSelector(labels map[string]string) string {
	if len(labels) == 0 {
		return "<all>"
	}
	return formatLabels(labels)
}

func formatLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + labels[k]
	}
	return strings.Join(keys, ",")
}
