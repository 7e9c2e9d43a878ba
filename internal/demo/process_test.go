package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a child process for the
// supervisor's tests; its value says how.
const helperEnv = "WEFT_DEMO_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "exit3":
		for i := range 30 {
			fmt.Printf("line %d\n", i)
		}
		fmt.Fprintln(os.Stderr, "fatal: cannot bind 127.0.0.1:1")
		os.Exit(3)
	case "term": // runs until SIGTERM, then exits 0
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		fmt.Println("ready")
		<-ctx.Done()
		fmt.Println("terminated")
	case "ignore-term": // ignores SIGTERM; only a kill ends it
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Minute)
	}
	os.Exit(0)
}

// helper returns the test binary's path and sets the environment its
// children see to run it as the given helper.
func helper(t *testing.T, mode string) string {
	t.Helper()
	t.Setenv(helperEnv, mode)
	// Under -race, a process otherwise sleeps 1s on exit, which the
	// stop tests would count against the grace period.
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSupervisorReportsAProcessThatExits(t *testing.T) {
	bin := helper(t, "exit3")
	failed := make(chan error, 1)
	sup := &supervisor{logDir: t.TempDir(), fail: func(err error) { failed <- err }}
	c, err := sup.start("ratings-v1 app", "ratings-v1-app", bin)
	if err != nil {
		t.Fatal(err)
	}
	var err2 error
	select {
	case err2 = <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("the supervisor did not report the exit")
	}
	var exit *ExitError
	if !errors.As(err2, &exit) {
		t.Fatalf("reported %T %v, want an *ExitError", err2, err2)
	}
	if exit.Name != "ratings-v1 app" || exit.LogPath != c.logPath || !strings.Contains(err2.Error(), "exit status 3") {
		t.Errorf("reported %q (%+v)", err2, exit)
	}
	lines, err := tailLines(exit.LogPath, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"line 28", "line 29", "fatal: cannot bind 127.0.0.1:1"}; !slices.Equal(lines, want) {
		t.Errorf("last lines %q, want %q", lines, want)
	}
	var out strings.Builder
	printTail(&out, exit.Name, exit.LogPath, 2)
	if !strings.Contains(out.String(), "  | fatal: cannot bind 127.0.0.1:1\n") || strings.Contains(out.String(), "line 28") {
		t.Errorf("printTail wrote:\n%s", out.String())
	}
}

func TestSupervisorIsQuietAboutExitsWhileStopping(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM")
	}
	bin := helper(t, "term")
	failed := make(chan error, 1)
	sup := &supervisor{logDir: t.TempDir(), fail: func(err error) { failed <- err }}
	c, err := sup.start("control plane", "control-plane", bin)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the helper to start", func() bool { lines, _ := tailLines(c.logPath, 1); return slices.Contains(lines, "ready") })
	sup.beginStop()
	if killed := stop(sup.started(), 10*time.Second); len(killed) != 0 {
		t.Errorf("killed %v, want the helper to exit on SIGTERM", killed)
	}
	if lines, _ := tailLines(c.logPath, 1); !slices.Equal(lines, []string{"terminated"}) {
		t.Errorf("log ends %q, want terminated", lines)
	}
	select {
	case err := <-failed:
		t.Errorf("the supervisor reported %v while stopping", err)
	default:
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM")
	}
	sup := &supervisor{logDir: t.TempDir(), fail: func(err error) { t.Errorf("reported %v", err) }}
	polite, err := sup.start("polite", "polite", helper(t, "term"))
	if err != nil {
		t.Fatal(err)
	}
	stubborn, err := sup.start("stubborn", "stubborn", helper(t, "ignore-term"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*child{polite, stubborn} {
		waitFor(t, c.name+" to start", func() bool { lines, _ := tailLines(c.logPath, 1); return slices.Contains(lines, "ready") })
	}
	sup.beginStop()
	start := time.Now()
	killed := stop(sup.started(), 500*time.Millisecond)
	if !slices.Equal(killed, []string{"stubborn"}) {
		t.Errorf("killed %v, want [stubborn]", killed)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %s with a 500ms grace", d)
	}
	if !polite.exited() || !stubborn.exited() {
		t.Error("stop returned before every process exited")
	}
}

func TestStartReportsAMissingBinary(t *testing.T) {
	sup := &supervisor{logDir: t.TempDir(), fail: func(error) {}}
	_, err := sup.start("x", "x", filepath.Join(t.TempDir(), "nope"))
	if err == nil || !strings.Contains(err.Error(), "starting x") {
		t.Errorf("start = %v, want a starting error", err)
	}
}
