// Command cpbench measures weft's control plane at scale: the real
// `weft control-plane` against simulated proxies on real ADS streams (see
// package bench/cp), and writes the figures into bench/results and
// docs/PERFORMANCE.md.
//
//	go run ./bench/cp/cmd/cpbench -mode quick   # make bench-cp-quick: 100 proxies / 100 services / 1,000 endpoints
//	go run ./bench/cp/cmd/cpbench -mode full    # make bench-cp: 1,000 proxies / 1,000 services / 10,000 endpoints
//
// It needs bin/weft (make build). Run it from anywhere inside the weft
// module; Ctrl-C stops the control plane and removes the temporary
// directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	cpbench "github.com/weft-mesh/weft/bench/cp"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cpbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "full", "quick (100 proxies / 100 services / 1,000 endpoints), 1000-proxies (1,000 / 100 / 1,000) or full (1,000 / 1,000 / 10,000)")
	proxies := fs.Int("proxies", 0, "measured proxies (0: the mode's); any size flag makes the mode custom")
	services := fs.Int("services", 0, "services (0: the mode's)")
	endpoints := fs.Int("endpoints", 0, "endpoints in all, proxies included (0: the mode's)")
	allLive := fs.Bool("all-live", false, "make every endpoint a live, measured proxy")
	epChanges := fs.Int("endpoint-changes", 3, "endpoint changes to measure")
	cfgChanges := fs.Int("config-changes", 2, "config changes to measure")
	profile := fs.String("profile", "", "record the control plane with perf during the initial push: true or false (default: true for full)")
	doc := fs.String("doc", "", "write the table into docs/PERFORMANCE.md: true or false (default: true for quick and full)")
	weft := fs.String("weft", "bin/weft", "the weft binary, relative to the module root unless absolute")
	results := fs.String("results", "bench/results", "directory of the JSON results, relative to the module root unless absolute")
	timeout := fs.Duration("timeout", 0, "bound on the whole run (default 2m quick, 10m full)")
	grace := fs.Duration("registration-grace", 30*time.Minute, "the control plane's --registration-grace; must outlast the run")
	maxRSS := fs.Float64("max-rss", defaultMaxRSS(), "stop the run when the control plane's RSS passes this many MiB (0: never); default 8 GiB or half the machine's memory, whichever is less")
	keep := fs.Bool("keep", false, "keep the temporary directory (control plane log, perf data)")
	command := fs.String("command", "", "how this run was started, for the record")
	fullEDS := fs.Bool("full-eds", false, "simulate weft-proxies that do not declare com.github.weft-mesh.partial-sotw: every EDS response carries every endpoint set (the behaviour before partial EDS), for comparison; the doc is left alone")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	size, ok := cpbench.Sizes[*mode]
	if !ok || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cpbench: -mode %q: want quick, 1000-proxies or full (and no arguments)\n", *mode)
		return 2
	}
	custom := false
	for _, o := range []struct {
		v   int
		dst *int
	}{{*proxies, &size.Proxies}, {*services, &size.Services}, {*endpoints, &size.Endpoints}} {
		if o.v > 0 {
			*o.dst, custom = o.v, true
		}
	}
	cfg := cpbench.Config{
		Mode: *mode, Size: size, AllLive: *allLive, EndpointChanges: *epChanges, ConfigChanges: *cfgChanges,
		Weft: *weft, ResultsDir: *results, Doc: "docs/PERFORMANCE.md", Command: *command,
		Profile: *mode != "quick", Keep: *keep, Timeout: *timeout, Grace: *grace, MaxRSSMiB: *maxRSS, Out: stdout,
	}
	cfg.FullEDS = *fullEDS
	if *fullEDS {
		cfg.Mode, cfg.Doc = *mode+"-full-eds", ""
	}
	if custom || *allLive {
		cfg.Mode, cfg.Doc = "custom", ""
		if *allLive && !custom {
			cfg.Mode = *mode + "-all-live"
		}
	}
	switch *doc {
	case "":
	case "true":
		cfg.Doc = "docs/PERFORMANCE.md"
	case "false":
		cfg.Doc = ""
	default:
		fmt.Fprintf(stderr, "cpbench: -doc %q: want true or false\n", *doc)
		return 2
	}
	switch *profile {
	case "":
	case "true", "false":
		cfg.Profile = *profile == "true"
	default:
		fmt.Fprintf(stderr, "cpbench: -profile %q: want true or false\n", *profile)
		return 2
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = map[string]time.Duration{"quick": 2 * time.Minute, "1000-proxies": 4 * time.Minute, "full": 4 * time.Minute}[*mode]
	}
	if cfg.Command == "" {
		cfg.Command = "go run ./bench/cp/cmd/cpbench " + strings.Join(args, " ")
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(stderr, "cpbench:", err)
		return 1
	}
	cfg.Root = root
	if !filepath.IsAbs(cfg.Weft) {
		cfg.Weft = filepath.Join(root, cfg.Weft)
	}
	if _, err := os.Stat(cfg.Weft); err != nil {
		fmt.Fprintf(stderr, "cpbench: %v: build it first with `make build`\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, runErr := cpbench.Run(ctx, cfg)
	if res == nil {
		fmt.Fprintln(stderr, "cpbench:", runErr)
		return 1
	}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, cpbench.Markdown(res))
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "cpbench: interrupted; nothing written")
		return 130
	}
	dir := cfg.ResultsDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	path, err := cpbench.WriteJSON(res, dir)
	if err != nil {
		fmt.Fprintln(stderr, "cpbench: write results:", err)
		return 1
	}
	fmt.Fprintln(stdout, "\ncpbench: wrote", path)
	if cfg.Doc != "" {
		if err := cpbench.UpdateDoc(filepath.Join(root, cfg.Doc), res); err != nil {
			fmt.Fprintln(stderr, "cpbench: update the doc:", err)
			return 1
		}
		fmt.Fprintln(stdout, "cpbench: updated", cfg.Doc)
	}
	var budget *cpbench.BudgetError
	if errors.As(runErr, &budget) {
		// The size did not fit the machine or the budget: an outcome,
		// recorded above, not a failure of the harness.
		fmt.Fprintln(stdout, "cpbench: incomplete:", runErr)
		return 0
	}
	if runErr != nil {
		fmt.Fprintln(stderr, "cpbench:", runErr)
		return 1
	}
	return 0
}

// defaultMaxRSS is 8 GiB, or half the machine's memory when that is less,
// in MiB.
func defaultMaxRSS() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 8192
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kib float64
		if _, err := fmt.Sscanf(line, "MemTotal: %f kB", &kib); err == nil {
			return min(8192, kib/1024/2)
		}
	}
	return 8192
}

// moduleRoot finds the directory of the weft module's go.mod above the
// working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/weft-mesh/weft\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("run cpbench inside the weft module (no go.mod of github.com/weft-mesh/weft above the working directory)")
}
