package discovery_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/torrent/types/infohash"

	"github.com/swarmaudit/swarmaudit/internal/discovery"
	"github.com/swarmaudit/swarmaudit/internal/discovery/dhtsearch/dhttest"
	"github.com/swarmaudit/swarmaudit/internal/trackerclient/trackertest"
)

// peerRange makes n distinct peers in 10.<b>.x.y.
func peerRange(b byte, n int) []netip.AddrPort {
	out := make([]netip.AddrPort, n)
	for i := range out {
		out[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, b, byte(i >> 8), byte(i)}), uint16(10000+i))
	}
	return out
}

// BenchmarkFirst100Peers measures the time and packets (tracker requests
// plus DHT datagrams) until 100 distinct peers are in the book, against a
// synthetic HTTP tracker and a 200-node DHT on 127.0.0.1.
func BenchmarkFirst100Peers(b *testing.B) {
	const target = 100
	ih := infohash.HashBytes([]byte("discover benchmark"))
	// newDHT starts a fresh 200-node DHT for each measured search: a shared
	// one fills its routing tables with the stopped searchers of earlier
	// iterations, and later searches then wait on dead nodes.
	newDHT := func() *dhttest.Network {
		nw := dhttest.Start(b, 200)
		// The 8 nodes closest to the info hash hold the announces, 20
		// distinct peers each (160 in all): 100 peers need answers from 5.
		holders := nw.Store(ih, nil, 8)
		all := peerRange(3, 160)
		for i, h := range holders {
			for _, p := range all[i*20 : (i+1)*20] {
				nw.Stores[h].AddPeer(ih, krpc.NodeAddr{IP: p.Addr().AsSlice(), Port: int(p.Port())})
			}
		}
		return nw
	}
	swarm := &trackertest.Swarm{InfoHash: ih, Peers: peerRange(1, 500), Interval: 1800}
	trackerURL := trackertest.StartHTTP(b, swarm)
	for _, bc := range []struct {
		name    string
		tracker bool
		dht     bool
		numWant int32
	}{
		{"tracker", true, false, 200},
		{"dht", false, true, 0},
		// A stingy tracker (30 peers per announce, one announce) plus the DHT.
		{"tracker30+dht", true, true, 30},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var totalPackets int64
			var totalTime time.Duration
			for i := 0; i < b.N; i++ {
				var nw *dhttest.Network
				if bc.dht {
					b.StopTimer()
					nw = newDHT()
					b.StartTimer()
				}
				cfg := discovery.Config{
					InfoHash:  ih,
					Left:      1 << 30,
					Port:      6881,
					NumWant:   bc.numWant,
					NoScrape:  true,
					DHT:       bc.dht,
					Bootstrap: bootstrapOf(nw),
					DHTListen: "127.0.0.1:0",
					DHTRepeat: 50 * time.Millisecond,
				}
				if bc.tracker {
					cfg.Trackers = [][]string{{trackerURL}}
				}
				d, err := discovery.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				start := time.Now()
				done := make(chan error, 1)
				go func() { done <- d.Run(ctx) }()
				c := d.Book().Watch()
				for n := 0; n < target; n++ {
					if _, err := c.Next(ctx); err != nil {
						b.Fatalf("only %d peers: %v", n, err)
					}
				}
				totalTime += time.Since(start)
				totalPackets += d.PacketsSent()
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(totalTime.Microseconds())/1000/float64(b.N), "ms-to-100-peers")
			b.ReportMetric(float64(totalPackets)/float64(b.N), "packets-to-100-peers")
		})
	}
}

func bootstrapOf(nw *dhttest.Network) []string {
	if nw == nil {
		return nil
	}
	return nw.Addrs(3)
}
