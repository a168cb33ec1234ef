// Command bench runs the project's Go benchmarks and writes their results
// as a table to docs/benchmarks.md (and stdout), with the machine they ran
// on, so that no number in the docs is typed by hand.
//
//	go run ./bench                 # all benchmarks, default -benchtime
//	go run ./bench -benchtime 3s -out docs/benchmarks.md
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

func main() {
	benchtime := flag.String("benchtime", "2s", "go test -benchtime")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write ('' for stdout only)")
	pkgs := flag.String("pkgs", defaultPkgs, "packages to benchmark, separated by commas; PKG@N x runs that package's benchmarks N times each (e.g. ./internal/discovery@5x)")
	filter := flag.String("bench", ".", "go test -bench regexp")
	flag.Parse()

	// Packages with their own -benchtime run on their own.
	groups := map[string][]string{}
	var order []string
	for _, p := range strings.Split(*pkgs, ",") {
		bt := *benchtime
		if i := strings.LastIndex(p, "@"); i >= 0 {
			p, bt = p[:i], p[i+1:]
		}
		if _, ok := groups[bt]; !ok {
			order = append(order, bt)
		}
		groups[bt] = append(groups[bt], p)
	}
	var raw []byte
	var runErr error
	for _, bt := range order {
		args := append([]string{"test", "-run", "^$", "-bench", *filter, "-benchtime", bt, "-benchmem"}, groups[bt]...)
		cmd := exec.Command("go", args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		raw = append(raw, out...)
		if err != nil {
			runErr = err
		}
	}
	table := render(raw)
	var doc bytes.Buffer
	fmt.Fprintf(&doc, "# Benchmarks\n\nProduced by `go run ./bench -benchtime %s -pkgs %s` on %s; do not edit by hand.\n\n", *benchtime, *pkgs, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&doc, "Machine: %s, %d cores (GOMAXPROCS %d), %s/%s, %s.\n\n", cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
	doc.WriteString(notes)
	doc.WriteString(table)
	if failed := failures(raw); len(failed) > 0 {
		doc.WriteString("\n## Benchmarks that failed in this run\n\n")
		for _, f := range failed {
			fmt.Fprintf(&doc, "- `%s`\n", f)
		}
	}
	os.Stdout.Write(doc.Bytes())
	if *out != "" {
		if err := os.WriteFile(*out, doc.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "bench: go test: %v (failures are listed in the table's last section)\n", runErr)
		os.Exit(1)
	}
}

// failures lists the lines of failing benchmarks and what they said.
func failures(raw []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "--- FAIL") || strings.Contains(l, "_test.go:") {
			out = append(out, l)
		}
	}
	return out
}

// defaultPkgs are the packages with benchmarks, each with the -benchtime
// that keeps it bounded: the 1,000-peer swarm-map, audit-memory and demo
// benchmarks run once.
const defaultPkgs = "./internal/wire/peerwire,./internal/trackerserver,./internal/discovery@5x,./internal/analysis/estimate,./internal/wire/torrentmeta,./internal/evidence/store,./internal/simulation/swarmsim,./internal/reports,./internal/observation/probe@3s,./internal/observation/collect@1x,./internal/serve@1x,./cmd/swarmaudit@1x"

const notes = `Units beyond ns/op, B/op and allocs/op:

- **internal/observation/probe BenchmarkMSEModExp**: µs/modexp is one 768-bit modular
  exponentiation with a 160-bit exponent (math/big, as MSE computes its
  public key and its shared secret); ceiling-probes/s = cores / (4 × that
  time), the encrypted-probe rate the MSE arithmetic alone allows when both
  ends of every probe run in one process (two exponentiations per side).
- **internal/observation/probe BenchmarkEncryptedProbes**: probes/s, encrypted snapshot
  probes (TCP connect, MSE with RC4, BitTorrent and extension handshakes,
  bitfield, close) against a 1,000-peer simulated swarm whose peers all
  require RC4, at most 16 or 64 at once, both ends in this process;
  ceiling-probes/s as above, measured in the same run; cpu-µs/probe, the
  process CPU time per probe (both ends); failed, probes that did not get
  the bitfield over RC4.
- **internal/observation/collect BenchmarkSwarmMap**: s-to-map, the time until the
  bitfield of each of 1,000 simulated peers (5-95% of 1,024 pieces each,
  encryption required, preferred and disabled a third each; served by
  bench/swarmmap in a process of its own) is known; mapped, how many were,
  each checked against the peer's true bitfield (bounded at 120 s; 30 s for
  swarmaudit-watch). B-recv and B-sent, the mapper's bytes counted at the
  socket by the swarm's process (MSE handshakes included); own-B-recv and
  own-B-sent, the mapper's own counters (swarmaudit's probe counters, on the
  socket from before the MSE handshake; libtorrent's net.recv_bytes and
  net.sent_bytes);
  map-B-recv and map-B-sent, swarmaudit's bytes less those of its bandwidth
  probes (bw-probes of them: the audit's defaults start some at once).
  swarmaudit is the audit's collector with the audit command's defaults and
  --no-watch; swarmaudit-watch the same with the defaults' idle watches
  (--max-conns 64, of which watches take at most 48); libtorrent is python3-libtorrent (bench/swarmmap/ltmap.py)
  given every peer by connect_peer, with 1,200 connections and 1,000
  connection attempts a second; libtorrent-default-speed the same at its
  default of 30 attempts a second. As a downloader, libtorrent also fetches
  pieces and sends every peer a HAVE for each piece it completes.
- **internal/observation/collect BenchmarkAuditMemory**: heap-B/peer, the heap in use after
  a GC per peer, 60 s into an audit of a 1,000-peer simulated swarm (its own
  process; HAVEs flowing) by the collector with idle watches on every peer
  (watched), minus the heap before the collector started; goroutines/peer
  likewise; heap-growth-B/peer-min, the change between 30 s and 60 s (near
  zero in a steady state).
- **internal/evidence/store BenchmarkDBPerPeerHour**: dbB/peer-hour, the SQLite file's
  growth (after a WAL checkpoint) per peer per hour of observations, stored
  as the collector stores them at its default rates, with watches (watch:
  heartbeat events and every HAVE) or without (no-watch: a snapshot probe a
  minute), plus bandwidth probes within the auditor's budget;
  writes/peer-hour, HAVEs/peer-hour and bw-probes/peer-hour are the
  observations behind it.
- **internal/evidence/store BenchmarkAddSnapshot, BenchmarkAddHave,
  BenchmarkRecordAnnounce**: engine=sqlite and engine=postgres (a throwaway
  Debian PostgreSQL cluster on loopback, default settings, fsync on);
  rows/s, the rows committed per second by one writer (HAVEs in batches of
  100: COPY on PostgreSQL).
- **internal/serve BenchmarkServeSwarms**: one serve node auditing 1, 10 or 100
  simulated swarms of 20 peers each (bench/swarmmap -swarms, a process of
  its own; 1,024 pieces of 16 KiB, a piece gained by each peer every 10 s)
  from its watch folder with serve's defaults (one budget of 256
  connections, 4 bandwidth probes and 4 MiB/s; a snapshot a minute, idle
  watches; judged every 10 s), for 60 s: heap-KiB/swarm and
  goroutines/swarm, the heap in use (after a GC) and the goroutines less
  those before the service started, per swarm; cpu-ms/swarm-s, the process
  CPU time per swarm per second; reached, the fraction of the peers
  reached; judge-ms/swarm, the mean time to judge one swarm again.
- **cmd/swarmaudit BenchmarkNodes**: 1, 2 or 3 swarmaudit serve processes
  on one PostgreSQL (throwaway cluster) sharing 30 simulated swarms of 20
  peers, each peer on its own loopback address (bench/swarmmap -swarms 30
  -spread; each node's budget 64 connections, 2 bandwidth probes of 256
  KiB, 2 MiB/s; snapshots every 20 s, bandwidth probes every 30 s and at
  most one per host per 30 s cluster-wide, judged every 2 s), measured
  over 60 s after 30 s to
  settle: judged-swarms/s of all nodes (15 when they keep up); probes/min,
  connections for snapshots and bandwidth probes per minute; probed-peers,
  peers with a bandwidth probe at the end; write-ms, the mean store write
  transaction. All nodes share the machine's 2 cores.
- **cmd/swarmaudit BenchmarkDemo**: s-end-to-end, the wall time of
  ` + "`swarmaudit demo --duration 30s`" + ` (defaults otherwise) until its reports are
  written; s-beyond-duration, that less the 30 s audited; cpu-s, the process
  CPU time over the run.

Timings vary with other load on the machine.

`

// render turns go test -bench output into one markdown table per package.
func render(raw []byte) string {
	var b strings.Builder
	pkg := ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
			fmt.Fprintf(&b, "\n## %s\n\n| benchmark | iterations | results |\n|---|---|---|\n", pkg)
		case strings.HasPrefix(line, "Benchmark"):
			f := strings.Fields(line)
			if len(f) < 3 || f[1] == "---" {
				continue
			}
			var res []string
			for i := 2; i+1 < len(f); i += 2 {
				res = append(res, f[i]+" "+f[i+1])
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", f[0], f[1], strings.Join(res, ", "))
		}
	}
	return b.String()
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "model name") {
			if i := strings.Index(l, ":"); i >= 0 {
				return strings.TrimSpace(l[i+1:])
			}
		}
	}
	return runtime.GOARCH
}
