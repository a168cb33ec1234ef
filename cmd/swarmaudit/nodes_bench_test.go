package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// BenchmarkNodes measures how `swarmaudit serve` nodes on one PostgreSQL
// share work on one machine: 1, 2 or 3 nodes audit the same 30 simulated
// swarms of 20 peers each (bench/swarmmap -swarms 30, a process of its
// own; every node has its own budget: 64 connections, 2 bandwidth probes
// of 256 KiB, 2 MiB/s; a snapshot of each peer every 20 s, a bandwidth
// probe every 30 s, each swarm judged every 2 s; each peer on its own
// loopback address, so that the per-IP gap, 30 s, is per peer), the
// swarms handed to them as magnets whose metadata is already in the
// folder's cache and whose x.pe are the peers. After 30 s to settle the leases, over 60 s:
// judged-swarms/s, the swarms judged per second by all nodes together (15
// when the nodes keep up with the interval); probes/min, the connections
// made for snapshots and bandwidth probes per minute, and probed-peers,
// the peers with at least one bandwidth probe, at the end; write-ms, the
// mean duration of a store write transaction (every node's /metrics).
func BenchmarkNodes(b *testing.B) {
	const swarms, peers = 30, 20
	bin := builtBinary(b)
	sm := testclients.StartSwarmMap(b, "-swarms", fmt.Sprint(swarms), "-spread", "-peers", fmt.Sprint(peers), "-pieces", "256", "-gain", "10s")
	for _, nodes := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			var judged, probes, probed, writeMS float64
			for b.Loop() {
				j, p, pp, w := runNodes(b, bin, sm.Dir, swarms, nodes)
				judged, probes, probed, writeMS = judged+j, probes+p, probed+pp, writeMS+w
			}
			n := float64(b.N)
			b.ReportMetric(judged/n, "judged-swarms/s")
			b.ReportMetric(probes/n, "probes/min")
			b.ReportMetric(probed/n, "probed-peers")
			b.ReportMetric(writeMS/n, "write-ms")
		})
	}
}

// runNodes runs the nodes on a fresh database and watch folder and
// returns BenchmarkNodes' figures.
func runNodes(b *testing.B, bin, simDir string, swarms, nodes int) (judgedPerS, probesPerMin, probedPeers, writeMS float64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dbURL := testclients.StartPostgres(ctx, b)
	watch := filepath.Join(b.TempDir(), "watch")
	if err := os.MkdirAll(filepath.Join(watch, ".swarmaudit-metadata"), 0o755); err != nil {
		b.Fatal(err)
	}
	for k := range swarms {
		t, err := torrentmeta.Load(filepath.Join(simDir, fmt.Sprintf("swarm-%d.torrent", k)))
		if err != nil {
			b.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(simDir, fmt.Sprintf("swarm-%d.torrent", k)))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(watch, ".swarmaudit-metadata", t.InfoHash.HexString()+".torrent"), raw, 0o644); err != nil {
			b.Fatal(err)
		}
		js, err := os.ReadFile(filepath.Join(simDir, fmt.Sprintf("peers-%d.json", k)))
		if err != nil {
			b.Fatal(err)
		}
		var infos []struct{ Addr string }
		if err := json.Unmarshal(js, &infos); err != nil {
			b.Fatal(err)
		}
		magnet := "magnet:?xt=urn:btih:" + t.InfoHash.HexString()
		for _, in := range infos {
			magnet += "&x.pe=" + in.Addr
		}
		if err := os.WriteFile(filepath.Join(watch, fmt.Sprintf("swarm-%d.magnet", k)), []byte(magnet+"\n"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	var apis []string
	var procs []*exec.Cmd
	for i := range nodes {
		cmd, api := startServeNode(b, bin, "serve", "--watch", watch, "--db", dbURL, "--node-id", fmt.Sprintf("n%d", i+1), "--lease", "6s",
			"--poll-interval", "1s", "--judge-interval", "2s", "--no-dht", "--no-trackers",
			"--snapshot-interval", "20s", "--probe-interval", "30s", "--peer-probe-gap", "30s", "--probe-bytes", "256KiB",
			"--max-conns", "64", "--max-bandwidth-probes", "2", "--max-auditor-rate", "2MiB")
		procs = append(procs, cmd)
		apis = append(apis, api)
	}
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			p.Wait()
		}
	}()
	time.Sleep(30 * time.Second) // the leases settle, every swarm started
	before := scrapeNodes(b, apis)
	start := time.Now()
	time.Sleep(60 * time.Second) // the span measured
	after := scrapeNodes(b, apis)
	span := time.Since(start)
	judgedPerS = (after["swarmaudit_judge_duration_seconds_count"] - before["swarmaudit_judge_duration_seconds_count"]) / span.Seconds()
	probesPerMin = (after["swarmaudit_probes"] - before["swarmaudit_probes"]) / span.Minutes()
	probedPeers = after[`swarmaudit_peers{state="probed"}`]
	if n := after["swarmaudit_store_write_seconds_count"] - before["swarmaudit_store_write_seconds_count"]; n > 0 {
		writeMS = (after["swarmaudit_store_write_seconds_sum"] - before["swarmaudit_store_write_seconds_sum"]) / n * 1000
	}
	return
}

// startServeNode starts `swarmaudit serve` with args and its API on a port
// of its own choosing (a port picked beforehand could be taken, by the
// other nodes' outgoing connections among others, before the node binds
// it), and returns it with the API's URL, read from the line serve prints
// when it is up. The node's output goes on being read (and dropped).
func startServeNode(b *testing.B, bin string, args ...string) (*exec.Cmd, string) {
	b.Helper()
	cmd := exec.Command(bin, append(args, "--api-listen", "127.0.0.1:0")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if _, rest, ok := strings.Cut(sc.Text(), "dashboard and API at "); ok {
				api, _, _ := strings.Cut(rest, ",")
				found <- strings.TrimSuffix(api, "/")
				break
			}
		}
		io.Copy(io.Discard, stderr) // until the node exits
	}()
	select {
	case api := <-found:
		return cmd, api
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatal("serve did not say where its API listens within 30 s")
	}
	return nil, ""
}

// scrapeNodes sums the metrics of every node's /metrics that the
// benchmark reads (swarmaudit_probes over its outcomes).
func scrapeNodes(b *testing.B, apis []string) map[string]float64 {
	b.Helper()
	sum := map[string]float64{}
	for _, api := range apis {
		resp, err := http.Get(api + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			name, value, ok := strings.Cut(sc.Text(), " ")
			if !ok || strings.HasPrefix(name, "#") {
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				continue
			}
			if strings.HasPrefix(name, "swarmaudit_probes{") {
				name = "swarmaudit_probes"
			}
			sum[name] += v
		}
		resp.Body.Close()
	}
	return sum
}
