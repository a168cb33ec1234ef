package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDemo is the demo's end-to-end time: `swarmaudit demo` with its
// defaults (40 peers, 3 cheaters) but --duration 30s, as the CI test runs
// it, from the start of the command until it has written its reports and
// returned. s-beyond-duration is what the demo adds to the 30 s it
// audits (starting the swarm, judging, writing the reports); cpu-s is the
// process CPU time over the run, swarm and auditor together. Run it once
// (-benchtime 1x).
func BenchmarkDemo(b *testing.B) {
	const duration = 30 * time.Second
	var wall, cpu time.Duration
	for b.Loop() {
		dir := b.TempDir()
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"demo", "--duration", duration.String(), "--out", dir})
		ctx, cancel := context.WithTimeout(context.Background(), duration+2*time.Minute)
		cpu0, start := processCPU(b), time.Now()
		err := root.ExecuteContext(ctx)
		wall += time.Since(start)
		cpu += processCPU(b) - cpu0
		cancel()
		if err != nil {
			b.Fatalf("demo: %v\n%s", err, out.String())
		}
		for _, f := range []string{"report.json", "report.html", "peers.csv"} {
			if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
				b.Fatalf("%s not written: %v\n%s", f, err, out.String())
			}
		}
	}
	n := time.Duration(b.N)
	b.ReportMetric((wall / n).Seconds(), "s-end-to-end")
	b.ReportMetric((wall/n - duration).Seconds(), "s-beyond-duration")
	b.ReportMetric((cpu / n).Seconds(), "cpu-s")
}

// processCPU is the CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
