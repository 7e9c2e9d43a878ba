package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/apiclient"
	"github.com/weft-mesh/weft/internal/config"
)

// serverFlag adds --server, --token-file and --ca-file to cmd and returns
// a function that returns the client they make. The client is made before
// the command runs (flags, then $WEFT_SERVER, $WEFT_TOKEN_FILE and
// $WEFT_CA_FILE, then what a control plane on this host recorded, see
// apiclient.Settings.Resolve), so a bad token or CA file fails the command
// up front.
func serverFlag(cmd *cobra.Command) func() *apiclient.Client {
	var s apiclient.Settings
	var client *apiclient.Client
	f := cmd.Flags()
	f.StringVar(&s.Server, "server", "", "control plane HTTP API URL (env "+apiclient.EnvServer+", default "+apiclient.DefaultServer+")")
	f.StringVar(&s.TokenFile, "token-file", "", "file holding the control plane's admin token (env "+apiclient.EnvTokenFile+"; default: found for a control plane on this host)")
	f.StringVar(&s.CAFile, "ca-file", "", "trust bundle (PEM) that verifies an https API (env "+apiclient.EnvCAFile+"; see weft ca root)")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		c, err := apiclient.Connect(s)
		client = c
		return err
	}
	return func() *apiclient.Client { return client }
}

func newApplyCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update resources from YAML or JSON (all or nothing)",
		Args:  cobra.NoArgs,
	}
	client := serverFlag(cmd)
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - for standard input (repeatable)")
	cmd.MarkFlagRequired("filename")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		docs, err := readDocuments(files, cmd.InOrStdin())
		if err != nil {
			return err
		}
		resp, err := client().Apply(cmd.Context(), docs)
		if err != nil {
			return err
		}
		printResponse(cmd.OutOrStdout(), cmd.ErrOrStderr(), resp)
		return nil
	}
	return cmd
}

func newDeleteCmd() *cobra.Command {
	var files []string
	var namespace string
	cmd := &cobra.Command{
		Use:   "delete (-f FILE|DIR|- | KIND NAME)",
		Short: "Delete resources named in files, or one resource by kind and name",
		Args:  cobra.MaximumNArgs(2),
	}
	client := serverFlag(cmd)
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - for standard input")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of KIND NAME")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var resp *apiclient.Response
		var err error
		switch {
		case len(files) > 0 && len(args) == 0:
			var docs []byte
			if docs, err = readDocuments(files, cmd.InOrStdin()); err != nil {
				return err
			}
			resp, err = client().DeleteDocuments(cmd.Context(), docs)
		case len(files) == 0 && len(args) == 2:
			var kind config.Kind
			if kind, err = config.ParseKind(args[0]); err != nil {
				return err
			}
			resp, err = client().Delete(cmd.Context(), string(kind), namespace, args[1])
		default:
			return errors.New("give either -f FILE or KIND NAME")
		}
		if err != nil {
			return err
		}
		printResponse(cmd.OutOrStdout(), cmd.ErrOrStderr(), resp)
		return nil
	}
	return cmd
}

func newAnalyzeCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "analyze -f FILE|DIR|-",
		Short: "Validate resources offline and report fields weft does not enforce yet",
		Long: "analyze needs no control plane. It exits non-zero when any resource is invalid;\n" +
			"fields that are accepted but not enforced yet are reported as warnings.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			docs, err := readDocuments(files, cmd.InOrStdin())
			if err != nil {
				return err
			}
			resources, err := config.Parse(docs)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, f := range config.Analyze(resources) {
				fmt.Fprintf(out, "Warning: %s: %s: %s\n", f.Resource, f.Path, f.Message)
			}
			fmt.Fprintf(out, "%d resources valid\n", len(resources))
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "file, directory or - for standard input")
	cmd.MarkFlagRequired("filename")
	return cmd
}

func printResponse(out, errOut io.Writer, resp *apiclient.Response) {
	for _, w := range resp.Warnings {
		fmt.Fprintf(errOut, "Warning: %s: %s: %s\n", w.Resource, w.Path, w.Message)
	}
	for _, r := range resp.Results {
		fmt.Fprintf(out, "%s %s/%s %s\n", r.Kind, r.Namespace, r.Name, r.Action)
	}
}

// readDocuments reads files, directories (their .yaml, .yml and .json files,
// in name order) and "-" for stdin, joined into one multi-document stream.
func readDocuments(paths []string, stdin io.Reader) ([]byte, error) {
	var parts [][]byte
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("read stdin: %w", err)
			}
			parts = append(parts, b)
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		files := []string{p}
		if info.IsDir() {
			files = nil
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				switch strings.ToLower(filepath.Ext(e.Name())) {
				case ".yaml", ".yml", ".json":
					if !e.IsDir() {
						files = append(files, filepath.Join(p, e.Name()))
					}
				}
			}
			sort.Strings(files)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			parts = append(parts, b)
		}
	}
	var out []byte
	for i, p := range parts {
		if i > 0 {
			out = append(out, "\n---\n"...)
		}
		out = append(out, p...)
	}
	return out, nil
}
