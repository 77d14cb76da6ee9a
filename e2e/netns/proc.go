package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StopTimeout is how long Proc.Stop waits after SIGTERM before SIGKILL.
const StopTimeout = 10 * time.Second

// logTailLines bounds how much of a process log a failed test shows.
const logTailLines = 150

// Result is what a finished command printed and how it exited.
type Result struct {
	Stdout, Stderr string
	// Code is the exit status; -1 if the command was killed by a signal
	// or never started.
	Code int
}

// Run runs a command inside the host and waits for it. The error, if any,
// names the command and carries its exit status and stderr; Result is
// filled in either way.
func (h *Host) Run(ctx context.Context, args ...string) (Result, error) {
	return h.RunEnv(ctx, nil, args...)
}

// RunEnv is Run with extra environment variables ("K=V").
func (h *Host) RunEnv(ctx context.Context, env []string, args ...string) (Result, error) {
	cmd := h.command(ctx, env, args)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: -1}
	if cmd.ProcessState != nil {
		res.Code = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		return res, fmt.Errorf("%s on %s: %v: %s", strings.Join(args, " "), h.Name, err, strings.TrimSpace(res.Stderr))
	}
	return res, nil
}

// MustRun runs a command and fails t unless it exits 0; it returns stdout.
func (h *Host) MustRun(t TB, ctx context.Context, args ...string) string {
	t.Helper()
	res, err := h.Run(ctx, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return res.Stdout
}

func (h *Host) command(ctx context.Context, env, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	// Own process group, so cancellation and Stop reach children too; and
	// die with us, so a killed test run leaves nothing running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Proc is a process started inside a host. Its stdout and stderr go to
// LogPath; if the test has failed when the process is cleaned up, the tail
// of that log is shown.
type Proc struct {
	// Name is what the process is called in messages: "<host>/<program>".
	Name string
	// PID is the process ID. `ip netns exec` execs the program, so this is
	// the program itself.
	PID int
	// LogPath holds the combined stdout and stderr.
	LogPath string

	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed when the process has been reaped
	waitErr error         // set before done is closed
	stop    sync.Once
}

// Start starts a command inside the host and registers its Stop with
// t.Cleanup. It fails t if the command cannot start.
func (h *Host) Start(t TB, args ...string) *Proc {
	t.Helper()
	return h.StartEnv(t, nil, args...)
}

// StartEnv is Start with extra environment variables ("K=V").
func (h *Host) StartEnv(t TB, env []string, args ...string) *Proc {
	t.Helper()
	p, err := h.Spawn(env, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	Manage(t, p)
	return p
}

// Manage registers with owner.Cleanup the Stop of p and, if owner has
// failed by then, the display of the tail of p's log. Use it with Spawn
// when the process must outlive the (sub)test that starts it.
func Manage(owner TB, p *Proc) {
	owner.Cleanup(func() {
		if err := p.Stop(); err != nil {
			owner.Logf("stopping %s: %v", p.Name, err)
		}
		if owner.Failed() {
			owner.Logf("--- log of %s (pid %d, %s) ---\n%s--- end of log of %s ---", p.Name, p.PID, p.LogPath, p.tail(logTailLines), p.Name)
		}
	})
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Spawn starts a command inside the host without registering any cleanup;
// the caller must Stop it or hand it to Manage.
func (h *Host) Spawn(env []string, args ...string) (*Proc, error) {
	if len(args) == 0 {
		return nil, errors.New("starting process: no command")
	}
	prog := filepath.Base(args[0])
	f, err := os.CreateTemp(h.Dir, unsafeChars.ReplaceAllString(prog, "_")+"-*.log")
	if err != nil {
		return nil, fmt.Errorf("creating log for %s: %w", prog, err)
	}
	// Not CommandContext: a Proc lives until Stop, not until a context ends.
	cmd := h.command(context.Background(), env, args)
	cmd.Cancel = nil
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s on %s: %w", strings.Join(args, " "), h.Name, err)
	}
	p := &Proc{
		Name:    h.Name + "/" + prog,
		PID:     cmd.Process.Pid,
		LogPath: f.Name(),
		cmd:     cmd,
		logFile: f,
		done:    make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to end or ctx to be done.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.waitErr
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", p.Name, ctx.Err())
	}
}

// Signal sends sig to the process group, unless the process has already
// been reaped (so a recycled PID is never signalled).
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(-p.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling %s: %w", p.Name, err)
	}
	return nil
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Proc) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Stop sends SIGTERM, waits up to StopTimeout, then sends SIGKILL. It
// returns an error only if the process had to be killed. Calling it again
// does nothing.
func (p *Proc) Stop() error { return p.StopWithin(StopTimeout) }

// StopWithin is Stop with another grace period.
func (p *Proc) StopWithin(grace time.Duration) error {
	var err error
	p.stop.Do(func() {
		if p.Exited() {
			return
		}
		if err = p.Signal(syscall.SIGTERM); err != nil {
			return
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			err = fmt.Errorf("%s ignored SIGTERM for %v; killed", p.Name, grace)
			_ = p.Kill()
		}
	})
	return err
}

// Log returns everything the process has printed so far.
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	return string(b)
}

func (p *Proc) tail(n int) string {
	lines := strings.SplitAfter(p.Log(), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)\n", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	s := strings.Join(lines, "")
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// WaitLog waits until the process's log contains s. It fails early if the
// process exits.
func (p *Proc) WaitLog(s string, deadline time.Duration) error {
	return Poll(deadline, func() error {
		if strings.Contains(p.Log(), s) {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v) before logging %q", p.Name, p.waitErr, s)
		}
		return fmt.Errorf("%s has not logged %q", p.Name, s)
	})
}

// RSS returns the process's resident set size in KiB (VmRSS).
func (p *Proc) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return 0, fmt.Errorf("reading status of %s: %w", p.Name, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmRSS of %s: %w", p.Name, err)
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for %s", p.Name)
}
