package discovery_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/discovery"
	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/discovery/dhtsearch/dhttest"
	"github.com/swarmaudit/swarmaudit/internal/evidence/reported"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/trackertest"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/udptracker"
	"github.com/swarmaudit/swarmaudit/internal/wire/pex"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

func peers(prefix string, n int) []netip.AddrPort {
	var out []netip.AddrPort
	for i := 1; i <= n; i++ {
		out = append(out, netip.MustParseAddrPort(fmt.Sprintf("%s.%d:%d", prefix, i, 6000+i)))
	}
	return out
}

// fastConfig returns a config whose sources all run on loopback with short
// timers.
func fastConfig(ih infohash.T) discovery.Config {
	return discovery.Config{
		InfoHash:       ih,
		Left:           1 << 20,
		Port:           6999,
		AnnounceFloor:  50 * time.Millisecond,
		TrackerRetry:   50 * time.Millisecond,
		UDP:            udptracker.Options{BackoffBase: 50 * time.Millisecond, MaxRetries: 2},
		DHTListen:      "127.0.0.1:0",
		DHTRepeat:      100 * time.Millisecond,
		DHTResendDelay: 300 * time.Millisecond,
	}
}

// runUntil runs d until want addresses are in its book and ready (if not
// nil) holds, or 30 s pass, and returns the entries streamed through a
// cursor.
func runUntil(t *testing.T, d *discovery.Discoverer, want []netip.AddrPort, ready func(discovery.Summary) bool) []addrbook.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	need := map[netip.AddrPort]bool{}
	for _, w := range want {
		need[w] = true
	}
	var streamed []addrbook.Entry
	c := d.Book().Watch()
	for len(need) > 0 {
		e, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("stream ended with %d addresses missing (%v): %v", len(need), need, err)
		}
		streamed = append(streamed, e)
		delete(need, e.Addr)
	}
	for ready != nil && !ready(d.Summary()) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if ctx.Err() != nil {
		t.Fatalf("not ready: %+v", d.Summary())
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	return streamed
}

func TestAllSources(t *testing.T) {
	ih := infohash.HashBytes([]byte("discover all sources"))
	httpSwarm := &trackertest.Swarm{InfoHash: ih, Peers: peers("10.1.0", 5), Interval: 1, Seeders: 3, Leechers: 2, Completed: 9}
	udpSwarm := &trackertest.Swarm{InfoHash: ih, Peers: peers("10.2.0", 5), Interval: 1, Seeders: 1, Leechers: 1, Completed: 1}
	httpURL := trackertest.StartHTTP(t, httpSwarm)
	udp := &trackertest.UDP{Swarm: udpSwarm}
	udpURL := udp.Start(t)
	nw := dhttest.Start(t, 6)
	dhtPeers := peers("10.3.0", 4)
	nw.Store(ih, dhtPeers, 2)
	magnetPeer := netip.MustParseAddrPort("10.4.0.1:7000")
	shared := httpSwarm.Peers[0] // also reported by the DHT
	nw.Store(ih, []netip.AddrPort{shared}, 2)

	cfg := fastConfig(ih)
	cfg.Trackers = [][]string{{httpURL}, {udpURL}}
	cfg.DHT = true
	cfg.Bootstrap = nw.Addrs(2)
	cfg.Peers = []netip.AddrPort{magnetPeer, netip.MustParseAddrPort("0.0.0.0:1")}
	var up atomic.Int64
	up.Store(4096)
	cfg.Uploaded = up.Load
	d, err := discovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(append([]netip.AddrPort{magnetPeer}, httpSwarm.Peers...), udpSwarm.Peers...), dhtPeers...)
	scraped := func(s discovery.Summary) bool {
		for _, ts := range s.Trackers {
			if ts.Scrape == nil {
				return false
			}
		}
		return true
	}
	streamed := runUntil(t, d, want, scraped)

	book := d.Book()
	check := func(a netip.AddrPort, src string) {
		e, ok := book.Get(a)
		if !ok || !e.HasSource(src) {
			t.Errorf("%s: entry %+v, want source %s", a, e, src)
		}
	}
	for _, p := range httpSwarm.Peers {
		check(p, addrbook.Tracker(httpURL))
	}
	for _, p := range udpSwarm.Peers {
		check(p, addrbook.Tracker(udpURL))
	}
	for _, p := range dhtPeers {
		check(p, addrbook.SourceDHT)
	}
	check(shared, addrbook.SourceDHT)
	check(magnetPeer, addrbook.SourceMagnet)
	if streamed[0].Addr != magnetPeer {
		t.Errorf("first streamed %v, want the magnet peer", streamed[0].Addr)
	}

	sum := d.Summary()
	if sum.Peers != book.Len() || sum.Invalid != 1 || sum.BySource["dht"] < len(dhtPeers)+1 || sum.PacketsSent == 0 {
		t.Errorf("summary %+v", sum)
	}
	if sum.DHT == nil || sum.DHT.Traversals == 0 || sum.DHT.PacketsSent == 0 {
		t.Errorf("dht summary %+v", sum.DHT)
	}
	if len(sum.Trackers) != 2 {
		t.Fatalf("trackers %+v", sum.Trackers)
	}
	for _, ts := range sum.Trackers {
		if !ts.Started || !ts.Stopped || ts.Scrape == nil {
			t.Errorf("tracker status %+v", ts)
		}
	}
	if s := sum.Trackers[0].Scrape; s.Seeders != 3 || s.Leechers != 2 || s.Completed != 9 {
		t.Errorf("http scrape %+v", s)
	}
	// What the trackers saw: started first, stopped last, honest counters.
	for _, sw := range []*trackertest.Swarm{httpSwarm, udpSwarm} {
		anns := sw.Announces()
		if len(anns) < 2 || anns[0].Event != reported.EventStarted || anns[len(anns)-1].Event != reported.EventStopped {
			t.Errorf("announces %+v", anns)
			continue
		}
		for _, a := range anns {
			if a.Uploaded != 4096 || a.Downloaded != 0 || a.Left != 1<<20 || a.Port != 6999 {
				t.Errorf("announce %+v", a)
			}
		}
	}
	js, err := json.Marshal(map[string]any{"summary": sum})
	if err != nil || !strings.Contains(string(js), `"by_source"`) {
		t.Errorf("summary JSON %s %v", js, err)
	}
}

func TestPrivateTorrentSkipsDHT(t *testing.T) {
	ih := infohash.HashBytes([]byte("discover private"))
	sw := &trackertest.Swarm{InfoHash: ih, Peers: peers("10.5.0", 3), Interval: 1}
	nw := dhttest.Start(t, 3)
	nw.Store(ih, peers("10.6.0", 2), 3)
	cfg := fastConfig(ih)
	cfg.Trackers = [][]string{{trackertest.StartHTTP(t, sw)}}
	cfg.Private, cfg.DHT, cfg.Bootstrap = true, true, nw.Addrs(1)
	d, err := discovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, d, sw.Peers, nil)
	sum := d.Summary()
	if sum.DHT != nil || sum.BySource["dht"] != 0 {
		t.Errorf("private torrent used the DHT: %+v", sum)
	}
}

func TestNoSource(t *testing.T) {
	ih := infohash.T{1}
	for _, tc := range []struct {
		name string
		cfg  discovery.Config
		err  error
	}{
		{"nothing", discovery.Config{InfoHash: ih}, discovery.ErrNoSource},
		{"private with only DHT", discovery.Config{InfoHash: ih, Private: true, DHT: true}, discovery.ErrNoSource},
		{"bad bootstrap", discovery.Config{InfoHash: ih, DHT: true, Bootstrap: []string{"nonsense"}, DHTListen: "127.0.0.1:0"}, discovery.ErrNoSource},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := discovery.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := d.Run(ctx); !errors.Is(err, tc.err) {
				t.Fatalf("Run: %v, want %v", err, tc.err)
			}
		})
	}
	if _, err := discovery.New(discovery.Config{}); !errors.Is(err, discovery.ErrConfig) {
		t.Errorf("zero config: %v", err)
	}
	if _, err := discovery.New(discovery.Config{InfoHash: ih, Trackers: [][]string{{""}}}); !errors.Is(err, discovery.ErrConfig) {
		t.Errorf("empty tracker list: %v", err)
	}
}

func TestUnusableTrackersReported(t *testing.T) {
	ih := infohash.T{2}
	cfg := fastConfig(ih)
	cfg.Trackers = [][]string{{"wss://127.0.0.1:1/announce"}, {"http://127.0.0.1:1/announce"}}
	cfg.Duration = 300 * time.Millisecond
	d, err := discovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, ts := range d.Summary().Trackers {
		if ts.Failures == 0 || ts.LastError == "" || ts.Started {
			t.Errorf("status %+v", ts)
		}
	}
}

func TestFromMagnetAndTorrent(t *testing.T) {
	m, err := torrentmeta.ParseMagnet("magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&tr=udp%3A%2F%2Ft1%3A1%2Fannounce&tr=http%3A%2F%2Ft2%2Fannounce&x.pe=10.0.0.1:5&x.pe=host.example:6")
	if err != nil {
		t.Fatal(err)
	}
	cfg, skipped := discovery.FromMagnet(m)
	if cfg.InfoHash != m.InfoHash || len(cfg.Trackers) != 2 || cfg.Trackers[1][0] != "http://t2/announce" ||
		len(cfg.Peers) != 1 || cfg.Peers[0].String() != "10.0.0.1:5" || cfg.Left != -1 ||
		len(skipped) != 1 || skipped[0] != "host.example:6" {
		t.Errorf("config %+v skipped %v", cfg, skipped)
	}
	tor := &torrentmeta.Torrent{InfoHash: infohash.T{3}, Trackers: [][]string{{"a", "b"}}, Private: true, TotalLength: 99}
	c2 := discovery.FromTorrent(tor)
	if c2.InfoHash != tor.InfoHash || !c2.Private || c2.Left != 99 || len(c2.Trackers) != 1 {
		t.Errorf("from torrent %+v", c2)
	}
}

func TestAddPEXAndIncoming(t *testing.T) {
	payload := []byte("d5:added12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x1a\xe17:added.f2:\x01\x02e")
	m, err := pex.Parse(payload)
	if err != nil {
		t.Fatal(err)
	}
	from := netip.MustParseAddrPort("10.9.9.9:1")
	for _, private := range []bool{false, true} {
		d, err := discovery.New(discovery.Config{InfoHash: infohash.T{5}, Private: private,
			Exclude: []netip.AddrPort{netip.MustParseAddrPort("[::ffff:10.0.0.2]:6881")}})
		if err != nil {
			t.Fatal(err)
		}
		n := d.AddPEX(from, m)
		d.AddIncoming(netip.MustParseAddrPort("10.0.0.1:6881"))
		e, ok := d.Book().Get(netip.MustParseAddrPort("10.0.0.1:6881"))
		if private {
			if n != 0 || e.HasSource(addrbook.PEX(from)) || !e.HasSource(addrbook.SourceIncoming) {
				t.Errorf("private: %d added, entry %+v", n, e)
			}
			continue
		}
		if _, self := d.Book().Get(netip.MustParseAddrPort("10.0.0.2:6881")); self {
			t.Error("excluded address recorded")
		}
		if n != 1 || !ok || !e.HasSource(addrbook.PEX(from)) || !e.HasSource(addrbook.SourceIncoming) || e.Flags != pex.PrefersEncryption {
			t.Errorf("public: %d added, entry %+v", n, e)
		}
	}
}

// TestMarkPrivateStopsTheDHT: a torrent that turns out private (BEP 27,
// learnt from metadata fetched by magnet) stops the DHT search at once:
// no DHT packet is sent after MarkPrivate, while the search runs on.
func TestMarkPrivateStopsTheDHT(t *testing.T) {
	ih := infohash.T{0x27, 0x27}
	nw := dhttest.Start(t, 6)
	cfg := fastConfig(ih)
	cfg.DHT, cfg.Bootstrap, cfg.DHTRepeat = true, nw.Addrs(2), 100*time.Millisecond
	cfg.Duration = 0
	d, err := discovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); d.PacketsSent() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the DHT search sent nothing")
		}
		time.Sleep(20 * time.Millisecond) // polling the counter
	}
	d.MarkPrivate()
	// A traversal in flight may finish its queries; after that nothing may
	// be sent: the count must settle (a running search sends every 100 ms)
	// and stay settled for ten traversal periods.
	last, still := d.PacketsSent(), time.Duration(0)
	for deadline := time.Now().Add(10 * time.Second); still < time.Second; still += 100 * time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("DHT packets still sent after the torrent turned private (%d so far)", last)
		}
		time.Sleep(100 * time.Millisecond) // sampling the counter
		if n := d.PacketsSent(); n != last {
			last, still = n, -100*time.Millisecond
		}
	}
	cancel()
	<-done
}

// TestV2SwarmOfHybrid: a hybrid torrent's peers announce under its v1
// info hash, its truncated v2 info hash (BEP 52), or both. With
// AlsoInfoHash, discovery searches both swarms on the same trackers and
// DHT, and finds the peers of each.
func TestV2SwarmOfHybrid(t *testing.T) {
	v1 := infohash.HashBytes([]byte("a hybrid's v1 swarm"))
	v2 := infohash.HashBytes([]byte("its v2 swarm, truncated"))
	v1Swarm := &trackertest.Swarm{InfoHash: v1, Peers: peers("10.6.0", 3), Interval: 1}
	v2Swarm := &trackertest.Swarm{InfoHash: v2, Peers: peers("10.7.0", 3), Interval: 1}
	nw := dhttest.Start(t, 6)
	dhtV2 := peers("10.8.0", 2)
	nw.Store(v2, dhtV2, 2)
	cfg := fastConfig(v1)
	cfg.AlsoInfoHash = v2
	cfg.Trackers = [][]string{{trackertest.StartHTTP(t, v1Swarm)}, {trackertest.StartHTTP(t, v2Swarm)}}
	cfg.DHT = true
	cfg.Bootstrap = nw.Addrs(2)
	cfg.NoScrape = true
	d, err := discovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, d, append(append(append([]netip.AddrPort{}, v1Swarm.Peers...), v2Swarm.Peers...), dhtV2...), nil)
	for _, sw := range []*trackertest.Swarm{v1Swarm, v2Swarm} {
		if len(sw.Announces()) == 0 {
			t.Errorf("swarm %s: no announce", sw.InfoHash.HexString())
		}
	}
	if n := len(d.Summary().Trackers); n != 4 {
		t.Errorf("%d tracker statuses, want 4 (two trackers, two swarms)", n)
	}
}

// TestFromTorrentSearchesTheV2SwarmOfAHybrid: a hybrid's discovery names
// its v2 swarm too; a v1 or v2-only torrent has one swarm.
func TestFromTorrentSearchesTheV2SwarmOfAHybrid(t *testing.T) {
	for _, tc := range []struct {
		file string
		also bool
	}{{"hybrid.torrent", true}, {"v2only.torrent", false}, {"mktorrent-single.torrent", false}} {
		tor, err := torrentmeta.Load("../wire/torrentmeta/testdata/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		cfg := discovery.FromTorrent(tor)
		if got := cfg.AlsoInfoHash != (infohash.T{}); got != tc.also {
			t.Errorf("%s: searches a second swarm %v, want %v", tc.file, got, tc.also)
		}
		if tc.also && (cfg.AlsoInfoHash != tor.InfoHashV2Truncated() || cfg.AlsoInfoHash == cfg.InfoHash) {
			t.Errorf("%s: second swarm %s, want the truncated v2 hash %s", tc.file, cfg.AlsoInfoHash.HexString(), tor.InfoHashV2Truncated().HexString())
		}
	}
}
