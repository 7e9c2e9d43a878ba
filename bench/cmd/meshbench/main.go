// Command meshbench runs weft's benchmark against nginx on loopback and
// writes the results into bench/results and docs/PERFORMANCE.md.
//
//	go run ./bench/cmd/meshbench -mode full     # make bench: 3 rounds, about 4 minutes
//	go run ./bench/cmd/meshbench -mode quick    # make bench-quick: 1 short round, under a minute
//	go run ./bench/cmd/meshbench -micro         # make bench-micro: the proxy's go test benchmarks
//
// Run it from anywhere inside the weft module. Ctrl-C stops every process
// it started and removes its temporary directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weft-mesh/weft/bench/meshbench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "full", "full (make bench) or quick (make bench-quick)")
	micro := fs.Bool("micro", false, "run the proxy's micro-benchmarks instead, and write their table")
	rounds := fs.Int("rounds", 0, "rounds (0: the mode's)")
	fixed := fs.Duration("fixed", 0, "length of each fixed-rate run (0: the mode's)")
	maxRun := fs.Duration("max", 0, "length of each maximum-rate run (0: the mode's)")
	paths := fs.String("paths", "", "comma-separated subset of "+strings.Join(meshbench.AllPaths, ",")+" (direct always runs)")
	doc := fs.String("doc", "", "write the table into docs/PERFORMANCE.md: true or false (default: true for full, false for quick)")
	keep := fs.Bool("keep", false, "keep the temporary directory (configs, logs, fortio output)")
	profile := fs.String("profile", "", "save pprof CPU and allocation profiles of the weft sidecars during every load into this directory (they skew the figures)")
	sidecarEnv := fs.String("sidecar-env", "", "comma-separated KEY=value pairs added to every weft sidecar's environment (for A/B runs, e.g. GOGC=200)")
	variantEnv := fs.String("variant-env", "", "comma-separated KEY=value pairs: add a copy of every weft path whose sidecars also get them, for an A/B comparison within one run")
	variantProxy := fs.String("variant-proxy", "", "a weft-proxy binary (a build of another commit, say): add a copy of every weft path whose sidecars run it, for an A/B comparison of two versions within one run")
	command := fs.String("command", "", "how this run was started, for the record (default: the go run command line)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "meshbench: unexpected arguments %q\n", fs.Args())
		return 2
	}

	repo, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(stderr, "meshbench:", err)
		return 1
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(stderr, "meshbench: the go command is needed to install fortio and build weft:", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second Ctrl-C kills the harness at once; its children die with
		// it (they are started with a parent-death signal).
		<-ctx.Done()
		stop()
	}()

	if *micro {
		if err := meshbench.RunMicro(ctx, goBin, repo, "docs/PERFORMANCE.md", stdout); err != nil {
			fmt.Fprintln(stderr, "meshbench:", err)
			return 1
		}
		return 0
	}

	o, err := meshbench.Defaults(*mode)
	if err != nil {
		fmt.Fprintln(stderr, "meshbench:", err)
		return 2
	}
	o.Repo, o.GoBin, o.Out, o.KeepTemp, o.ProfileDir = repo, goBin, stdout, *keep, *profile
	if *sidecarEnv != "" {
		o.SidecarEnv = strings.Split(*sidecarEnv, ",")
	}
	if *variantEnv != "" {
		o.VariantEnv = strings.Split(*variantEnv, ",")
	}
	if *variantProxy != "" {
		if o.VariantProxy, err = filepath.Abs(*variantProxy); err != nil {
			fmt.Fprintln(stderr, "meshbench:", err)
			return 2
		}
	}
	if *rounds > 0 {
		o.Rounds = *rounds
	}
	if *fixed > 0 {
		o.Fixed = *fixed
	}
	if *maxRun > 0 {
		o.Max = *maxRun
	}
	if *paths != "" {
		o.Paths = strings.Split(*paths, ",")
	}
	switch *doc {
	case "":
	case "true":
		o.UpdateDoc = true
	case "false":
		o.UpdateDoc = false
	default:
		fmt.Fprintf(stderr, "meshbench: -doc %q: want true or false\n", *doc)
		return 2
	}
	o.Command = *command
	if o.Command == "" {
		o.Command = "go run ./bench/cmd/meshbench " + strings.Join(args, " ")
	}
	start := time.Now()
	if _, err := meshbench.Run(ctx, o); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "meshbench: interrupted; every process it started is stopped")
			return 130
		}
		fmt.Fprintln(stderr, "meshbench:", err)
		return 1
	}
	fmt.Fprintf(stderr, "meshbench: done in %s\n", time.Since(start).Round(time.Second))
	return 0
}

// moduleRoot finds the weft module's root from the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/weft-mesh/weft\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run meshbench inside the weft module (no go.mod of github.com/weft-mesh/weft above the working directory)")
		}
		dir = parent
	}
}
