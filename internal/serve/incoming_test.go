package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/audit"
	"github.com/swarmaudit/swarmaudit/internal/evidence/store"
	"github.com/swarmaudit/swarmaudit/internal/observation/collect"
	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
	"github.com/swarmaudit/swarmaudit/internal/simulation/swarmsim"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/trackerserver"
	"github.com/swarmaudit/swarmaudit/internal/wire/peerwire"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestServeIncoming: one listener takes incoming connections for every
// swarm. A peer of swarm A connects with MSE (the responder finds A among
// both swarms' info hashes), one of swarm B in plaintext; each is handed
// to its own swarm's collector, which follows it as a watch and learns the
// peer's listen address from its extension handshake. A connection for a
// torrent the service does not audit is refused.
func TestServeIncoming(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	watchDir := filepath.Join(dir, "watch")
	if err := os.Mkdir(watchDir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, testclients.StoreDB(t, filepath.Join(dir, "serve.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var infohashes [3]infohash.T
	for i := range 3 {
		_, tor, err := swarmsim.NewPayload(fmt.Sprintf("incoming-%d.bin", i), 1<<20, 64<<10, uint64(60+i))
		if err != nil {
			t.Fatal(err)
		}
		infohashes[i] = tor.InfoHash
		if i < 2 { // the third is not audited
			writeTorrent(t, watchDir, tor, "http://127.0.0.1:1/announce")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, WatchDir: watchDir, PollEvery: 100 * time.Millisecond, JudgeEvery: time.Hour, Listener: ln,
		Collect: collect.Config{SnapshotInterval: time.Hour, ProbeInterval: time.Hour, ProbeBytes: 64 << 10, ProbeTimeout: 5 * time.Second, Watch: true}})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	for len(svc.statuses()) < 2 {
		if ctx.Err() != nil {
			t.Fatal("the swarms never started")
		}
		time.Sleep(50 * time.Millisecond) // polling the service's state
	}
	to := netip.MustParseAddrPort(ln.Addr().String())
	dialIn := func(ip string, ih infohash.T, policy peerwire.Policy) (*peerwire.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := peerwire.Dial(dctx, to, peerwire.Config{InfoHash: ih, PeerID: [20]byte{'-', 'I', 'N'}, Policy: policy, Network: peerwire.Network{Dialer: d}})
		if err != nil {
			return nil, err
		}
		ext, _ := bencode.Marshal(map[string]any{"m": map[string]int{"ut_pex": 1}, "p": 51413})
		return c, c.WriteMessages(pp.Message{Type: pp.Extended, ExtendedID: pp.HandshakeExtendedID, ExtendedPayload: ext})
	}
	a, err := dialIn("127.0.0.7", infohashes[0], peerwire.PolicyRequire)
	if err != nil {
		t.Fatalf("MSE connection for swarm A: %v", err)
	}
	defer a.Close()
	if a.Method != peerwire.MethodRC4 {
		t.Errorf("swarm A's connection: %s, want rc4", a.Method)
	}
	b, err := dialIn("127.0.0.8", infohashes[1], peerwire.PolicyPlaintext)
	if err != nil {
		t.Fatalf("plaintext connection for swarm B: %v", err)
	}
	defer b.Close()
	if c, err := dialIn("127.0.0.9", infohashes[2], peerwire.PolicyPlaintext); err == nil {
		c.Close()
		t.Error("a connection for a torrent not audited was accepted")
	}
	want := map[infohash.T]netip.AddrPort{infohashes[0]: netip.MustParseAddrPort("127.0.0.7:51413"), infohashes[1]: netip.MustParseAddrPort("127.0.0.8:51413")}
	for deadline := time.Now().Add(20 * time.Second); ; {
		done := 0
		for _, s := range svc.statuses() {
			var ih infohash.T
			if err := ih.FromHexString(s.InfoHash); err != nil {
				t.Fatal(err)
			}
			svc.mu.Lock()
			sw := svc.swarms[ih]
			svc.mu.Unlock()
			if s.Progress.Incoming == 1 && sw != nil && inBook(sw, want[ih]) {
				done++
			}
		}
		if done == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("each swarm's collector did not take its incoming connection: %+v", svc.statuses())
		}
		time.Sleep(50 * time.Millisecond) // polling the collectors' progress
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}

// inBook reports whether the swarm's book has addr.
func inBook(sw *swarm, addr netip.AddrPort) bool {
	_, ok := sw.book.Get(addr)
	return ok
}

// TestServeReachesPeersBehindNAT: a real libtorrent seeder that nobody can
// connect to over TCP (as behind a NAT: it accepts, then drops) announces
// to the service's embedded tracker, which names the auditor first in its
// peer list; libtorrent connects to the auditor, and the swarm's collector
// follows that connection: the seeder's pieces are recorded, although
// every connection the auditor opened to it failed, and its bandwidth is
// probed on that connection (the watch lends it: watch.Lender), pieces
// verified.
func TestServeReachesPeersBehindNAT(t *testing.T) {
	testclients.Require(t, "libtorrent")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	watchDir := filepath.Join(dir, "watch")
	if err := os.Mkdir(watchDir, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, testclients.StoreDB(t, filepath.Join(dir, "serve.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(Config{Store: st, WatchDir: watchDir, PollEvery: 100 * time.Millisecond, JudgeEvery: time.Hour, Listener: ln,
		Collect: collect.Config{SnapshotInterval: 2 * time.Second, ProbeInterval: time.Hour, ProbeBytes: 64 << 10, ProbeTimeout: 5 * time.Second, Watch: true,
			PeerID: [20]byte{'-', 'S', 'A', '0', '1', '0', '0', '-'}}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := trackerserver.New(trackerserver.Config{HTTPAddr: "127.0.0.1:0", Interval: 2 * time.Second, MinInterval: time.Second, Recorder: svc, Self: svc.Self})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	seedDir := filepath.Join(dir, "seed")
	payload := testclients.MakePayload(t, seedDir, 2<<20, 66)
	tpath, ih := testclients.MakeTorrent(t, payload, 64<<10, []string{srv.HTTPURL()}, true)
	raw, err := os.ReadFile(tpath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(watchDir, "nat.torrent"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- svc.Run(ctx) }()
	for len(svc.statuses()) < 1 { // the swarm audited before the seeder announces
		if ctx.Err() != nil {
			t.Fatal("the swarm never started")
		}
		time.Sleep(50 * time.Millisecond) // polling the service's state
	}
	seeder := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Libtorrent, TorrentFile: tpath, DataDir: seedDir,
		IP: "127.0.0.6", Seed: true, NoIncomingTCP: true})
	defer seeder.Stop()
	started := time.Now()
	sw, err := st.LookupSwarm(ctx, ih)
	for err != nil && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond) // polling the store
		sw, err = st.LookupSwarm(ctx, ih)
	}
	// Within 30 s: an incoming connection refused because the auditor was
	// probing that IP at the same moment would come back only at the
	// seeder's reconnect interval (a minute); it waits for the probe.
	var seen bool
	for deadline := time.Now().Add(30 * time.Second); !seen; {
		if time.Now().After(deadline) {
			t.Fatalf("the seeder's pieces were not recorded in 30 s: %+v\nseeder's log:\n%s", svc.statuses(), seeder.Log())
		}
		time.Sleep(200 * time.Millisecond) // polling the store
		snaps, err := st.Snapshots(ctx, sw.ID)
		if err != nil {
			t.Fatal(err)
		}
		for addr, ss := range snaps {
			if addr.Addr() == seeder.Addr.Addr() && len(ss) > 0 && ss[len(ss)-1].Bitfield.Count() > 0 {
				seen = true
			}
		}
	}
	t.Logf("pieces recorded %v after the seeder started", time.Since(started).Round(time.Second))
	for svc.statuses()[0].Progress.Incoming < 1 { // the progress is published every few seconds
		if ctx.Err() != nil {
			t.Fatalf("no incoming connection counted: %+v", svc.statuses()[0].Progress)
		}
		time.Sleep(200 * time.Millisecond) // polling the service's state
	}
	evs, err := st.ConnEvents(ctx, sw.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Addr == seeder.Addr && ev.Outcome == store.ConnOK && ev.Detail != store.DetailHeartbeat && ev.Detail != store.DetailIncomingWatch {
			t.Logf("an outgoing connection to the seeder succeeded: %+v", ev)
		}
	}
	// The reports say how it was reached: incoming.
	tor, err := torrentmeta.Load(tpath)
	if err != nil {
		t.Fatal(err)
	}
	evidence, err := audit.LoadEvidence(ctx, st, sw.ID, tor, nil)
	if err != nil {
		t.Fatal(err)
	}
	var reach []string
	for _, w := range evidence.Wire {
		if w.Addr == seeder.Addr {
			reach = w.Reach.Ways()
		}
	}
	if !slices.Contains(reach, "incoming") {
		t.Fatalf("the seeder's reach is %v, want incoming among it", reach)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		probes, err := st.Probes(ctx, sw.ID)
		if err != nil {
			t.Fatal(err)
		}
		var r probe.Result
		for _, pr := range probes {
			if pr.Addr == seeder.Addr && pr.Outcome == string(probe.OutcomeOK) && pr.PiecesVerified > 0 {
				if err := json.Unmarshal(pr.Result, &r); err != nil {
					t.Fatal(err)
				}
			}
		}
		if r.OnWatch {
			t.Logf("bandwidth probed on its incoming connection: %.0f B/s, %d pieces verified", r.ThroughputBytesPerSec, r.PiecesVerified)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bandwidth probe of the seeder on its incoming connection in 30 s: %+v", probes)
		}
		time.Sleep(200 * time.Millisecond) // polling the store
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}
