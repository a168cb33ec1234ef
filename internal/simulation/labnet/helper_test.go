package labnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests run their programs inside the lab's netns by starting this test
// binary again there with helperEnv set: TestMain then runs helperMain instead
// of the tests.
const helperEnv = "LABNET_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helperMain is the program run inside a host:
//
//	serve ADDR        accept connections for 30 s, greet each: "hello ADDR"
//	dial ADDR         print "ok <greeting>", "ENETUNREACH" or "error: ..."
//	send ADDR N       connect, send N bytes, half-close, wait for the peer's close
//	recv ADDR         connect, read to EOF, print "<bytes> <first-chunk bytes> <ns from first to last byte>"
func helperMain(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "helper: want MODE ADDR [N]")
		return 2
	}
	mode, addr := args[0], args[1]
	deadline := time.Now().Add(30 * time.Second)
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "helper %s %s: %v\n", mode, addr, err)
		return 1
	}
	switch mode {
	case "serve":
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			return fail(err)
		}
		defer ln.Close()
		ln.(*net.TCPListener).SetDeadline(deadline)
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 0 // deadline
			}
			fmt.Fprintf(c, "hello %s\n", addr)
			c.Close()
		}
	case "dial":
		start := time.Now()
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		switch {
		case errors.Is(err, syscall.ENETUNREACH):
			fmt.Printf("ENETUNREACH %d\n", time.Since(start).Milliseconds())
			return 0
		case err != nil:
			fmt.Printf("error: %v\n", err)
			return 0
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Printf("error: read: %v\n", err)
			return 0
		}
		fmt.Printf("ok %s", line)
		return 0
	case "send":
		if len(args) != 3 {
			return fail(errors.New("want send ADDR N"))
		}
		size, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil {
			return fail(err)
		}
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		if err != nil {
			return fail(err)
		}
		defer c.Close()
		c.SetDeadline(deadline)
		if _, err := io.Copy(c, io.LimitReader(zeros{}, size)); err != nil {
			return fail(err)
		}
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.Copy(io.Discard, c); err != nil {
			return fail(err)
		}
		return 0
	case "recv":
		c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
		if err != nil {
			return fail(err)
		}
		defer c.Close()
		c.SetDeadline(deadline)
		m, err := measureRead(c)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("%d %d %d\n", m.bytes, m.first, m.span.Nanoseconds())
		return 0
	}
	return fail(errors.New("unknown mode"))
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// measurement is a read to EOF: all bytes, the bytes of the first read, and
// the time from the first read to the last.
type measurement struct {
	bytes, first int64
	span         time.Duration
}

// rate is the goodput in bytes/s: the bytes after the first read over the span.
func (m measurement) rate() float64 {
	return float64(m.bytes-m.first) / m.span.Seconds()
}

func measureRead(r io.Reader) (measurement, error) {
	var m measurement
	var t0, last time.Time
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			last = time.Now()
			if m.bytes == 0 {
				t0, m.first = last, int64(n)
			}
			m.bytes += int64(n)
		}
		if errors.Is(err, io.EOF) {
			m.span = last.Sub(t0)
			return m, nil
		}
		if err != nil {
			return m, err
		}
	}
}

// helper returns a command running helperMain with args inside h.
func helper(t *testing.T, ctx context.Context, h *Host, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(ctx, exe, args...)
	// GORACE: a -race binary otherwise sleeps 1 s at exit
	cmd.Env = append(os.Environ(), helperEnv+"=1", "GORACE=atexit_sleep_ms=0")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runHelper runs the helper to its end and returns its stdout.
func runHelper(t *testing.T, ctx context.Context, h *Host, args ...string) string {
	t.Helper()
	cmd := helper(t, ctx, h, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper %v in %s: %v: %s", args, h.Name, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// startServe starts "serve addr" in h and returns when it listens; the
// helper is stopped at the end of the test.
func startServe(t *testing.T, ctx context.Context, h *Host, addr string) {
	t.Helper()
	cmd := helper(t, ctx, h, "serve", addr)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start serve in %s: %v", h.Name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("serve %s in %s: got %q, %v", addr, h.Name, line, err)
	}
}
