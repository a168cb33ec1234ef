package testclients

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SwarmMap is a running bench/swarmmap process: simulated swarms served
// from a process of their own, so that a benchmark does not count the
// simulator's memory, goroutines and connection ends as the auditor's.
type SwarmMap struct {
	// Dir holds the swarms' .torrent files and peers.json files.
	Dir string
	// Stdin takes its commands ("bytes"); Lines are its answers.
	Stdin io.Writer
	Lines <-chan string
}

// StartSwarmMap builds bench/swarmmap, starts it with args (besides -dir
// and -life) and waits until it serves; the process is stopped when the
// test or benchmark ends.
func StartSwarmMap(tb testing.TB, args ...string) *SwarmMap {
	tb.Helper()
	tmp := tb.TempDir()
	goCmd := "go"
	if p, err := exec.LookPath("go"); err == nil {
		goCmd = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(tmp, "swarmmap")
	if out, err := exec.CommandContext(ctx, goCmd, "build", "-o", bin, "github.com/swarmaudit/swarmaudit/bench/swarmmap").CombinedOutput(); err != nil {
		tb.Fatalf("build bench/swarmmap: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append([]string{"-dir", tmp, "-life", "15m"}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start swarmmap: %v", err)
	}
	exited := make(chan struct{})
	lines := make(chan string, 16)
	tb.Cleanup(func() {
		stdin.Close() // it exits when stdin closes
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody asked
			}
		}
		cmd.Wait()
		close(exited)
	}()
	select {
	case line := <-lines:
		if !strings.HasPrefix(line, "ready ") {
			tb.Fatalf("swarmmap said %q", line)
		}
	case <-exited:
		tb.Fatal("swarmmap exited before it was ready")
	case <-time.After(3 * time.Minute):
		tb.Fatal("swarmmap not ready after 3 minutes")
	}
	return &SwarmMap{Dir: tmp, Stdin: stdin, Lines: lines}
}
