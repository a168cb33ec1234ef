package swarmsim

import (
	"context"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// raiseFileLimit lifts the soft descriptor limit to the hard one: a
// thousand peers with their connections need several thousand.
func raiseFileLimit(b *testing.B) uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatalf("setrlimit: %v", err)
		}
	}
	return lim.Cur
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSwarm1000 runs a flash crowd: 1,000 peers (10 seeders, 990
// empty leechers, encryption policies mixed) share a 256 KiB payload
// through the embedded tracker, each peer holding at most 8 connections.
// It reports the process CPU time and the peak heap per simulated peer
// (the tracker's share included) and the time until every leecher is
// complete.
func BenchmarkSwarm1000(b *testing.B) {
	const peers, seeders, maxConns = 1000, 10, 8
	if fds := raiseFileLimit(b); fds < 4*peers*maxConns/2+2*peers {
		b.Skipf("descriptor limit %d is too low for %d peers", fds, peers)
	}
	payload, _, err := NewPayload("bench.bin", 256<<10, 16<<10, 1000)
	if err != nil {
		b.Fatal(err)
	}
	encs := []Encryption{EncPreferred, EncRequired, EncDisabled}
	specs := make([]PeerSpec, peers)
	for i := range specs {
		specs[i] = PeerSpec{Role: RoleLeecher, Encryption: encs[i%3]}
		if i < seeders {
			specs[i].Role = RoleSeeder
		}
	}
	var cpu, complete time.Duration
	var peakHeap uint64
	for b.Loop() {
		srv, _ := startTracker(b, 5*time.Second)
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		cpu0, start := cpuTime(b), time.Now()

		stop := make(chan struct{})
		var sampler sync.WaitGroup
		var peak uint64
		sampler.Go(func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			var ms runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
				}
			}
		})
		sw, err := StartSwarm(context.Background(), SwarmConfig{
			Payload: payload, Peers: specs, Tracker: srv.HTTPURL(), AnnounceInterval: 5 * time.Second,
			Seed: 1000, MaxConns: maxConns,
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err = sw.WaitComplete(ctx)
		cancel()
		complete += time.Since(start)
		close(stop)
		sampler.Wait()
		if err := sw.Close(); err != nil {
			b.Error(err)
		}
		cpu += cpuTime(b) - cpu0
		if err != nil {
			b.Fatal(err)
		}
		srv.Close()
		if peak > base.HeapInuse {
			peakHeap = max(peakHeap, peak-base.HeapInuse)
		}
	}
	n := float64(b.N)
	b.ReportMetric(cpu.Seconds()/n/peers, "cpu-s/peer")
	b.ReportMetric(float64(peakHeap)/peers, "heap-B/peer")
	b.ReportMetric(complete.Seconds()/n, "s-to-complete")
}
