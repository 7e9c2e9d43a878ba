package main

import "github.com/spf13/cobra"

// subcommands lists weft's commands in the order help prints them.
func subcommands() []*cobra.Command {
	return []*cobra.Command{
		newControlPlaneCmd(),
		newApplyCmd(),
		newGetCmd(),
		newDeleteCmd(),
		newAnalyzeCmd(),
		newProxyStatusCmd(),
		newTokenCmd(),
		newCACmd(),
		newDemoCmd(),
		newDemoAppCmd(),
	}
}
