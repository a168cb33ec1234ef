package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// BenchmarkServeSwarms measures what one node costs per swarm audited:
// bench/swarmmap serves 1, 10 or 100 simulated swarms of 20 peers each
// (1,024 pieces of 16 KiB; each peer gains a piece every 10 s) from a
// process of its own; the service audits all of them from its watch
// folder with serve's defaults (one budget: 256 connections, 4 bandwidth
// probes, 4 MiB/s; a snapshot a minute, idle watches, a judgement every
// 10 s), each peer handed to it as an announce. After 60 s: heap-KiB/swarm
// and goroutines/swarm, the heap in use (after a GC) and goroutines less
// those before the service started, per swarm; cpu-ms/swarm-s, the
// process CPU time per swarm per second audited; reached, the fraction of
// the peers it reached; judge-ms/swarm, the mean time to judge a swarm.
func BenchmarkServeSwarms(b *testing.B) {
	const peers, run = 20, 60 * time.Second
	for _, swarms := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("swarms=%d", swarms), func(b *testing.B) {
			sm := testclients.StartSwarmMap(b, "-swarms", fmt.Sprint(swarms), "-peers", fmt.Sprint(peers), "-pieces", "1024", "-gain", "10s")
			var heap, goroutines, cpu, reached, judge float64
			for b.Loop() {
				h, g, c, r, j := runServeBench(b, sm.Dir, swarms, run)
				heap, goroutines, cpu, reached, judge = heap+h, goroutines+g, cpu+c, reached+r, judge+j
			}
			n := float64(b.N)
			b.ReportMetric(heap/n/1024, "heap-KiB/swarm")
			b.ReportMetric(goroutines/n, "goroutines/swarm")
			b.ReportMetric(cpu/n, "cpu-ms/swarm-s")
			b.ReportMetric(reached/n, "reached")
			b.ReportMetric(judge/n, "judge-ms/swarm")
		})
	}
}

// runServeBench audits the swarms of dir for d and returns the figures of
// BenchmarkServeSwarms.
func runServeBench(b *testing.B, dir string, swarms int, d time.Duration) (heap, goroutines, cpuMS, reached, judgeMS float64) {
	b.Helper()
	tmp := b.TempDir()
	watch := filepath.Join(tmp, "watch")
	if err := os.Mkdir(watch, 0o755); err != nil {
		b.Fatal(err)
	}
	type peerInfo struct{ Addr string }
	var torrents []*torrentmeta.Torrent
	var addrs [][]netip.AddrPort
	for k := range swarms {
		suffix := ""
		if swarms > 1 {
			suffix = fmt.Sprintf("-%d", k)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "swarm"+suffix+".torrent"))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(watch, fmt.Sprintf("swarm%s.torrent", suffix)), raw, 0o644); err != nil {
			b.Fatal(err)
		}
		t, err := torrentmeta.Load(filepath.Join(watch, fmt.Sprintf("swarm%s.torrent", suffix)))
		if err != nil {
			b.Fatal(err)
		}
		js, err := os.ReadFile(filepath.Join(dir, "peers"+suffix+".json"))
		if err != nil {
			b.Fatal(err)
		}
		var infos []peerInfo
		if err := json.Unmarshal(js, &infos); err != nil {
			b.Fatal(err)
		}
		var as []netip.AddrPort
		for _, in := range infos {
			as = append(as, netip.MustParseAddrPort(in.Addr))
		}
		torrents, addrs = append(torrents, t), append(addrs, as)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(ctx, testclients.StoreDB(b, filepath.Join(tmp, "serve.db")))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	budget := collect.NewBudget(256, 4, 4<<20, collect.DefaultProbeBytes)
	budget.SetPeerProbeGap(collect.DefaultProbeInterval)
	svc, err := New(Config{Store: st, WatchDir: watch, PollEvery: time.Second, JudgeEvery: 10 * time.Second, Budget: budget,
		Collect: collect.Config{SnapshotInterval: collect.DefaultSnapshotInterval, ProbeInterval: collect.DefaultProbeInterval,
			ProbeBytes: collect.DefaultProbeBytes, ProbeTimeout: collect.DefaultProbeTimeout, Watch: true}})
	if err != nil {
		b.Fatal(err)
	}
	heap0, g0 := testclients.LiveHeap()
	cpu0 := cpuTime()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	for len(svc.statuses()) < swarms { // every swarm started
		if time.Since(start) > time.Minute {
			b.Fatalf("%d of %d swarms started in a minute", len(svc.statuses()), swarms)
		}
		time.Sleep(100 * time.Millisecond) // polling the service's state
	}
	for k, t := range torrents { // the peers announce
		for i, ap := range addrs[k] {
			a := reported.Announce{At: time.Now(), InfoHash: t.InfoHash, IP: ap.Addr(), Port: ap.Port(), Left: 1,
				PeerID: [20]byte{'-', 'B', 'N', byte(k), byte(k >> 8), byte(i)}, Event: reported.EventStarted}
			if err := svc.RecordAnnounce(a); err != nil {
				b.Fatal(err)
			}
		}
	}
	time.Sleep(d - time.Since(start)) // the span measured
	heap1, g1 := testclients.LiveHeap()
	cpu1 := cpuTime()
	elapsed := time.Since(start)
	var r int
	for _, s := range svc.statuses() {
		r += s.Progress.Reached
	}
	judged := svc.metrics.judgeCountAndSum()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	n := float64(swarms)
	heap = (float64(heap1) - float64(heap0)) / n
	goroutines = float64(g1-g0) / n
	cpuMS = float64((cpu1 - cpu0).Milliseconds()) / n / elapsed.Seconds()
	reached = float64(r) / (n * float64(len(addrs[0])))
	if judged.count > 0 {
		judgeMS = judged.sum * 1000 / float64(judged.count)
	}
	return
}

// cpuTime is the process's CPU time, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// judgeStats is the count and sum of the judge-duration histogram.
type judgeStats struct {
	count uint64
	sum   float64
}

func (m *metrics) judgeCountAndSum() judgeStats {
	var pb dto.Metric
	if err := m.judge.Write(&pb); err != nil || pb.Histogram == nil {
		return judgeStats{}
	}
	return judgeStats{count: pb.Histogram.GetSampleCount(), sum: pb.Histogram.GetSampleSum()}
}
