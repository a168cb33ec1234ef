package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/labnet"
)

// proc is one program the lab started in a host's netns (the auditor or a
// helper), in its own process group, killed if the lab dies.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
	once sync.Once
}

// startProc runs argv in host's netns with stdout and stderr to logPath, or
// stdout to lines (one call per line, also copied to the log) when lines is
// not nil.
func startProc(host *labnet.Host, name, logPath string, lines func(string), argv ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	// ip netns exec execs argv[0]: the PID, the process group and the
	// parent-death signal are the program's own.
	cmd := host.Command(context.Background(), argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = logf
	cmd.Stdout = logf
	var pr *io.PipeReader
	var pw *io.PipeWriter
	if lines != nil {
		pr, pw = io.Pipe()
		cmd.Stdout = pw
	}
	p := &proc{name: name, cmd: cmd, log: logf, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		if pw != nil {
			pw.Close()
		}
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if lines != nil {
		go func() { // ends when the process has exited and pw is closed
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				fmt.Fprintln(logf, sc.Text())
				lines(sc.Text())
			}
			io.Copy(io.Discard, pr)
		}()
	}
	go func() {
		p.err = cmd.Wait()
		if pw != nil {
			pw.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// stop sends sig to the process group, waits up to grace, then kills the
// group. Idempotent; bounded by grace plus a second.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	p.once.Do(func() {
		pgid := p.cmd.Process.Pid
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-pgid, sig)
			select {
			case <-p.done:
			case <-time.After(grace):
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				select {
				case <-p.done:
				case <-time.After(time.Second):
				}
			}
		}
		// whatever is left of the group (children of the program)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		p.log.Close()
	})
}

// wait waits for the process to exit, at most until ctx ends.
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("%s still running: %w", p.name, ctx.Err())
	}
}

// startHelper starts `self __lab-helper ARGS` in host's netns and returns once
// it printed its ready line (a JSON object of strings), within 15 s.
func startHelper(host *labnet.Host, self, name, logPath string, args ...string) (*proc, map[string]string, error) {
	ready := make(chan string, 1)
	p, err := startProc(host, name, logPath, func(line string) {
		select {
		case ready <- line:
		default:
		}
	}, append([]string{self, helperArg}, args...)...)
	if err != nil {
		return nil, nil, err
	}
	select {
	case line := <-ready:
		var m map[string]string
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			p.stop(syscall.SIGTERM, 5*time.Second)
			return nil, nil, fmt.Errorf("%s: ready line %q: %w", name, line, err)
		}
		return p, m, nil
	case <-p.done:
		return nil, nil, fmt.Errorf("%s exited before it was ready (%v); see %s", name, p.err, logPath)
	case <-time.After(15 * time.Second):
		p.stop(syscall.SIGTERM, 5*time.Second)
		return nil, nil, errors.New(name + ": not ready after 15 s; see " + logPath)
	}
}
