package demo

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ExitError reports a child process that exited while the demo still
// needed it.
type ExitError struct {
	// Name is the process's name in the demo's output, e.g. "reviews-v2 sidecar".
	Name string
	// Err is what waiting for the process returned (nil if it exited 0).
	Err error
	// LogPath is the file the process's output went to.
	LogPath string
}

func (e *ExitError) Error() string {
	status := "exit status 0"
	if e.Err != nil {
		status = e.Err.Error()
	}
	return fmt.Sprintf("%s exited unexpectedly (%s)", e.Name, status)
}

func (e *ExitError) Unwrap() error { return e.Err }

// child is one process the demo started.
type child struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited
	err     error         // what Wait returned; read only after done is closed
}

// exited reports whether the process has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// supervisor starts the demo's processes, reports the first one that exits
// unexpectedly, and stops them.
type supervisor struct {
	logDir string
	// fail is called, from a goroutine of the supervisor, with an
	// *ExitError when a process exits before stopping has begun.
	fail func(error)

	stopping atomic.Bool
	mu       sync.Mutex
	children []*child
}

// start runs bin with args as a process named name, its stdout and stderr
// going to <logDir>/<file>.log.
func (s *supervisor) start(name, file, bin string, args ...string) (*child, error) {
	logPath := filepath.Join(s.logDir, file+".log")
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating log of %s: %w", name, err)
	}
	defer f.Close() // the process has its own copy once started
	fmt.Fprintf(f, "# %s: %s %s\n", time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	go func() {
		c.err = cmd.Wait()
		close(c.done)
		if !s.stopping.Load() {
			s.fail(&ExitError{Name: name, Err: c.err, LogPath: logPath})
		}
	}()
	return c, nil
}

// beginStop marks every later exit as expected.
func (s *supervisor) beginStop() { s.stopping.Store(true) }

// stop asks the given processes to terminate (SIGTERM where there are
// signals), waits up to grace for them to exit, then kills the rest and
// waits for them. It returns the names of the processes it had to kill.
// Call beginStop first.
func stop(children []*child, grace time.Duration) []string {
	for _, c := range children {
		if !c.exited() {
			terminate(c.cmd.Process)
		}
	}
	timeout := time.After(grace)
	expired := false
	var killed []string
	for _, c := range children {
		if !expired {
			select {
			case <-c.done:
				continue
			case <-timeout:
				expired = true
			}
		}
		if !c.exited() {
			c.cmd.Process.Kill()
			killed = append(killed, c.name)
			<-c.done
		}
	}
	return killed
}

// started returns the processes started so far, in order.
func (s *supervisor) started() []*child {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*child(nil), s.children...)
}

// tailLines returns up to n last lines of the file at path.
func tailLines(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const maxRead = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxRead {
		if _, err := f.Seek(-maxRead, io.SeekEnd); err != nil {
			return nil, err
		}
	}
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxRead)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return lines, err
	}
	return lines, nil
}

// printTail writes the last lines of a process's log to w, indented.
func printTail(w io.Writer, name, logPath string, n int) {
	lines, err := tailLines(logPath, n)
	if err != nil {
		fmt.Fprintf(w, "  (cannot read %s: %v)\n", logPath, err)
		return
	}
	if len(lines) == 0 {
		fmt.Fprintf(w, "  (%s wrote nothing to %s)\n", name, logPath)
		return
	}
	fmt.Fprintf(w, "the end of %s:\n", logPath)
	for _, l := range lines {
		fmt.Fprintf(w, "  | %s\n", l)
	}
}
