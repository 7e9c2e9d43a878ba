package meshbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weft-mesh/weft/bench/internal/benchproc"
)

// setProcessGroup puts cmd in a process group of its own, so that a Ctrl-C
// at the terminal reaches only the harness, which then stops its children
// in order; and asks the kernel to kill the child if the harness dies
// without cleaning up.
// For a command made with exec.CommandContext, the end of the context
// kills the whole group.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cmd.Cancel != nil {
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	}
}

// process is a long-running child: a server, a proxy, a control plane.
// Its output goes to a log file, whose tail is shown when it fails.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

// processes is every long-running child the harness started, so that all
// of them can be stopped at the end, whatever happened.
type processes struct {
	mu     sync.Mutex
	list   []*process
	logDir string
}

// start runs bin with args in the background, with the harness's
// environment.
func (ps *processes) start(name, bin string, args ...string) (*process, error) {
	return ps.startEnv(name, nil, bin, args...)
}

// startEnv is start with extra environment variables (KEY=value).
func (ps *processes) startEnv(name string, env []string, bin string, args ...string) (*process, error) {
	safe := strings.Map(func(r rune) rune {
		if r == ' ' || r == '/' {
			return '-'
		}
		return r
	}, name)
	logPath := filepath.Join(ps.logDir, safe+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p := &process{name: name, logPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	setProcessGroup(p.cmd)
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	go func() {
		p.waitErr = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// stopAll stops every process, the last started first.
func (ps *processes) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop(10 * time.Second)
	}
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// pids lists every running process the harness started, their children
// (nginx workers) and the harness itself.
func (ps *processes) pids() []int {
	ps.mu.Lock()
	roots := []int{os.Getpid()}
	for _, p := range ps.list {
		roots = append(roots, p.pid())
	}
	ps.mu.Unlock()
	return withChildren(roots)
}

// exited returns an error describing the exit if the process has ended.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); its last output:\n%s", p.name, p.waitErr, p.tail(30))
	default:
		return nil
	}
}

// stop sends SIGTERM to the process's group (an nginx master and its
// worker alike), waits up to grace for it to exit, then kills the group.
func (p *process) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	// A worker of a process that was killed may outlive it for a moment.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
}

func (p *process) tail(n int) string { return benchproc.Tail(p.logPath, n) }

var (
	lastLines = benchproc.LastLines
	freeAddr  = benchproc.FreeAddr
)

// waitFor retries check every 50 ms until it succeeds, p exits, ctx ends
// or timeout passes.
func waitFor(ctx context.Context, p *process, timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
		err := check()
		if err == nil {
			return nil
		}
		if p != nil {
			if exitErr := p.exited(); exitErr != nil {
				return fmt.Errorf("waiting for %s: %w", what, exitErr)
			}
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%s: not true after %s: %v", what, timeout, err)
			if p != nil {
				msg += "\nlast output of " + p.name + ":\n" + p.tail(30)
			}
			return errors.New(msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
