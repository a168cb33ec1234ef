package collect

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/wire/bitfield"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// The simulated swarm of the collector benchmarks: bench/swarmmap serves it
// from a process of its own, so that the simulator's memory, goroutines and
// connection ends are not counted as the auditor's.
const (
	benchPeers  = 1000
	benchPieces = 1024 // of 16 KiB: a 16 MiB torrent with a 128-byte bitfield
	mapTimeout  = 120 * time.Second
)

// simSwarm is a running bench/swarmmap process.
type simSwarm struct {
	tor   *torrentmeta.Torrent
	file  string // its .torrent
	peers []simPeer
	stdin io.Writer
	lines <-chan string
}

type simPeer struct {
	addr netip.AddrPort
	have bitfield.Bitfield
}

// startSimSwarm builds bench/swarmmap, starts it with args and waits until
// it serves; the process is stopped when the benchmark ends.
func startSimSwarm(b *testing.B, args ...string) *simSwarm {
	b.Helper()
	sm := testclients.StartSwarmMap(b, args...)
	tmp := sm.Dir
	var err error
	s := &simSwarm{file: filepath.Join(tmp, "swarm.torrent"), stdin: sm.Stdin, lines: sm.Lines}
	if s.tor, err = torrentmeta.Load(s.file); err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(tmp, "peers.json"))
	if err != nil {
		b.Fatal(err)
	}
	var infos []struct{ Addr, Bitfield string }
	if err := json.Unmarshal(raw, &infos); err != nil {
		b.Fatal(err)
	}
	for _, in := range infos {
		wire, err := hex.DecodeString(in.Bitfield)
		if err != nil {
			b.Fatal(err)
		}
		bf, err := bitfield.FromWire(wire, s.tor.NumPieces)
		if err != nil {
			b.Fatal(err)
		}
		s.peers = append(s.peers, simPeer{addr: netip.MustParseAddrPort(in.Addr), have: bf})
	}
	return s
}

// traffic returns the bytes the swarm received and sent so far (started
// with -count), once the connections of the last visitor have closed
// (waiting at most 20 s for that).
func (s *simSwarm) traffic(b *testing.B) (recv, sent int64) {
	b.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := io.WriteString(s.stdin, "bytes\n"); err != nil {
			b.Fatalf("swarmmap: %v", err)
		}
		var line string
		select {
		case line = <-s.lines:
		case <-time.After(10 * time.Second):
			b.Fatal("swarmmap did not answer")
		}
		var active int
		if _, err := fmt.Sscanf(line, "bytes %d %d %d", &recv, &sent, &active); err != nil {
			b.Fatalf("swarmmap said %q: %v", line, err)
		}
		if active == 0 || time.Now().After(deadline) {
			return recv, sent
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// benchCollector is a collector with a fresh store and the swarm's peers in
// its address book, ready to run.
func benchCollector(b *testing.B, s *simSwarm, cfg Config) (*Collector, *store.Store, store.SwarmID) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, testclients.StoreDB(b, filepath.Join(b.TempDir(), "audit.db")))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	t := s.tor
	swarm, err := st.EnsureSwarm(ctx, store.SwarmInfo{InfoHash: t.InfoHash, Name: t.Name, PieceLength: t.PieceLength, TotalLength: t.TotalLength, NumPieces: t.NumPieces})
	if err != nil {
		b.Fatal(err)
	}
	book := addrbook.New(addrbook.Options{})
	for _, p := range s.peers {
		book.Add(p.addr, addrbook.Tracker("http://127.0.0.1/announce"), 0)
	}
	cfg.Torrent, cfg.Store, cfg.Swarm, cfg.Book = t, st, swarm, book
	col, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return col, st, swarm
}

// runCollector starts col and returns a function that stops it and waits
// (bounded) for it to flush.
func runCollector(b *testing.B, col *Collector) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- col.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("collector: %v", err)
			}
		case <-time.After(time.Minute):
			b.Fatal("collector did not stop within a minute of its cancellation")
		}
	}
}

// auditDefaults is the collector as `swarmaudit audit` configures it with
// its default flags (--snapshot-interval 1m, --probe-interval 10m,
// --probe-bytes 2MiB, --probe-timeout 30s, --max-conns 64,
// --max-bandwidth-probes 2, --max-auditor-rate 1MiB, --encryption auto).
func auditDefaults(watch bool) Config {
	return Config{SnapshotInterval: time.Minute, ProbeInterval: 10 * time.Minute, ProbeBytes: 2 << 20,
		ProbeTimeout: 30 * time.Second, MaxConns: 64, MaxBandwidthProbes: 2, MaxAuditorRate: 1 << 20, Watch: watch}
}

// BenchmarkSwarmMap is the time to a complete swarm map, every peer's
// bitfield known, of a 1,000-peer simulated swarm (bench/swarmmap: peers on
// 127.0.0.1 holding 5-95% of 1,024 pieces each, encryption required,
// preferred and disabled a third each), and the bytes each mapper moved.
// The swarm runs in its own process, which counts every connection's bytes
// at the socket (B-recv, B-sent: what the mapper received and sent, MSE
// handshakes included); own-B-recv and own-B-sent are the mapper's own
// counters. The mapper runs in this process (swarmaudit) or in python3
// (libtorrent), all on the same cores.
//
//   - swarmaudit: the audit's collector with the audit command's defaults
//     and --no-watch. It maps first (see the collect package's doc):
//     bandwidth probes (2 MiB, at most 2 at once, within the 1 MiB/s
//     auditor budget) wait until every peer was contacted once, so they
//     start about when the map is complete; map-B-recv and map-B-sent
//     leave out the wire bytes of any that ran before the map was. A peer
//     counts as mapped when its stored snapshot equals its true bitfield.
//   - swarmaudit-watch: the same with the defaults' idle watches on, bounded
//     at 30 s: each watch holds one of the 64 connections until the audit
//     ends, but watches take at most 48 of them, so the other peers are
//     still snapshotted on the 16 left.
//   - libtorrent and libtorrent-default-speed: a full client
//     (python3-libtorrent, bench/swarmmap/ltmap.py) given every peer with
//     connect_peer, connection limit 1,200, with connection_speed 1,000
//     attempts/s and at its default of 30; mapped when get_peer_info has
//     shown a peer's bitfield with the true piece count, bounded at 120 s.
//     Its own counters are the session's net.recv_bytes and net.sent_bytes.
//     As a downloader it also fetches pieces and sends every peer a HAVE
//     for each piece it completes.
func BenchmarkSwarmMap(b *testing.B) {
	for _, v := range []struct {
		name  string
		watch bool
	}{{"swarmaudit", false}, {"swarmaudit-watch", true}} {
		b.Run(v.name, func(b *testing.B) {
			s := startSimSwarm(b, "-peers", fmt.Sprint(benchPeers), "-pieces", fmt.Sprint(benchPieces), "-count")
			var m metrics
			for b.Loop() {
				m.add(mapWithCollector(b, s, auditDefaults(v.watch)))
			}
			m.report(b)
		})
	}
	for _, v := range []struct {
		name  string
		speed int
	}{{"libtorrent", 1000}, {"libtorrent-default-speed", 30}} {
		b.Run(v.name, func(b *testing.B) {
			testclients.Require(b, string(testclients.Libtorrent))
			s := startSimSwarm(b, "-peers", fmt.Sprint(benchPeers), "-pieces", fmt.Sprint(benchPieces), "-count")
			var m metrics
			for b.Loop() {
				m.add(mapWithLibtorrent(b, s, v.speed))
			}
			m.report(b)
		})
	}
}

// metrics sums named measurements over a benchmark's iterations and
// reports their means.
type metrics struct {
	n   int
	sum map[string]float64
}

func (m *metrics) add(vals map[string]float64) {
	if m.sum == nil {
		m.sum = map[string]float64{}
	}
	m.n++
	for k, v := range vals {
		m.sum[k] += v
	}
}

func (m *metrics) report(b *testing.B) {
	for k, v := range m.sum {
		b.ReportMetric(v/float64(max(m.n, 1)), k)
	}
}

// mapWithCollector runs the collector until every peer has completed a
// handshake (or the bound), then checks the stored snapshots against the
// truth.
func mapWithCollector(b *testing.B, s *simSwarm, cfg Config) map[string]float64 {
	col, st, swarm := benchCollector(b, s, cfg)
	recv0, sent0 := s.traffic(b)
	start := time.Now()
	stop := runCollector(b, col)
	deadline := start.Add(mapTimeout)
	if cfg.Watch {
		deadline = start.Add(30 * time.Second) // see the benchmark's comment
	}
	for col.Progress().Reached < len(s.peers) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stop()
	recv1, sent1 := s.traffic(b)
	p := col.Progress()
	ctx := context.Background()
	snaps, err := st.Snapshots(ctx, swarm)
	if err != nil {
		b.Fatal(err)
	}
	mapped := 0
	for _, sp := range s.peers {
		got := snaps[sp.addr]
		if len(got) == 0 {
			continue
		}
		if !got[0].Bitfield.Equal(sp.have) {
			b.Errorf("%s: stored bitfield of %d pieces, the peer has %d", sp.addr, got[0].Bitfield.Count(), sp.have.Count())
			continue
		}
		mapped++
	}
	probes, err := st.Probes(ctx, swarm)
	if err != nil {
		b.Fatal(err)
	}
	var bwIn, bwOut int64
	for _, pr := range probes {
		var w struct {
			In  int64 `json:"wire_bytes_in"`
			Out int64 `json:"wire_bytes_out"`
		}
		if err := json.Unmarshal(pr.Result, &w); err != nil {
			b.Fatal(err)
		}
		bwIn += w.In
		bwOut += w.Out
	}
	recv, sent := sent1-sent0, recv1-recv0 // the swarm's sent is the mapper's received
	return map[string]float64{
		"s-to-map": elapsed.Seconds(), "mapped": float64(mapped),
		"B-recv": float64(recv), "B-sent": float64(sent),
		"map-B-recv": float64(recv - bwIn), "map-B-sent": float64(sent - bwOut),
		"own-B-recv": float64(p.BytesIn), "own-B-sent": float64(p.BytesOut),
		"bw-probes": float64(len(probes)),
	}
}

// mapWithLibtorrent runs bench/swarmmap/ltmap.py against the swarm.
func mapWithLibtorrent(b *testing.B, s *simSwarm, speed int) map[string]float64 {
	tmp := b.TempDir()
	addrs := make([]string, len(s.peers))
	for i, p := range s.peers {
		addrs[i] = p.addr.String()
	}
	cfg, err := json.Marshal(map[string]any{
		"torrent": s.file, "save": tmp, "ip": "127.0.0.1", "peers": addrs, "timeout": mapTimeout.Seconds(),
		"connections_limit": len(addrs) + 200, "connection_speed": speed,
	})
	if err != nil {
		b.Fatal(err)
	}
	cfgPath := filepath.Join(tmp, "ltmap.json")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		b.Fatal(err)
	}
	script, err := filepath.Abs("../../../bench/swarmmap/ltmap.py")
	if err != nil {
		b.Fatal(err)
	}
	recv0, sent0 := s.traffic(b)
	ctx, cancel := context.WithTimeout(context.Background(), mapTimeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", script, cfgPath)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "PYTHONNOUSERSITE=1"}
	cmd.Dir = tmp
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.Output()
	var res struct {
		Type, Msg  string
		Elapsed    float64
		Pieces     map[string]int
		Sent, Recv int64
	}
	if jerr := lastJSON(out, &res); jerr != nil || res.Type != "result" {
		b.Fatalf("ltmap.py: %v %v %s %s", err, jerr, res.Msg, out)
	}
	recv1, sent1 := s.traffic(b)
	mapped := 0
	for _, p := range s.peers {
		if n, ok := res.Pieces[p.addr.String()]; ok {
			if n != p.have.Count() {
				b.Errorf("%s: libtorrent saw %d pieces, the peer has %d", p.addr, n, p.have.Count())
				continue
			}
			mapped++
		}
	}
	return map[string]float64{
		"s-to-map": res.Elapsed, "mapped": float64(mapped),
		"B-recv": float64(sent1 - sent0), "B-sent": float64(recv1 - recv0),
		"own-B-recv": float64(res.Recv), "own-B-sent": float64(res.Sent),
	}
}

// lastJSON decodes the last line of out into v.
func lastJSON(out []byte, v any) error {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) == 0 || lines[len(lines)-1] == "" {
		return errors.New("no output")
	}
	return json.Unmarshal([]byte(lines[len(lines)-1]), v)
}

// BenchmarkAuditMemory is the collector's memory per tracked peer in a long
// audit: a 1,000-peer simulated swarm (its own process; every peer gains a
// piece every 10 s, so HAVEs flow on the idle watches), audited with the
// audit command's defaults except --max-conns 1400 (so that every peer can
// hold an idle watch: watches take at most three quarters of the
// connections; at the default 64 only 48 peers are watched) and
// --snapshot-interval 2s (the watches' heartbeat events 30 times as often as
// by default, to reach the steady state sooner). After 30 s and after 60 s,
// heap in use (after a GC) and goroutines are read; the reported figures are
// the 60-s ones minus the figures before the collector started, per peer
// discovered, and heap-growth-B/peer-min is the change between the two
// reads (about zero in a steady state).
func BenchmarkAuditMemory(b *testing.B) {
	s := startSimSwarm(b, "-peers", fmt.Sprint(benchPeers), "-pieces", fmt.Sprint(benchPieces), "-gain", "10s")
	cfg := auditDefaults(true)
	cfg.MaxConns, cfg.SnapshotInterval = benchPeers*4/3+100, 2*time.Second
	var heap, growth, goroutines, watched float64
	for b.Loop() {
		col, _, _ := benchCollector(b, s, cfg)
		heap0, g0 := testclients.LiveHeap()
		stop := runCollector(b, col)
		time.Sleep(30 * time.Second)
		heap30, _ := testclients.LiveHeap()
		time.Sleep(30 * time.Second)
		heap60, g60 := testclients.LiveHeap()
		p := col.Progress()
		stop()
		peers := float64(max(p.Discovered, 1))
		heap += (float64(heap60) - float64(heap0)) / peers
		growth += (float64(heap60) - float64(heap30)) / peers / 0.5
		goroutines += float64(g60-g0) / peers
		watched += float64(p.Watching)
	}
	n := float64(b.N)
	b.ReportMetric(heap/n, "heap-B/peer")
	b.ReportMetric(growth/n, "heap-growth-B/peer-min")
	b.ReportMetric(goroutines/n, "goroutines/peer")
	b.ReportMetric(watched/n, "watched")
}

// BenchmarkAudit10k audits a 10,000-peer simulated swarm (bench/swarmmap in
// a process of its own; 1,024 pieces of 16 KiB, 5-95% held, encryption
// mixed) with the audit command's defaults (--max-conns 64, of which
// watches take at most 48), and again with --max-conns 8000 so that 6,000
// peers hold an idle watch (the file-descriptor limit here, 20,000 per
// process, leaves the simulated swarm room for 10,000 listeners and those
// connections). s-to-map is the time until every peer's bitfield is
// stored; heap-B/peer and goroutines/peer are the heap in use (after a GC)
// and the goroutines 20 s after the map, less those before the collector
// started, per peer discovered; watched is the watches held then.
func BenchmarkAudit10k(b *testing.B) {
	const peers = 10_000
	for _, v := range []struct {
		name     string
		maxConns int
	}{{"defaults", 64}, {"watch-6000", 8000}} {
		b.Run(v.name, func(b *testing.B) {
			s := startSimSwarm(b, "-peers", fmt.Sprint(peers), "-pieces", fmt.Sprint(benchPieces))
			cfg := auditDefaults(true)
			cfg.MaxConns = v.maxConns
			var m metrics
			for b.Loop() {
				col, st, swarm := benchCollector(b, s, cfg)
				heap0, g0 := testclients.LiveHeap()
				start := time.Now()
				stop := runCollector(b, col)
				for col.Progress().Reached < peers && time.Since(start) < 10*time.Minute {
					time.Sleep(50 * time.Millisecond)
				}
				toMap := time.Since(start)
				time.Sleep(20 * time.Second) // watches settle
				heap, g := testclients.LiveHeap()
				p := col.Progress()
				stop()
				snaps, err := st.Snapshots(context.Background(), swarm)
				if err != nil {
					b.Fatal(err)
				}
				mapped := 0
				for _, sp := range s.peers {
					if got := snaps[sp.addr]; len(got) > 0 && got[0].Bitfield.Equal(sp.have) {
						mapped++
					}
				}
				m.add(map[string]float64{
					"s-to-map": toMap.Seconds(), "mapped": float64(mapped), "watched": float64(p.Watching),
					"heap-B/peer":     (float64(heap) - float64(heap0)) / float64(max(p.Discovered, 1)),
					"goroutines/peer": float64(g-g0) / float64(max(p.Discovered, 1)),
				})
			}
			m.report(b)
		})
	}
}
