package testclients

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// process is one child process in its own process group, with its output in
// a log file. Only this package's processes are ever signalled: the group ID
// is the child's PID, and the child stays unreaped (see waitExitNoReap)
// until kill has signalled the group for the last time.
type process struct {
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited (not yet reaped)
	logFiles []string
	closers  []func()
	// afterStart, when set, runs once the process has started.
	afterStart func()

	mu     sync.Mutex // guards reaped and status, for log() during kill()
	reaped bool
	status string // exit status once reaped
	// how says how it ended ("exit status 1", "killed by signal 9"), from
	// waitid before the reaping, and sig the signal that ended it (0: none);
	// set before exited is closed.
	how string
	sig syscall.Signal
}

func newProcess() *process { return &process{exited: make(chan struct{})} }

// launch starts cmd in dir, with env, in its own process group and with its
// output appended to dir/name (unless Stdout/Stderr are set).
func (p *process) launch(cmd *exec.Cmd, dir, logName string, env []string) error {
	logPath := filepath.Join(dir, logName)
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.runClosers()
		return fmt.Errorf("create log: %w", err)
	}
	p.logFiles = append([]string{logPath}, p.logFiles...)
	p.closers = append(p.closers, func() { f.Close() })
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	if cmd.Stderr == nil {
		cmd.Stderr = f
	}
	cmd.Dir = dir
	cmd.Env = env
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Own process group: kill signals exactly this group. Pdeathsig: the
	// child dies with the test binary even if no cleanup runs.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		p.runClosers()
		return fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p.cmd = cmd
	if p.afterStart != nil {
		p.afterStart()
	}
	pid := cmd.Process.Pid
	go func() {
		defer close(p.exited)
		how, sig, err := waitExitNoReap(pid)
		if err != nil {
			slog.Warn("testclients: waitid", "pid", pid, "err", err)
		}
		p.how, p.sig = how, sig
	}()
	return nil
}

// waitExitNoReap blocks until process pid exits, leaving it a zombie
// (waitid with WNOWAIT). Until kill reaps it, the zombie keeps its PID, and
// with it the process-group ID, from being reused, so signalling the group
// can only reach processes this package started. Hand-written because the
// standard library does not expose waitid; x/sys/unix would, but is not a
// direct dependency of the module.
// It says how the process ended, from the siginfo_t waitid fills: si_code
// at byte 8 (CLD_EXITED 1, CLD_KILLED 2, CLD_DUMPED 3) and si_status at 24
// on Linux.
func waitExitNoReap(pid int) (string, syscall.Signal, error) {
	const (
		pPID    = 1         // P_PID
		wExited = 0x4       // WEXITED
		wNoWait = 0x1000000 // WNOWAIT
	)
	var siginfo [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&siginfo[0])), wExited|wNoWait, 0, 0)
		switch errno {
		case 0:
			code := *(*int32)(unsafe.Pointer(&siginfo[8]))
			status := *(*int32)(unsafe.Pointer(&siginfo[24]))
			switch code {
			case 1:
				return fmt.Sprintf("exit status %d", status), 0, nil
			case 2, 3:
				return fmt.Sprintf("killed by signal %d", status), syscall.Signal(status), nil
			}
			return fmt.Sprintf("ended (si_code %d, si_status %d)", code, status), 0, nil
		case syscall.EINTR:
			continue
		default:
			return "", 0, fmt.Errorf("waitid %d: %w", pid, errno)
		}
	}
}

// exitErr is ErrExited with how the process ended, once it has.
func (p *process) exitErr() error {
	if p.hasExited() && p.how != "" {
		return fmt.Errorf("%w (%s)", ErrExited, p.how)
	}
	return ErrExited
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// signal sends sig to the process itself (not its group) if it is running.
func (p *process) signal(sig syscall.Signal) error {
	if p.cmd == nil || p.hasExited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// waitExit waits up to d for the process to exit.
func (p *process) waitExit(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// kill SIGKILLs what is left of the process group, reaps the process and
// closes its files. Safe to call more than once, but not concurrently.
func (p *process) kill() {
	defer p.runClosers()
	p.mu.Lock()
	done := p.cmd == nil || p.reaped
	p.mu.Unlock()
	if done {
		return
	}
	// The leader is running or an unreaped zombie: the group ID is still ours.
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		slog.Warn("testclients: kill process group", "pgid", p.cmd.Process.Pid, "err", err)
	}
	if !p.waitExit(5 * time.Second) {
		slog.Error("testclients: process survived SIGKILL", "pid", p.cmd.Process.Pid)
		return
	}
	_ = p.cmd.Wait() // reap; the error only repeats the exit status
	p.mu.Lock()
	p.reaped = true
	p.status = p.cmd.ProcessState.String()
	p.mu.Unlock()
}

func (p *process) runClosers() {
	for _, f := range p.closers {
		f()
	}
	p.closers = nil
}

// log returns the tail of the log files and, once reaped, the exit status.
func (p *process) log() string {
	var b strings.Builder
	for _, path := range p.logFiles {
		fmt.Fprintf(&b, "==> %s <==\n%s\n", path, tailFile(path, logTail))
	}
	p.mu.Lock()
	if p.reaped {
		fmt.Fprintf(&b, "(process: %s)\n", p.status)
	}
	p.mu.Unlock()
	return b.String()
}

func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	off := max(fi.Size()-n, 0)
	buf := make([]byte, fi.Size()-off)
	k, err := f.ReadAt(buf, off)
	if err != nil && k == 0 && len(buf) > 0 {
		return fmt.Sprintf("(%v)", err)
	}
	s := string(buf[:k])
	if off > 0 {
		s = "[...]" + s
	}
	return s
}
