package discovery_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/swarmaudit/swarmaudit/internal/discovery"
	"github.com/swarmaudit/swarmaudit/internal/discovery/addrbook"
	"github.com/swarmaudit/swarmaudit/internal/discovery/dhtsearch/dhttest"
	"github.com/swarmaudit/swarmaudit/internal/simulation/testclients"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/httptracker"
	"github.com/swarmaudit/swarmaudit/internal/wire/torrentmeta"
)

// TestOpentrackerRealClients runs Debian's opentracker (HTTP and UDP on one
// port) with a libtorrent seeder and a Transmission leecher on loopback, and
// checks that discovery finds both through each announce URL and scrapes
// the swarm's counts from both.
func TestOpentrackerRealClients(t *testing.T) {
	testclients.Require(t, "opentracker", string(testclients.Libtorrent), string(testclients.Transmission))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	tr := testclients.StartOpentracker(ctx, t)
	src := testclients.MakePayload(t, t.TempDir(), 1<<20, 11)
	torrentPath, ih := testclients.MakeTorrent(t, src, 64<<10, []string{tr.HTTP, tr.UDP}, true)
	tr.Allow(ctx, t, ih)
	seed := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Libtorrent, TorrentFile: torrentPath,
		DataDir: filepath.Dir(src), IP: "127.0.3.10", Seed: true})
	leech := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Transmission, TorrentFile: torrentPath,
		IP: "127.0.3.11"})

	// Discovery respects opentracker's ~30 min interval, so it announces
	// once: wait until both clients' own announces are in (scrape shows two
	// peers) before starting it.
	sc, err := httptracker.New(tr.HTTP, httptracker.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		s, err := sc.Scrape(ctx, ih)
		if err == nil && s.Seeders+s.Leechers >= 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("clients never announced: scrape %+v %v\n%s\n%s", s, err, seed.Log(), leech.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}

	tor, err := torrentmeta.Load(torrentPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := discovery.FromTorrent(tor)
	if len(cfg.Trackers) != 2 || !cfg.Private {
		t.Fatalf("torrent config %+v", cfg)
	}
	cfg.Port = uint16(testclients.FreePort(t, "127.0.0.1"))
	self := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), cfg.Port)
	cfg.Exclude = []netip.AddrPort{self} // opentracker lists the requester too
	cfg.DHT = true                       // must be ignored: the torrent is private
	cfg.Bootstrap = []string{"127.0.0.1:1"}
	cfg.AnnounceFloor = time.Second
	d, err := discovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()

	// The clients announce once at start; opentracker hands them to us on
	// our first announce. Wait until both are seen through both URLs and
	// both scrapes are in. opentracker records the announce's source
	// address: Transmission binds its peer port to its IP but sends
	// tracker requests from 127.0.0.1, so it may be listed there.
	want := [][]netip.AddrPort{
		{seed.Addr, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), seed.Addr.Port())},
		{leech.Addr, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), leech.Addr.Port())},
	}
	srcs := []string{addrbook.Tracker(tr.HTTP), addrbook.Tracker(tr.UDP)}
	done := func() bool {
		for _, alts := range want {
			found := false
			for _, a := range alts {
				e, ok := d.Book().Get(a)
				found = found || ok && e.HasSource(srcs[0]) && e.HasSource(srcs[1])
			}
			if !found {
				return false
			}
		}
		for _, ts := range d.Summary().Trackers {
			if ts.Scrape == nil {
				return false
			}
		}
		return true
	}
	for !done() && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	sum := d.Summary()
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if !done() {
		t.Fatalf("not all found (seed %s, leech %s, us %d): book %v\nsummary %+v\nopentracker log:\n%s", seed.Addr, leech.Addr, cfg.Port, d.Book().Entries(), sum, tr.Log())
	}
	if _, ok := d.Book().Get(self); ok {
		t.Errorf("own address %s recorded despite Exclude", self)
	}
	if sum.DHT != nil {
		t.Errorf("DHT used for a private torrent: %+v", sum.DHT)
	}
	for _, ts := range sum.Trackers {
		s := ts.Scrape
		t.Logf("%s: scrape %+v, announce said %d seeders %d leechers", ts.URL, *s, ts.Seeders, ts.Leechers)
		// Two clients plus this auditor (announced with left > 0, before
		// the scrape); the libtorrent seeder is complete.
		if s.Seeders < 1 || s.Seeders+s.Leechers < 3 {
			t.Errorf("%s scrape %+v: want >= 1 seeder and >= 3 peers", ts.URL, *s)
		}
		if !ts.Started {
			t.Errorf("%s not started: %+v", ts.URL, ts)
		}
	}
}

// TestDHTRealClient has a libtorrent client join a loopback DHT and
// announce there; discovery must find it through the DHT alone.
func TestDHTRealClient(t *testing.T) {
	testclients.Require(t, string(testclients.Libtorrent))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	nw := dhttest.Start(t, 8)
	var nodes []netip.AddrPort
	for _, a := range nw.Addrs(3) {
		nodes = append(nodes, netip.MustParseAddrPort(a))
	}
	src := testclients.MakePayload(t, t.TempDir(), 256<<10, 12)
	torrentPath, ih := testclients.MakeTorrent(t, src, 32<<10, nil, false)
	c := testclients.Start(ctx, t, testclients.Options{Kind: testclients.Libtorrent, TorrentFile: torrentPath,
		DataDir: filepath.Dir(src), IP: "127.0.3.20", Seed: true, DHT: true, DHTNodes: nodes})

	cfg := fastConfig(ih)
	cfg.DHT = true
	cfg.Bootstrap = nw.Addrs(3)
	cfg.DHTRepeat = time.Second
	d, err := discovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	cur := d.Book().Watch()
	found := false
	for !found {
		e, err := cur.Next(ctx)
		if err != nil {
			break
		}
		found = e.Addr == c.Addr && e.HasSource(addrbook.SourceDHT)
	}
	cancel()
	<-runErr
	if !found {
		t.Fatalf("libtorrent at %s not found via DHT; book %v; summary %+v\n%s", c.Addr, d.Book().Entries(), d.Summary(), c.Log())
	}
}
